//! The end of a run as people and scripts read it: why it ended, the counts, the exit code,
//! the human summary on stdout and the `--summary-json` file.
//!
//! The exit code describes this run: the rows it finished. A resumed run over a file whose
//! earlier runs left refusals exits 0 when it finishes nothing new that failed; the whole
//! file stays in the summary (`whole_file`, "N rows failed in earlier runs").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::results::Outcome;
use crate::run::progress::Counts;
pub(crate) use crate::run::stop::EndReason;
use crate::run::stop::failed;

/// The `--max-failures` limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MaxFailures {
    /// More than this many rejected rows stops the run.
    Count(u64),
    /// More than this share (percent) of finished rows rejected stops the run, once at least
    /// [`MaxFailures::MIN_ROWS_FOR_PERCENT`] rows are finished.
    Percent(f64),
}

impl MaxFailures {
    pub(crate) const MIN_ROWS_FOR_PERCENT: u64 = 100;

    /// A sentence saying the limit was passed, or `None` while it holds.
    pub(crate) fn exceeded(&self, failed: u64, finished: u64) -> Option<String> {
        match *self {
            MaxFailures::Count(limit) => (failed > limit).then(|| {
                format!("{failed} rows were refused for good, more than --max-failures {limit}")
            }),
            MaxFailures::Percent(limit) => {
                let share = 100.0 * failed as f64 / finished.max(1) as f64;
                (finished >= Self::MIN_ROWS_FOR_PERCENT && share > limit).then(|| {
                    format!(
                        "{failed} of {finished} rows ({share:.1}%) were refused for good, \
                         more than --max-failures {limit}%"
                    )
                })
            }
        }
    }
}

/// Everything the end-of-run summary says.
#[derive(Debug, Clone)]
pub(crate) struct RunSummary {
    pub(crate) started_at: SystemTime,
    pub(crate) finished_at: SystemTime,
    pub(crate) input: String,
    pub(crate) results_path: PathBuf,
    pub(crate) this_run: Counts,
    /// Rows skipped because an earlier run finished them, by that earlier outcome.
    pub(crate) skipped: Counts,
    pub(crate) elapsed: Duration,
    pub(crate) requests: u64,
    pub(crate) retries: u64,
    pub(crate) throttled: u64,
    pub(crate) concurrency: ConcurrencyReport,
    pub(crate) end: EndReason,
    /// SIMs registered by this run whose update step (Fleet, status) had not finished when
    /// it ended: their checkpoint row is in the results file, and the next run resumes them.
    pub(crate) update_pending: u64,
    /// Rows the results file keeps about SIMs that are not in this input (after its rows).
    pub(crate) not_in_input: u64,
    /// What the results file holds about the input's lines, by outcome, when the run
    /// stopped before it reached every row (read from the compacted file); else `None`,
    /// and every input row's outcome is this run's or a skipped row's.
    pub(crate) whole_file: Option<Counts>,
    /// The rows this run finished that need a person, the first [`NEEDS_A_PERSON_LISTED`].
    pub(crate) needs_a_person: NeedsAPerson,
}

/// Rows listed by name in the summary JSON; the rest are counted, and in the results file.
pub(crate) const NEEDS_A_PERSON_LISTED: usize = 1000;
/// Rows named in the text summary.
const NEEDS_A_PERSON_SHOWN: usize = 5;

/// The rows a run finished that a person has to look at (`rejected`, `invalid`, `gave_up`,
/// `update_failed`): the first [`NEEDS_A_PERSON_LISTED`] to finish, in line order once the
/// run ends, and how many in all. Memory stays bounded whatever the run's size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct NeedsAPerson {
    pub(crate) total: u64,
    pub(crate) rows: Vec<PersonRow>,
}

/// One row that needs a person, as the summary JSON lists it. Never a registration code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PersonRow {
    pub(crate) line: u64,
    pub(crate) iccid: String,
    pub(crate) outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

impl NeedsAPerson {
    /// Notes `row` if it needs a person.
    pub(crate) fn note(&mut self, row: &crate::results::ResultRow) {
        if !matches!(
            row.outcome,
            Outcome::Rejected | Outcome::Invalid | Outcome::GaveUp | Outcome::UpdateFailed
        ) {
            return;
        }
        self.total += 1;
        if self.rows.len() < NEEDS_A_PERSON_LISTED {
            self.rows.push(PersonRow {
                line: row.line,
                iccid: row.iccid.clone(),
                outcome: row.outcome.as_str(),
                error_code: row.error_code,
                message: row.error_message.clone(),
            });
        }
    }

    /// The listed rows in input line order (they are noted in the order they finish, which
    /// depends on timing).
    pub(crate) fn in_line_order(mut self) -> Self {
        self.rows.sort_by_key(|row| row.line);
        self
    }

    /// The text summary's lines: the first few rows, and where the rest are.
    fn describe(&self, results: &std::path::Path) -> String {
        if self.total == 0 {
            return String::new();
        }
        let mut text = format!(
            "needs a person: {} row{}\n",
            self.total,
            if self.total == 1 { "" } else { "s" }
        );
        for row in self.rows.iter().take(NEEDS_A_PERSON_SHOWN) {
            let code = row
                .error_code
                .map_or_else(String::new, |code| format!(" (Twilio error {code})"));
            let message = row.message.as_deref().unwrap_or("");
            text.push_str(&format!(
                "  line {} {} {}{code}: {message}\n",
                row.line, row.iccid, row.outcome
            ));
        }
        let rest = self.total.saturating_sub(NEEDS_A_PERSON_SHOWN as u64);
        if rest > 0 {
            text.push_str(&format!(
                "  and {rest} more: see the results file {} (and --summary-json)\n",
                results.display()
            ));
        }
        text
    }
}

/// Where the in-flight limit ended up, and what the run saw of the account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct ConcurrencyReport {
    /// `--concurrency`.
    pub(crate) ceiling: usize,
    pub(crate) adaptive: bool,
    /// The limit at the end of the run.
    pub(crate) settled: usize,
    /// The lowest the limit was cut to.
    pub(crate) lowest: usize,
    /// The highest the limit reached.
    pub(crate) highest: usize,
    /// The account's concurrency limit as last learned from a 429 (this run's room when the
    /// API sends no `Twilio-Concurrent-Requests`); `None` when no 429 came.
    pub(crate) learned_limit: Option<usize>,
    /// `--max-share`, 0 to 1.
    pub(crate) max_share: f64,
    /// Whether the API reported the account's requests in flight.
    pub(crate) header_seen: bool,
    /// Whether admitted answers reported it too; false when only 429s did (or none), and
    /// then the other traffic is seen only when the account is full, at what this run left.
    pub(crate) header_on_admitted: bool,
    /// Whether `learned_limit` was read from a 429's count, so is the account's limit; false
    /// when it is this run's room, as the refused request showed it.
    pub(crate) limit_counted: bool,
    /// Other traffic on the account: its mean and highest requests in flight, from the header.
    pub(crate) other_in_flight: Option<f64>,
    pub(crate) other_peak: Option<u32>,
    /// Share of this run's requests answered 429.
    pub(crate) throttled_share: f64,
    /// The most of this run's requests in flight at once; below `settled` when the run
    /// ended before it filled its window.
    pub(crate) peak_in_flight: usize,
}

impl ConcurrencyReport {
    /// The report for a run with this ceiling and share, from what the limit saw.
    pub(crate) fn new(
        ceiling: usize,
        adaptive: bool,
        max_share: f64,
        seen: crate::api::adaptive::Observed,
        requests: u64,
        throttled: u64,
    ) -> Self {
        ConcurrencyReport {
            ceiling,
            adaptive,
            settled: seen.settled,
            lowest: seen.lowest,
            highest: seen.highest,
            learned_limit: seen.learned_limit,
            max_share,
            header_seen: seen.header_seen,
            header_on_admitted: seen.header_on_admitted,
            limit_counted: seen.limit_counted,
            other_in_flight: seen.other_in_flight.map(|v| (v * 10.0).round() / 10.0),
            other_peak: seen.other_peak,
            throttled_share: if requests == 0 {
                0.0
            } else {
                throttled as f64 / requests as f64
            },
            peak_in_flight: seen.peak_in_flight,
        }
    }

    /// The text summary's concurrency line(s), for a run that met `throttled` 429s. A run
    /// that never had as many requests in flight as its limit allowed (too few rows, or too
    /// short) says how many it had at most, not where a limit it never reached "settled".
    fn describe(&self, throttled: u64) -> String {
        if !self.adaptive {
            return format!("concurrency: fixed at {}\n", self.ceiling);
        }
        let mut text = if self.peak_in_flight > 0 && self.settled > self.peak_in_flight {
            format!(
                "concurrency: at most {} in flight, too few for the limit to settle (ceiling {}, \
                 lowest {}",
                self.peak_in_flight, self.ceiling, self.lowest
            )
        } else {
            format!(
                "concurrency: settled at {} in flight (ceiling {}, lowest {}, highest {}",
                self.settled, self.ceiling, self.lowest, self.highest
            )
        };
        match (self.learned_limit, self.limit_counted) {
            (Some(limit), true) => text.push_str(&format!("; account limit found: {limit}")),
            (Some(limit), false) => text.push_str(&format!("; room found: {limit}")),
            // 429s met, but the limit they showed was outgrown (probes found it had risen).
            (None, _) if throttled > 0 => text.push_str(&format!(
                "; {throttled} 429{} met, the limit since risen",
                if throttled == 1 { "" } else { "s" }
            )),
            (None, _) => text.push_str("; no 429 met"),
        }
        if self.max_share < 1.0 {
            text.push_str(&format!("; --max-share {:.0}%", self.max_share * 100.0));
        }
        text.push_str(&format!(
            "), 429 share {:.1}%\n",
            self.throttled_share * 100.0
        ));
        match (self.other_in_flight, self.other_peak) {
            (Some(mean), Some(peak)) if peak > 0 && !self.header_on_admitted => {
                text.push_str(&format!(
                    "other traffic on the account: {mean:.1} requests in flight on average at \
                     this run's 429s, {peak} at most; the API counts them on 429s only, when the \
                     account is full, which shows what this run left the other traffic, not \
                     what it needs: --max-share leaves it room
"
                ))
            }
            (Some(mean), Some(peak)) => text.push_str(&format!(
                "other traffic on the account: {mean:.1} requests in flight on average, {peak} at most
"
            )),
            _ if !self.header_seen => text.push_str(
                "other traffic on the account: not visible (the API sent no \
                 Twilio-Concurrent-Requests); --max-share leaves it room
",
            ),
            _ => {}
        }
        text
    }
}

impl RunSummary {
    /// Every input row's latest outcome: this run's rows plus those finished earlier, or,
    /// after a run that stopped early, what the results file holds about the input's lines.
    pub(crate) fn all_rows(&self) -> Counts {
        self.whole_file
            .unwrap_or_else(|| self.rows_by_outcome().plus(&self.skipped))
    }

    /// This run's rows by the outcome the results file holds for them: a SIM registered
    /// whose update step had not finished has a `registered` checkpoint row, so it counts
    /// as registered, as the text summary and the `run ended` line count it.
    pub(crate) fn rows_by_outcome(&self) -> Counts {
        self.this_run.with(Outcome::Registered, self.update_pending)
    }

    /// Rows this run took to an outcome, SIMs registered with their update step still to do
    /// included: the sum of the per-outcome lines, where they count as registered.
    pub(crate) fn rows_this_run(&self) -> u64 {
        self.this_run.total() + self.update_pending
    }

    /// The exit code of this run: it reflects the rows this run finished, so a SIM refused
    /// weeks ago does not make every later cron run exit 1. The whole file stays in the
    /// summary (`whole_file`, "N rows failed in earlier runs").
    pub(crate) fn exit_code(&self) -> u8 {
        self.end.ending(&self.this_run).exit_code
    }

    /// The end of the run as one log event on stderr, with stable field names: a dated
    /// record in `>> register.log 2>&1`, and one JSON object with `--log-format json`.
    pub(crate) fn log(&self) {
        let c = |o: Outcome| self.this_run.get(o);
        let ending = self.end.ending(&self.this_run);
        tracing::info!(
            end = ending.end,
            reason = ending.reason,
            exit_code = u64::from(ending.exit_code),
            rows = self.rows_this_run(),
            registered = c(Outcome::Registered) + self.update_pending,
            registered_update_pending = self.update_pending,
            rows_not_in_input = self.not_in_input,
            already_registered = c(Outcome::AlreadyRegistered),
            rejected = c(Outcome::Rejected),
            update_failed = c(Outcome::UpdateFailed),
            gave_up = c(Outcome::GaveUp),
            invalid = c(Outcome::Invalid),
            duplicate = c(Outcome::Duplicate),
            skipped_as_finished = self.skipped.total(),
            failed_in_earlier_runs = failed(&self.skipped),
            requests = self.requests,
            retries = self.retries,
            throttled = self.throttled,
            elapsed_seconds = (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            results = %self.results_path.display(),
            "run ended"
        );
    }

    /// Whether this run had nothing to do: every row was finished by an earlier run.
    fn nothing_to_do(&self) -> bool {
        self.end == EndReason::Finished
            && self.this_run.total() == 0
            && self.update_pending == 0
            && self.skipped.total() > 0
    }

    /// What the results file keeps about SIMs not in this input, when it keeps any.
    fn not_in_input_note(&self) -> Option<String> {
        match self.not_in_input {
            0 => None,
            1 => Some("1 row about a SIM not in this input, kept after its rows".into()),
            n => Some(format!(
                "{} rows about SIMs not in this input, kept after its rows",
                thousands(n)
            )),
        }
    }

    /// The human summary printed on stdout at the end of a run.
    pub(crate) fn render(&self) -> String {
        if self.nothing_to_do() {
            let failed_earlier = failed(&self.skipped);
            let failed_note = if failed_earlier > 0 {
                format!(
                    "; {failed_earlier} row{} failed in earlier runs (see the results file)",
                    if failed_earlier == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            let kept_note = self
                .not_in_input_note()
                .map(|note| format!("; {note}"))
                .unwrap_or_default();
            return format!(
                "nothing to do: {} rows finished by earlier runs ({}){failed_note}{kept_note}; \
                 results: {}\n",
                thousands(self.skipped.total()),
                self.skipped.describe(),
                self.results_path.display()
            );
        }
        let seconds = self.elapsed.as_secs_f64();
        let rows = self.rows_this_run();
        let mut text = format!(
            "{rows} rows in {seconds:.1}s ({:.1} rows/s)\n",
            rows as f64 / seconds.max(0.001)
        );
        for outcome in Outcome::ALL {
            if outcome == Outcome::Registered && self.update_pending > 0 {
                let pending = self.update_pending;
                text.push_str(&format!(
                    "  {:<20}{} ({pending} of them with their update step still to do: the next run finishes it)\n",
                    outcome.as_str(),
                    self.this_run.get(outcome) + pending
                ));
                continue;
            }
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
            "requests {}, retries {}, throttled (429) {}\n",
            self.requests, self.retries, self.throttled
        ));
        if self.requests > 0 {
            text.push_str(&self.concurrency.describe(self.throttled));
        }
        text.push_str(&self.needs_a_person.describe(&self.results_path));
        let failed_earlier = failed(&self.skipped);
        if failed_earlier > 0 {
            text.push_str(&format!(
                "{failed_earlier} row{} failed in earlier runs (rejected, invalid or update_failed): \
                 see the results file; they do not change this run's exit code. A row fixed in \
                 the input (its ICCID or code) is sent again by the next run\n",
                if failed_earlier == 1 { "" } else { "s" }
            ));
        }
        let kept_note = self
            .not_in_input_note()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default();
        text.push_str(&format!(
            "results: {}{kept_note}\n",
            self.results_path.display()
        ));
        match &self.end {
            EndReason::Interrupted => text.push_str(
                "interrupted: run the same command again to resume where this run stopped\n",
            ),
            EndReason::MaxFailures(why) => text.push_str(&format!(
                "stopped early: {why}; fix the input, then run the same command again to resume\n"
            )),
            EndReason::CredentialsRefused(refusal) => text.push_str(&format!(
                "stopped: the API refused the credentials ({refusal}); rows not yet finished are \
                 left for the next run\n"
            )),
            EndReason::Unreachable(why) => text.push_str(&format!(
                "stopped: {why}; rows not yet finished are left for the next run\n"
            )),
            EndReason::WrongEndpoint(why) => text.push_str(&format!(
                "stopped: {why}; rows not yet finished are left for the next run\n"
            )),
            EndReason::InputChanged(why) => text.push_str(&format!(
                "stopped: {why}; rows not yet finished are left for the next run\n"
            )),
            EndReason::WriterFailed(why) => text.push_str(&format!(
                "stopped: {why}; rows answered after that were not recorded: free the space \
                 (or fix the file), then run the same command again to resume\n"
            )),
            EndReason::Internal(why) => text.push_str(&format!(
                "internal error: {why}; those rows are left for the next run (please report this)\n"
            )),
            EndReason::Finished if self.all_rows().get(Outcome::GaveUp) > 0 => text.push_str(
                "some rows gave up on transient errors: run the same command again later to retry them\n",
            ),
            EndReason::Finished => {}
        }
        text
    }

    /// The `--summary-json` document.
    pub(crate) fn to_json(&self) -> SummaryJson {
        let ending = self.end.ending(&self.this_run);
        SummaryJson {
            tool: "supersim-bulk",
            version: env!("CARGO_PKG_VERSION"),
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(self.finished_at),
            elapsed_seconds: (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            input: self.input.clone(),
            results: self.results_path.display().to_string(),
            end: ending.end,
            reason: ending.reason,
            exit_code: ending.exit_code,
            this_run: OutcomeCounts::from(&self.rows_by_outcome()),
            skipped_as_finished: self.skipped.total(),
            whole_file: OutcomeCounts::from(&self.all_rows()),
            failed_in_earlier_runs: failed(&self.skipped),
            requests: self.requests,
            retries: self.retries,
            throttled: self.throttled,
            concurrency: self.concurrency,
            registered_update_pending: self.update_pending,
            rows_not_in_input: self.not_in_input,
            needs_a_person: self.needs_a_person.clone(),
        }
    }
}

/// `8,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The stable shape of `--summary-json`.
#[derive(Debug, Serialize)]
pub(crate) struct SummaryJson {
    pub(crate) tool: &'static str,
    pub(crate) version: &'static str,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) elapsed_seconds: f64,
    pub(crate) input: String,
    pub(crate) results: String,
    /// `finished`, `interrupted`, `max_failures`, `credentials_refused`, `unreachable`,
    /// `wrong_endpoint`, `input_changed`, `writer_failed` or `internal_error` (see
    /// [`EndReason::ending`]).
    pub(crate) end: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) exit_code: u8,
    /// Rows finished by this run.
    pub(crate) this_run: OutcomeCounts,
    /// Input rows skipped because an earlier run had finished them.
    pub(crate) skipped_as_finished: u64,
    /// The latest outcome of every input row: this run's plus those finished earlier.
    pub(crate) whole_file: OutcomeCounts,
    /// Rows skipped as finished that an earlier run left `rejected`, `invalid` or
    /// `update_failed`: in the file, but not in this run's exit code.
    pub(crate) failed_in_earlier_runs: u64,
    /// HTTP requests sent: creates, retries and lookups.
    pub(crate) requests: u64,
    pub(crate) retries: u64,
    /// Answers of 429 (too many requests).
    pub(crate) throttled: u64,
    pub(crate) concurrency: ConcurrencyReport,
    /// SIMs registered by this run whose update step had not finished when it ended.
    pub(crate) registered_update_pending: u64,
    /// Rows the results file keeps about SIMs that are not in this input.
    pub(crate) rows_not_in_input: u64,
    /// The rows this run finished that need a person: `total`, and the first 1,000 as
    /// `rows` (line, ICCID, outcome, Twilio error code, message).
    pub(crate) needs_a_person: NeedsAPerson,
}

/// Counts keyed by outcome word.
#[derive(Debug, Serialize)]
pub(crate) struct OutcomeCounts(std::collections::BTreeMap<&'static str, u64>);

impl From<&Counts> for OutcomeCounts {
    fn from(counts: &Counts) -> Self {
        OutcomeCounts(
            Outcome::ALL
                .into_iter()
                .map(|o| (o.as_str(), counts.get(o)))
                .collect(),
        )
    }
}

/// Writes `value` as JSON to `path` atomically: a reader sees the old file or the whole new
/// one, never half of it.
pub(crate) fn write_json_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let dir = crate::paths::folder_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "summary.json".to_string());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // The temporary file is always a new one: whatever is in its place (a leftover, or a
    // symlink planted to make us write through it) is removed, never followed.
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = crate::paths::create_new(&temp)?;
    let result = (|| {
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
impl RunSummary {
    /// A summary of `this_run` and `skipped` and nothing else, for tests to change a field of.
    pub(crate) fn for_test(this_run: Counts, skipped: Counts) -> RunSummary {
        RunSummary {
            started_at: SystemTime::UNIX_EPOCH,
            finished_at: SystemTime::UNIX_EPOCH,
            input: "in.csv".into(),
            results_path: PathBuf::from("r.csv"),
            this_run,
            skipped,
            elapsed: Duration::from_secs(1),
            requests: 0,
            retries: 0,
            throttled: 0,
            concurrency: ConcurrencyReport::default(),
            end: EndReason::Finished,
            update_pending: 0,
            not_in_input: 0,
            whole_file: None,
            needs_a_person: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests;
