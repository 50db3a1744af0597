//! Another app on the emulated account: synthetic requests at a steady rate that take slots
//! of the same concurrency limit as HTTP requests, each for its (jittered) latency, and are
//! refused (counted in `other_throttled`) when the account is at its limit. It starts with
//! the first API request, so a benchmark's figures do not depend on start-up time.

use std::sync::Arc;
use std::time::Duration;

use super::store::Shared;

/// Runs the other app until the task is aborted.
pub(super) async fn run(shared: Arc<Shared>) {
    let Some(app) = shared.config.other_app else {
        return;
    };
    if !(app.rate.is_finite() && app.rate > 0.0) {
        return;
    }
    loop {
        let started = shared.epoch_set.notified();
        if shared.epoch.get().is_some() {
            break;
        }
        started.await;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / app.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        ticks.tick().await;
        let slot = {
            let mut store = shared.store();
            store.stats.other_requests += 1;
            let slot = shared.take_slot(&mut store);
            store.stats.other_throttled += u64::from(slot.is_none());
            slot
        };
        if let Some(slot) = slot {
            let hold = shared.jittered(app.latency);
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                drop(slot);
            });
        }
    }
}
