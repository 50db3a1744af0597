//! Reading the SIM list: opens the file, refuses what is not a CSV of SIMs (exit 2), finds
//! the delimiter and the ICCID and registration code columns, and streams one [`InputRow`]
//! per record with the line it started on.
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
//! the run reports it as an `invalid` row and goes on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::secret::RegistrationCode;
use crate::validate::{Column, normalize_iccid};

/// Longest record kept, in bytes. SIM rows are under 100 bytes; anything near this is pasted
/// text or a broken quote, and capping it keeps memory flat whatever the file holds.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Most physical lines one quoted field may span before the opening quote is taken as stray.
const MAX_RECORD_LINES: usize = 32;

/// Header names (after [`header_key`]) taken as the ICCID column.
const ICCID_NAMES: [&str; 4] = ["iccid", "simiccid", "iccidnumber", "iccidno"];
/// Header names (after [`header_key`]) taken as the registration code column.
const CODE_NAMES: [&str; 6] = [
    "registrationcode",
    "simregistrationcode",
    "regcode",
    "code",
    "claimcode",
    "registration",
];
/// The accepted names as a person would write them, for error messages.
const ICCID_NAMES_SHOWN: &str = "Iccid, ICCID, sim_iccid, ICCID Number, iccid_no";
const CODE_NAMES_SHOWN: &str = "RegistrationCode, Registration Code, registration_code, \
                                reg_code, code, claim_code, registration";
/// Header names (after [`header_key`]) of the optional per-row Fleet (SID or unique name).
const FLEET_NAMES: [&str; 3] = ["fleet", "fleetsid", "fleetname"];
/// Header names (after [`header_key`]) of the optional per-row UniqueName.
const UNIQUE_NAME_NAMES: [&str; 3] = ["uniquename", "simuniquename", "simname"];
/// Delimiters recognised from the header line, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

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
}

/// What is wrong with one record, and in which column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub column: Column,
    pub reason: String,
}

/// One data record of the input.
#[derive(Clone)]
pub struct InputRow {
    /// The line of the input file where the record starts (the first line is 1).
    pub line: u64,
    /// The line where it ends: the same line unless a quoted field holds line breaks.
    pub end_line: u64,
    /// The ICCID field as written (trimmed; lossy if not UTF-8), before normalisation.
    pub iccid: String,
    pub code: RegistrationCode,
    /// Set when the record cannot be read as an ICCID and a code at all.
    pub unreadable: Option<Unreadable>,
    /// Every field as read (trimmed), for the fix-and-refeed file. It holds the code.
    pub fields: csv::ByteRecord,
    /// The `fleet` cell, when the file has that column and the cell is not empty.
    pub fleet: Option<String>,
    /// The `unique_name` cell (the third column of a headerless file), when not empty.
    pub unique_name: Option<String>,
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
pub fn header_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where the input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

impl InputSource {
    pub fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            InputSource::Stdin
        } else {
            InputSource::File(arg.to_path_buf())
        }
    }

    pub fn display_name(&self) -> String {
        match self {
            InputSource::Stdin => "standard input".to_string(),
            InputSource::File(path) => path.display().to_string(),
        }
    }
}

/// One physical line, without its line end.
enum Physical {
    Text {
        line: u64,
        bytes: Vec<u8>,
    },
    /// Longer than [`MAX_RECORD_BYTES`]; its bytes were skipped, not kept.
    TooLong {
        line: u64,
        bytes: usize,
    },
}

/// Splits a byte stream into physical lines at `\n`, `\r\n` or a bare `\r`, keeping at most
/// [`MAX_RECORD_BYTES`] of any line.
struct Lines {
    inner: Box<dyn BufRead + Send>,
    /// Number of the next line to be returned.
    next_line: u64,
    /// The last line ended with `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    /// The next line is the first of the file, where a UTF-8 BOM may sit.
    at_start: bool,
}

impl Lines {
    fn next(&mut self) -> std::io::Result<Option<Physical>> {
        let mut bytes = Vec::new();
        let mut length = 0usize;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
                self.inner.consume(1);
                continue;
            }
            any = true;
            let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(chunk.len());
            if length + take <= MAX_RECORD_BYTES {
                bytes.extend_from_slice(&chunk[..take]);
            }
            length += take;
            match end {
                Some(at) => {
                    self.after_cr = chunk[at] == b'\r';
                    self.inner.consume(at + 1);
                    break;
                }
                None => self.inner.consume(take),
            }
        }
        let line = self.next_line;
        self.next_line += 1;
        if std::mem::take(&mut self.at_start) && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes.drain(..3);
            length -= 3;
        }
        Ok(Some(if length > MAX_RECORD_BYTES {
            Physical::TooLong {
                line,
                bytes: length,
            }
        } else {
            Physical::Text { line, bytes }
        }))
    }
}

/// A record framed and split into fields, or why it could not be.
enum Framed {
    Fields {
        line: u64,
        end_line: u64,
        record: csv::ByteRecord,
    },
    TooLong {
        line: u64,
        bytes: usize,
    },
    /// A quoted field opened on this line and did not close; `record` is the line alone.
    OpenQuote {
        line: u64,
        record: csv::ByteRecord,
    },
}

/// Parses framed lines into fields with `csv_core`, joining lines only inside a quoted field.
struct Parser {
    core: csv_core::Reader,
    delimiter: u8,
    output: Vec<u8>,
    ends: Vec<usize>,
}

/// Drops the spaces between a delimiter and an opening quote (`a, "b, c"`), which hand-edited
/// files often have: `csv_core` only takes a quote as opening at the very start of a field.
fn unpad_quotes(line: &[u8], delimiter: u8) -> std::borrow::Cow<'_, [u8]> {
    if !line.contains(&b'"') {
        return std::borrow::Cow::Borrowed(line);
    }
    let is_pad = |b: u8| (b == b' ' || b == b'\t') && b != delimiter;
    let mut out = Vec::with_capacity(line.len());
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut i = 0;
    while i < line.len() {
        let byte = line[i];
        if at_field_start && !in_quotes && is_pad(byte) {
            let rest = line[i..].iter().position(|&b| !is_pad(b));
            if rest.is_some_and(|n| line[i + n] == b'"') {
                i += rest.unwrap_or(0);
                continue;
            }
        }
        at_field_start = !in_quotes && byte == delimiter;
        if byte == b'"' {
            in_quotes = !in_quotes;
        }
        out.push(byte);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

impl Parser {
    fn new(delimiter: u8) -> Self {
        Parser {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            delimiter,
            output: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Feeds `input` to the record in progress. True when the record ended (at the end of
    /// `input`, or at end of file when `input` is empty); false when a quoted field is open.
    fn feed(&mut self, input: &[u8], filled: &mut (usize, usize)) -> bool {
        use csv_core::ReadRecordResult::*;
        // Output never exceeds input, and there are never more fields than bytes plus one.
        let want = filled.0 + input.len() + 1;
        if self.output.len() < want {
            self.output.resize(want, 0);
        }
        if self.ends.len() < filled.1 + input.len() + 2 {
            self.ends.resize(filled.1 + input.len() + 2, 0);
        }
        let mut rest = input;
        loop {
            let (result, nin, nout, nend) = self.core.read_record(
                rest,
                &mut self.output[filled.0..],
                &mut self.ends[filled.1..],
            );
            rest = &rest[nin..];
            filled.0 += nout;
            filled.1 += nend;
            match result {
                Record | End => return true,
                InputEmpty if rest.is_empty() => return false,
                InputEmpty | OutputFull | OutputEndsFull => {
                    // Cannot happen with the sizes above; grow and go on rather than trust it.
                    self.output.resize(self.output.len() * 2 + 64, 0);
                    self.ends.resize(self.ends.len() * 2 + 8, 0);
                }
            }
        }
    }

    /// The fields of the record just completed, trimmed of surrounding whitespace.
    fn take(&self, filled: (usize, usize), record: &mut csv::ByteRecord) {
        record.clear();
        let mut start = 0;
        for &end in &self.ends[..filled.1] {
            record.push_field(self.output[start..end].trim_ascii());
            start = end;
        }
    }

    /// Parses one line on its own, ending the record at the end of the line whatever state
    /// the quotes are in.
    fn parse_line(&mut self, line: &[u8]) -> csv::ByteRecord {
        self.core.reset();
        let mut filled = (0, 0);
        let line = unpad_quotes(line, self.delimiter);
        if !self.feed(&line, &mut filled) {
            self.feed(&[], &mut filled);
        }
        let mut record = csv::ByteRecord::new();
        self.take(filled, &mut record);
        self.core.reset();
        record
    }
}

/// Streams [`InputRow`]s out of a CSV file or standard input.
pub struct SimReader {
    lines: Lines,
    /// Lines read ahead and handed back, when a quote turned out to be stray.
    replay: VecDeque<Physical>,
    parser: Parser,
    delimiter: u8,
    display_name: String,
    /// The header row as written, or made-up names for a headerless file.
    header: csv::ByteRecord,
    /// The line of the header row, if the file has one.
    header_line: Option<u64>,
    /// Fields a record is expected to have: the header's, or the first row's if there is none.
    expected_fields: usize,
    iccid_column: usize,
    code_column: usize,
    fleet_column: Option<usize>,
    unique_name_column: Option<usize>,
    /// The first data record, read ahead to tell a header-only file.
    first: Option<Framed>,
}

impl SimReader {
    /// Opens the input, checks that it is text, finds the delimiter and the columns, and
    /// reads ahead to the first data row. Fails with an [`InputError`] naming the fix.
    pub fn open(source: &InputSource, options: ReadOptions) -> Result<Self, InputError> {
        let display_name = source.display_name();
        let raw: Box<dyn Read + Send> = match source {
            InputSource::Stdin => Box::new(std::io::stdin()),
            InputSource::File(path) => Box::new(open_file(path, &display_name)?),
        };
        Self::from_reader(raw, display_name, options)
    }

    pub fn from_reader(
        raw: Box<dyn Read + Send>,
        display_name: String,
        options: ReadOptions,
    ) -> Result<Self, InputError> {
        let name = display_name.clone();
        let io_error = |source| InputError::Io {
            path: name.clone(),
            source,
        };
        let mut buffered = BufReader::with_capacity(64 * 1024, raw);
        if let Some((what, fix)) = sniff_binary(buffered.fill_buf().map_err(io_error)?) {
            return Err(InputError::NotText {
                path: display_name,
                what,
                fix,
            });
        }
        let mut lines = Lines {
            inner: Box::new(buffered),
            next_line: 1,
            after_cr: false,
            at_start: true,
        };
        let empty = || InputError::Empty {
            path: display_name.clone(),
        };
        let mut first_line = next_non_blank(&mut lines)
            .map_err(io_error)?
            .ok_or_else(empty)?;
        let mut delimiter = options.delimiter;
        if let Physical::Text { bytes, .. } = &first_line
            && let Some(declared) = excel_separator_line(bytes)
        {
            // Excel writes `sep=;` as a first line to say which delimiter it used.
            delimiter = delimiter.or(Some(declared));
            first_line = next_non_blank(&mut lines)
                .map_err(io_error)?
                .ok_or_else(empty)?;
        }
        let (line, bytes) = match first_line {
            Physical::Text { line, bytes } => (line, bytes),
            Physical::TooLong { bytes, .. } => {
                return Err(InputError::HeaderTooLong {
                    path: display_name,
                    bytes,
                });
            }
        };
        let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&bytes));
        let mut parser = Parser::new(delimiter);
        let first_record = parser.parse_line(&bytes);
        let first_record_fields = first_record.len();
        let names: Vec<String> = first_record
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        let find = |accepted: &[&str]| {
            names
                .iter()
                .position(|name| accepted.contains(&header_key(name).as_str()))
        };
        let mut replay = VecDeque::new();
        let (header, header_line, iccid_column, code_column) =
            if options.no_header || (find(&ICCID_NAMES).is_none() && looks_like_data(&names)) {
                replay.push_back(Physical::Text { line, bytes });
                (headerless_names(first_record.len().max(3)), None, 0, 1)
            } else {
                let missing = |wanted, suggest, accepted, hint| InputError::MissingColumn {
                    path: display_name.clone(),
                    wanted,
                    suggest,
                    accepted,
                    found: names.join(", "),
                    hint,
                };
                let header_is_text = first_record.iter().all(|f| std::str::from_utf8(f).is_ok());
                let (has_iccid, has_code) = (find(&ICCID_NAMES), find(&CODE_NAMES));
                if !header_is_text && (has_iccid.is_none() || has_code.is_none()) {
                    // Names that did not match because of their encoding: say so, not "rename it".
                    return Err(InputError::HeaderNotUtf8 {
                        path: display_name,
                        found: names.join(", "),
                    });
                }
                let iccid_column = has_iccid.ok_or_else(|| {
                    missing(
                        "ICCID",
                        "Iccid",
                        ICCID_NAMES_SHOWN,
                        ", or pass --no-header if the file has no header row",
                    )
                })?;
                let code_column = has_code.ok_or_else(|| {
                    missing(
                        "a registration code",
                        "RegistrationCode",
                        CODE_NAMES_SHOWN,
                        "",
                    )
                })?;
                (first_record, Some(line), iccid_column, code_column)
            };
        let (fleet_column, unique_name_column) = if header_line.is_some() {
            (find(&FLEET_NAMES), find(&UNIQUE_NAME_NAMES))
        } else {
            (None, Some(2))
        };
        let expected_fields = if header_line.is_some() {
            header.len()
        } else {
            first_record_fields
        };
        let mut reader = SimReader {
            expected_fields,
            lines,
            replay,
            parser,
            delimiter,
            display_name,
            header,
            header_line,
            iccid_column,
            code_column,
            fleet_column,
            unique_name_column,
            first: None,
        };
        reader.first = reader.next_framed().map_err(io_error)?;
        if reader.first.is_none() {
            return Err(if reader.header_line.is_some() {
                InputError::HeaderOnly {
                    path: reader.display_name,
                }
            } else {
                InputError::Empty {
                    path: reader.display_name,
                }
            });
        }
        Ok(reader)
    }

    /// The delimiter in use, detected or given.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The header row as written, or `iccid,registration_code,unique_name,...` for a
    /// headerless file.
    pub fn header(&self) -> &csv::ByteRecord {
        &self.header
    }

    /// The line of the header row, `None` for a headerless file.
    pub fn header_line(&self) -> Option<u64> {
        self.header_line
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// True when the header names a per-row Fleet column.
    pub fn has_fleet_column(&self) -> bool {
        self.fleet_column.is_some()
    }

    /// The next data record, skipping blank lines; `None` at the end of the input. An error
    /// is a failure to read the input at all, never a problem with one record.
    pub fn next_row(&mut self) -> Option<Result<InputRow, InputError>> {
        let framed = match self.first.take() {
            Some(framed) => framed,
            None => match self.next_framed() {
                Ok(Some(framed)) => framed,
                Ok(None) => return None,
                Err(source) => {
                    return Some(Err(InputError::Io {
                        path: self.display_name.clone(),
                        source,
                    }));
                }
            },
        };
        Some(Ok(self.to_row(framed)))
    }

    fn next_physical(&mut self) -> std::io::Result<Option<Physical>> {
        match self.replay.pop_front() {
            Some(physical) => Ok(Some(physical)),
            None => self.lines.next(),
        }
    }

    /// Frames the next non-blank record. A quoted field may carry line breaks; if its quote
    /// does not close within [`MAX_RECORD_BYTES`] and [`MAX_RECORD_LINES`], or the joined
    /// record does not have the header's number of fields, the quote is taken as stray: the
    /// first line alone is the record and the lines after it are read again on their own.
    fn next_framed(&mut self) -> std::io::Result<Option<Framed>> {
        loop {
            let (line, bytes) = match self.next_physical()? {
                None => return Ok(None),
                Some(Physical::TooLong { line, bytes }) => {
                    return Ok(Some(Framed::TooLong { line, bytes }));
                }
                Some(Physical::Text { line, bytes }) => (line, bytes),
            };
            if bytes.trim_ascii().is_empty() {
                continue;
            }
            self.parser.core.reset();
            let mut filled = (0, 0);
            let mut record = csv::ByteRecord::new();
            let first = unpad_quotes(&bytes, self.delimiter);
            if self.parser.feed(&first, &mut filled) || self.parser.feed(b"\n", &mut filled) {
                self.parser.take(filled, &mut record);
                if record.iter().all(<[u8]>::is_empty) {
                    continue;
                }
                return Ok(Some(Framed::Fields {
                    line,
                    end_line: line,
                    record,
                }));
            }
            // A quoted field is open at the end of the line: read on, keeping what was read.
            let mut taken: Vec<Physical> = Vec::new();
            let mut size = bytes.len();
            let mut closed_at = None;
            while taken.len() < MAX_RECORD_LINES && size <= MAX_RECORD_BYTES {
                let Some(next) = self.next_physical()? else {
                    break;
                };
                let Physical::Text {
                    line: next_line,
                    bytes: next_bytes,
                } = &next
                else {
                    taken.push(next);
                    break;
                };
                size += next_bytes.len() + 1;
                let closed = size <= MAX_RECORD_BYTES
                    && (self.parser.feed(next_bytes, &mut filled)
                        || self.parser.feed(b"\n", &mut filled));
                let next_line = *next_line;
                taken.push(next);
                if closed {
                    closed_at = Some(next_line);
                    break;
                }
            }
            if let Some(end_line) = closed_at {
                self.parser.take(filled, &mut record);
                if record.len() == self.expected_fields {
                    return Ok(Some(Framed::Fields {
                        line,
                        end_line,
                        record,
                    }));
                }
            }
            for physical in taken.into_iter().rev() {
                self.replay.push_front(physical);
            }
            return Ok(Some(Framed::OpenQuote {
                line,
                record: self.parser.parse_line(&bytes),
            }));
        }
    }

    fn to_row(&self, framed: Framed) -> InputRow {
        let (line, end_line, fields, problem) = match framed {
            Framed::Fields {
                line,
                end_line,
                record,
            } => (line, end_line, record, None),
            Framed::TooLong { line, bytes } => (
                line,
                line,
                csv::ByteRecord::new(),
                Some(Unreadable {
                    column: Column::Row,
                    reason: format!(
                        "row is {bytes} bytes long, over the {MAX_RECORD_BYTES}-byte limit \
                         for one row; remove the stray text or quote"
                    ),
                }),
            ),
            Framed::OpenQuote { line, record } => (
                line,
                line,
                record,
                Some(Unreadable {
                    column: Column::Row,
                    reason: "a quoted field opens with `\"` and never closes; remove the \
                             stray quote or close it"
                        .to_string(),
                }),
            ),
        };
        let text = |index: usize| fields.get(index).map(std::str::from_utf8);
        let iccid = fields
            .get(self.iccid_column)
            .map(|raw| String::from_utf8_lossy(raw).into_owned())
            .unwrap_or_default();
        let code = match text(self.code_column) {
            Some(Ok(code)) => code.to_string(),
            _ => String::new(),
        };
        let unreadable = problem.or_else(|| self.record_problem(&fields));
        let optional = |column: Option<usize>| match column.and_then(text) {
            Some(Ok(cell)) if !cell.is_empty() => Some(cell.to_string()),
            _ => None,
        };
        InputRow {
            line,
            end_line,
            iccid,
            code: RegistrationCode::new(code),
            unreadable,
            fleet: optional(self.fleet_column),
            unique_name: optional(self.unique_name_column),
            fields,
        }
    }

    /// Too few fields, or bytes that are not UTF-8 text.
    fn record_problem(&self, fields: &csv::ByteRecord) -> Option<Unreadable> {
        let needed = self.iccid_column.max(self.code_column) + 1;
        if fields.len() < needed {
            let missing = if fields.len() <= self.iccid_column {
                Column::Iccid
            } else {
                Column::Code
            };
            let plural = if fields.len() == 1 { "" } else { "s" };
            return Some(Unreadable {
                column: missing,
                reason: format!(
                    "row has {} field{plural}, too few to reach the {} column (field {}); \
                     check the delimiter and that no value is missing",
                    fields.len(),
                    missing.describe(),
                    if missing == Column::Iccid {
                        self.iccid_column + 1
                    } else {
                        self.code_column + 1
                    },
                ),
            });
        }
        let bad = fields
            .iter()
            .position(|field| std::str::from_utf8(field).is_err())?;
        let column = if bad == self.iccid_column {
            Column::Iccid
        } else if bad == self.code_column {
            Column::Code
        } else {
            Column::Row
        };
        Some(Unreadable {
            column,
            reason: format!(
                "field {} holds bytes that are not UTF-8 text; save the file as UTF-8 \
                 (\"CSV UTF-8\" in Excel)",
                bad + 1
            ),
        })
    }
}

/// Opens a file for reading, turning the usual mistakes into errors that say what to do.
fn open_file(path: &Path, display_name: &str) -> Result<File, InputError> {
    let path_name = || display_name.to_string();
    let classify = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => InputError::NotFound { path: path_name() },
        std::io::ErrorKind::IsADirectory => InputError::Directory { path: path_name() },
        _ => InputError::Io {
            path: path_name(),
            source,
        },
    };
    let metadata = std::fs::metadata(path).map_err(classify)?;
    if metadata.is_dir() {
        return Err(InputError::Directory { path: path_name() });
    }
    File::open(path).map_err(classify)
}

/// Recognises what is plainly not CSV text from the first bytes, with the way out.
fn sniff_binary(start: &[u8]) -> Option<(&'static str, &'static str)> {
    const SAVE_AS_CSV: &str =
        "open it in the spreadsheet program and save it as \"CSV UTF-8 (comma delimited)\"";
    if start.starts_with(b"PK\x03\x04") {
        Some((
            "a ZIP archive, such as an Excel workbook (.xlsx)",
            SAVE_AS_CSV,
        ))
    } else if start.starts_with(b"\xd0\xcf\x11\xe0") {
        Some(("an old-style Excel workbook (.xls)", SAVE_AS_CSV))
    } else if start.starts_with(b"%PDF") {
        Some((
            "a PDF document",
            "ask the supplier for the SIM list as CSV, or copy it into a spreadsheet and save that as CSV",
        ))
    } else if start.starts_with(b"\x1f\x8b") {
        Some((
            "a gzip archive",
            "unpack it (gunzip) and pass the CSV inside",
        ))
    } else if start.starts_with(b"\xff\xfe") || start.starts_with(b"\xfe\xff") {
        Some((
            "UTF-16 text",
            "save it as \"CSV UTF-8\" (or convert it with `iconv -f UTF-16 -t UTF-8`)",
        ))
    } else if start.contains(&0) {
        Some((
            "a binary file (it contains NUL bytes)",
            "export the SIM list as CSV text",
        ))
    } else {
        None
    }
}

fn next_non_blank(lines: &mut Lines) -> std::io::Result<Option<Physical>> {
    loop {
        match lines.next()? {
            Some(Physical::Text { bytes, .. }) if bytes.trim_ascii().is_empty() => continue,
            other => return Ok(other),
        }
    }
}

/// The delimiter of an Excel `sep=;` line.
fn excel_separator_line(line: &[u8]) -> Option<u8> {
    match line.trim_ascii() {
        [b's' | b'S', b'e' | b'E', b'p' | b'P', b'=', delimiter] => Some(*delimiter),
        _ => None,
    }
}

/// The candidate delimiter seen most often outside quotes on the header line; `,` if none.
pub fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut in_quotes = false;
    for &byte in line {
        if byte == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes && let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
            counts[i] += 1;
        }
    }
    let best = (0..DELIMITERS.len())
        .rev()
        .max_by_key(|&i| counts[i])
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        DELIMITERS[best]
    }
}

/// True when the first row is a SIM rather than a header: its first field is an ICCID.
fn looks_like_data(names: &[String]) -> bool {
    let Some(first) = names.first() else {
        return false;
    };
    let iccid = normalize_iccid(first);
    (18..=22).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
}

/// Column names for a headerless file, used in the fix-and-refeed file so it can be read back.
fn headerless_names(fields: usize) -> csv::ByteRecord {
    let mut names = csv::ByteRecord::from(vec!["iccid", "registration_code"]);
    for n in 3..=fields {
        if n == 3 {
            names.push_field(b"unique_name");
        } else {
            names.push_field(format!("column_{n}").as_bytes());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_bytes(bytes: &[u8], options: ReadOptions) -> Result<SimReader, InputError> {
        SimReader::from_reader(
            Box::new(std::io::Cursor::new(bytes.to_vec())),
            "test.csv".into(),
            options,
        )
    }

    fn reader(text: &str) -> Result<SimReader, InputError> {
        open_bytes(text.as_bytes(), ReadOptions::default())
    }

    /// (line, ICCID as written, code, the problem's reason)
    fn rows_of(mut reader: SimReader) -> Vec<(u64, String, String, Option<String>)> {
        std::iter::from_fn(|| reader.next_row())
            .map(|row| {
                let row = row.unwrap();
                (
                    row.line,
                    row.iccid,
                    row.code.expose().to_string(),
                    row.unreadable.map(|u| u.reason),
                )
            })
            .collect()
    }

    fn rows(text: &str) -> Vec<(u64, String, String, Option<String>)> {
        rows_of(reader(text).unwrap())
    }

    const SIM: &str = "89883070000123456789";

    #[test]
    fn header_names_match_loosely() {
        for header in [
            "Iccid,RegistrationCode",
            "ICCID,Registration Code",
            "sim_iccid,registration_code",
            "notes,SIM-ICCID,code",
            "\u{feff}iccid,Reg Code",
            "\"ICCID\",\"Registration Code\"",
        ] {
            let text = format!("{header}\n{SIM},H3LL0W0RLD\n");
            let reader = reader(&text).unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_ne!(reader.iccid_column, reader.code_column, "{header}");
        }
    }

    #[test]
    fn delimiters_are_detected_from_the_header() {
        for (text, delimiter) in [
            ("iccid,code\n", b','),
            ("iccid;code\n", b';'),
            ("iccid\tcode\n", b'\t'),
            ("iccid|code\n", b'|'),
            ("\"a;b\",iccid,code\n", b','),
            ("iccid;code;\"x,y,z\"\n", b';'),
            ("iccid\n", b','),
        ] {
            let line = text.trim_end().as_bytes();
            assert_eq!(detect_delimiter(line), delimiter, "{text:?}");
        }
        for text in [
            "Iccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD\n",
            "Iccid\tRegistrationCode\n89883070000123456789\tH3LL0W0RLD\n",
            "Iccid|RegistrationCode\n89883070000123456789|H3LL0W0RLD\n",
            "sep=;\nIccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD\n",
        ] {
            let got = rows(text);
            assert_eq!(got.len(), 1, "{text:?}");
            assert_eq!(got[0].1, SIM, "{text:?}");
            assert_eq!(got[0].2, "H3LL0W0RLD", "{text:?}");
            assert_eq!(got[0].3, None, "{text:?}");
        }
        let forced = open_bytes(
            b"Iccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD,y\n",
            ReadOptions {
                delimiter: Some(b';'),
                no_header: false,
            },
        )
        .unwrap();
        assert_eq!(rows_of(forced)[0].2, "H3LL0W0RLD,y");
    }

    #[test]
    fn line_ends_bom_quotes_blank_lines_and_padding() {
        let text = "\u{feff}Iccid,RegistrationCode,Label\r\n\r\n  \"8988 3070 0001 2345 6789\" , H3LL0W0RLD ,\"a, b\"\r\n,,\r\n\r89883070000123456788,ABCDEFGHIJ,\"multi\nline \"\"label\"\"\"\n89883070000123456770,ABCDEFGHIJ";
        let got = rows(text);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            (got[0].0, got[0].1.as_str()),
            (3, "8988 3070 0001 2345 6789")
        );
        assert_eq!(got[0].2, "H3LL0W0RLD");
        assert_eq!(got[1].0, 6, "a bare CR ends a line too");
        assert_eq!(got[2].0, 8, "the quoted label spans lines 6 and 7");
        assert!(got.iter().all(|row| row.3.is_none()), "{got:?}");
    }

    #[test]
    fn headerless_files_are_detected_or_forced() {
        let got =
            rows("89883070000123456789,H3LL0W0RLD,tracker-1\n8988307000012345678F,ABCDEFGHIJ\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1].1, "8988307000012345678F");
        let forced = open_bytes(
            b"123,H3LL0W0RLD\n",
            ReadOptions {
                delimiter: None,
                no_header: true,
            },
        )
        .unwrap();
        assert_eq!(forced.header().len(), 3);
        assert_eq!(rows_of(forced)[0].1, "123");
        assert_eq!(
            reader("8988307000012345678,CODE,name\n").unwrap().header(),
            &csv::ByteRecord::from(vec!["iccid", "registration_code", "unique_name"])
        );
    }

    #[test]
    fn file_level_errors_name_the_fix() {
        let message = |bytes: &[u8]| {
            open_bytes(bytes, ReadOptions::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let cases: &[(&[u8], &str)] = &[
            (b"", "the file is empty"),
            (b"\xef\xbb\xbf\r\n\n  \n", "the file is empty"),
            (b"sep=;\n", "the file is empty"),
            (b"Iccid,RegistrationCode\n", "header row but no SIM rows"),
            (
                b"Iccid,RegistrationCode\n,\n\n",
                "header row but no SIM rows",
            ),
            (b"serial,pin\n1,2\n", "found: serial, pin"),
            (b"serial,pin\n1,2\n", "accepted names: Iccid"),
            (b"serial,pin\n1,2\n", "--no-header"),
            (b"iccid,pin\n1,2\n", "`RegistrationCode`"),
            (b"PK\x03\x04\x14\x00rest", "Excel workbook"),
            (b"\xff\xfei\x00c\x00", "UTF-16"),
            (b"abc\x00def\n", "binary file"),
            (b"\xd0\xcf\x11\xe0", ".xls"),
            (b"ICCID;Num\xe9ro\n1;2\n", "header row is not UTF-8 text"),
        ];
        for (bytes, expected) in cases {
            let got = message(bytes);
            assert!(got.contains(expected), "{bytes:?}: {got}");
            assert!(got.starts_with("cannot read test.csv: "), "{got}");
        }
        let long = format!("{}\n", "x".repeat(MAX_RECORD_BYTES + 1));
        assert!(message(long.as_bytes()).contains("too long for a header row"));
    }

    #[test]
    fn bad_records_become_problems_and_reading_goes_on() {
        let long = "9".repeat(MAX_RECORD_BYTES + 10);
        let text = format!(
            "iccid,code,label\n\
             89883070000123456789\n\
             \"89883070000123456781,ABCDEFGHIJ,x\n\
             89883070000123456782,ABCDEFGHIJ,x\n\
             {long},x\n\
             89883070000123456783,ABCDEFGHIJ,x\n"
        );
        let got = rows(&text);
        let lines: Vec<u64> = got.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6], "{got:?}");
        assert!(got[0].3.as_deref().unwrap().contains("too few"), "{got:?}");
        assert!(got[1].3.as_deref().unwrap().contains("never closes"));
        assert_eq!(
            got[2].3, None,
            "the line after a stray quote is read on its own"
        );
        assert!(
            got[3]
                .3
                .as_deref()
                .unwrap()
                .contains(&format!("{} bytes long", MAX_RECORD_BYTES + 12))
        );
        assert_eq!(got[4].3, None);

        let mut reader = open_bytes(
            b"iccid,code,label\n8988307000012345678\xff,ABCDEFGHIJ,x\n89883070000123456789,ABCDEFGHIJ,M\xfcller\n",
            ReadOptions::default(),
        )
        .unwrap();
        let first = reader.next_row().unwrap().unwrap().unreadable.unwrap();
        assert_eq!(first.column, Column::Iccid);
        assert!(first.reason.contains("not UTF-8"));
        let second = reader.next_row().unwrap().unwrap().unreadable.unwrap();
        assert_eq!(second.column, Column::Row);
        assert!(second.reason.contains("field 3"));
    }

    #[test]
    fn a_stray_quote_does_not_swallow_the_rest_of_the_file() {
        let mut text = String::from("iccid,code\n\"89883070000123456789,H3LL0W0RLD\n");
        for n in 0..100 {
            text.push_str(&format!("898830700001234{n:05},ABCDEFGHIJ\n"));
        }
        text.push_str("89883070000123456789,end\"\n");
        let got = rows(&text);
        assert_eq!(got.len(), 102);
        assert!(got[0].3.is_some());
        assert!(got[1..].iter().all(|r| r.3.is_none()), "{:?}", &got[..3]);
    }

    #[test]
    fn debug_output_hides_the_fields() {
        let mut reader = reader("iccid,code\n89883070000123456789,SECRETCODE\n").unwrap();
        let row = reader.next_row().unwrap().unwrap();
        assert!(!format!("{row:?}").contains("SECRETCODE"));
    }

    #[test]
    fn optional_fleet_and_unique_name_columns() {
        let text = "Iccid,Fleet,Unique Name,Code\n\
                    89883070000123456789,HF0123456789abcdef0123456789abcdef,pump-7,H3LL0W0RLD\n\
                    89883070000123456788,,,ABCDEFGHIJ\n";
        let mut sims = reader(text).unwrap();
        assert!(sims.has_fleet_column());
        let first = sims.next_row().unwrap().unwrap();
        assert_eq!(
            first.fleet.as_deref(),
            Some("HF0123456789abcdef0123456789abcdef")
        );
        assert_eq!(first.unique_name.as_deref(), Some("pump-7"));
        assert_eq!(first.code.expose(), "H3LL0W0RLD");
        let second = sims.next_row().unwrap().unwrap();
        assert_eq!((second.fleet, second.unique_name), (None, None));
        assert!(
            !reader("iccid,code\n89883070000123456789,H3LL0W0RLD\n")
                .unwrap()
                .has_fleet_column()
        );
    }

    #[test]
    fn a_headerless_third_column_is_the_unique_name() {
        let mut sims = reader("89883070000123456789,H3LL0W0RLD,pump-7\n").unwrap();
        let row = sims.next_row().unwrap().unwrap();
        assert_eq!(row.unique_name.as_deref(), Some("pump-7"));
        assert!(!sims.has_fleet_column());
    }
}
