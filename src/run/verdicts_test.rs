//! The screen's verdicts on whole files: its checks with the plan's facts (repeats), as
//! `register` and `validate` both see them. Kept here, above both, so the input layer never
//! imports the run's plan, even in tests.

use crate::input::InputRow;
use crate::input::Unreadable;
use crate::input::checks::Column;
use crate::input::screen::*;
use crate::results::EarlierRows;
use crate::run::plan::Plan;

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

#[test]
fn a_value_in_the_iccid_column_that_could_be_a_code_is_masked() {
    let swapped = row(2, "HC7QX2M9UC", "89883070000042100006");
    let Verdict::Invalid { iccid, problems } = &judge_all(false, &[swapped])[0] else {
        panic!("a swapped row is invalid");
    };
    assert_eq!(iccid, "HC******UC");
    assert!(
        problems.iter().any(|p| p
            .reason
            .contains("the ICCID and registration code columns look swapped")),
        "{problems:?}"
    );
    // A short, all-digit ICCID is a typo, not a secret: shown as written.
    let short = row(3, "898830700004", "HC7QX2M9UC");
    let Verdict::Invalid { iccid, .. } = &judge_all(false, &[short])[0] else {
        panic!("a short ICCID is invalid");
    };
    assert_eq!(iccid, "898830700004");
}
