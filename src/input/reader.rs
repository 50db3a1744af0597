//! The streaming reader: opens the input, checks it, finds the columns, and hands out one
//! [`InputRow`] per record with the line it started on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::frame::{Framed, Lines, Parser, Physical, next_non_blank, unpad_quotes};
use super::sniff::*;
use super::*;

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
    pub(super) iccid_column: usize,
    pub(super) code_column: usize,
    fleet_column: Option<usize>,
    unique_name_column: Option<usize>,
    /// The first data record, read ahead to tell a header-only file.
    first: Option<Framed>,
}

impl SimReader {
    /// Opens the input, checks that it is text, finds the delimiter and the columns, and
    /// reads ahead to the first data row. Fails with an [`InputError`] naming the fix.
    pub(crate) fn open(source: &InputSource, options: ReadOptions) -> Result<Self, InputError> {
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
        let mut lines = Lines::new(Box::new(buffered));
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
        // The column with the first accepted name found (the names come most telling
        // first), not the first column with any of them.
        let find = |accepted: &[&str]| {
            accepted.iter().find_map(|wanted| {
                names
                    .iter()
                    .position(|name| header_key(name).as_str() == *wanted)
            })
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
                    found: shown_names(&names),
                    hint,
                };
                let header_is_text = first_record.iter().all(|f| std::str::from_utf8(f).is_ok());
                let (has_iccid, has_code) = (find(&ICCID_NAMES), find(&CODE_NAMES));
                if has_code.is_none()
                    && let Some((what, made_from)) = not_an_input(&names)
                {
                    return Err(InputError::NotAnInput {
                        path: display_name,
                        what,
                        made_from,
                    });
                }
                if has_iccid.is_none()
                    && let Some(column) = swapped_iccid_column(&names)
                {
                    // The first row is a SIM: its values (a registration code among them)
                    // are not quoted back.
                    return Err(InputError::SwappedColumns {
                        path: display_name,
                        iccid_column: column + 1,
                    });
                }
                if !header_is_text && (has_iccid.is_none() || has_code.is_none()) {
                    // Names that did not match because of their encoding: say so, not "rename it".
                    return Err(InputError::HeaderNotUtf8 {
                        path: display_name,
                        found: shown_names(&names),
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
    pub(crate) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The header row as written, or `iccid,registration_code,unique_name,...` for a
    /// headerless file.
    pub(crate) fn header(&self) -> &csv::ByteRecord {
        &self.header
    }

    /// The line of the header row, `None` for a headerless file.
    pub fn header_line(&self) -> Option<u64> {
        self.header_line
    }

    pub(crate) fn display_name(&self) -> &str {
        &self.display_name
    }

    /// True when the header names a per-row Fleet column.
    pub(crate) fn has_fleet_column(&self) -> bool {
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

/// The first row's cells as an error that lists them shows them. That row may be a SIM's
/// (a file with no header whose first ICCID is mistyped, or one read with another delimiter
/// than its own): every run of letters and digits shaped like a registration code is masked
/// (`QW******O1`), as an invalid row's ICCID is.
fn shown_names(names: &[String]) -> String {
    let shown_word = |word: &str| {
        if super::checks::check_code(word).is_ok() {
            crate::secret::mask(word)
        } else {
            word.to_string()
        }
    };
    let mut shown = Vec::with_capacity(names.len());
    for name in names {
        let mut cell = String::with_capacity(name.len());
        let mut word = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                word.push(c);
            } else {
                cell.push_str(&shown_word(&word));
                word.clear();
                cell.push(c);
            }
        }
        cell.push_str(&shown_word(&word));
        shown.push(cell);
    }
    shown.join(", ")
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
