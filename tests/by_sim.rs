//! A results row belongs to a SIM, not to an input line: end-to-end runs of the real binary
//! against the emulator where the input is reordered, grown, shrunk, shared between two
//! inputs or rewritten under a run, where a row claims success without proof, where the last
//! row is torn anywhere, where the Fleet named changes, and where compaction must keep the
//! file's mode and clean up after a killed compaction.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};
use supersim_bulk::emulator::fleet_sid_for;

/// (line, iccid, outcome, sid) of every row, in file order.
fn rows_in_order(env: &TestEnv) -> Vec<(u64, String, String, String)> {
    env.results()
        .into_iter()
        .map(|row| {
            (
                row["line"].parse().unwrap(),
                row["iccid"].clone(),
                row["outcome"].clone(),
                row["sid"].clone(),
            )
        })
        .collect()
}

fn sids(env: &TestEnv) -> HashMap<String, String> {
    env.results()
        .into_iter()
        .map(|row| (row["iccid"].clone(), row["sid"].clone()))
        .collect()
}

/// Issue 17 item 1: removing the first row and appending a SIM keeps the removed SIM's row
/// (with its SID, after the input's rows), renumbers the rest to the current input, and no
/// later run sends anything for a SIM already done, whatever the order of the input.
#[tokio::test(flavor = "multi_thread")]
async fn a_sim_removed_from_the_input_keeps_its_row_and_nothing_is_sent_again() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=4).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let registered = sids(&env);

    // The first row removed, a new SIM appended.
    let mut second_input: Vec<_> = sims[1..].to_vec();
    second_input.push(good_sim(5));
    env.write_input(&second_input);
    let second = env.register(&[]).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    assert_eq!(
        env.emulator.stats().create_requests,
        5,
        "only the new SIM was sent"
    );
    let rows = rows_in_order(&env);
    let expected: Vec<(u64, String)> = vec![
        (2, sims[1].0.clone()),
        (3, sims[2].0.clone()),
        (4, sims[3].0.clone()),
        (5, good_sim(5).0),
        (2, sims[0].0.clone()),
    ];
    assert_eq!(
        rows.iter()
            .map(|(line, iccid, _, _)| (*line, iccid.clone()))
            .collect::<Vec<_>>(),
        expected,
        "the input's rows by their current line, then the SIM no longer in it"
    );
    let removed = &rows[4];
    assert_eq!(removed.2, "registered");
    assert_eq!(removed.3, registered[&sims[0].0], "its SID is kept");
    assert!(
        stdout(&second).contains("1 row about a SIM not in this input"),
        "{}",
        stdout(&second)
    );

    // Reordered, with a row inserted at the top: nothing is sent, nothing dropped.
    let mut third_input = vec![good_sim(6)];
    third_input.extend(second_input.iter().rev().cloned());
    env.write_input(&third_input);
    let third = env.register(&[]).await;
    assert_eq!(exit_code(&third), 0, "{}", stderr(&third));
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 6, "only the inserted SIM was sent");
    assert_eq!(stats.commits, 6);
    let after = sids(&env);
    assert_eq!(after.len(), 6, "one row per SIM: {after:?}");
    for (iccid, sid) in &registered {
        assert_eq!(&after[iccid], sid, "{iccid} keeps its SID");
    }
    for (n, (iccid, _)) in third_input.iter().enumerate() {
        let row = env.last_rows()[iccid].clone();
        assert_eq!(
            row["line"],
            (n + 2).to_string(),
            "{iccid} is on its current line"
        );
        assert_ne!(
            row["outcome"], "already_registered",
            "{iccid} was not sent again"
        );
    }

    // And the same input once more: nothing to do.
    let fourth = env.register(&[]).await;
    assert_eq!(exit_code(&fourth), 0, "{}", stderr(&fourth));
    assert_eq!(env.emulator.stats().requests, stats.requests);
    assert!(
        stdout(&fourth).contains("nothing to do"),
        "{}",
        stdout(&fourth)
    );
    assert_eq!(sids(&env), after);
}

/// Issue 17 item 1: two inputs sharing one results file each keep their SIMs' rows.
#[tokio::test(flavor = "multi_thread")]
async fn two_inputs_sharing_one_results_file_keep_each_others_rows() {
    let env = TestEnv::new().await;
    let results = env.dir.path().join("shared.results.csv");
    let results_arg = results.to_str().unwrap();
    let write = |name: &str, sims: &[(String, String)]| {
        let path = env.dir.path().join(name);
        let mut text = String::from("Iccid,RegistrationCode\n");
        for (iccid, code) in sims {
            text.push_str(&format!("{iccid},{code}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let a: Vec<_> = (1..=3).map(good_sim).collect();
    let b: Vec<_> = (11..=13).map(good_sim).collect();
    let a_path = write("a.csv", &a);
    let b_path = write("b.csv", &b);
    let run = |input: std::path::PathBuf| {
        let mut command = env.register_command_for(
            input.as_os_str(),
            &["-o", results_arg],
            &TestEnv::test_credentials(),
        );
        async move { command.output().await.unwrap() }
    };
    for input in [&a_path, &b_path, &a_path, &b_path] {
        let output = run(input.clone()).await;
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    }
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 6, "each SIM was sent once");
    assert_eq!(stats.commits, 6);
    let mut reader = csv::Reader::from_path(&results).unwrap();
    let iccids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    let expected: Vec<String> = b.iter().chain(a.iter()).map(|s| s.0.clone()).collect();
    assert_eq!(iccids, expected, "b's rows, then a's");
}

/// Issue 17 item 1: the documented fix-and-refeed (the `--failed-out` file corrected and fed
/// back with the same results file and `--retry-rejected`) keeps every SIM's row, and the
/// original input then sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn fix_and_refeed_through_the_failed_out_file_keeps_every_sims_row() {
    let env = TestEnv::new().await;
    let mut sims: Vec<_> = (1..=4).map(good_sim).collect();
    let right_code = std::mem::replace(&mut sims[2].1, "WR0NGC0DE1".into());
    env.write_input(&sims);
    let failed_out = env.dir.path().join("fix.csv");
    let failed_arg = failed_out.to_str().unwrap().to_string();
    let first = env.register(&["--failed-out", &failed_arg]).await;
    assert_eq!(exit_code(&first), 1, "{}", stderr(&first));
    let fixed = std::fs::read_to_string(&failed_out)
        .unwrap()
        .replace("WR0NGC0DE1", &right_code);
    std::fs::write(&failed_out, fixed).unwrap();

    let results = env.results_path();
    let mut refeed = env.register_command_for(
        failed_out.as_os_str(),
        &["-o", results.to_str().unwrap(), "--retry-rejected"],
        &TestEnv::test_credentials(),
    );
    let second = refeed.output().await.unwrap();
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    let third = env.register(&[]).await;
    assert_eq!(exit_code(&third), 0, "{}", stderr(&third));

    let stats = env.emulator.stats();
    assert_eq!(
        stats.create_requests, 5,
        "four SIMs, one of them sent twice: {stats:?}"
    );
    let last = env.last_rows();
    assert_eq!(last.len(), 4, "{last:?}");
    for (iccid, _) in &sims {
        assert_eq!(last[iccid]["outcome"], "registered", "{iccid}");
        assert_eq!(last[iccid]["sid"], env.emulator.sim(iccid).unwrap().sid);
    }
}

/// Issue 17 item 2: a fresh run whose input is rewritten in place (same rows, another
/// order) stops before sending a row that no longer matches its plan; no SIM is posted
/// twice and every SIM posted has its row.
#[tokio::test(flavor = "multi_thread")]
async fn an_input_rewritten_under_a_fresh_run_stops_it_before_a_sim_is_sent_twice() {
    let env = TestEnv::with_latency(std::time::Duration::from_millis(2)).await;
    let sims: Vec<_> = (1..=4000).map(good_sim).collect();
    env.write_input(&sims);
    let child = env.spawn_register(&["--concurrency", "4", "--no-adaptive"]);
    common::wait_until("the first rows are written", || {
        env.results_rows_so_far() >= 10
    })
    .await;
    let reversed: Vec<_> = sims.iter().rev().cloned().collect();
    env.write_input(&reversed);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the input changed while the run was going"),
        "{}",
        stderr(&output)
    );
    let stats = env.emulator.stats();
    assert_eq!(
        stats.create_requests, stats.commits,
        "no SIM was posted twice (a second post answers 83003 without a commit)"
    );
    assert!(stats.commits < 4000, "the run stopped early");
    let rows = env.results();
    assert_eq!(
        rows.len() as u64,
        stats.commits,
        "every SIM posted has its row"
    );
    for row in &rows {
        assert_eq!(row["outcome"], "registered", "{row:?}");
    }
}

/// Issue 17 item 5: a hand-edited `registered` row without a SID is looked up on a plain
/// rerun (and the SID recorded), and one whose SIM is not on the account is registered.
#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_registration_without_a_sid_is_looked_up_on_a_plain_rerun() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let registered = sids(&env);

    // SIM 2's SID erased by hand; SIM 4, never registered, claimed `already_registered`.
    let (never, never_code) = good_sim(4);
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let text = text.replace(&registered[&sims[1].0], "")
        + &format!(
            "5,{never},already_registered,,,,,,,1,2026-01-01T00:00:00Z,,,,{},\n",
            supersim_bulk::emulator::TEST_ACCOUNT_SID
        );
    std::fs::write(env.results_path(), text).unwrap();
    let mut input = sims.clone();
    input.push((never.clone(), never_code));
    env.write_input(&input);

    let before = env.emulator.stats();
    let rerun = env.register(&[]).await;
    assert_eq!(exit_code(&rerun), 0, "{}", stderr(&rerun));
    let after = env.emulator.stats();
    assert!(
        after.lookup_requests > before.lookup_requests,
        "the SIM without a SID was looked up"
    );
    let last = env.last_rows();
    assert_eq!(last[&sims[1].0]["sid"], registered[&sims[1].0]);
    assert_eq!(env.emulator.commits(&sims[1].0), 1, "not registered twice");
    assert_eq!(
        env.emulator.commits(&never),
        1,
        "the unproven SIM was registered"
    );
    assert_eq!(last[&never]["sid"], env.emulator.sim(&never).unwrap().sid);
}

/// Issue 17 item 6: a row cut inside its last column (`account_sid`) is torn: it is cut
/// off and its SIM found again, not read as a row of another account.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_torn_inside_its_last_column_is_cut_off_and_its_sim_found_again() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let registered = sids(&env);

    let len = std::fs::metadata(env.results_path()).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(env.results_path())
        .unwrap();
    file.set_len(len - 15).unwrap();
    drop(file);

    let rerun = env.register(&[]).await;
    assert_eq!(exit_code(&rerun), 0, "{}", stderr(&rerun));
    assert!(
        stderr(&rerun).contains("partly written row"),
        "{}",
        stderr(&rerun)
    );
    assert_eq!(
        sids(&env),
        registered,
        "every SIM has its row and SID again"
    );
    for row in env.results() {
        assert_eq!(
            row["account_sid"],
            supersim_bulk::emulator::TEST_ACCOUNT_SID
        );
    }
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

/// Issue 17 item 8: a rerun naming another Fleet by name moves the SIMs; a rerun naming
/// the same one again sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_fleet_name_is_applied() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&["--fleet", "field-devices"]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    for (iccid, _) in &sims {
        let sim = env.emulator.sim(iccid).unwrap();
        assert_eq!(sim.fleet_sid.unwrap(), fleet_sid_for("field-devices"));
    }

    let moved = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&moved), 0, "{}", stderr(&moved));
    for (iccid, _) in &sims {
        let sim = env.emulator.sim(iccid).unwrap();
        assert_eq!(
            sim.fleet_sid.unwrap(),
            fleet_sid_for("bench"),
            "{iccid} was moved"
        );
        assert_eq!(env.last_rows()[iccid]["fleet_sid"], fleet_sid_for("bench"));
    }

    let before = env.emulator.stats().requests;
    let again = env.register(&["--fleet", "bench"]).await;
    assert_eq!(exit_code(&again), 0, "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(env.emulator.stats().requests, before, "nothing was sent");
}

/// Issue 18 item 6: compaction keeps the results file's mode, and a temporary file left by
/// a killed compaction is removed by the next run.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_the_files_mode_and_removes_a_killed_compactions_leftover() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    std::fs::set_permissions(env.results_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let leftover = env.dir.path().join(".sims.results.csv.compacting.4194300");
    std::fs::write(&leftover, std::fs::read(env.results_path()).unwrap()).unwrap();

    // Reordered with a new SIM first: the file is rewritten.
    let mut input = vec![good_sim(4)];
    input.extend(sims.iter().rev().cloned());
    env.write_input(&input);
    let second = env.register(&[]).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));
    assert_eq!(
        rows_in_order(&env)[0].1,
        good_sim(4).0,
        "the file was rewritten in the new order"
    );
    let mode = std::fs::metadata(env.results_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the mode survives compaction");
    assert!(
        !leftover.exists(),
        "the killed compaction's file was removed"
    );
}

/// Issue 20 item 4: rows finish out of order (many in flight, jittered latency, the first
/// failing row held up by a fault), yet the failed-out file lists them in input line order,
/// and it is owner-only: it holds registration codes.
#[tokio::test(flavor = "multi_thread")]
async fn the_failed_out_file_is_in_line_order_and_owner_only() {
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        latency: std::time::Duration::from_millis(20),
        latency_jitter: 0.9,
        seed: 20,
        ..Default::default()
    })
    .await;
    // Every third SIM has a wrong code; the first of them meets a stall before its refusal.
    let sims: Vec<(String, String)> = (0..30)
        .map(|n| {
            let (iccid, code) = good_sim(n);
            if n % 3 == 0 {
                (iccid, common::wrong_code(&code))
            } else {
                (iccid, code)
            }
        })
        .collect();
    env.emulator.inject(
        &sims[0].0,
        vec![supersim_bulk::emulator::Fault::StallBeforeCommit(
            std::time::Duration::from_millis(400),
        )],
    );
    env.write_input(&sims);
    let fix = env.dir.path().join("fix.csv");
    let output = env
        .register(&[
            "--failed-out",
            fix.to_str().unwrap(),
            "--no-adaptive",
            "--concurrency",
            "8",
        ])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let rows = common::csv_rows(&std::fs::read(&fix).unwrap());
    let lines: Vec<u64> = rows
        .iter()
        .map(|row| {
            let reason = &row["reason"];
            reason["line ".len()..reason.find(':').unwrap()]
                .parse()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..30).filter(|n| n % 3 == 0).map(|n| n + 2).collect();
    assert_eq!(lines, expected, "{rows:?}");
    let mode = std::fs::metadata(&fix).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let mode = std::fs::metadata(env.results_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
