//! The one writer of a run: owns the results file while the workers go on, writing and
//! flushing each row as it arrives, syncing every second, keeping the progress display and
//! the failed-out file, and stopping new rows once `--max-failures` is passed.

use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::input::failed_out::FailedOut;
use crate::results::{Outcome, ResultRow, ResultsWriter};
use crate::run::onboard::Checkpoint;
use crate::run::progress::Progress;
use crate::run::summary::MaxFailures;

/// What the writer receives.
pub(super) enum Written {
    Row(ResultRow, csv::ByteRecord, Option<String>),
    Skipped(Outcome, Option<(csv::ByteRecord, String)>),
    /// Registered, update to follow: written at once (not counted), then acknowledged.
    Checkpoint(ResultRow, oneshot::Sender<()>),
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
    /// Set when `--max-failures` stopped the run, saying why.
    pub(super) max_failures_exceeded: Option<String>,
}

/// Owns the results file: writes and flushes each row, syncs it every second and at the
/// end, keeps the progress display, and stops new rows once `--max-failures` is passed.
/// Also owns the failed-out file, if asked for one.
pub(super) async fn write_results(
    mut writer: ResultsWriter,
    mut failed_out: Option<FailedOut>,
    mut rows: mpsc::Receiver<Written>,
    mut progress: Progress,
    max_failures: Option<MaxFailures>,
    no_new_rows: CancellationToken,
) -> anyhow::Result<WriterEnd> {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut max_failures_exceeded = None;
    loop {
        tokio::select! {
            next = rows.recv() => match next {
                Some(Written::Row(row, fields, failed)) => {
                    write_or_stop(&mut writer, &row, &no_new_rows)?;
                    if let (Some(out), Some(reason)) = (&mut failed_out, failed.or_else(|| failed_out_reason(&row))) {
                        out.write(&fields, &reason).context("cannot write the failed-out file")?;
                    }
                    log_row(&row);
                    progress.row_done(row.line, row.outcome);
                    if max_failures_exceeded.is_none() {
                        let failed = progress.this_run.get(Outcome::Rejected)
                            + progress.this_run.get(Outcome::UpdateFailed);
                        let finished = progress.this_run.total();
                        if let Some(why) = max_failures.and_then(|limit| limit.exceeded(failed, finished)) {
                            tracing::error!("{why}: taking no new rows; finishing those in flight");
                            no_new_rows.cancel();
                            max_failures_exceeded = Some(why);
                        }
                    }
                }
                Some(Written::Skipped(outcome, failed)) => {
                    if let (Some(out), Some((fields, reason))) = (&mut failed_out, failed) {
                        out.write(&fields, &reason).context("cannot write the failed-out file")?;
                    }
                    progress.row_skipped(outcome);
                }
                Some(Written::Checkpoint(row, done)) => {
                    write_or_stop(&mut writer, &row, &no_new_rows)?;
                    tracing::debug!(line = row.line, iccid = %row.iccid, sid = row.sid.as_deref().unwrap_or(""), "registered; update next");
                    progress.checkpoint(row.line);
                    let _ = done.send(());
                }
                None => break,
            },
            _ = tick.tick() => {
                writer.sync().context("cannot sync the results file")?;
                progress.tick();
            }
        }
    }
    writer.sync().context("cannot sync the results file")?;
    if let Some(out) = failed_out {
        let rows = out.finish()?;
        tracing::info!(
            rows,
            "wrote the failed-out file (owner-only: it holds registration codes)"
        );
    }
    Ok(WriterEnd {
        progress,
        max_failures_exceeded,
    })
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

/// Writes one row; without a results file nothing more can be recorded, so a failure
/// stops the run from taking new rows.
fn write_or_stop(
    writer: &mut ResultsWriter,
    row: &ResultRow,
    no_new_rows: &CancellationToken,
) -> anyhow::Result<()> {
    writer.write(row).map_err(|error| {
        no_new_rows.cancel();
        anyhow::anyhow!("cannot write the results file: {error}")
    })
}

/// One log event per finished row, with stable field names for `--log-format json`.
/// Rows that need a person's attention are logged at `info`, the rest at `debug`.
fn log_row(row: &ResultRow) {
    let sid = row.sid.as_deref().unwrap_or("");
    let message = row.error_message.as_deref().unwrap_or("");
    if row.outcome.is_done() {
        tracing::debug!(line = row.line, iccid = %row.iccid, outcome = %row.outcome, sid, attempts = row.attempts, "row finished");
    } else {
        tracing::info!(
            line = row.line,
            iccid = %row.iccid,
            outcome = %row.outcome,
            error_code = row.error_code,
            http_status = row.http_status,
            error_message = message,
            attempts = row.attempts,
            "row finished"
        );
    }
}
