//! What the logs say: the start line, JSON logs where every stderr line is one object with
//! typed fields, the end-of-run summary and progress events, colour, and the one-line
//! rerun that has nothing to do.

mod common;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

fn event<'a>(events: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} event in {events:?}"))
}

#[tokio::test]
async fn a_json_run_logs_a_start_line_a_progress_line_and_the_summary_as_typed_events() {
    let env = TestEnv::new().await;
    let sims = vec![good_sim(8100), good_sim(8101)];
    env.write_input(&sims);
    let output = env.register(&["--log-format", "json"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(!text.contains("Some("), "{text}");
    for (_, code) in &sims {
        assert!(
            !text.contains(code.as_str()),
            "a registration code was logged"
        );
    }
    assert!(!text.contains(common_token()), "the auth token was logged");
    let events = json_lines(&text);
    let start = event(&events, "starting");
    assert_eq!(start["command"], "register");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(start["api"], env.emulator.base_url());
    assert!(start["pid"].is_u64());
    assert!(start["concurrency"].is_u64());
    assert!(start["rate"].is_number());
    assert!(start["account_sid"].is_string());
    assert!(start["input"].as_str().unwrap().ends_with("sims.csv"));
    assert!(
        start["results"]
            .as_str()
            .unwrap()
            .ends_with("sims.results.csv")
    );
    let progress = event(&events, "progress");
    assert_eq!(progress["done"], 2);
    assert_eq!(progress["expected"], 2);
    assert_eq!(progress["registered"], 2);
    let end = event(&events, "run ended");
    assert_eq!(end["end"], "finished");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["registered"], 2);
    assert_eq!(end["rejected"], 0);
    assert!(end.get("reason").is_none(), "absent values are absent");
    assert!(end["timestamp"].is_string());
    // The human summary stays on stdout.
    assert!(stdout(&output).contains("registered"));
}

fn common_token() -> &'static str {
    supersim_bulk::emulator::TEST_AUTH_TOKEN
}

#[tokio::test]
async fn json_logs_keep_set_up_errors_and_refused_credentials_as_json() {
    let env = TestEnv::new().await;
    // A set-up error: the input file does not exist.
    let output = env.register(&["--log-format", "json"]).await;
    assert_eq!(exit_code(&output), 2);
    let events = json_lines(&stderr(&output));
    assert!(events.iter().any(|e| e["level"] == "ERROR"), "{events:?}");

    // Refused credentials.
    env.write_input(&[good_sim(8200)]);
    let output = env
        .register_with_env(
            &["--log-format", "json"],
            &[
                (
                    "TWILIO_ACCOUNT_SID",
                    supersim_bulk::emulator::TEST_ACCOUNT_SID,
                ),
                ("TWILIO_AUTH_TOKEN", "not-the-token-0123456789abcdef0"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 2);
    let text = stderr(&output);
    assert!(!text.contains("Some("), "{text}");
    assert!(!text.contains("not-the-token"), "a credential was logged");
    let events = json_lines(&text);
    assert!(
        events.iter().any(|e| e["level"] == "ERROR"
            && e["message"].as_str().unwrap_or("").contains("credentials")),
        "{events:?}"
    );
    for e in &events {
        if let Some(status) = e.get("http_status") {
            assert!(status.is_u64(), "{e}");
        }
    }
}

#[tokio::test]
async fn a_rerun_with_nothing_to_do_says_so_in_one_line() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(8300), good_sim(8301)]);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0);
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("nothing to do: 2 rows finished by earlier runs (registered 2)"),
        "{out}"
    );
    assert!(out.contains("results: "), "{out}");
    // Off a terminal the logs carry the dated summary line.
    assert!(stderr(&output).contains("run ended"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_short_run_off_a_terminal_still_logs_one_progress_line() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(8400)]);
    let output = env.register(&["--progress-interval", "1h"]).await;
    assert_eq!(exit_code(&output), 0);
    let text = stderr(&output);
    assert_eq!(text.matches("progress: 1/1 rows").count(), 1, "{text}");
}

#[tokio::test]
async fn colour_follows_the_color_flag_and_no_color() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(8500)]);
    let output = env.register(&["--color", "always"]).await;
    assert_eq!(exit_code(&output), 0);
    assert!(stderr(&output).contains('\u{1b}'), "--color always colours");

    let env = TestEnv::new().await;
    env.write_input(&[good_sim(8501)]);
    let mut with_no_color = TestEnv::test_credentials().to_vec();
    with_no_color.push(("NO_COLOR", "1"));
    let output = env
        .register_with_env(&["--color", "auto"], &with_no_color)
        .await;
    assert_eq!(exit_code(&output), 0);
    assert!(!stderr(&output).contains('\u{1b}'));
    let output = env.register(&["--color", "never"]).await;
    assert!(!stderr(&output).contains('\u{1b}'));
}

/// Rows that need a person are logged at WARN as they finish; a soft warning about a row is
/// logged when the row is sent, not again by every rerun that finds it done.
#[tokio::test]
async fn rows_needing_a_person_are_warnings_and_a_soft_warning_is_said_once() {
    let env = TestEnv::new().await;
    // `good_sim` ICCIDs fail the Luhn check: a soft warning, still sent.
    let (a, code_a) = good_sim(1);
    let (b, _) = good_sim(2);
    env.write_input(&[(a, code_a), (b, "ZZZZZZZZZZ".into())]);
    let first = env.register(&[]).await;
    let log = stderr(&first);
    let refused = log
        .lines()
        .find(|l| l.contains("row finished") && l.contains("outcome=rejected"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(refused.contains("WARN"), "{refused}");
    assert!(log.contains("sending despite a warning"), "{log}");
    let again = env.register(&[]).await;
    assert!(
        !stderr(&again).contains("sending despite a warning"),
        "{}",
        stderr(&again)
    );
}
