//! `cargo bench --bench throughput`: how fast and how lean `supersim-bulk` is against the
//! emulator, next to a naive baseline (one request at a time, nothing adaptive).
//!
//! The release binary runs twice per scenario as child processes: once as the emulator
//! (`supersim-bulk emulator --port 0`), once as the client. The client's CPU time and peak
//! RSS come from `wait4`. This process stays small on purpose: Linux carries a parent's
//! resident size into a child's `ru_maxrss` at spawn, so an emulator holding a million
//! SIMs in here would inflate every figure. Scenarios: latency-bound (100 ms, 20 in flight
//! allowed: a 200 requests/s limit the client is not told), instant server (the client's
//! own cost) at 10,000 and 1,000,000 rows, resume of a finished 1,000,000-row file, and
//! `validate` at 10,000 and 1,000,000 rows. `BENCH_QUICK=1` skips the 1,000,000-row
//! registration, the slowest part.
//!
//! The second table is the account's concurrency limit in every shape (issue 12), each
//! with and without the `Twilio-Concurrent-Requests` header: a small limit, a large one, one
//! shared with another app's traffic, and one that falls and rises on a schedule. Each row
//! gives the possible throughput (the limit, less what the other app holds, over the mean
//! latency), the ratio reached with default flags, the 429 shares of this run and of the
//! other app, where concurrency settled, and the same for a naive baseline: 32 threads, each
//! sending one request at a time and retrying a 429 after a fixed 100 ms, as a thread pool
//! around an HTTP library without 429 handling would. `BENCH_ADAPTIVE_ONLY=1` runs only this
//! table.
//!
//! Nothing here is part of `cargo test`; it prints a Markdown table for the README.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use supersim_bulk::emulator::{TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, registration_code_for};

const BINARY: &str = env!("CARGO_BIN_EXE_supersim-bulk");

/// What one client run cost.
struct Measured {
    rows: u64,
    wall: Duration,
    cpu: Duration,
    peak_rss_mb: f64,
    requests: u64,
    throttled: u64,
    exit: i32,
}

impl Measured {
    fn throughput(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64()
    }
}

/// An emulator in its own process, stopped on drop.
struct EmulatorProcess {
    child: Child,
    base_url: String,
    /// Kept open: the emulator prints its Fleets after the first line, and a closed pipe
    /// would make that print fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl EmulatorProcess {
    fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(["emulator", "--port", "0", "-q"])
            .args(flags)
            .env_remove("TWILIO_API_KEY")
            .env_remove("TWILIO_API_SECRET")
            .env_remove("TWILIO_ACCOUNT_SID")
            .env_remove("TWILIO_AUTH_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the emulator starts");
        let mut first_line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        stdout
            .read_line(&mut first_line)
            .expect("the emulator says where it listens");
        let base_url = first_line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .expect("a URL on the first line")
            .to_string();
        EmulatorProcess {
            child,
            base_url,
            _stdout: stdout,
        }
    }

    /// `GET /_emulator/stats`, over a plain socket to keep this process small.
    fn stats(&self) -> serde_json::Value {
        let address = self.base_url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("the emulator answers");
        write!(
            stream,
            "GET /_emulator/stats HTTP/1.0\r\nHost: {address}\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).expect("stats are JSON")
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client to its end and reads its resource use.
// The child is reaped by wait4 below, which std's lint cannot see.
#[allow(unsafe_code, clippy::zombie_processes)]
fn run_client(args: &[&str]) -> (Duration, Duration, f64, i32) {
    let started = Instant::now();
    let child = Command::new(BINARY)
        .args(args)
        .env("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN)
        .env_remove("TWILIO_API_KEY")
        .env_remove("TWILIO_API_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes only into the two
    // locals it is given for a child of this process that nothing else waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let wall = started.elapsed();
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    let exit = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (wall, cpu, usage.ru_maxrss as f64 / 1024.0, exit)
}

fn sims(count: u64) -> impl Iterator<Item = (String, String)> {
    (0..count).map(|n| {
        let iccid = format!("8988307{n:013}");
        let code = registration_code_for(&iccid);
        (iccid, code)
    })
}

/// The input file for `count` SIMs, written once per benchmark run.
fn input_file(dir: &Path, count: u64) -> String {
    let path = dir.join(format!("in-{count}.csv"));
    if !path.exists() {
        let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "Iccid,RegistrationCode").unwrap();
        for (iccid, code) in sims(count) {
            writeln!(out, "{iccid},{code}").unwrap();
        }
    }
    path.to_str().unwrap().to_string()
}

/// A results file in which every SIM of the input is already registered.
fn write_finished_results(path: &Path, count: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at,warning").unwrap();
    for (n, (iccid, _)) in sims(count).enumerate() {
        writeln!(
            out,
            "{},{iccid},registered,HS{n:032x},new,,,,,1,2026-11-26T00:00:00Z,",
            n + 2
        )
        .unwrap();
    }
}

/// A `register` run of `rows` SIMs against a fresh emulator started with `emulator_flags`.
fn register(dir: &Path, emulator_flags: &[&str], rows: u64, flags: &[&str]) -> Measured {
    let emulator = EmulatorProcess::start(emulator_flags);
    let input = input_file(dir, rows);
    let output = dir.join("out.results.csv");
    let _ = std::fs::remove_file(&output);
    let output = output.to_str().unwrap().to_string();
    let mut args = vec!["register", &input, "-q", "--base-url", &emulator.base_url];
    args.extend(["--output", &output]);
    args.extend_from_slice(flags);
    let (wall, cpu, peak_rss_mb, exit) = run_client(&args);
    let stats = emulator.stats();
    Measured {
        rows,
        wall,
        cpu,
        peak_rss_mb,
        requests: stats["requests"].as_u64().unwrap_or(0),
        throttled: stats["throttled"].as_u64().unwrap_or(0),
        exit,
    }
}

struct Row {
    scenario: String,
    measured: Measured,
    limit: Option<f64>,
    baseline: Option<f64>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| scenario | rows | throughput (rows/s) | limit | ratio to limit | 429 share | client CPU | CPU per 10k rows | peak RSS | vs naive baseline | exit |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let m = &row.measured;
        let na = || "n/a".to_string();
        let limit = row.limit.map_or_else(na, |l| format!("{l:.0}/s"));
        let ratio = row
            .limit
            .map_or_else(na, |l| format!("{:.0}%", 100.0 * m.throughput() / l));
        let share = if m.requests > 0 {
            format!("{:.1}%", 100.0 * m.throttled as f64 / m.requests as f64)
        } else {
            na()
        };
        let baseline = row
            .baseline
            .map_or_else(na, |b| format!("{:.1}x", m.throughput() / b));
        println!(
            "| {} | {} | {:.0} | {limit} | {ratio} | {share} | {:.2}s | {:.2}s | {:.1} MB | {baseline} | {} |",
            row.scenario,
            m.rows,
            m.throughput(),
            m.cpu.as_secs_f64(),
            m.cpu.as_secs_f64() * 10_000.0 / m.rows.max(1) as f64,
            m.peak_rss_mb,
            m.exit
        );
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// One shape of the account's limit.
struct Shape {
    name: &'static str,
    /// Emulator flags, without the header switch.
    flags: Vec<String>,
    rows: u64,
    /// The account's limit over time: (from, limit), from time zero.
    schedule: Vec<(f64, f64)>,
    latency: f64,
    /// Slots the other app holds on average.
    other: f64,
}

impl Shape {
    /// Rows per second possible over `wall` seconds: the limit less the other app's slots,
    /// over the mean latency, averaged over the run.
    fn possible(&self, wall: f64) -> f64 {
        let mut slot_seconds = 0.0;
        for (i, &(from, limit)) in self.schedule.iter().enumerate() {
            let until = self
                .schedule
                .get(i + 1)
                .map_or(wall, |next| next.0.min(wall));
            if until > from {
                slot_seconds += (until - from) * (limit - self.other).max(0.0);
            }
        }
        slot_seconds / self.latency / wall
    }
}

/// What one run against a shape did.
struct ShapeRun {
    wall: f64,
    rows: u64,
    requests: u64,
    throttled: u64,
    other_requests: u64,
    other_throttled: u64,
    settled: String,
}

impl ShapeRun {
    fn share(&self) -> f64 {
        self.throttled as f64 / self.requests.max(1) as f64
    }
    fn other_share(&self) -> Option<f64> {
        (self.other_requests > 0).then(|| self.other_throttled as f64 / self.other_requests as f64)
    }
}

fn shape_stats(emulator: &EmulatorProcess, wall: f64, rows: u64, settled: String) -> ShapeRun {
    let stats = emulator.stats();
    let get = |key: &str| stats[key].as_u64().unwrap_or(0);
    ShapeRun {
        wall,
        rows,
        requests: get("requests"),
        throttled: get("throttled"),
        other_requests: get("other_requests"),
        other_throttled: get("other_throttled"),
        settled,
    }
}

/// `register` with default flags against a fresh emulator of this shape.
fn run_shape(dir: &Path, shape: &Shape, header: bool) -> ShapeRun {
    let mut flags: Vec<&str> = shape.flags.iter().map(String::as_str).collect();
    if !header {
        flags.push("--no-concurrency-header");
    }
    let emulator = EmulatorProcess::start(&flags);
    let input = input_file(dir, shape.rows);
    let output = dir.join("shape.results.csv");
    let summary = dir.join("shape.summary.json");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&summary);
    let (output, summary_path) = (
        output.to_str().unwrap().to_string(),
        summary.to_str().unwrap().to_string(),
    );
    let args = [
        "register",
        &input,
        "-q",
        "--base-url",
        &emulator.base_url,
        "--output",
        &output,
        "--summary-json",
        &summary_path,
    ];
    let (wall, _, _, _) = run_client(&args);
    let summary: serde_json::Value = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let c = &summary["concurrency"];
    let mut settled = format!("{}", c["settled"]);
    if let Some(limit) = c["learned_limit"].as_u64() {
        settled.push_str(&format!(" (limit found {limit})"));
    }
    if let Some(other) = c["other_in_flight"].as_f64() {
        settled.push_str(&format!(", other seen {other:.1}"));
    }
    let registered = summary["this_run"]["registered"].as_u64().unwrap_or(0);
    shape_stats(&emulator, wall.as_secs_f64(), registered, settled)
}

/// The naive baseline: 32 threads, each sending one `POST /v1/Sims` at a time over a fresh
/// connection, retrying a 429 or 5xx after a fixed 100 ms (at most 50 times).
fn run_naive(dir: &Path, shape: &Shape) -> ShapeRun {
    let emulator =
        EmulatorProcess::start(&shape.flags.iter().map(String::as_str).collect::<Vec<_>>());
    let _ = dir;
    let address = emulator.base_url.trim_start_matches("http://").to_string();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{TEST_ACCOUNT_SID}:{TEST_AUTH_TOKEN}"));
    let rows: Arc<Vec<(String, String)>> = Arc::new(sims(shape.rows).collect());
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (rows, next, done) = (rows.clone(), next.clone(), done.clone());
            let (address, auth) = (address.clone(), auth.clone());
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((iccid, code)) = rows.get(n) else {
                        return;
                    };
                    let body = format!("Iccid={iccid}&RegistrationCode={code}");
                    for _ in 0..50 {
                        let status = post(&address, &auth, &body);
                        if status == 201 || status == 200 || status == 409 {
                            done.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let wall = started.elapsed().as_secs_f64();
    shape_stats(
        &emulator,
        wall,
        done.load(Ordering::Relaxed),
        "32 (fixed)".into(),
    )
}

/// One HTTP/1.0 POST; the status code, or 0 when the exchange failed.
fn post(address: &str, auth: &str, body: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return 0;
    };
    let request = format!(
        "POST /v1/Sims HTTP/1.0\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn shapes() -> Vec<Shape> {
    let flags = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    vec![
        Shape {
            name: "limit 20, 100 ms ±10%",
            flags: flags(&[
                "--max-concurrent",
                "20",
                "--latency",
                "100ms",
                "--latency-jitter",
                "0.1",
            ]),
            rows: 2_000,
            schedule: vec![(0.0, 20.0)],
            latency: 0.1,
            other: 0.0,
        },
        Shape {
            name: "limit 5, 300 ms ±10%",
            flags: flags(&[
                "--max-concurrent",
                "5",
                "--latency",
                "300ms",
                "--latency-jitter",
                "0.1",
            ]),
            rows: 500,
            schedule: vec![(0.0, 5.0)],
            latency: 0.3,
            other: 0.0,
        },
        Shape {
            name: "limit 60, 200 ms ±10%",
            flags: flags(&[
                "--max-concurrent",
                "60",
                "--latency",
                "200ms",
                "--latency-jitter",
                "0.1",
            ]),
            rows: 6_000,
            schedule: vec![(0.0, 60.0)],
            latency: 0.2,
            other: 0.0,
        },
        Shape {
            name: "limit 20 shared: other app 60/s × 100 ms (6 slots), 100 ms ±10%",
            flags: flags(&[
                "--max-concurrent",
                "20",
                "--latency",
                "100ms",
                "--latency-jitter",
                "0.1",
                "--other-rate",
                "60",
                "--other-latency",
                "100ms",
            ]),
            rows: 2_000,
            schedule: vec![(0.0, 20.0)],
            latency: 0.1,
            other: 60.0 * 0.1,
        },
        Shape {
            name: "limit 20, falls to 8 at 5 s, rises to 25 at 12 s, 100 ms ±10%",
            flags: flags(&[
                "--max-concurrent",
                "20",
                "--latency",
                "100ms",
                "--latency-jitter",
                "0.1",
                "--limit-schedule",
                "5s=8,12s=25",
            ]),
            rows: 3_500,
            schedule: vec![(0.0, 20.0), (5.0, 8.0), (12.0, 25.0)],
            latency: 0.1,
            other: 0.0,
        },
    ]
}

fn adaptive_table(dir: &Path) {
    println!();
    println!(
        "| limit shape | header | possible (rows/s) | supersim-bulk: ratio | 429 share | other app's 429 share | settled at | naive 32 threads: ratio | 429 share | other app's 429 share |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("BENCH_SHAPES").unwrap_or_default();
    for shape in shapes()
        .into_iter()
        .filter(|s| s.name.contains(only.as_str()))
    {
        eprintln!("{}: naive baseline...", shape.name);
        let naive = run_naive(dir, &shape);
        for header in [true, false] {
            eprintln!("{}: header {header}...", shape.name);
            let run = run_shape(dir, &shape, header);
            let possible = shape.possible(run.wall);
            let ratio = |r: &ShapeRun| r.rows as f64 / r.wall / shape.possible(r.wall);
            let percent =
                |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
            println!(
                "| {} | {} | {possible:.0} | {:.3} | {} | {} | {} | {:.3} | {} | {} |",
                shape.name,
                if header { "yes" } else { "no" },
                ratio(&run),
                percent(Some(run.share())),
                percent(run.other_share()),
                run.settled,
                ratio(&naive),
                percent(Some(naive.share())),
                percent(naive.other_share()),
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // Test-harness discovery (`cargo test --benches`): nothing to list.
        return;
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut table = Vec::new();
    eprintln!("benchmarking {BINARY} on {}", machine());
    if std::env::var_os("BENCH_ADAPTIVE_ONLY").is_some() {
        println!("Machine: {}", machine());
        adaptive_table(dir);
        return;
    }

    // Defaults: no rate cap, a ceiling of 100 that the pool grows to from a low start.
    let unlimited: [&str; 0] = [];
    let naive = ["--concurrency", "1", "--no-adaptive"];

    // Latency-bound: 100 ms per request, 20 in flight allowed => 200 requests/s at best.
    let latency_bound = ["--latency", "100ms", "--max-concurrent", "20"];
    eprintln!("latency-bound, naive baseline (300 rows)...");
    let naive_latency = register(dir, &latency_bound, 300, &naive);
    eprintln!("latency-bound (5000 rows)...");
    table.push(Row {
        scenario: "latency-bound: 100 ms, limit 20 in flight".into(),
        measured: register(dir, &latency_bound, 5_000, &unlimited),
        limit: Some(200.0),
        baseline: Some(naive_latency.throughput()),
    });

    // Instant server: the client's own cost per registration.
    eprintln!("instant server, naive baseline (2000 rows)...");
    let naive_instant = register(dir, &[], 2_000, &naive).throughput();
    for rows in [10_000u64, 1_000_000] {
        if quick && rows > 10_000 {
            continue;
        }
        eprintln!("instant server ({rows} rows)...");
        table.push(Row {
            scenario: format!("instant server: register {}", short(rows)),
            measured: register(dir, &[], rows, &unlimited),
            limit: None,
            baseline: Some(naive_instant),
        });
    }

    // Resume over a finished 1M-row results file: nothing to send.
    eprintln!("resume of a finished 1000000-row file...");
    let input = input_file(dir, 1_000_000);
    let results = dir.join("resume.results.csv");
    write_finished_results(&results, 1_000_000);
    let emulator = EmulatorProcess::start(&[]);
    let results = results.to_str().unwrap().to_string();
    let args = [
        "register",
        &input,
        "-q",
        "--base-url",
        &emulator.base_url,
        "--output",
        &results,
    ];
    let (wall, cpu, peak_rss_mb, exit) = run_client(&args);
    let sent = emulator.stats()["requests"].as_u64().unwrap_or(0);
    table.push(Row {
        scenario: format!("resume 1M finished rows ({sent} requests sent)"),
        measured: Measured {
            rows: 1_000_000,
            wall,
            cpu,
            peak_rss_mb,
            requests: sent,
            throttled: 0,
            exit,
        },
        limit: None,
        baseline: None,
    });
    drop(emulator);

    for rows in [10_000u64, 1_000_000] {
        eprintln!("validate ({rows} rows)...");
        let input = input_file(dir, rows);
        let (wall, cpu, peak_rss_mb, exit) = run_client(&["validate", &input]);
        table.push(Row {
            scenario: format!("validate {}", short(rows)),
            measured: Measured {
                rows,
                wall,
                cpu,
                peak_rss_mb,
                requests: 0,
                throttled: 0,
                exit,
            },
            limit: None,
            baseline: None,
        });
    }

    println!("Machine: {}", machine());
    print_table(&table);
    adaptive_table(dir);
}

fn short(rows: u64) -> String {
    if rows >= 1_000_000 {
        format!("{}M", rows / 1_000_000)
    } else {
        format!("{}k", rows / 1_000)
    }
}
