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

/// The timestamp and `[pid]` that start a text log line off a terminal, or a description of
/// what the line starts with instead.
fn stamp_of(line: &str) -> Result<(&str, &str), String> {
    let mut words = line.splitn(3, ' ');
    let (time, pid) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    humantime::parse_rfc3339(time).map_err(|e| format!("no RFC 3339 time ({e}): {line}"))?;
    if !time.ends_with('Z') {
        return Err(format!("not UTC: {line}"));
    }
    let digits = pid.strip_prefix('[').and_then(|p| p.strip_suffix(']'));
    if !digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("no [pid] after the time: {line}"));
    }
    Ok((time, pid))
}

/// Every non-empty line of `text` starts with a UTC timestamp and one process id.
fn assert_every_line_stamped(text: &str) {
    let pids: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            stamp_of(line)
                .unwrap_or_else(|e| panic!("{e}\n--- all of it:\n{text}"))
                .1
        })
        .collect();
    assert_eq!(pids.len(), 1, "one process wrote these: {text}");
}

#[tokio::test]
async fn off_a_terminal_every_text_line_starts_with_the_time_and_the_pid() {
    // A run with a refusal (a WARN line) and debug lines.
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(8600);
    let (b, code_b) = good_sim(8601);
    env.write_input(&[(a, code_a), (b, common::wrong_code(&code_b))]);
    let output = env.register(&["-v"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("outcome=rejected"), "{text}");
    assert_every_line_stamped(&text);

    // With `--summary-json -` the text summary goes to stderr, dated like the logs.
    std::fs::remove_file(env.results_path()).unwrap();
    let output = env.register(&["--summary-json", "-"]).await;
    let text = stderr(&output);
    assert!(text.contains(" rows in "), "{text}");
    assert_every_line_stamped(&text);

    // A set-up failure: its `error:` line is dated too.
    let output = env.register_with_env(&[], &[]).await;
    assert_eq!(exit_code(&output), 2);
    let text = stderr(&output);
    assert_every_line_stamped(&text);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first
            .splitn(3, ' ')
            .nth(2)
            .unwrap_or("")
            .starts_with("error: no Twilio credentials"),
        "{text}"
    );

    // A run error after set-up (a results file that is not one): dated as well.
    std::fs::write(env.results_path(), "not,a,results,file\n1,2,3,4\n").unwrap();
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("error: "), "{text}");
    assert_every_line_stamped(&text);
}

#[tokio::test]
async fn quiet_prints_errors_only() {
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(8700);
    let (b, code_b) = good_sim(8701);
    // A refused row (a WARN line without -q) and a soft warning (Luhn) on each row.
    env.write_input(&[(a, code_a), (b, common::wrong_code(&code_b))]);
    let summary = env.dir.path().join("summary.json");
    let output = env
        .register(&["-q", "--summary-json", summary.to_str().unwrap()])
        .await;
    assert_eq!(
        exit_code(&output),
        1,
        "the exit code still says a row failed"
    );
    assert_eq!(stderr(&output), "", "no start line, progress or warning");
    assert_eq!(stdout(&output), "", "no summary text");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(
        json["this_run"]["rejected"], 1,
        "the summary JSON is still written"
    );

    // An error is still said.
    let output = env.register_with_env(&["-q"], &[]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("error: no Twilio credentials"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

/// What a terminal too wide to wrap shows after `raw` was written to it: carriage returns,
/// line clears and cursor moves applied, colours dropped. Enough of a terminal for
/// indicatif's drawing.
fn screen(raw: &str) -> Vec<String> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            '\u{1b}' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut params = String::new();
                let mut last = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() {
                        last = p;
                        break;
                    }
                    params.push(p);
                }
                let n: usize = params.parse().unwrap_or(1);
                match last {
                    'K' if params == "2" => lines[row].clear(),
                    'K' => lines[row].truncate(col),
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    'G' => col = n.saturating_sub(1),
                    'J' => lines.truncate(row + 1),
                    _ => {}
                }
                while lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            c => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// Runs `register` with `extra` on a pseudo-terminal (through `script`, from util-linux),
/// as a person at a terminal would: returns the exit code and everything the terminal got.
async fn on_a_terminal(env: &TestEnv, extra: &[&str]) -> (i32, String) {
    let quote = |arg: &str| format!("'{}'", arg.replace('\'', r"'\''"));
    let command = env.register_command(extra, &TestEnv::test_credentials());
    let std_command = command.as_std();
    // A terminal wide enough that no line wraps (a pseudo-terminal starts 0 columns wide,
    // which every program reads as its own default).
    let mut line = format!(
        "stty cols 1000 rows 50; exec {}",
        quote(&std_command.get_program().to_string_lossy())
    );
    for arg in std_command.get_args() {
        line.push(' ');
        line.push_str(&quote(&arg.to_string_lossy()));
    }
    // `script` gets the binary's cleaned environment (no credentials, proxies or RUST_LOG
    // of the test's own).
    let mut script = tokio::process::Command::new("script");
    for (name, value) in common::binary_command().as_std().get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    script
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .envs(TestEnv::test_credentials())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .current_dir(env.dir.path());
    let output = script
        .output()
        .await
        .expect("`script` (util-linux) runs the binary on a pseudo-terminal");
    (exit_code(&output), stdout(&output))
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_log_lines_pass_above_the_bar_and_leave_no_frozen_copy() {
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        latency: std::time::Duration::from_millis(15),
        ..Default::default()
    })
    .await;
    // Refusals spread through the run: a WARN line each while the bar is drawn.
    let sims: Vec<_> = (0..30)
        .map(|n| {
            let (iccid, code) = good_sim(8800 + n);
            let code = if n % 7 == 3 {
                common::wrong_code(&code)
            } else {
                code
            };
            (iccid, code)
        })
        .collect();
    env.write_input(&sims);
    let (code, raw) = on_a_terminal(&env, &["--concurrency", "2", "--color", "never"]).await;
    assert_eq!(code, 1, "{raw}");
    assert!(raw.contains("/30 rows"), "the bar was drawn: {raw}");
    let screen = screen(&raw);
    let bar_lines: Vec<&String> = screen.iter().filter(|l| l.contains("/30 rows")).collect();
    assert_eq!(
        bar_lines.len(),
        1,
        "the bar's last state, once: {screen:#?}"
    );
    assert!(bar_lines[0].contains("30/30 rows"), "{screen:#?}");
    let refusals: Vec<&String> = screen
        .iter()
        .filter(|l| l.contains("outcome=rejected"))
        .collect();
    assert_eq!(refusals.len(), 4, "{screen:#?}");
    for line in refusals {
        assert!(line.contains(" WARN "), "{line}");
        assert!(
            !line.contains('█') && !line.contains('░') && !line.contains(" rows "),
            "a refusal glued to a bar: {line}"
        );
    }
    // The summary follows the bar, its first line whole.
    let summary = screen.iter().position(|l| l.starts_with("30 rows in "));
    let bar = screen.iter().position(|l| l.contains("30/30 rows"));
    assert!(summary > bar, "{screen:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_start_line_is_short_and_the_configuration_is_for_verbose() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(8900), good_sim(8901), good_sim(8902)]);
    let (code, raw) = on_a_terminal(&env, &["--color", "never"]).await;
    assert_eq!(code, 0, "{raw}");
    let screen = screen(&raw);
    let first = screen.iter().find(|l| !l.is_empty()).unwrap();
    assert!(first.contains(" INFO "), "{screen:#?}");
    let said = first.split(" INFO ").nth(1).unwrap().trim();
    let expected = format!(
        "registering 3 rows from {} into {}",
        env.input_path().display(),
        env.results_path().display()
    );
    assert_eq!(said, expected, "{screen:#?}");
    assert!(
        !raw.contains("starting"),
        "the configuration is a debug line: {raw}"
    );

    // -v: the whole configuration too.
    std::fs::remove_file(env.results_path()).unwrap();
    let (code, raw) = on_a_terminal(&env, &["--color", "never", "-v"]).await;
    assert_eq!(code, 0, "{raw}");
    assert!(
        raw.contains("starting") && raw.contains("concurrency=100"),
        "{raw}"
    );
}
