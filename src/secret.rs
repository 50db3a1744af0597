//! The two kinds of secret this tool handles: the account's credentials and each SIM's
//! registration code (a claim secret: whoever holds it can take the SIM). They live in types
//! whose `Debug` and `Display` never show the secret, so a log line or an error message
//! cannot leak one by accident; the one place that needs the value calls `expose`.
//! [`redact`] takes them out of whatever a server says back.

mod redact;

pub(crate) use redact::Redactor;

/// An HTTP Basic credential pair. `Debug` never shows the secret half.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// A registration code: a claim secret, so neither `Debug` nor `Display` show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationCode(String);

impl RegistrationCode {
    pub(crate) fn new(code: String) -> Self {
        RegistrationCode(code)
    }
    /// The code itself, for the one place that needs it: the request body.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RegistrationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationCode([redacted])")
    }
}

/// A value shown in place of one that may be a secret: the first two and the last two
/// characters, a star for each one between (`HC******UC`), enough to find the row in the
/// file without printing a claim secret. Values of four characters or fewer are all stars.
pub(crate) fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let (head, rest) = chars.split_at(2);
    let (middle, tail) = rest.split_at(rest.len() - 2);
    let mut masked: String = head.iter().collect();
    masked.extend(std::iter::repeat_n('*', middle.len()));
    masked.extend(tail);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_two_characters_at_each_end() {
        assert_eq!(mask("HC7QX2M9UC"), "HC******UC");
        assert_eq!(mask("ABCDE"), "AB*DE");
        assert_eq!(mask("ABCD"), "****");
        assert_eq!(mask(""), "");
    }
}
