//! The end-of-run summary agrees with itself: the rows line is the sum of the outcome lines
//! after an interrupt, 429s met are never "no 429 met", a rerun with every row done earlier
//! says so, a run too short to fill its window never "settles" above the rows it sent, and
//! the window never grows past what was in flight as the rows run out. Each case runs the
//! real binary against the emulator.

mod common;

use std::time::Duration;

use common::{TestEnv, exit_code, good_sim, signal, stderr, stdout, summary_json, wait_until};
use supersim_bulk::emulator::{EmulatorConfig, Fault};

/// Registers `sims` with `--summary-json`, expecting exit 0: the run's output and its JSON
/// summary.
async fn register_with_summary(
    env: &TestEnv,
    sims: &[(String, String)],
) -> (std::process::Output, serde_json::Value) {
    env.write_input(sims);
    let summary = env.dir.path().join("summary.json");
    let output = env
        .register(&["--summary-json", summary.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    (output, summary_json(&summary))
}

/// The text summary's rows line (`N rows in ...`) and the sum of its outcome lines.
fn rows_and_outcome_sum(text: &str) -> (u64, u64) {
    let first = text
        .lines()
        .find(|l| l.contains(" rows in "))
        .unwrap_or_else(|| panic!("no rows line: {text}"));
    let rows = first.split(' ').next().unwrap().parse().unwrap();
    let sum = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("skipped"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    (rows, sum)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_interrupt_the_rows_line_is_the_sum_of_the_outcome_lines() {
    let env = TestEnv::with_latency(Duration::from_millis(5)).await;
    let sims: Vec<_> = (0..30).map(|n| good_sim(41_000 + n)).collect();
    env.write_input(&sims);
    // SIMs after the first ten register, then their update (the Fleet) hangs: the interrupt
    // finds them registered with their update step still to do.
    for (iccid, _) in &sims[10..] {
        env.emulator.inject_update(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
        );
    }
    let summary = env.dir.path().join("summary.json");
    let child = env.spawn_register(&[
        "--fleet",
        "bench",
        "--concurrency",
        "4",
        "--grace",
        "1s",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    wait_until("four updates hang", || {
        env.emulator.stats().update_requests >= 14
    })
    .await;
    signal(child.id().unwrap(), "-INT");
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 130, "{}", stderr(&output));

    let json = summary_json(&summary);
    let pending = json["registered_update_pending"].as_u64().unwrap();
    assert!(pending > 0, "the case under test: {json}");
    let text = stdout(&output);
    let (rows, sum) = rows_and_outcome_sum(&text);
    assert_eq!(rows, sum, "{text}");
    assert_eq!(rows, 10 + pending, "{text}");
    // The log's end line agrees too.
    let log = stderr(&output);
    let end = log.lines().find(|l| l.contains("run ended")).unwrap();
    assert!(end.contains(&format!(" rows={rows} ")), "{end}");
    assert!(end.contains(&format!(" registered={rows} ")), "{end}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_met_429s_never_says_no_429_met() {
    let _one_at_a_time = common::timing_run().await;
    // The account allows 2 in flight, then far more: the run meets 429s, learns 2, and its
    // probes later find the limit rose and let the learned one go.
    let env = TestEnv::with_config(EmulatorConfig {
        latency: Duration::from_millis(10),
        max_concurrent: Some(2),
        limit_schedule: vec![(Duration::from_millis(300), 1000)],
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (0..600).map(|n| good_sim(42_000 + n)).collect();
    let (output, json) = register_with_summary(&env, &sims).await;
    let throttled = json["throttled"].as_u64().unwrap();
    assert!(throttled > 0, "the case under test: {json}");
    assert!(
        json["concurrency"]["learned_limit"].is_null(),
        "the case under test (the limit rose): {json}"
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!("throttled (429) {throttled}")),
        "{text}"
    );
    assert!(!text.contains("no 429 met"), "{text}");
    assert!(text.contains(&format!("{throttled} 429")), "{text}");
}

#[tokio::test]
async fn a_rerun_with_every_row_done_earlier_never_says_nothing_yet() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..5).map(|n| good_sim(43_000 + n)).collect();
    env.write_input(&sims);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0);
    let log = stderr(&output);
    assert!(!log.contains("nothing yet"), "{log}");
    assert!(
        log.contains("progress: 5/5 rows (all 5 done in earlier runs)"),
        "{log}"
    );
    assert!(stdout(&output).starts_with("nothing to do: 5 rows finished by earlier runs"));
}

#[tokio::test]
async fn a_short_run_never_settles_above_the_rows_it_sent() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..20).map(|n| good_sim(44_000 + n)).collect();
    let (output, json) = register_with_summary(&env, &sims).await;
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("concurrency: "))
        .unwrap_or_else(|| panic!("{text}"));
    let in_flight: u64 = line
        .trim_start_matches("concurrency: ")
        .trim_start_matches("settled at ")
        .trim_start_matches("at most ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        in_flight <= 20,
        "20 rows cannot have had more in flight: {line}"
    );
    let peak = json["concurrency"]["peak_in_flight"].as_u64().unwrap();
    assert!((1..=20).contains(&peak), "{json}");
}

/// A window that grows while its rows run out grows into requests that are never sent: the
/// tail of a run, or a climb that starts as the last rows go, said "settled at 32" beside
/// a limit of 20 when 16 had ever been in flight. Growth only counts while a row waits for
/// a slot.
#[tokio::test]
async fn the_window_does_not_grow_while_no_row_waits_for_a_slot() {
    let env = TestEnv::with_latency(Duration::from_millis(50)).await;
    // Slow start from 6 fills its window twice or three times before the rows run out, and
    // is still growing when they do.
    let sims: Vec<_> = (0..60).map(|n| good_sim(45_000 + n)).collect();
    let (output, json) = register_with_summary(&env, &sims).await;
    let concurrency = &json["concurrency"];
    let peak = concurrency["peak_in_flight"].as_u64().unwrap();
    let settled = concurrency["settled"].as_u64().unwrap();
    let highest = concurrency["highest"].as_u64().unwrap();
    assert!(peak >= 12, "slow start filled its window: {json}");
    // One above the peak at most: the growth a single waiting row may have had no answer
    // left to fill.
    assert!(settled <= peak + 1, "{json}");
    assert!(highest <= peak + 1, "{json}");
    let text = stdout(&output);
    let line = if settled <= peak {
        format!("concurrency: settled at {settled} in flight")
    } else {
        format!("concurrency: at most {peak} in flight")
    };
    assert!(text.contains(&line), "{text}");
}
