//! `cargo bench --bench throughput`: how fast and how lean `supersim-bulk` is against the
//! emulator, next to a naive baseline (one request at a time, nothing adaptive).
//!
//! It runs the release binary as a child process against an emulator served by this
//! process, and reads the child's CPU time and peak RSS from `wait4`. Scenarios:
//! latency-bound (100 ms, 20 in flight allowed: a 200 requests/s limit the client is not
//! told), instant server (the client's own cost), 1,000,000-row `validate`, 1,000,000-row
//! resume of a finished file, and register at 10,000 and 1,000,000 rows for memory
//! flatness. `BENCH_QUICK=1` skips the 1,000,000-row registration, the slowest part.
//!
//! Nothing here is part of `cargo test`; it prints a Markdown table for the README.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use supersim_bulk::emulator::{
    Emulator, EmulatorConfig, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, registration_code_for,
};

const BINARY: &str = env!("CARGO_BIN_EXE_supersim-bulk");

/// What one run of the binary cost.
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

/// Runs the binary to its end and reads its resource use.
// The child is reaped by wait4 below, which std's lint cannot see.
#[allow(unsafe_code, clippy::zombie_processes)]
fn run_child(args: &[&str]) -> (Duration, Duration, f64, i32) {
    let started = Instant::now();
    let child = Command::new(BINARY)
        .args(args)
        .env("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN)
        .env_remove("TWILIO_API_KEY")
        .env_remove("TWILIO_API_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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

fn write_input(path: &Path, count: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "Iccid,RegistrationCode").unwrap();
    for (iccid, code) in sims(count) {
        writeln!(out, "{iccid},{code}").unwrap();
    }
}

/// A results file in which every SIM of the input is already registered.
fn write_finished_results(path: &Path, count: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at").unwrap();
    for (n, (iccid, _)) in sims(count).enumerate() {
        writeln!(
            out,
            "{},{iccid},registered,HS{n:032x},new,,,,,1,2026-11-26T00:00:00Z",
            n + 2
        )
        .unwrap();
    }
}

async fn register(
    dir: &Path,
    emulator_config: EmulatorConfig,
    rows: u64,
    flags: &[&str],
) -> Measured {
    let emulator = Emulator::start(emulator_config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let input = dir.join(format!("in-{rows}.csv"));
    if !input.exists() {
        write_input(&input, rows);
    }
    let output = dir.join("out.results.csv");
    let _ = std::fs::remove_file(&output);
    let base_url = emulator.base_url();
    let mut args = vec![
        "register",
        input.to_str().unwrap(),
        "-q",
        "--base-url",
        &base_url,
    ];
    let output_arg = output.to_str().unwrap().to_string();
    args.extend(["--output", &output_arg]);
    args.extend_from_slice(flags);
    let args_owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (wall, cpu, peak_rss_mb, exit) = tokio::task::spawn_blocking(move || {
        run_child(&args_owned.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let stats = emulator.stats();
    emulator.shutdown().await;
    Measured {
        rows,
        wall,
        cpu,
        peak_rss_mb,
        requests: stats.requests,
        throttled: stats.throttled,
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
        let limit = row.limit.map_or("n/a".to_string(), |l| format!("{l:.0}/s"));
        let ratio = row.limit.map_or("n/a".to_string(), |l| {
            format!("{:.0}%", 100.0 * m.throughput() / l)
        });
        let share = if m.requests > 0 {
            format!("{:.1}%", 100.0 * m.throttled as f64 / m.requests as f64)
        } else {
            "n/a".to_string()
        };
        let baseline = row
            .baseline
            .map_or("n/a".to_string(), |b| format!("{:.1}x", m.throughput() / b));
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` style discovery: nothing to list.
        return;
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_path: PathBuf = dir.path().to_path_buf();
    let mut table = Vec::new();
    eprintln!("benchmarking {BINARY} on {}", machine());

    runtime.block_on(async {
        let unlimited = ["--rate", "1000000", "--concurrency", "32"];
        let naive = ["--rate", "1000000", "--concurrency", "1"];

        // Latency-bound: 100 ms per request, 20 in flight allowed => 200 requests/s at best.
        let latency_bound = || EmulatorConfig {
            latency: Duration::from_millis(100),
            max_concurrent: Some(20),
            ..EmulatorConfig::default()
        };
        eprintln!("latency-bound, naive baseline (300 rows)...");
        let naive_latency = register(&dir_path, latency_bound(), 300, &naive).await;
        eprintln!("latency-bound (5000 rows)...");
        let measured = register(&dir_path, latency_bound(), 5_000, &unlimited).await;
        table.push(Row {
            scenario: "latency-bound: 100 ms, limit 20 in flight".into(),
            measured,
            limit: Some(200.0),
            baseline: Some(naive_latency.throughput()),
        });

        // Instant server: the client's own cost per registration.
        eprintln!("instant server, naive baseline (2000 rows)...");
        let naive_instant = register(&dir_path, EmulatorConfig::default(), 2_000, &naive).await;
        eprintln!("instant server (10000 rows)...");
        let measured = register(&dir_path, EmulatorConfig::default(), 10_000, &unlimited).await;
        let baseline = Some(naive_instant.throughput());
        table.push(Row {
            scenario: "instant server: register 10k".into(),
            measured,
            limit: None,
            baseline,
        });
        if !quick {
            eprintln!("instant server (1000000 rows)...");
            let measured =
                register(&dir_path, EmulatorConfig::default(), 1_000_000, &unlimited).await;
            table.push(Row {
                scenario: "instant server: register 1M".into(),
                measured,
                limit: None,
                baseline,
            });
        }

        // Resume over a finished 1M-row results file: nothing to send.
        eprintln!("resume of a finished 1000000-row file...");
        let input = dir_path.join("in-1000000.csv");
        if !input.exists() {
            write_input(&input, 1_000_000);
        }
        let results = dir_path.join("resume.results.csv");
        write_finished_results(&results, 1_000_000);
        let emulator = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let args: Vec<String> = [
            "register",
            input.to_str().unwrap(),
            "-q",
            "--base-url",
            &emulator.base_url(),
            "--output",
            results.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (wall, cpu, peak_rss_mb, exit) = tokio::task::spawn_blocking(move || {
            run_child(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let stats = emulator.stats();
        table.push(Row {
            scenario: format!("resume 1M finished rows ({} requests sent)", stats.requests),
            measured: Measured {
                rows: 1_000_000,
                wall,
                cpu,
                peak_rss_mb,
                requests: stats.requests,
                throttled: 0,
                exit,
            },
            limit: None,
            baseline: None,
        });

        // Validate 1M rows, when this build has the command.
        let has_validate = Command::new(BINARY)
            .args(["validate", "--help"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_validate {
            for rows in [10_000u64, 1_000_000] {
                eprintln!("validate ({rows} rows)...");
                let input = dir_path.join(format!("in-{rows}.csv"));
                if !input.exists() {
                    write_input(&input, rows);
                }
                let input = input.to_str().unwrap().to_string();
                let (wall, cpu, peak_rss_mb, exit) =
                    tokio::task::spawn_blocking(move || run_child(&["validate", &input]))
                        .await
                        .unwrap();
                table.push(Row {
                    scenario: format!("validate {}", if rows == 10_000 { "10k" } else { "1M" }),
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
        }
    });

    println!("Machine: {}", machine());
    print_table(&table);
}
