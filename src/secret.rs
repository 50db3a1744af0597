//! The two kinds of secret this tool handles: the account's credentials and each SIM's
//! registration code (a claim secret: whoever holds it can take the SIM). They live in types
//! whose `Debug` and `Display` never show the secret, so a log line or an error message
//! cannot leak one by accident; the one place that needs the value calls `expose`.

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
    pub fn new(code: String) -> Self {
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
