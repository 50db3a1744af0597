//! Adaptive concurrency: how many requests may be in flight right now, found by feeling for
//! the account's limit the way TCP feels for a link's capacity (AIMD).
//!
//! Twilio limits concurrent requests per account and does not publish the number. Starting
//! at the `--concurrency` ceiling, each 429 cuts the limit multiplicatively (or straight to
//! what the `Twilio-Concurrent-Requests` header says was too many), at most once per round
//! trip, and each round trip of successes adds one back. Once a 429 has shown where the
//! account's limit lies, growth past that point slows to a rare probe, so the run stays
//! just under the limit instead of bouncing off it. With adaptation off the limit stays at
//! the ceiling.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Share of the limit kept after a 429 that carried no concurrency header.
const DECREASE_FACTOR: f64 = 0.7;
/// Past the learned limit, successes needed per extra slot, in round trips.
const PROBE_ROUNDS: f64 = 10.0;

#[derive(Debug)]
struct State {
    /// Requests allowed in flight (fractional: additive increase adds 1/limit per success).
    limit: f64,
    in_flight: usize,
    /// Where the last 429 put the account's limit, if one was seen.
    learned: Option<f64>,
    /// Responses still to come back before another 429 may cut again: one cut per round trip.
    cut_cooldown: usize,
    /// The level the limit settled at most recently, for the summary.
    lowest: f64,
}

/// The shared in-flight limit. Clone the `Arc` into every worker.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    ceiling: usize,
    adaptive: bool,
    state: Mutex<State>,
    freed: Notify,
}

/// A slot for one request; dropping it frees the slot.
#[derive(Debug)]
pub struct RequestSlot {
    limit: Arc<ConcurrencyLimit>,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.limit.lock().in_flight -= 1;
        self.limit.freed.notify_waiters();
    }
}

impl ConcurrencyLimit {
    pub fn new(ceiling: usize, adaptive: bool) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        Arc::new(ConcurrencyLimit {
            ceiling,
            adaptive,
            state: Mutex::new(State {
                limit: ceiling as f64,
                in_flight: 0,
                learned: None,
                cut_cooldown: 0,
                lowest: ceiling as f64,
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot under the current limit.
    pub async fn acquire(self: &Arc<Self>) -> RequestSlot {
        loop {
            let freed = self.freed.notified();
            {
                let mut state = self.lock();
                if state.in_flight < (state.limit.floor() as usize).max(1) {
                    state.in_flight += 1;
                    return RequestSlot {
                        limit: self.clone(),
                    };
                }
            }
            freed.await;
        }
    }

    /// The current limit, rounded down.
    pub fn current(&self) -> usize {
        (self.lock().limit.floor() as usize).max(1)
    }

    /// The lowest level the limit was cut to, rounded down.
    pub fn lowest(&self) -> usize {
        (self.lock().lowest.floor() as usize).max(1)
    }

    /// A request came back without a 429.
    pub fn on_success(&self) {
        if !self.adaptive {
            return;
        }
        let mut state = self.lock();
        state.cut_cooldown = state.cut_cooldown.saturating_sub(1);
        let step = match state.learned {
            Some(learned) if state.limit >= learned => 1.0 / (state.limit * PROBE_ROUNDS),
            _ => 1.0 / state.limit,
        };
        let before = state.limit.floor();
        state.limit = (state.limit + step).min(self.ceiling as f64);
        if state.limit.floor() > before {
            tracing::debug!(limit = state.limit.floor(), "concurrency raised");
        }
    }

    /// A request was answered 429. `reported` is the `Twilio-Concurrent-Requests` header:
    /// the account's requests in flight when this one was refused.
    pub fn on_throttled(&self, reported: Option<u32>) {
        if !self.adaptive {
            return;
        }
        let mut state = self.lock();
        state.cut_cooldown = state.cut_cooldown.saturating_sub(1);
        if state.cut_cooldown > 0 {
            return;
        }
        // Requests beyond the limit were refused: one fewer than the count reported (or than
        // ours in flight, this one included) is what the account allows.
        let seen = reported.map_or(state.in_flight as f64, f64::from);
        let allowed = (seen - 1.0).max(1.0);
        let cut = match reported {
            Some(_) => allowed.min(state.limit),
            None => (state.limit * DECREASE_FACTOR).max(1.0),
        };
        state.learned = Some(allowed.min(self.ceiling as f64));
        state.limit = cut.max(1.0);
        state.lowest = state.lowest.min(state.limit);
        state.cut_cooldown = state.in_flight.max(1);
        tracing::debug!(
            limit = state.limit.floor(),
            learned = allowed,
            "429: concurrency cut"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the limit against a server that allows `server_limit` in flight, one round
    /// trip at a time, and returns (requests, 429s, limit per round).
    fn simulate(server_limit: usize, header: bool, rounds: usize) -> (usize, usize, Vec<usize>) {
        let limit = ConcurrencyLimit::new(32, true);
        let (mut requests, mut throttled, mut levels) = (0, 0, Vec::new());
        for _ in 0..rounds {
            let n = limit.current();
            levels.push(n);
            limit.lock().in_flight = n;
            for i in 0..n {
                requests += 1;
                if i >= server_limit {
                    throttled += 1;
                    limit.on_throttled(header.then_some(n as u32));
                } else {
                    limit.on_success();
                }
            }
            limit.lock().in_flight = 0;
        }
        (requests, throttled, levels)
    }

    #[test]
    fn settles_just_under_an_unannounced_limit_with_few_429s() {
        for header in [true, false] {
            let (requests, throttled, levels) = simulate(20, header, 400);
            let settled = &levels[100..];
            let mean = settled.iter().sum::<usize>() as f64 / settled.len() as f64;
            assert!(
                mean >= 18.0,
                "header {header}: mean {mean}, levels {levels:?}"
            );
            assert!(
                settled.iter().all(|&l| l <= 21),
                "header {header}: {settled:?}"
            );
            let share = throttled as f64 / requests as f64;
            assert!(share < 0.03, "header {header}: 429 share {share}");
        }
    }

    #[test]
    fn a_burst_of_429s_in_one_round_trip_cuts_once() {
        let limit = ConcurrencyLimit::new(32, true);
        limit.lock().in_flight = 32;
        for _ in 0..12 {
            limit.on_throttled(None);
        }
        assert_eq!(limit.current(), 22, "32 * 0.7, once");
    }

    #[test]
    fn fixed_limit_never_moves() {
        let limit = ConcurrencyLimit::new(8, false);
        limit.on_throttled(Some(3));
        assert_eq!(limit.current(), 8);
        limit.on_success();
        assert_eq!(limit.current(), 8);
    }

    #[tokio::test]
    async fn slots_block_at_the_limit_and_free_on_drop() {
        let limit = ConcurrencyLimit::new(2, false);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let third = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap();
    }
}
