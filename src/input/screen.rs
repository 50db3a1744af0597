//! Decides, for each input row, whether it would be sent: the one reading-and-checking path
//! that `register` and `validate` share, so what `validate` promises is what `register` does.
//!
//! It applies the reader's record problems, the hard and soft checks of [`crate::input::checks`],
//! `--strict`, and the dedupe of repeated ICCIDs. It keeps no state and does no I/O: whether
//! a row's ICCID was on an earlier line is worked out on disk beforehand by
//! [`crate::run::plan`], from [`Screen::sendable_key`], and handed to [`Screen::judge`]. It
//! knows nothing of earlier runs (that is `register`'s resume).

use crate::input::InputRow;
use crate::input::checks::{
    Column, check_code, check_iccid, checked_iccid_key, code_warnings, iccid_warnings,
    normalize_iccid,
};
use crate::secret::mask;

/// Longest ICCID-as-written kept for an invalid row; anything longer is not an ICCID anyway.
pub(crate) const SHOWN_ICCID_CHARS: usize = 64;

/// Said of a row whose ICCID column holds a code and whose code column holds an ICCID.
pub(crate) const SWAPPED_COLUMNS: &str = "the ICCID and registration code columns look swapped \
                                   (the ICCID column holds a registration code); name the \
                                   columns in the header row";

/// The ICCID as written, for an invalid row: shortened if absurdly long, and masked when it
/// could be a registration code (a file with its columns swapped must not print its codes).
pub(crate) fn shown_iccid(raw: &str) -> String {
    let shown: String = raw.chars().take(SHOWN_ICCID_CHARS).collect();
    if could_be_a_code(raw) {
        mask(shown.trim())
    } else {
        shown
    }
}

/// Not an ICCID, and shaped like a registration code or holding letters, as codes do.
/// An all-digit value of another length is a mistyped ICCID and is shown as written.
fn could_be_a_code(raw: &str) -> bool {
    let value = raw.trim();
    check_iccid(&normalize_iccid(value)).is_err()
        && (check_code(value).is_ok() || value.chars().any(|c| c.is_alphabetic()))
}

/// One problem or warning, located by column. The reason never quotes the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub(crate) column: Column,
    pub(crate) reason: String,
}

impl Problem {
    fn new(column: Column, reason: impl ToString) -> Self {
        Problem {
            column,
            reason: reason.to_string(),
        }
    }
}

/// Reasons joined for one results cell: `reason; reason`.
pub(crate) fn join_reasons(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What happens to one input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Checked and new: it would be sent, with these soft warnings.
    Send {
        iccid: String,
        warnings: Vec<Problem>,
    },
    /// Fails a hard check (or a soft one under `--strict`): never sent.
    Invalid {
        /// The ICCID as written, shortened if absurdly long.
        iccid: String,
        problems: Vec<Problem>,
    },
    /// The ICCID was already on an earlier line: never sent again.
    Duplicate { iccid: String, first_line: u64 },
}

impl Verdict {
    /// The duplicate as a located problem, for reports.
    pub(crate) fn duplicate_problem(first_line: u64) -> Problem {
        Problem::new(
            Column::Iccid,
            format!("same ICCID as line {first_line}; it is sent only once"),
        )
    }
}

/// Checks rows, and turns the plan's answer about repeats into a verdict.
#[derive(Debug, Default, Clone, Copy)]
pub struct Screen {
    /// Soft checks count as invalid.
    strict: bool,
}

impl Screen {
    pub fn new(strict: bool) -> Self {
        Screen { strict }
    }

    /// The dedupe key of a row that passes every check [`Screen::judge`] applies, or `None`
    /// if the row is invalid. Only such rows count as the first occurrence of an ICCID: an
    /// invalid row is never a duplicate, nor the original of a later row. This is what the
    /// plan's first pass records; it builds no messages, so that pass stays cheap.
    pub(crate) fn sendable_key(&self, row: &InputRow) -> Option<u64> {
        if row.unreadable.is_some() {
            return None;
        }
        let iccid = normalize_iccid(&row.iccid);
        check_iccid(&iccid).ok()?;
        check_code(row.code.expose()).ok()?;
        if self.strict
            && (!iccid_warnings(&iccid).is_empty() || !code_warnings(row.code.expose()).is_empty())
        {
            return None;
        }
        checked_iccid_key(&iccid)
    }

    /// Judges one row. `duplicate_of` is the earlier line where the row's ICCID first
    /// appeared among rows that would be sent ([`crate::run::plan::LineFacts::duplicate_of`]); it
    /// only matters for a row that passes the checks.
    pub fn judge(&self, row: &InputRow, duplicate_of: Option<u64>) -> Verdict {
        let invalid = |problems| Verdict::Invalid {
            iccid: shown_iccid(&row.iccid),
            problems,
        };
        if let Some(unreadable) = &row.unreadable {
            return invalid(vec![Problem::new(unreadable.column, &unreadable.reason)]);
        }
        let iccid = normalize_iccid(&row.iccid);
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        match check_iccid(&iccid) {
            Ok(()) => warnings.extend(iccid_warnings(&iccid)),
            Err(error) => {
                problems.push(Problem::new(error.column(), error));
                if could_be_a_code(&row.iccid)
                    && check_iccid(&normalize_iccid(row.code.expose())).is_ok()
                {
                    problems.push(Problem::new(Column::Iccid, SWAPPED_COLUMNS));
                }
            }
        }
        match check_code(row.code.expose()) {
            Ok(()) => warnings.extend(code_warnings(row.code.expose())),
            Err(error) => problems.push(Problem::new(error.column(), error)),
        }
        let mut warnings: Vec<Problem> = warnings
            .into_iter()
            .map(|w| Problem::new(w.column(), w))
            .collect();
        if self.strict {
            problems.append(&mut warnings);
        }
        if !problems.is_empty() {
            return invalid(problems);
        }
        if checked_iccid_key(&iccid).is_none() {
            // check_iccid passed, so this cannot happen; refuse rather than send unchecked.
            return invalid(vec![Problem::new(
                Column::Iccid,
                "ICCID cannot be read as a number",
            )]);
        }
        match duplicate_of {
            Some(first_line) => Verdict::Duplicate { iccid, first_line },
            None => Verdict::Send { iccid, warnings },
        }
    }
}

/// `line N: column: reason; column: reason`, the locator used in failed-out reasons.
pub(crate) fn locate(line: u64, problems: &[Problem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.column, p.reason))
        .collect();
    format!("line {line}: {}", parts.join("; "))
}
