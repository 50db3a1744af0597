//! End-to-end onboarding runs of `supersim-bulk register` with `--fleet`, `--activate`,
//! `--status`, `--wait` and the `fleet` / `unique_name` columns against the emulator: each
//! step, each refusal, transient failures, and resuming between the steps (including a
//! SIGKILL of the binary while its update request is in flight).

mod common;

use std::time::Duration;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};
use supersim_bulk::emulator::{EmulatorConfig, Fault, fleet_sid_for};

/// Every SIM's last results row matches the server: SID, status and Fleet.
fn assert_results_match_server(env: &TestEnv, iccids: &[String]) {
    let last = env.last_rows();
    for iccid in iccids {
        let row = &last[iccid];
        let sim = env.emulator.sim(iccid).expect("registered");
        assert_eq!(row["sid"], sim.sid, "{iccid}");
        assert_eq!(row["status"], sim.status, "{iccid}");
        assert_eq!(
            row["fleet_sid"],
            sim.fleet_sid.unwrap_or_default(),
            "{iccid}"
        );
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

fn slow_updates() -> EmulatorConfig {
    EmulatorConfig {
        update_delay: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_and_activation_go_in_one_update_and_scheduled_is_recorded() {
    let env = TestEnv::with_config(slow_updates()).await;
    let sims: Vec<_> = (0..6).map(good_sim).collect();
    env.write_input(&sims);

    let output = env.register(&["--fleet", "bench", "--activate"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let iccids: Vec<String> = sims.iter().map(|(i, _)| i.clone()).collect();
    let last = env.last_rows();
    for iccid in &iccids {
        assert_eq!(last[iccid]["outcome"], "registered");
        assert_eq!(last[iccid]["status"], "scheduled");
        assert_eq!(last[iccid]["fleet_sid"], fleet_sid_for("bench"));
    }
    assert_results_match_server(&env, &iccids);
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 6);
    assert_eq!(stats.update_requests, 6, "Fleet and Status in one request");
    assert!(
        stdout(&output).contains("registered          6"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("update_failed       0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_polls_until_the_change_is_done() {
    let env = TestEnv::with_config(EmulatorConfig {
        update_delay: Duration::from_millis(100),
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (10..14).map(good_sim).collect();
    env.write_input(&sims);

    let output = env
        .register(&[
            "--fleet",
            &fleet_sid_for("field-devices"),
            "--activate",
            "--wait",
        ])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let iccids: Vec<String> = sims.iter().map(|(i, _)| i.clone()).collect();
    for iccid in &iccids {
        assert_eq!(env.last_rows()[iccid]["status"], "active");
    }
    assert_results_match_server(&env, &iccids);
    assert!(env.emulator.stats().lookup_requests >= 4, "each SIM polled");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_ready_without_a_fleet_and_unique_names_from_a_column() {
    let env = TestEnv::new().await;
    let (a, a_code) = good_sim(20);
    let (b, b_code) = good_sim(21);
    env.write_csv(&format!(
        "Iccid,RegistrationCode,unique_name\n{a},{a_code},pump-1\n{b},{b_code},\n"
    ));

    let output = env.register(&["--status", "ready", "--wait"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        env.emulator.sim(&a).unwrap().unique_name.as_deref(),
        Some("pump-1")
    );
    assert_eq!(env.emulator.sim(&b).unwrap().unique_name, None);
    assert_eq!(env.emulator.sim(&a).unwrap().status, "ready");
    assert_results_match_server(&env, &[a, b]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_column_overrides_the_flag_per_row() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (30..33).map(good_sim).collect();
    let by_sid = fleet_sid_for("field-devices");
    env.write_csv(&format!(
        "iccid,code,fleet\n{},{},{by_sid}\n{},{},bench\n{},{},\n",
        sims[0].0, sims[0].1, sims[1].0, sims[1].1, sims[2].0, sims[2].1
    ));

    let output = env
        .register(&["--fleet", "field-devices", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let fleet = |n: usize| env.emulator.sim(&sims[n].0).unwrap().fleet_sid.unwrap();
    assert_eq!(fleet(0), by_sid);
    assert_eq!(fleet(1), fleet_sid_for("bench"));
    assert_eq!(fleet(2), by_sid, "an empty cell takes --fleet");
    let iccids: Vec<String> = sims.iter().map(|(i, _)| i.clone()).collect();
    assert_results_match_server(&env, &iccids);
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_without_any_fleet_is_refused_before_any_request() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(40)]);
    let output = env.register(&["--activate"]).await;
    assert_eq!(exit_code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("without a Fleet") && err.contains("--fleet"),
        "{err}"
    );
    assert_eq!(env.emulator.stats().requests, 0);
    assert!(!env.results_path().exists());

    // With a fleet column, only the rows without a Fleet are refused, still before sending.
    let (a, a_code) = good_sim(41);
    let (b, b_code) = good_sim(42);
    env.write_csv(&format!(
        "iccid,code,fleet\n{a},{a_code},bench\n{b},{b_code},\n"
    ));
    let output = env.register(&["--activate", "--wait"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let last = env.last_rows();
    assert_eq!(last[&a]["status"], "active");
    assert_eq!(last[&b]["outcome"], "invalid");
    assert!(last[&b]["error_message"].contains("fleet"));
    assert!(env.emulator.sim(&b).is_none(), "never sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_updates_are_update_failed_with_code_and_exit_1() {
    let env = TestEnv::new().await;
    let (unknown_fleet, c1) = good_sim(50);
    let (dup_a, c2) = good_sim(51);
    let (dup_b, c3) = good_sim(52);
    let (was_active, c4) = good_sim(53);
    env.emulator.preregister(&was_active);
    env.emulator
        .set_status(&was_active, "active", Some("bench"));
    env.write_csv(&format!(
        "iccid,code,fleet,unique_name\n\
         {unknown_fleet},{c1},no-such-fleet,\n\
         {dup_a},{c2},,same-name\n\
         {dup_b},{c3},,same-name\n\
         {was_active},{c4},,\n"
    ));

    let output = env
        .register(&[
            "--fleet",
            "bench",
            "--status",
            "ready",
            "--wait",
            "--concurrency",
            "1",
        ])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let last = env.last_rows();
    let failed = |iccid: &str, code: &str| {
        let row = &last[iccid];
        assert_eq!(row["outcome"], "update_failed", "{row:?}");
        assert_eq!(row["error_code"], code, "{row:?}");
        assert!(!row["error_message"].is_empty());
        assert!(!row["http_status"].is_empty());
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid);
    };
    // A Fleet that is not on the account is found before anything is sent: the row is
    // invalid and its SIM never registered (no 83006 after the fact).
    assert_eq!(last[&unknown_fleet]["outcome"], "invalid");
    assert!(
        last[&unknown_fleet]["error_message"]
            .contains("Fleet 'no-such-fleet' is not on this account"),
        "{:?}",
        last[&unknown_fleet]
    );
    assert!(env.emulator.sim(&unknown_fleet).is_none());
    failed(&dup_b, "83011");
    failed(&was_active, "83010");
    assert_eq!(last[&dup_a]["outcome"], "registered");
    assert_eq!(last[&was_active]["status"], "active");
    assert!(
        stdout(&output).contains("update_failed       2"),
        "{}",
        stdout(&output)
    );
    assert_results_match_server(&env, &[dup_a, dup_b]);

    // The user fixes the Fleet: the next run registers and onboards that SIM.
    env.write_csv(&format!("iccid,code,fleet\n{unknown_fleet},{c1},bench\n"));
    let output = env
        .register(&["--fleet", "bench", "--status", "ready", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.last_rows()[&unknown_fleet]["outcome"], "registered");
    assert_results_match_server(&env, &[unknown_fleet]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_sid_in_the_results_is_update_failed_83005() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(60);
    env.write_input(&[(iccid.clone(), code)]);
    std::fs::write(
        env.results_path(),
        format!(
            "line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at\n\
             2,{iccid},registered,HS{},new,,,,,1,2026-01-01T00:00:00Z\n",
            "0".repeat(32)
        ),
    )
    .unwrap();
    let output = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "update_failed");
    assert_eq!(row["error_code"], "20404", "FetchSim of an unknown SID");
    assert_eq!(env.emulator.stats().create_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_already_registered_sim_gets_the_missing_steps() {
    let env = TestEnv::new().await;
    let sim = good_sim(70);
    let sid = env.emulator.preregister(&sim.0);
    env.write_input(std::slice::from_ref(&sim));
    let output = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let row = &env.last_rows()[&sim.0];
    assert_eq!(row["outcome"], "already_registered");
    assert_eq!(row["sid"], sid);
    assert_eq!(row["status"], "active");
    assert_eq!(env.emulator.stats().commits, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_83009_is_retried_after_a_backoff() {
    let env = TestEnv::new().await;
    let sim = good_sim(80);
    env.emulator.inject_update(
        &sim.0,
        vec![
            Fault::TwilioError {
                status: 409,
                code: 83009
            };
            2
        ],
    );
    env.write_input(std::slice::from_ref(&sim));
    let output = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.last_rows()[&sim.0]["status"], "active");
    assert_eq!(env.emulator.stats().update_requests, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_update_failure_gives_up_and_a_resume_only_updates() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (90..93).map(good_sim).collect();
    let flaky = sims[1].0.clone();
    env.emulator.inject_update(
        &flaky,
        vec![Fault::ServerError, Fault::Unavailable { retry_after: None }],
    );
    env.write_input(&sims);
    let flags = [
        "--fleet",
        "bench",
        "--activate",
        "--wait",
        "--max-attempts",
        "2",
    ];

    let first = env.register(&flags).await;
    assert_eq!(exit_code(&first), 75, "{}", stderr(&first));
    let row = &env.last_rows()[&flaky];
    assert_eq!(row["outcome"], "gave_up");
    assert_eq!(row["error_code"], "20503");
    assert_eq!(
        row["sid"],
        env.emulator.sim(&flaky).unwrap().sid,
        "registered, not updated"
    );
    assert_eq!(row["status"], "new");
    let creates = env.emulator.stats().create_requests;

    let second = env.register(&flags).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    assert_eq!(
        env.emulator.stats().create_requests,
        creates,
        "no second registration"
    );
    let iccids: Vec<String> = sims.iter().map(|(i, _)| i.clone()).collect();
    assert_results_match_server(&env, &iccids);
    assert_eq!(env.last_rows()[&flaky]["status"], "active");

    let before = env.emulator.stats().requests;
    let third = env.register(&flags).await;
    assert_eq!(exit_code(&third), 0);
    assert_eq!(
        env.emulator.stats().requests,
        before,
        "a finished file sends nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_pass_registers_and_a_second_pass_onboards() {
    let env = TestEnv::with_config(slow_updates()).await;
    let sims: Vec<_> = (100..105).map(good_sim).collect();
    env.write_input(&sims);
    let iccids: Vec<String> = sims.iter().map(|(i, _)| i.clone()).collect();

    let plain = env.register(&[]).await;
    assert_eq!(exit_code(&plain), 0, "{}", stderr(&plain));
    assert_eq!(env.emulator.stats().update_requests, 0);

    let onboard = env.register(&["--fleet", "bench", "--activate"]).await;
    assert_eq!(exit_code(&onboard), 0, "{}", stderr(&onboard));
    assert_eq!(
        env.emulator.stats().create_requests,
        5,
        "no second registration"
    );
    assert_results_match_server(&env, &iccids);
    for iccid in &iccids {
        assert_eq!(env.last_rows()[iccid]["status"], "scheduled");
    }

    // The changes finish; a run with --wait records the final status after one fetch each.
    env.emulator.finish_scheduled();
    let updates = env.emulator.stats().update_requests;
    let waited = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&waited), 0, "{}", stderr(&waited));
    assert_eq!(
        env.emulator.stats().update_requests,
        updates,
        "nothing left to change"
    );
    for iccid in &iccids {
        assert_eq!(env.last_rows()[iccid]["status"], "active");
    }
    assert_results_match_server(&env, &iccids);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_timeout_gives_up_and_a_later_run_records_the_final_status() {
    let env = TestEnv::with_config(slow_updates()).await;
    let sim = good_sim(110);
    env.write_input(std::slice::from_ref(&sim));
    let flags = [
        "--fleet",
        "bench",
        "--activate",
        "--wait",
        "--wait-timeout",
        "20ms",
    ];

    let first = env.register(&flags).await;
    assert_eq!(exit_code(&first), 75, "{}", stderr(&first));
    let row = &env.last_rows()[&sim.0];
    assert_eq!(row["outcome"], "gave_up");
    assert_eq!(row["status"], "scheduled");
    assert!(row["error_message"].contains("--wait-timeout"), "{row:?}");

    env.emulator.finish_scheduled();
    let second = env.register(&flags).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    assert_eq!(env.last_rows()[&sim.0]["outcome"], "registered");
    assert_results_match_server(&env, &[sim.0]);
    assert_eq!(env.emulator.stats().update_requests, 1);
    assert_eq!(env.emulator.stats().create_requests, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_registration_and_update_resumes_at_the_update() {
    let env = TestEnv::new().await;
    let sim = good_sim(120);
    // The update request is held unprocessed, so the binary is killed with the SIM
    // registered and its update not done.
    env.emulator.inject_update(
        &sim.0,
        vec![Fault::StallBeforeCommit(Duration::from_secs(60))],
    );
    env.write_input(std::slice::from_ref(&sim));
    let flags = ["--fleet", "bench", "--activate", "--wait"];

    let mut child = env
        .register_command(&flags, &TestEnv::test_credentials())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), env.emulator.wait_for_updates(1))
        .await
        .expect("the binary reached its update step");
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    let rows = env.results();
    assert_eq!(
        rows.len(),
        1,
        "the checkpoint row was written before the update"
    );
    assert_eq!(rows[0]["outcome"], "registered");
    assert_eq!(rows[0]["status"], "new");
    assert_eq!(env.emulator.sim(&sim.0).unwrap().status, "new");

    let resumed = env.register(&flags).await;
    assert_eq!(exit_code(&resumed), 0, "{}", stderr(&resumed));
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 1, "no second registration");
    assert_eq!(env.last_rows()[&sim.0]["status"], "active");
    assert_results_match_server(&env, &[sim.0]);
}

/// Issue 20 item 5: an 83011 names the unique name that clashed and says the Fleet and
/// status asked for in the same request were not applied; the outcome stays
/// `update_failed`, and once the name is fixed only the update is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_83011_names_the_taken_name_and_the_steps_still_to_do() {
    let env = TestEnv::new().await;
    let (first, first_code) = good_sim(60);
    let (second, second_code) = good_sim(61);
    env.write_csv(&format!(
        "iccid,code,unique_name\n{first},{first_code},tracker-001\n"
    ));
    assert_eq!(exit_code(&env.register(&[]).await), 0);

    env.write_csv(&format!(
        "iccid,code,unique_name\n{first},{first_code},tracker-001\n{second},{second_code},tracker-001\n"
    ));
    let output = env
        .register(&["--fleet", "field-devices", "--activate"])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let row = &env.last_rows()[&second];
    assert_eq!(row["outcome"], "update_failed", "{row:?}");
    assert_eq!(row["error_code"], "83011", "{row:?}");
    let message = &row["error_message"];
    assert!(message.contains("'tracker-001'"), "{message}");
    assert!(
        message
            .contains("the Fleet and the status asked for in the same request are not confirmed"),
        "{message}"
    );
    assert_eq!(row["status"], "new", "{row:?}");
    assert_eq!(row["fleet_sid"], "", "{row:?}");
    let sim = env.emulator.sim(&second).unwrap();
    assert_eq!((sim.status.as_str(), sim.fleet_sid), ("new", None));
    assert!(!message.contains(&second_code), "{message}");

    // The name fixed: only the update is sent, and it does all three steps.
    env.write_csv(&format!(
        "iccid,code,unique_name\n{first},{first_code},tracker-001\n{second},{second_code},tracker-002\n"
    ));
    let output = env
        .register(&["--fleet", "field-devices", "--activate"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.commits(&second), 1);
    let sim = env.emulator.sim(&second).unwrap();
    assert_eq!(sim.unique_name.as_deref(), Some("tracker-002"));
    assert_eq!(sim.fleet_sid, Some(fleet_sid_for("field-devices")));
}
