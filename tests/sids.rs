//! End-to-end runs against servers that name SIDs the account does not back: an 83003 whose
//! message names another SIM's SID, and successes that show one SID for many ICCIDs. A row
//! says `registered` or `already_registered` only with the SID the account confirms for its
//! ICCID, and no two rows ever hold the same SID for different ICCIDs, whether the other
//! row was written by this run or kept from an earlier one.

mod common;

use common::{TestEnv, altered, assert_sids_unique, exit_code, good_sim, stderr};
use supersim_bulk::emulator::{Fault, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};

/// A SID no SIM of the emulator's account has.
const STRANGER_SID: &str = "HSeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// An 83003 whose message names `sid`, as a server free to word it may.
fn already_registered_as(sid: &str) -> Fault {
    Fault::TwilioMessage {
        status: 409,
        code: 83003,
        message: format!("The Super SIM {sid} is already registered to your account"),
    }
}

/// An 83003 naming a SID for SIMs the account cannot show proves nothing: the SID in the
/// message is a hint, so each SIM is retried and ends `gave_up` without it (exit 75), never
/// `already_registered` with a SID nobody confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn an_83003_naming_a_sid_the_account_does_not_show_is_not_trusted() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    for (iccid, _) in &sims {
        env.emulator
            .inject(iccid, vec![already_registered_as(STRANGER_SID); 3]);
    }
    env.write_input(&sims);

    let output = env.register(&["--max-attempts", "3"]).await;
    let rows = env.last_rows();
    for (iccid, _) in &sims {
        let row = &rows[iccid];
        assert_eq!(
            row["outcome"], "gave_up",
            "an 83003 the account does not back is no proof: {row:?}"
        );
        assert_eq!(row["sid"], "", "an unconfirmed SID is not written: {row:?}");
    }
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    assert!(!text.contains(STRANGER_SID), "{text}");
}

/// An 83003 naming another SID for a SIM the account has: the row holds the SID the lookup
/// by ICCID shows, not the message's.
#[tokio::test(flavor = "multi_thread")]
async fn an_83003_is_recorded_with_the_sid_the_account_shows() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(1);
    let own_sid = env.emulator.preregister(&iccid);
    env.emulator
        .inject(&iccid, vec![already_registered_as(STRANGER_SID)]);
    env.write_input(&[(iccid.clone(), code)]);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let row = &env.last_rows()[&iccid];
    assert_eq!(row["outcome"], "already_registered", "{row:?}");
    assert_eq!(
        row["sid"], own_sid,
        "the account's SID, not the message's: {row:?}"
    );
    assert_eq!(row["account_sid"], TEST_ACCOUNT_SID);
}

/// With onboarding asked for, an 83003 naming a SID the account does not show never reaches
/// the update step, and the `gave_up` row carries no SID.
#[tokio::test(flavor = "multi_thread")]
async fn with_onboarding_an_unconfirmed_83003_leaves_no_sid_in_the_row() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=2).map(good_sim).collect();
    for (iccid, _) in &sims {
        env.emulator
            .inject(iccid, vec![already_registered_as(STRANGER_SID); 3]);
    }
    env.write_input(&sims);

    let output = env
        .register(&["--max-attempts", "3", "--fleet", "bench", "--activate"])
        .await;
    let rows = env.last_rows();
    for (iccid, _) in &sims {
        let row = &rows[iccid];
        assert_eq!(row["sid"], "", "an unconfirmed SID is not written: {row:?}");
        assert_eq!(row["outcome"], "gave_up", "{row:?}");
    }
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().update_requests, 0);
}

/// A server that shows one SID for every SIM it registers (ICCID and account right): the
/// first row may take that SID, but no other: each other SIM is settled by a lookup and
/// gets the SID the account shows for it.
#[tokio::test(flavor = "multi_thread")]
async fn one_sid_shown_for_every_sim_goes_on_one_row_at_most() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    for (iccid, _) in &sims {
        env.emulator
            .inject(iccid, vec![altered(&[("sid", STRANGER_SID)])]);
    }
    env.write_input(&sims);

    // One SIM at a time, so which SIM the shown SID reaches first is the first line's.
    let output = env.register(&["--concurrency", "1"]).await;
    let rows = env.last_rows();
    assert_sids_unique(&rows);
    for (iccid, _) in &sims[1..] {
        let row = &rows[iccid];
        assert_eq!(row["outcome"], "registered", "{row:?}");
        assert_eq!(
            row["sid"],
            env.emulator.sim(iccid).unwrap().sid,
            "the account's SID: {row:?}"
        );
    }
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
}

/// A SID a row kept from an earlier run holds is not recorded for another SIM: the SIM
/// answered with it gets the SID the account shows for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sid_an_earlier_run_recorded_is_not_recorded_for_another_sim() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims[..1]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let earlier_sid = env.emulator.sim(&sims[0].0).unwrap().sid;

    for (iccid, _) in &sims[1..] {
        env.emulator
            .inject(iccid, vec![altered(&[("sid", &earlier_sid)])]);
    }
    env.write_input(&sims);
    let output = env.register(&[]).await;
    let rows = env.last_rows();
    assert_sids_unique(&rows);
    for (iccid, _) in &sims {
        let row = &rows[iccid];
        assert_eq!(row["outcome"], "registered", "{row:?}");
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid, "{row:?}");
    }
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
}

/// When the account itself shows a SIM with the SID another ICCID's row holds, the row is
/// not `already_registered` with it: it is `gave_up`, its message naming both ICCIDs and
/// the SID (and nothing secret).
#[tokio::test(flavor = "multi_thread")]
async fn a_sid_the_account_shows_for_another_rows_sim_is_gave_up_naming_the_clash() {
    let env = TestEnv::new().await;
    let (held_by, held_code) = good_sim(1);
    let (iccid, code) = good_sim(2);
    env.write_input(&[(held_by.clone(), held_code)]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    // The results now say `held_by` has the SID the account gives `iccid` (a row edited by
    // hand, or written by a server that lied).
    let sid = env.emulator.preregister(&iccid);
    let own = env.emulator.sim(&held_by).unwrap().sid;
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    std::fs::write(env.results_path(), text.replace(&own, &sid)).unwrap();

    env.write_input(&[(iccid.clone(), code.clone())]);
    let output = env.register(&[]).await;
    let rows = env.last_rows();
    assert_sids_unique(&rows);
    let row = &rows[&iccid];
    assert_eq!(row["outcome"], "gave_up", "{row:?}");
    assert_eq!(row["sid"], "", "{row:?}");
    let message = &row["error_message"];
    for named in [&iccid, &held_by, &sid] {
        assert!(message.contains(named.as_str()), "{named} in {message:?}");
    }
    let all = std::fs::read_to_string(env.results_path()).unwrap() + &stderr(&output);
    assert!(!all.contains(&code), "no registration code: {all}");
    assert!(!all.contains(TEST_AUTH_TOKEN), "no credential: {all}");
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
}
