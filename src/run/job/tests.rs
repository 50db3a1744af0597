//! Tests of `job`.

use super::*;
use crate::emulator::{Emulator, EmulatorConfig, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};
use crate::input::InputRow;
use crate::results::Outcome;
use crate::run::lock::LockError;
use crate::run::resume::OnboardConfig;
use crate::run::triage::{Work, triage};

fn input(line: u64, iccid: &str, code: &str) -> InputRow {
    InputRow::for_test(line, iccid, code)
}

fn kind(work: &Work) -> String {
    match work {
        Work::Send(job, _, _) => format!("send {}", job.row.iccid),
        Work::Report(row, _, _) => format!("{} {}", row.outcome, row.iccid),
        Work::Skip(outcome, _) => format!("skip {outcome}"),
    }
}

/// A client of `emulator` with its test account's credentials.
fn emulator_client(emulator: &Emulator, timeout: Duration) -> Client {
    Client::new(
        &emulator.base_url(),
        crate::secret::Credentials {
            username: TEST_ACCOUNT_SID.into(),
            password: TEST_AUTH_TOKEN.into(),
        },
        timeout,
    )
    .unwrap()
}

/// A run of `input` against the emulator's test account with these limits, every other
/// setting at its default.
fn emulator_run(
    input: std::path::PathBuf,
    output: std::path::PathBuf,
    limits: crate::api::gate::GateLimits,
    timeout: Duration,
) -> RegisterConfig {
    RegisterConfig {
        account_sid: Some(TEST_ACCOUNT_SID.into()),
        input: crate::input::InputSource::File(input),
        output,
        target: crate::run::config::Target::Emulator {
            credentials: crate::secret::Credentials {
                username: TEST_ACCOUNT_SID.into(),
                password: TEST_AUTH_TOKEN.into(),
            },
            state: None,
            account: Box::default(),
        },
        limits,
        timeout,
        retry_rejected: false,
        progress_interval: Duration::from_secs(60),
        grace: Duration::from_secs(1),
        summary_json: None,
        report: None,
        metrics_file: None,
        max_failures: None,
        onboard: OnboardConfig::default(),
        read: crate::input::ReadOptions::default(),
        strict: false,
        failed_out: None,
    }
}

/// The caller writes the summary JSON after the run and before dropping the lock it
/// hands back; this checks that lock is still held when the run has ended, so no other
/// run on the results file can start until the summary is in place.
#[tokio::test]
async fn the_run_hands_back_its_lock_still_held() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sims.csv");
    // Rows that fail the checks: the run sends nothing but the preflight, which proves the
    // account its rows carry.
    std::fs::write(&input, "Iccid,RegistrationCode\n12345,H3LL0W0RLD\n").unwrap();
    let output = dir.path().join("sims.results.csv");
    let limits = crate::api::gate::GateLimits {
        rate: 10.0,
        max_attempts: 1,
        backoff: crate::api::retry::Backoff::default(),
        concurrency: 1,
        adaptive: false,
        max_share: 1.0,
    };
    let config = emulator_run(input, output.clone(), limits, Duration::from_secs(1));
    let emulator = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = emulator_client(&emulator, Duration::from_secs(1));
    let ended = run(config, client, CancellationToken::new()).await;
    let summary = ended.result.expect("the run ends normally");
    assert_eq!(summary.this_run.get(Outcome::Invalid), 1);
    let lock = ended.lock.expect("the lock is handed back");
    assert!(matches!(
        RunLock::acquire(&std::fs::canonicalize(&output).unwrap()),
        Err(LockError::Busy { .. })
    ));
    drop(lock);
    RunLock::acquire(&std::fs::canonicalize(&output).unwrap()).expect("free once dropped");
}

/// The report draws the timeline the run hands back: its totals must be the summary's, so
/// no row, request or 429 is lost between samples (the last one included).
#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_adds_up_to_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sims.csv");
    let mut text = String::from("Iccid,RegistrationCode\n");
    for n in 0..300u32 {
        let iccid = format!("898830700000{n:08}");
        let code = crate::emulator::registration_code_for(&iccid);
        // Every 25th row refused (83002), and one invalid row.
        let code = if n % 25 == 3 {
            let first = if code.starts_with('Z') { 'Y' } else { 'Z' };
            format!("{first}{}", &code[1..])
        } else {
            code
        };
        text.push_str(&format!("{iccid},{code}\n"));
    }
    text.push_str("12345,H3LL0W0RLD\n");
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("sims.results.csv");
    let limits = crate::api::gate::GateLimits {
        rate: f64::INFINITY,
        max_attempts: 6,
        backoff: crate::api::retry::Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(10),
        },
        concurrency: 16,
        adaptive: true,
        max_share: 1.0,
    };
    let config = emulator_run(input, output, limits, Duration::from_secs(5));
    // A limit of 3 in flight: a run of up to 16 meets 429s.
    let emulator = Emulator::start(
        EmulatorConfig {
            latency: Duration::from_millis(5),
            max_concurrent: Some(3),
            ..EmulatorConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = emulator_client(&emulator, Duration::from_secs(5));
    let ended = run(config, client, CancellationToken::new()).await;
    let summary = ended.result.expect("the run ends normally");
    let totals = ended.timeline.expect("a timeline").totals();
    assert!(summary.throttled > 0, "429s were met");
    assert!(summary.this_run.get(Outcome::Rejected) >= 12);
    assert_eq!(summary.this_run.get(Outcome::Invalid), 1);
    for outcome in Outcome::ALL {
        assert_eq!(
            totals.rows_of(outcome),
            summary.this_run.get(outcome),
            "{outcome:?}"
        );
    }
    assert_eq!(totals.requests, summary.requests);
    assert_eq!(totals.throttled, summary.throttled);
    assert!(totals.answers() > 0 && totals.answers() <= summary.requests);
    assert!(totals.window().is_some());
}

#[test]
fn triage_checks_then_dedupes_then_resumes() {
    let screen = Screen::new(false);
    let onboard = OnboardConfig::default();
    let rows = [
        input(2, "8988 3070 0001 2345 6789", "H3LL0W0RLD"),
        input(3, "89883070000123456789", "H3LL0W0RLD"),
        input(4, "12345", "H3LL0W0RLD"),
        input(5, "89883070000123456789", "short"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Plan::build_from_rows(
        rows.iter().cloned().map(Ok),
        screen,
        crate::results::EarlierRows::none(),
        dir.path(),
        None,
    )
    .unwrap();
    let mut decide = |line: u64, iccid, code| {
        let facts = plan.at(line).unwrap();
        kind(&triage(
            input(line, iccid, code),
            &facts,
            false,
            (&onboard, &ResolvedFleets::default()),
            &screen,
        ))
    };
    assert_eq!(
        decide(2, "8988 3070 0001 2345 6789", "H3LL0W0RLD"),
        "send 89883070000123456789"
    );
    assert_eq!(
        decide(3, "89883070000123456789", "H3LL0W0RLD"),
        "duplicate 89883070000123456789"
    );
    assert_eq!(decide(4, "12345", "H3LL0W0RLD"), "invalid 12345");
    assert_eq!(
        decide(5, "89883070000123456789", "short"),
        "invalid 89883070000123456789",
        "invalid wins over duplicate"
    );
}
