//! The `register` job: wires the input reader, the worker pool and the results writer
//! together, and decides how the run ends.
//!
//! ```text
//! reader thread ──bounded──▶ dispatcher ──spawns, at most N at once──▶ workers
//!   (read, check,               │                                        │
//!    dedupe, resume)            └────────────bounded────────▶ writer ◀───┘
//!                                                           (results file, progress)
//! ```
//! The reader runs on a blocking thread because it reads synchronously; the bounded
//! channels keep memory flat whatever the size of the input. Before it starts, a [`Plan`]
//! works out on disk which rows repeat an earlier one and what earlier runs recorded for
//! each line, so nothing per ICCID is held in memory. Checks and dedupe are [`Screen`]'s,
//! the same ones `validate` runs; this module adds only what resuming needs.
//! Each row carries its input fields to the writer, which copies failed rows to the
//! `--failed-out` file.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::api::gate::{Gate, RequestStats};
use crate::input::checks::Column;
use crate::input::failed_out::FailedOut;
use crate::input::screen::locate;
use crate::input::screen::{Problem, Screen, Verdict, join_reasons};
use crate::input::{InputError, InputRow, SimReader};
use crate::results::{Outcome, ResultRow, ResultsWriter};
use crate::run::config::RegisterConfig;
use crate::run::lock::{LockError, RunLock};
use crate::run::onboard::{self, FleetNames, Job};
use crate::run::plan::{LineFacts, Plan, PlanError, Replayable, temp_dir_beside};
use crate::run::progress::Progress;
use crate::run::registration::SendRow;
use crate::run::resume::{self, OnboardConfig, Resume};
use crate::run::summary::{ConcurrencyReport, EndReason, RunSummary};
use crate::run::writer::{Written, write_results};

/// Why a run ended without a summary worth an exit code of its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// Another run holds the results file.
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("{0:#}")]
    Setup(anyhow::Error),
    /// The input changed between the plan and the main pass: try again later.
    #[error("{0}")]
    InputChanged(String),
}

impl From<PlanError> for RunError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Input(error) => RunError::Input(error),
            PlanError::Other(error) => RunError::Setup(error),
        }
    }
}

/// What the reader hands to the dispatcher for each input row, with the row's input fields
/// for the failed-out file.
enum Work {
    /// Checked, and a step is still missing: register it, or update it, or both; then
    /// record these warnings with its result.
    Send(Job, Option<String>, csv::ByteRecord),
    /// Settled without a request (`invalid`, `duplicate`): write this row, and copy it to
    /// the failed-out file with this reason if it has one.
    Report(ResultRow, csv::ByteRecord, Option<String>),
    /// Finished by an earlier run: count it, write nothing (but copy it to the failed-out
    /// file, with this reason, when it ended `invalid` or `rejected`).
    Skip(Outcome, Option<(csv::ByteRecord, String)>),
}

/// Runs a whole `register` job against the API `client` talks to. `stop` is cancelled on the first interrupt: reading stops,
/// SIMs in progress get `grace` to finish their current request and are written, and the
/// run ends.
pub async fn run(
    config: RegisterConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<RunSummary, RunError> {
    let started_at = std::time::SystemTime::now();
    // Temporary files (the plan's sorts, a spool of standard input) go beside the results.
    let temp_dir = temp_dir_beside(&config.output);
    let input = Replayable::new(&config.input, &temp_dir)?;
    let reader = input.open(config.read)?;
    config
        .onboard
        .check_fleet_source(reader.has_fleet_column(), reader.display_name())
        .map_err(RunError::Setup)?;
    let _lock = RunLock::acquire(&config.output)?;
    let (writer, earlier) = ResultsWriter::open(&config.output).map_err(RunError::Setup)?;
    let screen = Screen::new(config.strict);
    let plan = {
        let first_pass = input.open(config.read)?;
        tokio::task::spawn_blocking(move || Plan::build(first_pass, screen, earlier, &temp_dir))
            .await
            .map_err(|panic| {
                RunError::Setup(anyhow::anyhow!("planning the run failed: {panic}"))
            })??
    };
    if plan.earlier_rows > 0 {
        tracing::info!(rows = plan.earlier_rows, results = %config.output.display(), "resuming from an earlier run's results");
    }
    let failed_out = match &config.failed_out {
        Some(path) => Some(
            FailedOut::create(path, reader.header(), reader.delimiter())
                .map_err(RunError::Setup)?,
        ),
        None => None,
    };
    let gate = Arc::new(Gate::new(client, config.limits, stop.clone()));

    let plan_rows = plan.rows;
    let progress = Progress::new(plan.rows, config.progress_interval);

    let channel_size = config.limits.concurrency * 2;
    let (work_tx, work_rx) = mpsc::channel(channel_size);
    let (written_tx, written_rx) = mpsc::channel(channel_size);
    let retry_rejected = config.retry_rejected;
    // Cancelled when no new rows should start: an interrupt, or too many failures.
    let no_new_rows = stop.child_token();
    let reader_stop = no_new_rows.clone();
    let onboard = config.onboard.clone();
    let reader_thread = tokio::task::spawn_blocking(move || {
        read_input(
            reader,
            screen,
            plan,
            retry_rejected,
            &onboard,
            &work_tx,
            &reader_stop,
        )
    });
    let writer_task = tokio::spawn(write_results(
        writer,
        failed_out,
        written_rx,
        progress,
        config.max_failures,
        no_new_rows.clone(),
    ));

    let limits = DispatchLimits {
        concurrency: config.limits.concurrency,
        wait: config.onboard.wait_limit(),
        grace: config.grace,
    };
    let failed_workers = dispatch(work_rx, &gate, &limits, written_tx, &no_new_rows, &stop).await;

    let written = writer_task
        .await
        .context("the results writer failed")
        .and_then(|result| result)
        .map_err(RunError::Setup)?;
    let elapsed = written.progress.finish();
    match reader_thread.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(panic) => {
            return Err(RunError::Setup(anyhow::anyhow!(
                "the input reader failed: {panic}"
            )));
        }
    }
    let end = if gate.credentials_refused().is_cancelled() {
        EndReason::CredentialsRefused
    } else if stop.is_cancelled() {
        EndReason::Interrupted
    } else if failed_workers > 0 {
        EndReason::Internal(format!(
            "{failed_workers} row(s) failed unexpectedly inside a worker"
        ))
    } else if let Some(why) = written.max_failures_exceeded {
        EndReason::MaxFailures(why)
    } else {
        let accounted = written.progress.this_run.total() + written.progress.skipped.total();
        if accounted == plan_rows {
            EndReason::Finished
        } else {
            EndReason::Internal(format!(
                "{} of {plan_rows} planned rows were neither written nor counted",
                plan_rows.saturating_sub(accounted)
            ))
        }
    };
    let stats = &gate.stats;
    Ok(RunSummary {
        started_at,
        finished_at: std::time::SystemTime::now(),
        input: config.input.display_name(),
        results_path: config.output.clone(),
        this_run: written.progress.this_run,
        skipped: written.progress.skipped,
        elapsed,
        requests: RequestStats::get(&stats.requests),
        retries: RequestStats::get(&stats.retries),
        throttled: RequestStats::get(&stats.throttled),
        concurrency: ConcurrencyReport::new(
            config.limits.concurrency,
            config.limits.adaptive,
            config.limits.max_share,
            gate.concurrency.observed(),
            RequestStats::get(&stats.requests),
            RequestStats::get(&stats.throttled),
        ),
        end,
    })
}

/// Reads and checks the input, with the plan's facts for each line (repeats, earlier runs),
/// deciding for each row whether it is sent.
#[allow(clippy::too_many_arguments)]
fn read_input(
    mut reader: SimReader,
    screen: Screen,
    mut plan: Plan,
    retry_rejected: bool,
    onboard: &OnboardConfig,
    work: &mpsc::Sender<Work>,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    while let Some(row) = reader.next_row() {
        if stop.is_cancelled() {
            break;
        }
        let row = row?;
        if !plan.covers(row.line) {
            tracing::info!(
                line = row.line,
                "rows were added to the input after this run planned it; the next run takes them"
            );
            break;
        }
        let facts = plan
            .at(row.line)
            .context("cannot read the run's plan back from its temporary file")
            .map_err(RunError::Setup)?;
        if !facts.fit_row(screen.sendable_key(&row)) {
            return Err(RunError::InputChanged(format!(
                "line {} of {} is not the row this run planned from: the input changed while \
                 the run was going; nothing was skipped for it. Run again once the file is \
                 complete",
                row.line,
                reader.display_name()
            )));
        }
        let next = triage(row, &facts, retry_rejected, onboard, &screen);
        if work.blocking_send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// Decides what happens to one input row: the shared checks and dedupe, the onboarding
/// plan, then resuming, from the plan's `facts` about the row's line. No I/O.
fn triage(
    row: InputRow,
    facts: &LineFacts,
    retry_rejected: bool,
    onboard: &OnboardConfig,
    screen: &Screen,
) -> Work {
    let verdict = screen.judge(&row, facts.duplicate_of);
    let settled = |outcome: Outcome, iccid: String, message: String, failed: Option<String>| {
        if facts.already_reported() {
            Work::Skip(outcome, failed.map(|reason| (row.fields.clone(), reason)))
        } else {
            let mut result = ResultRow::new(row.line, iccid, outcome);
            result.error_message = Some(message);
            Work::Report(result, row.fields.clone(), failed)
        }
    };
    let invalid = |iccid: String, problems: &[Problem]| {
        settled(
            Outcome::Invalid,
            iccid,
            join_reasons(problems),
            Some(locate(row.line, problems)),
        )
    };
    let (iccid, warnings) = match verdict {
        Verdict::Invalid { iccid, problems } => return invalid(iccid, &problems),
        Verdict::Duplicate { iccid, first_line } => {
            let message = Verdict::duplicate_problem(first_line).reason;
            return settled(Outcome::Duplicate, iccid, message, None);
        }
        Verdict::Send { iccid, warnings } => (iccid, warnings),
    };
    let plan = match onboard.plan_for(row.fleet.clone(), row.unique_name.clone()) {
        Ok(plan) => plan,
        Err(reason) => {
            let problem = Problem {
                column: Column::Row,
                reason,
            };
            return invalid(iccid, &[problem]);
        }
    };
    let warning = (!warnings.is_empty()).then(|| join_reasons(&warnings));
    if let Some(warning) = &warning {
        tracing::warn!(line = row.line, %iccid, %warning, "sending despite a warning");
    }
    let resume = match resume::resume(facts.sim(), &plan, retry_rejected) {
        Resume::Skip(Outcome::Rejected) => {
            let reason = format!(
                "line {}: rejected by the API in an earlier run (see the results file)",
                row.line
            );
            return Work::Skip(Outcome::Rejected, Some((row.fields, reason)));
        }
        Resume::Skip(outcome) => return Work::Skip(outcome, None),
        Resume::Update(prior) => Some(prior),
        Resume::Register => None,
    };
    let job = Job {
        row: SendRow {
            line: row.line,
            iccid,
            code: row.code,
        },
        plan,
        resume,
    };
    Work::Send(job, warning, row.fields)
}

/// The dispatcher's limits.
#[derive(Debug, Clone, Copy)]
struct DispatchLimits {
    /// SIMs in progress at once.
    concurrency: usize,
    /// With `--wait`, how long one SIM may be polled.
    wait: Option<Duration>,
    /// After an interrupt, how long SIMs in progress may take to finish.
    grace: Duration,
}

/// Hands rows to workers, never more than `concurrency` at once, until the input ends or
/// `no_new_rows` is cancelled. Then waits for the workers; after an interrupt (`stop`) it
/// waits at most `grace`, and abandons what is still in flight (those SIMs get no row, so
/// the next run sends them again). Returns how many workers failed unexpectedly.
async fn dispatch(
    mut work: mpsc::Receiver<Work>,
    gate: &Arc<Gate>,
    limits: &DispatchLimits,
    written: mpsc::Sender<Written>,
    no_new_rows: &CancellationToken,
    stop: &CancellationToken,
) -> u64 {
    let DispatchLimits {
        concurrency,
        wait,
        grace,
    } = *limits;
    let permits = Arc::new(Semaphore::new(concurrency));
    let refused = gate.credentials_refused().clone();
    let fleet_names = Arc::new(FleetNames::default());
    let mut workers = JoinSet::new();
    let mut failed = 0;
    loop {
        let next = tokio::select! {
            biased;
            _ = no_new_rows.cancelled() => None,
            _ = refused.cancelled() => None,
            next = work.recv() => next,
        };
        let Some(next) = next else { break };
        match next {
            Work::Send(job, warning, fields) => {
                let permit = tokio::select! {
                    biased;
                    _ = no_new_rows.cancelled() => break,
                    _ = refused.cancelled() => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                };
                let gate = gate.clone();
                let fleet_names = fleet_names.clone();
                let written = written.clone();
                workers.spawn(async move {
                    if let Some(mut result) =
                        onboard::onboard(&gate, &fleet_names, job, wait, &written).await
                    {
                        result.warning = warning;
                        let _ = written.send(Written::Row(result, fields, None)).await;
                    }
                    drop(permit);
                });
                while let Some(joined) = workers.try_join_next() {
                    failed += worker_failed(joined);
                }
            }
            Work::Report(row, fields, failed) => {
                let _ = written.send(Written::Row(row, fields, failed)).await;
            }
            Work::Skip(outcome, failed) => {
                let _ = written.send(Written::Skipped(outcome, failed)).await;
            }
        }
    }
    // Closing the work channel makes the reader's next send fail, so it stops reading.
    drop(work);
    let drain = async {
        while let Some(joined) = workers.join_next().await {
            failed += worker_failed(joined);
        }
    };
    let grace_over = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let drained = tokio::select! {
        () = drain => true,
        () = grace_over => false,
    };
    if !drained {
        tracing::warn!(
            grace = %humantime::format_duration(grace),
            "requests still in flight after the grace period were abandoned; the next run sends them again"
        );
        workers.shutdown().await;
    }
    failed
}

/// 1 when a worker's task panicked (a bug), logged with what the panic said; 0 otherwise.
/// The row it held gets no result row, so the next run tries it again.
fn worker_failed(joined: Result<(), tokio::task::JoinError>) -> u64 {
    match joined {
        Err(error) if error.is_panic() => {
            tracing::error!(%error, "a worker failed unexpectedly; its row is left for the next run");
            1
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(line: u64, iccid: &str, code: &str) -> InputRow {
        InputRow::for_test(line, iccid, code)
    }

    #[tokio::test]
    async fn a_panicking_worker_is_counted_not_swallowed() {
        let mut workers = JoinSet::new();
        workers.spawn(async { panic!("a bug in a worker") });
        workers.spawn(async {});
        let mut failed = 0;
        while let Some(joined) = workers.join_next().await {
            failed += worker_failed(joined);
        }
        assert_eq!(failed, 1);
    }

    fn kind(work: &Work) -> String {
        match work {
            Work::Send(job, _, _) => format!("send {}", job.row.iccid),
            Work::Report(row, _, _) => format!("{} {}", row.outcome, row.iccid),
            Work::Skip(outcome, _) => format!("skip {outcome}"),
        }
    }

    #[test]
    fn triage_checks_then_dedupes_then_resumes() {
        let screen = Screen::new(false);
        let onboard = OnboardConfig::default();
        let rows = [
            input(2, "8988 3070 0001 2345 6789", "H3LL0W0RLD"),
            input(3, "89883070000123456789", "H3LL0W0RLD"),
            input(4, "12345", "H3LL0W0RLD"),
            input(5, "89883070000123456789", "short"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::build_from_rows(
            rows.iter().cloned().map(Ok),
            screen,
            crate::results::EarlierRows::none(),
            dir.path(),
            None,
        )
        .unwrap();
        let mut decide = |line: u64, iccid, code| {
            let facts = plan.at(line).unwrap();
            kind(&triage(
                input(line, iccid, code),
                &facts,
                false,
                &onboard,
                &screen,
            ))
        };
        assert_eq!(
            decide(2, "8988 3070 0001 2345 6789", "H3LL0W0RLD"),
            "send 89883070000123456789"
        );
        assert_eq!(
            decide(3, "89883070000123456789", "H3LL0W0RLD"),
            "duplicate 89883070000123456789"
        );
        assert_eq!(decide(4, "12345", "H3LL0W0RLD"), "invalid 12345");
        assert_eq!(
            decide(5, "89883070000123456789", "short"),
            "invalid 89883070000123456789",
            "invalid wins over duplicate"
        );
    }
}
