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

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::input::header_key;

/// Writes the fix-and-refeed file.
pub(crate) struct FailedOut {
    path: PathBuf,
    partial: PathBuf,
    csv: csv::Writer<BufWriter<File>>,
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
        let mut csv = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_writer(BufWriter::new(file));
        let mut header: csv::ByteRecord = input_header.iter().take(data_columns).collect();
        header.push_field(b"reason");
        csv.write_byte_record(&header)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        Ok(FailedOut {
            path: path.to_path_buf(),
            partial,
            csv,
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

    /// Writes one input row with its reason. Short rows are padded so `reason` stays under
    /// its header; fields beyond the header come after it, so nothing the user wrote is lost.
    pub(crate) fn write(&mut self, fields: &csv::ByteRecord, reason: &str) -> std::io::Result<()> {
        let mut out = csv::ByteRecord::new();
        for index in 0..self.data_columns {
            out.push_field(fields.get(index).unwrap_or_default());
        }
        out.push_field(reason.as_bytes());
        let skip = self.data_columns + usize::from(self.replaces_reason);
        for extra in fields.iter().skip(skip) {
            out.push_field(extra);
        }
        self.csv.write_byte_record(&out)?;
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
        self.csv.flush().with_context(context)?;
        self.csv
            .get_ref()
            .get_ref()
            .sync_all()
            .with_context(context)?;
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
        for (fields, reason) in rows {
            out.write(&csv::ByteRecord::from(fields.to_vec()), reason)
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
