//! Reading the SIM list, with no network: everything between the user's CSV and a row that
//! is fit to send.
//!
//! - [`reader`] ([`SimReader`]) opens the file, refuses what is not a CSV of SIMs (exit 2),
//!   finds the columns and streams one [`InputRow`] per record with the line it started on;
//!   `frame` splits lines and parses records, `sniff` tells text from binary and finds the
//!   delimiter and the header.
//! - [`checks`]: the pure ICCID and registration code checks; [`screen`]: those checks and
//!   dedupe applied to each row, the one check path `register` and `validate` share.
//! - [`failed_out`]: the rows that failed, in the input's own columns, for fixing and
//!   feeding back.
//!
//! Files come from spreadsheets, exports and hand edits, so the reader takes what people
//! have: a UTF-8 BOM, CRLF or bare CR line ends, `,` `;` tab or `|` delimiters (or Excel's
//! `sep=;` first line), quoted fields, blank lines, padding spaces, and files without a header
//! row. It never holds more than one record: lines are framed here, with a cap of
//! [`MAX_RECORD_BYTES`], and each record is parsed with `csv_core`. The csv crate's own
//! reader cannot be used as is because one stray quote makes it swallow the rest of the file
//! into a single field; framing lines first means a broken line becomes one invalid row and
//! the lines after it are read as usual.
//!
//! Problems with the file as a whole are [`InputError`]s (exit 2, one sentence naming the
//! fix). A problem with one record travels with that record as [`InputRow::unreadable`], so
//! the run reports it as an `invalid` row and goes on. Nothing here imports from the API,
//! the run or the command line.

mod frame;
pub(crate) mod reader;
mod sniff;
#[cfg(test)]
mod tests;

pub mod checks;
pub(crate) mod failed_out;
pub mod screen;

use std::path::{Path, PathBuf};

use crate::secret::RegistrationCode;
use checks::Column;

pub use reader::SimReader;

/// Longest record kept, in bytes. SIM rows are under 100 bytes; anything near this is pasted
/// text or a broken quote, and capping it keeps memory flat whatever the file holds.
pub(crate) const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Most physical lines one quoted field may span before the opening quote is taken as stray.
const MAX_RECORD_LINES: usize = 32;

/// How to read the input, from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The field delimiter; detected from the header line when `None`.
    pub delimiter: Option<u8>,
    /// The first line is data: columns are ICCID, registration code, then anything.
    pub no_header: bool,
}

/// A problem with the input file as a whole. Each message is one sentence that names the fix.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: there is no such file; check the path and the current folder")]
    NotFound { path: String },
    #[error(
        "cannot read {path}: it is a folder, not a file; give the path of the CSV file inside it"
    )]
    Directory { path: String },
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read {path}: the file is empty; it needs a header row such as \
         `Iccid,RegistrationCode` and one row per SIM below it"
    )]
    Empty { path: String },
    #[error(
        "cannot read {path}: it has a header row but no SIM rows; add one row per SIM \
         (ICCID and registration code) below the header"
    )]
    HeaderOnly { path: String },
    #[error(
        "cannot read {path}: no column named like {wanted} (found: {found}); name it \
         `{suggest}` (accepted names: {accepted}){hint}"
    )]
    MissingColumn {
        path: String,
        wanted: &'static str,
        suggest: &'static str,
        accepted: &'static str,
        found: String,
        hint: &'static str,
    },
    #[error("cannot read {path}: it is {what}, not CSV text; {fix}")]
    NotText {
        path: String,
        what: &'static str,
        fix: &'static str,
    },
    #[error(
        "cannot read {path}: its first line is {bytes} bytes long, too long for a header row; \
         check that the file is the SIM list saved as CSV"
    )]
    HeaderTooLong { path: String, bytes: usize },
    #[error(
        "cannot read {path}: its header row is not UTF-8 text (found: {found}); save the file \
         as \"CSV UTF-8\", and check that it is the SIM list"
    )]
    HeaderNotUtf8 { path: String, found: String },
    #[error(
        "cannot read {path}: this is {what}, not a SIM list; pass the input CSV (the file \
         with the ICCIDs and registration codes) that {made_from}"
    )]
    NotAnInput {
        path: String,
        what: &'static str,
        made_from: &'static str,
    },
    #[error(
        "cannot read {path}: its first row looks like a SIM with the columns swapped (an \
         ICCID in column {iccid_column}, not column 1); put the ICCID first and the \
         registration code second, or add a header row that names them, such as \
         `RegistrationCode,Iccid`"
    )]
    SwappedColumns { path: String, iccid_column: usize },
}

/// What is wrong with one record, and in which column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub(crate) column: Column,
    pub(crate) reason: String,
}

/// One data record of the input.
#[derive(Clone)]
pub struct InputRow {
    /// The line of the input file where the record starts (the first line is 1).
    pub line: u64,
    /// The line where it ends: the same line unless a quoted field holds line breaks.
    pub end_line: u64,
    /// The ICCID field as written (trimmed; lossy if not UTF-8), before normalisation.
    pub(crate) iccid: String,
    pub code: RegistrationCode,
    /// Set when the record cannot be read as an ICCID and a code at all.
    pub unreadable: Option<Unreadable>,
    /// Every field as read (trimmed), for the fix-and-refeed file. It holds the code.
    pub(crate) fields: csv::ByteRecord,
    /// The `fleet` cell, when the file has that column and the cell is not empty.
    pub(crate) fleet: Option<String>,
    /// The `unique_name` cell (the third column of a headerless file), when not empty.
    pub(crate) unique_name: Option<String>,
}

impl std::fmt::Debug for InputRow {
    // By hand, because `fields` holds the registration code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputRow")
            .field("line", &self.line)
            .field("end_line", &self.end_line)
            .field("iccid", &self.iccid)
            .field("unreadable", &self.unreadable)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl InputRow {
    /// A readable row with just an ICCID and a code, for unit tests.
    pub(crate) fn for_test(line: u64, iccid: &str, code: &str) -> Self {
        InputRow {
            line,
            end_line: line,
            iccid: iccid.to_string(),
            code: RegistrationCode::new(code.to_string()),
            unreadable: None,
            fields: csv::ByteRecord::from(vec![iccid, code]),
            fleet: None,
            unique_name: None,
        }
    }
}

/// A header cell reduced for matching: lowercase, without spaces, `_` and `-`.
pub(crate) fn header_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where the input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputSource {
    Stdin,
    File(PathBuf),
}

impl InputSource {
    pub(crate) fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            InputSource::Stdin
        } else {
            InputSource::File(arg.to_path_buf())
        }
    }

    pub(crate) fn display_name(&self) -> String {
        match self {
            InputSource::Stdin => "standard input".to_string(),
            InputSource::File(path) => path.display().to_string(),
        }
    }

    /// Whether the input can be read only once: standard input, or a path that is neither
    /// a file nor a folder (a pipe such as `/dev/stdin` or `<(...)`, a device). A missing
    /// path or a folder is for the reader to refuse, by name.
    pub(crate) fn reads_once(&self) -> bool {
        match self {
            InputSource::Stdin => true,
            InputSource::File(path) => {
                std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir())
            }
        }
    }
}
