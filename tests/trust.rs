//! A results file that can be trusted: bound to the account it was written against, a
//! rehearsal kept apart from the real run, set-up mistakes stopped before any verdict, and
//! reruns that change nothing. Each test runs the real binary over loopback.

mod common;

use common::{TestEnv, binary_command, exit_code, good_sim, stderr, stdout};
use supersim_bulk::emulator::{EmulatorConfig, TEST_ACCOUNT_SID};

/// A second account, as a real one would look: its own SID and token.
const REAL_ACCOUNT: &str = "AC11111111111111111111111111111111";
const REAL_TOKEN: &str = "real-account-token";

async fn real_account() -> TestEnv {
    TestEnv::with_config(EmulatorConfig {
        account_sid: REAL_ACCOUNT.to_string(),
        credentials: vec![(REAL_ACCOUNT.to_string(), REAL_TOKEN.to_string())],
        ..EmulatorConfig::default()
    })
    .await
}

/// `register sims.csv --emulator` plus `extra`: a rehearsal, as the README runs it.
async fn rehearse(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    binary_command()
        .arg("register")
        .arg(env.input_path())
        .arg("--emulator")
        .args(extra)
        .output()
        .await
        .unwrap()
}

fn real_credentials() -> [(&'static str, &'static str); 2] {
    [
        ("TWILIO_ACCOUNT_SID", REAL_ACCOUNT),
        ("TWILIO_AUTH_TOKEN", REAL_TOKEN),
    ]
}

/// Issue 11: following the README word for word, a rehearsal then the real run on the same
/// input. The rehearsal writes its own file, and the real run registers everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_then_the_real_run_registers_everything() {
    let env = real_account().await;
    let sims: Vec<_> = (0..6).map(|n| good_sim(20_000 + n)).collect();
    env.write_input(&sims);

    let rehearsal = rehearse(&env, &[]).await;
    assert_eq!(exit_code(&rehearsal), 0, "{}", stderr(&rehearsal));
    let rehearsed = env.dir.path().join("sims.emulator.results.csv");
    assert!(
        rehearsed.exists(),
        "the rehearsal writes sims.emulator.results.csv"
    );
    assert!(
        !env.results_path().exists(),
        "and leaves sims.results.csv alone"
    );
    let text = std::fs::read_to_string(&rehearsed).unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    assert!(
        rows.deserialize::<std::collections::HashMap<String, String>>()
            .all(|row| row.unwrap()["account_sid"] == TEST_ACCOUNT_SID),
        "{text}"
    );

    let real = env.register_with_env(&[], &real_credentials()).await;
    assert_eq!(exit_code(&real), 0, "{}", stderr(&real));
    assert_eq!(
        env.emulator.stats().commits,
        6,
        "every SIM registered for real"
    );
    for row in env.results() {
        assert_eq!(row["outcome"], "registered");
        assert_eq!(row["account_sid"], REAL_ACCOUNT);
    }
}

/// Issue 11: a results file written against another account (here the emulator's) is
/// refused before anything is sent, naming both accounts and the way out.
#[tokio::test(flavor = "multi_thread")]
async fn a_results_file_from_another_account_is_refused_before_anything_is_sent() {
    let env = real_account().await;
    let sims: Vec<_> = (0..3).map(|n| good_sim(20_100 + n)).collect();
    env.write_input(&sims);
    let rehearsed = env.dir.path().join("sims.emulator.results.csv");
    let rehearsal = rehearse(&env, &[]).await;
    assert_eq!(exit_code(&rehearsal), 0, "{}", stderr(&rehearsal));
    let before = std::fs::read(&rehearsed).unwrap();

    let output = env
        .register_with_env(&["-o", rehearsed.to_str().unwrap()], &real_credentials())
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(TEST_ACCOUNT_SID), "{message}");
    assert!(message.contains(REAL_ACCOUNT), "{message}");
    assert!(message.contains("-o NEW.results.csv"), "{message}");
    assert!(message.contains("emulator"), "{message}");
    assert_eq!(env.emulator.stats().requests, 0, "nothing was sent");
    assert_eq!(std::fs::read(&rehearsed).unwrap(), before, "nor written");
}

/// Issue 11: a base URL ending in /v1 stops the run (exit 2) with a sentence naming the URL
/// tried and the fix; no SIM is written `rejected`.
#[tokio::test(flavor = "multi_thread")]
async fn a_base_url_ending_in_v1_stops_the_run_without_a_verdict() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(20_200), good_sim(20_201)]);
    let base = format!("{}/v1", env.emulator.base_url());
    let output = env.register(&["--base-url", &base]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{base}/v1/Sims?PageSize=1")),
        "{message}"
    );
    assert!(message.contains("no /v1 on the end"), "{message}");
    assert_eq!(env.emulator.stats().create_requests, 0);
    let rows = env.results();
    assert!(rows.is_empty(), "no verdict recorded: {rows:?}");
}

/// Issue 11: with nothing listening, the run stops early (exit 75), says the connection
/// was refused and where, and writes no `gave_up` row.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_stops_the_run_and_leaves_rows_unfinished() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(20_300)]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = env.register(&["--base-url", &base]).await;
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("refused") && message.contains(&base),
        "{message}"
    );
    assert!(env.results().is_empty(), "the row is left for the next run");
}

/// Issue 11: a rerun over a file whose update was refused for good, asking the same,
/// sends nothing and appends nothing; under hourly cron the file no longer grows.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_after_a_permanent_update_failure_sends_and_appends_nothing() {
    let env = TestEnv::new().await;
    let sim = good_sim(20_400);
    env.write_input(std::slice::from_ref(&sim));
    env.emulator.inject_update(
        &sim.0,
        vec![supersim_bulk::emulator::Fault::TwilioError {
            status: 400,
            code: 83010,
        }],
    );
    let first = env.register(&["--fleet", "field-devices"]).await;
    assert_eq!(exit_code(&first), 1, "{}", stderr(&first));
    assert_eq!(env.results().last().unwrap()["outcome"], "update_failed");
    let size = std::fs::metadata(env.results_path()).unwrap().len();
    let requests = env.emulator.stats().requests;

    for _ in 0..2 {
        let again = env.register(&["--fleet", "field-devices"]).await;
        assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
        assert!(
            stdout(&again).contains("1 row failed in earlier runs"),
            "{}",
            stdout(&again)
        );
    }
    assert_eq!(env.emulator.stats().requests, requests, "nothing sent");
    assert_eq!(
        std::fs::metadata(env.results_path()).unwrap().len(),
        size,
        "nothing appended"
    );

    // Asking for something else sends it again.
    let changed = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&changed), 0, "{}", stderr(&changed));
    assert_eq!(env.results().last().unwrap()["outcome"], "registered");
}

/// Issue 11: a run killed mid-way leaves its journal (checkpoint rows, rows out of order)
/// whole and resumable; the next run finishes it and leaves one row per line, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_leaves_its_journal_and_the_next_run_compacts_it() {
    let env = TestEnv::with_latency(std::time::Duration::from_millis(15)).await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(20_500 + n)).collect();
    env.write_input(&sims);
    let flags = ["--fleet", "field-devices", "--concurrency", "4"];
    let mut child = env.spawn_register(&flags);
    common::wait_until("some rows are written", || env.results_rows_so_far() >= 10).await;
    child.kill().await.unwrap();
    let _ = child.wait().await;

    let resumed = env.register(&flags).await;
    assert_eq!(exit_code(&resumed), 0, "{}", stderr(&resumed));
    let rows = env.results();
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    let expected: Vec<u64> = (2..2 + sims.len() as u64).collect();
    assert_eq!(lines, expected, "one row per input line, in line order");
    for (row, (iccid, _)) in rows.iter().zip(&sims) {
        assert_eq!(&row["iccid"], iccid);
        // A SIM committed just before the kill, its row unwritten, is found on the account.
        assert!(
            row["outcome"] == "registered" || row["outcome"] == "already_registered",
            "{row:?}"
        );
        assert_eq!(
            row["fleet_sid"],
            supersim_bulk::emulator::fleet_sid_for("field-devices")
        );
        assert!(
            row["error_message"].is_empty(),
            "no checkpoint row left: {row:?}"
        );
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

/// Issue 11: `--dry-run` proves the set-up, plans, and says what a run would do, sending
/// no create and no update and writing no results.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_says_what_would_happen_and_does_none_of_it() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..5).map(|n| good_sim(20_600 + n)).collect();
    env.write_input(&sims[..3]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    // Two new SIMs, one invalid row, and the three finished ones.
    let mut text = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        text.push_str(&format!("{iccid},{code}\n"));
    }
    text.push_str("123,ABCDEFGHIJ\n");
    env.write_csv(&text);
    let results_before = std::fs::read(env.results_path()).unwrap();
    let creates = env.emulator.stats().create_requests;

    let output = env.register(&["--dry-run"]).await;
    assert_eq!(exit_code(&output), 1, "an invalid row: {}", stderr(&output));
    let said = stdout(&output);
    assert!(
        said.contains("would register 2, update 0, skip 3 finished, 1 invalid"),
        "{said}"
    );
    assert!(said.contains(&env.emulator.base_url()), "{said}");
    assert!(said.contains(TEST_ACCOUNT_SID), "{said}");
    assert_eq!(env.emulator.stats().create_requests, creates);
    assert_eq!(env.emulator.stats().update_requests, 0);
    assert_eq!(std::fs::read(env.results_path()).unwrap(), results_before);

    // A wrong base URL fails the dry run as it would fail the run.
    let base = format!("{}/v1", env.emulator.base_url());
    let wrong = env.register(&["--dry-run", "--base-url", &base]).await;
    assert_eq!(exit_code(&wrong), 2, "{}", stderr(&wrong));
}

/// Issue 11: a rehearsal keeps its emulated account beside its results, so a later
/// rehearsal resumes it and onboards the SIMs exactly as a real account would.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_rehearsal_onboards_the_sims_it_registered() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..4).map(|n| good_sim(20_700 + n)).collect();
    env.write_input(&sims);
    let first = rehearse(&env, &[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let state = env.dir.path().join("sims.emulator.results.state.jsonl");
    assert!(
        state.exists(),
        "the emulator's state is kept beside the results"
    );

    let second = rehearse(&env, &["--fleet", "field-devices", "--activate", "--wait"]).await;
    assert_eq!(
        exit_code(&second),
        0,
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    let results = env.dir.path().join("sims.emulator.results.csv");
    let mut reader = csv::Reader::from_path(&results).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), sims.len());
    for row in &rows {
        assert_eq!(&row[column("outcome")], "registered", "{row:?}");
        assert_eq!(&row[column("status")], "active", "{row:?}");
        assert_eq!(
            &row[column("fleet_sid")],
            supersim_bulk::emulator::fleet_sid_for("field-devices"),
            "{row:?}"
        );
    }
}

/// `--dry-run` says every step a run would take after registering: the Fleet (by name and
/// SID), the status and the unique names, counted; a fresh file with `--fleet --activate`
/// and a `unique_name` column once said only "update 0".
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_counts_the_fleet_status_and_names_it_would_set() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..3).map(|n| good_sim(20_700 + n)).collect();
    let mut text = String::from("Iccid,RegistrationCode,unique_name\n");
    for (i, (iccid, code)) in sims.iter().enumerate() {
        let name = if i == 0 {
            String::new()
        } else {
            format!("meter-{i}")
        };
        text.push_str(&format!("{iccid},{code},{name}\n"));
    }
    env.write_csv(&text);
    let output = env
        .register(&["--dry-run", "--fleet", "field-devices", "--activate"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let said = stdout(&output);
    assert!(said.contains("would register 3, update 0"), "{said}");
    assert!(
        said.contains(&format!(
            "then: 3 into Fleet field-devices ({}), 3 set active, 2 given a unique name",
            supersim_bulk::emulator::fleet_sid_for("field-devices")
        )),
        "{said}"
    );
    assert_eq!(env.emulator.stats().create_requests, 0);
    assert_eq!(env.emulator.stats().update_requests, 0);
}
