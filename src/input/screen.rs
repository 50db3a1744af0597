//! Decides, for each input row, whether it would be sent: the one reading-and-checking path
//! that `register` and `validate` share, so what `validate` promises is what `register` does.
//!
//! It applies the reader's record problems, the hard and soft checks of [`crate::input::checks`],
//! `--strict`, and the dedupe of repeated ICCIDs. It keeps no state and does no I/O: whether
//! a row's ICCID was on an earlier line is worked out on disk beforehand by
//! [`crate::plan`], from [`Screen::sendable_key`], and handed to [`Screen::judge`]. It
//! knows nothing of earlier runs (that is `register`'s resume).

use crate::input::InputRow;
use crate::input::checks::{
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
    pub fn sendable_key(&self, row: &InputRow) -> Option<u64> {
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
    /// appeared among rows that would be sent ([`crate::plan::LineFacts::duplicate_of`]); it
    /// only matters for a row that passes the checks.
    pub fn judge(&self, row: &InputRow, duplicate_of: Option<u64>) -> Verdict {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Unreadable;
    use crate::plan::Plan;
    use crate::results::EarlierRows;

    /// Judges rows in order as `register` and `validate` do: the plan first (with a tiny sort
    /// chunk, so the merge is used), then each row with the plan's answer.
    fn judge_all(strict: bool, rows: &[InputRow]) -> Vec<Verdict> {
        let dir = tempfile::tempdir().unwrap();
        let screen = Screen::new(strict);
        let mut plan = Plan::build_from_rows(
            rows.iter().cloned().map(Ok),
            screen,
            EarlierRows::none(),
            dir.path(),
            Some(2),
        )
        .unwrap();
        rows.iter()
            .map(|row| screen.judge(row, plan.at(row.line).unwrap().duplicate_of))
            .collect()
    }

    fn row(line: u64, iccid: &str, code: &str) -> InputRow {
        InputRow::for_test(line, iccid, code)
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
        for strict in [false, true] {
            let picked: Vec<_> = cases
                .iter()
                .enumerate()
                .filter(|(_, case)| case.0 == strict)
                .collect();
            let rows: Vec<InputRow> = picked
                .iter()
                .map(|(line, (_, iccid, code, _))| row(*line as u64 + 2, iccid, code))
                .collect();
            for ((_, (_, iccid, code, expected)), verdict) in
                picked.iter().zip(judge_all(strict, &rows))
            {
                let got = summary(&verdict);
                assert!(got.starts_with(expected), "{iccid} {code}: {got}");
            }
        }
    }

    #[test]
    fn record_problems_are_invalid_and_invalid_rows_are_not_remembered() {
        let mut broken = row(2, "89883070000123456780", "H3LL0W0RLD");
        broken.unreadable = Some(Unreadable {
            column: Column::Row,
            reason: "broken".into(),
        });
        let verdicts = judge_all(
            false,
            &[broken, row(3, "89883070000123456780", "H3LL0W0RLD")],
        );
        assert!(matches!(verdicts[0], Verdict::Invalid { .. }));
        assert!(matches!(verdicts[1], Verdict::Send { .. }));
    }

    #[test]
    fn long_iccids_are_shortened_for_the_results() {
        let Verdict::Invalid { iccid, .. } =
            Screen::new(false).judge(&row(2, &"9".repeat(5000), "H3LL0W0RLD"), None)
        else {
            panic!("expected invalid")
        };
        assert_eq!(iccid.len(), SHOWN_ICCID_CHARS);
    }
}
