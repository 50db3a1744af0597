//! The run second by second, for the report: rows finished by outcome, requests and 429s,
//! the in-flight window and the limit learned, the other traffic seen, and how long answers
//! took. A [`sample_until`] task reads the counters the gate and the writer already keep
//! once a second and files the differences in a [`Timeline`].
//!
//! Memory is flat whatever the run's length: the timeline holds at most [`CAPACITY`]
//! buckets; when a sample falls past the last one, adjacent buckets are merged pairwise
//! and each then covers twice as many seconds. Counts are added, never dropped, so the
//! timeline's totals are the run's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::adaptive::Sampled;
use crate::api::gate::{Gate, RequestStats};
use crate::api::latency::{self, BINS};
use crate::results::Outcome;

/// Buckets kept at most: a run of up to 17 minutes is kept per second, a day's run in
/// buckets of two minutes.
pub(crate) const CAPACITY: usize = 1024;

/// How often the sampler reads the counters.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Rows finished by this run, by outcome: the writer adds, the sampler takes.
#[derive(Debug, Default)]
pub(crate) struct RowTally {
    counts: [AtomicU64; Outcome::ALL.len()],
}

impl RowTally {
    /// One row finished with `outcome`.
    pub(crate) fn finished(&self, outcome: Outcome) {
        self.counts[index_of(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) -> [u64; Outcome::ALL.len()] {
        std::array::from_fn(|i| self.counts[i].swap(0, Ordering::Relaxed))
    }
}

fn index_of(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|&o| o == outcome)
        .unwrap_or_default()
}

/// What one stretch of the run saw: one second, or several merged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    /// Rows finished, in [`Outcome::ALL`] order.
    pub(crate) rows: [u64; Outcome::ALL.len()],
    pub(crate) requests: u64,
    /// 429s retried (the summary's `throttled`).
    pub(crate) throttled: u64,
    /// The in-flight window summed over the samples, and the samples taken.
    window_sum: u64,
    samples: u32,
    /// The account's limit as learned by the end of the stretch, once one was.
    pub(crate) learned_limit: Option<usize>,
    /// Other traffic's mean in flight, summed over the samples that saw any, and those.
    other_sum: f64,
    other_samples: u32,
    /// Answer times, in [`latency`]'s bins.
    latency: [u32; BINS],
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            rows: [0; Outcome::ALL.len()],
            requests: 0,
            throttled: 0,
            window_sum: 0,
            samples: 0,
            learned_limit: None,
            other_sum: 0.0,
            other_samples: 0,
            latency: [0; BINS],
        }
    }
}

impl Bucket {
    /// One sample: rows finished by outcome, (requests, 429s), the limit at the moment,
    /// and the answer times, all since the previous sample.
    pub(crate) fn sampled(
        rows: [u64; Outcome::ALL.len()],
        (requests, throttled): (u64, u64),
        limit: Sampled,
        latency: [u32; BINS],
    ) -> Self {
        Bucket {
            rows,
            requests,
            throttled,
            window_sum: limit.window as u64,
            samples: 1,
            learned_limit: limit.learned_limit,
            other_sum: limit.other_in_flight.unwrap_or(0.0),
            other_samples: u32::from(limit.other_in_flight.is_some()),
            latency,
        }
    }

    /// Rows finished with `outcome`.
    pub(crate) fn rows_of(&self, outcome: Outcome) -> u64 {
        self.rows[index_of(outcome)]
    }

    /// The in-flight window's mean over the stretch, when it was sampled.
    pub(crate) fn window(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.window_sum as f64 / f64::from(self.samples))
    }

    /// Other traffic's mean in flight, when an answer showed it.
    pub(crate) fn other_in_flight(&self) -> Option<f64> {
        (self.other_samples > 0).then(|| self.other_sum / f64::from(self.other_samples))
    }

    /// The `q` quantile of the answer times, when any answer came.
    pub(crate) fn latency(&self, q: f64) -> Option<Duration> {
        latency::quantile(&self.latency, q)
    }

    /// Answers whose time was counted.
    #[cfg(test)]
    pub(crate) fn answers(&self) -> u64 {
        self.latency.iter().map(|&n| u64::from(n)).sum()
    }

    /// Adds `later`, which follows this stretch, to it.
    fn absorb(&mut self, later: &Bucket) {
        for (mine, theirs) in self.rows.iter_mut().zip(later.rows) {
            *mine += theirs;
        }
        self.requests += later.requests;
        self.throttled += later.throttled;
        self.window_sum += later.window_sum;
        self.samples += later.samples;
        self.learned_limit = later.learned_limit.or(self.learned_limit);
        self.other_sum += later.other_sum;
        self.other_samples += later.other_samples;
        for (mine, theirs) in self.latency.iter_mut().zip(later.latency) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// The run's samples, in buckets of [`Timeline::seconds_per_bucket`] seconds from its
/// start; never more than [`CAPACITY`] of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    seconds_per_bucket: u64,
    buckets: Vec<Bucket>,
    capacity: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::with_capacity(CAPACITY)
    }
}

impl Timeline {
    /// An empty timeline of at most `capacity` buckets (at least 2, so merging halves it).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Timeline {
            seconds_per_bucket: 1,
            buckets: Vec::new(),
            capacity: capacity.max(2),
        }
    }

    /// Seconds each bucket covers: 1 until the run outgrew the capacity.
    pub(crate) fn seconds_per_bucket(&self) -> u64 {
        self.seconds_per_bucket
    }

    /// The buckets in time order; bucket `i` starts `i × seconds_per_bucket` seconds in.
    pub(crate) fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Files what was seen during `second` (counted from the run's start).
    pub(crate) fn record(&mut self, second: u64, seen: &Bucket) {
        while second / self.seconds_per_bucket >= self.capacity as u64 {
            self.merge_pairs();
        }
        let index = (second / self.seconds_per_bucket) as usize;
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        self.buckets[index].absorb(seen);
    }

    /// Halves the buckets: each pair becomes one covering twice the seconds.
    fn merge_pairs(&mut self) {
        let buckets = std::mem::take(&mut self.buckets);
        let mut merged = Vec::with_capacity(self.capacity);
        let mut pairs = buckets.into_iter();
        while let Some(mut first) = pairs.next() {
            if let Some(second) = pairs.next() {
                first.absorb(&second);
            }
            merged.push(first);
        }
        self.buckets = merged;
        self.seconds_per_bucket *= 2;
    }

    /// The whole run as one bucket: the tests' check that nothing is lost between samples.
    #[cfg(test)]
    pub(crate) fn totals(&self) -> Bucket {
        let mut total = Bucket::default();
        for bucket in &self.buckets {
            total.absorb(bucket);
        }
        total
    }
}

/// Reads the gate's and the writer's counters every second into a timeline until `over` is
/// cancelled, then takes a last sample (so the totals include the run's last answers) and
/// returns the timeline.
pub(crate) async fn sample_until(
    gate: Arc<Gate>,
    rows: Arc<RowTally>,
    over: CancellationToken,
) -> Timeline {
    let started = tokio::time::Instant::now();
    let mut timeline = Timeline::default();
    let mut counted = (0, 0);
    let mut tick = tokio::time::interval_at(started + SAMPLE_EVERY, SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = over.cancelled() => true,
            _ = tick.tick() => false,
        };
        // A sample taken at the tick covers the second before it.
        let second = started.elapsed().as_secs().saturating_sub(u64::from(!last));
        let seen = sample(&gate, &rows, &mut counted);
        timeline.record(second, &seen);
        if last {
            return timeline;
        }
    }
}

/// What the counters say since the last sample; `counted` holds the request and 429 totals
/// read last time.
fn sample(gate: &Gate, rows: &RowTally, counted: &mut (u64, u64)) -> Bucket {
    let stats = &gate.stats;
    let requests = RequestStats::get(&stats.requests);
    let throttled = RequestStats::get(&stats.throttled);
    let seen = Bucket::sampled(
        rows.take(),
        (requests - counted.0, throttled - counted.1),
        gate.concurrency.sample(),
        stats.latency.take(),
    );
    *counted = (requests, throttled);
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second_with(requests: u64, outcome: Outcome, window: u64) -> Bucket {
        let mut seen = Bucket {
            requests,
            window_sum: window,
            samples: 1,
            ..Bucket::default()
        };
        seen.rows[index_of(outcome)] = requests;
        seen.latency[10] = 1;
        seen
    }

    #[test]
    fn a_long_run_is_merged_not_dropped_and_memory_stays_within_the_capacity() {
        let mut timeline = Timeline::with_capacity(8);
        let mut expected = Bucket::default();
        // 100 seconds into 8 buckets: 16 seconds a bucket at the end.
        for second in 0..100 {
            let seen = second_with(second + 1, Outcome::ALL[(second % 7) as usize], 5);
            expected.absorb(&seen);
            timeline.record(second, &seen);
            assert!(timeline.buckets().len() <= 8, "at second {second}");
        }
        assert_eq!(timeline.seconds_per_bucket(), 16);
        assert_eq!(timeline.buckets().len(), 7, "100 s in buckets of 16 s");
        assert_eq!(timeline.totals(), expected, "every count kept");
        // The first bucket holds seconds 0..16: requests 1..=16.
        assert_eq!(timeline.buckets()[0].requests, (1..=16).sum::<u64>());
        assert_eq!(timeline.buckets()[0].window(), Some(5.0));
        assert_eq!(timeline.totals().answers(), 100);
    }

    #[test]
    fn seconds_without_a_sample_are_empty_buckets_in_their_place() {
        let mut timeline = Timeline::default();
        timeline.record(0, &second_with(3, Outcome::Registered, 4));
        timeline.record(4, &second_with(2, Outcome::Rejected, 8));
        let buckets = timeline.buckets();
        assert_eq!(buckets.len(), 5);
        assert_eq!(buckets[2], Bucket::default());
        assert_eq!(buckets[2].window(), None);
        assert_eq!(buckets[4].rows_of(Outcome::Rejected), 2);
        assert_eq!(timeline.totals().rows_of(Outcome::Registered), 3);
    }

    #[test]
    fn the_learned_limit_of_a_merged_stretch_is_its_latest() {
        let mut timeline = Timeline::with_capacity(2);
        for (second, limit) in [(0, Some(20)), (1, Some(12)), (2, None), (3, None)] {
            timeline.record(
                second,
                &Bucket {
                    learned_limit: limit,
                    ..Bucket::default()
                },
            );
        }
        assert_eq!(timeline.seconds_per_bucket(), 2);
        assert_eq!(timeline.buckets()[0].learned_limit, Some(12));
    }
}
