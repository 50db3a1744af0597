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
use crate::api::gate::{Gate, Halt, RequestStats};
use crate::api::preflight::{PreflightError, preflight};
use crate::input::InputError;
use crate::input::failed_out::FailedOut;
use crate::input::screen::Screen;
use crate::results::ResultsWriter;
use crate::results::compact::compact;
use crate::run::config::RegisterConfig;
use crate::run::fleets::ResolvedFleets;
use crate::run::lock::{LockError, RunLock};
use crate::run::onboard::{self};
use crate::run::plan::{Plan, PlanError, Replayable, temp_dir_beside};
use crate::run::progress::{Counts, Progress};
use crate::run::summary::{ConcurrencyReport, EndReason, RunSummary};
use crate::run::triage::{LazyFleets, Work, read_input};
use crate::run::writer::{Written, write_results};

/// Why a run ended without a summary worth an exit code of its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// Another run holds the results file (exit 75: try again later).
    #[error(transparent)]
    Locked(LockError),
    #[error("{0:#}")]
    Setup(anyhow::Error),
    /// The results file was written against another account (or the emulator's).
    #[error(
        "{results} was written against account {written_on}, and this run registers on \
         {this_run}: its rows say nothing true about this account. Write this run's results \
         elsewhere (-o NEW.results.csv), or delete {results} if it is no longer needed"
    )]
    OtherAccount {
        results: String,
        written_on: String,
        this_run: String,
    },
    /// The preflight's request was answered 401.
    #[error("the API refused the credentials")]
    CredentialsRefused,
    /// The API could not be reached: try again later.
    #[error("{0}")]
    Unreachable(String),
    /// The input changed between the plan and the main pass: try again later.
    #[error("{0}")]
    InputChanged(String),
}

impl From<LockError> for RunError {
    /// Only a lock held by another run is worth waiting for; a lock that cannot be created
    /// is a set-up error, like any other file that cannot be written.
    fn from(error: LockError) -> Self {
        match error {
            LockError::Busy { .. } => RunError::Locked(error),
            // The message already says why; kept as one sentence, not a chain.
            LockError::Io { .. } | LockError::Planted { .. } => {
                RunError::Setup(anyhow::anyhow!("{error}"))
            }
        }
    }
}

/// How a run ended, with the lock on the results file when it was taken: the caller
/// writes the summary JSON while still holding it, then drops it.
pub struct Ended {
    pub result: Result<RunSummary, RunError>,
    pub lock: Option<RunLock>,
}

impl From<PlanError> for RunError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Input(error) => RunError::Input(error),
            PlanError::Other(error) => RunError::Setup(error),
        }
    }
}

/// Runs a whole `register` job against the API `client` talks to. `stop` is cancelled on the first interrupt: reading stops,
/// SIMs in progress get `grace` to finish their current request and are written, and the
/// run ends. The lock on the results file is handed back still held (when it was taken),
/// so whatever the caller writes about the run is written before another run can start.
pub async fn run(config: RegisterConfig, client: Client, stop: CancellationToken) -> Ended {
    let mut lock = None;
    let result = run_locked(config, client, stop, &mut lock).await;
    Ended { result, lock }
}

async fn run_locked(
    config: RegisterConfig,
    client: Client,
    stop: CancellationToken,
    lock: &mut Option<RunLock>,
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
    // The results file is checked (and created) before the lock, which is taken by its
    // real path: a file that is not ours is refused untouched, and every spelling of one
    // results file, a symlink to it included, shares one lock.
    let results = ResultsWriter::claim(&config.output).map_err(RunError::Setup)?;
    *lock = Some(RunLock::acquire(&results)?);
    let (mut writer, earlier) = ResultsWriter::open(&results).map_err(RunError::Setup)?;
    let screen = Screen::new(config.strict);
    let mut plan = {
        let first_pass = input.open(config.read)?;
        tokio::task::spawn_blocking(move || Plan::build(first_pass, screen, earlier, &temp_dir))
            .await
            .map_err(|panic| {
                RunError::Setup(anyhow::anyhow!("planning the run failed: {panic}"))
            })??
    };
    // A results file from another account (or a rehearsal) is refused before anything is
    // sent: checked now when the credentials name the account, else once the preflight
    // has learned it.
    let results_name = config.output.display().to_string();
    check_account(
        &results_name,
        config.account_sid.as_deref(),
        &plan.earlier_accounts,
    )?;
    writer.set_account(config.account_sid.clone());
    let preflight = Preflight {
        said: config.account_sid.clone(),
        earlier_accounts: plan.earlier_accounts.clone(),
        results: results_name,
        done: false,
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
    // Compaction puts each SIM's row on its line of this input.
    let input_sims = plan.take_input_sims();
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
            (&onboard, fleets),
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
    let (failed_workers, set_up_wrong) = dispatch(
        work_rx,
        &gate,
        &limits,
        preflight,
        written_tx,
        &no_new_rows,
        &stop,
    )
    .await;

    let mut written = writer_task
        .await
        .context("the results writer failed")
        .and_then(|result| result)
        .map_err(RunError::Setup)?;
    let elapsed = written.progress.finish();
    let read = reader_thread.await;
    if let Some(error) = set_up_wrong {
        return Err(error);
    }
    match read {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(panic) => {
            return Err(RunError::Setup(anyhow::anyhow!(
                "the input reader failed: {panic}"
            )));
        }
    }
    let end = if let Some(end) = halted_end(&gate) {
        end
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
    // The journal becomes one row per SIM, on its line of this input, under the lock. A
    // failure here loses nothing: the journal is left whole and the next run compacts it.
    let compact_dir = temp_dir_beside(&config.output);
    let compact_path = results.clone();
    let compacting = move || {
        compact(
            &compact_path,
            &compact_dir,
            input_sims.into_iter().flatten(),
        )
    };
    let mut not_in_input = 0;
    match tokio::task::spawn_blocking(compacting).await {
        Ok(Ok(done)) => {
            not_in_input = done.not_in_input;
            if done.rewritten {
                tracing::info!(
                    rows_before = done.rows_before,
                    rows_after = done.rows_after,
                    not_in_input = done.not_in_input,
                    "results compacted to one row per SIM"
                );
            }
        }
        Ok(Err(error)) => tracing::warn!("{error:#}; the results file is left as it was"),
        Err(error) => {
            tracing::warn!(%error, "compacting the results file failed; it is left as it was")
        }
    }
    let counts = (written.progress.this_run, written.progress.skipped);
    let mut summary = summarize(&config, started_at, &gate, counts, elapsed, end);
    summary.update_pending = written.progress.update_pending();
    summary.not_in_input = not_in_input;
    Ok(summary)
}

/// How the gate's halt, if it halted the run, ends it.
fn halted_end(gate: &Gate) -> Option<EndReason> {
    Some(match gate.halt_reason()? {
        Halt::CredentialsRefused => EndReason::CredentialsRefused,
        Halt::Unreachable(why) => EndReason::Unreachable(why),
        Halt::WrongEndpoint(why) => EndReason::WrongEndpoint(why),
    })
}

/// The summary of a run that ended for `end`, with this run's and the skipped rows' counts.
fn summarize(
    config: &RegisterConfig,
    started_at: std::time::SystemTime,
    gate: &Gate,
    (this_run, skipped): (Counts, Counts),
    elapsed: Duration,
    end: EndReason,
) -> RunSummary {
    let stats = &gate.stats;
    RunSummary {
        started_at,
        finished_at: std::time::SystemTime::now(),
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
    }
}

/// The preflight, run once, just before the run's first request: a rerun over a finished
/// file sends nothing at all, and a run with work proves the base URL, the credentials and
/// the network before anything is registered.
struct Preflight {
    /// The account the credentials name, if they do.
    said: Option<String>,
    earlier_accounts: Vec<String>,
    /// The results file, for messages.
    results: String,
    done: bool,
}

impl Preflight {
    async fn prove(&mut self, client: &Client) -> Result<(), RunError> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(());
        }
        let account = proven_account(client, self.said.as_deref()).await?;
        check_account(&self.results, account.as_deref(), &self.earlier_accounts)
    }
}

/// Refuses to resume a results file written against another account than `account`.
pub(super) fn check_account(
    results: &str,
    account: Option<&str>,
    earlier: &[String],
) -> Result<(), RunError> {
    match (
        account,
        earlier.iter().find(|a| Some(a.as_str()) != account),
    ) {
        (Some(account), Some(other)) => Err(RunError::OtherAccount {
            results: results.to_string(),
            written_on: other.clone(),
            this_run: account.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Runs the preflight and returns the account this run registers on: the one the API
/// shows, else the one the credentials name. A mismatch between the two is a set-up error.
pub(super) async fn proven_account(
    client: &Client,
    said: Option<&str>,
) -> Result<Option<String>, RunError> {
    match preflight(client).await {
        Ok(proven) => match (proven.account_sid, said) {
            (Some(learned), Some(said)) if learned != said => {
                Err(RunError::Setup(anyhow::anyhow!(
                    "the credentials belong to account {learned}, but TWILIO_ACCOUNT_SID says \
                 {said}; set TWILIO_ACCOUNT_SID to the account of TWILIO_API_KEY"
                )))
            }
            (learned, said) => Ok(learned.or_else(|| said.map(String::from))),
        },
        Err(PreflightError::CredentialsRefused) => Err(RunError::CredentialsRefused),
        Err(PreflightError::Setup(message)) => Err(RunError::Setup(anyhow::anyhow!(message))),
        Err(PreflightError::Unreachable(message)) => Err(RunError::Unreachable(message)),
    }
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
    mut preflight: Preflight,
    written: mpsc::Sender<Written>,
    no_new_rows: &CancellationToken,
    stop: &CancellationToken,
) -> (u64, Option<RunError>) {
    let DispatchLimits {
        concurrency,
        wait,
        grace,
    } = *limits;
    let permits = Arc::new(Semaphore::new(concurrency));
    let refused = gate.halted().clone();
    let mut workers = JoinSet::new();
    let mut failed = 0;
    let mut set_up_wrong = None;
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
                if let Err(error) = preflight.prove(gate.client()).await {
                    set_up_wrong = Some(error);
                    break;
                }
                let permit = tokio::select! {
                    biased;
                    _ = no_new_rows.cancelled() => break,
                    _ = refused.cancelled() => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                };
                let gate = gate.clone();
                let written = written.clone();
                workers.spawn(async move {
                    if let Some(mut result) = onboard::onboard(&gate, job, wait, &written).await {
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
    (failed, set_up_wrong)
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
mod tests;
