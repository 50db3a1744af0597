//! Property tests of the reader and the checks: on any bytes at all they never panic, and
//! every line of the input is accounted for exactly once (a row that would be sent, an
//! invalid row or a duplicate), or is blank, or is the header.

use proptest::prelude::*;
use supersim_bulk::input::checks::{check_code, check_iccid};
use supersim_bulk::input::screen::{Screen, Verdict};
use supersim_bulk::input::{ReadOptions, SimReader};
use supersim_bulk::results::EarlierRows;
use supersim_bulk::run::plan::Plan;

/// What one pass over the input gave: each row's line span, and whether every row that
/// would be sent passed the hard checks.
struct Pass {
    spans: Vec<(u64, u64)>,
    header_line: Option<u64>,
}

fn read_all(bytes: &[u8], options: ReadOptions) -> Option<Pass> {
    let open = || {
        SimReader::from_reader(
            Box::new(std::io::Cursor::new(bytes.to_vec())),
            "prop.csv".into(),
            options,
        )
    };
    let mut reader = open().ok()?;
    let header_line = reader.header_line();
    let screen = Screen::new(false);
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Plan::build(open().ok()?, screen, EarlierRows::none(), dir.path())
        .expect("reading from memory cannot fail");
    let mut spans = Vec::new();
    while let Some(row) = reader.next_row() {
        let row = row.expect("reading from memory cannot fail");
        let facts = plan.at(row.line).unwrap();
        match screen.judge(&row, facts.duplicate_of) {
            Verdict::Send { iccid, .. } => {
                assert!(row.unreadable.is_none());
                assert_eq!(
                    check_iccid(&iccid),
                    Ok(()),
                    "an unchecked ICCID would be sent"
                );
                assert_eq!(
                    check_code(row.code.expose()),
                    Ok(()),
                    "an unchecked code would be sent"
                );
            }
            Verdict::Invalid { problems, .. } => assert!(!problems.is_empty()),
            Verdict::Duplicate { first_line, .. } => assert!(first_line < row.line),
        }
        spans.push((row.line, row.end_line));
    }
    Some(Pass { spans, header_line })
}

/// The input's physical lines, split the way a person counts them (`\n`, `\r\n` or `\r`).
fn physical_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&bytes[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&bytes[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

/// A line that holds no value: only whitespace, delimiters and quotes (after a byte-order
/// mark, which is dropped where a line starts, as files glued together carry one).
fn holds_nothing(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    line.iter()
        .all(|b| b.is_ascii_whitespace() || b",;|\"".contains(b))
}

fn check_accounting(bytes: &[u8]) {
    let Some(pass) = read_all(bytes, ReadOptions::default()) else {
        return;
    };
    let lines = physical_lines(bytes);
    let mut owner = vec![0u32; lines.len() + 1];
    let mut previous_end = 0;
    for &(start, end) in &pass.spans {
        assert!(
            start > previous_end,
            "rows overlap or go backwards: {:?}",
            pass.spans
        );
        assert!(
            start <= end && end as usize <= lines.len(),
            "span {start}..={end} outside the file"
        );
        for line in start..=end {
            owner[line as usize] += 1;
        }
        previous_end = end;
    }
    let first_data_line = pass.header_line.map_or(1, |h| h + 1);
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if (number as u64) < first_data_line {
            continue;
        }
        assert!(
            owner[number] == 1 || holds_nothing(line),
            "line {number} ({:?}) is not accounted for",
            String::from_utf8_lossy(line)
        );
    }
}

/// Pieces that messy SIM files are made of.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"89883070000123456780".to_vec()),
        Just(b"8988 3070 0001 2345 678F".to_vec()),
        Just(b"H3LL0W0RLD".to_vec()),
        Just(b"h3ll0".to_vec()),
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"|".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"\xef\xbb\xbf".to_vec()),
        Just(vec![b'9'; 9000]),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn messy_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..60).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check_accounting(&bytes);
        let _ = read_all(&bytes, ReadOptions { delimiter: Some(b';'), no_header: true });
    }

    #[test]
    fn every_line_of_a_messy_file_is_accounted_for_once(
        header in prop_oneof![
            Just(&b"Iccid,RegistrationCode,Label\n"[..]),
            Just(&b"\xef\xbb\xbfICCID;Registration Code\r\n"[..]),
            Just(&b"sep=|\niccid|code\n"[..]),
            Just(&b""[..]),
        ],
        body in messy_body(),
    ) {
        let bytes = [header, &body[..]].concat();
        check_accounting(&bytes);
    }
}

#[test]
fn a_known_tricky_file_is_accounted_for() {
    check_accounting(
        b"iccid,code,label\n\"89883070000123456780,H3LL0W0RLD\n\n89883070000123456780,H3LL0W0RLD,\"two\nlines\"\n\r\n,,\n\"\n89883070000123456798,ABCDEFGHIJ\n",
    );
}
