//! End-to-end runs against an emulator whose answers to `POST /v1/Sims/{Sid}` (UpdateSim)
//! do not show the update asked for: a success that applied nothing, one showing another
//! Fleet, a scheduled change that falls back. A row is written as done only when the account
//! shows the Fleet and the status asked for.

mod common;

use common::{TestEnv, altered, exit_code, good_sim, stderr};
use supersim_bulk::emulator::{Fault, fleet_sid_for};

/// An emulator and an input of one good SIM, number `n`; faults are injected before the
/// run, after this.
async fn one_sim(n: u32) -> (TestEnv, String) {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(n);
    env.write_input(&[(iccid.clone(), code)]);
    (env, iccid)
}

/// A 200 to an update that applied nothing shows the SIM as it was: no Fleet, `new`. The
/// row is not written as done from it; the update is sent again and the row shows the SIM
/// in its Fleet, active, as the account does.
#[tokio::test(flavor = "multi_thread")]
async fn a_success_that_applied_nothing_is_not_recorded_as_done() {
    let (env, iccid) = one_sim(1).await;
    env.emulator
        .inject_update(&iccid, vec![Fault::SuccessUnapplied]);

    let output = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    let row = &env.last_rows()[&iccid];
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(
        (row["status"].as_str(), row["fleet_sid"].as_str()),
        ("active", fleet_sid_for("bench").as_str()),
        "{row:?}"
    );
    assert_eq!(sim.status, "active");
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().update_requests, 2);
}

/// Every update answered with nothing applied: the attempts run out, the row is `gave_up`
/// with the SID and the state the account shows (exit 75), and the next run sends only the
/// update.
#[tokio::test(flavor = "multi_thread")]
async fn updates_that_never_apply_give_up_and_a_rerun_only_updates() {
    let (env, iccid) = one_sim(2).await;
    env.emulator
        .inject_update(&iccid, vec![Fault::SuccessUnapplied; 2]);
    let flags = ["--fleet", "bench", "--activate", "--max-attempts", "2"];

    let output = env.register(&flags).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert_eq!(row["sid"], env.emulator.sim(&iccid).unwrap().sid);
    assert_eq!(row["status"], "new", "{row:?}");
    assert_eq!(row["fleet_sid"], "", "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));

    let again = env.register(&flags).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
    assert_eq!(env.emulator.commits(&iccid), 1);
}

/// A 200 showing another Fleet than the one asked for is not written into the row: the row
/// shows the Fleet the account has.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_answer_showing_another_fleet_is_not_recorded() {
    let (env, iccid) = one_sim(3).await;
    let other = fleet_sid_for("field-devices");
    env.emulator
        .inject_update(&iccid, vec![altered(&[("fleet_sid", &other)])]);

    let output = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let row = &env.last_rows()[&iccid];
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(sim.fleet_sid, Some(fleet_sid_for("bench")));
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
    assert_eq!(row["outcome"], "registered", "{row:?}");
}

/// With `--wait`, a scheduled activation that ends with the SIM back at `new` is not done:
/// the row is `gave_up` with the status the account shows (exit 75), and the next run sends
/// the update again, and only the update.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_change_that_falls_back_is_not_recorded_as_done() {
    let (env, iccid) = one_sim(4).await;
    env.emulator
        .inject_update(&iccid, vec![Fault::ScheduledThenReverts]);
    let flags = ["--fleet", "bench", "--activate", "--wait"];

    let output = env.register(&flags).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(env.emulator.sim(&iccid).unwrap().status, "new");
    assert_eq!(row["status"], "new", "{row:?}");
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert!(row["error_message"].contains("active"), "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));

    let again = env.register(&flags).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(row["status"], "active", "{row:?}");
    assert_eq!(env.emulator.commits(&iccid), 1);
    assert_eq!(env.emulator.stats().update_requests, 2);
}

/// An update whose answer is lost after the server applied it (closed, cut short, or later
/// than `--timeout`) is not sent twice: the SIM is read again, shows the change, and the
/// row records what the account shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_update_answer_is_settled_by_a_read_and_sent_once() {
    let lost = [
        Fault::DropAfterCommit,
        Fault::CutShortAfterCommit,
        Fault::SlowAfterCommit(std::time::Duration::from_secs(5)),
    ];
    for (n, fault) in lost.into_iter().enumerate() {
        let env = TestEnv::new().await;
        let (iccid, code) = good_sim(10 + n as u32);
        env.emulator.inject_update(&iccid, vec![fault.clone()]);
        env.write_input(&[(iccid.clone(), code)]);
        let output = env
            .register(&[
                "--fleet",
                "bench",
                "--activate",
                "--wait",
                "--timeout",
                "1s",
            ])
            .await;
        assert_eq!(exit_code(&output), 0, "{fault:?}: {}", stderr(&output));
        let row = &env.last_rows()[&iccid];
        assert_eq!(row["outcome"], "registered", "{fault:?}: {row:?}");
        assert_eq!(row["status"], "active", "{fault:?}: {row:?}");
        assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{fault:?}");
        assert_eq!(env.emulator.stats().update_requests, 1, "{fault:?}");
        assert_eq!(env.emulator.commits(&iccid), 1, "{fault:?}");
    }
}

/// A SIM this run has just registered (201, with its SID) that the update is told is not
/// found (20404, or 83005), as an account not yet consistent after the create answers: the
/// update is retried, the SIM onboarded, and not left `update_failed` for a person.
#[tokio::test(flavor = "multi_thread")]
async fn not_found_just_after_the_create_is_retried() {
    for code in [20404, 83005] {
        let env = TestEnv::new().await;
        let (iccid, sim_code) = good_sim(20 + code % 7);
        env.emulator
            .inject_update(&iccid, vec![Fault::TwilioError { status: 404, code }]);
        env.write_input(&[(iccid.clone(), sim_code)]);
        let output = env
            .register(&["--fleet", "bench", "--activate", "--wait"])
            .await;
        let row = &env.last_rows()[&iccid];
        assert_eq!(row["outcome"], "registered", "{code}: {row:?}");
        assert_eq!(row["status"], "active", "{code}: {row:?}");
        assert_eq!(exit_code(&output), 0, "{code}: {}", stderr(&output));
        assert_eq!(env.emulator.stats().update_requests, 2, "{code}");
    }
}

/// The binary killed after the server applied its update but before the answer came back:
/// the next run reads the SIM, finds the update done, and sends it no second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_after_the_update_applied_is_not_followed_by_a_second_update() {
    let (env, iccid) = one_sim(30).await;
    env.emulator.inject_update(
        &iccid,
        vec![Fault::SlowAfterCommit(std::time::Duration::from_secs(60))],
    );
    let flags = ["--fleet", "bench", "--activate", "--wait"];
    let mut child = env.spawn_register(&flags);
    common::wait_until("the update is applied", || {
        env.emulator
            .sim(&iccid)
            .is_some_and(|sim| sim.fleet_sid.is_some())
    })
    .await;
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let rows = env.results();
    assert_eq!(rows.len(), 1, "the checkpoint row only: {rows:?}");
    assert_eq!(rows[0]["status"], "new");

    let resumed = env.register(&flags).await;
    assert_eq!(exit_code(&resumed), 0, "{}", stderr(&resumed));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(row["status"], "active", "{row:?}");
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"));
    assert_eq!(env.emulator.stats().update_requests, 1, "one update in all");
    assert_eq!(env.emulator.commits(&iccid), 1);
}

/// A SIM already on the account with someone else's change still `scheduled`: without
/// `--wait` the update cannot be sent yet (Twilio refuses it, 83009), so the row is not done
/// with the Fleet asked for missing: it is `gave_up` (exit 75), and a run once the change is
/// over assigns the Fleet.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_not_assigned_behind_a_scheduled_change_is_not_done() {
    let (env, iccid) = one_sim(40).await;
    env.emulator.preregister(&iccid);
    env.emulator.set_status(&iccid, "scheduled", None);

    let output = env.register(&["--fleet", "bench"]).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(env.emulator.sim(&iccid).unwrap().fleet_sid, None);
    assert_eq!(row["fleet_sid"], "", "{row:?}");
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert!(row["error_message"].contains("scheduled"), "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));

    env.emulator.set_status(&iccid, "ready", None);
    let again = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let row = &env.last_rows()[&iccid];
    assert!(
        ["registered", "already_registered"].contains(&row["outcome"].as_str()),
        "{row:?}"
    );
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
    assert_eq!(env.emulator.stats().create_requests, 1);
}

/// With `--wait`, a poll of a SIM whose update was just accepted answered "not found"
/// (20404), as an account not yet consistent answers: the update was not refused, so the row
/// is not `update_failed`; polling goes on and records the status the change ends in.
#[tokio::test(flavor = "multi_thread")]
async fn a_not_found_poll_after_an_accepted_update_is_not_a_refusal() {
    let (env, iccid) = one_sim(50).await;
    env.emulator.inject_fetch(
        &iccid,
        vec![Fault::TwilioError {
            status: 404,
            code: 20404,
        }],
    );

    let output = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(row["status"], "active", "{row:?}");
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().update_requests, 1);
}

/// A SIM already on the account (83003, confirmed by a lookup by ICCID) whose fetch before
/// the update answers "not found": the account showed it a moment ago, so the row is not
/// `update_failed` (which a rerun asking the same would skip for good) but `gave_up`, and the
/// next run assigns the Fleet.
#[tokio::test(flavor = "multi_thread")]
async fn a_not_found_fetch_after_the_lookup_showed_the_sim_is_not_a_refusal() {
    let (env, iccid) = one_sim(60).await;
    env.emulator.preregister(&iccid);
    env.emulator.inject_fetch(
        &iccid,
        vec![Fault::TwilioError {
            status: 404,
            code: 20404,
        }],
    );

    let output = env.register(&["--fleet", "bench"]).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert_eq!(row["sid"], env.emulator.sim(&iccid).unwrap().sid, "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));

    let again = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    assert_eq!(env.last_rows()[&iccid]["fleet_sid"], fleet_sid_for("bench"));
    assert_eq!(env.emulator.stats().commits, 0);
}

/// A server that assigns the Fleet together with the scheduled status change: its 202 shows
/// `scheduled` and no Fleet yet. That is the update accepted, as any 202 is: without
/// `--wait` the row is the documented `scheduled` one (exit 0, one update); with `--wait`
/// it shows the Fleet and `active` once the change is done.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_that_shows_only_once_the_change_is_done_is_accepted() {
    for wait in [false, true] {
        let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
            update_delay: std::time::Duration::from_millis(if wait { 50 } else { 3_600_000 }),
            ..Default::default()
        })
        .await;
        let (iccid, code) = good_sim(70);
        env.emulator
            .inject_update(&iccid, vec![Fault::FleetWithScheduledChange]);
        env.write_input(&[(iccid.clone(), code)]);
        let mut flags = vec!["--fleet", "bench", "--activate"];
        if wait {
            flags.push("--wait");
        }
        let output = env.register(&flags).await;
        assert_eq!(exit_code(&output), 0, "wait {wait}: {}", stderr(&output));
        let row = &env.last_rows()[&iccid];
        assert_eq!(row["outcome"], "registered", "{row:?}");
        let expected = if wait { "active" } else { "scheduled" };
        assert_eq!(row["status"], expected, "{row:?}");
        if wait {
            assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
        }
        assert_eq!(env.emulator.stats().update_requests, 1, "wait {wait}");
    }
}

/// An account that spells its SIDs in capitals (`^HS[0-9a-fA-F]{32}$` allows it) and finds a
/// SIM only by its SID as spelled: a later run that resumes the SIM from the results file
/// names it as the file does, so its update reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sid_in_capitals_is_resumed_as_spelled() {
    let (env, iccid) = one_sim(80).await;
    let sid = env.emulator.preregister(&iccid);
    let upper = format!("HS{}", sid[2..].to_uppercase());
    env.emulator.respell_sid(&iccid, &upper);

    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    assert_eq!(env.last_rows()[&iccid]["sid"], upper);

    let second = env.register(&["--fleet", "bench"]).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
    assert_eq!(row["sid"], upper, "{row:?}");
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
}

/// The update is sent, and refused because someone else's change is under way (83009): it
/// was not applied, so the `scheduled` SIM read next is not taken as this run's change, and
/// the row is `gave_up` without the Fleet, not done.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_refused_83009_is_not_taken_as_the_change_under_way() {
    let (env, iccid) = one_sim(100).await;
    env.emulator.preregister(&iccid);
    env.emulator.set_status(&iccid, "scheduled", None);
    // The first read shows the SIM before someone else's change was scheduled.
    env.emulator
        .inject_fetch(&iccid, vec![altered(&[("status", "new")])]);

    let output = env.register(&["--fleet", "bench"]).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(env.emulator.stats().update_requests, 1);
    assert_eq!(env.emulator.sim(&iccid).unwrap().fleet_sid, None);
    assert_eq!(row["fleet_sid"], "", "{row:?}");
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
}

/// With `--wait`, a SIM that once settled shows another Fleet than the one the accepted
/// update assigned is not recorded done with it: the row is `gave_up`, naming the Fleet.
#[tokio::test(flavor = "multi_thread")]
async fn a_settled_sim_showing_another_fleet_is_not_done() {
    let (env, iccid) = one_sim(110).await;
    let other = fleet_sid_for("field-devices");
    env.emulator
        .inject_fetch(&iccid, vec![altered(&[("fleet_sid", &other)])]);

    let output = env
        .register(&["--fleet", "bench", "--activate", "--wait"])
        .await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert!(row["error_message"].contains(&other), "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
}

/// A lookup by ICCID that shows two SIMs with the ICCID (Twilio says there is at most one):
/// neither is taken as the SIM, so no update goes to one picked at random; the row is
/// `gave_up` with no SID (exit 75), for a person to look at.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_showing_two_sims_for_one_iccid_updates_neither() {
    let (env, iccid) = one_sim(120).await;
    env.emulator.preregister(&iccid);
    env.emulator.duplicate_sim(&iccid).unwrap();

    let output = env
        .register(&["--fleet", "bench", "--max-attempts", "2"])
        .await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(env.emulator.stats().update_requests, 0, "{row:?}");
    assert_eq!(row["sid"], "", "{row:?}");
    assert!(
        row["error_message"].contains("two SIMs with this ICCID"),
        "{row:?}"
    );
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
}

/// A SIM in one Fleet moved to another by an update whose Fleet shows only once the
/// scheduled change is done: the 202 and every read while `scheduled` show the Fleet it is
/// leaving. That is another Fleet than the one asked for, so the row is not done with it
/// (it was `registered` in the Fleet left, exit 0): without `--wait` it is `gave_up`, and a
/// run once the change is over records the new Fleet.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_change_showing_the_fleet_left_is_not_done() {
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        update_delay: std::time::Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let (iccid, code) = good_sim(90);
    env.emulator.preregister(&iccid);
    env.emulator
        .set_status(&iccid, "new", Some("field-devices"));
    env.emulator
        .inject_update(&iccid, vec![Fault::FleetWithScheduledChange]);
    env.write_input(&[(iccid.clone(), code)]);
    let flags = ["--fleet", "bench", "--activate"];

    let output = env.register(&flags).await;
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert!(row["error_message"].contains("scheduled"), "{row:?}");
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(
        row["fleet_sid"],
        sim.fleet_sid.unwrap_or_default(),
        "{row:?}"
    );
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().update_requests, 1);

    env.emulator.finish_scheduled();
    let again = env.register(&flags).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["fleet_sid"], fleet_sid_for("bench"), "{row:?}");
    assert_eq!(row["status"], "active", "{row:?}");
    assert_eq!(env.emulator.stats().update_requests, 1);
}

/// A 200 to an update of the unique name alone that applied nothing shows the SIM unnamed.
/// The row was written as done from it (and every later run skipped it, the SIM never
/// named); now the name is sent again and the row shows it as the account does.
#[tokio::test(flavor = "multi_thread")]
async fn a_unique_name_the_answer_does_not_show_is_not_done() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(91);
    env.emulator
        .inject_update(&iccid, vec![Fault::SuccessUnapplied]);
    env.write_csv(&format!(
        "Iccid,RegistrationCode,unique_name\n{iccid},{code},tracker-91\n"
    ));

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "registered", "{row:?}");
    assert_eq!(row["unique_name"], "tracker-91", "{row:?}");
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(sim.unique_name.as_deref(), Some("tracker-91"));
    assert_eq!(env.emulator.stats().update_requests, 2);
}

/// A SIM the file records as done in one Fleet, moved to another by a run killed before
/// its row was written: the file still said the first Fleet was done, so a rerun asking for
/// it again skipped the SIM and left it in the other Fleet, exit 0. The killed run now
/// leaves a checkpoint first, and the rerun reads the SIM and moves it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_while_moving_a_recorded_sim_does_not_leave_the_old_fleet_done() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(92);
    env.write_input(&[(iccid.clone(), code)]);
    let first = env.register(&["--fleet", "field-devices"]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));

    env.emulator.inject_update(
        &iccid,
        vec![Fault::SlowAfterCommit(std::time::Duration::from_secs(60))],
    );
    let mut child = env.spawn_register(&["--fleet", "bench"]);
    common::wait_until("the move is applied", || {
        env.emulator.sim(&iccid).unwrap().fleet_sid == Some(fleet_sid_for("bench"))
    })
    .await;
    child.kill().await.unwrap();
    let _ = child.wait().await;

    let again = env.register(&["--fleet", "field-devices"]).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    let row = &env.last_rows()[&iccid];
    let sim = env.emulator.sim(&iccid).unwrap();
    assert_eq!(sim.fleet_sid, Some(fleet_sid_for("field-devices")));
    assert_eq!(row["fleet_sid"], fleet_sid_for("field-devices"), "{row:?}");
    assert_eq!(env.emulator.commits(&iccid), 1);
}
