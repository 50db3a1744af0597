//! A run as the files written after it see it (the HTML report, the metrics file): when it
//! started and ended, its exit code and why, the summary when it got that far, the timeline
//! when requests could be sent, and what it ran against. A run that stopped before it
//! started (a flag, the credentials, a locked file) has a record too, without a summary.

use std::time::SystemTime;

use crate::run::summary::RunSummary;
use crate::run::timeline::Timeline;

#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub(crate) started_at: SystemTime,
    pub(crate) finished_at: SystemTime,
    pub(crate) exit_code: u8,
    /// The summary JSON's `end` word (`finished`, `interrupted`, ...), or `error` for a run
    /// that stopped before its summary.
    pub(crate) end: String,
    /// Why it ended, when the end word needs a sentence.
    pub(crate) reason: Option<String>,
    pub(crate) summary: Option<RunSummary>,
    pub(crate) timeline: Option<Timeline>,
    /// The command line, with anything secret in it replaced.
    pub(crate) command_line: String,
    /// The account the run registers on, when the credentials name it.
    pub(crate) account: Option<String>,
    /// The API's base URL, or the built-in emulator.
    pub(crate) api: String,
}

impl RunRecord {
    /// The record of a run that ended with `summary`.
    pub(crate) fn of_summary(
        summary: RunSummary,
        timeline: Option<Timeline>,
        about: About,
    ) -> Self {
        let ending = summary.end.ending(&summary.this_run);
        RunRecord {
            started_at: summary.started_at,
            finished_at: summary.finished_at,
            exit_code: ending.exit_code,
            end: ending.end.to_string(),
            reason: ending.reason,
            summary: Some(summary),
            timeline,
            command_line: about.command_line,
            account: about.account,
            api: about.api,
        }
    }

    /// The record of a run that stopped with `exit_code` before it had a summary.
    pub(crate) fn of_error(
        started_at: SystemTime,
        exit_code: u8,
        reason: String,
        timeline: Option<Timeline>,
        about: About,
    ) -> Self {
        RunRecord {
            started_at,
            finished_at: SystemTime::now(),
            exit_code,
            end: "error".to_string(),
            reason: Some(reason),
            summary: None,
            timeline,
            command_line: about.command_line,
            account: about.account,
            api: about.api,
        }
    }
}

/// What a run ran: its command line (no secret in it), account and API.
#[derive(Debug, Clone, Default)]
pub(crate) struct About {
    pub(crate) command_line: String,
    pub(crate) account: Option<String>,
    pub(crate) api: String,
}
