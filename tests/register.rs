//! End-to-end runs of the `supersim-bulk register` binary against the emulator over real
//! loopback HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, exit_code, good_sim, iccid, stderr, stdout};
use supersim_bulk::emulator::{EmulatorConfig, Fault};

fn by_iccid<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    iccid: &str,
) -> Vec<&'a std::collections::HashMap<String, String>> {
    rows.iter().filter(|row| row["iccid"] == iccid).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_registers_every_sim_with_the_servers_sid() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..40).map(good_sim).collect();
    env.write_input(&sims);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));

    let rows = env.results();
    assert_eq!(rows.len(), 40);
    for (iccid, _) in &sims {
        let row = &by_iccid(&rows, iccid)[..];
        assert_eq!(row.len(), 1, "{iccid}");
        assert_eq!(row[0]["outcome"], "registered");
        assert_eq!(row[0]["status"], "new");
        assert_eq!(row[0]["sid"], env.emulator.sim(iccid).unwrap().sid);
        assert_eq!(env.emulator.commits(iccid), 1);
    }
    assert_eq!(env.emulator.stats().create_requests, 40);
    assert!(
        stdout(&output).contains("registered          40"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_and_its_exit_code() {
    let env = TestEnv::new().await;
    let (good, good_code) = good_sim(1);
    let (taken, taken_code) = good_sim(2);
    let (wrong, _) = good_sim(3);
    let (flaky, flaky_code) = good_sim(4);
    let taken_sid = env.emulator.preregister(&taken);
    env.emulator.inject(&flaky, vec![Fault::ServerError; 5]);
    env.write_input(&[
        (good.clone(), good_code.clone()),
        (taken.clone(), taken_code),
        (wrong.clone(), "WR0NGC0DE1".into()),
        ("12345".into(), "ABCDEFGHIJ".into()),
        (good.clone(), good_code),
        (flaky.clone(), flaky_code),
    ]);

    let output = env.register(&["--max-attempts", "2"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let rows = env.results();
    let outcome = |line: &str| rows.iter().find(|r| r["line"] == line).unwrap().clone();
    assert_eq!(outcome("2")["outcome"], "registered");
    assert_eq!(outcome("3")["outcome"], "already_registered");
    assert_eq!(outcome("3")["sid"], taken_sid);
    assert_eq!(outcome("4")["outcome"], "rejected");
    assert_eq!(outcome("4")["error_code"], "83002");
    assert_eq!(outcome("4")["http_status"], "400");
    assert_eq!(outcome("5")["outcome"], "invalid");
    assert!(outcome("5")["error_message"].contains("19 or 20 digits"));
    assert_eq!(outcome("6")["outcome"], "duplicate");
    assert_eq!(outcome("7")["outcome"], "gave_up");
    assert_eq!(outcome("7")["attempts"], "2");
    assert_eq!(outcome("7")["error_code"], "20500");
    assert_eq!(rows.len(), 6);
    assert_eq!(env.emulator.commits(&good), 1);
    assert_eq!(env.emulator.commits(&wrong), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_transient_failures_exit_75_and_a_resume_finishes_them() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (10..20).map(good_sim).collect();
    env.write_input(&sims);
    let flaky = &sims[3].0;
    env.emulator
        .inject(flaky, vec![Fault::Unavailable { retry_after: None }; 3]);

    let first = env.register(&["--max-attempts", "2"]).await;
    assert_eq!(exit_code(&first), 75, "{}", stderr(&first));
    assert_eq!(by_iccid(&env.results(), flaky)[0]["outcome"], "gave_up");
    let requests_before = env.emulator.stats().create_requests;

    let second = env.register(&["--max-attempts", "2"]).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    let rows = env.results();
    let flaky_rows = by_iccid(&rows, flaky);
    assert_eq!(
        flaky_rows.len(),
        1,
        "the run ends with one row per input line: the new row replaces the old"
    );
    assert_eq!(flaky_rows[0]["outcome"], "registered");
    assert_eq!(flaky_rows[0]["sid"], env.emulator.sim(flaky).unwrap().sid);
    assert_eq!(
        env.emulator.stats().create_requests - requests_before,
        2,
        "only the gave_up SIM is sent again (one 503 left, then success)"
    );
    let header_lines = std::fs::read_to_string(env.results_path())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("line,"))
        .count();
    assert_eq!(header_lines, 1);

    let third = env.register(&[]).await;
    assert_eq!(exit_code(&third), 0);
    assert_eq!(
        env.emulator.stats().create_requests - requests_before,
        2,
        "a finished file sends nothing"
    );
    assert_eq!(env.results().len(), rows.len(), "and writes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_converge_on_the_real_sid_without_double_registration() {
    let env = TestEnv::new().await;
    let faults = [
        vec![Fault::TooManyRequests { retry_after: None }],
        vec![Fault::ServerError, Fault::ServerError],
        vec![Fault::BadGatewayHtml],
        vec![Fault::InternalRegistrationError],
        vec![Fault::DropBeforeCommit],
        vec![Fault::DropAfterCommit],
        vec![Fault::DropAfterCommit, Fault::DropAfterCommit],
        vec![Fault::SlowAfterCommit(Duration::from_secs(3))],
        vec![
            Fault::ServerError,
            Fault::DropAfterCommit,
            Fault::Unavailable { retry_after: None },
        ],
    ];
    let sims: Vec<_> = (0..faults.len() as u32)
        .map(|n| good_sim(100 + n))
        .collect();
    for ((iccid, _), faults) in sims.iter().zip(faults) {
        env.emulator.inject(iccid, faults);
    }
    env.write_input(&sims);

    let output = env.register(&["--timeout", "1s"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let rows = env.results();
    assert_eq!(rows.len(), sims.len());
    for (iccid, _) in &sims {
        let row = by_iccid(&rows, iccid)[0];
        assert_eq!(row["outcome"], "registered", "{iccid}: {row:?}");
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid, "{iccid}");
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sim_registered_by_a_lost_response_is_never_reported_failed() {
    // Every attempt loses its response; the last lookup finds the SIM on the account.
    let env = TestEnv::new().await;
    let sim = good_sim(200);
    env.emulator.inject(
        &sim.0,
        vec![
            Fault::DropAfterCommit,
            Fault::ServerError,
            Fault::ServerError,
        ],
    );
    env.write_input(std::slice::from_ref(&sim));

    let output = env.register(&["--max-attempts", "3"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let row = &env.results()[0];
    assert_eq!(row["outcome"], "registered");
    assert_eq!(row["sid"], env.emulator.sim(&sim.0).unwrap().sid);
    assert_eq!(env.emulator.stats().lookup_requests, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let env = TestEnv::new().await;
    let sim = good_sim(300);
    env.emulator.inject(
        &sim.0,
        vec![Fault::Unavailable {
            retry_after: Some(1),
        }],
    );
    env.write_input(std::slice::from_ref(&sim));

    let started = Instant::now();
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    // The backoff is capped at 50 ms in these tests, so only Retry-After explains a wait
    // of a second (a lower bound: it holds however slow the machine is).
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(env.results()[0]["attempts"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_stop_the_run_at_once() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..50).map(|n| good_sim(400 + n)).collect();
    env.write_input(&sims);

    let output = env
        .register_with_env(
            &["--concurrency", "2"],
            &[
                ("TWILIO_API_KEY", "SKwrong"),
                ("TWILIO_API_SECRET", "CANARY-SECRET-VALUE"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("TWILIO_API_KEY and TWILIO_API_SECRET"),
        "{err}"
    );
    assert!(
        !err.contains("CANARY-SECRET-VALUE") && !stdout(&output).contains("CANARY-SECRET-VALUE")
    );
    let stats = env.emulator.stats();
    assert!(
        stats.requests <= 2,
        "no new requests after the first 401: {stats:?}"
    );
    assert_eq!(
        env.results().len(),
        0,
        "no row is recorded for SIMs never registered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrency_cap_holds_as_the_server_sees_it() {
    let env = TestEnv::with_latency(Duration::from_millis(20)).await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(500 + n)).collect();
    env.write_input(&sims);
    // The first three SIMs' first requests are held for seconds, so all three are in flight
    // together however slowly the client starts them: the cap is reached, not just bounded.
    for (iccid, _) in &sims[..3] {
        env.emulator.inject(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(3))],
        );
    }

    let output = env.register(&["--concurrency", "3", "--no-adaptive"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let stats = env.emulator.stats();
    assert_eq!(stats.max_in_flight, 3, "{stats:?}");
    // 40 first attempts, and one retry for each stalled (then 503) request.
    assert_eq!(stats.create_requests, 43);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_converges_without_double_registration() {
    let env = TestEnv::with_config(EmulatorConfig {
        latency: Duration::from_millis(10),
        max_concurrent: Some(2),
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (0..30).map(|n| good_sim(600 + n)).collect();
    env.write_input(&sims);

    let output = env
        .register(&["--concurrency", "6", "--max-attempts", "50"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1);
    }
    assert!(
        env.emulator.stats().throttled > 0,
        "the limit was exceeded and answered 429"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_output_or_results_even_at_trace_level() {
    const USER: &str = "ACcanaryaccount";
    const TOKEN: &str = "CANARYTOKEN0123456789";
    let env = TestEnv::with_config(EmulatorConfig {
        credentials: vec![(USER.into(), TOKEN.into())],
        ..EmulatorConfig::default()
    })
    .await;
    let mut sims: Vec<_> = (0..5).map(|n| good_sim(700 + n)).collect();
    sims.push((iccid(800), "CANARYC0DE".into()));
    sims.push((iccid(801), "CANARYbad!".into()));
    env.emulator
        .inject(&sims[1].0, vec![Fault::DropAfterCommit]);
    env.write_input(&sims);
    let report = env.dir.path().join("run.html");
    let metrics = env.dir.path().join("run.prom");

    let output = env
        .register_with_env(
            &[
                "-vv",
                "--report",
                report.to_str().unwrap(),
                "--metrics-file",
                metrics.to_str().unwrap(),
            ],
            &[
                ("TWILIO_ACCOUNT_SID", USER),
                ("TWILIO_AUTH_TOKEN", TOKEN),
                ("RUST_LOG", "trace"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let results = std::fs::read_to_string(env.results_path()).unwrap();
    // The report and the metrics file too: they name the run, never its secrets.
    let report = std::fs::read_to_string(&report).unwrap();
    let metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(report.contains("Rows that need a person") && metrics.contains("exit_code"));
    let everything = format!(
        "{}{}{results}{report}{metrics}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("TRACE") || stderr(&output).contains("DEBUG"),
        "trace logging was on"
    );
    assert!(!everything.contains(TOKEN));
    for (_, code) in &sims {
        assert!(
            !everything.contains(code.as_str()),
            "registration code {code} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_adapts_down_to_an_unannounced_limit() {
    let env = TestEnv::with_config(EmulatorConfig {
        latency: Duration::from_millis(20),
        max_concurrent: Some(4),
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (0..200).map(|n| good_sim(900 + n)).collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");

    let output = env
        .register(&[
            "--concurrency",
            "16",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let stats = env.emulator.stats();
    assert!(
        stats.throttled > 0,
        "the ceiling was above the limit, so some 429s came"
    );
    assert!(
        (stats.throttled as f64) < 0.10 * stats.requests as f64,
        "after the first cut the pool stays under the limit: {stats:?}"
    );
    assert!(
        summary["concurrency"]["settled"].as_u64().unwrap() <= 5,
        "{summary}"
    );
    assert_eq!(summary["concurrency"]["ceiling"], 16);
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1);
    }
}

/// Runs `register - --output sims.results.csv` with `input` on standard input.
async fn register_stdin(env: &TestEnv, input: &str, extra: &[&str]) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let results = env.results_path();
    let mut args = vec!["--output", results.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut command = env.register_command_for("-".as_ref(), &args, &TestEnv::test_credentials());
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_input_is_deduped_and_resumed_like_a_file() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (30..36).map(good_sim).collect();
    let flaky = sims[2].0.clone();
    env.emulator
        .inject(&flaky, vec![Fault::Unavailable { retry_after: None }; 3]);
    let mut input = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        input.push_str(&format!("{iccid},{code}\n"));
    }
    input.push_str(&format!("{},{}\n", sims[0].0, sims[0].1)); // line 8: repeats line 2
    input.push_str(&format!("{},short\n", sims[1].0)); // line 9: invalid, never an original
    input.push_str(&format!("{},{}\n", sims[1].0, sims[1].1)); // line 10: repeats line 3

    let first = register_stdin(&env, &input, &["--max-attempts", "2"]).await;
    assert_eq!(exit_code(&first), 1, "an invalid row: {}", stderr(&first));
    let rows = env.results();
    assert_eq!(rows.len(), 9, "one row per input row");
    let at = |line: &str| rows.iter().find(|row| row["line"] == line).unwrap();
    assert_eq!(at("8")["outcome"], "duplicate");
    assert!(at("8")["error_message"].contains("same ICCID as line 2"));
    assert_eq!(at("9")["outcome"], "invalid");
    assert_eq!(at("10")["outcome"], "duplicate");
    assert!(at("10")["error_message"].contains("same ICCID as line 3"));
    assert_eq!(by_iccid(&rows, &flaky)[0]["outcome"], "gave_up");
    for (iccid, _) in &sims {
        assert_eq!(
            env.emulator.commits(iccid),
            u32::from(*iccid != flaky),
            "{iccid}"
        );
    }
    let requests_before = env.emulator.stats().create_requests;

    let second = register_stdin(&env, &input, &["--max-attempts", "2"]).await;
    assert_eq!(
        exit_code(&second),
        0,
        "the invalid row is the first run's news, not this run's: {}",
        stderr(&second)
    );
    assert!(
        stdout(&second).contains("1 row failed in earlier runs"),
        "{}",
        stdout(&second)
    );
    let rows = env.results();
    assert_eq!(rows.len(), 9, "one row per input line, in line order");
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    assert_eq!(by_iccid(&rows, &flaky)[0]["outcome"], "registered");
    assert_eq!(
        env.emulator.stats().create_requests - requests_before,
        2,
        "only the gave_up SIM is sent again (one 503 left, then success)"
    );
    assert!(
        stdout(&second).contains("skipped, finished by an earlier run: 8"),
        "{}",
        stdout(&second)
    );

    let third = register_stdin(&env, &input, &[]).await;
    assert_eq!(
        exit_code(&third),
        0,
        "a rerun that finishes nothing new exits 0: {}",
        stderr(&third)
    );
    assert_eq!(env.results().len(), 9, "a finished input writes nothing");
    assert_eq!(
        env.emulator.stats().create_requests - requests_before,
        2,
        "and sends nothing"
    );
    let mut left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["sims.results.csv", "sims.results.csv.lock"],
        "no spool or sort file is left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_cap_holds_as_the_server_sees_it() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..11).map(|n| good_sim(950 + n)).collect();
    env.write_input(&sims);

    let started = Instant::now();
    let output = env.register(&["--rate", "20"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().create_requests, 11);
    // 11 requests evenly paced at 20 per second span at least 10 gaps of 50 ms: a lower
    // bound that holds however slow the machine is, and fails if the cap is not applied.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}
