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
//! The second table is the matrix of the account's concurrency limit (issue 19): each shape
//! (alone at 20, small, large, changing, and shared with another app whose requests come
//! evenly spaced or as a Poisson stream), under each latency distribution (uniform over
//! ±50%, long-tailed, and where no other app holds slots, fixed: answers in a train) and
//! each convention of the `Twilio-Concurrent-Requests` header (on
//! every answer, on 429s only, never), all with default flags and 3,000 rows (300 for the
//! small limit), as the issue measured them. Each row gives the possible throughput (the
//! polite share of the limit over the mean latency: all of it alone; with the other app, the
//! most that leaves it under 2% of its requests refused, simulated from its arrivals and
//! holding times), the ratio reached, the 429 shares of this run and of the other app, and
//! where concurrency settled. Beside each shape and latency runs the same client told the
//! limit (`--no-adaptive --concurrency P`, P the polite share), whose rows per second are
//! the yardstick of the ratio to told: what finding the limit costs, beyond what a run that
//! knew it pays anyway. On a shared account the told run also shows how often its answers
//! found the account full beside how often the other app did (its 429 share): the first is
//! all the header lets a client see of the second. `BENCH_ADAPTIVE_ONLY=1` runs only this
//! table, `BENCH_SHAPES=text` only the shapes whose name contains it, `BENCH_HEADERS=every`
//! (or `on-429`, `never`) only that convention of the header, `BENCH_LATENCIES=fixed` (or
//! `uniform`, `long`, comma-separated) only those latencies. `BENCH_NETWORK_DELAY=40ms`
//! puts a network round trip between client and account in every run (the emulator's
//! `--network-delay`; loopback has none): then the told client's share is of the account's
//! count, which the client's requests in flight exceed by those on the wire.
//! `BENCH_EMULATOR_FLAGS` adds its flags to every emulator of the matrix, as
//! `BENCH_EMULATOR_FLAGS=--header-counted-at-admission` for the other moment a server may
//! take an admitted answer's count at.
//!
//! The third table is the cost of `--report` (issue 21): the 1,000,000-row registration
//! against the instant server without it and with it (CPU, peak memory, the page's size).
//! `BENCH_REPORT_ONLY=1` runs only this table.
//!
//! Nothing here is part of `cargo test`; it prints a Markdown table for the README.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Emulator flags for the limit (and the other app), without latency or header flags.
    flags: Vec<String>,
    rows: u64,
    /// The account's limit over time: (from, limit), from time zero.
    schedule: Vec<(f64, f64)>,
    /// Mean latency, seconds.
    latency: f64,
    /// The other app: requests per second, each holding a slot for `latency` on average.
    other: Option<(f64, Arrivals)>,
}

/// How the other app's requests come.
#[derive(Clone, Copy, PartialEq)]
enum Arrivals {
    Regular,
    Poisson,
}

/// How each request's latency is drawn (the mean is the shape's in each).
#[derive(Clone, Copy, PartialEq)]
enum Latency {
    /// Uniform over ±50%: 50 to 150 ms at 100 ms.
    Uniform,
    /// Lognormal, the 99th percentile five times the median.
    LongTail,
    /// Every latency the same (the emulator's default): a round trip's answers come in a
    /// train.
    Fixed,
}

impl Latency {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Latency::Uniform => &["--latency-jitter", "0.5"],
            Latency::LongTail => &["--latency-distribution", "long-tail"],
            Latency::Fixed => &[],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Latency::Uniform => "uniform ±50%",
            Latency::LongTail => "long tail",
            Latency::Fixed => "fixed",
        }
    }
    /// The latencies a shape runs under: all three alone; beside the other app, whose
    /// requests would then hold their slots for exactly as long, the two that spread.
    fn for_shape(shape: &Shape) -> &'static [Latency] {
        if shape.other.is_some() {
            &[Latency::Uniform, Latency::LongTail]
        } else {
            &[Latency::Uniform, Latency::LongTail, Latency::Fixed]
        }
    }
}

/// Which answers carry `Twilio-Concurrent-Requests`.
const CONVENTIONS: [(&str, &str); 3] = [
    ("every", "every answer"),
    ("on-429", "429s only"),
    ("never", "never"),
];

impl Shape {
    /// The most of the limit a polite run may take: all of it alone; with the other app,
    /// the most that leaves it under 2% of its requests refused, worked out from its
    /// arrivals and holding times (see [`refused_share`]).
    fn polite_limit(&self, limit: f64, latency: Latency) -> f64 {
        let Some((rate, arrivals)) = self.other else {
            return limit;
        };
        let whole = limit as usize;
        (0..whole)
            .rev()
            .find(|&ours| refused_share(whole - ours, rate, self.latency, arrivals, latency) < 0.02)
            .unwrap_or(0) as f64
    }

    /// Rows per second possible over `wall` seconds: the polite share of the limit over
    /// the mean latency, averaged over the run.
    fn possible(&self, wall: f64, latency: Latency) -> f64 {
        let mut slot_seconds = 0.0;
        for (i, &(from, limit)) in self.schedule.iter().enumerate() {
            let until = self
                .schedule
                .get(i + 1)
                .map_or(wall, |next| next.0.min(wall));
            if until > from {
                slot_seconds += (until - from) * self.polite_limit(limit, latency);
            }
        }
        slot_seconds / self.latency / wall
    }
}

/// The share of the other app's requests refused when it has `slots` of the account to
/// itself (a loss system: a request that finds them all busy is refused), simulated over
/// 200,000 of its requests with a fixed seed.
fn refused_share(slots: usize, rate: f64, hold: f64, arrivals: Arrivals, latency: Latency) -> f64 {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let sigma = 5f64.ln() / 2.326_347_874;
    let mut ends: std::collections::BinaryHeap<std::cmp::Reverse<u64>> = Default::default();
    let (mut now, mut refused) = (0.0f64, 0u32);
    let total = 200_000;
    for _ in 0..total {
        now += match arrivals {
            Arrivals::Regular => 1.0 / rate,
            Arrivals::Poisson => -(1.0 - rng.random::<f64>()).ln() / rate,
        };
        let at = (now * 1e9) as u64;
        while ends.peek().is_some_and(|end| end.0 <= at) {
            ends.pop();
        }
        if ends.len() >= slots {
            refused += 1;
            continue;
        }
        let factor = match latency {
            Latency::Fixed => 1.0,
            Latency::Uniform => rng.random_range(0.5..=1.5),
            Latency::LongTail => {
                let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (sigma * normal - sigma * sigma / 2.0).exp()
            }
        };
        ends.push(std::cmp::Reverse(at + (hold * factor * 1e9) as u64));
    }
    f64::from(refused) / f64::from(total)
}

/// What one run against a shape did.
struct ShapeRun {
    wall: f64,
    rows: u64,
    requests: u64,
    throttled: u64,
    other_requests: u64,
    other_throttled: u64,
    /// Admitted answers given with the account at its limit.
    answers_at_limit: u64,
    settled: String,
}

impl ShapeRun {
    fn share(&self) -> f64 {
        self.throttled as f64 / self.requests.max(1) as f64
    }
    fn other_share(&self) -> Option<f64> {
        (self.other_requests > 0).then(|| self.other_throttled as f64 / self.other_requests as f64)
    }
    /// On a shared account, the share of this run's admitted answers that found it at its
    /// limit: all a client reading the count can know of how often the other app finds it
    /// full.
    fn full_share(&self) -> Option<f64> {
        let admitted = self.requests.saturating_sub(self.throttled);
        (self.other_requests > 0).then(|| self.answers_at_limit as f64 / admitted.max(1) as f64)
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
        answers_at_limit: get("answers_at_limit"),
        settled,
    }
}

/// `register` with default flags against a fresh emulator of this shape, latency and
/// header convention.
fn run_shape(dir: &Path, shape: &Shape, latency: Latency, header: &str) -> ShapeRun {
    let mut flags: Vec<&str> = shape.flags.iter().map(String::as_str).collect();
    flags.extend_from_slice(latency.flags());
    flags.extend(["--concurrency-header", header]);
    run_against(dir, &flags, shape.rows, &[])
}

/// The same client told the limit: `--no-adaptive --concurrency P`, P the polite share of
/// the shape's first limit, against the shape held at that limit (no schedule). Its rows
/// per second over the possible ones is what the tool reaches at this latency when nothing
/// is left to find: the credential check, the first and last round trips, the emulator's
/// rounding of each latency to the millisecond and the client's own turnaround.
fn run_told(dir: &Path, shape: &Shape, latency: Latency) -> (ShapeRun, f64) {
    let mut flags: Vec<&str> = Vec::new();
    let mut given = shape.flags.iter().map(String::as_str);
    while let Some(flag) = given.next() {
        if flag == "--limit-schedule" {
            given.next();
        } else {
            flags.push(flag);
        }
    }
    flags.extend_from_slice(latency.flags());
    let polite = shape.polite_limit(shape.schedule[0].1, latency);
    let concurrency = (polite as usize).to_string();
    let run = run_against(
        dir,
        &flags,
        shape.rows,
        &["--no-adaptive", "--concurrency", &concurrency],
    );
    let efficiency = run.rows as f64 / run.wall / (polite / shape.latency);
    (run, efficiency)
}

/// `register` with `client_flags` against a fresh emulator started with `emulator_flags`.
fn run_against(dir: &Path, emulator_flags: &[&str], rows: u64, client_flags: &[&str]) -> ShapeRun {
    let network_delay = std::env::var("BENCH_NETWORK_DELAY").unwrap_or_default();
    let extra_flags = std::env::var("BENCH_EMULATOR_FLAGS").unwrap_or_default();
    let mut emulator_flags = emulator_flags.to_vec();
    if !network_delay.is_empty() {
        emulator_flags.extend(["--network-delay", &network_delay]);
    }
    emulator_flags.extend(extra_flags.split_whitespace());
    let emulator = EmulatorProcess::start(&emulator_flags);
    let input = input_file(dir, rows);
    let output = dir.join("shape.results.csv");
    let summary = dir.join("shape.summary.json");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&summary);
    let (output, summary_path) = (
        output.to_str().unwrap().to_string(),
        summary.to_str().unwrap().to_string(),
    );
    let mut args = vec![
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
    args.extend_from_slice(client_flags);
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
    if let (Some(other), Some(peak)) = (c["other_in_flight"].as_f64(), c["other_peak"].as_u64()) {
        settled.push_str(&format!(", other seen {other:.1}, at most {peak}"));
    }
    let registered = summary["this_run"]["registered"].as_u64().unwrap_or(0);
    shape_stats(&emulator, wall.as_secs_f64(), registered, settled)
}

fn shapes() -> Vec<Shape> {
    let flags = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    let shared = |arrivals: Arrivals, name| Shape {
        name,
        flags: flags(&[
            "--max-concurrent",
            "20",
            "--latency",
            "100ms",
            "--other-rate",
            "60",
            "--other-latency",
            "100ms",
            "--other-arrivals",
            if arrivals == Arrivals::Poisson {
                "poisson"
            } else {
                "regular"
            },
        ]),
        rows: 3_000,
        schedule: vec![(0.0, 20.0)],
        latency: 0.1,
        other: Some((60.0, arrivals)),
    };
    vec![
        Shape {
            name: "alone, limit 20, 100 ms",
            flags: flags(&["--max-concurrent", "20", "--latency", "100ms"]),
            rows: 3_000,
            schedule: vec![(0.0, 20.0)],
            latency: 0.1,
            other: None,
        },
        Shape {
            name: "small, limit 5, 300 ms",
            flags: flags(&["--max-concurrent", "5", "--latency", "300ms"]),
            rows: 300,
            schedule: vec![(0.0, 5.0)],
            latency: 0.3,
            other: None,
        },
        Shape {
            name: "large, limit 60, 200 ms",
            flags: flags(&["--max-concurrent", "60", "--latency", "200ms"]),
            rows: 3_000,
            schedule: vec![(0.0, 60.0)],
            latency: 0.2,
            other: None,
        },
        Shape {
            name: "changing, 20 → 8 at 5 s → 25 at 12 s, 100 ms",
            flags: flags(&[
                "--max-concurrent",
                "20",
                "--latency",
                "100ms",
                "--limit-schedule",
                "5s=8,12s=25",
            ]),
            rows: 3_000,
            schedule: vec![(0.0, 20.0), (5.0, 8.0), (12.0, 25.0)],
            latency: 0.1,
            other: None,
        },
        shared(
            Arrivals::Regular,
            "shared, limit 20, other app 60/s × 100 ms regular",
        ),
        shared(
            Arrivals::Poisson,
            "shared, limit 20, other app 60/s × 100 ms Poisson",
        ),
    ]
}

/// The matrix: each shape, under each latency distribution and header convention, with
/// default flags; then the same client told the limit, per shape and latency. Two
/// Markdown tables.
fn adaptive_table(dir: &Path) {
    let only = std::env::var("BENCH_SHAPES").unwrap_or_default();
    let headers = std::env::var("BENCH_HEADERS").unwrap_or_default();
    let mut lines = Vec::new();
    let mut told_lines = Vec::new();
    for shape in shapes()
        .into_iter()
        .filter(|s| s.name.contains(only.as_str()))
    {
        let latencies = std::env::var("BENCH_LATENCIES").unwrap_or_default();
        for &latency in Latency::for_shape(&shape).iter().filter(|l| {
            latencies.is_empty() || latencies.split(',').any(|name| l.name().starts_with(name))
        }) {
            eprintln!("{}, {}, told the limit...", shape.name, latency.name());
            let (told, efficiency) = run_told(dir, &shape, latency);
            let percent =
                |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
            told_lines.push(format!(
                "| {} | {} | {:.0} | {:.0} | {efficiency:.3} | {} | {} | {} |",
                shape.name,
                latency.name(),
                shape.polite_limit(shape.schedule[0].1, latency),
                told.rows as f64 / told.wall,
                percent(Some(told.share())),
                percent(told.other_share()),
                percent(told.full_share()),
            ));
            for (flag, header) in CONVENTIONS
                .into_iter()
                .filter(|(flag, _)| headers.is_empty() || headers.split(',').any(|h| h == *flag))
            {
                eprintln!("{}, {}, header {header}...", shape.name, latency.name());
                let run = run_shape(dir, &shape, latency, flag);
                let possible = shape.possible(run.wall, latency);
                let rate = run.rows as f64 / run.wall;
                lines.push(format!(
                    "| {} | {} | {header} | {possible:.0} | {:.0} | **{:.3}** | {:.3} | {} | {} | {} |",
                    shape.name,
                    latency.name(),
                    possible * efficiency,
                    rate / (possible * efficiency),
                    rate / possible,
                    percent(Some(run.share())),
                    percent(run.other_share()),
                    run.settled,
                ));
            }
        }
    }
    println!();
    if let Ok(flags) = std::env::var("BENCH_EMULATOR_FLAGS") {
        println!("Every emulator run with: `{flags}`.");
        println!();
    }
    if let Ok(delay) = std::env::var("BENCH_NETWORK_DELAY") {
        println!("Network round trip between client and account: {delay}.");
        println!();
    }
    println!(
        "| limit shape | latency | header | possible (rows/s) | told the limit (rows/s) | ratio to told | ratio to possible | 429 share | other app's 429 share | settled at |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!();
    println!(
        "| the same client told the limit | latency | --concurrency | rows/s | ratio to possible | 429 share | other app's 429 share | its answers with the account full |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for line in told_lines {
        println!("{line}");
    }
}

/// The 1,000,000-row registration against the instant server without `--report` and with
/// it: what the timeline and the page cost in CPU and memory. One Markdown table.
fn report_table(dir: &Path) {
    const ROWS: u64 = 1_000_000;
    let report = dir.join("run.html");
    let report_path = report.to_str().unwrap().to_string();
    let mut measured = Vec::new();
    for with_report in [false, true] {
        let _ = std::fs::remove_file(&report);
        eprintln!("instant server ({ROWS} rows), --report {with_report}...");
        let flags: Vec<&str> = if with_report {
            vec!["--report", &report_path]
        } else {
            Vec::new()
        };
        let run = register(dir, &[], ROWS, &flags);
        let size = std::fs::metadata(&report).map_or(0, |m| m.len());
        measured.push((with_report, run, size));
    }
    println!();
    println!("| register 1M, instant server | wall | client CPU | peak RSS | report size | exit |");
    println!("|---|---|---|---|---|---|");
    for (with_report, m, size) in &measured {
        println!(
            "| {} | {:.1}s | {:.2}s | {:.1} MB | {} | {} |",
            if *with_report {
                "with --report"
            } else {
                "without"
            },
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.peak_rss_mb,
            if *with_report {
                format!("{:.0} kB", *size as f64 / 1000.0)
            } else {
                "n/a".to_string()
            },
            m.exit
        );
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
    if std::env::var_os("BENCH_REPORT_ONLY").is_some() {
        println!("Machine: {}", machine());
        report_table(dir);
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
    if !quick {
        report_table(dir);
    }
    adaptive_table(dir);
}

fn short(rows: u64) -> String {
    if rows >= 1_000_000 {
        format!("{}M", rows / 1_000_000)
    } else {
        format!("{}k", rows / 1_000)
    }
}
