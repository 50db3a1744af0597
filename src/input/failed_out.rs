//! The fix-and-refeed file (`--failed-out PATH`): the input rows that ended `invalid`,
//! `rejected` or `gave_up`, in the input's own columns and delimiter plus a `reason` column,
//! so a person can correct them and pass the file straight back in.
//!
//! It is a copy of the user's input, registration codes included, so it is created with
//! owner-only permissions (0600). It is written to `PATH.partial` and renamed over `PATH`
//! when the run ends, so the file at `PATH` is always a whole one, and a failed-out file that
//! is also the input being read is replaced, never truncated under the reader. Only a
//! regular file (or a new path) is replaced, at `PATH` and at `PATH.partial`: a symbolic
//! link, a device or a pipe there is refused before anything is written, and checked again
//! before the rename at the end.
//!
//! Rows are written in input line order, however they finish (many SIMs are in flight at
//! once, each taking its own time): each row goes first to an anonymous spool file beside
//! `PATH` (owner-only, gone when the run ends), and its line, place and length to the
//! external sort; the end of the run copies the rows into `PATH.partial` in line order. So
//! memory stays flat whatever the number of failed rows.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::extsort::Sorter;
use crate::input::header_key;

/// A sort record: the input line, then the row's offset and length in the spool, each
/// big-endian, so byte order is line order (and arrival order within a line).
type Placed = [u8; 24];

/// Writes the fix-and-refeed file.
pub(crate) struct FailedOut {
    path: PathBuf,
    partial: PathBuf,
    /// `PATH.partial`, holding the header until the rows are copied in at the end.
    out: BufWriter<File>,
    /// The input's delimiter, which the rows keep.
    delimiter: u8,
    /// The rows in the order they finished.
    spool: BufWriter<File>,
    /// Bytes written to the spool so far: where the next row starts.
    spooled: u64,
    /// Each row's line and place in the spool.
    order: Sorter<24>,
    /// Number of the input's data columns; `reason` comes right after them.
    data_columns: usize,
    /// The input already ends with a `reason` column (it is an earlier failed-out file):
    /// that column is replaced rather than a second one added.
    replaces_reason: bool,
    /// Rows written.
    pub(crate) rows: u64,
}

impl FailedOut {
    /// Creates `PATH.partial` (mode 0600) and writes the header: the input's header, then
    /// `reason`.
    pub(crate) fn create(
        path: &Path,
        input_header: &csv::ByteRecord,
        delimiter: u8,
    ) -> anyhow::Result<Self> {
        Self::check_replaceable(path)?;
        let partial = Self::partial_path(path);
        let file = create_private(&partial)
            .with_context(|| format!("cannot create the failed-out file {}", partial.display()))?;
        let replaces_reason = input_header
            .iter()
            .next_back()
            .is_some_and(|last| header_key(&String::from_utf8_lossy(last)) == "reason");
        let data_columns = input_header.len() - usize::from(replaces_reason);
        let mut header: csv::ByteRecord = input_header.iter().take(data_columns).collect();
        header.push_field(b"reason");
        let mut out = BufWriter::new(file);
        formatted(delimiter, &header)
            .and_then(|bytes| out.write_all(&bytes))
            .with_context(|| format!("cannot write {}", partial.display()))?;
        let folder = crate::paths::folder_of(&partial).to_path_buf();
        let spool = tempfile::tempfile_in(&folder).with_context(|| {
            format!(
                "cannot create a temporary file in {} for the failed-out file",
                folder.display()
            )
        })?;
        Ok(FailedOut {
            path: path.to_path_buf(),
            partial,
            out,
            delimiter,
            spool: BufWriter::new(spool),
            spooled: 0,
            order: Sorter::new(&folder),
            data_columns,
            replaces_reason,
            rows: 0,
        })
    }

    /// Refuses a `PATH` (or `PATH.partial`) that is not a regular file or a new path: the
    /// rename at the end would replace a symbolic link, a device or a pipe with a file.
    pub(crate) fn check_replaceable(path: &Path) -> anyhow::Result<()> {
        for place in [path.to_path_buf(), Self::partial_path(path)] {
            let what = crate::paths::not_replaceable(&place)
                .with_context(|| format!("cannot check --failed-out {}", place.display()))?;
            if let Some(what) = what {
                anyhow::bail!(
                    "--failed-out {} is {what}: the failed-out file is written beside it and \
                     renamed over it, which replaces only a regular file; pass the path of a \
                     regular file or a new one",
                    place.display()
                );
            }
        }
        Ok(())
    }

    /// `PATH.partial`, where the file is written until the run ends.
    pub(crate) fn partial_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        path.with_file_name(name)
    }

    /// Writes the row of input line `line` with its reason; rows may come in any order.
    /// Short rows are padded so `reason` stays under its header; fields beyond the header
    /// come after it, so nothing the user wrote is lost.
    pub(crate) fn write(
        &mut self,
        line: u64,
        fields: &csv::ByteRecord,
        reason: &str,
    ) -> std::io::Result<()> {
        let mut out = csv::ByteRecord::new();
        for index in 0..self.data_columns {
            out.push_field(fields.get(index).unwrap_or_default());
        }
        out.push_field(reason.as_bytes());
        let skip = self.data_columns + usize::from(self.replaces_reason);
        for extra in fields.iter().skip(skip) {
            out.push_field(extra);
        }
        let bytes = formatted(self.delimiter, &out)?;
        self.spool.write_all(&bytes)?;
        let mut placed: Placed = [0; 24];
        placed[..8].copy_from_slice(&line.to_be_bytes());
        placed[8..16].copy_from_slice(&self.spooled.to_be_bytes());
        placed[16..].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.order.push(placed)?;
        self.spooled += bytes.len() as u64;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the file to disk and moves it to its final name. Returns the rows written.
    pub(crate) fn finish(mut self) -> anyhow::Result<u64> {
        let context = || {
            format!(
                "cannot write the failed-out file {}",
                self.partial.display()
            )
        };
        copy_in_line_order(&mut self.spool, &mut self.out, self.order).with_context(context)?;
        self.out.flush().with_context(context)?;
        self.out.get_ref().sync_all().with_context(context)?;
        // Something else may have taken the file's place while the run went on.
        Self::check_replaceable(&self.path)
            .with_context(|| format!("the failed rows are left in {}", self.partial.display()))?;
        std::fs::rename(&self.partial, &self.path).with_context(|| {
            format!(
                "cannot move {} to {}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        Ok(self.rows)
    }
}

/// One CSV record in `delimiter`, quoted where it needs to be, with its line end.
fn formatted(delimiter: u8, record: &csv::ByteRecord) -> std::io::Result<Vec<u8>> {
    let mut csv = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    csv.write_byte_record(record)?;
    csv.into_inner()
        .map_err(|error| std::io::Error::other(error.to_string()))
}

/// Copies the rows spooled in `spool` into `out` in line order.
fn copy_in_line_order(
    spool: &mut BufWriter<File>,
    out: &mut BufWriter<File>,
    order: Sorter<24>,
) -> std::io::Result<()> {
    spool.flush()?;
    let spool = spool.get_mut();
    let mut row = Vec::new();
    for placed in order.finish()? {
        let placed = placed?;
        let number = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&placed[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        let (offset, length) = (number(8), number(16));
        row.resize(usize::try_from(length).unwrap_or(usize::MAX), 0);
        spool.seek(SeekFrom::Start(offset))?;
        spool.read_exact(&mut row)?;
        out.write_all(&row)?;
    }
    Ok(())
}

/// Creates (replacing any earlier one) a file only its owner can read and write.
fn create_private(path: &Path) -> std::io::Result<File> {
    // A leftover file keeps its old permissions when reopened, so start from a new one.
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(
        header: &[&str],
        rows: &[(&[&str], &str)],
        delimiter: u8,
    ) -> (String, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed.csv");
        let mut out =
            FailedOut::create(&path, &csv::ByteRecord::from(header.to_vec()), delimiter).unwrap();
        for (line, (fields, reason)) in rows.iter().enumerate() {
            out.write(
                line as u64 + 2,
                &csv::ByteRecord::from(fields.to_vec()),
                reason,
            )
            .unwrap();
        }
        assert_eq!(out.finish().unwrap(), rows.len() as u64);
        (std::fs::read_to_string(&path).unwrap(), path, dir)
    }

    #[test]
    fn keeps_the_inputs_columns_and_delimiter_and_adds_reason() {
        let (text, _, _) = written(
            &["ICCID", "Registration Code", "Label"],
            &[
                (&["123", "ABCDEFGHIJ", "a;b"], "line 2: iccid: too short"),
                (&["456"], "line 3: registration_code: missing"),
                (&["789", "X", "l", "extra"], "line 4: row: odd"),
            ],
            b';',
        );
        assert_eq!(
            text,
            "ICCID;Registration Code;Label;reason\n\
             123;ABCDEFGHIJ;\"a;b\";line 2: iccid: too short\n\
             456;;;line 3: registration_code: missing\n\
             789;X;l;line 4: row: odd;extra\n"
        );
    }

    #[test]
    fn a_refed_file_gets_its_reason_replaced_not_doubled() {
        let (text, _, _) = written(
            &["iccid", "code", "reason"],
            &[(&["1", "2", "old reason"], "new reason")],
            b',',
        );
        assert_eq!(text, "iccid,code,reason\n1,2,new reason\n");
    }

    #[test]
    fn rows_that_finish_out_of_order_are_written_in_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed.csv");
        let header = csv::ByteRecord::from(vec!["iccid", "code"]);
        let mut out = FailedOut::create(&path, &header, b',').unwrap();
        for line in [9u64, 3, 12, 2, 7] {
            let iccid = format!("i{line}");
            out.write(
                line,
                &csv::ByteRecord::from(vec![iccid.as_str(), "c,d"]),
                "r",
            )
            .unwrap();
        }
        out.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "iccid,code,reason\ni2,\"c,d\",r\ni3,\"c,d\",r\ni7,\"c,d\",r\n\
             i9,\"c,d\",r\ni12,\"c,d\",r\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_can_read_it_even_when_replacing_a_world_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed.csv");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out =
            FailedOut::create(&path, &csv::ByteRecord::from(vec!["iccid", "code"]), b',').unwrap();
        out.finish().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("failed.csv.partial").exists());
    }
}
