//! A small test environment: an emulator on a free loopback port, a temporary folder for
//! input and results, and a way to run the real `supersim-bulk` binary against them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use supersim_bulk::emulator::{
    Emulator, EmulatorConfig, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, registration_code_for,
};

pub struct TestEnv {
    pub emulator: Emulator,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    /// An emulator that holds every request `latency`, as most tests of timing want.
    pub async fn with_latency(latency: std::time::Duration) -> Self {
        Self::with_config(EmulatorConfig {
            latency,
            ..EmulatorConfig::default()
        })
        .await
    }

    pub async fn with_config(config: EmulatorConfig) -> Self {
        let emulator = Emulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("emulator starts");
        TestEnv {
            emulator,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn input_path(&self) -> PathBuf {
        self.dir.path().join("sims.csv")
    }

    pub fn results_path(&self) -> PathBuf {
        self.dir.path().join("sims.results.csv")
    }

    /// Writes `sims.csv` with the given (ICCID, code) rows under a standard header.
    pub fn write_input(&self, rows: &[(String, String)]) {
        let mut text = String::from("Iccid,RegistrationCode\n");
        for (iccid, code) in rows {
            text.push_str(&format!("{iccid},{code}\n"));
        }
        std::fs::write(self.input_path(), text).unwrap();
    }

    /// Runs `supersim-bulk register sims.csv --base-url <emulator>` with fast backoff and
    /// the emulator's test credentials, plus `extra` flags.
    pub async fn register(&self, extra: &[&str]) -> Output {
        self.register_with_env(
            extra,
            &[
                ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
                ("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN),
            ],
        )
        .await
    }

    pub async fn register_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.register_command(extra, env);
        command.output().await.expect("the binary runs")
    }

    /// The `register` command line of [`TestEnv::register_with_env`], not yet started.
    pub fn register_command(
        &self,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        self.register_command_for(self.input_path().as_os_str(), extra, env)
    }

    /// [`TestEnv::register_command`] with another input argument (`-` for standard input).
    pub fn register_command_for(
        &self,
        input: &std::ffi::OsStr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut command = binary_command();
        command
            .arg("register")
            .arg(input)
            .args(["--base-url", &self.emulator.base_url()])
            .args([
                "--rate",
                "1000",
                "--backoff-base",
                "5ms",
                "--backoff-cap",
                "50ms",
            ])
            .args(extra);
        command.envs(env.iter().copied());
        command
    }

    /// The emulator's test credentials, as [`TestEnv::register`] passes them.
    pub fn test_credentials() -> [(&'static str, &'static str); 2] {
        [
            ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN),
        ]
    }

    /// Writes `sims.csv` exactly as given (for extra columns such as `fleet`).
    pub fn write_csv(&self, text: &str) {
        std::fs::write(self.input_path(), text).unwrap();
    }

    /// The results file as rows of (column name -> value).
    pub fn results(&self) -> Vec<std::collections::HashMap<String, String>> {
        csv_rows(&std::fs::read(self.results_path()).unwrap())
    }

    /// The last row of each ICCID: what the results file says about each SIM.
    pub fn last_rows(
        &self,
    ) -> std::collections::HashMap<String, std::collections::HashMap<String, String>> {
        self.results()
            .into_iter()
            .map(|row| (row["iccid"].clone(), row))
            .collect()
    }
}

/// Every variable through which an HTTP client may pick up a proxy. The binary must not see
/// them unless a test sets them, so the suite passes on a machine that exports a proxy.
pub const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The `supersim-bulk` binary with no arguments yet, and none of the variables that would
/// change what it does from the test's environment: credentials, region and edge, the base
/// URL, the log filter and every proxy variable. Tests add back what they mean to test.
pub fn binary_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_supersim-bulk"));
    for var in [
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_REGION",
        "TWILIO_EDGE",
        "SUPERSIM_BASE_URL",
        "RUST_LOG",
        // twilio-cli's profiles: an operator's own config must not stand in for a test's
        // credentials (HOME only leads there).
        "TWILIO_PROFILE",
        "TWILIO_CONFIG_DIR",
        "HOME",
    ]
    .into_iter()
    .chain(PROXY_VARS)
    {
        command.env_remove(var);
    }
    command
}

/// Held while a test measures how a run behaves in time (the limit found, the 429s met):
/// such runs go one at a time within a test binary, since side by side on two cores each
/// would read the others' scheduling delays as the account's behaviour.
pub async fn timing_run() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

/// The records of a CSV with a header, as rows of (column name -> value).
pub fn csv_rows(bytes: &[u8]) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(record.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// A well-formed registration code that is not `code` (the emulator refuses it: 83002).
pub fn wrong_code(code: &str) -> String {
    let first = if code.starts_with('Z') { 'Y' } else { 'Z' };
    format!("{first}{}", &code[1..])
}

/// A valid Super SIM ICCID, distinct per `n`.
pub fn iccid(n: u32) -> String {
    format!("898830700000{n:08}")
}

/// (ICCID, the code the emulator accepts) for SIM number `n`.
pub fn good_sim(n: u32) -> (String, String) {
    let iccid = iccid(n);
    let code = registration_code_for(&iccid);
    (iccid, code)
}

pub fn exit_code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl TestEnv {
    /// Starts `supersim-bulk register` in the background with the same arguments as
    /// [`TestEnv::register`], for tests that signal or kill it.
    pub fn spawn_register(&self, extra: &[&str]) -> tokio::process::Child {
        let mut command = self.register_command(
            extra,
            &[
                ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
                ("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN),
            ],
        );
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("the binary starts")
    }

    /// Complete data rows in the results file so far (0 if it does not exist yet).
    pub fn results_rows_so_far(&self) -> usize {
        std::fs::read(self.results_path())
            .map(|bytes| {
                bytes
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    .saturating_sub(1)
            })
            .unwrap_or(0)
    }
}

/// Polls `condition` until it holds; panics after a generous limit so a broken build fails
/// instead of hanging. This waits for an event, it does not time anything.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("gave up waiting for: {what}");
}

impl TestEnv {
    /// Runs `supersim-bulk SUBCOMMAND --base-url <emulator> --rate 1000 EXTRA...` (export,
    /// reconcile) with the emulator's test credentials, in the test folder.
    pub async fn account_command(&self, subcommand: &str, extra: &[&str]) -> Output {
        let mut command = binary_command();
        command
            .arg(subcommand)
            .args(extra)
            .args(["--base-url", &self.emulator.base_url(), "--rate", "1000"])
            .current_dir(self.dir.path())
            .envs(Self::test_credentials());
        command.output().await.expect("the binary runs")
    }
}

/// The tool's subcommands, read from its clap definition (not `help`), so a subcommand
/// added later is covered by every test that walks them.
pub fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    let names: Vec<String> = supersim_bulk::cli::Cli::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    assert!(names.iter().any(|name| name == "register"), "{names:?}");
    names
}

/// A success whose resource has these fields altered (another `sid`, `iccid` or
/// `account_sid`): an answer that does not describe what was asked for.
pub fn altered(fields: &[(&str, &str)]) -> supersim_bulk::emulator::Fault {
    supersim_bulk::emulator::Fault::AlteredAnswer {
        fields: fields
            .iter()
            .map(|(field, value)| (field.to_string(), value.to_string()))
            .collect(),
    }
}

/// No two rows of `rows` (each keyed by its ICCID) hold the same SID.
pub fn assert_sids_unique(
    rows: &std::collections::HashMap<String, std::collections::HashMap<String, String>>,
) {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (iccid, row) in rows {
        let sid = row["sid"].as_str();
        if sid.is_empty() {
            continue;
        }
        if let Some(other) = seen.insert(sid, iccid) {
            panic!("{other} and {iccid} both hold {sid}: {rows:?}");
        }
    }
}

/// The JSON file at `path` (a `--summary-json` file), parsed.
pub fn summary_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("the summary {} was written: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Sends `which` (`-INT`, `-TERM`, `-HUP`, `-STOP`, `-CONT`) to process `pid` with kill(1).
pub fn signal(pid: u32, which: &str) {
    let sent = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {which} {pid}");
}
