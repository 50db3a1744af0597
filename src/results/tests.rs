//! Tests of the results file: the writer, torn tails, the header, packed SIMs.

use std::collections::HashMap;
use std::path::Path;

use crate::input::checks::checked_iccid_key;

use super::earlier::{Fleets, RowSim};
use super::*;

fn sample_row(line: u64, iccid: &str, outcome: Outcome) -> ResultRow {
    ResultRow::new(line, iccid, outcome)
}

/// The earlier rows loaded into memory the simple way (the last row per ICCID wins), to
/// check what the stream hands the resume plan.
#[derive(Default)]
struct Loaded {
    last: HashMap<u64, PackedSim>,
    reported: std::collections::HashSet<u64>,
    fleets: Vec<String>,
    rows: u64,
}

impl Loaded {
    fn outcome(&self, iccid: &str) -> Option<Outcome> {
        self.sim(iccid).map(|sim| sim.outcome)
    }
    fn sim(&self, iccid: &str) -> Option<PriorSim> {
        let packed = self.last.get(&checked_iccid_key(iccid)?)?;
        Some(PackedSim::from_bytes(&packed.to_bytes()).unpack(&self.fleets))
    }
    fn already_reported(&self, line: u64) -> bool {
        self.reported.contains(&line)
    }
}

fn open(path: &Path) -> (ResultsWriter, Loaded) {
    let (writer, mut earlier) = ResultsWriter::open(path).unwrap();
    let mut loaded = Loaded::default();
    while let Some(row) = earlier.next_row().unwrap() {
        match row {
            EarlierRow::Reported { line, .. } => {
                loaded.reported.insert(line);
            }
            EarlierRow::Sim { key, sim } => {
                loaded.last.insert(key, sim);
            }
            EarlierRow::Unmatched => {}
        }
    }
    loaded.rows = earlier.rows;
    loaded.fleets = earlier.into_fleets();
    (writer, loaded)
}

#[test]
fn new_file_gets_header_then_rows_and_resume_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    {
        let (mut writer, prior) = open(&path);
        assert_eq!(prior.rows, 0);
        writer
            .write(&sample_row(2, "89883070000000000011", Outcome::GaveUp))
            .unwrap();
        writer
            .write(&sample_row(3, "89883070000000000029", Outcome::Rejected))
            .unwrap();
        writer
            .write(&sample_row(4, "bad", Outcome::Invalid))
            .unwrap();
        writer
            .write(&sample_row(2, "89883070000000000011", Outcome::Registered))
            .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&COLUMNS.join(",")));
    assert_eq!(text.lines().count(), 5);

    let (_writer, prior) = open(&path);
    assert_eq!(
        prior.outcome("89883070000000000011"),
        Some(Outcome::Registered)
    );
    assert_eq!(
        prior.outcome("89883070000000000029"),
        Some(Outcome::Rejected)
    );
    assert!(prior.already_reported(4));
    assert!(!prior.already_reported(2));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "reopening adds no header"
    );
}

#[test]
fn torn_last_row_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    {
        let (mut writer, _) = open(&path);
        writer
            .write(&sample_row(2, "89883070000000000011", Outcome::Registered))
            .unwrap();
    }
    let whole = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{whole}3,8988307000000000002")).unwrap();
    let (mut writer, prior) = open(&path);
    assert_eq!(prior.rows, 1);
    writer
        .write(&sample_row(3, "89883070000000000029", Outcome::Registered))
        .unwrap();
    drop(writer);
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[1][1], "89883070000000000029");
}

#[test]
fn foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    std::fs::write(&path, "iccid,code\n1,2\n").unwrap();
    let err = ResultsWriter::open(&path).err().unwrap();
    assert!(format!("{err:#}").contains("not a supersim-bulk results file"));
}

/// A results file with two whole rows, the second one with a quoted message holding a
/// line break; returns its text.
fn two_rows(path: &Path) -> String {
    {
        let (mut writer, _) = open(path);
        writer
            .write(&sample_row(2, "89883070000000000011", Outcome::Registered))
            .unwrap();
        let mut row = sample_row(3, "89883070000000000029", Outcome::GaveUp);
        row.error_message = Some("An internal \"server\" error\nhas occurred".into());
        writer.write(&row).unwrap();
    }
    std::fs::read_to_string(path).unwrap()
}

/// A last row without its line break is torn whatever its width: one cut inside its last
/// column (`account_sid`) has all its columns but names an account that does not exist.
#[test]
fn a_last_row_without_its_newline_is_cut_off_whatever_its_width() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let two = two_rows(&path);
    let (mut writer, _) = open(&path);
    writer
        .write(&sample_row(4, "89883070000000000037", Outcome::Registered))
        .unwrap();
    drop(writer);
    let three = std::fs::read_to_string(&path).unwrap();
    for cut in [1, 15, three.len() - two.len() - 1] {
        std::fs::write(&path, &three[..three.len() - cut]).unwrap();
        let (_, prior) = open(&path);
        assert_eq!(prior.rows, 2, "cut by {cut}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), two, "cut by {cut}");
    }
}

#[test]
fn a_tear_inside_a_quoted_field_is_cut_back_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let whole = two_rows(&path);
    // Torn inside the quoted message (after its line break), inside a doubled quote, just
    // after the opening quote, and with every column but a quoted last one left open.
    let torn_tails = [
        "4,89883070000000000037,gave_up,,,,20500,\"An internal error\nhas occ",
        "4,89883070000000000037,gave_up,,,,20500,\"An \"\"odd\"\" error\nhas",
        "4,89883070000000000037,gave_up,,,,20500,\"",
        "4,89883070000000000037,gave_up,,,,,,,1,2026-01-01T00:00:00Z,\"Luhn\nche",
        "4,8988307000000",
    ];
    for tail in torn_tails {
        std::fs::write(&path, format!("{whole}{tail}")).unwrap();
        let (_, prior) = open(&path);
        assert_eq!(prior.rows, 2, "{tail:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole, "{tail:?}");
    }
}

#[test]
fn the_tail_scan_gives_one_answer_whatever_the_block_size() {
    use super::writer::{Tail, scan};
    let rows = [
        "2,1,registered,,,,,,,1,t,\n",
        "3,1,gave_up,,,,1,\"a \"\"quoted\"\"\nmessage, with a comma\",,1,t,\n",
        "4,1,gave_up,,,,1,\"\",,1,t,\"w\"\r\n",
    ];
    let whole: String = rows.concat();
    for cut in 1..=whole.len() {
        let text = &whole.as_bytes()[..cut];
        let expected = scan(text, 10).unwrap();
        for capacity in [1, 2, 3, 5, 8, 13] {
            let reader = std::io::BufReader::with_capacity(capacity, text);
            assert_eq!(
                scan(reader, 10).unwrap(),
                expected,
                "{:?} read {capacity} bytes at a time",
                String::from_utf8_lossy(text)
            );
        }
    }
    let end = |text: &str| scan(text.as_bytes(), 0).unwrap();
    assert_eq!(end(&whole), Tail::Whole);
    let first = rows[0].len() as u64;
    let second = first + rows[1].len() as u64;
    assert_eq!(
        end(whole.trim_end()),
        Tail::TornAt(second),
        "no line break: torn"
    );
    assert_eq!(
        end(&whole[..whole.find("message").unwrap()]),
        Tail::TornAt(first)
    );
    assert_eq!(end(&format!("{}4,1", rows[0])), Tail::TornAt(first));
}

#[test]
fn a_torn_header_starts_afresh_and_a_header_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let header = COLUMNS.join(",");
    std::fs::write(&path, &header[..10]).unwrap();
    drop(open(&path));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{header}\n")
    );
    std::fs::write(&path, &header).unwrap();
    let (_, prior) = open(&path);
    assert_eq!(prior.rows, 0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{header}\n")
    );
}

#[test]
fn a_file_that_is_not_ours_is_refused_untouched_whatever_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.csv");
    let behind_a_bom = format!("\u{feff}{}\n", COLUMNS.join(","));
    for text in [
        "hello,world",
        "hello\nworld\n",
        "Iccid,RegistrationCode\n1,2",
        "\"line",
        &behind_a_bom,
    ] {
        std::fs::write(&path, text).unwrap();
        let claimed = ResultsWriter::claim(&path).unwrap_err().to_string();
        assert!(
            claimed.contains("not a supersim-bulk results file"),
            "{claimed}"
        );
        assert!(claimed.contains("-o"), "{claimed}");
        assert!(ResultsWriter::open(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn claim_resolves_a_symlink_once_and_open_never_follows_one() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("r.csv");
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let claimed = ResultsWriter::claim(&link).unwrap();
    assert_eq!(claimed, std::fs::canonicalize(&real).unwrap());
    assert!(real.exists(), "claim creates the file it resolves to");
    assert!(
        ResultsWriter::open(&link).is_err(),
        "a symlink is not opened"
    );
    drop(open(&claimed));
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .starts_with("line,iccid")
    );
}

#[test]
fn claim_names_the_path_and_the_fix_when_the_folder_cannot_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file").unwrap();
    let path = blocker.join("r.csv");
    let error = ResultsWriter::claim(&path).unwrap_err().to_string();
    assert!(error.contains(&*path.to_string_lossy()), "{error}");
    assert!(error.contains("-o"), "{error}");
}

#[test]
fn resume_remembers_sid_status_and_fleet_of_the_last_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let sid = "HS0123456789abcdef0123456789abcdef";
    let fleet = "HF0123456789abcdef0123456789abcdef";
    {
        let (mut writer, _) = open(&path);
        let mut checkpoint = sample_row(2, "89883070000000000011", Outcome::Registered);
        checkpoint.sid = Some(sid.into());
        checkpoint.status = Some("new".into());
        checkpoint.error_message = Some(PENDING_MESSAGE.into());
        writer.write(&checkpoint).unwrap();
        let mut failed = sample_row(3, "89883070000000000029", Outcome::UpdateFailed);
        failed.sid = Some(sid.replace('0', "1"));
        failed.status = Some("new".into());
        writer.write(&failed).unwrap();
        let mut done = sample_row(2, "89883070000000000011", Outcome::Registered);
        done.sid = Some(sid.into());
        done.status = Some("active".into());
        done.fleet_sid = Some(fleet.into());
        writer.write(&done).unwrap();
    }
    let (_writer, prior) = open(&path);
    assert_eq!(
        prior.sim("89883070000000000011"),
        Some(PriorSim {
            outcome: Outcome::Registered,
            sid: Some(sid.into()),
            status: SimStatus::Active,
            fleet_sid: Some(fleet.into()),
            pending: false,
            error_code: None,
            request_key: 0,
            code_fingerprint: None,
        })
    );
    let failed = prior.sim("89883070000000000029").unwrap();
    assert_eq!(failed.outcome, Outcome::UpdateFailed);
    assert_eq!(failed.sid.as_deref(), Some(&*sid.replace('0', "1")));
    assert_eq!(failed.fleet_sid, None);
    assert_eq!(prior.fleets.len(), 1);
}

#[test]
fn checkpoint_rows_are_marked_pending_and_odd_sids_are_not_kept() {
    let mut fleets = Fleets::default();
    let sim = RowSim {
        sid: "HS0123456789ABCDEF0123456789ABCDEF",
        status: "new",
        fleet_sid: "",
        message: PENDING_MESSAGE,
        error_code: "",
        update_requested: "",
        code_fingerprint: "0a1b2c",
    };
    let packed = PackedSim::from_row(Outcome::Registered, &sim, &mut fleets);
    let got = PackedSim::from_bytes(&packed.to_bytes()).unpack(&fleets.sids);
    assert!(got.pending);
    assert_eq!(got.code_fingerprint, Some(0x0a1b2c));
    assert_eq!(
        got.sid.as_deref(),
        Some("HS0123456789ABCDEF0123456789ABCDEF"),
        "hex in capitals is kept so: the account may find the SIM only as it spells it"
    );
    let lower = RowSim {
        sid: "HS0123456789abcdef0123456789abcdef",
        ..sim
    };
    let packed = PackedSim::from_row(Outcome::Registered, &lower, &mut fleets);
    assert_eq!(
        packed.unpack(&fleets.sids).sid.as_deref(),
        Some(lower.sid),
        "lowercase hex, as Twilio writes it, is kept so"
    );
    let odd = RowSim {
        sid: "HSnothex",
        ..RowSim::default()
    };
    let packed = PackedSim::from_row(Outcome::GaveUp, &odd, &mut fleets);
    assert_eq!(packed.unpack(&fleets.sids).sid, None);
    // Sorted on disk, never held per row, but kept small all the same.
    assert_eq!(std::mem::size_of::<PackedSim>(), 40);
}

#[test]
fn a_file_from_before_the_newer_columns_is_resumed_in_its_own_columns() {
    // Files written before `warning` (11 columns), before `account_sid` and the rest (12)
    // and before `code_fingerprint` (15): a resume appends rows in the file's own columns,
    // so it stays one valid CSV.
    for width in [
        COLUMNS_BEFORE_WARNING,
        COLUMNS_BEFORE_ACCOUNT,
        COLUMNS_BEFORE_CODE_FINGERPRINT,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let old_header = COLUMNS[..width].join(",");
        let old_row = [
            "2",
            "89883070000000000011",
            "registered",
            "HS1",
            "new",
            "",
            "",
            "",
            "",
            "1",
            "2025-01-01T00:00:00Z",
            "",
            "",
            "",
            "AC0123",
        ];
        let old_row = old_row[..width].join(",");
        std::fs::write(&path, format!("{old_header}\n{old_row}\n")).unwrap();
        let (mut writer, prior) = open(&path);
        assert_eq!(
            prior.outcome("89883070000000000011"),
            Some(Outcome::Registered),
            "{width} columns"
        );
        let mut row = sample_row(3, "89883070000000000029", Outcome::Registered);
        row.warning = Some("lowercase".into());
        row.account_sid = Some("AC0123".into());
        row.code_fingerprint = Some(0x0a1b2c);
        writer.write(&row).unwrap();
        drop(writer);
        let mut reader = csv::Reader::from_path(&path).unwrap();
        assert_eq!(reader.headers().unwrap().len(), width);
        // A row of another width would be a read error here.
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "every row has the header's {width} fields");
        assert_eq!(&rows[1][1], "89883070000000000029");
        if width > COLUMNS_BEFORE_WARNING {
            assert_eq!(&rows[1][COLUMNS_BEFORE_WARNING], "lowercase");
        }
        if width == COLUMNS_BEFORE_CODE_FINGERPRINT {
            assert_eq!(&rows[1][width - 1], "AC0123");
        }
    }
}

#[test]
fn new_columns_only_ever_come_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let (mut writer, _) = open(&path);
    let mut row = sample_row(2, "89883070000000000011", Outcome::Registered);
    row.warning = Some("lowercase".into());
    row.unique_name = Some("meter-7".into());
    row.update_requested = Some("fleet=field-devices".into());
    row.account_sid = Some("AC0123".into());
    writer.write(&row).unwrap();
    drop(writer);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at,warning,unique_name,update_requested,account_sid,code_fingerprint\n"));
    assert!(
        text.trim_end()
            .ends_with(",lowercase,meter-7,fleet=field-devices,AC0123,"),
        "{text}"
    );
    let (_, prior) = open(&path);
    assert_eq!(prior.rows, 1);
}

#[test]
fn outcome_words_round_trip() {
    for outcome in Outcome::ALL {
        assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
    }
}

#[test]
fn a_code_fingerprint_tells_codes_apart_and_is_written_as_six_hex_digits() {
    use crate::secret::RegistrationCode;
    let iccid = "89883070000000000011";
    let code = RegistrationCode::new("AB12CD34EF".into());
    let print = code_fingerprint(iccid, &code);
    assert!(print < 1 << 24, "24 bits: {print:x}");
    assert_eq!(print, code_fingerprint(iccid, &code), "stable");
    assert_ne!(
        print,
        code_fingerprint(iccid, &RegistrationCode::new("AB12CD34EG".into())),
        "one character changed"
    );
    assert_ne!(
        print,
        code_fingerprint("89883070000000000029", &code),
        "the same code on another SIM"
    );
    // Written as its cell and read back; a small value keeps its leading zeros.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let (mut writer, _) = open(&path);
    let mut row = sample_row(2, iccid, Outcome::Rejected);
    row.code_fingerprint = Some(0x00_0a1b);
    writer.write(&row).unwrap();
    drop(writer);
    let text = std::fs::read_to_string(&path).unwrap();
    let cell = text.lines().nth(1).unwrap().rsplit(',').next().unwrap();
    assert_eq!(cell, "000a1b", "{text}");
    assert!(!text.contains("AB12CD34EF"));
    assert_eq!(parse_code_fingerprint(cell), Some(0x00_0a1b));
    assert_eq!(parse_code_fingerprint(""), None);
    assert_eq!(parse_code_fingerprint("AB12CD34EF"), None);
}
