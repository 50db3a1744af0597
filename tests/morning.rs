//! What a person reads the morning after a run that stopped early: the summary JSON, the
//! metrics file, the report and the results file tell one story. Each case runs the real
//! binary against the emulator.

mod common;

use std::time::Duration;

use common::{TestEnv, exit_code, good_sim, signal, stderr, stdout, summary_json, wait_until};
use supersim_bulk::emulator::Fault;

/// The value of the metric line that starts with `name` (labels included).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_interrupt_every_end_file_counts_the_registered_rows_the_results_hold() {
    let env = TestEnv::with_latency(Duration::from_millis(5)).await;
    let sims: Vec<_> = (0..30).map(|n| good_sim(51_000 + n)).collect();
    env.write_input(&sims);
    // SIMs after the first ten register, then their update (the Fleet) hangs: the interrupt
    // finds them registered with their update step still to do.
    for (iccid, _) in &sims[10..] {
        env.emulator.inject_update(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
        );
    }
    let dir = env.dir.path();
    let (summary, metrics, report) = (dir.join("s.json"), dir.join("m.prom"), dir.join("r.html"));
    let child = env.spawn_register(&[
        "--fleet",
        "bench",
        "--concurrency",
        "4",
        "--grace",
        "1s",
        "--summary-json",
        summary.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    wait_until("four updates hang", || {
        env.emulator.stats().update_requests >= 14
    })
    .await;
    signal(child.id().unwrap(), "-INT");
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 130, "{}", stderr(&output));

    let registered_rows = env
        .results()
        .iter()
        .filter(|row| row["outcome"] == "registered")
        .count() as u64;
    let json = summary_json(&summary);
    let pending = json["registered_update_pending"].as_u64().unwrap();
    assert!(pending > 0, "the case under test: {json}");
    assert_eq!(
        registered_rows,
        10 + pending,
        "checkpoint rows say registered"
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!("  registered          {registered_rows} (")),
        "{text}"
    );
    assert_eq!(
        json["this_run"]["registered"].as_u64(),
        Some(registered_rows),
        "this_run: {json}"
    );
    assert_eq!(
        json["whole_file"]["registered"].as_u64(),
        Some(registered_rows),
        "whole_file: {json}"
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for name in [
        "supersim_bulk_last_run_rows{outcome=\"registered\"}",
        "supersim_bulk_results_rows{outcome=\"registered\"}",
    ] {
        assert_eq!(metric(&prom, name), registered_rows as f64, "{name}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    let row = format!(
        "<tr><td>registered</td><td class=\"n\">{registered_rows}</td><td class=\"n\">0</td><td class=\"n\">{registered_rows}</td></tr>"
    );
    assert!(html.contains(&row), "the report's outcome table: {html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_run_stopped_early_still_counts_the_rows_it_did_not_reach() {
    let env = TestEnv::with_latency(Duration::from_millis(5)).await;
    // The first run: five SIMs give up (503 on their one attempt), the rest register.
    let late: Vec<_> = (0..5).map(|n| good_sim(52_000 + n)).collect();
    for (iccid, _) in &late {
        env.emulator
            .inject(iccid, vec![Fault::Unavailable { retry_after: None }]);
    }
    env.write_input(&late);
    let first = env.register(&["--max-attempts", "1"]).await;
    assert_eq!(exit_code(&first), 75, "{}", stderr(&first));
    assert_eq!(
        env.results()
            .iter()
            .filter(|row| row["outcome"] == "gave_up")
            .count(),
        5
    );

    // A new box goes on top of the file; the second run is stopped before it reaches the
    // five SIMs that gave up.
    let new: Vec<_> = (0..40).map(|n| good_sim(53_000 + n)).collect();
    for (iccid, _) in &new[4..] {
        env.emulator.inject(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
        );
    }
    let mut all = new.clone();
    all.extend(late.iter().cloned());
    env.write_input(&all);
    let dir = env.dir.path();
    let (summary, metrics) = (dir.join("s.json"), dir.join("m.prom"));
    let child = env.spawn_register(&[
        "--concurrency",
        "2",
        "--grace",
        "1s",
        "--summary-json",
        summary.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    wait_until("the unheld SIMs are written", || {
        env.results()
            .iter()
            .filter(|row| row["outcome"] == "registered")
            .count()
            >= 4
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 130, "{}", stderr(&output));

    let rows = env.results();
    let count = |outcome: &str| rows.iter().filter(|row| row["outcome"] == outcome).count() as u64;
    assert_eq!(
        count("gave_up"),
        5,
        "the results file keeps the earlier rows"
    );
    let json = summary_json(&summary);
    for outcome in ["registered", "gave_up"] {
        assert_eq!(
            json["whole_file"][outcome].as_u64(),
            Some(count(outcome)),
            "whole_file {outcome}: {json}"
        );
        let name = format!("supersim_bulk_results_rows{{outcome=\"{outcome}\"}}");
        let prom = std::fs::read_to_string(&metrics).unwrap();
        assert_eq!(metric(&prom, &name), count(outcome) as f64, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_json_and_the_metrics_give_the_run_one_duration() {
    let env = TestEnv::new().await;
    // Enough rows that reading them before the first request and compacting the results
    // after the last take a measurable time; none is sent.
    let mut text = String::from("Iccid,RegistrationCode\n");
    for n in 0..50_000 {
        text.push_str(&format!("{n:012},ABCDEFGH12\n"));
    }
    env.write_csv(&text);
    let dir = env.dir.path();
    let (summary, metrics) = (dir.join("s.json"), dir.join("m.prom"));
    let output = env
        .register(&[
            "-q",
            "--summary-json",
            summary.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let json = summary_json(&summary);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let duration = metric(&prom, "supersim_bulk_last_run_duration_seconds");
    let elapsed = json["elapsed_seconds"].as_f64().unwrap();
    assert!(
        (elapsed - duration).abs() < 0.01,
        "elapsed_seconds {elapsed} against the metrics' duration {duration}"
    );
}
