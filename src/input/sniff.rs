//! What the first lines say about the file: whether it is text at all, its delimiter,
//! whether it has a header row, and which header names mean which column.

use super::checks::{check_code, normalize_iccid};

/// Header names (after [`header_key`]) taken as the ICCID column. In each list of names the
/// first that a column has wins, whatever the column's place.
pub(super) const ICCID_NAMES: [&str; 4] = ["iccid", "simiccid", "iccidnumber", "iccidno"];
/// Header names (after [`header_key`]) taken as the registration code column, the most
/// telling first: a bare `code` is taken only when no column has a name that says more,
/// since a supplier's sheet may have an article `Code` beside the `Registration Code`.
pub(super) const CODE_NAMES: [&str; 6] = [
    "registrationcode",
    "simregistrationcode",
    "regcode",
    "claimcode",
    "registration",
    "code",
];
/// The accepted names as a person would write them, for error messages.
pub(super) const ICCID_NAMES_SHOWN: &str = "Iccid, ICCID, sim_iccid, ICCID Number, iccid_no";
pub(super) const CODE_NAMES_SHOWN: &str = "RegistrationCode, Registration Code, registration_code, \
                                reg_code, claim_code, registration, code";
/// Header names (after [`header_key`]) of the optional per-row Fleet (SID or unique name).
pub(super) const FLEET_NAMES: [&str; 3] = ["fleet", "fleetsid", "fleetname"];
/// Header names (after [`header_key`]) of the optional per-row UniqueName.
pub(super) const UNIQUE_NAME_NAMES: [&str; 3] = ["uniquename", "simuniquename", "simname"];
/// Delimiters recognised from the header line, in order of preference on a tie.
pub(super) const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Recognises what is plainly not CSV text from the first bytes, with the way out.
pub(super) fn sniff_binary(start: &[u8]) -> Option<(&'static str, &'static str)> {
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

/// The delimiter of an Excel `sep=;` line.
pub(super) fn excel_separator_line(line: &[u8]) -> Option<u8> {
    match line.trim_ascii() {
        [b's' | b'S', b'e' | b'E', b'p' | b'P', b'=', delimiter] => Some(*delimiter),
        _ => None,
    }
}

/// The candidate delimiter seen most often outside quotes on the header line; `,` if none.
pub(crate) fn detect_delimiter(line: &[u8]) -> u8 {
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
pub(super) fn looks_like_data(names: &[String]) -> bool {
    let Some(first) = names.first() else {
        return false;
    };
    let iccid = normalize_iccid(first);
    (18..=22).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
}

/// Column names for a headerless file, used in the fix-and-refeed file so it can be read back.
pub(super) fn headerless_names(fields: usize) -> csv::ByteRecord {
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

/// A file this tool wrote, given where its input belongs: the results of `register` (its
/// header starts `line,iccid,outcome`) or an `export` (starts `sid,iccid,status`). Returns
/// what it is and where it came from, for the message.
pub(super) fn not_an_input(names: &[String]) -> Option<(&'static str, &'static str)> {
    let starts = |expected: &[&str]| {
        names.len() >= expected.len()
            && names
                .iter()
                .zip(expected)
                .all(|(name, wanted)| name.trim() == *wanted)
    };
    if starts(&["line", "iccid", "outcome"]) {
        Some(("a supersim-bulk results file", "the run that wrote it read"))
    } else if starts(&["sid", "iccid", "status"]) {
        Some((
            "a supersim-bulk export of the account",
            "the SIMs were registered from",
        ))
    } else {
        None
    }
}

/// The column of an ICCID in a first row that is data with its columns out of order: the
/// first field is no ICCID but is shaped like a registration code, and a later one is an
/// ICCID. `None` for a header row.
pub(super) fn swapped_iccid_column(names: &[String]) -> Option<usize> {
    let first = names.first()?;
    if looks_like_data(names) || check_code(first.trim()).is_err() {
        return None;
    }
    names
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, name)| looks_like_data(std::slice::from_ref(*name)))
        .map(|(column, _)| column)
}
