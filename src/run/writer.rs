//! The one writer of a run: owns the results file while the workers go on, writing and
//! flushing each row as it arrives, syncing every second, keeping the progress display and
//! the failed-out file, and stopping new rows once `--max-failures` is passed.
//!
//! A file it cannot write (a full disk, an I/O error, a file-size limit) stops the run
//! through the run's [`RunStop`]: no new request starts, and the writer keeps taking what
//! the SIMs in flight send it, so none of them waits on a writer that is gone. Rows that
//! can no longer be recorded are logged one by one (never with a secret) and counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::input::failed_out::FailedOut;
use crate::results::{Outcome, ResultRow, ResultsWriter};
use crate::run::onboard::Checkpoint;
use crate::run::progress::Progress;
use crate::run::stop::{EndReason, RunStop};
use crate::run::summary::{MaxFailures, NeedsAPerson};
use crate::run::timeline::RowTally;

/// What the writer receives.
pub(super) enum Written {
    Row(ResultRow, csv::ByteRecord, Option<String>),
    Skipped(Outcome, Option<(u64, csv::ByteRecord, String)>),
    /// Registered, update to follow: written at once (not counted), then acknowledged.
    Checkpoint(ResultRow, oneshot::Sender<()>),
    /// The account the preflight proved, written on every later row that has no SIM to
    /// name one. Sent before the first row, so every row of the run carries it.
    Account(Option<String>),
}

impl Checkpoint for mpsc::Sender<Written> {
    async fn record(&self, row: ResultRow) {
        let (done, written) = oneshot::channel();
        if self.send(Written::Checkpoint(row, done)).await.is_ok() {
            // An error means the writer stopped; the run is ending and the next step sees it.
            let _ = written.await;
        }
    }
}

/// How often the results file is synced to disk while rows arrive.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What the writer hands back at the end of a run.
pub(super) struct WriterEnd {
    pub(super) progress: Progress,
    /// The rows this run finished that need a person, for the summary.
    pub(super) needs_a_person: NeedsAPerson,
    /// Rows answered after the results file failed, so not recorded.
    pub(super) unrecorded: u64,
}

/// The files the writer owns; each is dropped (and written no more) after its first failure,
/// which stops the run.
struct Files {
    results: Option<ResultsWriter>,
    /// The results file as the user named it, for messages.
    results_name: String,
    failed_out: Option<FailedOut>,
    stop: Arc<RunStop>,
    unrecorded: u64,
}

impl Files {
    /// Records `failure` as the reason the run stops, and says so at once.
    fn fail(&self, failure: String) {
        crate::logs::error(format_args!(
            "{failure}; stopping the run: no new request is sent. Free the space (or fix \
             the file), then run the same command again to resume"
        ));
        self.stop.stop(EndReason::WriterFailed(failure));
    }

    /// Writes one row to the results file, or logs it as not recorded once that failed.
    fn write(&mut self, row: &ResultRow) {
        let Some(results) = &mut self.results else {
            self.unrecorded += 1;
            tracing::warn!(line = row.line, iccid = %row.iccid, outcome = %row.outcome, sid = row.sid.as_deref().unwrap_or(""), "answered, but not recorded: the results file cannot be written");
            return;
        };
        if let Err(error) = results.write(row) {
            self.results = None;
            self.fail(format!(
                "cannot write the results file {}: {error}",
                self.results_name
            ));
            self.write(row);
        }
    }

    fn copy_failed(&mut self, line: u64, fields: &csv::ByteRecord, reason: &str) {
        let Some(out) = &mut self.failed_out else {
            return;
        };
        if let Err(error) = out.write(line, fields, reason) {
            self.failed_out = None;
            self.fail(format!("cannot write the failed-out file: {error}"));
        }
    }

    fn sync(&mut self) {
        if let Some(results) = &mut self.results
            && let Err(error) = results.sync()
        {
            self.results = None;
            self.fail(format!(
                "cannot sync the results file {} to disk: {error}",
                self.results_name
            ));
        }
    }
}

/// Owns the results file: writes and flushes each row, syncs it every second and at the
/// end, keeps the progress display, and stops new rows once `--max-failures` is passed.
/// Also owns the failed-out file, if asked for one. Returns when every sender is gone.
pub(super) async fn write_results(
    (writer, results_name): (ResultsWriter, String),
    failed_out: Option<FailedOut>,
    mut rows: mpsc::Receiver<Written>,
    (mut progress, tally): (Progress, Arc<RowTally>),
    max_failures: Option<MaxFailures>,
    stop: Arc<RunStop>,
) -> WriterEnd {
    let mut files = Files {
        results: Some(writer),
        results_name,
        failed_out,
        stop,
        unrecorded: 0,
    };
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut limit_passed = false;
    let mut needs_a_person = NeedsAPerson::default();
    loop {
        tokio::select! {
            next = rows.recv() => match next {
                Some(Written::Row(row, fields, failed)) => {
                    files.write(&row);
                    if let Some(reason) = failed.or_else(|| failed_out_reason(&row)) {
                        files.copy_failed(row.line, &fields, &reason);
                    }
                    log_row(&row);
                    needs_a_person.note(&row);
                    progress.row_done(row.line, row.outcome);
                    tally.finished(row.outcome);
                    if !limit_passed {
                        let failed = progress.this_run.get(Outcome::Rejected)
                            + progress.this_run.get(Outcome::UpdateFailed);
                        let finished = progress.this_run.total();
                        if let Some(why) = max_failures.and_then(|limit| limit.exceeded(failed, finished)) {
                            tracing::error!("{why}: taking no new rows; finishing those in flight");
                            files.stop.stop(EndReason::MaxFailures(why));
                            limit_passed = true;
                        }
                    }
                }
                Some(Written::Skipped(outcome, failed)) => {
                    if let Some((line, fields, reason)) = failed {
                        files.copy_failed(line, &fields, &reason);
                    }
                    progress.row_skipped(outcome);
                }
                Some(Written::Checkpoint(row, done)) => {
                    files.write(&row);
                    tracing::debug!(line = row.line, iccid = %row.iccid, sid = row.sid.as_deref().unwrap_or(""), "registered; update next");
                    progress.checkpoint(row.line);
                    let _ = done.send(());
                }
                Some(Written::Account(account)) => {
                    if let Some(results) = &mut files.results {
                        results.set_account(account);
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                files.sync();
                progress.tick();
            }
        }
    }
    files.sync();
    if let Some(out) = files.failed_out.take() {
        match out.finish() {
            Ok(rows) => tracing::info!(
                rows,
                "wrote the failed-out file (owner-only: it holds registration codes)"
            ),
            Err(error) => files.fail(format!("cannot write the failed-out file: {error:#}")),
        }
    }
    WriterEnd {
        progress,
        needs_a_person,
        unrecorded: files.unrecorded,
    }
}

/// The reason a row the API answered goes to the failed-out file, or `None` if it does not.
fn failed_out_reason(row: &ResultRow) -> Option<String> {
    let message = row.error_message.as_deref().unwrap_or("");
    let code = row
        .error_code
        .map_or_else(String::new, |code| format!(" (Twilio error {code})"));
    match row.outcome {
        Outcome::Rejected => Some(format!("line {}: rejected{code}: {message}", row.line)),
        Outcome::UpdateFailed => Some(format!(
            "line {}: registered as {}, but the update was refused{code}: {message}",
            row.line,
            row.sid.as_deref().unwrap_or("?")
        )),
        Outcome::GaveUp => Some(format!(
            "line {}: gave up after {} attempts{code}: {message}",
            row.line, row.attempts
        )),
        _ => None,
    }
}

/// One log event per finished row, with stable field names for `--log-format json`.
/// Rows that need a person (`rejected`, `invalid`, `gave_up`, `update_failed`) are logged at
/// `warn`, a `duplicate` at `info`, the SIMs that are done at `debug`.
fn log_row(row: &ResultRow) {
    let sid = row.sid.as_deref().unwrap_or("");
    let message = row.error_message.as_deref().unwrap_or("");
    macro_rules! finished {
        ($level:ident) => {
            tracing::$level!(
                line = row.line,
                iccid = %row.iccid,
                outcome = %row.outcome,
                error_code = row.error_code,
                http_status = row.http_status,
                error_message = message,
                attempts = row.attempts,
                "row finished"
            )
        };
    }
    match row.outcome {
        Outcome::Registered | Outcome::AlreadyRegistered => {
            tracing::debug!(line = row.line, iccid = %row.iccid, outcome = %row.outcome, sid, attempts = row.attempts, "row finished");
        }
        // A repeat is sent once, under its first line: nothing for a person to do.
        Outcome::Duplicate => finished!(info),
        Outcome::Rejected | Outcome::Invalid | Outcome::GaveUp | Outcome::UpdateFailed => {
            finished!(warn)
        }
    }
}
