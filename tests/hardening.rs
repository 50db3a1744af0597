//! Regression tests for the holes found by trying to break the tool (issue 10): secrets sent
//! through a proxy or echoed whole, files that are not ours clobbered, answers recorded
//! wrongly, rows that vanish, and flags that make a run meaningless. Each test runs the real
//! binary against the emulator (or, where the emulator cannot answer the way a test needs, a
//! scripted stand-in for the API), over loopback.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestEnv, binary_command, exit_code, good_sim, stderr, stdout, wait_until};
use serde_json::{Value, json};
use supersim_bulk::emulator::{Fault, TEST_ACCOUNT_SID};
use supersim_bulk::results::COLUMNS;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

type Row = HashMap<String, String>;

/// Runs `register` as [`TestEnv::register`] does, from the folder `cwd`, so relative paths
/// in `extra` are taken from there.
async fn register_in(env: &TestEnv, cwd: &Path, extra: &[&str]) -> Output {
    let mut command = env.register_command(extra, &TestEnv::test_credentials());
    command.current_dir(cwd);
    command.output().await.expect("the binary runs")
}

/// The results CSV at `path`, read strictly (every record as wide as the header).
fn read_results(path: &Path) -> Result<Vec<Row>, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| e.to_string())?;
            Ok(headers
                .iter()
                .map(String::from)
                .zip(record.iter().map(String::from))
                .collect())
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// `HCHJZXRPUC` -> `HC******UC`: the first two and last two characters, a star for each
/// one between.
fn masked(code: &str) -> String {
    let n = code.chars().count();
    let head: String = code.chars().take(2).collect();
    let tail: String = code.chars().skip(n - 2).collect();
    format!("{head}{}{tail}", "*".repeat(n - 4))
}

fn everything(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

// ---------------------------------------------------------------------------------------
// A scripted stand-in for the API, for answers the emulator cannot give (a 2xx whose body
// is not a Sim) and for the arrival time of every request.

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    iccid: Option<String>,
    status: u16,
}

/// What the stand-in answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status,
            }),
        )
    }
}

/// Decides the answer to a request from the request and every earlier one.
type Script = dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync;

struct ScriptedApi {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct ScriptState {
    script: Box<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedApi {
    async fn start(script: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(ScriptState {
            script: Box::new(script),
            seen: Arc::clone(&seen),
        });
        let router = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        ScriptedApi { addr, seen }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    axum::extract::State(state): axum::extract::State<Arc<ScriptState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let at = Instant::now();
    let fields: &[u8] = if method == axum::http::Method::POST {
        &body
    } else {
        uri.query().unwrap_or_default().as_bytes()
    };
    let iccid = url::form_urlencoded::parse(fields)
        .find(|(name, _)| name == "Iccid")
        .map(|(_, value)| value.into_owned());
    let mut seen = state.seen.lock().unwrap();
    let mut request = Seen {
        at,
        method: method.to_string(),
        path: uri.path().to_string(),
        iccid,
        status: 0,
    };
    let reply = (state.script)(&request, &seen);
    request.status = reply.status;
    seen.push(request);
    let mut builder = axum::http::Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type);
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value);
    }
    builder.body(axum::body::Body::from(reply.body)).unwrap()
}

/// The SID the stand-in gives a SIM: `HS` and its ICCID as 32 hex digits.
fn scripted_sid(iccid: &str) -> String {
    format!("HS{:032x}", iccid.parse::<u128>().unwrap())
}

fn scripted_sim(iccid: &str) -> Value {
    json!({
        "sid": scripted_sid(iccid),
        "unique_name": null,
        "account_sid": TEST_ACCOUNT_SID,
        "iccid": iccid,
        "status": "new",
        "fleet_sid": null,
        "date_created": "2026-01-01T00:00:00Z",
        "date_updated": "2026-01-01T00:00:00Z",
        "url": format!("https://supersim.twilio.com/v1/Sims/{}", scripted_sid(iccid)),
    })
}

/// `GET /v1/Sims?Iccid=`: the SIM when a `POST /v1/Sims` for it was seen (a 2xx means the
/// server registered it), else an empty list; in the shape of Twilio's list answers.
fn scripted_lookup(request: &Seen, earlier: &[Seen]) -> Reply {
    let iccid = request.iccid.clone().unwrap_or_default();
    let registered = earlier
        .iter()
        .any(|s| s.method == "POST" && s.iccid.as_deref() == Some(&iccid) && s.status < 300);
    let sims: Vec<Value> = if registered {
        vec![scripted_sim(&iccid)]
    } else {
        Vec::new()
    };
    let url = format!("https://supersim.twilio.com/v1/Sims?Iccid={iccid}&PageSize=50&Page=0");
    Reply::json(
        200,
        json!({
            "sims": sims,
            "meta": {
                "first_page_url": url,
                "key": "sims",
                "next_page_url": null,
                "page": 0,
                "page_size": 50,
                "previous_page_url": null,
                "url": url,
            },
        }),
    )
}

// ---------------------------------------------------------------------------------------
// 1 and 16: proxies.

/// A listener posing as an HTTP proxy: it counts connections and keeps what they sent.
struct FakeProxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl FakeProxy {
    async fn start() -> FakeProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, store) = (Arc::clone(&connections), Arc::clone(&received));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    if let Ok(n) = stream.read(&mut buffer).await {
                        store.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                    // Dropped unanswered: a client that used the proxy sees its request fail.
                });
            }
        });
        FakeProxy {
            addr,
            connections,
            received,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn first_bytes(&self) -> String {
        let received = self.received.lock().unwrap();
        String::from_utf8_lossy(&received[..received.len().min(200)]).into_owned()
    }
}

/// Issue 10 item 1: a proxy variable must never route loopback requests (credentials, codes) through the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_variables_never_carry_requests_to_a_loopback_api() {
    let mut leaks = Vec::new();
    for (n, var) in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .enumerate()
    {
        let env = TestEnv::new().await;
        let proxy = FakeProxy::start().await;
        let sims: Vec<_> = (0..3)
            .map(|i| good_sim(10_000 + 10 * n as u32 + i))
            .collect();
        env.write_input(&sims);
        let proxy_url = proxy.url();
        let vars: Vec<(&str, &str)> = TestEnv::test_credentials()
            .into_iter()
            .chain([(var, proxy_url.as_str())])
            .collect();
        let output = env.register_with_env(&["--max-attempts", "2"], &vars).await;
        let registered = env
            .results()
            .iter()
            .filter(|row| row["outcome"] == "registered")
            .count();
        if proxy.connections() > 0 || exit_code(&output) != 0 || registered != sims.len() {
            leaks.push(format!(
                "{var}: the proxy got {} connections (first bytes {:?}); exit {}, {registered} of {} registered",
                proxy.connections(),
                proxy.first_bytes(),
                exit_code(&output),
                sims.len()
            ));
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// Issue 10 item 1: `register --emulator` (which may use the real credentials) never sends through a proxy either.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_variables_never_carry_requests_to_the_built_in_emulator() {
    let env = TestEnv::new().await;
    let proxy = FakeProxy::start().await;
    let sims: Vec<_> = (0..3).map(|i| good_sim(10_100 + i)).collect();
    env.write_input(&sims);
    let output = binary_command()
        .arg("register")
        .arg(env.input_path())
        .args(["--emulator", "--rate", "1000", "--max-attempts", "2"])
        .args(["--backoff-base", "5ms", "--backoff-cap", "50ms"])
        .env("HTTP_PROXY", proxy.url())
        .env("http_proxy", proxy.url())
        .env("ALL_PROXY", proxy.url())
        .output()
        .await
        .unwrap();
    assert_eq!(
        proxy.connections(),
        0,
        "the proxy received: {:?}",
        proxy.first_bytes()
    );
    assert_eq!(exit_code(&output), 0, "{}", everything(&output));
    assert!(
        stdout(&output).contains("registered          3"),
        "{}",
        stdout(&output)
    );
}

/// Issue 10 item 16: the test harness clears every proxy variable from the binary's environment.
#[tokio::test(flavor = "multi_thread")]
async fn the_test_harness_clears_every_proxy_variable() {
    let env = TestEnv::new().await;
    let command = env.register_command(&[], &TestEnv::test_credentials());
    let envs: HashMap<_, _> = command.as_std().get_envs().collect();
    for var in common::PROXY_VARS {
        assert_eq!(
            envs.get(std::ffi::OsStr::new(var)),
            Some(&None),
            "{var} must be removed from the child's environment"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2: swapped columns.

/// Issue 10 item 2: codes in the ICCID column are masked everywhere and the swap is named.
#[tokio::test(flavor = "multi_thread")]
async fn swapped_columns_never_echo_a_registration_code_whole() {
    const SWAPPED: &str = "the ICCID and registration code columns look swapped";
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..4).map(|n| good_sim(10_200 + n)).collect();
    let mut text = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        text.push_str(&format!("{code},{iccid}\n"));
    }
    env.write_csv(&text);

    let mut seen = String::new();
    let mut default_level = String::new();
    let mut rows = Vec::new();
    for verbosity in [None, Some("-v")] {
        let _ = std::fs::remove_file(env.results_path());
        let output = env.register(verbosity.as_slice()).await;
        let results = std::fs::read_to_string(env.results_path()).unwrap_or_default();
        if verbosity.is_none() {
            default_level = format!("{}{results}", everything(&output));
            rows = env.results();
        }
        seen.push_str(&everything(&output));
        seen.push_str(&results);
    }
    let validate = binary_command()
        .arg("validate")
        .arg(env.input_path())
        .output()
        .await
        .unwrap();
    let validate_text = everything(&validate);
    seen.push_str(&validate_text);

    for (_, code) in &sims {
        assert!(
            !seen.contains(code.as_str()),
            "registration code {code} was echoed whole:\n{seen}"
        );
    }
    for (line, (_, code)) in sims.iter().enumerate() {
        let row = rows
            .iter()
            .find(|row| row["line"] == (line + 2).to_string())
            .expect("a row per input line");
        assert_eq!(row["outcome"], "invalid");
        assert_eq!(row["iccid"], masked(code), "the results show it masked");
    }
    assert!(default_level.contains(SWAPPED), "register: {default_level}");
    assert!(validate_text.contains(SWAPPED), "validate: {validate_text}");
}

// ---------------------------------------------------------------------------------------
// 3 and 4: files that are not ours.

/// The input of the path tests: two good SIMs, and no newline after the last row.
fn input_without_final_newline(env: &TestEnv, first: u32) -> Vec<u8> {
    let (a, a_code) = good_sim(first);
    let (b, b_code) = good_sim(first + 1);
    let bytes = format!("Iccid,RegistrationCode\n{a},{a_code}\n{b},{b_code}").into_bytes();
    std::fs::write(env.input_path(), &bytes).unwrap();
    bytes
}

/// Issue 10 item 3: `-o` naming the input (by any spelling) is refused and the input is left intact.
#[tokio::test(flavor = "multi_thread")]
async fn output_that_is_the_input_is_refused_and_the_input_left_intact() {
    let mut failures = Vec::new();
    for (n, spelling) in ["same path", "./sub/../sims.csv", "symlink"]
        .into_iter()
        .enumerate()
    {
        let env = TestEnv::new().await;
        let before = input_without_final_newline(&env, 10_300 + 10 * n as u32);
        std::fs::create_dir(env.dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(env.input_path(), env.dir.path().join("link.csv")).unwrap();
        let input = env.input_path();
        let output_arg = match spelling {
            "same path" => input.to_str().unwrap(),
            "symlink" => "link.csv",
            other => other,
        };
        let output = register_in(&env, env.dir.path(), &["-o", output_arg]).await;
        let after = std::fs::read(env.input_path()).unwrap();
        if exit_code(&output) != 2 || after != before || env.emulator.stats().requests != 0 {
            failures.push(format!(
                "-o {spelling}: exit {} (want 2), input {}, {} requests sent; stderr: {}",
                exit_code(&output),
                if after == before {
                    "unchanged"
                } else {
                    "CHANGED"
                },
                env.emulator.stats().requests,
                stderr(&output).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 10 item 3: a foreign `-o` file without a final newline is refused, not truncated and overwritten.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_output_without_final_newline_is_refused_and_left_intact() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(10_400)]);
    let notes = env.dir.path().join("notes.csv");
    std::fs::write(&notes, "hello,world").unwrap();

    let output = env.register(&["-o", notes.to_str().unwrap()]).await;
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "hello,world",
        "the foreign file is untouched"
    );
    assert_eq!(exit_code(&output), 2, "{}", everything(&output));
    assert_eq!(env.emulator.stats().requests, 0);
}

/// A results file `x.results.csv` from an earlier run over two SIMs, then two more SIMs
/// added to the input, so the next run has something to send.
async fn earlier_run_then_more_rows(env: &TestEnv, first: u32) {
    let sims: Vec<_> = (first..first + 2).map(good_sim).collect();
    env.write_input(&sims);
    let done = register_in(env, env.dir.path(), &["-o", "x.results.csv"]).await;
    assert_eq!(exit_code(&done), 0, "{}", everything(&done));
    let sims: Vec<_> = (first..first + 4).map(good_sim).collect();
    env.write_input(&sims);
}

/// Issue 10 item 4: `--failed-out` naming the results file by another spelling is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn failed_out_that_is_the_results_file_by_another_name_is_refused() {
    let mut failures = Vec::new();
    for (n, (failed_out, earlier)) in [
        ("./x.results.csv", true),
        ("./x.results.csv", false),
        ("link.csv", true),
    ]
    .into_iter()
    .enumerate()
    {
        let env = TestEnv::new().await;
        let results = env.dir.path().join("x.results.csv");
        if earlier {
            earlier_run_then_more_rows(&env, 10_500 + 10 * n as u32).await;
        } else {
            env.write_input(&[good_sim(10_500 + 10 * n as u32)]);
        }
        std::os::unix::fs::symlink(&results, env.dir.path().join("link.csv")).unwrap();
        let input_before = std::fs::read(env.input_path()).unwrap();
        let results_before = std::fs::read(&results).ok();
        let requests_before = env.emulator.stats().requests;

        let output = register_in(
            &env,
            env.dir.path(),
            &["-o", "x.results.csv", "--failed-out", failed_out],
        )
        .await;
        let sent = env.emulator.stats().requests - requests_before;
        let results_after = std::fs::read(&results).ok();
        let input_after = std::fs::read(env.input_path()).unwrap();
        if exit_code(&output) != 2
            || sent != 0
            || results_after != results_before
            || input_after != input_before
        {
            failures.push(format!(
                "--failed-out {failed_out} (results file existed: {earlier}): exit {} (want 2), \
                 {sent} requests sent, results {}, input {}",
                exit_code(&output),
                if results_after == results_before {
                    "unchanged"
                } else {
                    "CHANGED"
                },
                if input_after == input_before {
                    "unchanged"
                } else {
                    "CHANGED"
                },
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 10 item 4: `--summary-json` naming the input or the results file is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn summary_json_that_is_the_input_or_the_results_file_is_refused() {
    let mut failures = Vec::new();
    for (n, summary) in ["sims.csv", "./sims.csv", "x.results.csv", "./x.results.csv"]
        .into_iter()
        .enumerate()
    {
        let env = TestEnv::new().await;
        earlier_run_then_more_rows(&env, 10_600 + 10 * n as u32).await;
        let results = env.dir.path().join("x.results.csv");
        let input_before = std::fs::read(env.input_path()).unwrap();
        let results_before = std::fs::read(&results).unwrap();
        let requests_before = env.emulator.stats().requests;

        let output = register_in(
            &env,
            env.dir.path(),
            &["-o", "x.results.csv", "--summary-json", summary],
        )
        .await;
        let sent = env.emulator.stats().requests - requests_before;
        let input_same = std::fs::read(env.input_path()).unwrap() == input_before;
        let results_same = std::fs::read(&results).unwrap() == results_before;
        if exit_code(&output) != 2 || sent != 0 || !input_same || !results_same {
            failures.push(format!(
                "--summary-json {summary}: exit {} (want 2), {sent} requests sent, \
                 input unchanged: {input_same}, results unchanged: {results_same}",
                exit_code(&output)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 5: the lock.

/// Issue 10 item 5: a symlink to the results file and its real path are one lock, so the second run exits 75.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_to_the_results_file_shares_its_lock() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..5).map(|n| good_sim(10_700 + n)).collect();
    env.write_input(&sims);
    // The first run's first request is held, so it is running (and holds the lock) for as
    // long as the test needs.
    env.emulator.inject(
        &sims[0].0,
        vec![Fault::StallBeforeCommit(Duration::from_secs(600))],
    );
    let link = env.dir.path().join("link.csv");
    std::os::unix::fs::symlink(env.results_path(), &link).unwrap();

    let mut first = env.spawn_register(&["--concurrency", "1"]);
    wait_until("the first run's first request is in flight", || {
        env.emulator.stats().create_requests >= 1
    })
    .await;

    let second = env
        .register(&["--concurrency", "1", "-o", link.to_str().unwrap()])
        .await;
    let creates = env.emulator.stats().create_requests;
    first.kill().await.unwrap();

    assert_eq!(exit_code(&second), 75, "{}", everything(&second));
    assert_eq!(
        creates, 1,
        "only the first run's held request was sent: one create per SIM at most"
    );
    for (iccid, _) in &sims {
        assert_eq!(
            env.emulator.commits(iccid),
            0,
            "{iccid} registered by the second run"
        );
    }
}

/// Issue 10 item 5: a symlink planted at `<results>.lock` is not followed into another file.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_planted_at_the_lock_path_is_not_followed() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(10_800)]);
    let victim = env.dir.path().join("victim.txt");
    std::fs::write(&victim, "someone else's file\n").unwrap();
    let lock = env.dir.path().join("sims.results.csv.lock");
    std::os::unix::fs::symlink(&victim, &lock).unwrap();

    let output = env.register(&[]).await;
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "someone else's file\n",
        "the file behind the planted symlink was written; {}",
        everything(&output)
    );
    assert_ne!(exit_code(&output), 101, "{}", everything(&output));
}

// ---------------------------------------------------------------------------------------
// 6: files and folders that cannot be written.

/// A folder in `dir` that cannot hold new files: a regular file standing where the folder
/// should be (ENOTDIR, whoever runs the test). Returns the folder's path.
fn impossible_folder(dir: &Path) -> PathBuf {
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, "a file, not a folder\n").unwrap();
    blocker
}

/// A folder with mode 0555, or `None` when this process can write into one anyway (root).
fn read_only_folder(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let folder = dir.join("read-only");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = folder.join("probe");
    if std::fs::write(&probe, "").is_ok() {
        let _ = std::fs::remove_file(&probe);
        return None;
    }
    Some(folder)
}

/// Issue 10 item 6: an output folder that cannot be written is a set-up error (exit 2 naming the path and `-o`), not exit 75.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_output_folder_is_a_setup_error_not_try_again_later() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(10_900)]);
    let mut folders = vec![impossible_folder(env.dir.path())];
    if let Some(folder) = read_only_folder(env.dir.path()) {
        folders.push(folder);
    }
    let mut failures = Vec::new();
    for folder in folders {
        let results = folder.join("results.csv");
        let output = env.register(&["-o", results.to_str().unwrap()]).await;
        let err = stderr(&output);
        let names_path = err.contains(results.to_str().unwrap());
        let names_fix = err.contains("-o ") || err.contains("--output");
        if exit_code(&output) != 2 || !names_path || !names_fix {
            failures.push(format!(
                "-o {}: exit {} (want 2), names the path: {names_path}, names -o: {names_fix}; \
                 stderr: {}",
                results.display(),
                exit_code(&output),
                err.trim()
            ));
        }
    }
    assert_eq!(env.emulator.stats().requests, 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 10 item 6: a `--summary-json` that cannot be written is refused with exit 2 before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_summary_json_is_refused_before_anything_is_sent() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(11_000), good_sim(11_001)]);
    let summary = impossible_folder(env.dir.path()).join("summary.json");

    let output = env
        .register(&["--summary-json", summary.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", everything(&output));
    assert!(
        stderr(&output).contains("summary.json"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().requests, 0, "nothing was sent");
}

/// Issue 10 item 6: a `--failed-out` that cannot be written is refused with exit 2 before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_failed_out_is_refused_before_anything_is_sent() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(11_100), good_sim(11_101)]);
    let failed_out = impossible_folder(env.dir.path()).join("fix.csv");

    let output = env
        .register(&["--failed-out", failed_out.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", everything(&output));
    assert!(stderr(&output).contains("fix.csv"), "{}", stderr(&output));
    assert_eq!(env.emulator.stats().requests, 0, "nothing was sent");
}

// ---------------------------------------------------------------------------------------
// 7: a 2xx that is not a Sim.

/// Runs one SIM against a stand-in that answers every `POST /v1/Sims` with a 200 and `body`
/// (registering the SIM: a lookup finds it), and returns its results row and its SID.
async fn register_against_a_2xx(content_type: &'static str, body: &'static str) -> (Row, String) {
    let env = TestEnv::new().await;
    let sim = good_sim(11_200);
    env.write_input(std::slice::from_ref(&sim));
    let api = ScriptedApi::start(move |request, earlier| match request.method.as_str() {
        "POST" if request.path == "/v1/Sims" => Reply {
            status: 200,
            headers: Vec::new(),
            content_type,
            body: body.to_string(),
        },
        "GET" if request.path == "/v1/Sims" => scripted_lookup(request, earlier),
        _ => Reply::twilio_error(404, 20404, "not found"),
    })
    .await;
    let output = env
        .register(&["--base-url", &api.base_url(), "--max-attempts", "2"])
        .await;
    let rows = env.results();
    assert_eq!(rows.len(), 1, "{}", everything(&output));
    (rows[0].clone(), scripted_sid(&sim.0))
}

fn assert_not_wrongly_recorded(row: &Row, sid: &str) {
    assert_ne!(
        row["outcome"], "rejected",
        "a 2xx is not a refusal: {row:?}"
    );
    if row["outcome"] == "registered" || row["outcome"] == "already_registered" {
        assert_eq!(
            row["sid"], sid,
            "a success row carries the SIM's real SID: {row:?}"
        );
    }
}

/// Issue 10 item 7: a 2xx whose body is not JSON is an answer in doubt, never `rejected`.
#[tokio::test(flavor = "multi_thread")]
async fn a_2xx_whose_body_is_not_json_is_never_recorded_rejected() {
    let (row, sid) = register_against_a_2xx("text/html", "<html>oops</html>").await;
    assert_not_wrongly_recorded(&row, &sid);
}

/// Issue 10 item 7: a 2xx JSON object without a `sid` is never recorded `registered` with an empty SID.
#[tokio::test(flavor = "multi_thread")]
async fn a_2xx_json_without_a_sid_is_never_recorded_registered_without_one() {
    let (row, sid) = register_against_a_2xx("application/json", "{}").await;
    assert_not_wrongly_recorded(&row, &sid);
}

// ---------------------------------------------------------------------------------------
// 8: rows that vanish.

/// Issue 10 item 8: a `--wait-timeout` that overflows is refused at parse time (exit 2), not a swallowed panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_wait_timeout_that_overflows_is_refused_at_parse_time() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(11_300)]);
    let output = env
        .register(&[
            "--status",
            "ready",
            "--wait",
            "--wait-timeout",
            "500000000000y",
        ])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", everything(&output));
    assert!(
        stderr(&output).contains("--wait-timeout"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().requests, 0);
}

/// Issue 10 item 8: a row whose earlier `registered` row has no SID still ends in a written row or a counted skip.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_registered_row_without_a_sid_does_not_vanish() {
    let env = TestEnv::new().await;
    let sim = good_sim(11_400);
    env.emulator.preregister(&sim.0);
    env.write_input(std::slice::from_ref(&sim));
    std::fs::write(
        env.results_path(),
        format!(
            "{}\n2,{},registered,,new,,,,,1,2026-01-01T00:00:00Z,,,,,\n",
            COLUMNS.join(","),
            sim.0
        ),
    )
    .unwrap();
    let summary_path = env.dir.path().join("summary.json");

    let output = env
        .register(&[
            "--fleet",
            "field-devices",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ])
        .await;
    let summary = read_json(&summary_path);
    let written: u64 = summary["this_run"]
        .as_object()
        .map(|counts| counts.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let skipped = summary["skipped_as_finished"].as_u64().unwrap_or(0);
    assert_eq!(
        written + skipped,
        1,
        "the one planned row is written or counted; exit {}; {summary}\n{}",
        exit_code(&output),
        everything(&output)
    );
    if written == 1 {
        let rows = env.results();
        let last = rows.last().unwrap();
        assert_eq!(last["iccid"], sim.0);
        assert!(!last["sid"].is_empty(), "{last:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 9: Retry-After pauses the pool.

/// Runs four SIMs with four workers at two requests per second against a stand-in that
/// answers the first create with `status` and `Retry-After: 2`, and returns what the
/// stand-in saw after that answer and within those two seconds.
///
/// The rate cap spaces sends half a second apart and the first create is the run's first
/// request, so no other request can be on its way when the answer arrives (unless the
/// client takes half a second to read it). Any request arriving in the window was sent
/// during the pause. The window is a lower bound on time: a slower machine only makes a
/// correct client's requests later.
async fn requests_during_a_retry_after(status: u16, code: u32) -> Vec<Seen> {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..4).map(|n| good_sim(11_500 + n)).collect();
    env.write_input(&sims);
    let api = ScriptedApi::start(move |request, earlier| {
        let first_create = earlier.iter().all(|s| s.method != "POST");
        match request.method.as_str() {
            "POST" if first_create => {
                let mut reply = Reply::twilio_error(status, code, "slow down");
                reply.headers.push(("retry-after", "2".to_string()));
                reply
            }
            "POST" => Reply::json(
                201,
                scripted_sim(request.iccid.as_deref().unwrap_or_default()),
            ),
            "GET" => scripted_lookup(request, earlier),
            _ => Reply::twilio_error(404, 20404, "not found"),
        }
    })
    .await;
    let output = env
        .register(&[
            "--base-url",
            &api.base_url(),
            "--concurrency",
            "4",
            "--rate",
            "2",
        ])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", everything(&output));
    let seen = api.seen();
    let trigger = seen
        .iter()
        .find(|s| s.status == status)
        .expect("the first create was answered with the pause");
    let pause_end = trigger.at + Duration::from_secs(2);
    seen.iter()
        .filter(|s| s.at > trigger.at && s.at < pause_end)
        .cloned()
        .collect()
}

/// Issue 10 item 9: a 503 with Retry-After pauses every worker, not only the one that got it.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_a_503_pauses_the_whole_pool() {
    let during = requests_during_a_retry_after(503, 20503).await;
    assert!(
        during.is_empty(),
        "{} requests were sent during the pause: {during:?}",
        during.len()
    );
}

/// Issue 10 item 9: a 429 with Retry-After also holds workers already waiting for a slot or a rate token.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_a_429_holds_workers_already_at_the_gate() {
    let during = requests_during_a_retry_after(429, 20429).await;
    assert!(
        during.is_empty(),
        "{} requests were sent during the pause: {during:?}",
        during.len()
    );
}

// ---------------------------------------------------------------------------------------
// 11: torn-tail repair.

/// Issue 10 item 11, as issue 17 item 6 changed it: a last row without its final newline is
/// torn whatever its width (it may have been cut inside `account_sid`): it is cut off and its
/// SIM found again, with its real SID and without a second registration.
#[tokio::test(flavor = "multi_thread")]
async fn a_last_row_without_its_final_newline_is_cut_and_its_sim_found_again() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..3).map(|n| good_sim(11_600 + n)).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", everything(&first));
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    std::fs::write(env.results_path(), text.trim_end_matches('\n')).unwrap();
    let creates_before = env.emulator.stats().create_requests;

    let again = env.register(&[]).await;
    assert_eq!(exit_code(&again), 0, "{}", everything(&again));
    assert_eq!(
        env.emulator.stats().create_requests - creates_before,
        1,
        "only the torn row's SIM is sent again"
    );
    let rows = read_results(&env.results_path()).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (iccid, _) in &sims {
        let row = rows.iter().find(|row| &row["iccid"] == iccid).unwrap();
        assert!(
            ["registered", "already_registered"].contains(&row["outcome"].as_str()),
            "{row:?}"
        );
        assert_eq!(row["sid"], env.emulator.sim(iccid).unwrap().sid);
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}

/// Issue 10 item 11: a tear inside a quoted field holding a newline is cut back to the last whole record, so the file resumes.
#[tokio::test(flavor = "multi_thread")]
async fn a_tear_inside_a_quoted_multiline_field_leaves_a_resumable_file() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..4).map(|n| good_sim(11_700 + n)).collect();
    env.write_input(&sims[..3]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", everything(&first));
    // The fourth SIM's row was being written when the process died, inside a quoted
    // message that holds a line break.
    let mut bytes = std::fs::read(env.results_path()).unwrap();
    bytes.extend_from_slice(
        format!(
            "5,{},gave_up,,,,20500,\"An internal server error\nhas occurr",
            sims[3].0
        )
        .as_bytes(),
    );
    std::fs::write(env.results_path(), bytes).unwrap();
    env.write_input(&sims);

    let second = env.register(&[]).await;
    assert_eq!(exit_code(&second), 0, "{}", everything(&second));
    let rows = read_results(&env.results_path())
        .unwrap_or_else(|e| panic!("the repaired file is a valid CSV: {e}"));
    for (iccid, _) in &sims {
        let last = rows
            .iter()
            .rev()
            .find(|row| &row["iccid"] == iccid)
            .unwrap();
        assert_eq!(last["outcome"], "registered", "{last:?}");
    }
    let creates = env.emulator.stats().create_requests;
    let third = env.register(&[]).await;
    assert_eq!(exit_code(&third), 0, "{}", everything(&third));
    assert_eq!(env.emulator.stats().create_requests, creates, "all resumed");
}

// ---------------------------------------------------------------------------------------
// 12: closed stdout.

/// Issue 10 item 12: with stdout closed (`| head -1`) the run does not panic, still writes its summary JSON and exits with its own code.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_does_not_panic_and_the_summary_json_is_written() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..3).map(|n| good_sim(11_800 + n)).collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");
    let mut command = env.register_command(
        &["--summary-json", summary_path.to_str().unwrap()],
        &TestEnv::test_credentials(),
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();

    let code = output.status.code();
    assert_ne!(code, Some(101), "{}", stderr(&output));
    let summary = read_json(&summary_path);
    assert_eq!(summary["exit_code"], json!(code), "{summary}");
    assert_eq!(code, Some(0), "{}", stderr(&output));
}

// ---------------------------------------------------------------------------------------
// 14 and 15: values that make a run meaningless, and naming what was used.

/// Runs `register` with `flags` and checks it is refused at parse time: exit 2, a message
/// naming `flag`, nothing sent.
async fn assert_refused(flags: &[&str], flag: &str) {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(11_900)]);
    let output = env.register(flags).await;
    assert_eq!(exit_code(&output), 2, "{flags:?}: {}", everything(&output));
    assert!(
        stderr(&output).contains(flag),
        "{flags:?}: {}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().requests, 0, "{flags:?}");
}

/// Issue 10 item 14: `--timeout 0` is refused at parse time with the allowed range.
#[tokio::test(flavor = "multi_thread")]
async fn a_zero_timeout_is_refused_at_parse_time() {
    assert_refused(&["--timeout", "0s"], "--timeout").await;
}

/// Issue 10 item 14: `--max-attempts 0` is refused at parse time with the allowed range.
#[tokio::test(flavor = "multi_thread")]
async fn zero_max_attempts_is_refused_at_parse_time() {
    assert_refused(&["--max-attempts", "0"], "--max-attempts").await;
}

/// Issue 10 item 14: a `--grace` that overflows is refused at parse time with the allowed range.
#[tokio::test(flavor = "multi_thread")]
async fn a_grace_that_overflows_is_refused_at_parse_time() {
    assert_refused(&["--grace", "500000000000y"], "--grace").await;
}

/// Issue 10 item 14: `emulator --max-concurrent 0` is refused at parse time instead of serving an API that answers only 429.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_max_concurrent_zero_is_refused_at_parse_time() {
    let mut child = binary_command()
        .args(["emulator", "--host", "127.0.0.1", "--port", "0"])
        .args(["--max-concurrent", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Either it exits (closing stdout), or it announces that it is serving.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    if let Some(line) = lines.next_line().await.unwrap() {
        child.kill().await.unwrap();
        panic!("the emulator started with --max-concurrent 0: {line}");
    }
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--max-concurrent"),
        "{}",
        stderr(&output)
    );
}

/// Issue 10 item 15: a bad `SUPERSIM_BASE_URL` is reported under that variable's name, not as `--base-url`.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_supersim_base_url_names_the_variable() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(12_000)]);
    let output = binary_command()
        .arg("register")
        .arg(env.input_path())
        .env("SUPERSIM_BASE_URL", "not a url")
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    let err = stderr(&output);
    assert_eq!(exit_code(&output), 2, "{err}");
    assert!(err.contains("SUPERSIM_BASE_URL"), "{err}");
    assert!(!err.contains("--base-url"), "{err}");
}
