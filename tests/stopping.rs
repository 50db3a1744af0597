//! How a run stops when something outside it goes away: a closed or broken stderr, a
//! hang-up, a results file that can no longer be written, the API itself. Each test runs
//! the real binary and checks the promise that matters: every SIM the API registered has
//! its row (or the next run finishes it without registering anything twice), the summary is
//! written, and the exit code is a documented one, never a panic's 101.

mod common;

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use common::{TestEnv, exit_code, good_sim, iccid, signal, stderr, summary_json, wait_until};
use supersim_bulk::emulator::{EmulatorConfig, Fault, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};
use tokio::io::AsyncBufReadExt;

/// The arguments `TestEnv::register` passes, for running the binary through `sh` (to close
/// a descriptor or lower a limit first).
fn register_args(env: &TestEnv, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["register".into(), env.input_path().into()];
    let fixed = [
        "--base-url",
        &env.emulator.base_url(),
        "--rate",
        "1000",
        "--backoff-base",
        "5ms",
        "--backoff-cap",
        "50ms",
    ]
    .map(OsString::from);
    args.extend(fixed);
    args.extend(extra.iter().map(OsString::from));
    args
}

/// `sh -c SCRIPT` where the script ends by `exec`ing the binary with `args`, with the
/// emulator's test credentials and nothing else from the test's environment.
fn through_shell(script: &str, args: Vec<OsString>) -> tokio::process::Command {
    let binary = env!("CARGO_BIN_EXE_supersim-bulk");
    let mut shell = tokio::process::Command::new("sh");
    shell
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN)
        .arg("-c")
        .arg(format!("{script}; exec \"$0\" \"$@\""))
        .arg(binary)
        .args(args)
        .kill_on_drop(true);
    shell
}

/// Every SIM the emulator registered has a row in the results file.
fn assert_every_registered_sim_has_its_row(env: &TestEnv, sims: &[(String, String)]) {
    let rows = env.last_rows();
    let mut registered = 0;
    for (iccid, _) in sims {
        if env.emulator.commits(iccid) > 0 {
            registered += 1;
            let row = rows
                .get(iccid)
                .unwrap_or_else(|| panic!("{iccid} was registered but has no row"));
            assert_eq!(row["outcome"], "registered", "{iccid}: {row:?}");
        }
    }
    assert_eq!(
        rows.len(),
        registered,
        "one row per SIM the API registered, no more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stderr_nobody_reads_from_the_start_is_not_an_error_of_the_run() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(31_000 + n)).collect();
    env.write_input(&sims);
    let summary = env.dir.path().join("summary.json");
    let args = register_args(&env, &["-v", "--summary-json", summary.to_str().unwrap()]);

    // A pipe whose reader is gone before the run starts (`2>&1 | true`): every log line
    // meets a broken pipe, the first one included.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // Spawned, not `output()`, which would replace stderr with a pipe it reads.
    let child = through_shell(":", args.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{output:?}");
    assert_eq!(summary_json(&summary)["end"], "finished");
    assert_eq!(env.results().len(), sims.len());
    assert_every_registered_sim_has_its_row(&env, &sims);

    // Descriptor 2 closed (`2>&-`): the same run over the finished file has nothing to do.
    let child = through_shell("exec 2>&-", args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{output:?}");
    assert_eq!(summary_json(&summary)["end"], "finished");
    assert_eq!(env.results().len(), sims.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stderr_whose_reader_went_away_stops_nothing_and_every_row_is_written() {
    // As `register ... 2>&1 | head -1`: the log's reader leaves after the first line, and
    // the run goes on writing log lines into a broken pipe.
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..60).map(|n| good_sim(32_000 + n)).collect();
    let mut input = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        input.push_str(&format!("{iccid},{code}\n"));
    }
    let summary = env.dir.path().join("summary.json");
    // The input comes on standard input, held open until the log's reader is gone, so the
    // run registers every SIM after the pipe broke, whatever the machine's speed.
    let mut command = env.register_command_for(
        "-".as_ref(),
        &[
            "-v",
            "--output",
            env.results_path().to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ],
        &TestEnv::test_credentials(),
    );
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
        .await
        .unwrap();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut first_line = String::new();
    log.read_line(&mut first_line).await.unwrap();
    assert!(!first_line.is_empty(), "the run logs its start");
    drop(log);
    drop(stdin);

    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{output:?}");
    assert_eq!(summary_json(&summary)["end"], "finished");
    assert_eq!(env.results().len(), sims.len());
    assert_every_registered_sim_has_its_row(&env, &sims);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_drains_like_sigterm_writes_the_summary_and_exits_130() {
    let env = TestEnv::with_latency(Duration::from_millis(20)).await;
    let sims: Vec<_> = (0..60).map(|n| good_sim(33_000 + n)).collect();
    env.write_input(&sims);
    // The last SIMs are held far longer than the run takes to reach the signal, so it cannot
    // finish first; `--grace 1s` abandons them after the signal.
    for (iccid, _) in &sims[50..] {
        env.emulator.inject(
            iccid,
            vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
        );
    }
    let summary = env.dir.path().join("summary.json");
    let child = env.spawn_register(&[
        "--concurrency",
        "4",
        "--grace",
        "1s",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    wait_until("some rows are written", || env.results_rows_so_far() >= 5).await;
    signal(child.id().unwrap(), "-HUP");
    let output = child.wait_with_output().await.unwrap();

    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert_eq!(summary_json(&summary)["end"], "interrupted");
    assert_every_registered_sim_has_its_row(&env, &sims);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_results_file_that_cannot_grow_stops_the_run_with_75_and_the_next_run_finishes() {
    // The results file stops growing, as on a full disk: a file-size limit makes every
    // write past it fail (EFBIG), from the real binary, without a real full disk.
    let env = TestEnv::with_latency(Duration::from_millis(2)).await;
    let sims: Vec<_> = (0..400).map(|n| good_sim(34_000 + n)).collect();
    env.write_input(&sims);
    // The summary goes to another folder on the same limit; it is small enough to fit.
    let summary = env.dir.path().join("summary.json");
    let args = register_args(
        &env,
        &[
            "--concurrency",
            "4",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );

    // 16 blocks: 8 KiB or 16 KiB as the shell counts them, far less than 400 rows.
    let output = through_shell("ulimit -f 16", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();

    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    let json = summary_json(&summary);
    assert_eq!(json["end"], "writer_failed", "{json}");
    assert_eq!(json["exit_code"], 75);
    assert!(
        stderr(&output).contains("cannot write the results file"),
        "{}",
        stderr(&output)
    );
    let registered_before = env.emulator.stats().commits;
    assert!(
        registered_before < sims.len() as u64,
        "the run stopped sending once its rows could not be recorded"
    );

    // Space is back: the next run finishes, and no SIM is registered twice.
    let output = env.register(&["--concurrency", "4"]).await;
    assert!([0, 1].contains(&exit_code(&output)), "{}", stderr(&output));
    let rows = env.last_rows();
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
        let outcome = &rows[iccid]["outcome"];
        assert!(
            outcome == "registered" || outcome == "already_registered",
            "{iccid}: {outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_row_carries_the_account_the_preflight_proved() {
    // An API key names no account: the run learns it from the preflight, and every row,
    // rows settled without a request included, records it.
    const KEY: &str = "SKstoppingtestkey";
    const SECRET: &str = "stopping-test-secret";
    let env = TestEnv::with_config(EmulatorConfig {
        credentials: vec![(KEY.into(), SECRET.into())],
        ..EmulatorConfig::default()
    })
    .await;
    let good = good_sim(35_000);
    let rows = [
        (iccid(35_001), "short".to_string()),
        good.clone(),
        good.clone(),
        good_sim(35_002),
    ];
    env.write_input(&rows);

    let output = env
        .register_with_env(
            &[],
            &[("TWILIO_API_KEY", KEY), ("TWILIO_API_SECRET", SECRET)],
        )
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let results = env.results();
    let outcomes: Vec<&str> = results.iter().map(|r| r["outcome"].as_str()).collect();
    for outcome in ["invalid", "duplicate", "registered"] {
        assert!(outcomes.contains(&outcome), "{outcomes:?}");
    }
    for row in &results {
        assert_eq!(row["account_sid"], TEST_ACCOUNT_SID, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_summary_that_cannot_be_written_goes_to_stderr() {
    // A limit so low that neither the results nor the summary file can hold what they must.
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(36_000 + n)).collect();
    env.write_input(&sims);
    let summary = env.dir.path().join("summary.json");
    let args = register_args(
        &env,
        &[
            "--concurrency",
            "2",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );

    let output = through_shell("ulimit -f 2", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();

    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert!(!summary.exists(), "no summary file fits under the limit");
    let log = stderr(&output);
    let json = log
        .lines()
        .find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|json| json["tool"] == "supersim-bulk")
        })
        .unwrap_or_else(|| panic!("the summary is on stderr: {log}"));
    assert_eq!(json["end"], "writer_failed", "{json}");
    assert_eq!(json["exit_code"], 75);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_too_full_to_plan_the_run_is_a_rerun_later_not_a_set_up_error() {
    // Under a 1 KiB file-size limit even the plan's temporary files cannot be written: the
    // run stops before sending anything, and says to run again later (75), not to fix the
    // set-up (2).
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..40).map(|n| good_sim(37_000 + n)).collect();
    env.write_input(&sims);
    let args = register_args(&env, &["--concurrency", "2"]);

    let output = through_shell("ulimit -f 1", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();

    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("File too large"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().create_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_gone_mid_run_stops_the_run_rather_than_give_up_every_sim_left() {
    let env = TestEnv::with_latency(Duration::from_millis(20)).await;
    // Four at a time, 1,000 SIMs take five seconds or more: the API goes away long before
    // the run could end on its own, however late a busy machine lets this test see it.
    let sims: Vec<_> = (0..1000).map(|n| good_sim(34_000 + n)).collect();
    env.write_input(&sims);
    let summary = env.dir.path().join("summary.json");
    let child = env.spawn_register(&[
        "--max-attempts",
        "3",
        "--no-adaptive",
        "--concurrency",
        "4",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    wait_until("some rows are written", || env.results_rows_so_far() >= 20).await;
    // The API goes away for good: every later connection is refused.
    let TestEnv { emulator, dir } = env;
    emulator.shutdown().await;
    let output = child.wait_with_output().await.unwrap();

    let rows = common::csv_rows(&std::fs::read(dir.path().join("sims.results.csv")).unwrap());
    let gave_up: Vec<_> = rows
        .iter()
        .filter(|row| row["outcome"] == "gave_up")
        .map(|row| row["iccid"].clone())
        .collect();
    assert!(
        gave_up.is_empty(),
        "{} SIMs were given up on an API nobody could reach, not left for the next run",
        gave_up.len(),
    );
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert_eq!(summary_json(&summary)["end"], "unreachable");
    assert!(rows.len() < sims.len(), "the run did not stop early");
}
