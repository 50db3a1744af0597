//! The small message fixes of issue 13: each says what is true and names the right fix.

mod common;

use common::{TestEnv, binary_command, exit_code, good_sim, iccid, stderr, stdout, summary_json};
use supersim_bulk::emulator::Fault;

async fn validate(env: &TestEnv, text: &str, extra: &[&str]) -> std::process::Output {
    env.write_csv(text);
    binary_command()
        .arg("validate")
        .arg(env.input_path())
        .args(extra)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn validates_closing_count_agrees_with_the_lines_it_lists() {
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(1);
    let text = format!(
        "Iccid,RegistrationCode\n{a},{code_a}\n12345,{code_a}\n1234,{code_a}\n123,{code_a}\n{a},{code_a}\n"
    );
    let output = validate(&env, &text, &[]).await;
    let report = stdout(&output);
    assert_eq!(exit_code(&output), 1);
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("line ") && !l.contains("warning:"))
            .count(),
        4,
        "{report}"
    );
    assert!(
        report.ends_with(
            "4 rows would not be sent (3 invalid, 1 duplicate); fix the invalid rows and validate again\n"
        ),
        "{report}"
    );
    let output = validate(
        &env,
        &format!("Iccid,RegistrationCode\n{a},{code_a}\n{a},{code_a}\n"),
        &[],
    )
    .await;
    assert_eq!(exit_code(&output), 0);
    assert!(
        stdout(&output).contains("every row would be sent, 1 duplicate aside"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn a_results_file_given_as_input_is_named_as_one() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    let output = binary_command()
        .arg("validate")
        .arg(env.results_path())
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("this is a supersim-bulk results file, not a SIM list"),
        "{err}"
    );
    assert!(err.contains("pass the input CSV"), "{err}");
    assert!(!err.contains("no column named like"), "{err}");
}

#[tokio::test]
async fn swapped_headerless_columns_are_named_without_advising_no_header_or_printing_codes() {
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(1);
    let (b, code_b) = good_sim(2);
    let output = validate(&env, &format!("{code_a},{a}\n{code_b},{b}\n"), &[]).await;
    assert_eq!(exit_code(&output), 2);
    let err = stderr(&output);
    assert!(err.contains("columns swapped"), "{err}");
    assert!(err.contains("put the ICCID first"), "{err}");
    assert!(!err.contains("--no-header"), "{err}");
    assert!(!err.contains(&code_a) && !err.contains(&code_b), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_83003_is_logged_as_already_on_the_account_not_as_a_failure() {
    let env = TestEnv::new().await;
    env.emulator.preregister(&iccid(1));
    env.write_input(&[good_sim(1)]);
    let output = env.register(&["-v"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("already on the account (83003)"), "{err}");
    assert!(!err.contains("create failed"), "{err}");
}

#[tokio::test]
async fn a_fleet_name_with_a_typo_gets_a_did_you_mean() {
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(1);
    let (b, code_b) = good_sim(2);
    env.write_input(&[(a.clone(), code_a.clone())]);
    let output = env.register(&["--fleet", "feild-devices"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Did you mean --fleet field-devices?"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().create_requests, 0);
    // A `fleet` cell with a typo makes its row invalid, with the same guess.
    env.write_csv(&format!(
        "Iccid,RegistrationCode,fleet\n{a},{code_a},bench\n{b},{code_b},bnech\n"
    ));
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let rows = env.last_rows();
    assert_eq!(rows[&b]["outcome"], "invalid");
    assert!(
        rows[&b]["error_message"].contains("did you mean 'bench'?"),
        "{:?}",
        rows[&b]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_refused_with_a_403_are_reported_with_that_status() {
    let env = TestEnv::new().await;
    env.emulator.inject(
        &iccid(1),
        vec![Fault::TwilioError {
            status: 403,
            code: 20003,
        }],
    );
    env.write_input(&[good_sim(1)]);
    let summary = env.dir.path().join("summary.json");
    let output = env
        .register(&["--summary-json", summary.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("the API refused the credentials (HTTP 403, Twilio error 20003)"),
        "{err}"
    );
    assert!(!err.contains("HTTP 401"), "{err}");
    // A monitor that reads only the JSON learns the same.
    let json = summary_json(&summary);
    assert_eq!(json["end"], "credentials_refused", "{json}");
    assert_eq!(
        json["reason"], "the API refused the credentials (HTTP 403, Twilio error 20003)",
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_mid_answer_is_told_as_such_not_as_an_unreachable_api() {
    // A 201 whose body stops short of its Content-Length, and a request taken and never
    // answered: the API was reached both times.
    for fault in [Fault::CutShortAfterCommit, Fault::DropAfterCommit] {
        let env = TestEnv::new().await;
        env.emulator.inject(&iccid(1), vec![fault.clone(); 6]);
        env.write_input(&[good_sim(1)]);
        let summary = env.dir.path().join("summary.json");
        let output = env
            .register(&["--summary-json", summary.to_str().unwrap()])
            .await;
        let said = format!("{}{}", stdout(&output), stderr(&output));
        // The halt logic and its exit code are as before: only the words change.
        assert_eq!(exit_code(&output), 75, "{fault:?}: {said}");
        let json = summary_json(&summary);
        assert_eq!(json["end"], "unreachable", "{fault:?}: {json}");
        let reason = json["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("closed before its answer was complete"),
            "{fault:?}: {reason}"
        );
        assert!(
            said.contains("closed before its answer was complete"),
            "{fault:?}: {said}"
        );
        for wrong in [
            "cannot reach",
            "no request got an answer",
            "the connection failed",
        ] {
            assert!(!said.contains(wrong), "{fault:?} said {wrong:?}: {said}");
        }
    }
}
