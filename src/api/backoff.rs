//! How long to wait before the next attempt, and the pool-wide pause that follows a
//! `Retry-After` (on a 429, a 503 or any other retryable answer) or a 429.
//!
//! Backoff is exponential with full jitter (a random wait between zero and `base * 2^n`,
//! capped), so that many workers failing together do not retry together. A server's
//! `Retry-After` overrides the computed wait. A 429 means the *account* is over its limit,
//! so it slows every worker, not only the one that got it: through the adaptive limit
//! (`adaptive`), and through the pause here when adaptation is off. A server that names a
//! wait (`Retry-After`, whatever the status) pauses every worker for that long, except on a
//! probe's 429, which only its own request waits out (see `gate`): the gate checks the pause
//! at the moment a request would be sent.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

/// The longest `Retry-After` honoured as given; a larger one is clamped to this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry).
    pub(crate) fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut StdRng,
    ) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(MAX_RETRY_AFTER);
        }
        let exponent = retry.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// A jitter source per row, seeded from the row's line so that runs are reproducible.
pub(crate) fn jitter_for_row(line: u64) -> StdRng {
    StdRng::seed_from_u64(line)
}

/// A pause shared by every worker: nobody sends before `until`.
#[derive(Debug, Default)]
pub(crate) struct PoolPause {
    until: Mutex<Option<Instant>>,
}

impl PoolPause {
    /// Extends the pause so that nobody sends for at least `wait` from now.
    pub(crate) fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut guard = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    /// Pauses the pool for a server's `Retry-After`, clamped to [`MAX_RETRY_AFTER`].
    pub(crate) fn obey_retry_after(&self, asked: Duration) {
        self.pause_for(asked.min(MAX_RETRY_AFTER));
    }

    /// Whether the pool is paused right now.
    pub(crate) fn is_paused(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| until > Instant::now())
    }

    /// Waits until the pause, if any, is over.
    pub(crate) async fn wait(&self) {
        loop {
            let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let backoff = Backoff::default();
        let mut rng = jitter_for_row(7);
        for retry in 1..=12 {
            let ceiling = (Duration::from_millis(500) * 2u32.pow(retry - 1)).min(backoff.cap);
            for _ in 0..50 {
                assert!(backoff.delay(retry, None, &mut rng) <= ceiling);
            }
        }
    }

    #[test]
    fn jitter_spreads_waits() {
        let backoff = Backoff::default();
        let mut rng = jitter_for_row(1);
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.delay(4, None, &mut rng)).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let backoff = Backoff::default();
        let mut rng = jitter_for_row(1);
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(3)), &mut rng),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(3600)), &mut rng),
            MAX_RETRY_AFTER
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pool_pause_only_extends() {
        let pause = PoolPause::default();
        let start = Instant::now();
        pause.pause_for(Duration::from_secs(2));
        pause.pause_for(Duration::from_secs(1));
        assert!(pause.is_paused());
        pause.wait().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(!pause.is_paused());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_are_clamped() {
        let pause = PoolPause::default();
        let start = Instant::now();
        pause.obey_retry_after(Duration::from_secs(86_400));
        pause.wait().await;
        assert_eq!(start.elapsed(), MAX_RETRY_AFTER);
    }
}
