//! The one owner of "this run must stop now": [`RunStop`] keeps the first reason a run
//! stopped for, and the two tokens everything else watches; [`EndReason`] says why a run
//! ended, and [`EndReason::ending`] is the one place that turns it into the exit code, the
//! summary's `end` word and the sentence a person reads.
//!
//! Who stops a run, and what stops with it:
//!
//! | reason                 | set by                           | new rows | new requests |
//! |------------------------|----------------------------------|----------|--------------|
//! | interrupted            | SIGINT, SIGTERM, SIGHUP          | stop     | stop         |
//! | writer failed          | the results writer (disk full…)  | stop     | stop         |
//! | internal error         | a panic in the writer            | stop     | stop         |
//! | credentials refused, unreachable, wrong endpoint | the gate's halt registry | stop | stop |
//! | max failures           | the results writer               | stop     | go on        |
//! | input changed          | the reader                       | stop     | go on        |
//!
//! "New requests go on" means the SIMs already in progress finish (and are recorded); when
//! requests stop, answers already in flight are still recorded if they can be.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::api::Refusal;
use crate::api::gate::{Gate, Halt};
use crate::exit;
use crate::results::Outcome;
use crate::run::progress::Counts;

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// Every input row was read and every row sent was finished.
    Finished,
    /// SIGINT, SIGTERM or SIGHUP.
    Interrupted,
    /// `--max-failures` was exceeded; the text says by what.
    MaxFailures(String),
    /// The API refused the credentials (a 401, or 20003), as it answered.
    CredentialsRefused(Refusal),
    /// No request was answered and several in a row got no answer at all (DNS, refused,
    /// TLS, timeout): the text is one sentence saying which, with the URL. Exit 75; the
    /// rows not finished are left for the next run, none is written `gave_up` for it.
    Unreachable(String),
    /// An answer said the URL is not the endpoint (a 404, 405 or a 4xx without a Twilio
    /// error on `POST /v1/Sims`): the text names the URL. Exit 2; nothing is `rejected` for it.
    WrongEndpoint(String),
    /// The input changed between the plan and the main pass: the text names the line.
    /// Exit 75: run again once the file is complete.
    InputChanged(String),
    /// The results (or failed-out) file could not be written or synced: a full disk, an
    /// I/O error, a file-size limit. Exit 75: free the space, run again; the rows that were
    /// answered but not recorded are sent again and come back `already_registered`.
    WriterFailed(String),
    /// A bug: a worker or the writer failed, or a planned row was neither written nor
    /// counted. The text says what; the rows concerned are left for the next run.
    Internal(String),
}

/// What a run's end means to the people and scripts reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) exit_code: u8,
    /// The summary's `end` word.
    pub(crate) end: &'static str,
    /// The sentence the summary's `reason` and the logs carry, when there is one.
    pub(crate) reason: Option<String>,
}

impl EndReason {
    /// The one mapping from why a run ended to its exit code, `end` word and reason. A
    /// finished run's code depends on the rows it finished (`this_run`): refusals exit 1,
    /// rows that gave up on transient errors 75, else 0.
    pub(crate) fn ending(&self, this_run: &Counts) -> Ending {
        let (exit_code, end, reason) = match self {
            EndReason::Finished => {
                let code = if failed(this_run) > 0 {
                    exit::ROWS_FAILED
                } else if this_run.get(Outcome::GaveUp) > 0 {
                    exit::TEMPORARY_FAILURE
                } else {
                    exit::SUCCESS
                };
                (code, "finished", None)
            }
            EndReason::Interrupted => (exit::INTERRUPTED, "interrupted", None),
            EndReason::MaxFailures(why) => (exit::ROWS_FAILED, "max_failures", Some(why.clone())),
            // The status and code the API refused with, as the preflight's refusal gives
            // them: a monitor reading only the JSON learns whether it was 401 or 20003.
            EndReason::CredentialsRefused(refusal) => (
                exit::USAGE_OR_CONFIG,
                "credentials_refused",
                Some(format!("the API refused the credentials ({refusal})")),
            ),
            EndReason::Unreachable(why) => {
                (exit::TEMPORARY_FAILURE, "unreachable", Some(why.clone()))
            }
            EndReason::WrongEndpoint(why) => {
                (exit::USAGE_OR_CONFIG, "wrong_endpoint", Some(why.clone()))
            }
            EndReason::InputChanged(why) => {
                (exit::TEMPORARY_FAILURE, "input_changed", Some(why.clone()))
            }
            EndReason::WriterFailed(why) => {
                (exit::TEMPORARY_FAILURE, "writer_failed", Some(why.clone()))
            }
            EndReason::Internal(why) => (exit::INTERNAL_ERROR, "internal_error", Some(why.clone())),
        };
        Ending {
            exit_code,
            end,
            reason,
        }
    }

    /// Whether requests stop at once for this reason, or the SIMs in progress may finish.
    fn stops_requests(&self) -> bool {
        !matches!(
            self,
            EndReason::MaxFailures(_) | EndReason::InputChanged(_) | EndReason::Finished
        )
    }
}

impl From<Halt> for EndReason {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::CredentialsRefused(refusal) => EndReason::CredentialsRefused(refusal),
            Halt::Unreachable(why) => EndReason::Unreachable(why),
            Halt::WrongEndpoint(why) => EndReason::WrongEndpoint(why),
        }
    }
}

/// Rows refused for good or never sendable: what a person has to look at.
pub(crate) fn failed(counts: &Counts) -> u64 {
    counts.get(Outcome::Rejected) + counts.get(Outcome::Invalid) + counts.get(Outcome::UpdateFailed)
}

/// The first reason a run stopped for, and the tokens that carry it: `no_new_rows` (the
/// reader and the dispatcher) and `no_new_requests` (the gate, so retries and updates
/// stop too). Both are children of the process's interrupt token.
#[derive(Debug)]
pub(crate) struct RunStop {
    interrupt: CancellationToken,
    no_new_requests: CancellationToken,
    no_new_rows: CancellationToken,
    reason: Mutex<Option<EndReason>>,
}

impl RunStop {
    /// A run that stops on `interrupt` (the signals) or on its own reasons.
    pub(crate) fn new(interrupt: &CancellationToken) -> Self {
        let no_new_requests = interrupt.child_token();
        let no_new_rows = no_new_requests.child_token();
        RunStop {
            interrupt: interrupt.clone(),
            no_new_requests,
            no_new_rows,
            reason: Mutex::default(),
        }
    }

    /// Stops the run for `why` unless it stopped already (the first reason wins).
    pub(crate) fn stop(&self, why: EndReason) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_some() {
            return;
        }
        if why.stops_requests() {
            self.no_new_requests.cancel();
        }
        self.no_new_rows.cancel();
        *reason = Some(why);
    }

    /// Cancelled once nothing new may be read or dispatched.
    pub(crate) fn no_new_rows(&self) -> &CancellationToken {
        &self.no_new_rows
    }

    /// Cancelled once no request may start: the token the gate is built with.
    pub(crate) fn no_new_requests(&self) -> &CancellationToken {
        &self.no_new_requests
    }

    /// Folds in the stops this owner did not see happen: a halt the gate recorded, or an
    /// interrupt. Called when the gate halts and once more when the run ends.
    pub(crate) fn notice(&self, gate: &Gate) {
        if let Some(halt) = gate.halt_reason() {
            self.stop(halt.into());
        } else if self.interrupt.is_cancelled() {
            self.stop(EndReason::Interrupted);
        }
    }

    /// Why the run stopped, if it did.
    pub(crate) fn reason(&self) -> Option<EndReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records every stop as it happens (a halt, an interrupt), so the first reason is
    /// the one kept; ends when either has happened or the run is over.
    pub(crate) async fn watch(&self, gate: &Gate, run_over: &CancellationToken) {
        tokio::select! {
            _ = gate.halted().cancelled() => {}
            _ = self.interrupt.cancelled() => {}
            _ = run_over.cancelled() => return,
        }
        self.notice(gate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_decides_what_stops() {
        let interrupt = CancellationToken::new();
        let stop = RunStop::new(&interrupt);
        stop.stop(EndReason::MaxFailures("too many".into()));
        assert!(stop.no_new_rows().is_cancelled());
        assert!(
            !stop.no_new_requests().is_cancelled(),
            "the SIMs in progress finish"
        );
        stop.stop(EndReason::WriterFailed("disk full".into()));
        assert_eq!(
            stop.reason(),
            Some(EndReason::MaxFailures("too many".into()))
        );

        let stop = RunStop::new(&interrupt);
        stop.stop(EndReason::WriterFailed("disk full".into()));
        assert!(stop.no_new_requests().is_cancelled());
        assert!(stop.no_new_rows().is_cancelled());
        assert!(!interrupt.is_cancelled(), "a run's stop is not a signal");
    }

    #[test]
    fn an_interrupt_stops_rows_and_requests() {
        let interrupt = CancellationToken::new();
        let stop = RunStop::new(&interrupt);
        interrupt.cancel();
        assert!(stop.no_new_requests().is_cancelled());
        assert!(stop.no_new_rows().is_cancelled());
    }

    #[test]
    fn each_reason_maps_to_its_documented_exit_code_and_word() {
        let none = Counts::default();
        let cases = [
            (EndReason::Finished, 0, "finished"),
            (EndReason::Interrupted, 130, "interrupted"),
            (EndReason::MaxFailures("x".into()), 1, "max_failures"),
            (
                EndReason::CredentialsRefused(Refusal {
                    http_status: Some(401),
                    code: None,
                }),
                2,
                "credentials_refused",
            ),
            (EndReason::Unreachable("x".into()), 75, "unreachable"),
            (EndReason::WrongEndpoint("x".into()), 2, "wrong_endpoint"),
            (EndReason::InputChanged("x".into()), 75, "input_changed"),
            (EndReason::WriterFailed("x".into()), 75, "writer_failed"),
            (EndReason::Internal("x".into()), 70, "internal_error"),
        ];
        for (reason, code, word) in cases {
            let ending = reason.ending(&none);
            assert_eq!((ending.exit_code, ending.end), (code, word), "{reason:?}");
        }
    }
}
