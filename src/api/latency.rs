//! How long the API took to answer, as a histogram of fixed, logarithmic bins that every
//! worker adds to without a lock and a sampler empties once a second: memory stays the
//! same whatever the number of requests, and the median and 95th percentile of any second
//! (or of seconds merged together) are read off the bins to within a few percent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Bins: four per doubling, from [`FLOOR_MICROS`] up (the last bin holds everything above
/// about 20 minutes): a quantile read off them is within 9% of the true one.
pub(crate) const BINS: usize = 96;
const BINS_PER_DOUBLING: f64 = 4.0;
/// The first bin's upper edge: answers faster than this are counted in it.
const FLOOR_MICROS: f64 = 100.0;

/// Answer times by bin, added to by every worker.
#[derive(Debug)]
pub(crate) struct Latencies {
    bins: [AtomicU32; BINS],
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            bins: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Latencies {
    /// Counts one answer that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        self.bins[bin_of(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, each bin emptied as it is read.
    pub(crate) fn take(&self) -> [u32; BINS] {
        std::array::from_fn(|bin| self.bins[bin].swap(0, Ordering::Relaxed))
    }
}

/// The bin an answer time falls in.
pub(crate) fn bin_of(took: Duration) -> usize {
    let micros = took.as_secs_f64() * 1e6;
    if micros <= FLOOR_MICROS {
        return 0;
    }
    let bin = (BINS_PER_DOUBLING * (micros / FLOOR_MICROS).log2()).ceil() as usize;
    bin.min(BINS - 1)
}

/// The time a bin stands for: the geometric middle of its edges.
pub(crate) fn bin_value(bin: usize) -> Duration {
    let exponent = (bin as f64 - 0.5).max(0.0) / BINS_PER_DOUBLING;
    Duration::from_secs_f64(FLOOR_MICROS * 2f64.powf(exponent) / 1e6)
}

/// The `q` quantile (0 to 1) of the answers counted in `bins`; `None` when there are none.
pub(crate) fn quantile(bins: &[u32; BINS], q: f64) -> Option<Duration> {
    let total: u64 = bins.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    // The smallest bin whose running count reaches the rank: rank 1 is the fastest answer.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bin, &count) in bins.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return Some(bin_value(bin));
        }
    }
    Some(bin_value(BINS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_read_off_the_bins_is_within_a_tenth_of_the_true_one() {
        let bins = Latencies::default();
        // 1 ms to 1,000 ms, one answer each: the true median is 500 ms, the 95th 950 ms.
        for ms in 1..=1000 {
            bins.record(Duration::from_millis(ms));
        }
        let counts = bins.take();
        let median = quantile(&counts, 0.5).unwrap().as_secs_f64();
        let p95 = quantile(&counts, 0.95).unwrap().as_secs_f64();
        assert!((median - 0.5).abs() / 0.5 < 0.1, "median {median}");
        assert!((p95 - 0.95).abs() / 0.95 < 0.1, "p95 {p95}");
        // Taken means emptied.
        assert_eq!(quantile(&bins.take(), 0.5), None);
    }

    #[test]
    fn extreme_times_land_in_the_first_and_last_bins() {
        assert_eq!(bin_of(Duration::ZERO), 0);
        assert_eq!(bin_of(Duration::from_secs(100_000)), BINS - 1);
        assert!(bin_value(BINS - 1) > Duration::from_secs(60));
    }
}
