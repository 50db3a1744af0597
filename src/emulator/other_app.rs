//! Another app on the emulated account: synthetic requests, evenly spaced or as a Poisson
//! stream, that take slots of the same concurrency limit as HTTP requests, each for its
//! latency (drawn as the run's own are), and are refused (counted in `other_throttled`)
//! when the account is at its limit. It starts with the first API request, so a
//! benchmark's figures do not depend on start-up time.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::config::{Arrivals, fnv1a};
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
    // Its own seed, so its arrivals do not depend on how the run's requests interleave.
    let seed = fnv1a(&[b"other-app/", &shared.config.seed.to_le_bytes()]);
    let mut gaps = Gaps {
        mean: 1.0 / app.rate,
        arrivals: app.arrivals,
        rng: StdRng::seed_from_u64(seed),
    };
    // Arrivals are due at absolute times, so a late wake-up (a busy machine) is caught up
    // with rather than lowering the rate.
    let mut due = Instant::now();
    loop {
        due += gaps.next();
        tokio::time::sleep_until(due).await;
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

/// The time from one of the other app's requests to the next.
struct Gaps {
    /// Seconds between requests, on average.
    mean: f64,
    arrivals: Arrivals,
    rng: StdRng,
}

impl Gaps {
    fn next(&mut self) -> Duration {
        let seconds = match self.arrivals {
            Arrivals::Regular => self.mean,
            // Exponential gaps: 1 - u is in (0, 1], so its logarithm is finite.
            Arrivals::Poisson => -(1.0 - self.rng.random::<f64>()).ln() * self.mean,
        };
        Duration::from_secs_f64(seconds.min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gaps_keep_the_rate_and_vary() {
        let mut gaps = Gaps {
            mean: 1.0 / 60.0,
            arrivals: Arrivals::Poisson,
            rng: StdRng::seed_from_u64(7),
        };
        let drawn: Vec<f64> = (0..20_000).map(|_| gaps.next().as_secs_f64()).collect();
        let mean = drawn.iter().sum::<f64>() / drawn.len() as f64;
        assert!((mean * 60.0 - 1.0).abs() < 0.03, "{mean}");
        // An exponential's standard deviation is its mean; evenly spaced gaps have none.
        let variance = drawn.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / drawn.len() as f64;
        assert!((variance.sqrt() / mean - 1.0).abs() < 0.05, "{variance}");
        let mut regular = Gaps {
            arrivals: Arrivals::Regular,
            ..gaps
        };
        assert_eq!(regular.next(), Duration::from_secs_f64(1.0 / 60.0));
    }
}
