//! The append-only writer: opens (or creates) the results file, repairs a torn last row,
//! checks the header, and appends one whole, flushed row at a time.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;

use super::earlier::earlier_rows;
use super::*;

/// Appends rows to the results file, one whole row per write, flushed at once.
pub struct ResultsWriter {
    csv: csv::Writer<BufWriter<File>>,
    /// How many of [`COLUMNS`] the file has: all of them, or the older 11.
    columns: usize,
}

impl ResultsWriter {
    /// Opens (or creates) the results file, repairs a torn last row, checks its header, and
    /// positions the writer at its end. The rows already in it are handed back as a stream
    /// (read once by the resume plan), not loaded.
    pub fn open(path: &Path) -> anyhow::Result<(ResultsWriter, EarlierRows)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open results file {}", path.display()))?;
        let kept = repair_torn_tail(&mut file)
            .with_context(|| format!("cannot repair results file {}", path.display()))?;
        let (earlier, columns) = if kept == 0 {
            (EarlierRows::none(), COLUMNS.len())
        } else {
            let reading = File::open(path)
                .with_context(|| format!("cannot open results file {}", path.display()))?;
            earlier_rows(reading, path)
                .with_context(|| format!("cannot resume from {}", path.display()))?
        };
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(file));
        if kept == 0 {
            csv.write_record(COLUMNS)?;
            csv.flush()?;
        }
        Ok((ResultsWriter { csv, columns }, earlier))
    }

    /// Writes one row and flushes it to the operating system.
    pub fn write(&mut self, row: &ResultRow) -> std::io::Result<()> {
        let written = if self.columns == COLUMNS_BEFORE_WARNING {
            self.csv.serialize((
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
            ))
        } else {
            self.csv.serialize(row)
        };
        written.map_err(std::io::Error::other)?;
        self.csv.flush()
    }

    /// Flushes and asks the OS to put the rows on disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.csv.flush()?;
        self.csv.get_ref().get_ref().sync_data()
    }
}

/// Cuts the file back to its last complete line. Returns the length kept.
fn repair_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Read backwards in blocks until a newline shows where the last whole row ends.
    let mut end = len;
    let mut block = vec![0u8; 8192];
    loop {
        let start = end.saturating_sub(block.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        if let Some(pos) = block[..size].iter().rposition(|&b| b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                tracing::warn!(
                    dropped_bytes = len - keep,
                    "the results file ended in a partly written row; dropped it before resuming"
                );
                file.set_len(keep)?;
            }
            return Ok(keep);
        }
        if start == 0 {
            tracing::warn!("the results file held no complete row; starting it afresh");
            file.set_len(0)?;
            return Ok(0);
        }
        end = start;
    }
}
