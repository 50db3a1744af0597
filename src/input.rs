//! The SIM list reader: streams the input CSV one record at a time, finds the ICCID and
//! registration-code columns by their header names, and keeps each record's line number.
//!
//! Memory does not grow with the file: one record buffer is reused for the whole read.
//! Problems with the file as a whole are [`InputError`]s (exit 2); a problem with one record
//! is returned with that record, so the run can report it and go on.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::api::RegistrationCode;

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

/// Header names (after [`header_key`]) of the optional per-row Fleet (SID or unique name).
const FLEET_NAMES: [&str; 3] = ["fleet", "fleetsid", "fleetname"];
/// Header names (after [`header_key`]) of the optional per-row UniqueName.
const UNIQUE_NAME_NAMES: [&str; 3] = ["uniquename", "simuniquename", "simname"];

/// A problem with the input file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read {path}: no column named like {wanted} (found: {found}); \
         name it `{suggest}`"
    )]
    MissingColumn {
        path: String,
        wanted: &'static str,
        suggest: &'static str,
        found: String,
    },
    #[error(
        "cannot read {path}: the file is empty; it needs a header row such as `Iccid,RegistrationCode`"
    )]
    Empty { path: String },
    #[error("cannot read {path} at line {line}: {source}")]
    Csv {
        path: String,
        line: u64,
        #[source]
        source: csv::Error,
    },
}

/// One data record of the input.
#[derive(Debug)]
pub struct InputRow {
    /// The line of the input file where the record starts (the header is line 1).
    pub line: u64,
    /// The ICCID field as written (trimmed), before normalisation.
    pub iccid: String,
    pub code: RegistrationCode,
    /// Set when the record cannot be read as an ICCID and a code at all.
    pub unreadable: Option<String>,
    /// The `fleet` cell, when the file has that column and the cell is not empty.
    pub fleet: Option<String>,
    /// The `unique_name` cell, when the file has that column and the cell is not empty.
    pub unique_name: Option<String>,
}

/// Streams [`InputRow`]s out of a CSV file or standard input.
pub struct SimReader {
    reader: csv::Reader<Box<dyn Read + Send>>,
    display_name: String,
    iccid_column: usize,
    code_column: usize,
    fleet_column: Option<usize>,
    unique_name_column: Option<usize>,
    record: csv::ByteRecord,
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

impl SimReader {
    /// Opens the input and reads its header. Fails when the file cannot be read or does not
    /// name both columns.
    pub fn open(source: &InputSource) -> Result<Self, InputError> {
        let display_name = source.display_name();
        let raw: Box<dyn Read + Send> = match source {
            InputSource::Stdin => Box::new(std::io::stdin()),
            InputSource::File(path) => {
                let file = File::open(path).map_err(|source| InputError::Io {
                    path: display_name.clone(),
                    source,
                })?;
                Box::new(BufReader::with_capacity(64 * 1024, file))
            }
        };
        Self::from_reader(raw, display_name)
    }

    pub fn from_reader(
        raw: Box<dyn Read + Send>,
        display_name: String,
    ) -> Result<Self, InputError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(raw);
        let headers = reader.byte_headers().map_err(|source| InputError::Csv {
            path: display_name.clone(),
            line: 1,
            source,
        })?;
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(InputError::Empty { path: display_name });
        }
        let names: Vec<String> = headers
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .to_string()
            })
            .collect();
        let find = |accepted: &[&str]| {
            names
                .iter()
                .position(|name| accepted.contains(&header_key(name).as_str()))
        };
        let found = || names.join(", ");
        let iccid_column = find(&ICCID_NAMES).ok_or_else(|| InputError::MissingColumn {
            path: display_name.clone(),
            wanted: "ICCID",
            suggest: "Iccid",
            found: found(),
        })?;
        let code_column = find(&CODE_NAMES).ok_or_else(|| InputError::MissingColumn {
            path: display_name.clone(),
            wanted: "a registration code",
            suggest: "RegistrationCode",
            found: found(),
        })?;
        let fleet_column = find(&FLEET_NAMES);
        let unique_name_column = find(&UNIQUE_NAME_NAMES);
        Ok(SimReader {
            reader,
            display_name,
            iccid_column,
            code_column,
            fleet_column,
            unique_name_column,
            record: csv::ByteRecord::new(),
        })
    }

    /// True when the header names a per-row Fleet column.
    pub fn has_fleet_column(&self) -> bool {
        self.fleet_column.is_some()
    }

    /// The file's name as messages show it.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The next data record, skipping blank lines; `None` at the end of the input.
    pub fn next_row(&mut self) -> Option<Result<InputRow, InputError>> {
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(source) => {
                    let line = source.position().map_or(0, |p| p.line());
                    return Some(Err(InputError::Csv {
                        path: self.display_name.clone(),
                        line,
                        source,
                    }));
                }
            }
            if self.record.iter().all(|field| field.is_empty()) {
                continue;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            return Some(Ok(self.current_row(line)));
        }
    }

    fn current_row(&self, line: u64) -> InputRow {
        let field = |index: usize| self.record.get(index).map(std::str::from_utf8);
        let (iccid, code, unreadable) = match (field(self.iccid_column), field(self.code_column)) {
            (Some(Ok(iccid)), Some(Ok(code))) => (iccid.to_string(), code.to_string(), None),
            (None, _) | (_, None) => (
                field(self.iccid_column)
                    .and_then(Result::ok)
                    .unwrap_or_default()
                    .to_string(),
                String::new(),
                Some(format!(
                    "row has {} fields, fewer than the header names",
                    self.record.len()
                )),
            ),
            (iccid, _) => (
                iccid.and_then(Result::ok).unwrap_or_default().to_string(),
                String::new(),
                Some("row is not valid UTF-8 text".to_string()),
            ),
        };
        let optional = |column: Option<usize>| {
            column
                .and_then(|index| self.record.get(index))
                .and_then(|cell| std::str::from_utf8(cell).ok())
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
        };
        InputRow {
            line,
            iccid,
            code: RegistrationCode::new(code),
            unreadable,
            fleet: optional(self.fleet_column),
            unique_name: optional(self.unique_name_column),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str) -> Result<SimReader, InputError> {
        SimReader::from_reader(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            "test.csv".into(),
        )
    }

    fn rows(text: &str) -> Vec<(u64, String, String, Option<String>)> {
        let mut reader = reader(text).unwrap();
        std::iter::from_fn(|| reader.next_row())
            .map(|row| {
                let row = row.unwrap();
                (
                    row.line,
                    row.iccid,
                    row.code.expose().to_string(),
                    row.unreadable,
                )
            })
            .collect()
    }

    #[test]
    fn header_names_match_loosely() {
        for header in [
            "Iccid,RegistrationCode",
            "ICCID,Registration Code",
            "sim_iccid,registration_code",
            "notes,SIM-ICCID,code",
            "\u{feff}iccid,Reg Code",
        ] {
            let text = format!("{header}\n89883070000123456789,H3LL0W0RLD\n");
            let reader = reader(&text).unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_ne!(reader.iccid_column, reader.code_column, "{header}");
        }
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
        assert!(!reader("iccid,code\n").unwrap().has_fleet_column());
    }

    #[test]
    fn missing_column_lists_what_was_found() {
        let err = reader("serial,pin\n1,2\n").err().unwrap().to_string();
        assert!(err.contains("found: serial, pin"), "{err}");
        assert!(err.contains("`Iccid`"), "{err}");
        let err = reader("iccid,pin\n1,2\n").err().unwrap().to_string();
        assert!(err.contains("registration code"), "{err}");
        assert!(matches!(reader(""), Err(InputError::Empty { .. })));
    }

    #[test]
    fn keeps_line_numbers_and_skips_blank_lines() {
        let got = rows(
            "extra,iccid,code\nx,8988 3070 0001 2345 6789, H3LL0W0RLD \n\n,,\ny,89883070000123456788,ABCDEFGHIJ\n",
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 2);
        assert_eq!(got[0].1, "8988 3070 0001 2345 6789");
        assert_eq!(got[0].2, "H3LL0W0RLD");
        assert_eq!(got[1].0, 5);
    }

    #[test]
    fn short_and_non_utf8_rows_are_marked_unreadable() {
        let got = rows("iccid,code\n89883070000123456789\n");
        assert!(
            got[0]
                .3
                .as_deref()
                .unwrap()
                .contains("fewer than the header")
        );
        let mut reader = SimReader::from_reader(
            Box::new(std::io::Cursor::new(
                b"iccid,code\n8988307000012345678\xff,ABCDEFGHIJ\n".to_vec(),
            )),
            "t".into(),
        )
        .unwrap();
        let row = reader.next_row().unwrap().unwrap();
        assert!(row.unreadable.unwrap().contains("UTF-8"));
    }
}
