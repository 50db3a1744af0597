//! What a person watching the run sees: a live bar on a terminal, a plain line every
//! `--progress-interval` otherwise (cron mail and journald want no carriage returns), and the
//! final summary on stdout.
//!
//! Only the results writer calls into this module, so one task owns the display.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::Outcome;

/// Rows per outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts([u64; Outcome::ALL.len()]);

impl Counts {
    pub fn add(&mut self, outcome: Outcome) {
        self.0[outcome as usize] += 1;
    }
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn plus(&self, other: &Counts) -> Counts {
        let mut sum = *self;
        for (a, b) in sum.0.iter_mut().zip(other.0) {
            *a += b;
        }
        sum
    }
    /// `registered 3, rejected 1`: the outcomes that occurred, in contract order.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Outcome::ALL
            .into_iter()
            .filter(|o| self.get(*o) > 0)
            .map(|o| format!("{o} {}", self.get(o)))
            .collect();
        if parts.is_empty() {
            "nothing yet".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Live progress of a run.
pub struct Progress {
    started: Instant,
    /// Input rows expected, counted in the background; 0 until known.
    expected_rows: Arc<AtomicU64>,
    /// Rows that reached an outcome in this run.
    pub this_run: Counts,
    /// Rows skipped because an earlier run finished them, by their earlier outcome.
    pub skipped: Counts,
    bar: Option<ProgressBar>,
    plain_interval: Duration,
    last_plain: Instant,
}

impl Progress {
    pub fn new(expected_rows: Arc<AtomicU64>, plain_interval: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            started: Instant::now(),
            expected_rows,
            this_run: Counts::default(),
            skipped: Counts::default(),
            bar,
            plain_interval,
            last_plain: Instant::now(),
        }
    }

    pub fn row_done(&mut self, outcome: Outcome) {
        self.this_run.add(outcome);
        self.advance();
    }

    pub fn row_skipped(&mut self, earlier: Outcome) {
        self.skipped.add(earlier);
        self.advance();
    }

    fn done(&self) -> u64 {
        self.this_run.total() + self.skipped.total()
    }

    fn advance(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.expected_rows.load(Ordering::Relaxed).max(self.done()));
            bar.set_position(self.done());
            bar.set_message(self.this_run.describe());
        }
    }

    /// Called on a timer: logs the plain progress line when there is no bar.
    pub fn tick(&mut self) {
        if self.bar.is_some() || self.last_plain.elapsed() < self.plain_interval {
            return;
        }
        self.last_plain = Instant::now();
        let done = self.done();
        let expected = self.expected_rows.load(Ordering::Relaxed).max(done);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = self.this_run.total() as f64 / elapsed.max(0.001);
        let eta = if rate > 0.0 && expected > done {
            format!("{}s", ((expected - done) as f64 / rate).ceil())
        } else {
            "-".to_string()
        };
        tracing::info!(
            "progress: {done}/{expected} rows ({}), {rate:.1} rows/s, eta {eta}",
            self.this_run.describe()
        );
    }

    pub fn finish(&self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed()
    }
}

/// Everything the end-of-run summary says.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub this_run: Counts,
    pub skipped: Counts,
    pub elapsed: Duration,
    pub results_path: PathBuf,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub interrupted: bool,
    pub credentials_refused: bool,
}

impl RunSummary {
    /// Every input row's latest outcome: this run's rows plus those finished earlier.
    pub fn all_rows(&self) -> Counts {
        self.this_run.plus(&self.skipped)
    }

    pub fn exit_code(&self) -> u8 {
        let all = self.all_rows();
        if self.credentials_refused {
            crate::exit::USAGE_OR_CONFIG
        } else if self.interrupted {
            crate::exit::INTERRUPTED
        } else if all.get(Outcome::Rejected)
            + all.get(Outcome::Invalid)
            + all.get(Outcome::UpdateFailed)
            > 0
        {
            crate::exit::ROWS_FAILED
        } else if all.get(Outcome::GaveUp) > 0 {
            crate::exit::TEMPORARY_FAILURE
        } else {
            crate::exit::SUCCESS
        }
    }

    /// The human summary printed on stdout at the end of a run.
    pub fn render(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let mut text = format!(
            "{} rows in {seconds:.1}s ({:.1} rows/s)\n",
            self.this_run.total(),
            self.this_run.total() as f64 / seconds.max(0.001)
        );
        for outcome in Outcome::ALL {
            text.push_str(&format!(
                "  {:<20}{}\n",
                outcome.as_str(),
                self.this_run.get(outcome)
            ));
        }
        if self.skipped.total() > 0 {
            text.push_str(&format!(
                "  skipped, finished by an earlier run: {} ({})\n",
                self.skipped.total(),
                self.skipped.describe()
            ));
        }
        text.push_str(&format!(
            "requests {}, retries {}, throttled (429) {}\nresults: {}\n",
            self.requests,
            self.retries,
            self.throttled,
            self.results_path.display()
        ));
        if self.interrupted {
            text.push_str(
                "interrupted: run the same command again to resume where this run stopped\n",
            );
        } else if self.all_rows().get(Outcome::GaveUp) > 0 && !self.credentials_refused {
            text.push_str("some rows gave up on transient errors: run the same command again later to retry them\n");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(this_run: &[Outcome], skipped: &[Outcome]) -> RunSummary {
        let mut counts = Counts::default();
        this_run.iter().for_each(|o| counts.add(*o));
        let mut earlier = Counts::default();
        skipped.iter().for_each(|o| earlier.add(*o));
        RunSummary {
            this_run: counts,
            skipped: earlier,
            elapsed: Duration::from_secs(1),
            results_path: PathBuf::from("r.csv"),
            requests: 0,
            retries: 0,
            throttled: 0,
            interrupted: false,
            credentials_refused: false,
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        use Outcome::*;
        assert_eq!(
            summary(&[Registered, AlreadyRegistered, Duplicate], &[]).exit_code(),
            0
        );
        assert_eq!(summary(&[Registered, Invalid], &[]).exit_code(), 1);
        assert_eq!(summary(&[GaveUp, Rejected], &[]).exit_code(), 1);
        assert_eq!(summary(&[GaveUp, Registered], &[]).exit_code(), 75);
        assert_eq!(summary(&[GaveUp, UpdateFailed], &[]).exit_code(), 1);
        assert_eq!(summary(&[], &[UpdateFailed]).exit_code(), 1);
        assert_eq!(
            summary(&[], &[Rejected]).exit_code(),
            1,
            "earlier refusals still count"
        );
        assert_eq!(summary(&[], &[Registered]).exit_code(), 0);
        let mut interrupted = summary(&[Rejected], &[]);
        interrupted.interrupted = true;
        assert_eq!(interrupted.exit_code(), 130);
        interrupted.credentials_refused = true;
        assert_eq!(interrupted.exit_code(), 2);
    }
}
