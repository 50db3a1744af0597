//! The dispatcher: hands the reader's work to workers, never more than `--concurrency` at
//! once, proving the account (the preflight) before the first row is sent or written, and
//! passing rows settled without a request straight to the writer. It stops taking work when
//! the run's [`RunStop`] says so, and waits for the workers in flight, at most `--grace`
//! once requests have stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::api::gate::Gate;
use crate::results::{ResultRow, code_fingerprint};
use crate::run::account::Preflight;
use crate::run::error::RunError;
use crate::run::onboard;
use crate::run::sids::SidLedger;
use crate::run::stop::{EndReason, RunStop};
use crate::run::triage::Work;
use crate::run::writer::Written;

/// The dispatcher's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct DispatchLimits {
    /// SIMs in progress at once.
    pub(super) concurrency: usize,
    /// With `--wait`, how long one SIM may be polled.
    pub(super) wait: Option<Duration>,
    /// Once requests have stopped, how long SIMs in progress may take to finish.
    pub(super) grace: Duration,
}

/// What the dispatcher hands back.
pub(super) struct Dispatched {
    /// Workers that failed unexpectedly (a panic: a bug).
    pub(super) failed_workers: u64,
    /// The preflight's refusal, when it refused the run before anything was sent.
    pub(super) refused: Option<RunError>,
}

/// Sends `item` to the writer. A writer that is gone can record nothing more: that stops
/// the run (a bug: the writer never stops while senders remain).
async fn record(written: &mpsc::Sender<Written>, item: Written, stop: &RunStop) {
    if written.send(item).await.is_err() {
        stop.stop(EndReason::Internal(
            "the results writer stopped unexpectedly; rows answered since were not recorded"
                .to_string(),
        ));
    }
}

/// Hands rows to workers, never more than `concurrency` at once, until the input ends or
/// no new rows may start. Then waits for the workers; once requests have stopped it waits
/// at most `grace`, and abandons what is still in flight (those SIMs get no row, so the
/// next run sends them again).
pub(super) async fn dispatch(
    mut work: mpsc::Receiver<Work>,
    gate: &Arc<Gate>,
    limits: &DispatchLimits,
    mut preflight: Preflight,
    (written, sids): (mpsc::Sender<Written>, Arc<SidLedger>),
    stop: &Arc<RunStop>,
) -> Dispatched {
    let DispatchLimits {
        concurrency,
        wait,
        grace,
    } = *limits;
    let permits = Arc::new(Semaphore::new(concurrency));
    let halted = gate.halted().clone();
    let no_new_rows = stop.no_new_rows().clone();
    let mut workers = JoinSet::new();
    let mut failed_workers = 0;
    let mut refused = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = no_new_rows.cancelled() => None,
            _ = halted.cancelled() => None,
            next = work.recv() => next,
        };
        let Some(next) = next else { break };
        // The account is proved before the first row is sent or written, so every row of
        // the run carries it; a run that only skips finished rows sends nothing at all.
        if matches!(next, Work::Send(..) | Work::Report(..)) {
            match preflight.prove(gate.client()).await {
                Ok(Some(account)) => record(&written, Written::Account(account), stop).await,
                Ok(None) => {}
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        match next {
            Work::Send(job, warning, fields) => {
                let permit = tokio::select! {
                    biased;
                    _ = no_new_rows.cancelled() => break,
                    _ = halted.cancelled() => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                };
                let gate = gate.clone();
                let written = written.clone();
                let worker_stop = Arc::clone(stop);
                let sids = Arc::clone(&sids);
                let sent_code = code_fingerprint(&job.row.iccid, &job.row.code);
                workers.spawn(async move {
                    if let Some(mut result) =
                        onboard::onboard(&gate, job, (wait, &sids), &written).await
                    {
                        result.warning = warning;
                        result.code_fingerprint = Some(sent_code);
                        on_the_run_account(&mut result, &gate);
                        record(&written, Written::Row(result, fields, None), &worker_stop).await;
                    }
                    drop(permit);
                });
                while let Some(joined) = workers.try_join_next() {
                    failed_workers += worker_failed(joined, stop);
                }
            }
            Work::Report(mut row, fields, failed) => {
                on_the_run_account(&mut row, gate);
                record(&written, Written::Row(row, fields, failed), stop).await;
            }
            Work::Skip(outcome, failed) => {
                record(&written, Written::Skipped(outcome, failed), stop).await;
            }
        }
    }
    // Closing the work channel makes the reader's next send fail, so it stops reading.
    drop(work);
    let drain = async {
        while let Some(joined) = workers.join_next().await {
            failed_workers += worker_failed(joined, stop);
        }
    };
    let grace_over = async {
        stop.no_new_requests().cancelled().await;
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
    Dispatched {
        failed_workers,
        refused,
    }
}

/// Names the run's account on a row that has no SIM to name one. The writer names the one
/// the preflight proved; this covers an account the run learned later, from the first
/// answer that showed one (an API key whose account the preflight could not learn).
fn on_the_run_account(row: &mut ResultRow, gate: &Gate) {
    if row.account_sid.is_none() {
        row.account_sid = gate.client().account();
    }
}

/// 1 when a worker's task panicked (a bug), logged with what the panic said; 0 otherwise.
/// The row it held gets no result row, so the next run tries it again; a bug stops the
/// run, so no more rows meet it.
pub(super) fn worker_failed(joined: Result<(), tokio::task::JoinError>, stop: &RunStop) -> u64 {
    match joined {
        Err(error) if error.is_panic() => {
            tracing::error!(%error, "a worker failed unexpectedly; its row is left for the next run");
            stop.stop(EndReason::Internal(format!(
                "a worker failed unexpectedly ({error}); its row is left for the next run"
            )));
            1
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_worker_is_counted_and_stops_the_run() {
        let stop = RunStop::new(&tokio_util::sync::CancellationToken::new());
        let mut workers = JoinSet::new();
        workers.spawn(async { panic!("a bug in a worker") });
        workers.spawn(async {});
        let mut failed = 0;
        while let Some(joined) = workers.join_next().await {
            failed += worker_failed(joined, &stop);
        }
        assert_eq!(failed, 1);
        assert!(matches!(stop.reason(), Some(EndReason::Internal(_))));
        assert!(stop.no_new_requests().is_cancelled());
    }
}
