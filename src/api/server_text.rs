//! What every piece of text a server sends goes through before the tool keeps or prints
//! it: an error's message (and a redirect's `Location`), and the text fields of the SIMs
//! and Fleets it shows. The secrets of the request are removed ([`Redactor`]) and control
//! characters (C0, DEL, C1: line breaks and escape sequences among them) become U+FFFD, so
//! neither the results, the logs, the summary nor the report ever shows a secret a server
//! echoed, and no terminal obeys a line break or an escape sequence a server sent. The
//! client applies it as each answer is read, so nothing after it sees the raw text.

use std::borrow::Cow;

use crate::secret::Redactor;

use super::client::{ListedSim, Sim};
use super::error::ApiError;

/// Server text made safe to keep and print.
pub(super) trait ServerText {
    fn cleaned(self, redactor: &Redactor) -> Self;
}

/// `text` without secrets and with each control character replaced by U+FFFD.
pub(super) fn clean(text: &str, redactor: &Redactor) -> String {
    without_controls(&redactor.redact(text))
}

fn without_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

impl ServerText for String {
    /// Every answer's fields pass through here, and nearly all are clean already: those are
    /// handed back as they came, with no copy made.
    fn cleaned(self, redactor: &Redactor) -> Self {
        match redactor.redact(&self) {
            Cow::Borrowed(_) if !self.chars().any(char::is_control) => self,
            redacted => without_controls(&redacted),
        }
    }
}

impl<T: ServerText> ServerText for Option<T> {
    fn cleaned(self, redactor: &Redactor) -> Self {
        self.map(|value| value.cleaned(redactor))
    }
}

impl<T: ServerText> ServerText for Vec<T> {
    fn cleaned(self, redactor: &Redactor) -> Self {
        self.into_iter()
            .map(|value| value.cleaned(redactor))
            .collect()
    }
}

impl ServerText for ApiError {
    fn cleaned(mut self, redactor: &Redactor) -> Self {
        self.message = self.message.cleaned(redactor);
        self
    }
}

impl ServerText for Sim {
    fn cleaned(self, redactor: &Redactor) -> Self {
        Sim {
            sid: self.sid.cleaned(redactor),
            iccid: self.iccid.cleaned(redactor),
            status: self.status.cleaned(redactor),
            fleet_sid: self.fleet_sid.cleaned(redactor),
            unique_name: self.unique_name.cleaned(redactor),
            account_sid: self.account_sid.cleaned(redactor),
        }
    }
}

impl ServerText for ListedSim {
    fn cleaned(self, redactor: &Redactor) -> Self {
        ListedSim {
            sid: self.sid.cleaned(redactor),
            iccid: self.iccid.cleaned(redactor),
            status: self.status.cleaned(redactor),
            fleet_sid: self.fleet_sid.cleaned(redactor),
            unique_name: self.unique_name.cleaned(redactor),
            date_created: self.date_created.cleaned(redactor),
            date_updated: self.date_updated.cleaned(redactor),
            account_sid: self.account_sid.cleaned(redactor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Credentials, RegistrationCode};

    #[test]
    fn secrets_go_and_control_characters_show_as_replacement_characters() {
        let redactor = Credentials {
            username: "SK00000000000000000000000000000000".into(),
            password: "api-secret-canary".into(),
        }
        .redactor()
        .with_code(&RegistrationCode::new("CANARY1234".into()));
        assert_eq!(
            clean(
                "bad\n\u{1b}[2J\u{7}\r\t\u{7f}\u{9b} canary1234 API SECRET CANARY",
                &redactor
            ),
            "bad\u{fffd}\u{fffd}[2J\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd} [redacted] [redacted]"
        );
        let plain = "The ICCID and registration code do not match";
        assert_eq!(clean(plain, &redactor), plain);
    }
}
