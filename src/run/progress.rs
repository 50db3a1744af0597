//! What a person watching the run sees: a live bar on a terminal, a plain line every
//! `--progress-interval` otherwise (cron mail and journald want no carriage returns), and the
//! final summary on stdout. Nothing with `-q`.
//!
//! The bar's rate and time left count the rows this run sends, not the rows skipped as
//! finished by an earlier run: a resumed run skips thousands in a moment, and a rate that
//! counted them would promise the rest in seconds. While the bar is drawn, log lines are
//! written around it ([`crate::logs::draw_around`]); when the run ends its last state stays
//! on screen as one line.
//!
//! Only the results writer calls into this module, so one task owns the display.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// These counts with `n` more rows of `outcome`.
    pub(crate) fn with(mut self, outcome: Outcome, n: u64) -> Counts {
        self.0[outcome as usize] += n;
        self
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

/// Seconds left at this run's sending rate: `remaining` rows (rows still to be read, skipped
/// ones included, so the guess errs long) at `sent` rows per `elapsed`. `None` before the
/// first row is sent, or when nothing remains.
pub(crate) fn eta_seconds(remaining: u64, sent: u64, elapsed: Duration) -> Option<u64> {
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
    (sent > 0 && remaining > 0).then(|| (remaining as f64 / rate).ceil() as u64)
}

/// `42s`, `3m 05s`, `2h 07m`: a time left, short.
fn short_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Rows sent by this run so far, shared with the bar's rate and time-left keys.
#[derive(Debug)]
struct Sending {
    started: Instant,
    rows: AtomicU64,
}

impl Sending {
    fn rate(&self) -> f64 {
        self.rows.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64().max(0.001)
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
    sending: Arc<Sending>,
}

impl Progress {
    pub(crate) fn new(expected_rows: u64, plain_interval: Duration) -> Self {
        let started = Instant::now();
        let sending = Arc::new(Sending {
            started,
            rows: AtomicU64::new(0),
        });
        let show_bar = crate::logs::terminal() && !crate::logs::quiet();
        let bar = show_bar.then(|| bar(expected_rows, &sending));
        crate::logs::draw_around(bar.clone());
        Progress {
            started,
            expected_rows,
            this_run: Counts::default(),
            skipped: Counts::default(),
            bar,
            plain_interval,
            last_plain: Instant::now(),
            logged_since_row: false,
            awaiting_update: Default::default(),
            sending,
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
        self.sending.rows.fetch_add(1, Ordering::Relaxed);
        self.advance();
    }

    pub(crate) fn row_skipped(&mut self, earlier: Outcome) {
        self.skipped.add(earlier);
        self.advance();
    }

    fn done(&self) -> u64 {
        self.this_run.total() + self.skipped.total()
    }

    /// `registered 3, rejected 1; 200 done in earlier runs`, or `all 205 done in earlier
    /// runs` when this run has sent nothing: never "nothing yet" beside a full count.
    fn outcomes(&self) -> String {
        let earlier = self.skipped.total();
        match (self.this_run.total(), earlier) {
            (0, 0) => self.this_run.describe(),
            (0, n) if n >= self.expected_rows => format!("all {n} done in earlier runs"),
            (0, n) => format!("{n} done in earlier runs"),
            (_, 0) => self.this_run.describe(),
            (_, n) => format!("{}; {n} done in earlier runs", self.this_run.describe()),
        }
    }

    fn advance(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.expected_rows.max(self.done()));
            bar.set_position(self.done());
            bar.set_message(self.outcomes());
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
        let eta_seconds = eta_seconds(
            expected - done,
            self.this_run.total(),
            self.started.elapsed(),
        );
        let eta = eta_seconds.map_or_else(|| "-".to_string(), |s| format!("{s}s"));
        let outcomes = self.outcomes();
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

    /// Ends the display: the bar's last state stays as one line, and log lines go straight
    /// to stderr again. Off a terminal, a run that logged no progress line since its last
    /// row (one shorter than `--progress-interval`) logs one now, so every run has one.
    pub(crate) fn finish(&mut self) -> Duration {
        if let Some(bar) = self.bar.take() {
            bar.finish();
            crate::logs::draw_around(None);
            // The finished bar leaves the cursor at its end: the next line starts below it.
            if !bar.is_hidden() {
                use std::io::Write;
                let _ = crate::logs::Stderr.write_all(b"\n");
            }
        } else if !self.logged_since_row && self.done() > 0 && !crate::logs::quiet() {
            self.log_plain();
        }
        self.started.elapsed()
    }
}

/// The bar: rows read of the input, this run's sending rate, the time left at that rate,
/// and the outcomes so far.
fn bar(expected_rows: u64, sending: &Arc<Sending>) -> ProgressBar {
    let bar = ProgressBar::new(expected_rows);
    let template = if crate::logs::color() {
        "{bar:30.cyan/blue} {pos}/{len} rows  {rate}  eta {left}  {msg}"
    } else {
        "{bar:30} {pos}/{len} rows  {rate}  eta {left}  {msg}"
    };
    let (for_rate, for_left) = (Arc::clone(sending), Arc::clone(sending));
    let style = ProgressStyle::with_template(template)
        .map(|style| {
            style
                .with_key(
                    "rate",
                    move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}/s", for_rate.rate());
                    },
                )
                .with_key(
                    "left",
                    move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let remaining = state.len().unwrap_or(0).saturating_sub(state.pos());
                        let sent = for_left.rows.load(Ordering::Relaxed);
                        let left = eta_seconds(remaining, sent, for_left.started.elapsed());
                        let _ = match left {
                            Some(seconds) => write!(w, "{}", short_duration(seconds)),
                            None => write!(w, "-"),
                        };
                    },
                )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_counts_only_rows_this_run_sent() {
        // A resumed run: 900 rows skipped in a moment, then 5 sent in 5 s; 95 rows remain.
        assert_eq!(eta_seconds(95, 5, Duration::from_secs(5)), Some(95));
        assert_eq!(eta_seconds(95, 0, Duration::from_secs(5)), None);
        assert_eq!(eta_seconds(0, 5, Duration::from_secs(5)), None);
        assert_eq!(short_duration(95), "1m 35s");
        assert_eq!(short_duration(7260), "2h 01m");
    }

    #[test]
    fn a_rerun_with_every_row_done_earlier_says_so_not_nothing_yet() {
        let mut progress = Progress::new(3, Duration::from_secs(3600));
        for _ in 0..3 {
            progress.row_skipped(Outcome::Registered);
        }
        assert_eq!(progress.outcomes(), "all 3 done in earlier runs");
        progress.row_done(9, Outcome::Rejected);
        assert_eq!(progress.outcomes(), "rejected 1; 3 done in earlier runs");
    }

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
