//! Issue 21: `register --report` and `register --metrics-file`, read by tools that are not
//! this project's: the metrics by a Prometheus text-format parser, the report by headless
//! Chromium over the DevTools protocol.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use supersim_bulk::emulator::EmulatorConfig;

/// A run that meets throttling and a limit that changes: 8 in flight, down to 4 after 1 s,
/// up to 12 after 2.5 s; every 50th row has a wrong code (83002, needs a person). Returns
/// the environment, the exit code and the summary JSON; the report and the metrics file are
/// `run.html` and `run.prom` in the environment's folder.
async fn throttled_run(rows: u32, extra: &[&str]) -> (TestEnv, i32, serde_json::Value) {
    let _one_at_a_time = timing_run().await;
    let env = TestEnv::with_config(EmulatorConfig {
        latency: Duration::from_millis(20),
        max_concurrent: Some(8),
        limit_schedule: vec![
            (Duration::from_millis(1000), 4),
            (Duration::from_millis(2500), 12),
        ],
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (0..rows)
        .map(|n| {
            let (iccid, code) = good_sim(21_000 + n);
            if n % 50 == 7 {
                (iccid, wrong_code(&code))
            } else {
                (iccid, code)
            }
        })
        .collect();
    env.write_input(&sims);
    let dir = env.dir.path();
    let (summary, report, metrics) = (
        dir.join("summary.json"),
        dir.join("run.html"),
        dir.join("run.prom"),
    );
    let mut args = vec![
        "--concurrency",
        "30",
        "--summary-json",
        summary.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = env.register(&args).await;
    let json = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap_or_else(|e| {
        panic!("summary JSON: {e}; stderr: {}", stderr(&output));
    });
    (env, exit_code(&output), json)
}

/// The samples of a metrics file, parsed by `prometheus-parse` (not this project's code),
/// keyed by name and the sorted labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<_> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = if labels.is_empty() {
            sample.metric.clone()
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        let value = match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{key}: not a single value: {other:?}"),
        };
        samples.insert(key, value);
    }
    samples
}

fn seconds_of(rfc3339: &serde_json::Value) -> f64 {
    let time = humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_parses_and_agrees_with_the_summary_json() {
    let (env, code, summary) = throttled_run(1500, &[]).await;
    assert_eq!(code, 1, "some rows were refused: {summary}");
    let text = std::fs::read_to_string(env.dir.path().join("run.prom")).unwrap();
    let metrics = parse_metrics(&text);
    let get = |key: &str| {
        *metrics
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
    };
    assert_eq!(get("supersim_bulk_last_run_exit_code"), 1.0);
    assert_eq!(get("supersim_bulk_last_run_success"), 0.0);
    for (json, metric) in [
        ("requests", "supersim_bulk_last_run_requests"),
        ("throttled", "supersim_bulk_last_run_throttled"),
    ] {
        assert_eq!(get(metric), summary[json].as_f64().unwrap(), "{metric}");
    }
    assert!(
        get("supersim_bulk_last_run_throttled") > 0.0,
        "429s were met"
    );
    assert_eq!(
        get("supersim_bulk_last_run_needs_a_person_rows"),
        summary["needs_a_person"]["total"].as_f64().unwrap()
    );
    assert_eq!(get("supersim_bulk_last_run_needs_a_person_rows"), 30.0);
    assert_eq!(
        get("supersim_bulk_last_run_account_limit"),
        summary["concurrency"]["learned_limit"].as_f64().unwrap()
    );
    for (outcome, count) in summary["this_run"].as_object().unwrap() {
        let key = format!("supersim_bulk_last_run_rows{{outcome={outcome}}}");
        assert_eq!(get(&key), count.as_f64().unwrap(), "{key}");
    }
    for (outcome, count) in summary["whole_file"].as_object().unwrap() {
        let key = format!("supersim_bulk_results_rows{{outcome={outcome}}}");
        assert_eq!(get(&key), count.as_f64().unwrap(), "{key}");
    }
    // Times to the second, as the summary JSON gives them.
    let start = get("supersim_bulk_last_run_start_timestamp_seconds");
    let end = get("supersim_bulk_last_run_end_timestamp_seconds");
    assert!((start - seconds_of(&summary["started_at"])).abs() < 1.0);
    assert!((end - seconds_of(&summary["finished_at"])).abs() < 1.0);
    assert!(
        (get("supersim_bulk_last_run_duration_seconds") - (end - start)).abs() < 0.01,
        "duration is end - start"
    );
    assert_eq!(
        get("supersim_bulk_last_run_info{end=finished,version=0.1.0}"),
        1.0
    );
    // Written atomically: no temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_stops_before_it_starts_still_writes_its_metrics() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let metrics = env.dir.path().join("run.prom");
    // No credentials: a set-up failure, exit 2.
    let output = env
        .register_with_env(
            &["--metrics-file", metrics.to_str().unwrap()],
            &[("TWILIO_ACCOUNT_SID", ""), ("TWILIO_AUTH_TOKEN", "")],
        )
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let text = std::fs::read_to_string(&metrics).unwrap();
    let parsed = parse_metrics(&text);
    assert_eq!(parsed["supersim_bulk_last_run_exit_code"], 2.0);
    assert_eq!(
        parsed["supersim_bulk_last_run_info{end=error,version=0.1.0}"],
        1.0
    );
    assert!(
        !parsed.contains_key("supersim_bulk_last_run_requests"),
        "no counts for a run that sent nothing: {text}"
    );
}
