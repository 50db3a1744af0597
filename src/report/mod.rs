//! `register --report run.html`: the run as one self-contained HTML page, to answer "why
//! was last night's run slow?" at a glance. It shows the run (command line without
//! secrets, version, account, API, start, end, exit code and what it means, why it stopped),
//! the timeline charts ([`charts`]: SVG from `plotters`, inline), the outcome breakdown, and
//! the rows that need a person (the first 1,000, as in the summary JSON).
//!
//! The page makes no network request: no script, and no font, style or image from
//! elsewhere; it reads the same offline and on paper. Every text put in it is escaped.
//! Its size is bounded whatever the run's length: the timeline has a fixed number of
//! buckets and the needing-a-person list a fixed number of rows. Never a registration code
//! or a credential: the record holds neither.

mod charts;

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::results::Outcome;
use crate::run::record::RunRecord;
use crate::run::summary::RunSummary;

/// The page's own style: inline, so nothing is fetched.
const STYLE: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.2em 0.8em 0.2em 0; vertical-align: top; }
td.n, th.n { text-align: right; }
table.rows td, table.rows th { border-bottom: 1px solid #eee; font-size: 0.9em; }
.status { font-weight: bold; padding: 0.1em 0.5em; border-radius: 0.3em; }
.ok { background: #d8f0dd; } .bad { background: #f8d7d7; } .warn { background: #fcebc8; }
code { font-size: 0.95em; word-break: break-all; }
figure { margin: 0.5em 0 1em; page-break-inside: avoid; }
figure svg { width: 100%; height: auto; }
.note { color: #555; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } }
";

/// The report of `record` as one HTML page.
pub(crate) fn render(record: &RunRecord) -> String {
    let mut page = String::with_capacity(256 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>supersim-bulk register: {end}, exit {code}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n",
        end = escape(&record.end),
        code = record.exit_code,
    );
    let class = match record.exit_code {
        crate::exit::SUCCESS => "ok",
        crate::exit::INTERRUPTED | crate::exit::TEMPORARY_FAILURE => "warn",
        _ => "bad",
    };
    let _ = write!(
        page,
        "<h1>supersim-bulk register <span class=\"status {class}\">{end}, exit {code}</span></h1>\n\
         <p class=\"note\">{meaning}</p>\n",
        end = escape(&record.end),
        code = record.exit_code,
        meaning = escape(crate::exit::meaning(record.exit_code)),
    );
    run_section(&mut page, record);
    match &record.timeline {
        Some(timeline) if !timeline.buckets().is_empty() => {
            page.push_str("<h2>Timeline</h2>\n");
            if timeline.seconds_per_bucket() > 1 {
                let _ = writeln!(
                    page,
                    "<p class=\"note\">Each point covers {} seconds (a long run's seconds are \
                     merged, so the page stays small); rates are per second.</p>",
                    timeline.seconds_per_bucket()
                );
            }
            match charts::draw(timeline) {
                Ok(charts) => {
                    for (title, svg) in charts {
                        let _ = writeln!(
                            page,
                            "<figure class=\"chart\">\n<h3>{}</h3>\n{svg}\n</figure>",
                            escape(&title)
                        );
                    }
                }
                Err(error) => {
                    let _ = writeln!(
                        page,
                        "<p class=\"note\">The charts could not be drawn: {}</p>",
                        escape(&error)
                    );
                }
            }
        }
        _ => page.push_str(
            "<h2>Timeline</h2>\n<p class=\"note\">No timeline: the run stopped before it \
             sent any request.</p>\n",
        ),
    }
    if let Some(summary) = &record.summary {
        outcomes_section(&mut page, summary);
        needs_a_person_section(&mut page, summary);
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// Writes the report of `record` to `path` atomically.
pub(crate) fn write(path: &Path, record: &RunRecord) -> std::io::Result<()> {
    crate::paths::write_atomically(path, render(record).as_bytes())
}

/// The run: what it was, against what, when, and how it ended.
fn run_section(page: &mut String, record: &RunRecord) {
    page.push_str("<h2>The run</h2>\n<table class=\"run\">\n");
    let mut row = |name: &str, value: &str| {
        let _ = writeln!(page, "<tr><th>{name}</th><td>{}</td></tr>", escape(value));
    };
    row("version", env!("CARGO_PKG_VERSION"));
    row(
        "account",
        record
            .account
            .as_deref()
            .unwrap_or("not named by the credentials"),
    );
    row("API", &record.api);
    row("started", &rfc3339(record.started_at));
    row("ended", &rfc3339(record.finished_at));
    let took = record
        .finished_at
        .duration_since(record.started_at)
        .unwrap_or_default();
    row("took", &format!("{:.1} s", took.as_secs_f64()));
    row(
        "exit code",
        &format!(
            "{} ({})",
            record.exit_code,
            crate::exit::meaning(record.exit_code)
        ),
    );
    row("end", &record.end);
    if let Some(reason) = &record.reason {
        row("why it stopped", reason);
    }
    if let Some(summary) = &record.summary {
        row("input", &summary.input);
        row("results", &summary.results_path.display().to_string());
        let c = &summary.concurrency;
        row(
            "requests",
            &format!(
                "{} ({} retries, {} answered 429: {:.1}%)",
                summary.requests,
                summary.retries,
                summary.throttled,
                c.throttled_share * 100.0
            ),
        );
        if summary.requests > 0 && c.adaptive {
            let limit = c.learned_limit.map_or_else(
                || "no 429 met".to_string(),
                |limit| {
                    let whose = if c.limit_counted {
                        "account limit"
                    } else {
                        "room"
                    };
                    format!("{whose} found: {limit}")
                },
            );
            row(
                "in flight",
                &format!(
                    "settled at {} (ceiling {}, lowest {}, highest {}); {limit}",
                    c.settled, c.ceiling, c.lowest, c.highest
                ),
            );
        }
        if let (Some(mean), Some(peak)) = (c.other_in_flight, c.other_peak) {
            row(
                "other traffic",
                &format!("{mean:.1} requests in flight on average, {peak} at most"),
            );
        }
    }
    let _ = writeln!(
        page,
        "<tr><th>command</th><td><code>{}</code></td></tr>\n</table>",
        escape(&record.command_line)
    );
}

/// Rows by outcome: this run's, the earlier runs' skipped ones, and the whole file.
fn outcomes_section(page: &mut String, summary: &RunSummary) {
    let all = summary.all_rows();
    let this_run = summary.rows_by_outcome();
    page.push_str(
        "<h2>Outcomes</h2>\n<table class=\"outcomes\">\n<tr><th>outcome</th>\
         <th class=\"n\">this run</th><th class=\"n\">finished earlier</th>\
         <th class=\"n\">whole file</th></tr>\n",
    );
    for outcome in Outcome::ALL {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            outcome.as_str(),
            this_run.get(outcome),
            summary.skipped.get(outcome),
            all.get(outcome)
        );
    }
    let _ = writeln!(
        page,
        "<tr><th>all</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th></tr>\n</table>",
        this_run.total(),
        summary.skipped.total(),
        all.total()
    );
    if summary.update_pending > 0 {
        let _ = writeln!(
            page,
            "<p class=\"note\">{} of the registered SIMs still have their update step to do: the \
             next run finishes it.</p>",
            summary.update_pending
        );
    }
}

/// The rows this run finished that need a person, as the summary JSON lists them.
fn needs_a_person_section(page: &mut String, summary: &RunSummary) {
    let needs = &summary.needs_a_person;
    page.push_str("<h2 id=\"needs-a-person\">Rows that need a person</h2>\n");
    if needs.total == 0 {
        page.push_str("<p>None.</p>\n");
        return;
    }
    let _ = writeln!(
        page,
        "<p>{} row{} in all{}.</p>",
        needs.total,
        if needs.total == 1 { "" } else { "s" },
        if needs.total > needs.rows.len() as u64 {
            format!(
                "; the first {} by line below, the rest in the results file {}",
                needs.rows.len(),
                escape(&summary.results_path.display().to_string())
            )
        } else {
            String::new()
        }
    );
    page.push_str(
        "<table class=\"rows needs-a-person\">\n<tr><th class=\"n\">line</th><th>ICCID</th>\
         <th>outcome</th><th class=\"n\">Twilio error</th><th>message</th></tr>\n",
    );
    for row in &needs.rows {
        let _ = writeln!(
            page,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            row.line,
            escape(&row.iccid),
            escape(row.outcome),
            row.error_code.map(|c| c.to_string()).unwrap_or_default(),
            escape(row.message.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table>\n");
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `text` safe inside an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests;
