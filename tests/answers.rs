//! End-to-end runs against an emulator whose answers do not describe what was asked for: a
//! success showing another SIM, another account or a SID that is not one, and an 83003 that
//! the account cannot show. None of them may be written into a row as it came.

mod common;

use common::{TestEnv, altered, assert_sids_unique, exit_code, good_sim, stderr};
use supersim_bulk::emulator::{EmulatorConfig, Fault, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};

/// Another account than the emulator's.
const OTHER_ACCOUNT: &str = "AC11111111111111111111111111111111";

/// Issue 17 item 4: a 201 showing another SIM (its ICCID and SID) is an answer in doubt;
/// the SIM ends with its own SID, never the other SIM's.
#[tokio::test(flavor = "multi_thread")]
async fn a_success_showing_another_sim_is_not_recorded() {
    let env = TestEnv::new().await;
    let (taken, taken_code) = good_sim(1);
    let (fresh, fresh_code) = good_sim(2);
    let taken_sid = env.emulator.preregister(&taken);
    env.emulator.inject(
        &fresh,
        vec![altered(&[("iccid", &taken), ("sid", &taken_sid)])],
    );
    env.write_input(&[(taken.clone(), taken_code), (fresh.clone(), fresh_code)]);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let rows = env.last_rows();
    assert_eq!(rows[&taken]["sid"], taken_sid);
    assert_eq!(rows[&fresh]["outcome"], "registered");
    assert_eq!(rows[&fresh]["sid"], env.emulator.sim(&fresh).unwrap().sid);
    assert_sids_unique(&rows);
    assert_eq!(env.emulator.commits(&fresh), 1);
}

/// Issue 17 item 4: a SID that is not `HS` and 32 hex digits (here one holding a comma and
/// a newline) is never written; the SIM ends with the SID the account shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_success_with_a_malformed_sid_is_not_written() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    let forged = "HS0123456789abcdef,\nforged-row";
    env.emulator
        .inject(&sims[1].0, vec![altered(&[("sid", forged)])]);
    env.write_input(&sims);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    assert!(!text.contains("forged-row"), "{text}");
    let rows = env.last_rows();
    assert_eq!(rows.len(), 3, "{text}");
    for (iccid, _) in &sims {
        assert_eq!(rows[iccid]["outcome"], "registered", "{text}");
        assert_eq!(rows[iccid]["sid"], env.emulator.sim(iccid).unwrap().sid);
    }
}

/// Issue 17 item 4: a SIM shown on another account is not recorded under that account, so
/// the next run resumes its own file (sending nothing) instead of refusing it. The run's
/// account is an auth token's Account SID, or, with an API key and no TWILIO_ACCOUNT_SID,
/// the one the preflight proved.
#[tokio::test(flavor = "multi_thread")]
async fn a_success_showing_another_account_is_not_recorded_under_it() {
    const KEY: &str = "SK0123456789abcdef0123456789abcdef";
    const SECRET: &str = "api-key-secret";
    let auth_token = TestEnv::test_credentials();
    let credentials: [&[(&str, &str)]; 2] = [
        &auth_token,
        &[("TWILIO_API_KEY", KEY), ("TWILIO_API_SECRET", SECRET)],
    ];
    for env_vars in credentials {
        let env = TestEnv::with_config(EmulatorConfig {
            credentials: vec![
                (TEST_ACCOUNT_SID.into(), TEST_AUTH_TOKEN.into()),
                (KEY.into(), SECRET.into()),
            ],
            ..EmulatorConfig::default()
        })
        .await;
        let sims: Vec<_> = (1..=2).map(good_sim).collect();
        env.emulator
            .inject(&sims[0].0, vec![altered(&[("account_sid", OTHER_ACCOUNT)])]);
        env.write_input(&sims);

        let output = env.register_with_env(&[], env_vars).await;
        assert_eq!(exit_code(&output), 0, "{env_vars:?}: {}", stderr(&output));
        let rows = env.last_rows();
        for (iccid, _) in &sims {
            assert_eq!(rows[iccid]["outcome"], "registered", "{env_vars:?}");
            assert_eq!(rows[iccid]["account_sid"], TEST_ACCOUNT_SID, "{env_vars:?}");
            assert_eq!(rows[iccid]["sid"], env.emulator.sim(iccid).unwrap().sid);
        }
        let creates = env.emulator.stats().create_requests;
        let again = env.register_with_env(&[], env_vars).await;
        assert_eq!(exit_code(&again), 0, "{env_vars:?}: {}", stderr(&again));
        assert_eq!(
            env.emulator.stats().create_requests,
            creates,
            "{env_vars:?}"
        );
    }
}

/// Issue 17 item 4: an update answer showing another SID is not recorded; the SIM's row
/// keeps its own SID and shows the update done.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_answer_showing_another_sid_is_not_recorded() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(1);
    let other = "HSffffffffffffffffffffffffffffffff";
    env.emulator
        .inject_update(&iccid, vec![altered(&[("sid", other)])]);
    env.write_input(&[(iccid.clone(), code)]);

    let output = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let rows = env.last_rows();
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(rows[&iccid]["sid"], sim.sid);
    assert_eq!(rows[&iccid]["outcome"], "registered");
    assert_eq!(rows[&iccid]["fleet_sid"], sim.fleet_sid.unwrap());
}

/// Issue 17 item 5: an 83003 without a SID, that no lookup by ICCID can show, is no proof:
/// the SIM is retried and ends `gave_up` (exit 75) with no SID; a later run registers it.
#[tokio::test(flavor = "multi_thread")]
async fn an_83003_the_account_cannot_show_is_retried_then_gave_up() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(1);
    let unproven = Fault::TwilioError {
        status: 409,
        code: 83003,
    };
    env.emulator.inject(&iccid, vec![unproven; 3]);
    env.write_input(&[(iccid.clone(), code)]);

    let output = env.register(&["--max-attempts", "3"]).await;
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    let rows = env.last_rows();
    assert_eq!(rows[&iccid]["outcome"], "gave_up");
    assert_eq!(rows[&iccid]["sid"], "");
    assert_eq!(rows[&iccid]["attempts"], "3");
    assert_eq!(env.emulator.stats().create_requests, 3);

    let again = env.register(&[]).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let rows = env.last_rows();
    assert_eq!(rows[&iccid]["outcome"], "registered");
    assert_eq!(rows[&iccid]["sid"], env.emulator.sim(&iccid).unwrap().sid);
}

/// Issue 17 item 5: once the retry is answered, the SIM is registered with its SID.
#[tokio::test(flavor = "multi_thread")]
async fn an_unproven_83003_then_a_success_is_registered() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(1);
    env.emulator.inject(
        &iccid,
        vec![Fault::TwilioError {
            status: 409,
            code: 83003,
        }],
    );
    env.write_input(&[(iccid.clone(), code)]);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let rows = env.last_rows();
    assert_eq!(rows[&iccid]["outcome"], "registered");
    assert_eq!(rows[&iccid]["sid"], env.emulator.sim(&iccid).unwrap().sid);
}

/// With an API key, no TWILIO_ACCOUNT_SID and an account the preflight cannot learn (no SIM
/// and no Fleet on it yet), the first account an answer confirms binds the run: an answer
/// showing another account is not recorded, and the results file holds one account.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_unknown_account_the_first_one_confirmed_binds_the_run() {
    const KEY: &str = "SK0123456789abcdef0123456789abcdef";
    const SECRET: &str = "api-key-secret";
    let env = TestEnv::with_config(EmulatorConfig {
        credentials: vec![(KEY.into(), SECRET.into())],
        fleets: Vec::new(),
        ..EmulatorConfig::default()
    })
    .await;
    let api_key = [("TWILIO_API_KEY", KEY), ("TWILIO_API_SECRET", SECRET)];
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    for (iccid, _) in &sims[1..] {
        env.emulator
            .inject(iccid, vec![altered(&[("account_sid", OTHER_ACCOUNT)])]);
    }
    env.write_input(&sims);

    // One SIM at a time, so the first answer is the first line's, on the emulator's account.
    let output = env
        .register_with_env(&["--concurrency", "1"], &api_key)
        .await;
    let rows = env.last_rows();
    for (iccid, _) in &sims {
        let row = &rows[iccid];
        assert_eq!(
            row["account_sid"], TEST_ACCOUNT_SID,
            "one account per results file: {row:?}"
        );
        assert_eq!(row["outcome"], "registered", "{row:?}");
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid, "{row:?}");
    }
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
}

/// A Fleet lookup answered with another Fleet (its SID and unique name) is not taken as the
/// Fleet asked for: no SIM goes into the Fleet nobody named. Asked again, the lookup shows
/// the Fleet asked for, and the SIMs go there.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_lookup_showing_another_fleet_is_not_used() {
    use supersim_bulk::emulator::fleet_sid_for;
    let other = fleet_sid_for("field-devices");
    let bench = fleet_sid_for("bench");
    let cases = [("bench".to_string(), bench.clone()), (bench.clone(), bench)];
    for (asked, wanted) in cases {
        let env = TestEnv::new().await;
        let (iccid, code) = good_sim(1);
        env.emulator.inject_fleet(
            &asked,
            vec![altered(&[
                ("sid", &other),
                ("unique_name", "field-devices"),
            ])],
        );
        env.write_input(&[(iccid.clone(), code)]);

        let output = env.register(&["--fleet", &asked]).await;
        let sim = env.emulator.sim(&iccid).unwrap();
        assert_eq!(sim.fleet_sid.as_deref(), Some(wanted.as_str()), "{asked}");
        assert_eq!(env.last_rows()[&iccid]["fleet_sid"], wanted, "{asked}");
        assert_eq!(exit_code(&output), 0, "{asked}: {}", stderr(&output));
    }
}

/// A Fleet lookup that never shows the Fleet asked for stops the run before anything is
/// registered (exit 75, as for a lookup that keeps failing), naming the Fleet.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_lookup_that_keeps_showing_another_fleet_registers_nothing() {
    use supersim_bulk::emulator::fleet_sid_for;
    let env = TestEnv::new().await;
    let other = fleet_sid_for("field-devices");
    env.emulator.inject_fleet(
        "bench",
        vec![altered(&[("sid", &other), ("unique_name", "field-devices")]); 2],
    );
    env.write_input(&[good_sim(1)]);
    let output = env
        .register(&["--fleet", "bench", "--max-attempts", "2"])
        .await;
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert!(stderr(&output).contains("'bench'"), "{}", stderr(&output));
    assert_eq!(env.emulator.stats().create_requests, 0);
}
