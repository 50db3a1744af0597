//! `supersim-bulk reconcile` against the emulator over real loopback HTTP: SIMs registered
//! with the real binary, then changed behind the results file's back.

mod common;

use std::io::Write as _;

use common::{TestEnv, exit_code, good_sim, iccid, stderr, stdout};

/// Registers SIMs 0..n (and one with a wrong code, rejected) and returns the env.
async fn registered(n: u32) -> TestEnv {
    let env = TestEnv::new().await;
    let mut sims: Vec<_> = (0..n).map(good_sim).collect();
    sims.push((iccid(900), "WR0NGC0DE1".to_string()));
    env.write_input(&sims);
    let output = env.register(&["--fleet", "field-devices"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    env
}

fn line_of<'a>(text: &'a str, iccid: &str) -> &'a str {
    text.lines()
        .find(|line| line.contains(iccid))
        .unwrap_or_else(|| panic!("no line for {iccid} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_run_matches_across_pages() {
    let env = registered(11).await;
    let output = env
        .account_command(
            "reconcile",
            &["sims.results.csv", "--page-size", "3", "--all"],
        )
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        text.contains("12 SIMs in the file, 11 on the account"),
        "{text}"
    );
    assert!(text.contains("  match           11\n"), "{text}");
    assert!(text.contains("  not registered  1\n"), "{text}");
    assert!(text.contains("  extra           0\n"), "{text}");
    assert!(text.ends_with("the account matches the file\n"), "{text}");
    // Only differences are listed unless --matches.
    assert!(!text.contains("89883070000000000001"), "{text}");
    let output = env
        .account_command("reconcile", &["sims.results.csv", "--matches"])
        .await;
    let text = stdout(&output);
    assert!(line_of(&text, &iccid(1)).starts_with("match "), "{text}");
    assert!(
        line_of(&text, &iccid(900)).starts_with("not-registered "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_difference_is_listed_and_counted() {
    let env = registered(8).await;
    // Status changed in the Console; moved to another Fleet; a SIM the file never saw; the
    // rejected SIM registered since by someone else; a row for a SIM the account lacks.
    env.emulator
        .set_status(&iccid(1), "active", Some("field-devices"));
    env.emulator.set_status(&iccid(2), "new", Some("bench"));
    let extra_sid = env.emulator.preregister(&iccid(500));
    env.emulator.preregister(&iccid(900));
    let mut results = std::fs::OpenOptions::new()
        .append(true)
        .open(env.results_path())
        .unwrap();
    writeln!(
        results,
        "77,{},registered,HS0123456789abcdef0123456789abcdef,new,,,,201,1,2026-01-01T00:00:00Z,,,,,",
        iccid(777)
    )
    .unwrap();
    drop(results);

    let output = env
        .account_command("reconcile", &["sims.results.csv", "--page-size", "2"])
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{text}{}", stderr(&output));
    let status = line_of(&text, &iccid(1));
    assert!(status.starts_with("differs "), "{status}");
    assert!(
        status.contains("status: file new, account active"),
        "{status}"
    );
    let fleet = line_of(&text, &iccid(2));
    assert!(fleet.contains("fleet_sid: file HF"), "{fleet}");
    assert!(
        fleet.contains(&supersim_bulk::emulator::fleet_sid_for("bench")),
        "{fleet}"
    );
    let rejected = line_of(&text, &iccid(900));
    assert!(rejected.starts_with("differs "), "{rejected}");
    assert!(
        rejected.contains("the file says rejected; the account has it"),
        "{rejected}"
    );
    let missing = line_of(&text, &iccid(777));
    assert!(missing.starts_with("missing "), "{missing}");
    assert!(missing.contains("line 77"), "{missing}");
    // Without --all, a SIM only on the account is not looked for.
    assert!(!text.contains(&iccid(500)), "{text}");
    assert!(text.contains("  match           6\n"), "{text}");
    assert!(text.contains("  differ          3\n"), "{text}");
    assert!(text.contains("  missing         1\n"), "{text}");
    assert!(
        text.contains("  extra           not checked (pass --all)\n"),
        "{text}"
    );

    let output = env
        .account_command("reconcile", &["sims.results.csv", "--all"])
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1);
    let extra = line_of(&text, &iccid(500));
    assert!(extra.starts_with("extra "), "{extra}");
    assert!(extra.contains(&extra_sid), "{extra}");
    assert!(text.contains("  extra           1\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_row_of_an_iccid_wins_as_on_resume() {
    let env = registered(3).await;
    env.emulator
        .set_status(&iccid(0), "ready", Some("field-devices"));
    // A later run recorded the change: its row comes after the first.
    let sim = env.emulator.sim(&iccid(0)).unwrap();
    let mut results = std::fs::OpenOptions::new()
        .append(true)
        .open(env.results_path())
        .unwrap();
    writeln!(
        results,
        "2,{},already_registered,{},ready,{},,,,1,2026-01-01T00:00:00Z,,,,,",
        iccid(0),
        sim.sid,
        sim.fleet_sid.unwrap()
    )
    .unwrap();
    drop(results);
    let output = env
        .account_command("reconcile", &["sims.results.csv"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_is_compared_field_by_field_names_included() {
    let env = registered(4).await;
    let output = env
        .account_command("export", &["-o", "before.csv", "--page-size", "3"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let output = env
        .account_command("reconcile", &["before.csv", "--all"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stdout(&output));

    // The snapshot says a SIM had a name the account does not give it.
    let path = env.dir.path().join("before.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let named: String = text
        .lines()
        .map(|line| {
            if line.contains(&iccid(3)) {
                let mut fields: Vec<&str> = line.split(',').collect();
                fields[4] = "pump-3";
                fields.join(",")
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(&path, named).unwrap();
    let output = env.account_command("reconcile", &["before.csv"]).await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{text}");
    assert!(
        line_of(&text, &iccid(3)).contains("unique_name: file pump-3, account (none)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_results_file_is_a_setup_error() {
    let env = registered(1).await;
    let output = env.account_command("reconcile", &["sims.csv"]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("neither a results file"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
    let output = env.account_command("reconcile", &["nowhere.csv"]).await;
    assert_eq!(exit_code(&output), 2);
    // A file is checked before the account is asked anything.
    let lookups = env.emulator.stats().lookup_requests;
    let output = env.account_command("reconcile", &["sims.csv"]).await;
    assert_eq!(exit_code(&output), 2);
    assert_eq!(env.emulator.stats().lookup_requests, lookups);
}

/// More rows than one in-memory chunk of the external sort (1 MB of 16-byte records), so
/// both the spilled merge and last-row-wins across runs are exercised.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_larger_than_one_sort_chunk_is_merged_correctly() {
    let env = TestEnv::new().await;
    let on_account = [5u32, 40_000, 69_999];
    let sids: Vec<String> = on_account
        .iter()
        .map(|&n| env.emulator.preregister(&iccid(n)))
        .collect();
    let mut text = String::from(
        "line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at,warning\n",
    );
    for n in 0..70_000u32 {
        let sid = match on_account.iter().position(|&m| m == n) {
            // Iccid 5's first row is wrong; a later row corrects it.
            Some(0) => "HS00000000000000000000000000000bad".to_string(),
            Some(i) => sids[i].clone(),
            None => format!("HS{n:032x}"),
        };
        text.push_str(&format!(
            "{},{},registered,{sid},new,,,,201,1,2026-01-01T00:00:00Z,\n",
            n + 2,
            iccid(n)
        ));
    }
    text.push_str(&format!(
        "7,{},already_registered,{},new,,,,409,1,2026-01-02T00:00:00Z,\n",
        iccid(5),
        sids[0]
    ));
    std::fs::write(env.results_path(), text).unwrap();

    let output = env
        .account_command("reconcile", &["sims.results.csv", "--all"])
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    assert!(
        text.contains("70000 SIMs in the file, 3 on the account"),
        "{}",
        &text[text.len() - 400..]
    );
    assert!(text.contains("  match           3\n"));
    assert!(text.contains("  missing         69997\n"));
    assert!(text.contains("  extra           0\n"));
    // In ICCID order.
    let iccids: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("missing "))
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert!(iccids.windows(2).all(|w| w[0] < w[1]));
}

const RESULTS_HEADER: &str = "line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at,warning,unique_name,update_requested,account_sid\n";

/// A results file of `n` SIMs registered on `account` (none of them on the emulator).
fn results_on(account: &str, n: u32) -> String {
    let mut text = String::from(RESULTS_HEADER);
    for k in 0..n {
        text.push_str(&format!(
            "{},{},registered,HS{k:032x},new,,,,201,1,2026-01-01T00:00:00Z,,,,{account}\n",
            k + 2,
            iccid(k)
        ));
    }
    text
}

/// `reconcile | head -1`: far more report than a pipe holds, its reader gone after one
/// line. The comparison finished, so its exit code (1: SIMs missing) still holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_report_quietly_and_keeps_the_comparisons_exit_code() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let env = TestEnv::new().await;
    let account = supersim_bulk::emulator::TEST_ACCOUNT_SID;
    std::fs::write(env.results_path(), results_on(account, 3000)).unwrap();
    let mut child = common::binary_command()
        .args(["reconcile", "sims.results.csv", "--rate", "1000"])
        .args(["--base-url", &env.emulator.base_url()])
        .current_dir(env.dir.path())
        .envs(TestEnv::test_credentials())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .next_line()
            .await
            .unwrap()
            .unwrap()
            .starts_with("missing "),
        "the report starts with a missing SIM"
    );
    drop(lines);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("cannot write"),
        "{}",
        stderr(&output)
    );
}

/// A results file (or an export) written against another account says nothing true about
/// this one: every SIM would be reported missing. It is refused as register refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_another_account_is_refused_naming_both_accounts() {
    let env = TestEnv::new().await;
    env.emulator.preregister(&iccid(0));
    let this = supersim_bulk::emulator::TEST_ACCOUNT_SID;
    let other = "ACffffffffffffffffffffffffffffffff";
    std::fs::write(env.results_path(), results_on(other, 3)).unwrap();
    let lists = env.emulator.stats().list_requests;
    let output = env
        .account_command("reconcile", &["sims.results.csv"])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains(other) && err.contains(this), "{err}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    // Refused before the account is listed.
    assert_eq!(env.emulator.stats().list_requests, lists);

    let export = format!(
        "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\n\
         HS{:032x},{},new,,,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z,{other}\n",
        1,
        iccid(0)
    );
    std::fs::write(env.dir.path().join("account.csv"), export).unwrap();
    let output = env.account_command("reconcile", &["account.csv"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains(other) && err.contains(this), "{err}");
}

/// A rehearsal's results (the emulator's account) reconciled against a real account.
#[tokio::test(flavor = "multi_thread")]
async fn an_emulator_file_against_a_real_account_is_refused() {
    let real = "AC1234567890abcdef1234567890abcdef";
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        account_sid: real.to_string(),
        credentials: vec![(real.to_string(), "real-token".to_string())],
        ..Default::default()
    })
    .await;
    let rehearsal = supersim_bulk::emulator::TEST_ACCOUNT_SID;
    std::fs::write(env.results_path(), results_on(rehearsal, 2)).unwrap();
    let output = common::binary_command()
        .args(["reconcile", "sims.results.csv", "--rate", "1000"])
        .args(["--base-url", &env.emulator.base_url()])
        .current_dir(env.dir.path())
        .env("TWILIO_ACCOUNT_SID", real)
        .env("TWILIO_AUTH_TOKEN", "real-token")
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains(real) && err.contains(rehearsal), "{err}");
    assert!(err.contains("emulator"), "{err}");
    assert!(!err.contains("real-token"), "{err}");
}

/// A row `gave_up` with a SID (its update, or --wait, ran out of time) is a registered SIM:
/// the run resumes it at the update step, so reconcile must not call it `differs`.
#[tokio::test(flavor = "multi_thread")]
async fn a_gave_up_row_with_a_sid_is_a_registered_sim() {
    let env = registered(2).await;
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let row = line_of(&text, &iccid(1)).to_string();
    assert!(row.contains(",registered,HS"), "{row}");
    let gave_up = row.replacen(",registered,", ",gave_up,", 1);
    std::fs::write(env.results_path(), text.replace(&row, &gave_up)).unwrap();
    let output = env
        .account_command("reconcile", &["sims.results.csv", "--matches"])
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 0, "{text}{}", stderr(&output));
    assert!(line_of(&text, &iccid(1)).starts_with("match "), "{text}");

    // And when the account lacks it, it is missing, not "not registered".
    let sid = gave_up.split(',').nth(3).unwrap().to_string();
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let moved = gave_up.replace(&iccid(1), &iccid(300));
    std::fs::write(env.results_path(), text.replace(&gave_up, &moved)).unwrap();
    let output = env
        .account_command("reconcile", &["sims.results.csv"])
        .await;
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{text}");
    assert!(
        line_of(&text, &iccid(300)).starts_with("missing "),
        "{text}"
    );
    assert!(text.contains(&sid), "{text}");
}

/// With an API key the credentials do not name the account: it is learned from the
/// account's Fleets (no SIM on it yet) before the file is judged.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_api_key_the_account_is_learned_before_the_file_is_judged() {
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        credentials: vec![("SKkey".to_string(), "key-secret".to_string())],
        ..Default::default()
    })
    .await;
    let other = "ACffffffffffffffffffffffffffffffff";
    std::fs::write(env.results_path(), results_on(other, 2)).unwrap();
    let output = common::binary_command()
        .args(["reconcile", "sims.results.csv", "--rate", "1000"])
        .args(["--base-url", &env.emulator.base_url()])
        .current_dir(env.dir.path())
        .env("TWILIO_API_KEY", "SKkey")
        .env("TWILIO_API_SECRET", "key-secret")
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(
        err.contains(other) && err.contains(supersim_bulk::emulator::TEST_ACCOUNT_SID),
        "{err}"
    );
    assert!(!err.contains("key-secret"), "{err}");
}

/// On a shared account another app's SIMs sit in other Fleets: `--fleet` reports as extra
/// only the unmentioned SIMs of that Fleet, and still compares every SIM of the file.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_limits_extra_to_the_sims_of_that_fleet() {
    let env = registered(3).await;
    // Another app's SIMs, in the bench Fleet.
    for n in 500..504 {
        env.emulator.preregister(&iccid(n));
        env.emulator.set_status(&iccid(n), "active", Some("bench"));
    }
    let all = env
        .account_command("reconcile", &["sims.results.csv", "--all"])
        .await;
    assert_eq!(exit_code(&all), 1, "{}", stdout(&all));
    assert!(
        stdout(&all).contains("  extra           4\n"),
        "{}",
        stdout(&all)
    );

    let fleet = env
        .account_command(
            "reconcile",
            &["sims.results.csv", "--fleet", "field-devices"],
        )
        .await;
    let text = stdout(&fleet);
    assert_eq!(exit_code(&fleet), 0, "{text}{}", stderr(&fleet));
    assert!(
        text.contains("  extra           0 (in Fleet field-devices)\n"),
        "{text}"
    );
    assert!(!text.contains(&iccid(500)), "{text}");

    // One of this Fleet's SIMs the file does not mention is extra; a SIM of the file
    // moved to another Fleet is still compared (differs, not missing).
    env.emulator.preregister(&iccid(600));
    env.emulator
        .set_status(&iccid(600), "new", Some("field-devices"));
    env.emulator.set_status(&iccid(1), "new", Some("bench"));
    let fleet = env
        .account_command(
            "reconcile",
            &["sims.results.csv", "--fleet", "field-devices", "--all"],
        )
        .await;
    let text = stdout(&fleet);
    assert_eq!(exit_code(&fleet), 1, "{text}{}", stderr(&fleet));
    assert!(line_of(&text, &iccid(600)).starts_with("extra "), "{text}");
    assert!(line_of(&text, &iccid(1)).starts_with("differs "), "{text}");
    assert!(!text.contains(&iccid(501)), "{text}");
    assert!(
        text.contains("  extra           1 (in Fleet field-devices)\n"),
        "{text}"
    );

    // A Fleet the account does not have is a set-up mistake, not an empty Fleet.
    let typo = env
        .account_command(
            "reconcile",
            &["sims.results.csv", "--fleet", "feild-devices"],
        )
        .await;
    assert_eq!(exit_code(&typo), 2, "{}", stdout(&typo));
    assert!(
        stderr(&typo).contains("Fleet 'feild-devices' is not on this account"),
        "{}",
        stderr(&typo)
    );
    assert!(stderr(&typo).contains("field-devices"), "{}", stderr(&typo));
}

/// `--format json` writes JSON Lines: one object per SIM listed, then one summary object;
/// jq reads it as it comes. No registration code appears in it.
#[tokio::test(flavor = "multi_thread")]
async fn json_format_is_one_object_per_line_then_the_summary() {
    let env = registered(4).await;
    env.emulator
        .set_status(&iccid(2), "active", Some("field-devices"));
    env.emulator.preregister(&iccid(700));
    let output = env
        .account_command(
            "reconcile",
            &["sims.results.csv", "--all", "--matches", "--format", "json"],
        )
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let text = stdout(&output);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let (summary, sims) = objects.split_last().unwrap();
    assert_eq!(sims.len(), 6, "{text}");
    let by_iccid = |n: u32| {
        sims.iter()
            .find(|sim| sim["iccid"] == iccid(n).as_str())
            .unwrap_or_else(|| panic!("{text}"))
    };
    assert_eq!(by_iccid(0)["verdict"], "match");
    assert_eq!(by_iccid(0)["line"], 2);
    assert!(by_iccid(0)["sid"].as_str().unwrap().starts_with("HS"));
    assert_eq!(by_iccid(2)["verdict"], "differs");
    assert!(
        by_iccid(2)["message"]
            .as_str()
            .unwrap()
            .contains("status: file new, account active"),
        "{text}"
    );
    assert_eq!(by_iccid(900)["verdict"], "not-registered");
    assert_eq!(by_iccid(700)["verdict"], "extra");
    assert_eq!(by_iccid(700)["line"], serde_json::Value::Null);
    let summary = &summary["summary"];
    assert_eq!(summary["file"], "sims.results.csv", "{text}");
    assert_eq!(summary["file_sims"], 5);
    assert_eq!(summary["account_sims"], 5);
    assert_eq!(summary["match"], 3);
    assert_eq!(summary["differ"], 1);
    assert_eq!(summary["missing"], 0);
    assert_eq!(summary["not_registered"], 1);
    assert_eq!(summary["extra"], 1);
    assert_eq!(summary["matches"], false);
    assert_eq!(summary["exit_code"], 1);
    for n in 0..4 {
        let code = supersim_bulk::emulator::registration_code_for(&iccid(n));
        assert!(!text.contains(&code), "a registration code in {text}");
    }
    // Without --all, extra is not checked: null, not 0.
    let output = env
        .account_command("reconcile", &["sims.results.csv", "--format", "json"])
        .await;
    let last: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["extra"], serde_json::Value::Null);
}
