//! The append-only writer: claims the results file (refusing one that is not ours before
//! anything is written to it), repairs a torn last record, and appends one whole, flushed
//! row at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::borrow::Cow;

use anyhow::{Context, bail};

use super::earlier::earlier_rows;
use super::*;
use crate::paths;
use std::os::unix::fs::OpenOptionsExt as _;

/// Appends rows to the results file, one whole row per write, flushed at once.
pub(crate) struct ResultsWriter {
    csv: csv::Writer<BufWriter<File>>,
    /// How many of [`COLUMNS`] the file has: all of them, or an older 11 or 12.
    columns: usize,
    /// The account of this run, written on rows that have no SIM to name one.
    account_sid: Option<String>,
}

impl ResultsWriter {
    /// Resolves the results path to the real file (symlinks followed, once), creates it
    /// empty when it is missing, and checks it starts with the results header. Nothing is
    /// written into a file that exists: one that is not a results file is refused as it is.
    /// Returns the real path, which the lock and [`ResultsWriter::open`] then use.
    pub(crate) fn claim(path: &Path) -> anyhow::Result<PathBuf> {
        let cannot = |error: std::io::Error| {
            anyhow::anyhow!(
                "cannot write the results file {}: {error}; \
                 pass -o (--output) with a file in a folder you can write to",
                path.display()
            )
        };
        let real = paths::resolve(path).map_err(cannot)?;
        // Created owner-only, as export's and the failed-out file are: it lists the
        // account's SIMs. An existing file keeps its mode.
        let mut file = paths::no_follow()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&real)
            .map_err(cannot)?;
        if !file.metadata().map_err(cannot)?.is_file() {
            bail!(
                "the results file {} is not a regular file; pass -o (--output) with a file name",
                path.display()
            );
        }
        if read_header(&mut file).map_err(cannot)? == Header::Foreign {
            bail!(not_ours(path, &mut file));
        }
        Ok(real)
    }

    /// Opens (or creates) the results file, removes what a killed compaction left beside it,
    /// checks its header, repairs a torn last record, and positions the writer at its end.
    /// The rows already in it are handed back as a stream (read once by the resume plan),
    /// not loaded. `path` is the real path [`ResultsWriter::claim`] returned; a symlink in
    /// its place is refused, not followed.
    pub(crate) fn open(path: &Path) -> anyhow::Result<(ResultsWriter, EarlierRows)> {
        let cannot_open = || format!("cannot open results file {}", path.display());
        // Under the run's lock no compaction is under way: any temporary file of one is a
        // killed compaction's, holding ICCIDs and SIDs.
        super::compact::remove_leftovers(path);
        let mut file = paths::no_follow()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(cannot_open)?;
        let columns = match read_header(&mut file).with_context(cannot_open)? {
            Header::Foreign => bail!(not_ours(path, &mut file)),
            Header::Empty => None,
            Header::Torn => {
                tracing::warn!("the results file held only part of its header; starting it afresh");
                file.set_len(0).with_context(cannot_open)?;
                None
            }
            Header::Ours {
                columns,
                end,
                newline,
            } => {
                if !newline {
                    file.write_all(b"\n").with_context(cannot_open)?;
                }
                repair_torn_tail(&mut file, end + u64::from(!newline))
                    .with_context(|| format!("cannot repair results file {}", path.display()))?;
                Some(columns)
            }
        };
        let needs_header = columns.is_none();
        let (earlier, columns) = match columns {
            None => (EarlierRows::none(), COLUMNS.len()),
            Some(_) => {
                let reading = paths::no_follow()
                    .read(true)
                    .open(path)
                    .with_context(cannot_open)?;
                let (a, b) = (file.metadata()?, reading.metadata()?);
                if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                    bail!(
                        "the results file {} was replaced while opening it",
                        path.display()
                    );
                }
                earlier_rows(reading, path)
                    .with_context(|| format!("cannot resume from {}", path.display()))?
            }
        };
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(file));
        if needs_header {
            csv.write_record(COLUMNS)?;
            csv.flush()?;
        }
        Ok((
            ResultsWriter {
                csv,
                columns,
                account_sid: None,
            },
            earlier,
        ))
    }

    /// Sets the account written on rows that have no SIM to name one (`invalid`, say).
    pub(crate) fn set_account(&mut self, account_sid: Option<String>) {
        self.account_sid = account_sid;
    }

    /// Writes one row and flushes it to the operating system.
    pub(crate) fn write(&mut self, row: &ResultRow) -> std::io::Result<()> {
        let with_account;
        let row = match (&row.account_sid, &self.account_sid) {
            (None, Some(account)) => {
                with_account = ResultRow {
                    account_sid: Some(account.clone()),
                    ..row.clone()
                };
                &with_account
            }
            _ => row,
        };
        let marked;
        let row = match marked_as_text(row) {
            Some(row) => {
                marked = row;
                &marked
            }
            None => row,
        };
        let first_eleven = (
            row.line,
            &row.iccid,
            row.outcome,
            &row.sid,
            &row.status,
            &row.fleet_sid,
            row.error_code,
            &row.error_message,
            row.http_status,
            row.attempts,
            &row.finished_at,
        );
        // An older file keeps its own columns, so it stays a valid CSV.
        let written = match self.columns {
            COLUMNS_BEFORE_WARNING => self.csv.serialize(first_eleven),
            COLUMNS_BEFORE_ACCOUNT => self.csv.serialize((first_eleven, &row.warning)),
            COLUMNS_BEFORE_CODE_FINGERPRINT => self.csv.serialize((
                first_eleven,
                &row.warning,
                &row.unique_name,
                &row.update_requested,
                &row.account_sid,
            )),
            _ => self.csv.serialize(row),
        };
        written.map_err(std::io::Error::other)?;
        self.csv.flush()
    }

    /// Flushes and asks the OS to put the rows on disk.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.csv.flush()?;
        self.csv.get_ref().get_ref().sync_data()
    }
}

/// `row` with each cell of server text that a spreadsheet would take for a formula marked
/// as text (see [`super::cell`]); `None` when no cell needs it, as for almost every row.
fn marked_as_text(row: &ResultRow) -> Option<ResultRow> {
    let mark = |cell: &Option<String>| -> Option<String> {
        cell.as_deref()
            .map(|text| cell::spreadsheet_safe(text).into_owned())
    };
    let cells = [
        &row.status,
        &row.fleet_sid,
        &row.error_message,
        &row.unique_name,
    ];
    let needed = cells.iter().any(|cell| {
        cell.as_deref()
            .is_some_and(|text| matches!(cell::spreadsheet_safe(text), Cow::Owned(_)))
    });
    needed.then(|| ResultRow {
        status: mark(&row.status),
        fleet_sid: mark(&row.fleet_sid),
        error_message: mark(&row.error_message),
        unique_name: mark(&row.unique_name),
        ..row.clone()
    })
}

/// What the start of a file says about whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// Nothing in it yet: ours to write.
    Empty,
    /// A results header of `columns` columns; the first row starts at `end`. `newline` is
    /// false when the file ends right after the header, without its line break.
    Ours {
        columns: usize,
        end: u64,
        newline: bool,
    },
    /// The start of a results header and nothing more: a run died writing it.
    Torn,
    /// Anything else: not a results file. It is never written to.
    Foreign,
}

/// Reads the start of `file` and says whether it is a results file.
pub(super) fn read_header(file: &mut File) -> std::io::Result<Header> {
    let full = COLUMNS.join(",");
    // Enough for the longest header and `\r\n`. The header must be the file's first bytes
    // (a byte-order mark before it is not ours either: resuming could not read it).
    let limit = full.len() + 2;
    file.seek(SeekFrom::Start(0))?;
    let mut start = Vec::with_capacity(limit);
    (&mut *file).take(limit as u64).read_to_end(&mut start)?;
    if start.is_empty() {
        return Ok(Header::Empty);
    }
    let (line, end, newline) = match start.iter().position(|&b| b == b'\n') {
        Some(at) => {
            let line = &start[..at];
            (line.strip_suffix(b"\r").unwrap_or(line), at + 1, true)
        }
        None if start.len() < limit => (&start[..], start.len(), false),
        None => return Ok(Header::Foreign),
    };
    let known = KNOWN_WIDTHS
        .into_iter()
        .find(|&width| line == COLUMNS[..width].join(",").as_bytes());
    let columns = if let Some(width) = known {
        width
    } else if !newline && full.as_bytes().starts_with(line) {
        return Ok(Header::Torn);
    } else {
        return Ok(Header::Foreign);
    };
    Ok(Header::Ours {
        columns,
        end: end as u64,
        newline,
    })
}

/// The refusal of a file that is not a results file. A results file a spreadsheet saved
/// again may look right to a person and still not be one byte for byte: what differs is
/// named (a byte-order mark, quoted names, columns added or moved), so the fix is plain.
fn not_ours(path: &Path, file: &mut File) -> String {
    match spreadsheet_change(file) {
        Some(changes) => format!(
            "{} is not a supersim-bulk results file as the tool wrote it ({changes}); it was \
             left untouched: undo that and save it as plain CSV with the columns the tool wrote \
             ({}), or pass -o (--output) with a new file name",
            path.display(),
            COLUMNS.join(","),
        ),
        None => format!(
            "{} is not a supersim-bulk results file (it does not start with the header {}); \
             it was left untouched: pass -o (--output) with a new file name",
            path.display(),
            COLUMNS.join(","),
        ),
    }
}

/// What a spreadsheet changed in a results header, when the file's first line is one
/// changed so; `None` for any other file.
fn spreadsheet_change(file: &mut File) -> Option<String> {
    let mut start = Vec::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    (&mut *file).take(64 * 1024).read_to_end(&mut start).ok()?;
    let line = start.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (bom, line) = match line.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let names = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line)
        .into_byte_records()
        .next()?
        .ok()?;
    let names: Vec<&[u8]> = names.iter().collect();
    let ours = |width: usize| -> Vec<&[u8]> {
        COLUMNS[..width]
            .iter()
            .map(|name| name.as_bytes())
            .collect()
    };
    let width = KNOWN_WIDTHS
        .into_iter()
        .rev()
        .find(|&width| names.len() >= width && names[..width] == ours(width))
        .or_else(|| {
            let mut sorted = names.clone();
            sorted.sort();
            KNOWN_WIDTHS.into_iter().find(|&width| {
                let mut theirs = ours(width);
                theirs.sort();
                sorted == theirs
            })
        })?;
    let mut changes = Vec::new();
    if bom {
        changes.push(
            "it starts with a byte-order mark, as a spreadsheet's \"CSV UTF-8\" does".to_string(),
        );
    }
    if names[..width] != ours(width) {
        changes.push("its columns are in another order than the tool wrote them".to_string());
    } else if names.len() > width {
        let added: Vec<String> = names[width..]
            .iter()
            .map(|name| format!("`{}`", String::from_utf8_lossy(name)))
            .collect();
        changes.push(format!(
            "its header has columns added after `{}`: {}",
            COLUMNS[width - 1],
            added.join(", ")
        ));
    }
    if line.first() == Some(&b'"') {
        changes.push("its header's names are quoted".to_string());
    }
    if changes.is_empty() {
        return None;
    }
    Some(changes.join("; "))
}

/// How the records after the header end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// The last record ends with its line break (or there are none).
    Whole,
    /// The last record has no line break: it was cut off (a crash, a full disk, a
    /// truncated copy), whatever its width. The file should end at this offset, after the
    /// last whole record.
    TornAt(u64),
}

/// Where a CSV scanner is within a record. Quotes follow the rules the `csv` crate reads
/// by: a quote opens a quoted field only at the start of a field; inside one, `""` is a
/// quote and a line break is part of the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    FieldStart,
    Unquoted,
    Quoted,
    /// Just after a quote inside a quoted field: it closed the field, or a second one
    /// follows.
    QuoteInQuoted,
}

/// Reads the records from `start` (just after the header) to the end of `file`, honouring
/// quotes, and says how the last one ends. Every row is written with its line break, so a
/// record without one is torn, even when it has all its columns: a row cut inside its
/// last column (`account_sid`) would otherwise be read whole, naming an account that
/// does not exist.
///
/// `csv_core` reads a quoted field left open at the end of the input as a finished record,
/// and does not say it did, so the scan is done here.
pub(super) fn scan_tail(file: &mut File, start: u64) -> std::io::Result<Tail> {
    file.seek(SeekFrom::Start(start))?;
    scan(BufReader::with_capacity(64 * 1024, &mut *file), start)
}

/// [`scan_tail`] over any reader; `start` is the offset of its first byte.
pub(super) fn scan(mut reader: impl BufRead, start: u64) -> std::io::Result<Tail> {
    let mut state = Scan::FieldStart;
    let mut pos = start;
    // Just after the last whole record.
    let mut boundary = start;
    loop {
        let block = reader.fill_buf()?;
        if block.is_empty() {
            break;
        }
        let size = block.len();
        // Most blocks hold no quote at all: outside a quoted field, only the last line
        // break matters then. (The fold, unlike `contains`, has no early exit, so it
        // compiles to a vectorised loop.)
        if state != Scan::Quoted && !block.iter().fold(false, |quote, &b| quote | (b == b'"')) {
            if let Some(at) = block.iter().rposition(|&b| b == b'\n') {
                boundary = pos + at as u64 + 1;
            }
            state = match block[size - 1] {
                b',' | b'\n' => Scan::FieldStart,
                _ => Scan::Unquoted,
            };
            pos += size as u64;
            reader.consume(size);
            continue;
        }
        for &byte in block {
            pos += 1;
            state = match (state, byte) {
                (Scan::Quoted, b'"') => Scan::QuoteInQuoted,
                (Scan::Quoted, _) => Scan::Quoted,
                (Scan::QuoteInQuoted, b'"') | (Scan::FieldStart, b'"') => Scan::Quoted,
                (_, b',') => Scan::FieldStart,
                (_, b'\n') => {
                    boundary = pos;
                    Scan::FieldStart
                }
                _ => Scan::Unquoted,
            };
        }
        reader.consume(size);
    }
    Ok(if pos == boundary {
        Tail::Whole
    } else {
        Tail::TornAt(boundary)
    })
}

/// Makes the records after the header (from `start`) end whole: a torn last record is cut
/// off, and its SIM is then looked up or sent again as after any crash.
fn repair_torn_tail(file: &mut File, start: u64) -> std::io::Result<()> {
    match scan_tail(file, start)? {
        Tail::Whole => {}
        Tail::TornAt(keep) => {
            let len = file.metadata()?.len();
            tracing::warn!(
                dropped_bytes = len - keep,
                "the results file ended in a partly written row; dropped it before resuming"
            );
            file.set_len(keep)?;
        }
    }
    Ok(())
}
