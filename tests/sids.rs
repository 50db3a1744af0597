//! End-to-end runs against servers that name SIDs the account does not back: an 83003 whose
//! message names another SIM's SID, and successes that show one SID for many ICCIDs. A row
//! says `registered` or `already_registered` only with the SID the account confirms for its
//! ICCID, and no two rows ever hold the same SID for different ICCIDs, whether the other
//! row was written by this run or kept from an earlier one.

mod common;

use std::collections::HashMap;

use common::{TestEnv, exit_code, good_sim, stderr};
use supersim_bulk::emulator::{EmulatorConfig, Fault, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};

/// A SID no SIM of the emulator's account has.
const STRANGER_SID: &str = "HSeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// An 83003 whose message names `sid`, as a server free to word it may.
fn already_registered_as(sid: &str) -> Fault {
    Fault::TwilioErrorSaying {
        status: 409,
        code: 83003,
        message: format!("The Super SIM {sid} is already registered to your account"),
    }
}

/// A success whose resource shows this `sid`, whatever the SIM's own.
fn success_showing_sid(sid: &str) -> Fault {
    Fault::AlteredAnswer {
        fields: vec![("sid".to_string(), sid.to_string())],
    }
}

/// No two rows hold the same SID for different ICCIDs.
fn assert_sids_unique(rows: &HashMap<String, HashMap<String, String>>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (iccid, row) in rows {
        let sid = row["sid"].as_str();
        if sid.is_empty() {
            continue;
        }
        if let Some(other) = seen.insert(sid, iccid) {
            panic!("{other} and {iccid} both hold {sid}: {rows:?}");
        }
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
