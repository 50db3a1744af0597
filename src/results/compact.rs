//! Compaction: when a run ends, the append-only journal becomes the file a person reads:
//! one row per input line, in input line order, each line's last word, with the checkpoint
//! rows and the rows later runs superseded taken out.
//!
//! While a run goes on the file stays a journal (rows appended in the order they finish),
//! because that is what makes it crash-safe. Compaction runs under the run's lock, writes
//! the compacted rows to a temporary file beside the journal, syncs it, and renames it over
//! the journal, so a crash at any point leaves either the old journal or the new file whole.
//!
//! Which row survives follows what resuming reads: for each ICCID the last row wins, and an
//! `invalid` or `duplicate` row counts for its line. So the last row of each ICCID is kept
//! first, then the last of what remains on each line. Memory stays flat: the rows are
//! sorted on disk as fixed-size (key, order, line, offset) records by [`crate::extsort`],
//! and each surviving row is read back from the journal by its byte offset.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Outcome;
use crate::extsort::Sorter;
use crate::input::checks::checked_iccid_key;

/// A row of an ICCID: its key, its order in the journal, its line, its byte offset.
const BY_KEY: usize = 32;
/// A row that counts for its line: line, order, byte offset.
const BY_LINE: usize = 24;

/// What compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Rows in the journal.
    pub rows_before: u64,
    /// Rows in the file now.
    pub rows_after: u64,
    /// False when the journal already was one row per line in line order: nothing written.
    pub rewritten: bool,
}

/// Compacts the results file at `path` in place, with temporary sort files in `temp_dir`.
/// Call it only while holding the run's lock on the file.
pub fn compact(path: &Path, temp_dir: &Path) -> anyhow::Result<Compacted> {
    compact_with_chunks(path, temp_dir, None)
        .with_context(|| format!("cannot compact the results file {}", path.display()))
}

fn sorter<const N: usize>(dir: &Path, chunk_records: Option<usize>) -> Sorter<N> {
    match chunk_records {
        Some(records) => Sorter::with_chunk_records(dir, records),
        None => Sorter::new(dir),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

fn line_entry(line: u64, order: u64, offset: u64) -> [u8; BY_LINE] {
    let mut entry = [0u8; BY_LINE];
    entry[..8].copy_from_slice(&line.to_be_bytes());
    entry[8..16].copy_from_slice(&order.to_be_bytes());
    entry[16..].copy_from_slice(&offset.to_be_bytes());
    entry
}

/// [`compact`], with the sorts' chunk size set (tests use tiny chunks to exercise merges).
fn compact_with_chunks(
    path: &Path,
    temp_dir: &Path,
    chunk_records: Option<usize>,
) -> anyhow::Result<Compacted> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(File::open(path)?));
    let header = reader.byte_headers()?.clone();
    let mut by_key = sorter::<BY_KEY>(temp_dir, chunk_records);
    let mut by_line = sorter::<BY_LINE>(temp_dir, chunk_records);
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    // Strictly increasing lines in file order: one row per line, already in line order.
    let mut lines_increasing = true;
    let mut previous_line = 0u64;
    loop {
        let offset = reader.position().byte();
        if !reader.read_byte_record(&mut record)? {
            break;
        }
        let field = |i: usize| std::str::from_utf8(record.get(i).unwrap_or_default()).unwrap_or("");
        let line: u64 = field(0)
            .parse()
            .with_context(|| format!("the row at byte {offset} has no input line number"))?;
        lines_increasing &= rows == 0 || line > previous_line;
        previous_line = line;
        let outcome: Option<Outcome> = field(2).parse().ok();
        let counts_for_its_line = matches!(outcome, Some(Outcome::Invalid | Outcome::Duplicate));
        match checked_iccid_key(field(1)).filter(|_| !counts_for_its_line) {
            Some(key) => {
                let mut entry = [0u8; BY_KEY];
                entry[..8].copy_from_slice(&key.to_be_bytes());
                entry[8..16].copy_from_slice(&rows.to_be_bytes());
                entry[16..24].copy_from_slice(&line.to_be_bytes());
                entry[24..].copy_from_slice(&offset.to_be_bytes());
                by_key.push(entry)?;
            }
            None => by_line.push(line_entry(line, rows, offset))?,
        }
        rows += 1;
    }

    // The last row of each ICCID goes on to compete for its line.
    let mut key_repeats = false;
    let mut last_of_key: Option<[u8; BY_KEY]> = None;
    for entry in by_key.finish()? {
        let entry = entry?;
        if let Some(last) = last_of_key {
            if u64_at(&last, 0) == u64_at(&entry, 0) {
                key_repeats = true;
            } else {
                by_line.push(line_entry(
                    u64_at(&last, 16),
                    u64_at(&last, 8),
                    u64_at(&last, 24),
                ))?;
            }
        }
        last_of_key = Some(entry);
    }
    if let Some(last) = last_of_key {
        by_line.push(line_entry(
            u64_at(&last, 16),
            u64_at(&last, 8),
            u64_at(&last, 24),
        ))?;
    }
    if lines_increasing && !key_repeats {
        return Ok(Compacted {
            rows_before: rows,
            rows_after: rows,
            rewritten: false,
        });
    }

    // The last of what remains on each line, in line order, read back by offset.
    let temp = temp_path(path);
    let written = (|| -> anyhow::Result<u64> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_byte_record(&header)?;
        let mut written = 0u64;
        let mut keep = |entry: &[u8; BY_LINE]| -> anyhow::Result<()> {
            let mut position = csv::Position::new();
            position.set_byte(u64_at(entry, 16));
            reader.seek(position)?;
            anyhow::ensure!(
                reader.read_byte_record(&mut record)?,
                "a row vanished while compacting"
            );
            writer.write_byte_record(&record)?;
            written += 1;
            Ok(())
        };
        let mut pending: Option<[u8; BY_LINE]> = None;
        for entry in by_line.finish()? {
            let entry = entry?;
            if let Some(previous) = pending
                && u64_at(&previous, 0) != u64_at(&entry, 0)
            {
                keep(&previous)?;
            }
            pending = Some(entry);
        }
        if let Some(previous) = pending {
            keep(&previous)?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}", e.error()))?
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
        file.sync_all()?;
        Ok(written)
    })();
    let rows_after = match written {
        Ok(rows_after) => rows_after,
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
    };
    if let Err(error) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(error.into());
    }
    // The rename is durable once the folder is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(Compacted {
        rows_before: rows,
        rows_after,
        rewritten: true,
    })
}

/// The temporary file compaction writes, beside the results file (so the rename stays on
/// one file system). Created new, so it never follows a file planted in its place.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.compacting.{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::results::COLUMNS;

    fn iccid(n: u64) -> String {
        format!("898830700000{n:08}")
    }

    fn row(line: u64, iccid: &str, outcome: &str, message: &str) -> String {
        format!("{line},{iccid},{outcome},,,,,\"{message}\",,1,2026-01-01T00:00:00Z,,,,AC1\n")
    }

    fn file_with(dir: &Path, rows: &[String]) -> PathBuf {
        let path = dir.join("r.csv");
        std::fs::write(&path, format!("{}\n{}", COLUMNS.join(","), rows.concat())).unwrap();
        path
    }

    /// Line and outcome of every row, in file order.
    fn lines_and_outcomes(path: &Path) -> Vec<(u64, String, String)> {
        let mut reader = csv::Reader::from_path(path).unwrap();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].parse().unwrap(), r[2].to_string(), r[7].to_string())
            })
            .collect()
    }

    #[test]
    fn one_row_per_line_in_line_order_with_the_last_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(3, &iccid(3), "gave_up", "503"),
                row(2, &iccid(2), "registered", super::super::PENDING_MESSAGE),
                row(
                    4,
                    "not an iccid",
                    "invalid",
                    "ICCID must be 19 or 20 digits",
                ),
                row(2, &iccid(2), "registered", ""),
                row(5, &iccid(2), "duplicate", "same ICCID as line 2"),
                row(3, &iccid(3), "registered", "later run"),
            ],
        );
        let done = compact(&path, dir.path()).unwrap();
        assert_eq!(
            done,
            Compacted {
                rows_before: 6,
                rows_after: 4,
                rewritten: true
            }
        );
        assert_eq!(
            lines_and_outcomes(&path),
            vec![
                (2, "registered".into(), "".into()),
                (3, "registered".into(), "later run".into()),
                (4, "invalid".into(), "ICCID must be 19 or 20 digits".into()),
                (5, "duplicate".into(), "same ICCID as line 2".into()),
            ]
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }

    #[test]
    fn a_compact_file_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(2, &iccid(2), "registered", ""),
                row(3, "x", "invalid", "bad"),
                row(4, &iccid(4), "rejected", "83002"),
            ],
        );
        let before = std::fs::read(&path).unwrap();
        let done = compact(&path, dir.path()).unwrap();
        assert!(!done.rewritten);
        assert_eq!(done.rows_after, 3);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_that_cannot_be_compacted_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(3, &iccid(3), "registered", ""),
                row(2, &iccid(2), "registered", ""),
                "not-a-line,x,invalid,,,,,,,0,2026-01-01T00:00:00Z,,,,\n".to_string(),
            ],
        );
        let before = std::fs::read(&path).unwrap();
        assert!(compact(&path, dir.path()).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the journal, compaction keeps what resuming reads: the last row of each
        /// ICCID and the last reported row of each line, then the last of those per line,
        /// as an in-memory model of the same rule says; and never two rows for one line.
        #[test]
        fn compaction_keeps_what_resume_reads(
            journal in proptest::collection::vec((2u64..40, 0u64..12, 0usize..4), 1..120)
        ) {
            let outcomes = ["registered", "gave_up", "invalid", "update_failed"];
            let rows: Vec<(u64, String, &str, String)> = journal
                .iter()
                .enumerate()
                .map(|(n, (line, sim, outcome))| {
                    let outcome = outcomes[*outcome];
                    let iccid = if outcome == "invalid" { "bad".to_string() } else { iccid(*sim) };
                    (*line, iccid, outcome, format!("row {n}"))
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let text: Vec<String> = rows.iter().map(|(l, i, o, m)| row(*l, i, o, m)).collect();
            let path = file_with(dir.path(), &text);

            let mut last_of_iccid = BTreeMap::new();
            for (n, (_, iccid, outcome, _)) in rows.iter().enumerate() {
                if *outcome != "invalid" {
                    last_of_iccid.insert(iccid.clone(), n);
                }
            }
            let mut model: BTreeMap<u64, (u64, String, String)> = BTreeMap::new();
            for (n, (line, iccid, outcome, message)) in rows.iter().enumerate() {
                if *outcome == "invalid" || last_of_iccid[iccid] == n {
                    model.insert(*line, (*line, outcome.to_string(), message.clone()));
                }
            }
            let expected: Vec<_> = model.into_values().collect();

            compact_with_chunks(&path, dir.path(), Some(3)).unwrap();
            prop_assert_eq!(lines_and_outcomes(&path), expected);
        }
    }
}
