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
//!
//! A run is three steps: [`prepare`] (input, results file, lock, plan: nothing sent),
//! the pipeline (reader, [`dispatch`](super::dispatch), workers, writer, all stopping
//! through one [`RunStop`]), and [`finish`] (why it ended, compaction, the summary).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::api::gate::{Gate, RequestStats};
use crate::input::SimReader;
use crate::input::failed_out::FailedOut;
use crate::input::screen::Screen;
use crate::results::ResultsWriter;
use crate::results::compact::{compact, outcomes_in_input};
use crate::run::account::{Preflight, check_account};
use crate::run::config::RegisterConfig;
use crate::run::dispatch::{DispatchLimits, dispatch};
pub(crate) use crate::run::error::RunError;
use crate::run::fleets::ResolvedFleets;
use crate::run::lock::RunLock;
use crate::run::plan::{InputSims, Plan, Replayable, temp_dir_beside};
use crate::run::progress::{Counts, Progress};
use crate::run::stop::{EndReason, RunStop};
use crate::run::summary::{ConcurrencyReport, RunSummary};
use crate::run::timeline::{RowTally, Timeline, sample_until};
use crate::run::triage::{LazyFleets, read_input};
use crate::run::writer::{WriterEnd, write_results};

/// How a run ended, with the lock on the results file when it was taken: the caller
/// writes the summary JSON while still holding it, then drops it. The timeline is there
/// once requests could be sent (the pipeline started), whatever ended the run.
pub(crate) struct Ended {
    pub(crate) result: Result<RunSummary, RunError>,
    pub(crate) lock: Option<RunLock>,
    pub(crate) timeline: Option<Timeline>,
}

/// Runs a whole `register` job against the API `client` talks to. `interrupt` is cancelled
/// on the first SIGINT, SIGTERM or SIGHUP: reading stops, SIMs in progress get `grace` to
/// finish their current request and are written, and the run ends. The lock on the results
/// file is handed back still held (when it was taken), so whatever the caller writes about
/// the run is written before another run can start.
pub(crate) async fn run(
    config: RegisterConfig,
    client: Client,
    interrupt: CancellationToken,
) -> Ended {
    let mut lock = None;
    let mut timeline = None;
    let result = async {
        let prepared = prepare(&config, &mut lock).await?;
        let piped = pipeline(&config, client, prepared, &interrupt, &mut timeline).await?;
        Ok(finish(&config, piped).await)
    }
    .await;
    Ended {
        result,
        lock,
        timeline,
    }
}

/// What a run has before its first request: nothing sent yet.
struct Prepared {
    started_at: SystemTime,
    /// The results file, by its real path.
    results: PathBuf,
    writer: ResultsWriter,
    reader: SimReader,
    screen: Screen,
    plan: Plan,
    failed_out: Option<FailedOut>,
    preflight: Preflight,
}

/// Opens the input, claims and locks the results file, builds the plan, and refuses a
/// results file of another account when the credentials name this one.
async fn prepare(
    config: &RegisterConfig,
    lock: &mut Option<RunLock>,
) -> Result<Prepared, RunError> {
    let started_at = SystemTime::now();
    // Temporary files (the plan's sorts, a spool of standard input) go beside the results.
    let temp_dir = temp_dir_beside(&config.output);
    let input = Replayable::new(&config.input, &temp_dir)?;
    let reader = input.open(config.read)?;
    config
        .onboard
        .check_fleet_source(reader.has_fleet_column(), reader.display_name())
        .map_err(RunError::Setup)?;
    // The results file is checked (and created) before the lock, which is taken by its
    // real path: a file that is not ours is refused untouched, and every spelling of one
    // results file, a symlink to it included, shares one lock.
    let results = ResultsWriter::claim(&config.output).map_err(RunError::Setup)?;
    *lock = Some(RunLock::acquire(&results)?);
    let (mut writer, earlier) = ResultsWriter::open(&results).map_err(RunError::Setup)?;
    let screen = Screen::new(config.strict);
    let plan = {
        let first_pass = input.open(config.read)?;
        tokio::task::spawn_blocking(move || Plan::build(first_pass, screen, earlier, &temp_dir))
            .await
            .map_err(|panic| {
                RunError::Setup(anyhow::anyhow!("planning the run failed: {panic}"))
            })??
    };
    // A results file from another account (or a rehearsal) is refused before anything is
    // sent: checked now when the credentials name the account, else by the preflight.
    let results_name = config.output.display().to_string();
    check_account(
        &results_name,
        config.account_sid.as_deref(),
        &plan.earlier_accounts,
    )?;
    // Replaced by the account the preflight proves before the first row is written.
    writer.set_account(config.account_sid.clone());
    let preflight = Preflight {
        said: config.account_sid.clone(),
        earlier_accounts: plan.earlier_accounts.clone(),
        results: results_name,
        done: false,
    };
    if crate::logs::interactive() {
        tracing::info!("{}", start_line(config, &plan));
    } else if plan.earlier_rows > 0 {
        tracing::info!(rows = plan.earlier_rows, results = %config.output.display(), "resuming from an earlier run's results");
    }
    let failed_out = match &config.failed_out {
        Some(path) => Some(
            FailedOut::create(path, reader.header(), reader.delimiter())
                .map_err(RunError::Setup)?,
        ),
        None => None,
    };
    Ok(Prepared {
        started_at,
        results,
        writer,
        reader,
        screen,
        plan,
        failed_out,
        preflight,
    })
}

/// The start line on a terminal, once the input is counted: what, how many rows, where to.
/// `registering 205 rows from sims.csv into sims.results.csv (180 earlier results to resume
/// from), against the built-in emulator`.
fn start_line(config: &RegisterConfig, plan: &Plan) -> String {
    let mut line = format!(
        "registering {} row{} from {} into {}",
        plan.rows,
        if plan.rows == 1 { "" } else { "s" },
        config.input.display_name(),
        config.output.display()
    );
    if plan.earlier_rows > 0 {
        line.push_str(&format!(
            " ({} earlier result{} to resume from)",
            plan.earlier_rows,
            if plan.earlier_rows == 1 { "" } else { "s" }
        ));
    }
    if matches!(config.target, crate::config::Target::Emulator { .. }) {
        line.push_str(", against the built-in emulator");
    }
    line
}

/// What the pipeline hands to [`finish`].
struct Piped {
    started_at: SystemTime,
    results: PathBuf,
    gate: Arc<Gate>,
    stop: Arc<RunStop>,
    /// `None` when the writer itself failed (a bug): its counts are lost.
    written: Option<WriterEnd>,
    elapsed: Duration,
    failed_workers: u64,
    plan_rows: u64,
    /// The input's ICCIDs and their first lines: compaction puts each SIM's row there.
    input_sims: Option<InputSims>,
}

/// Runs the reader, the dispatcher and its workers, and the writer, until the input ends
/// or the run stops. Every stop goes through one [`RunStop`]. The run's timeline is left
/// in `timeline` however the pipeline ends.
async fn pipeline(
    config: &RegisterConfig,
    client: Client,
    prepared: Prepared,
    interrupt: &CancellationToken,
    timeline: &mut Option<Timeline>,
) -> Result<Piped, RunError> {
    let Prepared {
        started_at,
        results,
        writer,
        reader,
        screen,
        mut plan,
        failed_out,
        preflight,
    } = prepared;
    let stop = Arc::new(RunStop::new(interrupt));
    // SIMs the results file has no row for go out whatever it says: they size the start.
    let gate = Arc::new(Gate::for_run(
        client,
        config.limits,
        stop.no_new_requests().clone(),
        plan.new_sims,
    ));
    // Halts and interrupts are recorded as they happen, so the first reason is kept.
    let run_over = CancellationToken::new();
    let watcher = {
        let (stop, gate, run_over) = (Arc::clone(&stop), Arc::clone(&gate), run_over.clone());
        tokio::spawn(async move { stop.watch(&gate, &run_over).await })
    };
    let tally = Arc::new(RowTally::default());
    let sampler = tokio::spawn(sample_until(
        Arc::clone(&gate),
        Arc::clone(&tally),
        run_over.clone(),
    ));
    // Every Fleet the run names is looked up once, before the first SIM that needs work.
    let fleets = LazyFleets {
        gate: Arc::clone(&gate),
        flag: config.onboard.fleet.clone(),
        named: std::mem::take(&mut plan.fleet_names),
        too_many: plan.too_many_fleets,
        resolved: ResolvedFleets::default(),
        pending: true,
    };
    let plan_rows = plan.rows;
    // The SIDs earlier runs recorded; this run's join them as its rows take them.
    let sids = Arc::new(std::mem::take(&mut plan.earlier_sids));
    // Compaction puts each SIM's row on its line of this input.
    let input_sims = plan.take_input_sims();
    let progress = Progress::new(plan.rows, config.progress_interval);

    let channel_size = config.limits.concurrency * 2;
    let (work_tx, work_rx) = mpsc::channel(channel_size);
    let (written_tx, written_rx) = mpsc::channel(channel_size);
    let retry_rejected = config.retry_rejected;
    let reader_stop = stop.no_new_rows().clone();
    let onboard = config.onboard.clone();
    let reader_thread = tokio::task::spawn_blocking(move || {
        read_input(
            reader,
            screen,
            plan,
            retry_rejected,
            (&onboard, fleets),
            &work_tx,
            &reader_stop,
        )
    });
    let writer_task = tokio::spawn(write_results(
        (writer, config.output.display().to_string()),
        failed_out,
        written_rx,
        (progress, tally),
        config.max_failures,
        Arc::clone(&stop),
    ));

    let limits = DispatchLimits {
        concurrency: config.limits.concurrency,
        wait: config.onboard.wait_limit(),
        grace: config.grace,
    };
    let dispatched = dispatch(
        work_rx,
        &gate,
        &limits,
        preflight,
        (written_tx, sids),
        &stop,
    )
    .await;

    let mut written = match writer_task.await {
        Ok(written) => Some(written),
        Err(panic) => {
            stop.stop(EndReason::Internal(format!(
                "the results writer failed: {panic}"
            )));
            None
        }
    };
    let elapsed = written
        .as_mut()
        .map_or(Duration::ZERO, |written| written.progress.finish());
    let read = reader_thread.await;
    run_over.cancel();
    let _ = watcher.await;
    *timeline = sampler.await.ok();
    if let Some(error) = dispatched.refused {
        return Err(error);
    }
    match read {
        Ok(Ok(())) => {}
        // Rows already sent were recorded: the run stops with a summary, to be run again.
        Ok(Err(RunError::InputChanged(why))) => stop.stop(EndReason::InputChanged(why)),
        Ok(Err(error)) => return Err(error),
        // A bug: what was answered is recorded, and the summary says so (exit 70).
        Err(panic) => stop.stop(EndReason::Internal(format!(
            "the input reader failed: {panic}"
        ))),
    }
    stop.notice(&gate);
    Ok(Piped {
        started_at,
        results,
        gate,
        stop,
        written,
        elapsed,
        failed_workers: dispatched.failed_workers,
        plan_rows,
        input_sims,
    })
}

/// Decides why the run ended, compacts the results file (unless it could not be written),
/// and makes the summary.
async fn finish(config: &RegisterConfig, piped: Piped) -> RunSummary {
    let Piped {
        started_at,
        results,
        gate,
        stop,
        written,
        elapsed,
        failed_workers,
        plan_rows,
        input_sims,
    } = piped;
    let needs_a_person = written
        .as_ref()
        .map(|w| w.needs_a_person.clone().in_line_order())
        .unwrap_or_default();
    let (this_run, skipped, update_pending) = written.as_ref().map_or_else(
        || (Counts::default(), Counts::default(), 0),
        |w| {
            (
                w.progress.this_run,
                w.progress.skipped,
                w.progress.update_pending(),
            )
        },
    );
    let end = if let Some(end) = stop.reason() {
        end
    } else if failed_workers > 0 {
        EndReason::Internal(format!(
            "{failed_workers} row(s) failed unexpectedly inside a worker"
        ))
    } else {
        let accounted = this_run.total() + skipped.total();
        if accounted == plan_rows {
            EndReason::Finished
        } else {
            EndReason::Internal(format!(
                "{} of {plan_rows} planned rows were neither written nor counted",
                plan_rows.saturating_sub(accounted)
            ))
        }
    };
    if let Some(unrecorded) = written.as_ref().map(|w| w.unrecorded).filter(|&n| n > 0) {
        tracing::warn!(
            rows = unrecorded,
            "rows answered after the results file failed were not recorded; the next run sends them again and finds them already registered"
        );
    }
    let (not_in_input, in_file) = if matches!(end, EndReason::WriterFailed(_)) {
        // Compaction writes a whole new copy: not on a disk that just failed a row.
        tracing::info!("the results file is left as it is; the next run compacts it");
        (0, None)
    } else {
        let stopped_early = end != EndReason::Finished;
        compact_results(config, results, input_sims, stopped_early).await
    };
    let mut summary = summarize(config, started_at, &gate, (this_run, skipped), elapsed, end);
    summary.update_pending = update_pending;
    summary.not_in_input = not_in_input;
    summary.needs_a_person = needs_a_person;
    // A run that stopped early did not reach every row an earlier run left: the whole
    // file's counts are then what the compacted file holds about the input's lines.
    summary.whole_file = in_file;
    summary
}

/// The journal becomes one row per SIM, on its line of this input, under the lock; returns
/// how many rows are about SIMs no longer in the input, and, for a run that `stopped_early`,
/// the outcomes of the rows about the input's lines (when they could be read). A failure
/// here loses nothing: the journal is left whole and the next run compacts it.
async fn compact_results(
    config: &RegisterConfig,
    results: PathBuf,
    input_sims: Option<InputSims>,
    stopped_early: bool,
) -> (u64, Option<Counts>) {
    let compact_dir = temp_dir_beside(&config.output);
    let compacting = move || {
        let done = compact(&results, &compact_dir, input_sims.into_iter().flatten())?;
        let counted = stopped_early.then(|| outcomes_in_input(&results, &done).ok());
        let in_file = counted.flatten().map(|by_outcome| {
            crate::results::Outcome::ALL
                .into_iter()
                .fold(Counts::default(), |counts, outcome| {
                    counts.with(outcome, by_outcome[outcome as usize])
                })
        });
        anyhow::Ok((done, in_file))
    };
    match tokio::task::spawn_blocking(compacting).await {
        Ok(Ok((done, in_file))) => {
            if done.rewritten {
                tracing::info!(
                    rows_before = done.rows_before,
                    rows_after = done.rows_after,
                    not_in_input = done.not_in_input,
                    "results compacted to one row per SIM"
                );
            }
            (done.not_in_input, in_file)
        }
        Ok(Err(error)) => {
            tracing::warn!("{error:#}; the results file is left as it was");
            (0, None)
        }
        Err(error) => {
            tracing::warn!(%error, "compacting the results file failed; it is left as it was");
            (0, None)
        }
    }
}

/// The summary of a run that ended for `end`, with this run's and the skipped rows' counts.
/// Its `elapsed` is the whole run's, from `started_at` to its end, as the report and the
/// metrics file give it (reading the input before the first request and compacting after
/// the last included); `pipeline` is the main pass's, kept should the clock step back.
fn summarize(
    config: &RegisterConfig,
    started_at: SystemTime,
    gate: &Gate,
    (this_run, skipped): (Counts, Counts),
    pipeline: Duration,
    end: EndReason,
) -> RunSummary {
    let stats = &gate.stats;
    let finished_at = SystemTime::now();
    let elapsed = finished_at.duration_since(started_at).unwrap_or(pipeline);
    RunSummary {
        started_at,
        finished_at,
        input: config.input.display_name(),
        results_path: config.output.clone(),
        this_run,
        skipped,
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
        update_pending: 0,
        not_in_input: 0,
        whole_file: None,
        needs_a_person: Default::default(),
    }
}

#[cfg(test)]
mod tests;
