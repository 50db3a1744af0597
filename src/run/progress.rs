//! What a person watching the run sees: a live bar on a terminal, a plain line every
//! `--progress-interval` otherwise (cron mail and journald want no carriage returns), and the
//! final summary on stdout.
//!
//! Only the results writer calls into this module, so one task owns the display.

use std::io::IsTerminal;
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
    /// Input rows, as the plan counted them.
    expected_rows: u64,
    /// Rows that reached an outcome in this run.
    pub this_run: Counts,
    /// Rows skipped because an earlier run finished them, by their earlier outcome.
    pub skipped: Counts,
    bar: Option<ProgressBar>,
    plain_interval: Duration,
    last_plain: Instant,
}

impl Progress {
    pub fn new(expected_rows: u64, plain_interval: Duration) -> Self {
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
            bar.set_length(self.expected_rows.max(self.done()));
            bar.set_position(self.done());
            bar.set_message(self.this_run.describe());
        }
        self.tick();
    }

    /// Logs the plain progress line when there is no bar and the interval has passed.
    /// Called on every row and on a timer, so a stalled run still reports.
    pub fn tick(&mut self) {
        if self.bar.is_some() || self.last_plain.elapsed() < self.plain_interval {
            return;
        }
        self.last_plain = Instant::now();
        let done = self.done();
        let expected = self.expected_rows.max(done);
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
