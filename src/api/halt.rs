//! The halt registry: why the API side stopped a whole run (refused credentials, an API that
//! never answers, an endpoint that is not the API), with the first reason kept and one
//! token every waiting request and worker watches. The [`super::gate`] records halts as it
//! sees answers; lookups that meet one (Fleets) record theirs here too.
//!
//! It knows nothing of the run's own reasons to stop (an interrupt, a results file that
//! cannot be written, `--max-failures`): the run's stop owner reads this registry and
//! folds its reason in with those.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// Why the API side stopped the whole run: every further request would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// The API refused the credentials (401 / 20003).
    CredentialsRefused,
    /// No request has been answered, and [`super::gate::UNREACHABLE_AFTER`] in a row got no
    /// answer: the sentence says why (DNS, refused, TLS, timeout) and names the URL.
    Unreachable(String),
    /// An answer said the URL is not the endpoint (a 404 or a bare 4xx on `POST /v1/Sims`):
    /// the sentence names the URL and the likely fix.
    WrongEndpoint(String),
}

/// The first [`Halt`] of a run, and the tokens cancelled by it.
#[derive(Debug, Default)]
pub(crate) struct HaltRegistry {
    /// Cancelled on any halt.
    halted: CancellationToken,
    /// Cancelled when the halt is refused credentials.
    credentials_refused: CancellationToken,
    reason: Mutex<Option<Halt>>,
}

impl HaltRegistry {
    /// Records `why` unless a halt was recorded before (the first reason wins), and
    /// cancels the tokens. Logs the sentence of the reason that is kept.
    pub(crate) fn halt(&self, why: Halt) {
        {
            let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if reason.is_none() {
                match &why {
                    Halt::Unreachable(sentence) | Halt::WrongEndpoint(sentence) => {
                        tracing::error!(%sentence, "stopping the run");
                    }
                    Halt::CredentialsRefused => self.credentials_refused.cancel(),
                }
                *reason = Some(why);
            } else if why == Halt::CredentialsRefused {
                self.credentials_refused.cancel();
            }
        }
        self.halted.cancel();
    }

    /// Cancelled once the run is halted for any reason.
    pub(crate) fn halted(&self) -> &CancellationToken {
        &self.halted
    }

    /// Cancelled once the API has refused the credentials.
    pub(crate) fn credentials_refused(&self) -> &CancellationToken {
        &self.credentials_refused
    }

    /// Why the run was halted, if it was.
    pub(crate) fn reason(&self) -> Option<Halt> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_halt_wins_and_refused_credentials_are_always_flagged() {
        let halts = HaltRegistry::default();
        assert!(!halts.halted().is_cancelled());
        halts.halt(Halt::WrongEndpoint("the endpoint".into()));
        halts.halt(Halt::CredentialsRefused);
        assert_eq!(
            halts.reason(),
            Some(Halt::WrongEndpoint("the endpoint".into()))
        );
        assert!(halts.halted().is_cancelled());
        assert!(halts.credentials_refused().is_cancelled());
    }
}
