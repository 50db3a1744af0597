//! Tests of `plan`.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::input::Unreadable;
use crate::input::checks::{Column, checked_iccid_key};
use crate::input::screen::Verdict;
use crate::results::{Outcome, ResultRow, ResultsWriter, SimStatus, report_key};

fn row(line: u64, iccid: &str, code: &str) -> InputRow {
    InputRow::for_test(line, iccid, code)
}

/// ICCID number `n`: valid, distinct per `n`.
fn iccid(n: u64) -> String {
    format!("898830700000{n:08}")
}

fn plan(rows: &[InputRow], earlier: EarlierRows, dir: &Path, chunk: usize) -> Plan {
    Plan::build_from_rows(
        rows.iter().cloned().map(Ok),
        Screen::new(false),
        earlier,
        dir,
        Some(chunk),
    )
    .unwrap()
}

#[test]
fn duplicates_point_at_the_first_line_across_chunks_whatever_the_key_order() {
    let dir = tempfile::tempdir().unwrap();
    // 200 rows over 37 ICCIDs in a scrambled order, planned 3 records per chunk.
    let rows: Vec<InputRow> = (0..200u64)
        .map(|i| row(i + 2, &iccid((i * 7919) % 37), "H3LL0W0RLD"))
        .collect();
    let mut plan = plan(&rows, EarlierRows::none(), dir.path(), 3);
    let mut first: HashMap<String, u64> = HashMap::new();
    for input in &rows {
        let expected = match first.get(&input.iccid) {
            Some(&line) => Some(line),
            None => {
                first.insert(input.iccid.clone(), input.line);
                None
            }
        };
        let facts = plan.at(input.line).unwrap();
        assert_eq!(facts.duplicate_of, expected, "line {}", input.line);
        assert_eq!(facts.prior, None);
        assert_eq!(facts.reported, None);
    }
    assert_eq!(plan.rows, 200);
    assert_eq!(plan.new_sims, 37, "each ICCID once");
    assert_eq!(plan.last_line, Some(201));
    assert!(plan.covers(201) && !plan.covers(202));
}

#[test]
fn facts_about_an_iccid_do_not_fit_another_row_on_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        row(2, &iccid(1), "H3LL0W0RLD"),
        row(3, &iccid(1), "H3LL0W0RLD"),
    ];
    let mut plan = plan(&rows, EarlierRows::none(), dir.path(), 4);
    let screen = Screen::new(false);
    let facts = plan.at(3).unwrap();
    assert_eq!(facts.duplicate_of, Some(2));
    assert!(facts.fit_row(screen.sendable_key(&rows[1])));
    // Line 3 now holds another SIM: its facts (a duplicate of line 2) do not apply.
    let changed = row(3, &iccid(2), "H3LL0W0RLD");
    assert!(!facts.fit_row(screen.sendable_key(&changed)));
    // A line without facts about an ICCID fits any row.
    assert!(LineFacts::default().fit_row(screen.sendable_key(&changed)));
}

/// Every row pass 1 read is fingerprinted, invalid ones included and whatever the results
/// file holds: a row read again is matched only when it is the same row on the same line,
/// and a planned row that is never read again is noticed.
#[test]
fn every_planned_row_is_matched_by_its_line_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        row(2, &iccid(1), "H3LL0W0RLD"),
        row(3, "not an iccid", "H3LL0W0RLD"),
        row(4, &iccid(2), "H3LL0W0RLD"),
    ];
    let mut same = plan(&rows, EarlierRows::none(), dir.path(), 2);
    for input in &rows {
        assert!(same.matches(input).unwrap(), "line {}", input.line);
    }
    assert_eq!(same.all_rows_matched().unwrap(), Ok(()));

    let mut changed = plan(&rows, EarlierRows::none(), dir.path(), 2);
    assert!(changed.matches(&rows[0]).unwrap());
    assert!(
        !changed
            .matches(&row(3, "not an iccid", "H3LL0W0RLE"))
            .unwrap(),
        "another code on the same line"
    );
    let mut moved = plan(&rows, EarlierRows::none(), dir.path(), 2);
    assert!(
        !moved.matches(&row(2, &iccid(2), "H3LL0W0RLD")).unwrap(),
        "another row on the line"
    );
    let mut shrunk = plan(&rows, EarlierRows::none(), dir.path(), 2);
    assert!(shrunk.matches(&rows[0]).unwrap());
    assert_eq!(shrunk.all_rows_matched().unwrap(), Err(3));
}

#[test]
fn the_cursor_skips_lines_never_asked_for_and_answers_nothing_after_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        row(2, &iccid(1), "H3LL0W0RLD"),
        row(3, &iccid(1), "H3LL0W0RLD"),
        row(5, &iccid(1), "H3LL0W0RLD"),
        row(9, &iccid(1), "H3LL0W0RLD"),
    ];
    let mut plan = plan(&rows, EarlierRows::none(), dir.path(), 1);
    assert_eq!(plan.at(4).unwrap(), LineFacts::default(), "line 3 skipped");
    assert_eq!(plan.at(5).unwrap().duplicate_of, Some(2));
    assert_eq!(plan.at(9).unwrap().duplicate_of, Some(2));
    assert_eq!(plan.at(10).unwrap(), LineFacts::default());
}

#[test]
fn resume_facts_come_from_the_last_row_of_each_iccid_and_the_lines_reported() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r.csv");
    let sid = |n: u8| format!("HS{}", format!("{n:02x}").repeat(16));
    let fleet = "HF0123456789abcdef0123456789abcdef";
    {
        let (mut writer, _) = ResultsWriter::open(&results).unwrap();
        let mut write = |line, iccid: &str, outcome, sid: Option<String>, status: &str| {
            let mut row = ResultRow::new(line, iccid, outcome);
            row.sid = sid;
            row.status = Some(status.into());
            if outcome == Outcome::Registered {
                row.fleet_sid = Some(fleet.into());
            }
            writer.write(&row).unwrap();
        };
        write(2, &iccid(1), Outcome::GaveUp, None, "");
        write(3, &iccid(2), Outcome::Rejected, None, "");
        write(4, "12345", Outcome::Invalid, None, "");
        write(5, &iccid(2), Outcome::Duplicate, None, "");
        write(6, &iccid(3), Outcome::UpdateFailed, Some(sid(3)), "new");
        write(2, &iccid(1), Outcome::Registered, Some(sid(1)), "active");
        write(7, "89012345678901234567", Outcome::Rejected, None, "");
    }
    // The input moved on: ICCID 1 is now on line 3 (after a new SIM on line 2), and
    // repeated on line 8; ICCID 2 is on line 5 only.
    let rows = [
        row(2, &iccid(9), "H3LL0W0RLD"),
        row(3, &iccid(1), "H3LL0W0RLD"),
        row(4, "12345", "H3LL0W0RLD"),
        row(5, &iccid(2), "H3LL0W0RLD"),
        row(6, &iccid(3), "H3LL0W0RLD"),
        row(8, &iccid(1), "H3LL0W0RLD"),
    ];
    let (_writer, earlier) = ResultsWriter::open(&results).unwrap();
    let mut plan = plan(&rows, earlier, dir.path(), 2);
    assert_eq!(plan.earlier_rows, 7);
    assert_eq!(
        plan.new_sims, 1,
        "ICCID 9: the invalid row sends nothing, and the others have rows"
    );
    assert_eq!(plan.at(2).unwrap(), LineFacts::default(), "a new SIM");
    let one = plan.at(3).unwrap();
    assert_eq!(
        one.sim(),
        Some(PriorSim {
            outcome: Outcome::Registered,
            sid: Some(sid(1)),
            status: SimStatus::Active,
            fleet_sid: Some(fleet.into()),
            pending: false,
            error_code: None,
            request_key: 0,
            code_fingerprint: None,
        }),
        "the last row of the ICCID wins, wherever the ICCID now is"
    );
    assert_eq!(one.reported, None);
    let four = plan.at(4).unwrap();
    assert!(four.already_reported(report_key(Outcome::Invalid, "12345", "")));
    assert!(
        !four.already_reported(report_key(Outcome::Invalid, "123456", "")),
        "another row on line 4 is reported again"
    );
    assert_eq!(four.prior, None);
    let five = plan.at(5).unwrap();
    assert_eq!(five.outcome(), Some(Outcome::Rejected));
    assert!(
        five.already_reported(report_key(Outcome::Duplicate, &iccid(2), "")),
        "line 5 was written as a duplicate"
    );
    let six = plan.at(6).unwrap();
    assert_eq!(six.outcome(), Some(Outcome::UpdateFailed));
    assert_eq!(six.sim().unwrap().sid, Some(sid(3)));
    assert_eq!(six.sim().unwrap().fleet_sid, None);
    let eight = plan.at(8).unwrap();
    assert_eq!(eight.duplicate_of, Some(3));
    assert_eq!(eight.prior, None, "a duplicate line is never sent");
}

/// A row for the property test: an ICCID from a small pool (so repeats are common),
/// sometimes broken, with a good, bad or lowercase code, sometimes unreadable.
fn arbitrary_row() -> impl Strategy<Value = (u64, u8, u8, bool)> {
    (0u64..12, 0u8..4, 0u8..3, proptest::bool::weighted(0.05))
}

fn make_row(line: u64, (n, iccid_kind, code_kind, unreadable): (u64, u8, u8, bool)) -> InputRow {
    let iccid = match iccid_kind {
        0 => format!("8988 3070 0000 {:04} 0000", n),
        1 => format!("898830700000{n:04}0000F"),
        2 => format!("89012345678{n:04}00000"),
        _ => format!("12{n}"),
    };
    let code = ["H3LL0W0RLD", "h3ll0w0rld", "short"][usize::from(code_kind)];
    let mut input = row(line, &iccid, code);
    if unreadable {
        input.unreadable = Some(Unreadable {
            column: Column::Row,
            reason: "broken".into(),
        });
    }
    input
}

proptest! {
    /// The plan gives exactly the verdicts of the in-memory map it replaced.
    #[test]
    fn plan_dedupe_matches_an_in_memory_map(
        specs in proptest::collection::vec(arbitrary_row(), 0..120),
        gaps in proptest::collection::vec(1u64..4, 120),
        strict in any::<bool>(),
        chunk in 1usize..9,
    ) {
        let mut line = 1;
        let rows: Vec<InputRow> = specs
            .iter()
            .zip(&gaps)
            .map(|(spec, gap)| {
                line += gap;
                make_row(line, *spec)
            })
            .collect();
        let screen = Screen::new(strict);
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::build_from_rows(
            rows.iter().cloned().map(Ok),
            screen,
            EarlierRows::none(),
            dir.path(),
            Some(chunk),
        )
        .unwrap();
        let mut first_seen: HashMap<u64, u64> = HashMap::new();
        for input in &rows {
            let reference = match screen.judge(input, None) {
                Verdict::Send { iccid, warnings } => {
                    let key = checked_iccid_key(&iccid).unwrap();
                    match first_seen.get(&key) {
                        Some(&first_line) => Verdict::Duplicate { iccid, first_line },
                        None => {
                            first_seen.insert(key, input.line);
                            Verdict::Send { iccid, warnings }
                        }
                    }
                }
                other => other,
            };
            let facts = plan.at(input.line).unwrap();
            prop_assert_eq!(screen.judge(input, facts.duplicate_of), reference);
        }
    }
}
