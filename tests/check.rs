//! `check`: the set-up proven without a CSV, with the exit codes `register` would give.

mod common;

use common::{TestEnv, binary_command, exit_code, stderr, stdout};
use supersim_bulk::emulator::{TEST_ACCOUNT_SID, fleet_sid_for};

async fn check(base_url: &str, env: &[(&str, &str)]) -> std::process::Output {
    binary_command()
        .args(["check", "--base-url", base_url])
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_working_set_up_shows_the_api_the_credentials_the_account_and_the_fleets() {
    let env = TestEnv::new().await;
    let output = check(&env.emulator.base_url(), &TestEnv::test_credentials()).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = stdout(&output);
    assert!(
        report.contains(&format!("api          {}", env.emulator.base_url())),
        "{report}"
    );
    assert!(
        report.contains("(from TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)"),
        "{report}"
    );
    assert!(report.contains("reachable    yes"), "{report}");
    assert!(
        report.contains(&format!("account      {TEST_ACCOUNT_SID}")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "field-devices ({})",
            fleet_sid_for("field-devices")
        )),
        "{report}"
    );
    assert!(!report.contains("emulator-test-token"), "{report}");
    // Nothing was registered or changed.
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests + stats.update_requests, 0);
}

#[tokio::test]
async fn refused_credentials_exit_2_naming_where_they_came_from_without_the_secret() {
    let env = TestEnv::new().await;
    let output = check(
        &env.emulator.base_url(),
        &[
            ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", "not-the-token-canary"),
        ],
    )
    .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("refused the credentials"));
    assert!(stderr(&output).contains("TWILIO_AUTH_TOKEN"));
    for text in [stdout(&output), stderr(&output)] {
        assert!(!text.contains("not-the-token-canary"), "{text}");
    }
    // And with no credentials at all: the set-up error register gives.
    let output = check(&env.emulator.base_url(), &[]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("no Twilio credentials"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_exits_75() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = check(
        &format!("http://127.0.0.1:{port}"),
        &TestEnv::test_credentials(),
    )
    .await;
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("reachable    no"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn the_emulator_can_be_checked_too() {
    let output = binary_command()
        .args(["check", "--emulator"])
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("the built-in emulator"));
}

/// `check` shows the credentials' user name, an identifier. With the pair swapped (the
/// secret in `TWILIO_API_KEY` or `TWILIO_ACCOUNT_SID`, the SID in the other) that user name
/// is the secret: it is masked, and the line says the variable holds no SID.
#[tokio::test]
async fn swapped_credentials_never_show_the_secret() {
    let env = TestEnv::new().await;
    let secret = "swapped0secret0canary0123456789ab";
    for (user_var, secret_var, sid) in [
        (
            "TWILIO_API_KEY",
            "TWILIO_API_SECRET",
            "SK0123456789abcdef0123456789abcdef",
        ),
        (
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "AC0123456789abcdef0123456789abcdef",
        ),
    ] {
        let output = check(
            &env.emulator.base_url(),
            &[(user_var, secret), (secret_var, sid)],
        )
        .await;
        assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
        let said = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            !said.contains(secret),
            "{user_var}: the secret is shown: {said}"
        );
        assert!(said.contains(user_var), "{said}");
    }
}
