//! Removing the run's secrets from text a server sent back. A server may echo what a
//! request carried, and not always as it was sent: the auth token or API secret, the Basic
//! credential that carries it (base64 of `user:secret`, with or without its padding), and
//! the request's registration code, in another letter case or spaced out, dashed or
//! grouped. A [`Redactor`] finds each of them in any letter case and with spaces, dashes,
//! underscores or dots between its characters, and puts [`REDACTED`] in its place.
//!
//! The secrets stay in this module: a redactor is made from a [`Credentials`] (and, for
//! one request, a [`RegistrationCode`]), only ever hands back redacted text, and its
//! `Debug` says how many secrets it holds, never one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Credentials, RegistrationCode};

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// The secrets one request carried, to be removed from whatever its answer says.
#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<Secret>,
}

#[derive(Clone)]
struct Secret {
    /// The characters a match has, in order, separators left out.
    chars: Vec<char>,
    /// A base64 credential: `=` padding right after a match goes with it.
    padded: bool,
}

impl Secret {
    fn new(text: &str, padded: bool) -> Option<Secret> {
        let chars: Vec<char> = text
            .chars()
            .filter(|&c| !(is_separator(c) || (padded && c == '=')))
            .collect();
        (!chars.is_empty()).then_some(Secret { chars, padded })
    }

    /// Where a match starting at `start` ends, if one starts there.
    fn match_at(&self, text: &[char], start: usize) -> Option<usize> {
        let mut at = start;
        for (n, &wanted) in self.chars.iter().enumerate() {
            if n > 0 {
                while text.get(at).copied().is_some_and(is_separator) {
                    at += 1;
                }
            }
            if !text.get(at)?.eq_ignore_ascii_case(&wanted) {
                return None;
            }
            at += 1;
        }
        if self.padded {
            while text.get(at) == Some(&'=') {
                at += 1;
            }
        }
        Some(at)
    }
}

/// What a server may put between the characters of a secret it echoes.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '_' | '.')
}

impl Credentials {
    /// A redactor of the secret half of these credentials and of the Basic credential
    /// made of them. The user name (an Account SID or API key SID) is no secret and stays.
    pub(crate) fn redactor(&self) -> Redactor {
        let basic = BASE64.encode(format!("{}:{}", self.username, self.password));
        Redactor {
            secrets: [
                Secret::new(&self.password, false),
                Secret::new(&basic, true),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

impl Redactor {
    /// This redactor, and the registration code a request sent as well.
    pub(crate) fn with_code(&self, code: &RegistrationCode) -> Redactor {
        let mut redactor = self.clone();
        redactor.secrets.extend(Secret::new(&code.0, false));
        redactor
    }

    /// `text` with every secret, in any case and spacing, replaced by [`REDACTED`]. Where
    /// two secrets start at one place, the longer match goes.
    pub(crate) fn redact(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut redacted = String::with_capacity(text.len());
        let mut at = 0;
        while at < chars.len() {
            let end = self
                .secrets
                .iter()
                .filter_map(|secret| secret.match_at(&chars, at))
                .max();
            match end {
                Some(end) => {
                    redacted.push_str(REDACTED);
                    at = end;
                }
                None => {
                    redacted.push(chars[at]);
                    at += 1;
                }
            }
        }
        redacted
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Credentials {
            username: "AC00000000000000000000000000000000".into(),
            password: "TOKENSECRET123".into(),
        }
        .redactor()
        .with_code(&RegistrationCode::new("HCHJZXRPUC".into()))
    }

    #[test]
    fn each_secret_goes_in_any_case_and_spacing() {
        let redactor = redactor();
        for (echoed, left) in [
            ("token TOKENSECRET123 rejected", "token [redacted] rejected"),
            ("token tokensecret123.", "token [redacted]."),
            ("code 'H C H J Z X R P U C'", "code '[redacted]'"),
            ("code hc-hj-zx-rp-uc!", "code [redacted]!"),
            ("code Hchj_zxrpuc", "code [redacted]"),
            (
                "auth Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDpUT0tFTlNFQ1JFVDEyMw==;",
                "auth Basic [redacted];",
            ),
            (
                "auth QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDpUT0tFTlNFQ1JFVDEyMw end",
                "auth [redacted] end",
            ),
        ] {
            assert_eq!(redactor.redact(echoed), left, "{left}");
        }
    }

    #[test]
    fn text_without_a_secret_is_left_as_it_is() {
        let redactor = redactor();
        for text in [
            "",
            "The ICCID and registration code do not match",
            "HCHJZXRPU is one short",
            "The Super SIM HS0123456789abcdef0123456789abcdef is already registered",
        ] {
            assert_eq!(redactor.redact(text), text);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", redactor());
        assert!(
            !shown.contains("TOKEN") && !shown.contains("HCHJ"),
            "{shown}"
        );
    }
}
