//! What a server says back is kept and printed safely: secrets it echoes (the auth token,
//! the Basic credential, the registration code in any case or spacing) never reach the
//! results, the logs, the summary or the report. Each test runs the real binary against the
//! emulator over loopback, the emulator answering as a careless or hostile server would.

mod common;

use std::path::Path;

use common::{TestEnv, exit_code, good_sim};
use supersim_bulk::emulator::{Fault, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};

/// A secret as the tests look for it: a name for failure messages (which never print the
/// secret itself) and its text.
struct Secret {
    name: String,
    text: String,
}

/// Lowercase, without spaces, dashes, underscores, dots or base64 padding: a secret found
/// in this form was echoed in one spelling or another.
fn loosened(text: &str) -> String {
    text.chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '_' | '.' | '=')))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The secrets of a run with the emulator's credentials and these registration codes.
fn secrets_of(codes: &[&str]) -> Vec<Secret> {
    use base64::Engine as _;
    let credential = base64::engine::general_purpose::STANDARD
        .encode(format!("{TEST_ACCOUNT_SID}:{TEST_AUTH_TOKEN}"));
    let mut secrets = vec![
        Secret {
            name: "the auth token".into(),
            text: TEST_AUTH_TOKEN.into(),
        },
        Secret {
            name: "the Basic credential".into(),
            text: credential,
        },
    ];
    for (n, code) in codes.iter().enumerate() {
        secrets.push(Secret {
            name: format!("registration code {}", n + 1),
            text: code.to_string(),
        });
    }
    secrets
}

/// Fails, naming the secrets found and where, if `text` holds any of them in any spelling.
fn assert_holds_no_secret(place: &str, text: &str, secrets: &[Secret]) {
    let haystack = loosened(text);
    let found: Vec<&str> = secrets
        .iter()
        .filter(|secret| haystack.contains(&loosened(&secret.text)))
        .map(|secret| secret.name.as_str())
        .collect();
    assert!(found.is_empty(), "{place} holds {}", found.join(", "));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_a_server_echoes_reach_no_output_of_the_run() {
    let env = TestEnv::new().await;
    let sims: Vec<(String, String)> = (1..=3).map(good_sim).collect();
    env.emulator.inject(&sims[0].0, vec![Fault::EchoSecrets]);
    env.emulator.inject(&sims[1].0, vec![Fault::EchoSecrets]);
    // A success whose own fields echo them: a name in capitals, a status in lowercase.
    let (iccid, code) = &sims[2];
    env.emulator.inject(
        iccid,
        vec![Fault::AlteredAnswer {
            fields: vec![
                (
                    "unique_name".into(),
                    format!("tracker {}", TEST_AUTH_TOKEN.to_uppercase()),
                ),
                ("status".into(), code.to_lowercase()),
            ],
        }],
    );
    env.write_input(&sims);
    let summary = env.dir.path().join("summary.json");
    let report = env.dir.path().join("report.html");
    let output = env
        .register(&[
            "-v",
            "--summary-json",
            summary.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .await;
    // Not printed on failure: the outputs are what may hold the secrets.
    assert_eq!(exit_code(&output), 1, "two refusals and one registration");

    let codes: Vec<&str> = sims.iter().map(|(_, code)| code.as_str()).collect();
    let secrets = secrets_of(&codes);
    assert_holds_no_secret("stdout", &String::from_utf8_lossy(&output.stdout), &secrets);
    assert_holds_no_secret("stderr", &String::from_utf8_lossy(&output.stderr), &secrets);
    assert_holds_no_secret("the results file", &read(&env.results_path()), &secrets);
    assert_holds_no_secret("the summary JSON", &read(&summary), &secrets);
    assert_holds_no_secret("the report", &read(&report), &secrets);

    // What is left of the server's words still says what happened.
    let rows = env.last_rows();
    for (iccid, _) in &sims[..2] {
        let row = &rows[iccid];
        assert_eq!(row["outcome"], "rejected");
        assert_eq!(row["error_code"], "83002");
        assert!(
            row["error_message"].starts_with("request refused: Authorization Basic [redacted]"),
            "line {}: the message lost more than its secrets",
            row["line"]
        );
    }
    let row = &rows[&sims[2].0];
    assert_eq!(row["outcome"], "registered");
    assert_eq!(row["unique_name"], "tracker [redacted]");
    assert_eq!(row["status"], "[redacted]");
}

/// The results file read as raw text, for what a spreadsheet or a terminal would meet.
fn control_characters_in(text: &str) -> Vec<String> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .map(|c| format!("U+{:04X}", u32::from(c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_text_in_the_results_is_neither_a_formula_nor_a_terminal_control() {
    let env = TestEnv::new().await;
    // First, so the text summary's first five rows show it.
    // The escape sequences first, so the text summary's first five rows show them.
    let messages = [
        (
            "bad\n2026-12-07T00:00:00.000000Z [1]  INFO run ended\u{1b}[2J\u{1b}]0;pwned\u{7}\r =HYPERLINK(\"http://x\")",
            "bad\u{fffd}2026-12-07T00:00:00.000000Z [1]  INFO run ended\u{fffd}[2J\u{fffd}]0;pwned\u{fffd}\u{fffd} =HYPERLINK(\"http://x\")",
        ),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+SUM(1,2)", "'+SUM(1,2)"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        // A leading space does not hide a formula from every spreadsheet.
        ("  =1+1", "'  =1+1"),
        ("\t=1+1", "\u{fffd}=1+1"),
    ];
    let mut sims: Vec<(String, String)> = Vec::new();
    for (n, (message, _)) in messages.iter().enumerate() {
        let sim = good_sim(n as u32 + 1);
        env.emulator.inject(
            &sim.0,
            vec![Fault::TwilioMessage {
                status: 400,
                code: 83002,
                message: message.to_string(),
            }],
        );
        sims.push(sim);
    }
    // A success whose status is a formula and whose name holds an escape sequence.
    let registered = good_sim(20);
    env.emulator.inject(
        &registered.0,
        vec![Fault::AlteredAnswer {
            fields: vec![
                ("status".into(), "=1+1".into()),
                ("unique_name".into(), "pump\u{1b}[31m-7".into()),
            ],
        }],
    );
    sims.push(registered.clone());
    // The tool's own words and the server's plain ones are written as they are.
    let wrong = good_sim(21);
    sims.push((wrong.0.clone(), common::wrong_code(&wrong.1)));
    env.write_input(&sims);
    let mut text = std::fs::read_to_string(env.input_path()).unwrap();
    text.push_str("123,ABCDEFGHIJ\n");
    env.write_csv(&text);

    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 1, "{}", common::stderr(&output));
    for (name, said) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let said = String::from_utf8_lossy(said);
        assert!(
            control_characters_in(&said).is_empty(),
            "{name} holds {:?}: {said:?}",
            control_characters_in(&said)
        );
    }
    let raw = std::fs::read_to_string(env.results_path()).unwrap();
    assert!(
        control_characters_in(&raw).is_empty(),
        "the results file holds {:?}: {raw:?}",
        control_characters_in(&raw)
    );
    assert_eq!(
        raw.lines().count(),
        sims.len() + 2,
        "one line per row: {raw:?}"
    );

    let rows = env.last_rows();
    for ((_, written), (iccid, _)) in messages.iter().zip(&sims) {
        let row = &rows[iccid];
        assert_eq!(row["outcome"], "rejected");
        assert_eq!(&row["error_message"], written, "{row:?}");
    }
    assert_eq!(rows[&registered.0]["outcome"], "registered");
    assert_eq!(rows[&registered.0]["status"], "'=1+1");
    assert_eq!(rows[&registered.0]["unique_name"], "pump\u{fffd}[31m-7");
    assert_eq!(
        rows[&wrong.0]["error_message"],
        "The ICCID and registration code do not match a Super SIM that can be registered"
    );
    assert_eq!(
        rows["123"]["error_message"],
        "ICCID must be 19 or 20 digits, found 3"
    );
}
