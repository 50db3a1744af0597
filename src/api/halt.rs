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

use super::error::Refusal;

/// Why the API side stopped the whole run: every further request would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// The API refused the credentials (401 / 20003), as it answered.
    CredentialsRefused(Refusal),
    /// No request has been answered, and [`super::gate::UNREACHABLE_AFTER`] in a row got no
    /// answer: the sentence says why (DNS, refused, TLS, timeout) and names the URL.
    Unreachable(String),
    /// An answer said the URL is not the endpoint (a 404 or a bare 4xx on `POST /v1/Sims`):
    /// the sentence names the URL and the likely fix.
    WrongEndpoint(String),
}

/// The first [`Halt`] of a run, the token cancelled by it, and how the credentials were
/// refused if they were (even when another halt came first).
#[derive(Debug, Default)]
pub(crate) struct HaltRegistry {
    /// Cancelled on any halt.
    halted: CancellationToken,
    /// The first refusal of the credentials, as the API answered it.
    refusal: Mutex<Option<Refusal>>,
    reason: Mutex<Option<Halt>>,
}

impl HaltRegistry {
    /// Records `why` unless a halt was recorded before (the first reason wins), and
    /// cancels the token. Logs the sentence of the reason that is kept.
    pub(crate) fn halt(&self, why: Halt) {
        if let Halt::CredentialsRefused(refusal) = &why {
            self.refusal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(*refusal);
        }
        {
            let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if reason.is_none() {
                if let Halt::Unreachable(sentence) | Halt::WrongEndpoint(sentence) = &why {
                    tracing::error!(%sentence, "stopping the run");
                }
                *reason = Some(why);
            }
        }
        self.halted.cancel();
    }

    /// Cancelled once the run is halted for any reason.
    pub(crate) fn halted(&self) -> &CancellationToken {
        &self.halted
    }

    /// How the API refused the credentials, once it has.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner())
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
        halts.halt(Halt::CredentialsRefused(Refusal {
            http_status: Some(401),
            code: Some(20003),
        }));
        assert_eq!(
            halts.reason(),
            Some(Halt::WrongEndpoint("the endpoint".into()))
        );
        assert!(halts.halted().is_cancelled());
        assert_eq!(
            halts.refusal().map(|refusal| refusal.to_string()),
            Some("HTTP 401, Twilio error 20003".to_string())
        );
    }
}
