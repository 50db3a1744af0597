//! Decides, for each input row, whether it would be sent: the one reading-and-checking path
//! that `register` and `validate` share, so what `validate` promises is what `register` does.
//!
//! It applies the reader's record problems, the hard and soft checks of [`crate::validate`],
//! `--strict`, and the dedupe of repeated ICCIDs. It knows nothing of earlier runs (that is
//! `register`'s resume) and does no I/O. Memory grows only with the dedupe map: an 8-byte
//! key and the line it was first seen on (16 bytes) per distinct ICCID.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::input::InputRow;
use crate::validate::{
    Column, check_code, check_iccid, checked_iccid_key, code_warnings, iccid_warnings,
    normalize_iccid,
};

/// Longest ICCID-as-written kept for an invalid row; anything longer is not an ICCID anyway.
const SHOWN_ICCID_CHARS: usize = 64;

/// One problem or warning, located by column. The reason never quotes the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub column: Column,
    pub reason: String,
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
pub fn join_reasons(problems: &[Problem]) -> String {
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
    pub fn duplicate_problem(first_line: u64) -> Problem {
        Problem::new(
            Column::Iccid,
            format!("same ICCID as line {first_line}; it is sent only once"),
        )
    }
}

/// Checks and dedupes rows in input order.
#[derive(Debug, Default)]
pub struct Screen {
    /// Soft checks count as invalid.
    strict: bool,
    /// Each sendable ICCID's key and the line where it first appeared.
    first_seen: HashMap<u64, u64>,
}

impl Screen {
    pub fn new(strict: bool) -> Self {
        Screen {
            strict,
            first_seen: HashMap::new(),
        }
    }

    pub fn judge(&mut self, row: &InputRow) -> Verdict {
        let invalid = |problems| Verdict::Invalid {
            iccid: row.iccid.chars().take(SHOWN_ICCID_CHARS).collect(),
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
            Err(error) => problems.push(Problem::new(error.column(), error)),
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
        let Some(key) = checked_iccid_key(&iccid) else {
            // check_iccid passed, so this cannot happen; refuse rather than send unchecked.
            return invalid(vec![Problem::new(
                Column::Iccid,
                "ICCID cannot be read as a number",
            )]);
        };
        match self.first_seen.entry(key) {
            Entry::Occupied(first) => Verdict::Duplicate {
                iccid,
                first_line: *first.get(),
            },
            Entry::Vacant(slot) => {
                slot.insert(row.line);
                Verdict::Send { iccid, warnings }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RegistrationCode;
    use crate::input::Unreadable;

    fn row(line: u64, iccid: &str, code: &str) -> InputRow {
        InputRow {
            line,
            end_line: line,
            iccid: iccid.to_string(),
            code: RegistrationCode::new(code.to_string()),
            unreadable: None,
            fields: csv::ByteRecord::new(),
            fleet: None,
            unique_name: None,
        }
    }

    fn summary(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Send { iccid, warnings } => {
                format!("send {iccid} {}", join_reasons(warnings))
            }
            Verdict::Invalid { problems, .. } => format!(
                "invalid {}",
                problems
                    .iter()
                    .map(|p| p.column.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Verdict::Duplicate { first_line, .. } => format!("duplicate of {first_line}"),
        }
    }

    #[test]
    fn table() {
        let good = "89883070000123456780";
        let cases: &[(bool, &str, &str, &str)] = &[
            (false, good, "H3LL0W0RLD", "send 89883070000123456780 "),
            (
                false,
                "8988 3070 0001 2345 6780",
                "H3LL0W0RLD",
                "duplicate of 2",
            ),
            (false, "12345", "H3LL0W0RLD", "invalid iccid"),
            (false, "12345", "short", "invalid iccid,registration_code"),
            (false, good, "short", "invalid registration_code"),
            (
                false,
                "89883070000123456789",
                "H3LL0W0RLD",
                "send 89883070000123456789 ICCID check digit does not match (Luhn); check the digits for a typo",
            ),
            (
                true,
                "89883070000123456780",
                "h3ll0w0rld",
                "invalid registration_code",
            ),
            (
                true,
                "89012345678901234567",
                "H3LL0W0RLD",
                "invalid iccid,iccid",
            ),
            (
                false,
                "8901234567890123456",
                "h3ll0w0rld",
                "send 8901234567890123456 ICCID check digit does not match (Luhn); check the digits for a typo; ICCID starts 8901234",
            ),
        ];
        let mut screens = [Screen::new(false), Screen::new(true)];
        for (line, (strict, iccid, code, expected)) in cases.iter().enumerate() {
            let verdict = screens[usize::from(*strict)].judge(&row(line as u64 + 2, iccid, code));
            let got = summary(&verdict);
            assert!(got.starts_with(expected), "{iccid} {code}: {got}");
        }
    }

    #[test]
    fn record_problems_are_invalid_and_invalid_rows_are_not_remembered() {
        let mut screen = Screen::new(false);
        let mut broken = row(2, "89883070000123456780", "H3LL0W0RLD");
        broken.unreadable = Some(Unreadable {
            column: Column::Row,
            reason: "broken".into(),
        });
        assert!(matches!(screen.judge(&broken), Verdict::Invalid { .. }));
        assert!(matches!(
            screen.judge(&row(3, "89883070000123456780", "H3LL0W0RLD")),
            Verdict::Send { .. }
        ));
    }

    #[test]
    fn long_iccids_are_shortened_for_the_results() {
        let Verdict::Invalid { iccid, .. } =
            Screen::new(false).judge(&row(2, &"9".repeat(5000), "H3LL0W0RLD"))
        else {
            panic!("expected invalid")
        };
        assert_eq!(iccid.len(), SHOWN_ICCID_CHARS);
    }
}
