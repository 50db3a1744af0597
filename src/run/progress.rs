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
pub(crate) struct Counts([u64; Outcome::ALL.len()]);

impl Counts {
    pub(crate) fn add(&mut self, outcome: Outcome) {
        self.0[outcome as usize] += 1;
    }
    pub(crate) fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize]
    }
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub(crate) fn plus(&self, other: &Counts) -> Counts {
        let mut sum = *self;
        for (a, b) in sum.0.iter_mut().zip(other.0) {
            *a += b;
        }
        sum
    }
    /// `registered 3, rejected 1`: the outcomes that occurred, in contract order.
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct Progress {
    started: Instant,
    /// Input rows, as the plan counted them.
    expected_rows: u64,
    /// Rows that reached an outcome in this run.
    pub(crate) this_run: Counts,
    /// Rows skipped because an earlier run finished them, by their earlier outcome.
    pub(crate) skipped: Counts,
    bar: Option<ProgressBar>,
    plain_interval: Duration,
    last_plain: Instant,
    /// Whether a plain progress line was logged since the last row.
    logged_since_row: bool,
    /// Lines of SIMs registered (checkpoint written) whose update step has not finished.
    awaiting_update: std::collections::HashSet<u64>,
}

impl Progress {
    pub(crate) fn new(expected_rows: u64, plain_interval: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(if crate::logs::color() {
                    "{bar:30.cyan/blue} {pos}/{len} rows  {rate}  eta {eta}  {msg}"
                } else {
                    "{bar:30} {pos}/{len} rows  {rate}  eta {eta}  {msg}"
                })
                .map(|style| {
                    style.with_key(
                        "rate",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.1}/s", state.per_sec());
                        },
                    )
                })
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
            logged_since_row: false,
            awaiting_update: Default::default(),
        }
    }

    /// A SIM registered, its update step to follow: counted in the summary as registered
    /// if the run ends before its row does.
    pub(crate) fn checkpoint(&mut self, line: u64) {
        self.awaiting_update.insert(line);
    }

    /// SIMs registered whose update step had not finished.
    pub(crate) fn update_pending(&self) -> u64 {
        self.awaiting_update.len() as u64
    }

    pub(crate) fn row_done(&mut self, line: u64, outcome: Outcome) {
        self.awaiting_update.remove(&line);
        self.this_run.add(outcome);
        self.advance();
    }

    pub(crate) fn row_skipped(&mut self, earlier: Outcome) {
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
        self.logged_since_row = false;
        self.tick();
    }

    /// Logs the plain progress line when there is no bar and the interval has passed.
    /// Called on every row and on a timer, so a stalled run still reports.
    pub(crate) fn tick(&mut self) {
        if self.bar.is_some() || self.last_plain.elapsed() < self.plain_interval {
            return;
        }
        self.log_plain();
    }

    /// One plain progress line, its numbers as fields (typed in JSON logs).
    fn log_plain(&mut self) {
        self.last_plain = Instant::now();
        self.logged_since_row = true;
        let done = self.done();
        let expected = self.expected_rows.max(done);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = self.this_run.total() as f64 / elapsed.max(0.001);
        let rate = (rate * 10.0).round() / 10.0;
        let eta_seconds = (rate > 0.0 && expected > done)
            .then(|| ((expected - done) as f64 / rate).ceil() as u64);
        let eta = eta_seconds.map_or_else(|| "-".to_string(), |s| format!("{s}s"));
        let outcomes = self.this_run.describe();
        if crate::logs::json() {
            let c = |o: Outcome| self.this_run.get(o);
            tracing::info!(
                done,
                expected,
                rate,
                eta_seconds,
                registered = c(Outcome::Registered),
                already_registered = c(Outcome::AlreadyRegistered),
                rejected = c(Outcome::Rejected),
                update_failed = c(Outcome::UpdateFailed),
                gave_up = c(Outcome::GaveUp),
                invalid = c(Outcome::Invalid),
                duplicate = c(Outcome::Duplicate),
                skipped_as_finished = self.skipped.total(),
                "progress"
            );
        } else {
            tracing::info!(
                "progress: {done}/{expected} rows ({outcomes}), {rate:.1} rows/s, eta {eta}"
            );
        }
    }

    /// Ends the display. Off a terminal, a run that logged no progress line since its last
    /// row (one shorter than `--progress-interval`) logs one now, so every run has one.
    pub(crate) fn finish(&mut self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if !self.logged_since_row && self.done() > 0 {
            self.log_plain();
        }
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sims_at_their_checkpoint_are_counted_until_their_row_arrives() {
        let mut progress = Progress::new(3, Duration::from_secs(3600));
        progress.checkpoint(2);
        progress.checkpoint(3);
        progress.checkpoint(4);
        progress.row_done(3, Outcome::Registered);
        assert_eq!(progress.update_pending(), 2);
        assert_eq!(progress.this_run.get(Outcome::Registered), 1);
    }
}
