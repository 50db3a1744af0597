//! `register --report` and `register --metrics-file`, read by tools that are not this
//! project's: the metrics by a Prometheus text-format parser, the report by headless
//! Chromium over the DevTools protocol.
//!
//! Chromium is not part of the Rust toolchain: where it is missing, the browser test says so
//! on stderr and checks nothing, so `cargo test` passes on a fresh machine; `.ci/run`
//! installs it and sets `SUPERSIM_REQUIRE_CHROMIUM=1`, which makes a missing browser a
//! failure.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use supersim_bulk::emulator::EmulatorConfig;

/// A run that meets throttling and a limit that changes: 8 in flight, down to 4 after 1 s,
/// up to 12 after 2.5 s; every 50th row has a wrong code (83002, needs a person). Returns
/// the environment, the exit code and the summary JSON; the report and the metrics file are
/// `run.html` and `run.prom` in the environment's folder.
async fn throttled_run(rows: u32, extra: &[&str]) -> (TestEnv, i32, serde_json::Value) {
    let _one_at_a_time = timing_run().await;
    let env = TestEnv::with_config(EmulatorConfig {
        latency: Duration::from_millis(20),
        max_concurrent: Some(8),
        limit_schedule: vec![
            (Duration::from_millis(1000), 4),
            (Duration::from_millis(2500), 12),
        ],
        ..EmulatorConfig::default()
    })
    .await;
    let sims: Vec<_> = (0..rows)
        .map(|n| {
            let (iccid, code) = good_sim(21_000 + n);
            if n % 50 == 7 {
                (iccid, wrong_code(&code))
            } else {
                (iccid, code)
            }
        })
        .collect();
    env.write_input(&sims);
    let dir = env.dir.path();
    let (summary, report, metrics) = (
        dir.join("summary.json"),
        dir.join("run.html"),
        dir.join("run.prom"),
    );
    let mut args = vec![
        "--concurrency",
        "30",
        "--summary-json",
        summary.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = env.register(&args).await;
    let json = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap_or_else(|e| {
        panic!("summary JSON: {e}; stderr: {}", stderr(&output));
    });
    (env, exit_code(&output), json)
}

/// The samples of a metrics file, parsed by `prometheus-parse` (not this project's code),
/// keyed by name and the sorted labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<_> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = if labels.is_empty() {
            sample.metric.clone()
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        let value = match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{key}: not a single value: {other:?}"),
        };
        samples.insert(key, value);
    }
    samples
}

fn seconds_of(rfc3339: &serde_json::Value) -> f64 {
    let time = humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_parses_and_agrees_with_the_summary_json() {
    let (env, code, summary) = throttled_run(1500, &[]).await;
    assert_eq!(code, 1, "some rows were refused: {summary}");
    let text = std::fs::read_to_string(env.dir.path().join("run.prom")).unwrap();
    let metrics = parse_metrics(&text);
    let get = |key: &str| {
        *metrics
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
    };
    assert_eq!(get("supersim_bulk_last_run_exit_code"), 1.0);
    assert_eq!(get("supersim_bulk_last_run_success"), 0.0);
    for (json, metric) in [
        ("requests", "supersim_bulk_last_run_requests"),
        ("throttled", "supersim_bulk_last_run_throttled"),
    ] {
        assert_eq!(get(metric), summary[json].as_f64().unwrap(), "{metric}");
    }
    assert!(
        get("supersim_bulk_last_run_throttled") > 0.0,
        "429s were met"
    );
    assert_eq!(
        get("supersim_bulk_last_run_needs_a_person_rows"),
        summary["needs_a_person"]["total"].as_f64().unwrap()
    );
    assert_eq!(get("supersim_bulk_last_run_needs_a_person_rows"), 30.0);
    assert_eq!(
        get("supersim_bulk_last_run_account_limit"),
        summary["concurrency"]["learned_limit"].as_f64().unwrap()
    );
    for (outcome, count) in summary["this_run"].as_object().unwrap() {
        let key = format!("supersim_bulk_last_run_rows{{outcome={outcome}}}");
        assert_eq!(get(&key), count.as_f64().unwrap(), "{key}");
    }
    for (outcome, count) in summary["whole_file"].as_object().unwrap() {
        let key = format!("supersim_bulk_results_rows{{outcome={outcome}}}");
        assert_eq!(get(&key), count.as_f64().unwrap(), "{key}");
    }
    // Times to the second, as the summary JSON gives them.
    let start = get("supersim_bulk_last_run_start_timestamp_seconds");
    let end = get("supersim_bulk_last_run_end_timestamp_seconds");
    assert!((start - seconds_of(&summary["started_at"])).abs() < 1.0);
    assert!((end - seconds_of(&summary["finished_at"])).abs() < 1.0);
    assert!(
        (get("supersim_bulk_last_run_duration_seconds") - (end - start)).abs() < 0.01,
        "duration is end - start"
    );
    assert_eq!(
        get("supersim_bulk_last_run_info{end=finished,version=0.1.0}"),
        1.0
    );
    // Written atomically: no temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_stops_before_it_starts_still_writes_its_metrics() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let metrics = env.dir.path().join("run.prom");
    // No credentials: a set-up failure, exit 2.
    let output = env
        .register_with_env(
            &["--metrics-file", metrics.to_str().unwrap()],
            &[("TWILIO_ACCOUNT_SID", ""), ("TWILIO_AUTH_TOKEN", "")],
        )
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let text = std::fs::read_to_string(&metrics).unwrap();
    let parsed = parse_metrics(&text);
    assert_eq!(parsed["supersim_bulk_last_run_exit_code"], 2.0);
    assert_eq!(
        parsed["supersim_bulk_last_run_info{end=error,version=0.1.0}"],
        1.0
    );
    assert!(
        !parsed.contains_key("supersim_bulk_last_run_requests"),
        "no counts for a run that sent nothing: {text}"
    );
}

/// Headless Chromium driven over the DevTools protocol: one page, with what it logged and
/// requested.
mod chromium {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use tungstenite::{Message, WebSocket};

    /// What loading a page showed.
    pub struct Loaded {
        /// Console messages and log entries at error level, and uncaught exceptions.
        pub errors: Vec<String>,
        /// Every URL the page requested, the page itself included.
        pub requests: Vec<String>,
        /// The answers to the expressions asked for, in order.
        pub answers: Vec<Value>,
        /// A screenshot of the page, PNG.
        pub screenshot: Vec<u8>,
    }

    /// The browser, killed on drop.
    struct Browser {
        child: Child,
        _profile: tempfile::TempDir,
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Whether Chromium (or the browser `CHROMIUM` names) runs here. Where it does not, says
    /// so on stderr; with `SUPERSIM_REQUIRE_CHROMIUM` set (as `.ci/run` does) that fails.
    pub fn available() -> bool {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let runs = Command::new(&binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let install = "install Chromium (Debian: apt-get install -y chromium; .ci/run installs \
                       it) or name it in CHROMIUM";
        if !runs && std::env::var_os("SUPERSIM_REQUIRE_CHROMIUM").is_some() {
            panic!("cannot run {binary}: {install}");
        }
        if !runs {
            eprintln!(
                "note: {binary} does not run here, so the report was not rendered; {install}"
            );
        }
        runs
    }

    /// Loads `url` in a fresh headless Chromium, waits for its load event, evaluates
    /// `expressions` and takes a screenshot. Fails when Chromium is missing.
    pub fn load(url: &str, expressions: &[&str]) -> Loaded {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1100,2400",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {binary}: {error}; install Chromium (Debian: apt-get install -y \
                     chromium; .ci/run installs it) or name it in CHROMIUM"
                )
            });
        let mut browser = Browser {
            child,
            _profile: profile,
        };
        let endpoint = devtools_endpoint(&mut browser.child);
        let mut cdp = Cdp::connect(&endpoint);
        let target = cdp.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = cdp.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        let page = Some(session.as_str());
        for domain in ["Runtime", "Log", "Network", "Page"] {
            cdp.call(page, &format!("{domain}.enable"), json!({}));
        }
        cdp.call(page, "Page.navigate", json!({ "url": url }));
        cdp.wait_for(page, "Page.loadEventFired");
        let answers = expressions
            .iter()
            .map(|expression| {
                let answer = cdp.call(
                    page,
                    "Runtime.evaluate",
                    json!({ "expression": expression, "returnByValue": true }),
                );
                answer["result"]["value"].clone()
            })
            .collect();
        let shot = cdp.call(page, "Page.captureScreenshot", json!({ "format": "png" }));
        use base64::Engine as _;
        let screenshot = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let _ = cdp.call(None, "Browser.close", json!({}));
        Loaded {
            errors: cdp.errors,
            requests: cdp.requests,
            answers,
            screenshot,
        }
    }

    /// Reads Chromium's stderr up to the line naming its DevTools websocket; the rest is
    /// drained on a thread so the browser never blocks on a full pipe.
    fn devtools_endpoint(child: &mut Child) -> String {
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("Chromium ended without a DevTools endpoint:\n{said}");
            }
            if let Some(at) = line.find("ws://") {
                std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                return line[at..].trim().to_string();
            }
            said.push_str(&line);
        }
    }

    /// A DevTools connection: calls wait for their answer, and every event met meanwhile is
    /// sorted into errors and requests.
    struct Cdp {
        socket: WebSocket<TcpStream>,
        next_id: u64,
        errors: Vec<String>,
        requests: Vec<String>,
        /// Events not yet waited for, by method and session.
        seen: Vec<(String, Option<String>)>,
    }

    const PATIENCE: Duration = Duration::from_secs(60);

    impl Cdp {
        fn connect(endpoint: &str) -> Self {
            let address = endpoint
                .trim_start_matches("ws://")
                .split('/')
                .next()
                .unwrap();
            let stream = TcpStream::connect(address).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let (socket, _) = tungstenite::client(endpoint, stream).expect("the DevTools socket");
            Cdp {
                socket,
                next_id: 0,
                errors: Vec::new(),
                requests: Vec::new(),
                seen: Vec::new(),
            }
        }

        fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
            self.next_id += 1;
            let id = self.next_id;
            let mut message = json!({ "id": id, "method": method, "params": params });
            if let Some(session) = session {
                message["sessionId"] = json!(session);
            }
            self.socket
                .send(Message::text(message.to_string()))
                .unwrap();
            let started = Instant::now();
            loop {
                let message = self.next_message(started);
                if message["id"] == json!(id) {
                    if let Some(error) = message.get("error") {
                        panic!("{method}: {error}");
                    }
                    return message["result"].clone();
                }
            }
        }

        fn wait_for(&mut self, session: Option<&str>, method: &str) {
            let wanted = (method.to_string(), session.map(String::from));
            let started = Instant::now();
            while !self.seen.contains(&wanted) {
                self.next_message(started);
            }
        }

        /// The next message; events are noted as they pass.
        fn next_message(&mut self, started: Instant) -> Value {
            assert!(
                started.elapsed() < PATIENCE,
                "Chromium did not answer in time"
            );
            let message = match self.socket.read().expect("a DevTools message") {
                Message::Text(text) => serde_json::from_str::<Value>(&text).unwrap(),
                _ => return Value::Null,
            };
            if let Some(method) = message["method"].as_str() {
                let params = &message["params"];
                match method {
                    "Network.requestWillBeSent" => self
                        .requests
                        .push(params["request"]["url"].as_str().unwrap_or("").to_string()),
                    "Runtime.consoleAPICalled" if params["type"] == "error" => {
                        self.errors.push(format!("console: {params}"))
                    }
                    "Runtime.exceptionThrown" => self.errors.push(format!("exception: {params}")),
                    "Log.entryAdded" if params["entry"]["level"] == "error" => {
                        self.errors.push(format!("log: {}", params["entry"]))
                    }
                    _ => {}
                }
                let session = message["sessionId"].as_str().map(String::from);
                self.seen.push((method.to_string(), session));
            }
            message
        }
    }
}

/// Distinct colours in a PNG, and the share of its pixels that are not white.
fn colours_of(png_bytes: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let mut distinct = std::collections::HashSet::new();
    let mut not_white = 0;
    for pixel in pixels.chunks(channels) {
        distinct.insert(pixel[..3.min(channels)].to_vec());
        if pixel.iter().take(3).any(|&c| c < 250) {
            not_white += 1;
        }
    }
    let total = pixels.len() / channels;
    (distinct.len(), not_white as f64 / total as f64)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_throttled_run_renders_offline_in_chromium() {
    if !chromium::available() {
        return;
    }
    let (env, code, summary) = throttled_run(1500, &[]).await;
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary["throttled"].as_u64().unwrap() > 0,
        "429s were met: {summary}"
    );
    let report = env.dir.path().join("run.html");
    let url = format!("file://{}", report.display());
    let expressions = [
        "document.querySelectorAll('figure.chart svg').length",
        "document.querySelectorAll('figure.chart svg polyline, figure.chart svg path').length",
        "document.querySelectorAll('table.needs-a-person tr').length - 1",
        "document.title",
    ];
    let page_url = url.clone();
    let loaded = tokio::task::spawn_blocking(move || chromium::load(&page_url, &expressions))
        .await
        .unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(
        loaded.requests,
        vec![url],
        "the page itself is the only request"
    );
    let answers = &loaded.answers;
    assert_eq!(answers[0], 4, "four charts");
    assert!(
        answers[1].as_u64().unwrap() >= 4,
        "lines drawn: {answers:?}"
    );
    assert_eq!(
        answers[2].as_u64().unwrap(),
        summary["needs_a_person"]["total"].as_u64().unwrap(),
        "every row that needs a person is in the table"
    );
    assert_eq!(answers[3], "supersim-bulk register: finished, exit 1");
    let (colours, not_white) = colours_of(&loaded.screenshot);
    assert!(colours > 16, "{colours} colours: a blank screenshot");
    assert!(not_white > 0.01, "{not_white} of the pixels drawn");
}

/// The report and the metrics of a run in `env` that wrote them to `run.html` and
/// `run.prom`.
fn end_files(env: &TestEnv) -> (String, HashMap<String, f64>) {
    let report = std::fs::read_to_string(env.dir.path().join("run.html")).expect("the report");
    let metrics = std::fs::read_to_string(env.dir.path().join("run.prom")).expect("the metrics");
    (report, parse_metrics(&metrics))
}

fn end_flags(env: &TestEnv) -> [String; 4] {
    let dir = env.dir.path();
    [
        "--report".into(),
        dir.join("run.html").display().to_string(),
        "--metrics-file".into(),
        dir.join("run.prom").display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_stops_early_writes_its_report_saying_why() {
    // --max-failures: every row refused.
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..40)
        .map(|n| {
            let (iccid, code) = good_sim(31_000 + n);
            (iccid, wrong_code(&code))
        })
        .collect();
    env.write_input(&sims);
    let flags = end_flags(&env);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--max-failures", "3", "--concurrency", "2"]);
    let output = env.register(&args).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let (report, metrics) = end_files(&env);
    assert!(report.contains("max_failures, exit 1"), "{report}");
    assert!(
        report.contains("more than --max-failures 3"),
        "the reason is given"
    );
    assert!(report.contains("<svg"), "the timeline of what was sent");
    assert_eq!(
        metrics["supersim_bulk_last_run_info{end=max_failures,version=0.1.0}"],
        1.0
    );

    // Credentials refused by the API.
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(32_000)]);
    let flags = end_flags(&env);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let output = env
        .register_with_env(
            &args,
            &[
                (
                    "TWILIO_ACCOUNT_SID",
                    supersim_bulk::emulator::TEST_ACCOUNT_SID,
                ),
                ("TWILIO_AUTH_TOKEN", "not-the-token"),
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let (report, metrics) = end_files(&env);
    assert!(
        report.contains("the API refused the credentials"),
        "{report}"
    );
    assert!(!report.contains("not-the-token"));
    assert_eq!(metrics["supersim_bulk_last_run_exit_code"], 2.0);

    // An API that cannot be reached: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(33_000)]);
    let flags = end_flags(&env);
    let mut command = binary_command();
    command
        .current_dir(env.dir.path())
        .args([
            "register",
            "sims.csv",
            "--base-url",
            &url,
            "--backoff-base",
            "1ms",
        ])
        .args(&flags)
        .envs(TestEnv::test_credentials());
    let output = command.output().await.unwrap();
    assert_eq!(exit_code(&output), 75, "{}", stderr(&output));
    let (report, metrics) = end_files(&env);
    // Found by the preflight, before the run proper: the end word is `error`.
    assert!(report.contains("exit 75"), "{report}");
    assert!(report.contains("cannot reach the API"), "{report}");
    assert_eq!(metrics["supersim_bulk_last_run_exit_code"], 75.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_writes_its_report_and_metrics() {
    let env = TestEnv::with_latency(Duration::from_millis(50)).await;
    let sims: Vec<_> = (0..2000).map(|n| good_sim(34_000 + n)).collect();
    env.write_input(&sims);
    let flags = end_flags(&env);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--concurrency", "4", "--grace", "1s"]);
    let child = env.spawn_register(&args);
    wait_until("some rows are written", || env.results_rows_so_far() >= 5).await;
    signal(child.id().unwrap(), "-INT");
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let (report, metrics) = end_files(&env);
    assert!(report.contains("interrupted, exit 130"), "{report}");
    assert!(report.contains("run the same command again to resume"));
    assert_eq!(metrics["supersim_bulk_last_run_exit_code"], 130.0);
    let registered = metrics["supersim_bulk_last_run_rows{outcome=registered}"];
    assert!((5.0..2000.0).contains(&registered), "{registered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_a_base_url_never_reaches_the_report() {
    // Refused as a set-up error (a URL must not carry credentials), in either spelling of
    // the flag: the report of that failure shows the command line without the password.
    for spelling in ["--base-url=", "--base-url"] {
        let env = TestEnv::new().await;
        env.write_input(&[good_sim(35_000)]);
        let url = "http://operator:PASSW0RDCANARY@127.0.0.1:9";
        let flags = end_flags(&env);
        let mut args: Vec<String> = flags.to_vec();
        if spelling.ends_with('=') {
            args.push(format!("{spelling}{url}"));
        } else {
            args.extend([spelling.to_string(), url.to_string()]);
        }
        let mut command = binary_command();
        command
            .current_dir(env.dir.path())
            .args(["register", "sims.csv"])
            .args(&args)
            .envs(TestEnv::test_credentials());
        let output = command.output().await.unwrap();
        assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
        let (report, _) = end_files(&env);
        assert!(report.contains("127.0.0.1:9"), "{report}");
        assert!(!report.contains("PASSW0RDCANARY"), "{spelling}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_a_base_url_without_its_slashes_is_never_shown() {
    // A URL parser reads `https:user:pw@host` (and `https:/`, `https:\\`) as a URL with a
    // user and password, and an operator may leave the scheme out altogether: whichever
    // way it is written, the password reaches neither stderr nor any file the run writes.
    for url in [
        "https:operator:PASSW0RDCANARY@127.0.0.1:9",
        "https:/operator:PASSW0RDCANARY@127.0.0.1:9",
        r"https:\\operator:PASSW0RDCANARY@127.0.0.1:9",
        "operator:PASSW0RDCANARY@127.0.0.1:9",
        "https://operator:PASS/W0RDCANARY@127.0.0.1:9",
    ] {
        let env = TestEnv::new().await;
        env.write_input(&[good_sim(35_100)]);
        let output = binary_command()
            .current_dir(env.dir.path())
            .args(["register", "sims.csv", "--summary-json", "run.json"])
            .args(end_flags(&env))
            .args(["--base-url", url])
            .envs(TestEnv::test_credentials())
            .output()
            .await
            .unwrap();
        assert_eq!(exit_code(&output), 2, "{url}: {}", stderr(&output));
        let summary = std::fs::read_to_string(env.dir.path().join("run.json")).unwrap();
        let report = std::fs::read_to_string(env.dir.path().join("run.html")).unwrap();
        let metrics = std::fs::read_to_string(env.dir.path().join("run.prom")).unwrap();
        for (what, text) in [
            ("stderr", stderr(&output)),
            ("stdout", stdout(&output)),
            ("summary JSON", summary),
            ("report", report),
            ("metrics", metrics),
        ] {
            assert!(
                !text.contains("W0RDCANARY"),
                "{url}: the {what} shows the password: {text}"
            );
        }
    }
}
