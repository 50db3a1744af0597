//! Unattended runs: kill -9 and resume, SIGTERM, overlapping runs, and what cron sees.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestEnv, exit_code, good_sim, signal, stderr, stdout, wait_until};
use supersim_bulk::emulator::Fault;

async fn slow_env(latency_ms: u64) -> TestEnv {
    TestEnv::with_latency(Duration::from_millis(latency_ms)).await
}

/// Checks the end state after all runs: a valid CSV whose last row per ICCID is a success
/// with the server's SID, exactly one success row per ICCID, one commit per SIM.
fn assert_every_sim_registered_once(env: &TestEnv, sims: &[(String, String)]) {
    let rows = env.results();
    let mut last: HashMap<&str, &HashMap<String, String>> = HashMap::new();
    let mut successes: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        last.insert(&row["iccid"], row);
        if row["outcome"] == "registered" || row["outcome"] == "already_registered" {
            *successes.entry(&row["iccid"]).or_default() += 1;
        }
    }
    for (iccid, _) in sims {
        let row = last
            .get(iccid.as_str())
            .unwrap_or_else(|| panic!("{iccid} has no row"));
        assert!(
            row["outcome"] == "registered" || row["outcome"] == "already_registered",
            "{iccid}: {row:?}"
        );
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid, "{iccid}");
        assert_eq!(successes[iccid.as_str()], 1, "{iccid} has one final row");
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_several_points_then_resume_loses_and_repeats_nothing() {
    let env = slow_env(15).await;
    let sims: Vec<_> = (0..60).map(|n| good_sim(1000 + n)).collect();
    env.write_input(&sims);

    // Killed once right after the first registration commits (its row may not be written),
    // then mid-run, then near the end.
    for rows_before_kill in [0, 20, 45] {
        let mut child = env.spawn_register(&["--concurrency", "4"]);
        let commits_now = env.emulator.stats().commits;
        wait_until("the run makes progress", || {
            env.emulator.stats().commits > commits_now
                && env.results_rows_so_far() >= rows_before_kill
        })
        .await;
        child.kill().await.unwrap();
    }
    // A kill while a row is being written leaves a torn last line.
    let mut bytes = std::fs::read(env.results_path()).unwrap();
    bytes.extend_from_slice(b"47,8988307000000010");
    std::fs::write(env.results_path(), bytes).unwrap();

    let output = env.register(&["--concurrency", "4"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("partly written row"),
        "{}",
        stderr(&output)
    );
    assert_every_sim_registered_once(&env, &sims);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_rows_in_flight_exits_130_and_resume_completes() {
    let env = slow_env(40).await;
    let sims: Vec<_> = (0..80).map(|n| good_sim(2000 + n)).collect();
    env.write_input(&sims);
    // The last SIMs' first requests are held far longer than the run takes to reach the
    // signal, so the run cannot finish before it is stopped however loaded the machine is;
    // `--grace 1s` abandons them (unregistered) after the signal.
    for (iccid, _) in &sims[70..] {
        env.emulator.inject(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
        );
    }

    let child = env.spawn_register(&["--concurrency", "4", "--grace", "1s"]);
    wait_until("some rows are written", || env.results_rows_so_far() >= 8).await;
    signal(child.id().unwrap(), "-TERM");
    let output = child.wait_with_output().await.unwrap();

    assert_eq!(exit_code(&output), 130, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("run the same command again to resume"),
        "{}",
        stdout(&output)
    );
    let rows = env.results();
    assert!(
        rows.len() <= 70,
        "the held SIMs were abandoned, not written: {} rows",
        rows.len()
    );
    // Interrupted after its drain, the run still compacted: one row per line, in order.
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    for (iccid, _) in &sims {
        if env.emulator.commits(iccid) > 0 {
            assert!(
                rows.iter().any(|row| &row["iccid"] == iccid),
                "{iccid} was registered while in flight, so its row must be written"
            );
        }
    }

    // Held SIMs the first run never reached are not held again.
    env.emulator.clear_injected();
    let resumed = env.register(&["--concurrency", "4"]).await;
    assert_eq!(exit_code(&resumed), 0, "{}", stderr(&resumed));
    assert_every_sim_registered_once(&env, &sims);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_results_exits_75_and_leaves_the_first_alone() {
    let env = slow_env(20).await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(3000 + n)).collect();
    env.write_input(&sims);

    let first = env.spawn_register(&["--concurrency", "2"]);
    wait_until("the first run has written rows", || {
        env.results_rows_so_far() >= 2
    })
    .await;
    // Frozen, the first run holds its lock for as long as the second run takes, however
    // slow the machine: no timing window.
    let first_pid = first.id().unwrap();
    signal(first_pid, "-STOP");
    let results_before = std::fs::read(env.results_path()).unwrap();

    // The second run points at an emulator of its own, so any request it sent would show.
    let elsewhere = TestEnv::new().await;
    let second = elsewhere
        .register_command_for(
            env.input_path().as_os_str(),
            &["--output", env.results_path().to_str().unwrap()],
            &TestEnv::test_credentials(),
        )
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&second), 75, "{}", stderr(&second));
    let message = stderr(&second);
    assert!(message.contains("sims.results.csv.lock"), "{message}");
    assert!(
        message.contains(&format!("PID {}", first.id().unwrap())),
        "{message}"
    );
    assert_eq!(
        elsewhere.emulator.stats().requests,
        0,
        "the second run sent nothing"
    );
    // It wrote nothing either: the file only grew by the first run's appends.
    let results_after = std::fs::read(env.results_path()).unwrap();
    assert_eq!(results_after, results_before);
    signal(first_pid, "-CONT");

    let first = first.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    assert_every_sim_registered_once(&env, &sims);
    assert_eq!(env.results().len(), sims.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn off_a_terminal_stderr_has_plain_progress_lines_only() {
    let env = slow_env(5).await;
    let sims: Vec<_> = (0..30).map(|n| good_sim(4000 + n)).collect();
    env.write_input(&sims);

    let output = env
        .register(&["--concurrency", "2", "--progress-interval", "1ms"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("progress: "), "{err}");
    assert!(!err.contains('\r'), "no carriage returns");
    assert!(!err.contains('\x1b'), "no escape codes");
    assert!(!stdout(&output).contains('\x1b'));
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_json_matches_the_results_file() {
    let env = TestEnv::new().await;
    let mut sims: Vec<_> = (0..10).map(|n| good_sim(5000 + n)).collect();
    sims.push((common::iccid(5999), "WR0NGC0DE1".into()));
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");
    let summary_arg = summary_path.to_str().unwrap();

    let output = env.register(&["--summary-json", summary_arg]).await;
    assert_eq!(exit_code(&output), 1);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["end"], "finished");
    assert_eq!(summary["this_run"]["registered"], 10);
    assert_eq!(summary["this_run"]["rejected"], 1);
    assert_eq!(summary["requests"], 11);
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let rows = env.results();
    let registered = rows.iter().filter(|r| r["outcome"] == "registered").count();
    assert_eq!(summary["whole_file"]["registered"], registered);

    // A second run sends nothing but still accounts for the whole file.
    // Its exit code is about this run: the rejected row is the first run's news.
    let again = env.register(&["--summary-json", summary_arg]).await;
    assert_eq!(exit_code(&again), 0);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["this_run"]["registered"], 0);
    assert_eq!(summary["whole_file"]["registered"], 10);
    assert_eq!(summary["whole_file"]["rejected"], 1);
    assert_eq!(summary["skipped_as_finished"], 11);
    assert_eq!(summary["failed_in_earlier_runs"], 1);
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["requests"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_failures_stops_a_box_of_wrong_codes_early() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..200)
        .map(|n| (common::iccid(6000 + n), "WR0NGC0DE1".to_string()))
        .collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");

    let output = env
        .register(&[
            "--concurrency",
            "2",
            "--max-failures",
            "5",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    // The limit's 5, the row that passed it, then at most what was already under way when
    // the writer saw it: 2 requests in flight and the 4 rows the writer's queue holds
    // (twice the concurrency). A bound by construction, not by timing.
    let rows = env.results();
    let bound = 5 + 1 + 2 + 2 * 2;
    assert!(
        rows.len() > 5 && rows.len() <= bound,
        "stopped soon after the limit: {}",
        rows.len()
    );
    assert!(env.emulator.stats().create_requests <= bound as u64);
    assert!(
        stdout(&output).contains("stopped early"),
        "{}",
        stdout(&output)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["end"], "max_failures");
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("--max-failures 5")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_with_stable_fields() {
    let env = TestEnv::new().await;
    let sims = vec![
        good_sim(7000),
        (common::iccid(7001), "WR0NGC0DE1".to_string()),
    ];
    env.write_input(&sims);

    let output = env.register(&["--log-format", "json", "-v"]).await;
    assert_eq!(exit_code(&output), 1);
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let rejected = events
        .iter()
        .find(|e| e["outcome"] == "rejected")
        .expect("the rejected row is logged");
    assert_eq!(rejected["line"], 3);
    assert_eq!(rejected["iccid"], common::iccid(7001));
    assert_eq!(rejected["error_code"], 83002);
    assert!(!stderr(&output).contains("WR0NGC0DE1"));
    assert!(!stderr(&output).contains(&sims[0].1));
}

/// The morning after: the summary JSON lists the rows that need a person (line, ICCID,
/// outcome, Twilio code, message) with their total, and the text summary names the first few
/// and says where the rest are. Never a registration code.
#[tokio::test]
async fn the_summary_names_the_rows_that_need_a_person() {
    let env = TestEnv::new().await;
    let mut sims: Vec<(String, String)> = (0..3).map(good_sim).collect();
    for n in 10..17 {
        let (iccid, _) = good_sim(n);
        sims.push((iccid, "ZZZZZZZZZ9".into()));
    }
    env.write_input(&sims);
    let summary = env.dir.path().join("last-run.json");
    let output = env
        .register(&["--summary-json", summary.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let listed = &json["needs_a_person"];
    assert_eq!(listed["total"], 7, "{listed}");
    let rows = listed["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, (5..12).collect::<Vec<u64>>(), "in line order");
    assert_eq!(rows[0]["iccid"], sims[3].0);
    assert_eq!(rows[0]["outcome"], "rejected");
    assert_eq!(rows[0]["error_code"], 83002);
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap()
            .contains("do not match")
    );
    let text = stdout(&output);
    assert!(text.contains("needs a person: 7 rows"), "{text}");
    assert!(
        text.contains(&format!(
            "line 5 {} rejected (Twilio error 83002)",
            sims[3].0
        )),
        "{text}"
    );
    assert!(text.contains("and 2 more: see the results file"), "{text}");
    for place in [text, std::fs::read_to_string(&summary).unwrap()] {
        assert!(!place.contains("ZZZZZZZZZ9"), "{place}");
    }
}
