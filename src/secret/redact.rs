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

use std::borrow::Cow;
use std::sync::Arc;

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

/// Cloned once per create (with its code added), so its characters are shared, not copied.
#[derive(Clone)]
struct Secret {
    /// The characters a match has, in order, separators left out; never empty.
    chars: Arc<[char]>,
    /// A base64 credential: `=` padding right after a match goes with it.
    padded: bool,
}

impl Secret {
    fn new(text: &str, padded: bool) -> Option<Secret> {
        let chars: Arc<[char]> = text
            .chars()
            .filter(|&c| !(is_separator(c) || (padded && c == '=')))
            .collect();
        (!chars.is_empty()).then_some(Secret { chars, padded })
    }

    /// Whether a match could start with `c`: most of a text is passed over on this alone.
    fn may_start_with(&self, c: char) -> bool {
        self.chars[0].eq_ignore_ascii_case(&c)
    }

    /// The length in bytes of a match at the start of `text`, if one starts there.
    fn match_len(&self, text: &str) -> Option<usize> {
        let mut rest = text.char_indices().peekable();
        for (n, &wanted) in self.chars.iter().enumerate() {
            if n > 0 {
                while rest.next_if(|&(_, c)| is_separator(c)).is_some() {}
            }
            let (_, c) = rest.next()?;
            if !c.eq_ignore_ascii_case(&wanted) {
                return None;
            }
        }
        if self.padded {
            while rest.next_if(|&(_, c)| c == '=').is_some() {}
        }
        Some(rest.peek().map_or(text.len(), |&(at, _)| at))
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
    /// two secrets start at one place, the longer match goes. Text without a secret, as
    /// nearly every answer's is, comes back as it was, unallocated.
    pub(crate) fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut redacted: Option<String> = None;
        // `text[kept..]` has not been copied into `redacted` yet.
        let mut kept = 0;
        let mut at = 0;
        while let Some(c) = text[at..].chars().next() {
            let longest = self
                .secrets
                .iter()
                .filter(|secret| secret.may_start_with(c))
                .filter_map(|secret| secret.match_len(&text[at..]))
                .max();
            match longest {
                Some(len) => {
                    let out = redacted.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[kept..at]);
                    out.push_str(REDACTED);
                    at += len;
                    kept = at;
                }
                None => at += c.len_utf8(),
            }
        }
        match redacted {
            None => Cow::Borrowed(text),
            Some(mut out) => {
                out.push_str(&text[kept..]);
                Cow::Owned(out)
            }
        }
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
    fn clean_text_is_handed_back_uncopied_and_any_character_may_stand_beside_a_secret() {
        let redactor = redactor();
        assert!(matches!(
            redactor.redact("HS0123456789abcdef0123456789abcdef"),
            Cow::Borrowed(_)
        ));
        for (echoed, left) in [
            ("hchjzxrpuc", "[redacted]"),
            ("é hchjzxrpuc ü", "é [redacted] ü"),
            ("→TOKENSECRET123←", "→[redacted]←"),
            ("hchjzxrpuchchjzxrpuc", "[redacted][redacted]"),
        ] {
            assert_eq!(redactor.redact(echoed), left, "{left}");
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
