//! Every command README.md and docs/guide.md show runs as written and does what the text
//! says, with the emulator standing in for the account: `supersim-bulk` is the binary under
//! test (first on `PATH`), `cargo run --release --` is that binary too, placeholder
//! credentials (`SK...`) are a stand-in emulator's, and the standalone emulator's port 8080
//! is a free one. The cron line and the systemd unit run in a minimal environment (`env -i`
//! with only `HOME` and `PATH`), as cron and systemd run them. A command a test cannot run
//! is listed with the reason; a command added to the docs without a test here fails
//! [`every_command_shown_is_run_or_listed_with_a_reason`].
//!
//! Also: the reference's example summary JSON has the keys a run writes, and refused
//! credentials end the way the reference says.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};
use supersim_bulk::emulator::{
    Emulator, EmulatorConfig, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, registration_code_for,
};

const README: &str = include_str!("../README.md");
const GUIDE: &str = include_str!("../docs/guide.md");
const REFERENCE: &str = include_str!("../docs/reference.md");

// The commands each test below runs, exactly as the docs show them.
const README_REHEARSAL: &str = "cargo run --release -- register samples/sims.csv --emulator   # a whole run against the built-in emulator";
const README_VALIDATE: &str = "supersim-bulk validate samples/sims.csv";
const README_RECONCILE_REHEARSAL: &str = "supersim-bulk reconcile samples/sims.emulator.results.csv --emulator   # exit 0: the account matches the file";
const README_EXPORT_REHEARSAL: &str = "supersim-bulk export --emulator --state samples/sims.emulator.results.state.jsonl --format json";
const README_CREDENTIALS: &str =
    "export TWILIO_API_KEY=SK... TWILIO_API_SECRET=... TWILIO_ACCOUNT_SID=AC...";
const README_DRY_RUN: &str =
    "supersim-bulk register box-17.csv --fleet field-devices --activate --dry-run";
const README_REAL_RUN: &str =
    "supersim-bulk register box-17.csv --fleet field-devices --activate --wait";
const README_RECONCILE: &str =
    "supersim-bulk reconcile box-17.results.csv      # exit 0 when everything matches, 1 when not";
const README_EXPORT: &str = "supersim-bulk export --fleet field-devices -o on-the-account.csv";

const GUIDE_CREDENTIALS: &str = "export TWILIO_API_KEY=SK... TWILIO_API_SECRET=...      # or TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN";
const GUIDE_CREDENTIALS_SHORT: &str = "export TWILIO_API_KEY=SK... TWILIO_API_SECRET=...";
const GUIDE_REGISTER: &str = "supersim-bulk register sims.csv                         # writes sims.results.csv beside the input";
const GUIDE_CHECK: &str = "supersim-bulk check --profile field";
const GUIDE_REHEARSE: &str =
    "supersim-bulk register box-17.csv --emulator --fleet field-devices --activate --wait";
const GUIDE_REAL_RUN: &str =
    "supersim-bulk register box-17.csv --fleet field-devices --activate --wait";
const GUIDE_RECONCILE_REHEARSAL: &str = "supersim-bulk reconcile box-17.emulator.results.csv --emulator   # exit 0: the account matches the file";
const GUIDE_EXPORT_REHEARSAL: &str =
    "supersim-bulk export --emulator --state box-17.emulator.results.state.jsonl";
const GUIDE_EMULATOR: &str = "supersim-bulk emulator --port 8080 &";
const GUIDE_TEST_PAIR: &str = "export TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000 TWILIO_AUTH_TOKEN=emulator-test-token";
const GUIDE_REGISTER_STANDALONE: &str =
    "supersim-bulk register sims.csv --fleet field-devices --base-url http://127.0.0.1:8080";
const GUIDE_EXPORT_FILE: &str =
    "supersim-bulk export -o account.csv --base-url http://127.0.0.1:8080";
const GUIDE_EXPORT_STDOUT: &str = "supersim-bulk export --status new --fleet field-devices --base-url http://127.0.0.1:8080   # to stdout";
const GUIDE_RECONCILE_ALL: &str =
    "supersim-bulk reconcile sims.results.csv --all --base-url http://127.0.0.1:8080";
const GUIDE_RECONCILE_FLEET: &str = "supersim-bulk reconcile sims.results.csv --fleet field-devices --base-url http://127.0.0.1:8080";
const GUIDE_RECONCILE_JQ: &str = "supersim-bulk reconcile sims.results.csv --all --format json --base-url http://127.0.0.1:8080 | jq -c 'select(.verdict == \"differs\")'";
const GUIDE_WRAPPER: &str = "supersim-bulk register incoming.csv --summary-json last-run.json";
const GUIDE_REPORT: &str =
    "supersim-bulk register incoming.csv --summary-json last-run.json --report last-run.html";
const GUIDE_METRICS: &str = "supersim-bulk register incoming.csv --metrics-file /var/lib/node_exporter/textfile/supersim_bulk.prom";
const README_REPORT_REHEARSAL: &str = "supersim-bulk register rehearsal.csv --emulator --max-concurrent 20 --latency 100ms --latency-jitter 0.5 --limit-schedule 5s=8,12s=25 --other-rate 30 --report rehearsal.html";

/// Commands the tests do not run, and why.
const NOT_RUN: [(&str, &str); 5] = [
    (
        "cargo install --path .                                          # installs supersim-bulk",
        "installs into the user's cargo folder and builds a release for minutes; the binary it installs is the one under test",
    ),
    (
        "cargo test                                                     # the test suite (talks to the emulator over loopback)",
        "this is that suite",
    ),
    (
        "supersim-bulk emulator --port 8080 [--latency 100ms] [--latency-jitter 0.1] [--max-concurrent 20] [--latency-distribution long-tail] [--network-delay 40ms] [--limit-schedule 5s=8,12s=25] [--other-rate 60 --other-latency 100ms --other-arrivals poisson] [--concurrency-header every|on-429|never] [--header-leaves-out-refused] [--header-counted-at-admission] [--limit-retry-after 1] [--limit-latency 30ms] [--fail-rate 0.1] [--seed 7] [--fleet NAME]... [--update-delay 2s] [--state FILE]",
        "a synopsis (brackets mark optional flags), not a command; each flag has its own tests (emulator.rs, adaptive.rs)",
    ),
    (
        "supersim-bulk completions powershell | Out-String | Invoke-Expression",
        "needs PowerShell; the script is generated as the other shells' are (shell.rs)",
    ),
    (
        "man supersim-bulk          # or, without installing it: supersim-bulk man | man -l -",
        "needs man(1); the page it shows is written and checked by the test of the block above it",
    ),
];

/// Commands run by the tests below as part of a block (a crontab line, a unit, a script).
const RUN_IN_BLOCKS: [&str; 7] = [
    "supersim-bulk completions bash > ~/.local/share/bash-completion/completions/supersim-bulk",
    "mkdir -p ~/.zfunc && supersim-bulk completions zsh > ~/.zfunc/_supersim-bulk",
    "supersim-bulk completions fish > ~/.config/fish/completions/supersim-bulk.fish",
    "supersim-bulk man > ~/.local/share/man/man1/supersim-bulk.1",
    "ExecStart=/usr/local/bin/supersim-bulk register incoming.csv --summary-json last-run.json --max-failures 5%%",
    GUIDE_WRAPPER,
    "*/30 *  *   *   *    cd /srv/sims && /usr/local/bin/supersim-bulk register incoming.csv --profile field --summary-json last-run.json --max-failures 5\\% >> register.log 2>&1",
];

const RUN: [&str; 26] = [
    GUIDE_REPORT,
    GUIDE_METRICS,
    README_REPORT_REHEARSAL,
    README_REHEARSAL,
    README_VALIDATE,
    README_RECONCILE_REHEARSAL,
    README_EXPORT_REHEARSAL,
    README_DRY_RUN,
    README_REAL_RUN,
    README_RECONCILE,
    README_EXPORT,
    GUIDE_REGISTER,
    GUIDE_CHECK,
    GUIDE_REHEARSE,
    GUIDE_REAL_RUN,
    GUIDE_RECONCILE_REHEARSAL,
    GUIDE_EXPORT_REHEARSAL,
    GUIDE_EMULATOR,
    GUIDE_REGISTER_STANDALONE,
    GUIDE_EXPORT_FILE,
    GUIDE_EXPORT_STDOUT,
    GUIDE_RECONCILE_ALL,
    GUIDE_RECONCILE_FLEET,
    GUIDE_RECONCILE_JQ,
    GUIDE_CREDENTIALS,
    GUIDE_TEST_PAIR,
];

/// The command lines in the fenced blocks of `doc`: lines that run `supersim-bulk` (a
/// subcommand after its name or path) or `cargo`, and `export` lines that set the
/// credentials; a `$ ` prompt is dropped and a line ending in `\` joined with the next.
fn shown_commands(doc: &str) -> Vec<String> {
    // A line that runs one of the subcommands is a command.
    let subcommands = common::subcommands();
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let joined = if pending.is_empty() {
            line.trim().to_string()
        } else {
            format!("{pending} {}", line.trim())
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = head.trim_end().to_string();
            continue;
        }
        pending.clear();
        let text = joined.strip_prefix("$ ").unwrap_or(&joined);
        let runs_the_tool = subcommands
            .iter()
            .any(|sub| text.contains(&format!("supersim-bulk {sub}")));
        if runs_the_tool || text.starts_with("cargo ") || text.starts_with("export TWILIO_") {
            commands.push(text.to_string());
        }
    }
    commands
}

/// Panics unless `command` is shown in README.md or docs/guide.md, so a test never runs a
/// command the docs no longer show.
fn shown(command: &str) -> &str {
    let all: Vec<String> = [README, GUIDE]
        .iter()
        .flat_map(|doc| shown_commands(doc))
        .collect();
    assert!(
        all.iter().any(|c| c == command),
        "the docs no longer show `{command}`; shown: {all:#?}"
    );
    command
}

#[test]
fn every_command_shown_is_run_or_listed_with_a_reason() {
    let known: BTreeSet<&str> = RUN
        .iter()
        .chain(&RUN_IN_BLOCKS)
        .chain(&[README_CREDENTIALS, GUIDE_CREDENTIALS_SHORT])
        .copied()
        .chain(NOT_RUN.iter().map(|(command, _)| *command))
        .collect();
    let shown: BTreeSet<String> = [README, GUIDE]
        .iter()
        .flat_map(|doc| shown_commands(doc))
        .collect();
    let untested: Vec<&String> = shown
        .iter()
        .filter(|c| !known.contains(c.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "commands in the docs that no test runs (add a test, or list them in NOT_RUN with the reason): {untested:#?}"
    );
    let gone: Vec<&&str> = known.iter().filter(|c| !shown.contains(**c)).collect();
    assert!(gone.is_empty(), "commands no longer in the docs: {gone:#?}");
}

/// A folder to run the docs' commands in, with `supersim-bulk` on `PATH` and a `HOME`.
struct Shell {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Shell {
    fn new() -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_supersim-bulk"),
            bin.join("supersim-bulk"),
        )
        .unwrap();
        let env = vec![
            (
                "PATH".to_string(),
                format!("{}:/usr/bin:/bin", bin.display()),
            ),
            (
                "HOME".to_string(),
                dir.path().join("home").display().to_string(),
            ),
        ];
        Shell { dir, env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn set(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.to_string()));
    }

    /// Takes an `export NAME=VALUE...` line as the shell would, each placeholder value
    /// (`SK...`, `...`, `AC...`) replaced by the stand-in account's.
    fn export(&mut self, line: &str) {
        let line = line.split(" #").next().unwrap();
        for assignment in line.trim_start_matches("export ").split_whitespace() {
            let (name, value) = assignment.split_once('=').unwrap();
            let value = match value {
                "SK..." => STAND_IN_KEY,
                "..." => STAND_IN_SECRET,
                "AC..." => STAND_IN_ACCOUNT,
                value => value,
            };
            self.set(name, value);
        }
    }

    /// Runs `command` with `sh -c` in the folder, with only this shell's variables.
    async fn run(&self, command: &str) -> Output {
        let command = command.replace("cargo run --release --", "supersim-bulk");
        tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .output()
            .await
            .unwrap()
    }

    fn copy_sample(&self, to: &str) {
        if let Some(folder) = Path::new(to).parent() {
            std::fs::create_dir_all(self.dir.path().join(folder)).unwrap();
        }
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sims.csv"),
            self.path(to),
        )
        .unwrap();
    }

    /// `box-17.csv` as the guide's here-document writes it.
    fn write_box(&self) {
        let start = GUIDE.find("cat > box-17.csv <<'CSV'\n").unwrap();
        let body = &GUIDE[start..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let body = &body[..body.find("\nCSV\n").unwrap() + 1];
        std::fs::write(self.path("box-17.csv"), body).unwrap();
    }
}

const STAND_IN_KEY: &str = "SK5a7d1e0b9c8f4a3e2d1c0b9a8f7e6d5c";
const STAND_IN_SECRET: &str = "stand-in-secret";
const STAND_IN_ACCOUNT: &str = "AC5a7d1e0b9c8f4a3e2d1c0b9a8f7e6d5c";

/// An emulator standing in for a real account: its own account SID, an API key pair.
async fn stand_in_account() -> Emulator {
    Emulator::start(
        EmulatorConfig {
            credentials: vec![(STAND_IN_KEY.to_string(), STAND_IN_SECRET.to_string())],
            account_sid: STAND_IN_ACCOUNT.to_string(),
            ..EmulatorConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn said(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

fn csv_file(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    common::csv_rows(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The lines of the fenced block of `doc` that holds `line` (the fences left out).
fn block_containing<'d>(doc: &'d str, line: &str) -> Vec<&'d str> {
    let at = doc.find(line).unwrap_or_else(|| panic!("no {line}"));
    let open = doc[..at].rfind("```").unwrap();
    let body = &doc[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].lines().collect()
}

/// `text` with every `HS` SID (random per run) written `HS...`.
fn mask_sim_sids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("HS") {
        let candidate = &rest[at + 2..];
        let hex = candidate.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..at]);
        if hex == 32 {
            out.push_str("HS...");
            rest = &candidate[32..];
        } else {
            out.push_str("HS");
            rest = candidate;
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_rehearsal_then_its_account_compared_and_listed() {
    let shell = Shell::new();
    shell.copy_sample("samples/sims.csv");
    let output = shell.run(shown(README_REHEARSAL)).await;
    assert_eq!(
        exit_code(&output),
        1,
        "the README's summary says 1: {}",
        said(&output)
    );
    assert!(shell.path("samples/sims.emulator.results.csv").is_file());
    assert!(
        shell
            .path("samples/sims.emulator.results.state.jsonl")
            .is_file()
    );

    let output = shell.run(shown(README_VALIDATE)).await;
    assert_eq!(exit_code(&output), 1, "{}", said(&output));
    assert!(stdout(&output).starts_with("samples/sims.csv: 205 rows\n"));

    let output = shell.run(shown(README_RECONCILE_REHEARSAL)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert!(
        stdout(&output).ends_with("the account matches the file\n"),
        "{}",
        said(&output)
    );

    let output = shell.run(shown(README_EXPORT_REHEARSAL)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let sims: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(sims.len(), 200, "the 200 good SIMs of the sample");
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_real_account_commands_against_a_stand_in() {
    let account = stand_in_account().await;
    let mut shell = Shell::new();
    shell.write_box();
    shell.export(shown(README_CREDENTIALS));
    shell.set("SUPERSIM_BASE_URL", &account.base_url());

    let output = shell.run(shown(README_DRY_RUN)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let text = stdout(&output);
    assert!(text.contains("would register 3,"), "{text}");
    assert!(
        text.contains("then: 3 into Fleet field-devices (HF"),
        "{text}"
    );
    assert!(text.contains("3 set active"), "{text}");
    assert_eq!(
        account.stats().create_requests,
        0,
        "a dry run sends nothing"
    );

    let output = shell.run(shown(README_REAL_RUN)).await;
    assert_eq!(
        exit_code(&output),
        0,
        "exit 0: every SIM is done: {}",
        said(&output)
    );
    let rows = csv_file(&shell.path("box-17.results.csv"));
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["outcome"], "registered", "{row:?}");
        assert_eq!(row["status"], "active", "{row:?}");
        assert_eq!(row["account_sid"], STAND_IN_ACCOUNT, "{row:?}");
    }

    let output = shell.run(shown(README_RECONCILE)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));

    let output = shell.run(shown(README_EXPORT)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert_eq!(csv_file(&shell.path("on-the-account.csv")).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_real_account_commands_against_a_stand_in() {
    let account = stand_in_account().await;
    let mut shell = Shell::new();
    shell.set("SUPERSIM_BASE_URL", &account.base_url());

    // Registering real SIMs.
    shell.export(shown(GUIDE_CREDENTIALS));
    let sims: Vec<_> = (0..3).map(good_sim).collect();
    let mut csv = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        csv.push_str(&format!("{iccid},{code}\n"));
    }
    std::fs::write(shell.path("sims.csv"), &csv).unwrap();
    let output = shell.run(shown(GUIDE_REGISTER)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert_eq!(csv_file(&shell.path("sims.results.csv")).len(), 3);

    // The wrapper script's run (its `case` mails a person, so only the run is run).
    std::fs::write(shell.path("incoming.csv"), &csv).unwrap();
    let output = shell.run(GUIDE_WRAPPER).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shell.path("last-run.json")).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 0);
    assert!(GUIDE.contains(&format!("```sh\n{GUIDE_WRAPPER}\ncase $? in\n")));

    // check, with the credentials of a twilio-cli profile.
    let mut profile_shell = Shell::new();
    profile_shell.set("SUPERSIM_BASE_URL", &account.base_url());
    let config = profile_shell.home().join(".twilio-cli");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({
            "profiles": {"field": {
                "accountSid": STAND_IN_ACCOUNT, "apiKey": STAND_IN_KEY, "apiSecret": STAND_IN_SECRET
            }},
        })
        .to_string(),
    )
    .unwrap();
    let output = profile_shell.run(shown(GUIDE_CHECK)).await;
    assert_eq!(exit_code(&output), 0, "exit 0: ready: {}", said(&output));
    let printed = stdout(&output);
    let shown_block = block_containing(GUIDE, "$ supersim-bulk check --profile field");
    let labels = |lines: Vec<&str>| -> Vec<String> {
        lines
            .iter()
            .filter_map(|line| line.split_whitespace().next().map(String::from))
            .collect()
    };
    assert_eq!(
        labels(printed.lines().collect()),
        labels(shown_block[1..].to_vec()),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "credentials  {STAND_IN_KEY} (from the twilio-cli profile 'field' in {}/config.json)",
            config.display()
        )),
        "{printed}"
    );
    assert!(printed.contains("reachable    yes\n"), "{printed}");
    assert!(
        printed.contains(&format!("account      {STAND_IN_ACCOUNT}\n")),
        "{printed}"
    );
    let fleets = |text: &str| {
        text.lines()
            .find(|line| line.starts_with("fleets"))
            .unwrap()
            .split(", ")
            .map(|fleet| fleet.split(" (HF").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(fleets(&printed), fleets(&shown_block.join("\n")));

    // Onboard a box: the rehearsal, its account compared and listed, then the real run.
    let mut shell = Shell::new();
    shell.set("SUPERSIM_BASE_URL", &account.base_url());
    shell.write_box();
    let sent_before = account.stats().create_requests;
    let output = shell.run(shown(GUIDE_REHEARSE)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let rehearsed = csv_file(&shell.path("box-17.emulator.results.csv"));
    assert_eq!(rehearsed.len(), 3);
    assert!(
        rehearsed.iter().all(|row| row["status"] == "active"),
        "{rehearsed:?}"
    );
    let output = shell.run(shown(GUIDE_RECONCILE_REHEARSAL)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let output = shell.run(shown(GUIDE_EXPORT_REHEARSAL)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert_eq!(common::csv_rows(&output.stdout).len(), 3);
    assert_eq!(
        account.stats().create_requests,
        sent_before,
        "the rehearsal sent nothing to the account"
    );

    shell.export(shown(GUIDE_CREDENTIALS_SHORT));
    let output = shell.run(shown(GUIDE_REAL_RUN)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let rows = csv_file(&shell.path("box-17.results.csv"));
    assert_eq!(
        rows.len(),
        3,
        "it starts from nothing and registers every SIM"
    );
    assert!(
        rows.iter().all(|row| row["outcome"] == "registered"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|row| row["status"] == "active"), "{rows:?}");
}

/// The standalone emulator's steps, then the export and reconcile examples that ran
/// against it, their output compared with what the guide shows.
#[tokio::test(flavor = "multi_thread")]
async fn guide_standalone_emulator_export_and_reconcile() {
    let mut shell = Shell::new();
    shell.copy_sample("sims.csv");
    // The emulator, started as shown but on a free port.
    let started = shown(GUIDE_EMULATOR);
    let command = started
        .strip_suffix(" &")
        .unwrap()
        .replace("--port 8080", "--port 0");
    let mut emulator = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .current_dir(shell.dir.path())
        .env_clear()
        .envs(shell.env.clone())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The rest of the banner is left unread in the pipe, which stays open meanwhile.
    use tokio::io::AsyncBufReadExt;
    let mut banner_lines = tokio::io::BufReader::new(emulator.stdout.take().unwrap()).lines();
    let banner = banner_lines.next_line().await.unwrap().unwrap();
    let url = banner
        .strip_prefix("Super SIM API emulator listening on ")
        .unwrap_or_else(|| panic!("{banner}"))
        .to_string();
    let here = |command: &str| command.replace("http://127.0.0.1:8080", &url);

    shell.export(shown(GUIDE_TEST_PAIR));
    let output = shell.run(&here(shown(GUIDE_REGISTER_STANDALONE))).await;
    assert_eq!(
        exit_code(&output),
        1,
        "the sample's failures: {}",
        said(&output)
    );
    assert!(shell.path("sims.results.csv").is_file());

    let output = shell.run(&here(shown(GUIDE_EXPORT_FILE))).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert_eq!(csv_file(&shell.path("account.csv")).len(), 200);

    let output = shell.run(&here(shown(GUIDE_EXPORT_STDOUT))).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let printed = stdout(&output);
    let shown_export = block_containing(GUIDE, "sid,iccid,status,fleet_sid,unique_name");
    assert_eq!(printed.lines().next(), Some(shown_export[0]));
    for line in &shown_export[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        let found = printed
            .lines()
            .find(|printed| printed.contains(fields[1]))
            .unwrap_or_else(|| panic!("{} is not exported", fields[1]));
        let printed_fields: Vec<&str> = found.split(',').collect();
        assert_eq!(
            (printed_fields[2], printed_fields[3], printed_fields[7]),
            (fields[2], fields[3], fields[7]),
            "{found}"
        );
    }

    // Behind the file's back, as the guide says: one SIM moved to another Fleet, one
    // activated, one registered that the file never saw.
    let results = csv_file(&shell.path("sims.results.csv"));
    let sid_of =
        |iccid: &str| results.iter().find(|row| row["iccid"] == iccid).unwrap()["sid"].clone();
    let http = reqwest::Client::new();
    let post = |path: String, form: Vec<(&'static str, String)>| {
        http.post(format!("{url}{path}"))
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
            .form(&form)
            .send()
    };
    let moved = sid_of("89883070000042100006");
    let activated = sid_of("89883070000042100014");
    let answer = post(format!("/v1/Sims/{moved}"), vec![("Fleet", "bench".into())])
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let answer = post(
        format!("/v1/Sims/{activated}"),
        vec![("Status", "active".into())],
    )
    .await
    .unwrap();
    assert!(answer.status().is_success());
    let extra = "89883070000099900001";
    let answer = post(
        "/v1/Sims".to_string(),
        vec![
            ("Iccid", extra.into()),
            ("RegistrationCode", registration_code_for(extra)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 201);
    // The status change takes effect after the emulator's update delay: wait for it.
    for polls in 0.. {
        assert!(polls < 3000, "the status change never took effect");
        let sim: serde_json::Value = http
            .get(format!("{url}/v1/Sims/{activated}"))
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if sim["status"] == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let output = shell.run(&here(shown(GUIDE_RECONCILE_ALL))).await;
    assert_eq!(exit_code(&output), 1, "{}", said(&output));
    let shown_report = block_containing(GUIDE, "sims.results.csv: 201 SIMs in the file");
    assert_eq!(
        mask_sim_sids(&stdout(&output)),
        mask_sim_sids(&format!("{}\n", shown_report.join("\n"))),
    );

    // --fleet: the extra SIM is in no Fleet, so only the two differences remain.
    let output = shell.run(&here(shown(GUIDE_RECONCILE_FLEET))).await;
    assert_eq!(exit_code(&output), 1, "{}", said(&output));
    assert!(
        stdout(&output).contains("  extra           0 (in Fleet field-devices)\n"),
        "{}",
        said(&output)
    );
    assert!(!stdout(&output).contains(extra), "{}", said(&output));

    // The jq line prints the two SIMs that differ, one object each.
    let command = here(shown(GUIDE_RECONCILE_JQ));
    let output = if Path::new("/usr/bin/jq").exists() || Path::new("/bin/jq").exists() {
        shell.run(&command).await
    } else {
        // Without jq, its filter is applied here to what the command hands it.
        let output = shell.run(command.split(" | jq").next().unwrap()).await;
        let kept: String = stdout(&output)
            .lines()
            .filter(|line| line.contains(r#""verdict":"differs""#))
            .map(|line| format!("{line}\n"))
            .collect();
        Output {
            stdout: kept.into_bytes(),
            ..output
        }
    };
    let differs: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(differs.len(), 2, "{}", said(&output));
    assert!(differs.iter().all(|sim| sim["verdict"] == "differs"));
    emulator.kill().await.unwrap();
    drop(banner_lines);
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_completions_and_man_page_install_as_written() {
    let shell = Shell::new();
    let block = block_containing(GUIDE, "# bash (per user");
    let not_run: Vec<&str> = NOT_RUN.iter().map(|(command, _)| *command).collect();
    let script: Vec<&str> = block
        .iter()
        .copied()
        .filter(|line| !not_run.contains(&line.trim()))
        .collect();
    for command in RUN_IN_BLOCKS.iter().take(4) {
        assert!(script.contains(command), "{command} in {script:#?}");
    }
    let output = shell.run(&format!("set -e\n{}", script.join("\n"))).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    for installed in [
        ".local/share/bash-completion/completions/supersim-bulk",
        ".zfunc/_supersim-bulk",
        ".config/fish/completions/supersim-bulk.fish",
        ".local/share/man/man1/supersim-bulk.1",
    ] {
        let text = std::fs::read_to_string(shell.home().join(installed)).unwrap();
        assert!(text.contains("supersim-bulk"), "{installed}");
    }
}

/// SIMs for an unattended run, and the folder the recipe's `/srv/sims` stands for.
fn incoming(folder: &Path) {
    let mut csv = String::from("Iccid,RegistrationCode\n");
    for n in 0..4 {
        let (iccid, code) = good_sim(n);
        csv.push_str(&format!("{iccid},{code}\n"));
    }
    std::fs::write(folder.join("incoming.csv"), csv).unwrap();
}

/// Runs `argv` under `env -i` with only `HOME`, `PATH=/usr/bin:/bin` and `extra`.
async fn minimal_env(home: &Path, extra: &[(String, String)], argv: &[String]) -> Output {
    tokio::process::Command::new("/usr/bin/env")
        .arg("-i")
        .arg(format!("HOME={}", home.display()))
        .arg("PATH=/usr/bin:/bin")
        .args(extra.iter().map(|(name, value)| format!("{name}={value}")))
        .args(argv)
        .output()
        .await
        .unwrap()
}

fn last_run(folder: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(folder.join("last-run.json")).unwrap()).unwrap()
}

/// The guide's crontab line, as cron runs it (`/bin/sh -c`, `%` unescaped, a short `PATH`
/// and `HOME`), its credentials from the twilio-cli profile under `HOME`. Only the folder
/// and the binary's path are this machine's, and `--base-url` points it at the stand-in.
#[tokio::test(flavor = "multi_thread")]
async fn cron_line_runs_in_a_minimal_environment() {
    let account = stand_in_account().await;
    let crontab = block_containing(GUIDE, "# m  h  dom mon dow  command");
    let line = crontab
        .iter()
        .find(|line| !line.starts_with('#'))
        .unwrap()
        .to_string();
    assert!(RUN_IN_BLOCKS.contains(&line.as_str()), "{line}");
    let command = line
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    let dir = tempfile::tempdir().unwrap();
    let (home, folder) = (dir.path().join("home"), dir.path().join("srv-sims"));
    std::fs::create_dir_all(home.join(".twilio-cli")).unwrap();
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        home.join(".twilio-cli/config.json"),
        serde_json::json!({"profiles": {"field": {
            "accountSid": STAND_IN_ACCOUNT, "apiKey": STAND_IN_KEY, "apiSecret": STAND_IN_SECRET
        }}})
        .to_string(),
    )
    .unwrap();
    incoming(&folder);
    let command = command
        .replace("/srv/sims", &folder.display().to_string())
        .replace(
            "/usr/local/bin/supersim-bulk register incoming.csv",
            &format!(
                "{} register incoming.csv --base-url {}",
                env!("CARGO_BIN_EXE_supersim-bulk"),
                account.base_url()
            ),
        )
        // cron turns an unescaped % into a newline, and `\%` into `%`.
        .replace("\\%", "%");
    assert!(!command.contains("/usr/local/bin"), "{command}");
    let output = minimal_env(&home, &[], &["/bin/sh".into(), "-c".into(), command]).await;
    let log = std::fs::read_to_string(folder.join("register.log")).unwrap_or_default();
    assert_eq!(exit_code(&output), 0, "{log}");
    let summary = last_run(&folder);
    assert_eq!(summary["end"], "finished", "{summary}");
    assert_eq!(summary["exit_code"], 0, "{summary}");
    assert_eq!(summary["this_run"]["registered"], 4, "{summary}");
    assert!(!log.contains(STAND_IN_SECRET));
}

/// The guide's systemd unit: `ExecStart` run as systemd runs it (no shell, `%%` a `%`, in
/// `WorkingDirectory`, the variables of `EnvironmentFile`, no `PATH` the tool needs).
#[tokio::test(flavor = "multi_thread")]
async fn systemd_unit_runs_in_a_minimal_environment() {
    let account = stand_in_account().await;
    let unit = block_containing(GUIDE, "ExecStart=");
    let setting = |name: &str| {
        unit.iter()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("the unit has no {name}="))
    };
    let exec_start = setting("ExecStart");
    assert!(RUN_IN_BLOCKS.contains(&format!("ExecStart={exec_start}").as_str()));
    // A lone `%` is a specifier systemd cannot resolve: every literal one is doubled.
    assert!(!exec_start.replace("%%", "").contains('%'), "{exec_start}");
    assert_eq!(setting("WorkingDirectory"), "/srv/sims");
    assert_eq!(setting("EnvironmentFile"), "/etc/supersim-bulk.env");
    assert!(
        GUIDE.contains("`/etc/supersim-bulk.env` (mode 0600) holds\n`TWILIO_API_KEY=SK...` and `TWILIO_API_SECRET=...`"),
        "the guide says what the environment file holds"
    );
    let environment = vec![
        ("TWILIO_API_KEY".to_string(), STAND_IN_KEY.to_string()),
        ("TWILIO_API_SECRET".to_string(), STAND_IN_SECRET.to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("srv-sims");
    std::fs::create_dir_all(&folder).unwrap();
    incoming(&folder);
    let mut argv: Vec<String> = exec_start
        .replace("%%", "%")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(argv[0], "/usr/local/bin/supersim-bulk");
    argv[0] = env!("CARGO_BIN_EXE_supersim-bulk").to_string();
    argv.extend(["--base-url".to_string(), account.base_url()]);
    // WorkingDirectory: `env -i` runs in this process's folder, so `cd` first, no shell.
    let mut with_folder = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        "cd \"$0\" && exec \"$@\"".to_string(),
        folder.display().to_string(),
    ];
    with_folder.extend(argv);
    let output = minimal_env(dir.path(), &environment, &with_folder).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let summary = last_run(&folder);
    assert_eq!(summary["end"], "finished", "{summary}");
    assert_eq!(summary["this_run"]["registered"], 4, "{summary}");
}

/// The keys of every object in `value`, by their path, for comparing shapes.
fn key_paths(value: &serde_json::Value, prefix: &str, into: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (key, inner) in map {
            let path = format!("{prefix}{key}");
            // The rows needing a person are examples: their keys depend on the row.
            if path != "needs_a_person.rows" {
                key_paths(inner, &format!("{path}."), into);
            }
            into.insert(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_summary_json_is_what_a_run_writes() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..3).map(good_sim).collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("last-run.json");
    let output = env
        .register(&["--summary-json", summary_path.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let example = block_containing(REFERENCE, "\"elapsed_seconds\": 490.2").join("\n");
    let example: serde_json::Value = serde_json::from_str(&example).unwrap();
    let (mut shown, mut real) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&example, "", &mut shown);
    key_paths(&written, "", &mut real);
    assert_eq!(
        shown, real,
        "the reference's example against a real run's JSON"
    );
    assert!(shown.contains("registered_update_pending"));
}

/// Credentials the API refuses from its first answer: exit 2 and `"end": "error"`, as the
/// reference says; `credentials_refused` is for a refusal once the run has started.
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_end_as_the_reference_says() {
    assert!(REFERENCE.contains(
        "| `credentials_refused` | 2 | the API answered 401, or Twilio error 20003 with any status, after the run had started (credentials revoked or rotated mid-run); the messages name the status and code it sent (`the API refused the credentials (HTTP 403, Twilio error 20003)`). Refused by the preflight, before any SIM is sent, the run never starts: `\"end\": \"error\"`, with the refusal in `reason` |"
    ));
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let summary_path = env.dir.path().join("last-run.json");
    let output = env
        .register_with_env(
            &["--summary-json", summary_path.to_str().unwrap()],
            &[
                ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
                ("TWILIO_AUTH_TOKEN", "not-the-token"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["end"], "error", "{summary}");
    assert_eq!(summary["exit_code"], 2, "{summary}");
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("the API refused the credentials"),
        "{summary}"
    );
    let keys: BTreeSet<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["end", "exit_code", "reason", "tool", "version"]),
        "as the reference lists them"
    );
    assert!(!summary.to_string().contains("not-the-token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_and_the_metrics_file_as_the_docs_show_them() {
    // The README's rehearsal with a report: every 97th row with a code a rehearsal refuses
    // (it starts `WR0NG`, as the sample's refused row), so the run ends 1 (rows need a
    // person) as the picture beside it shows, and the page is written.
    let shell = Shell::new();
    let mut csv = String::from("Iccid,RegistrationCode\n");
    for n in 0..300 {
        let (iccid, code) = good_sim(n);
        let code = if n % 97 == 96 {
            format!("WR0NG{n:05}")
        } else {
            code
        };
        csv.push_str(&format!("{iccid},{code}\n"));
    }
    std::fs::write(shell.path("rehearsal.csv"), &csv).unwrap();
    let output = shell.run(shown(README_REPORT_REHEARSAL)).await;
    assert_eq!(exit_code(&output), 1, "{}", said(&output));
    let page = std::fs::read_to_string(shell.path("rehearsal.html")).unwrap();
    assert!(page.contains("<svg"), "the report has its charts");
    // The needing-a-person table lists each refused row by its ICCID (the outcome table
    // would name `rejected` whether or not a row was).
    for n in [96, 193, 290] {
        let (iccid, _) = good_sim(n);
        assert!(page.contains(&iccid), "refused row {n} is in the report");
    }
    assert!(
        !page.contains(&good_sim(95).0),
        "a registered row is not listed"
    );

    // The guide's report and metrics lines against a stand-in account; the collector's
    // folder is one of the test's own.
    let account = stand_in_account().await;
    let mut shell = Shell::new();
    shell.set("SUPERSIM_BASE_URL", &account.base_url());
    shell.export(shown(GUIDE_CREDENTIALS));
    let mut csv = String::from("Iccid,RegistrationCode\n");
    for n in 0..3 {
        let (iccid, code) = good_sim(n);
        csv.push_str(&format!("{iccid},{code}\n"));
    }
    std::fs::write(shell.path("incoming.csv"), &csv).unwrap();
    let output = shell.run(shown(GUIDE_REPORT)).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    assert!(shell.path("last-run.json").is_file());
    let page = std::fs::read_to_string(shell.path("last-run.html")).unwrap();
    assert!(page.contains("<svg"), "the report has its charts");

    let textfile = shell.path("textfile");
    std::fs::create_dir_all(&textfile).unwrap();
    let command = shown(GUIDE_METRICS).replace(
        "/var/lib/node_exporter/textfile",
        &textfile.display().to_string(),
    );
    let output = shell.run(&command).await;
    assert_eq!(exit_code(&output), 0, "{}", said(&output));
    let metrics = std::fs::read_to_string(textfile.join("supersim_bulk.prom")).unwrap();
    assert!(
        metrics.contains("supersim_bulk_last_run_exit_code 0"),
        "{metrics}"
    );
}
