use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::api::adaptive::Sampled;
use crate::api::latency::Latencies;
use crate::run::progress::Counts;
use crate::run::record::About;
use crate::run::summary::{NeedsAPerson, PersonRow};
use crate::run::timeline::{Bucket, CAPACITY, Timeline};

/// A summary of a run that finished `rows` rows, of which `refused` need a person (each
/// with `message`).
fn summary(rows: u64, refused: u64, message: &str) -> RunSummary {
    let mut this_run = Counts::default();
    for n in 0..rows {
        this_run.add(if n < refused {
            Outcome::Rejected
        } else {
            Outcome::Registered
        });
    }
    let needs_a_person = NeedsAPerson {
        total: refused,
        rows: (0..refused.min(1000))
            .map(|n| PersonRow {
                line: n + 2,
                iccid: format!("89883070000000{n:06}"),
                outcome: "rejected",
                error_code: Some(83002),
                message: Some(message.to_string()),
            })
            .collect(),
    };
    RunSummary {
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_086_000),
        input: "sims.csv".into(),
        results_path: PathBuf::from("sims.results.csv"),
        elapsed: Duration::from_secs(86_000),
        requests: rows,
        needs_a_person,
        ..RunSummary::for_test(this_run, Counts::default())
    }
}

/// A day's timeline, every second sampled with every series present.
fn a_days_timeline() -> Timeline {
    let mut timeline = Timeline::default();
    let answers = Latencies::default();
    for second in 0..86_000u64 {
        for ms in [20, 25, 40, 90] {
            answers.record(Duration::from_millis(ms + second % 7));
        }
        let mut rows = [0; Outcome::ALL.len()];
        rows[0] = 11 + second % 3;
        rows[2] = second % 2;
        let limit = Sampled {
            window: 10 + (second % 5) as usize,
            learned_limit: Some(20 - (second / 40_000) as usize),
            other_in_flight: Some(2.5),
        };
        timeline.record(
            second,
            &Bucket::sampled(rows, (12, second % 3), limit, answers.take()),
        );
    }
    timeline
}

fn record(summary: Option<RunSummary>, timeline: Option<Timeline>) -> RunRecord {
    let about = About {
        command_line: "supersim-bulk register sims.csv --report run.html".into(),
        account: Some("AC0123".into()),
        api: "https://supersim.twilio.com".into(),
    };
    match summary {
        Some(summary) => RunRecord::of_summary(summary, timeline, about),
        None => RunRecord::of_error(
            SystemTime::now(),
            2,
            "no credentials".into(),
            timeline,
            about,
        ),
    }
}

#[test]
fn a_million_row_days_run_makes_a_page_under_a_megabyte() {
    let timeline = a_days_timeline();
    assert!(timeline.buckets().len() <= CAPACITY);
    let page = render(&record(
        Some(summary(1_000_000, 5_000, "Invalid registration code")),
        Some(timeline),
    ));
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    // The first 1,000 rows that need a person, as in the summary JSON, and the total.
    assert_eq!(
        page.matches("<td>rejected</td><td class=\"n\">83002</td>")
            .count(),
        1000
    );
    assert!(page.contains("5000 rows in all"));
    assert!(page.contains("Each point covers 128 seconds"));
}

#[test]
fn every_text_from_the_run_is_escaped() {
    let hostile = "<script>alert(1)</script> & \"quoted\" 'single'";
    let mut summary = summary(3, 1, hostile);
    summary.input = hostile.into();
    let mut record = record(Some(summary), None);
    record.command_line = hostile.into();
    record.reason = Some(hostile.into());
    let page = render(&record);
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains(
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#39;single&#39;"
    ));
}

#[test]
fn the_page_references_nothing_elsewhere() {
    let page = render(&record(
        Some(summary(100, 3, "refused")),
        Some(a_days_timeline()),
    ));
    // The SVG namespace is a name, not a request; no attribute may name a place (the API's
    // URL is text in a cell).
    let without_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for banned in [
        "=\"http", "='http", "src=", "href=", "@import", "url(", "<script", "<link",
    ] {
        assert!(!without_namespace.contains(banned), "{banned} in the page");
    }
}

#[test]
fn a_run_that_stopped_before_any_request_says_why_without_a_timeline() {
    let page = render(&record(None, None));
    assert!(page.contains("error, exit 2"));
    assert!(page.contains("no credentials"));
    assert!(page.contains("the run stopped before it sent any request"));
    assert!(!page.contains("<svg"));
}

#[test]
fn the_in_flight_row_says_whose_limit_was_found() {
    for (counted, says) in [(true, "account limit found: 20"), (false, "room found: 20")] {
        let mut run = summary(10, 0, "");
        run.concurrency.adaptive = true;
        run.concurrency.learned_limit = Some(20);
        run.concurrency.limit_counted = counted;
        let page = render(&record(Some(run), None));
        assert!(page.contains(says), "counted {counted}: {page}");
        assert_eq!(page.contains("account limit found"), counted);
    }
}
