//! twilio-cli profiles as a source of credentials, run through the real binary: the profile
//! named by `--profile` (or `TWILIO_PROFILE`) wins over the variables, the variables over the
//! active profile, and a profile that cannot be used is refused before anything is sent.

mod common;

use common::{TestEnv, exit_code, good_sim, stderr};
use supersim_bulk::emulator::EmulatorConfig;

const ACCOUNT: &str = "AC5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
const KEY: &str = "SK5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
const SECRET: &str = "profile-secret-canary";

/// An emulator that accepts only the `field` profile's API key, and a config folder whose
/// `field` profile holds it while the active profile (`lab`) holds a key it refuses.
async fn set_up() -> (TestEnv, tempfile::TempDir) {
    let env = TestEnv::with_config(EmulatorConfig {
        credentials: vec![(KEY.to_string(), SECRET.to_string())],
        account_sid: ACCOUNT.to_string(),
        ..EmulatorConfig::default()
    })
    .await;
    env.write_input(&[good_sim(1), good_sim(2)]);
    let config = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"profiles": {{
              "field": {{"accountSid": "{ACCOUNT}", "apiKey": "{KEY}", "apiSecret": "{SECRET}"}},
              "lab": {{"accountSid": "{ACCOUNT}", "apiKey": "SKbad", "apiSecret": "lab-secret-canary"}}
            }},
            "projects": [],
            "activeProject": "lab"}}"#
    );
    std::fs::write(config.path().join("config.json"), json).unwrap();
    (env, config)
}

fn config_dir(config: &tempfile::TempDir) -> (&'static str, &str) {
    ("TWILIO_CONFIG_DIR", config.path().to_str().unwrap())
}

#[tokio::test]
async fn the_named_profile_wins_over_the_variables() {
    let (env, config) = set_up().await;
    let output = env
        .register_with_env(
            &["--profile", "field"],
            &[
                config_dir(&config),
                ("TWILIO_ACCOUNT_SID", ACCOUNT),
                ("TWILIO_AUTH_TOKEN", "wrong-token"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().commits, 2);
    for row in env.results() {
        assert_eq!(row["account_sid"], ACCOUNT);
    }
    assert!(!stderr(&output).contains(SECRET));
}

#[tokio::test]
async fn twilio_profile_names_the_profile_as_the_flag_does() {
    let (env, config) = set_up().await;
    let output = env
        .register_with_env(&[], &[config_dir(&config), ("TWILIO_PROFILE", "field")])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().commits, 2);
}

#[tokio::test]
async fn the_variables_win_over_the_active_profile_and_the_active_profile_is_used_alone() {
    let (env, config) = set_up().await;
    // The variables hold the right key; the active profile (`lab`) a wrong one.
    let output = env
        .register_with_env(
            &[],
            &[
                config_dir(&config),
                ("TWILIO_API_KEY", KEY),
                ("TWILIO_API_SECRET", SECRET),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    // With no variables, the active profile is used: its key is refused, and the message
    // says where the credentials came from, without the secret.
    env.write_input(&[good_sim(3)]);
    let output = env.register_with_env(&[], &[config_dir(&config)]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains("the twilio-cli profile 'lab'"), "{said}");
    assert!(!said.contains("lab-secret-canary"), "{said}");
    assert_eq!(env.emulator.stats().commits, 2);
}

#[tokio::test]
async fn a_profile_that_is_not_there_is_refused_before_anything_is_sent() {
    let (env, config) = set_up().await;
    let output = env
        .register_with_env(&["--profile", "feild"], &[config_dir(&config)])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("there is no twilio-cli profile 'feild'") && said.contains("field, lab"),
        "{said}"
    );
    assert_eq!(env.emulator.stats().requests, 0);
    // A profile asked for by name needs the config file to be there.
    let empty = tempfile::tempdir().unwrap();
    let output = env
        .register_with_env(
            &["--profile", "field"],
            &[("TWILIO_CONFIG_DIR", empty.path().to_str().unwrap())],
        )
        .await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("no twilio-cli config file"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn export_reads_the_account_with_a_profile_too() {
    let (env, config) = set_up().await;
    env.emulator.preregister(&good_sim(1).0);
    let mut command = common::binary_command();
    command
        .args(["export", "--profile", "field", "--base-url"])
        .arg(env.emulator.base_url())
        .env("TWILIO_CONFIG_DIR", config.path());
    let output = command.output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(common::stdout(&output).contains(&good_sim(1).0));
}

#[tokio::test]
async fn check_proves_a_profile_and_names_it() {
    let (env, config) = set_up().await;
    env.emulator.preregister(&good_sim(1).0);
    let mut command = common::binary_command();
    command
        .args(["check", "--profile", "field", "--base-url"])
        .arg(env.emulator.base_url())
        .env("TWILIO_CONFIG_DIR", config.path());
    let output = command.output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = common::stdout(&output);
    assert!(
        report.contains(&format!("{KEY} (from the twilio-cli profile 'field'")),
        "{report}"
    );
    assert!(
        report.contains(&format!("account      {ACCOUNT}")),
        "{report}"
    );
    assert!(!report.contains(SECRET), "{report}");
}

/// A config file with a value of the wrong type is refused, saying where, never with the
/// value: the JSON parser quotes what it found (`invalid type: string "..."`), which a
/// profile mangled by hand puts its secret in.
#[tokio::test]
async fn a_config_file_that_cannot_be_read_is_refused_without_its_values() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let config = tempfile::tempdir().unwrap();
    for json in [
        format!(r#"{{"profiles": {{"field": "{SECRET}"}}}}"#),
        format!(
            r#"{{"profiles": {{"field": {{"apiKey": "{KEY}", "apiSecret": ["{SECRET}"]}}}}, "projects": "{SECRET}"}}"#
        ),
        format!(
            r#"{{"profiles": {{"field": {{"apiKey": "{KEY}", "apiSecret": 7355608735560873}}}}}}"#
        ),
    ] {
        std::fs::write(config.path().join("config.json"), &json).unwrap();
        let output = env
            .register_with_env(
                &["--profile", "field", "--summary-json", "-"],
                &[config_dir(&config)],
            )
            .await;
        assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
        let said = format!("{}{}", stderr(&output), common::stdout(&output));
        assert!(said.contains("is not a twilio-cli config file"), "{said}");
        assert!(said.contains("line 1"), "{said}");
        for secret in [SECRET, "7355608735560873"] {
            assert!(
                !said.contains(secret),
                "the error shows the file's value: {said}"
            );
        }
        assert_eq!(env.emulator.stats().requests, 0);
    }
}
