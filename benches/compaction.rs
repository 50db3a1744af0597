//! `cargo bench --bench compaction`: compacts a journal of 1,000,000 results rows (every SIM
//! with a checkpoint row before its final row, and the rows out of line order, as a run
//! with many workers writes them), every SIM in the input on the line it was written for,
//! and prints the time taken and the process's peak memory.
//! Not part of `cargo test`; no test asserts a timing.

use std::io::{BufReader, Read, Seek, Write};
use std::time::Instant;

use supersim_bulk::input::checks::checked_iccid_key;
use supersim_bulk::results::COLUMNS;
use supersim_bulk::results::compact::compact;

/// SIMs in the journal (two rows each); `BENCH_SIMS` sets another number.
fn sims() -> u64 {
    std::env::var("BENCH_SIMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500_000)
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("big.results.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "{}", COLUMNS.join(",")).unwrap();
    // Two rows per SIM (checkpoint, then final), in blocks of 64 lines finishing out of order.
    let sims = sims();
    for block in (0..sims).step_by(64) {
        for kind in ["checkpoint", "final"] {
            for n in (block..(block + 64).min(sims)).rev() {
                let message = if kind == "checkpoint" {
                    "registered; the update step has not finished yet"
                } else {
                    ""
                };
                writeln!(
                    file,
                    "{},8988307{n:013},registered,HS{n:032x},new,,,{message},,1,2026-11-27T00:00:00Z,,,fleet=field-devices,AC00000000000000000000000000000000,{:06x}",
                    n + 2,
                    n & 0xff_ffff
                )
                .unwrap();
            }
        }
    }
    drop(file);
    let rows = 2 * sims;
    // The input's SIMs in key order, read from a file as a run reads them from its plan.
    // These ICCIDs' keys rise with `n`, so they are written as they come: the benchmark's
    // own memory stays flat and the peak below is the compaction's.
    let mut input_sims = tempfile::tempfile().unwrap();
    {
        let mut out = std::io::BufWriter::new(&mut input_sims);
        let mut previous = None;
        for n in 0..sims {
            let key = checked_iccid_key(&format!("8988307{n:013}")).unwrap();
            assert!(previous < Some(key), "keys in order");
            previous = Some(key);
            out.write_all(&key.to_be_bytes()).unwrap();
            out.write_all(&(n + 2).to_be_bytes()).unwrap();
        }
    }
    input_sims.rewind().unwrap();
    let mut input_sims = BufReader::new(input_sims);
    let input = std::iter::from_fn(move || {
        let mut record = [0u8; 16];
        input_sims.read_exact(&mut record).ok()?;
        let word = |at: usize| u64::from_be_bytes(record[at..at + 8].try_into().unwrap());
        Some(Ok((word(0), word(8))))
    });
    let started = Instant::now();
    let done = compact(&path, dir.path(), input).expect("compaction");
    let elapsed = started.elapsed();
    assert_eq!(done.rows_before, rows);
    assert_eq!(done.rows_after, sims);
    println!(
        "compact {rows} journal rows to {} rows: {:.2}s, peak RSS {:.1} MB",
        done.rows_after,
        elapsed.as_secs_f64(),
        peak_rss_mb()
    );
}

/// The process's peak resident memory, from getrusage.
#[allow(unsafe_code)]
fn peak_rss_mb() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss as f64 / 1024.0
}
