//! Compaction: when a run ends, the append-only journal becomes the file a person reads:
//! one row per SIM, its last word, on the line the SIM is on in the current input and in
//! that line order; then the rows of SIMs no longer in the input (the last word about a SIM
//! is never dropped). Checkpoint rows and the rows later runs superseded are taken out.
//!
//! While a run goes on the file stays a journal (rows appended in the order they finish),
//! because that is what makes it crash-safe. Compaction runs under the run's lock, writes
//! the compacted rows to a temporary file beside the journal (owner-only while it is
//! written, then given the journal's mode and owner), syncs it, and renames it over the
//! journal, so a crash at any point leaves either the old journal or the new file whole. A
//! temporary file left by a killed compaction is removed by the next run that holds the
//! lock ([`remove_leftovers`]).
//!
//! Which row survives follows what resuming reads. A row with a usable ICCID (not `invalid`
//! or `duplicate`) is about its SIM: the last row of each ICCID is kept, whatever line it
//! was written for, and given the line the SIM is first on in the current input. A row
//! without one (`invalid`, `duplicate`, an ICCID that fails the hard checks) is about its
//! line: the last of them on each line is kept, unless the line now holds a SIM (then only
//! a later row about that very SIM, such as a Fleet not on the account, is kept). Memory
//! stays flat: the rows are sorted on disk as fixed-size records by
//! [`crate::extsort`], merge-joined by key with the input's SIMs (already in key order), and
//! each surviving row is read back from the journal by its byte offset.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Outcome;
use crate::extsort::Sorter;
use crate::input::checks::checked_iccid_key;

/// A row of a SIM: its ICCID key, its order in the journal, the line it was written for,
/// its byte offset.
const BY_KEY: usize = 32;
/// A row placed in the compacted file: section, line, order, byte offset, kind, and the
/// ICCID key it names (0 for none).
const PLACED: usize = 34;

/// The compacted file's sections, in file order.
const IN_INPUT: u8 = 0;
const NOT_IN_INPUT: u8 = 1;
/// A placed row is about a SIM (else about its line) ...
const SIM_ROW: u8 = 1;
/// ... and goes on another line than the one it was written for.
const MOVED: u8 = 2;

/// What compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Rows in the journal.
    pub rows_before: u64,
    /// Rows in the file now.
    pub rows_after: u64,
    /// Rows about SIMs that are not in the current input, kept after its rows.
    pub(crate) not_in_input: u64,
    /// False when the journal already was compact: nothing written.
    pub(crate) rewritten: bool,
}

/// Compacts the results file at `path` in place, with temporary sort files in `temp_dir`.
/// `input_sims` are the current input's ICCID keys with the line each is first on, in key
/// order. Call it only while holding the run's lock on the file.
pub fn compact(
    path: &Path,
    temp_dir: &Path,
    input_sims: impl Iterator<Item = io::Result<(u64, u64)>>,
) -> anyhow::Result<Compacted> {
    compact_with_chunks(path, temp_dir, input_sims, None)
        .with_context(|| format!("cannot compact the results file {}", path.display()))
}

/// How many rows of each outcome (indexed by `Outcome as usize`) the compacted file at
/// `path` holds about the current input's lines (its first rows, before those of SIMs no
/// longer in the input), as `done` left it: what the file says about every input row, the
/// rows a stopped run never reached included.
pub(crate) fn outcomes_in_input(
    path: &Path,
    done: &Compacted,
) -> anyhow::Result<[u64; Outcome::ALL.len()]> {
    let in_input = done.rows_after.saturating_sub(done.not_in_input);
    let mut reader = csv::Reader::from_reader(BufReader::new(File::open(path)?));
    let mut record = csv::ByteRecord::new();
    let mut outcomes = [0u64; Outcome::ALL.len()];
    for _ in 0..in_input {
        if !reader.read_byte_record(&mut record)? {
            break;
        }
        let word = std::str::from_utf8(record.get(2).unwrap_or_default()).unwrap_or("");
        if let Ok(outcome) = word.parse::<Outcome>() {
            outcomes[outcome as usize] += 1;
        }
    }
    Ok(outcomes)
}

/// Removes the temporary files a killed compaction left beside the results file at `path`
/// (`.<name>.compacting.<pid>`: they hold ICCIDs and SIDs). Call it only while holding the
/// run's lock, so no compaction is under way.
pub(crate) fn remove_leftovers(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.compacting.");
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let leftover = entry.path();
        match std::fs::remove_file(&leftover) {
            Ok(()) => tracing::info!(
                file = %leftover.display(),
                "removed the temporary file of a compaction that did not finish"
            ),
            Err(error) => tracing::warn!(
                file = %leftover.display(),
                %error,
                "cannot remove the temporary file of a compaction that did not finish; delete it"
            ),
        }
    }
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

fn placed(section: u8, line: u64, order: u64, offset: u64, kind: u8, key: u64) -> [u8; PLACED] {
    let mut entry = [0u8; PLACED];
    entry[26..].copy_from_slice(&key.to_be_bytes());
    entry[0] = section;
    entry[1..9].copy_from_slice(&line.to_be_bytes());
    entry[9..17].copy_from_slice(&order.to_be_bytes());
    entry[17..25].copy_from_slice(&offset.to_be_bytes());
    entry[25] = kind;
    entry
}

/// A placed row, read back.
#[derive(Debug, Clone, Copy)]
struct Placed {
    section: u8,
    line: u64,
    order: u64,
    offset: u64,
    kind: u8,
    key: u64,
}

impl Placed {
    fn from(entry: &[u8; PLACED]) -> Placed {
        Placed {
            section: entry[0],
            line: u64_at(entry, 1),
            order: u64_at(entry, 9),
            offset: u64_at(entry, 17),
            kind: entry[25],
            key: u64_at(entry, 26),
        }
    }
}

/// [`compact`], with the sorts' chunk size set (tests use tiny chunks to exercise merges).
fn compact_with_chunks(
    path: &Path,
    temp_dir: &Path,
    input_sims: impl Iterator<Item = io::Result<(u64, u64)>>,
    chunk_records: Option<usize>,
) -> anyhow::Result<Compacted> {
    let journal = File::open(path)?;
    let identity = journal.metadata()?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(journal));
    reader.byte_headers()?;
    let data_start = reader.position().byte();
    // Only the last row of each ICCID is placed: a chunk keeps just that of each.
    let mut by_key = sorter::<BY_KEY>(temp_dir, chunk_records).last_of_each(8);
    let mut placed_rows = sorter::<PLACED>(temp_dir, chunk_records);
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        let offset = reader.position().byte();
        if !reader.read_byte_record(&mut record)? {
            break;
        }
        if super::is_blank_row(&record) {
            // Counted, never placed: the file is rewritten without it.
            rows += 1;
            continue;
        }
        let field = |i: usize| std::str::from_utf8(record.get(i).unwrap_or_default()).unwrap_or("");
        let line: u64 = field(0)
            .parse()
            .with_context(|| format!("the row at byte {offset} has no input line number"))?;
        let outcome: Option<Outcome> = field(2).parse().ok();
        let about_its_line = matches!(outcome, Some(Outcome::Invalid | Outcome::Duplicate));
        let iccid_key = checked_iccid_key(field(1));
        match iccid_key.filter(|_| !about_its_line) {
            Some(key) => {
                let mut entry = [0u8; BY_KEY];
                entry[..8].copy_from_slice(&key.to_be_bytes());
                entry[8..16].copy_from_slice(&rows.to_be_bytes());
                entry[16..24].copy_from_slice(&line.to_be_bytes());
                entry[24..].copy_from_slice(&offset.to_be_bytes());
                by_key.push(entry)?;
            }
            None => placed_rows.push(placed(
                IN_INPUT,
                line,
                rows,
                offset,
                0,
                iccid_key.unwrap_or(0),
            ))?,
        }
        rows += 1;
    }

    // The last row of each ICCID, on the line its SIM is first on in the input, or after
    // the input's rows when the SIM is no longer in it.
    let mut input_sims = input_sims.peekable();
    let mut not_in_input = 0u64;
    let mut place_sim = |last: &[u8; BY_KEY]| -> io::Result<[u8; PLACED]> {
        let (key, order, written, offset) = (
            u64_at(last, 0),
            u64_at(last, 8),
            u64_at(last, 16),
            u64_at(last, 24),
        );
        while let Some(Ok((input_key, _))) = input_sims.peek()
            && *input_key < key
        {
            input_sims.next();
        }
        if let Some(Err(_)) = input_sims.peek()
            && let Some(Err(error)) = input_sims.next()
        {
            return Err(error);
        }
        Ok(match input_sims.peek() {
            Some(Ok((input_key, line))) if *input_key == key => {
                let moved = if *line == written { 0 } else { MOVED };
                placed(IN_INPUT, *line, order, offset, SIM_ROW | moved, key)
            }
            _ => {
                not_in_input += 1;
                placed(NOT_IN_INPUT, written, order, offset, SIM_ROW, key)
            }
        })
    };
    let mut last_of_key: Option<[u8; BY_KEY]> = None;
    for entry in by_key.finish()? {
        let entry = entry?;
        if let Some(last) = last_of_key
            && u64_at(&last, 0) != u64_at(&entry, 0)
        {
            placed_rows.push(place_sim(&last)?)?;
        }
        last_of_key = Some(entry);
    }
    if let Some(last) = last_of_key {
        placed_rows.push(place_sim(&last)?)?;
    }

    // In file order: per line of the input, its SIM's row, and the last row about the line
    // itself; then the rows of SIMs not in the input. On a line that now holds a SIM, a row
    // about the line is kept only when it is about that SIM and came after its row (a Fleet
    // not on the account, say): any other was about a row that is no longer there.
    let mut out = Output {
        path,
        reader,
        record,
        data_start,
        identity,
        next_order: 0,
        last_identical: None,
        writing: None,
        placed: csv::ByteRecord::new(),
        line: Vec::new(),
        written: 0,
    };
    let mut group: Option<(u64, Option<Placed>, Option<Placed>)> = None;
    let flush_group = |out: &mut Output<'_>,
                       group: Option<(u64, Option<Placed>, Option<Placed>)>| {
        let Some((_, sim, about_line)) = group else {
            return Ok(());
        };
        let about_line = about_line
            .filter(|row| sim.is_none_or(|sim| row.key == sim.key && row.order > sim.order));
        let mut kept: Vec<Placed> = sim.into_iter().chain(about_line).collect();
        kept.sort_by_key(|row| row.order);
        kept.into_iter().try_for_each(|row| out.emit(row))
    };
    for entry in placed_rows.finish()? {
        let row = Placed::from(&entry?);
        if row.section != IN_INPUT {
            flush_group(&mut out, group.take())?;
            out.emit(row)?;
            continue;
        }
        if group.as_ref().is_some_and(|(line, _, _)| *line != row.line) {
            flush_group(&mut out, group.take())?;
        }
        let (_, sim, about_line) = group.get_or_insert((row.line, None, None));
        if row.kind & SIM_ROW != 0 {
            *sim = Some(row);
        } else {
            *about_line = Some(row);
        }
    }
    flush_group(&mut out, group.take())?;
    let rows_after = out.written;
    let rewritten = out.finish(rows)?;
    Ok(Compacted {
        rows_before: rows,
        rows_after,
        not_in_input,
        rewritten,
    })
}

/// The compacted file as it is produced: nothing is written while its rows are the
/// journal's own, in the journal's order; from the first difference on, the journal's
/// identical start is copied as it is and every further row is written.
struct Output<'a> {
    path: &'a Path,
    reader: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    /// Where the journal's first row starts.
    data_start: u64,
    /// The journal's metadata: its mode and owner are the compacted file's.
    identity: std::fs::Metadata,
    /// The journal row that comes next while the output is still the journal itself.
    next_order: u64,
    /// The offset of the last row of that identical start.
    last_identical: Option<u64>,
    writing: Option<(csv::Writer<BufWriter<File>>, PathBuf)>,
    /// The row being written, and its line number's digits, reused for every row.
    placed: csv::ByteRecord,
    line: Vec<u8>,
    /// Rows in the compacted file.
    written: u64,
}

impl Output<'_> {
    fn emit(&mut self, row: Placed) -> anyhow::Result<()> {
        self.written += 1;
        if self.writing.is_none() && row.order == self.next_order && row.kind & MOVED == 0 {
            self.next_order += 1;
            self.last_identical = Some(row.offset);
            return Ok(());
        }
        self.start_writing()?;
        // A seek empties the reader's buffer: skip it when the row is the next one anyway.
        if self.reader.position().byte() != row.offset {
            let mut position = csv::Position::new();
            position.set_byte(row.offset);
            self.reader.seek(position)?;
        }
        anyhow::ensure!(
            self.reader.read_byte_record(&mut self.record)?,
            "a row vanished while compacting"
        );
        // One record and one number buffer for every row: a million rows, no allocations.
        self.placed.clear();
        self.line.clear();
        write!(self.line, "{}", row.line)?;
        self.placed.push_field(&self.line);
        for field in self.record.iter().skip(1) {
            self.placed.push_field(field);
        }
        let (writer, _) = self.writing.as_mut().expect("writing has started");
        writer.write_byte_record(&self.placed)?;
        Ok(())
    }

    /// Creates the temporary file (owner-only: it holds ICCIDs and SIDs) and copies the
    /// journal's identical start into it, header included.
    fn start_writing(&mut self) -> anyhow::Result<()> {
        if self.writing.is_some() {
            return Ok(());
        }
        let prefix_end = match self.last_identical {
            None => self.data_start,
            Some(offset) => {
                let mut position = csv::Position::new();
                position.set_byte(offset);
                self.reader.seek(position)?;
                self.reader.read_byte_record(&mut self.record)?;
                self.reader.position().byte()
            }
        };
        let temp = temp_path(self.path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        let mut buffered = BufWriter::new(file);
        let copied = (|| -> io::Result<()> {
            let mut journal = File::open(self.path)?;
            let copied = io::copy(&mut (&mut journal).take(prefix_end), &mut buffered)?;
            if copied != prefix_end {
                return Err(io::Error::other("the results file shrank while compacting"));
            }
            // A record that ends `\r\n` (a file a spreadsheet saved) ends, for the reader,
            // between the two: its `\n` is copied too, or the next row would follow a bare
            // `\r`, and a header ending so is not read as the results header again.
            let mut line_break = [0u8; 1];
            if prefix_end > 0 && journal.read(&mut line_break)? == 1 && line_break[0] == b'\n' {
                let mut before = [0u8; 1];
                journal.seek(io::SeekFrom::Start(prefix_end - 1))?;
                journal.read_exact(&mut before)?;
                if before[0] == b'\r' {
                    buffered.write_all(b"\n")?;
                }
            }
            Ok(())
        })();
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(buffered);
        self.writing = Some((writer, temp));
        copied?;
        Ok(())
    }

    /// Puts the compacted file in place of the journal; false when it already was compact.
    fn finish(mut self, rows: u64) -> anyhow::Result<bool> {
        if self.writing.is_none() && self.next_order == rows {
            return Ok(false);
        }
        let done = self.start_writing().and_then(|()| {
            let (writer, _) = self.writing.take().expect("writing has started");
            let file = writer
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
            // The journal's owner (only root may give a file away, so this is best
            // effort), then its mode: a results file made private stays private.
            let _ = std::os::unix::fs::fchown(
                &file,
                Some(self.identity.uid()),
                Some(self.identity.gid()),
            );
            file.set_permissions(Permissions::from_mode(self.identity.mode() & 0o7777))?;
            file.sync_all()?;
            Ok(())
        });
        let temp = temp_path(self.path);
        if let Err(error) = done {
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
        if let Err(error) = std::fs::rename(&temp, self.path) {
            let _ = std::fs::remove_file(&temp);
            return Err(error.into());
        }
        // The rename is durable once the folder is synced.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(true)
    }
}

impl Drop for Output<'_> {
    /// A compaction that failed half way leaves no temporary file behind.
    fn drop(&mut self) {
        if let Some((_, temp)) = self.writing.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
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

    fn key(n: u64) -> u64 {
        checked_iccid_key(&iccid(n)).unwrap()
    }

    /// The input's SIMs as compaction takes them: (key, line) in key order.
    fn input(sims: &[(u64, u64)]) -> impl Iterator<Item = io::Result<(u64, u64)>> {
        let mut by_key: Vec<(u64, u64)> = sims.iter().map(|&(n, line)| (key(n), line)).collect();
        by_key.sort();
        by_key.into_iter().map(Ok)
    }

    fn row(line: u64, iccid: &str, outcome: &str, message: &str) -> String {
        format!("{line},{iccid},{outcome},,,,,\"{message}\",,1,2026-01-01T00:00:00Z,,,,AC1,\n")
    }

    fn file_with(dir: &Path, rows: &[String]) -> PathBuf {
        let path = dir.join("r.csv");
        std::fs::write(&path, format!("{}\n{}", COLUMNS.join(","), rows.concat())).unwrap();
        path
    }

    /// Line, outcome and message of every row, in file order.
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
    fn one_row_per_sim_on_its_current_line_then_the_sims_no_longer_in_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(3, &iccid(3), "gave_up", "503"),
                row(2, &iccid(2), "registered", super::super::PENDING_MESSAGE),
                row(4, "not an iccid", "invalid", "bad ICCID"),
                row(2, &iccid(2), "registered", ""),
                row(5, &iccid(2), "duplicate", "same ICCID as line 2"),
                row(3, &iccid(3), "registered", "later run"),
                row(6, &iccid(9), "registered", "gone from the input"),
                row(8, "x", "invalid", "line 8, superseded"),
                row(8, &iccid(8), "registered", "line 8 fixed"),
            ],
        );
        // The input now: SIM 3 first, SIM 2 on line 7, SIM 8 on line 8; SIM 9 is gone.
        let done = compact(&path, dir.path(), input(&[(3, 2), (2, 7), (8, 8)])).unwrap();
        assert_eq!(
            done,
            Compacted {
                rows_before: 9,
                rows_after: 6,
                not_in_input: 1,
                rewritten: true
            }
        );
        assert_eq!(
            lines_and_outcomes(&path),
            vec![
                (2, "registered".into(), "later run".into()),
                (4, "invalid".into(), "bad ICCID".into()),
                (5, "duplicate".into(), "same ICCID as line 2".into()),
                (7, "registered".into(), "".into()),
                (8, "registered".into(), "line 8 fixed".into()),
                (6, "registered".into(), "gone from the input".into()),
            ]
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }

    /// A row about a line that now holds a SIM is kept only when it is a later word about
    /// that SIM: the row deleted from the input leaves no stale `invalid` row behind.
    #[test]
    fn a_row_about_a_line_now_holding_a_sim_is_kept_only_when_it_is_about_that_sim() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(3, &iccid(3), "registered", "sim 3"),
                row(2, "bad", "invalid", "a row since deleted"),
                row(5, &iccid(5), "registered", "sim 5"),
                row(
                    5,
                    &iccid(5),
                    "invalid",
                    "Fleet spares is not on the account",
                ),
            ],
        );
        // The bad row on line 2 was deleted, so SIM 3 moved up to line 2.
        let done = compact(&path, dir.path(), input(&[(3, 2), (5, 5)])).unwrap();
        assert_eq!(done.rows_after, 3);
        assert_eq!(
            lines_and_outcomes(&path),
            vec![
                (2, "registered".into(), "sim 3".into()),
                (5, "registered".into(), "sim 5".into()),
                (
                    5,
                    "invalid".into(),
                    "Fleet spares is not on the account".into()
                ),
            ]
        );
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
                row(3, &iccid(7), "registered", "not in the input"),
            ],
        );
        let before = std::fs::read(&path).unwrap();
        let done = compact(&path, dir.path(), input(&[(2, 2), (4, 4)])).unwrap();
        assert!(!done.rewritten);
        assert_eq!((done.rows_after, done.not_in_input), (4, 1));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_moved_sim_is_rewritten_and_the_files_mode_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(
            dir.path(),
            &[
                row(2, &iccid(2), "registered", "first"),
                row(3, &iccid(3), "registered", "second"),
            ],
        );
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let done = compact(&path, dir.path(), input(&[(2, 2), (3, 5)])).unwrap();
        assert!(done.rewritten);
        assert_eq!(
            lines_and_outcomes(&path),
            vec![
                (2, "registered".into(), "first".into()),
                (5, "registered".into(), "second".into()),
            ]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
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
        assert!(compact(&path, dir.path(), input(&[])).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_a_killed_compactions_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let names = [
            "r.csv",
            ".r.csv.compacting.123",
            ".r.csv.compacting.",
            ".r.csv.compacting.12x",
            ".other.csv.compacting.123",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_leftovers(&path);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".other.csv.compacting.123",
                ".r.csv.compacting.",
                ".r.csv.compacting.12x",
                "r.csv"
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the journal and the input, compaction keeps the last row of each ICCID
        /// (on the SIM's line of the input, or after the input's rows when it is not in it)
        /// and the last row about each line unless a later row of a SIM took that line, as
        /// an in-memory model of the same rule says; no SIM ever loses its row.
        #[test]
        fn compaction_keeps_the_last_word_about_every_sim(
            journal in proptest::collection::vec((2u64..40, 0u64..12, 0usize..4), 1..120),
            placement in proptest::collection::vec(proptest::option::of(2u64..60), 12),
        ) {
            let outcomes = ["registered", "gave_up", "invalid", "update_failed"];
            let rows: Vec<(u64, String, &str, String)> = journal
                .iter()
                .enumerate()
                .map(|(n, (line, sim, outcome))| {
                    let outcome = outcomes[*outcome];
                    // Some invalid rows name a valid ICCID (a Fleet not on the account).
                    let iccid = if outcome == "invalid" && sim % 3 == 0 {
                        "bad".to_string()
                    } else {
                        iccid(*sim)
                    };
                    (*line, iccid, outcome, format!("row {n}"))
                })
                .collect();
            // Each SIM in the input on a line of its own, or not in it.
            let mut taken = std::collections::BTreeSet::new();
            let in_input: BTreeMap<String, u64> = placement
                .iter()
                .enumerate()
                .filter_map(|(sim, line)| {
                    let line = (*line)?;
                    taken.insert(line).then(|| (iccid(sim as u64), line))
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
            // (section, line, order) -> row
            let mut model: BTreeMap<(u8, u64, usize), (u64, String, String)> = BTreeMap::new();
            let mut sim_on_line: BTreeMap<u64, (String, usize)> = BTreeMap::new();
            for (iccid, &n) in &last_of_iccid {
                let (written, _, outcome, message) = &rows[n];
                match in_input.get(iccid) {
                    Some(&line) => {
                        sim_on_line.insert(line, (iccid.clone(), n));
                        model.insert((0, line, n), (line, outcome.to_string(), message.clone()));
                    }
                    None => {
                        model.insert((1, *written, n), (*written, outcome.to_string(), message.clone()));
                    }
                }
            }
            let mut last_about_line = BTreeMap::new();
            for (n, (line, _, outcome, _)) in rows.iter().enumerate() {
                if *outcome == "invalid" {
                    last_about_line.insert(*line, n);
                }
            }
            for (line, n) in last_about_line {
                let about = &rows[n].1;
                if sim_on_line
                    .get(&line)
                    .is_none_or(|(sim, order)| sim == about && n > *order)
                {
                    let (_, _, outcome, message) = &rows[n];
                    model.insert((0, line, n), (line, outcome.to_string(), message.clone()));
                }
            }
            let expected: Vec<_> = model.into_values().collect();

            let mut keyed: Vec<(u64, u64)> = in_input
                .iter()
                .map(|(iccid, line)| (checked_iccid_key(iccid).unwrap(), *line))
                .collect();
            keyed.sort();
            let done =
                compact_with_chunks(&path, dir.path(), keyed.into_iter().map(Ok), Some(3)).unwrap();
            prop_assert_eq!(lines_and_outcomes(&path), expected);
            let not_in_input = last_of_iccid.keys().filter(|i| !in_input.contains_key(*i)).count();
            prop_assert_eq!(done.not_in_input, not_in_input as u64);
        }
    }
}
