//! The reader's tests: framing, sniffing, columns and rows, on bytes in memory.

use super::sniff::detect_delimiter;
use super::*;

fn open_bytes(bytes: &[u8], options: ReadOptions) -> Result<SimReader, InputError> {
    SimReader::from_reader(
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        "test.csv".into(),
        options,
    )
}

fn reader(text: &str) -> Result<SimReader, InputError> {
    open_bytes(text.as_bytes(), ReadOptions::default())
}

/// (line, ICCID as written, code, the problem's reason)
fn rows_of(mut reader: SimReader) -> Vec<(u64, String, String, Option<String>)> {
    std::iter::from_fn(|| reader.next_row())
        .map(|row| {
            let row = row.unwrap();
            (
                row.line,
                row.iccid,
                row.code.expose().to_string(),
                row.unreadable.map(|u| u.reason),
            )
        })
        .collect()
}

fn rows(text: &str) -> Vec<(u64, String, String, Option<String>)> {
    rows_of(reader(text).unwrap())
}

const SIM: &str = "89883070000123456789";

#[test]
fn header_names_match_loosely() {
    for header in [
        "Iccid,RegistrationCode",
        "ICCID,Registration Code",
        "sim_iccid,registration_code",
        "notes,SIM-ICCID,code",
        "\u{feff}iccid,Reg Code",
        "\"ICCID\",\"Registration Code\"",
    ] {
        let text = format!("{header}\n{SIM},H3LL0W0RLD\n");
        let reader = reader(&text).unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_ne!(reader.iccid_column, reader.code_column, "{header}");
    }
}

#[test]
fn delimiters_are_detected_from_the_header() {
    for (text, delimiter) in [
        ("iccid,code\n", b','),
        ("iccid;code\n", b';'),
        ("iccid\tcode\n", b'\t'),
        ("iccid|code\n", b'|'),
        ("\"a;b\",iccid,code\n", b','),
        ("iccid;code;\"x,y,z\"\n", b';'),
        ("iccid\n", b','),
    ] {
        let line = text.trim_end().as_bytes();
        assert_eq!(detect_delimiter(line), delimiter, "{text:?}");
    }
    for text in [
        "Iccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD\n",
        "Iccid\tRegistrationCode\n89883070000123456789\tH3LL0W0RLD\n",
        "Iccid|RegistrationCode\n89883070000123456789|H3LL0W0RLD\n",
        "sep=;\nIccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD\n",
    ] {
        let got = rows(text);
        assert_eq!(got.len(), 1, "{text:?}");
        assert_eq!(got[0].1, SIM, "{text:?}");
        assert_eq!(got[0].2, "H3LL0W0RLD", "{text:?}");
        assert_eq!(got[0].3, None, "{text:?}");
    }
    let forced = open_bytes(
        b"Iccid;RegistrationCode\n89883070000123456789;H3LL0W0RLD,y\n",
        ReadOptions {
            delimiter: Some(b';'),
            no_header: false,
        },
    )
    .unwrap();
    assert_eq!(rows_of(forced)[0].2, "H3LL0W0RLD,y");
}

#[test]
fn line_ends_bom_quotes_blank_lines_and_padding() {
    let text = "\u{feff}Iccid,RegistrationCode,Label\r\n\r\n  \"8988 3070 0001 2345 6789\" , H3LL0W0RLD ,\"a, b\"\r\n,,\r\n\r89883070000123456788,ABCDEFGHIJ,\"multi\nline \"\"label\"\"\"\n89883070000123456770,ABCDEFGHIJ";
    let got = rows(text);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        (got[0].0, got[0].1.as_str()),
        (3, "8988 3070 0001 2345 6789")
    );
    assert_eq!(got[0].2, "H3LL0W0RLD");
    assert_eq!(got[1].0, 6, "a bare CR ends a line too");
    assert_eq!(got[2].0, 8, "the quoted label spans lines 6 and 7");
    assert!(got.iter().all(|row| row.3.is_none()), "{got:?}");
}

#[test]
fn headerless_files_are_detected_or_forced() {
    let got = rows("89883070000123456789,H3LL0W0RLD,tracker-1\n8988307000012345678F,ABCDEFGHIJ\n");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, 1);
    assert_eq!(got[1].1, "8988307000012345678F");
    let forced = open_bytes(
        b"123,H3LL0W0RLD\n",
        ReadOptions {
            delimiter: None,
            no_header: true,
        },
    )
    .unwrap();
    assert_eq!(forced.header().len(), 3);
    assert_eq!(rows_of(forced)[0].1, "123");
    assert_eq!(
        reader("8988307000012345678,CODE,name\n").unwrap().header(),
        &csv::ByteRecord::from(vec!["iccid", "registration_code", "unique_name"])
    );
}

#[test]
fn file_level_errors_name_the_fix() {
    let message = |bytes: &[u8]| {
        open_bytes(bytes, ReadOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let cases: &[(&[u8], &str)] = &[
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf\r\n\n  \n", "the file is empty"),
        (b"sep=;\n", "the file is empty"),
        (b"Iccid,RegistrationCode\n", "header row but no SIM rows"),
        (
            b"Iccid,RegistrationCode\n,\n\n",
            "header row but no SIM rows",
        ),
        (b"serial,pin\n1,2\n", "found: serial, pin"),
        (b"serial,pin\n1,2\n", "accepted names: Iccid"),
        (b"serial,pin\n1,2\n", "--no-header"),
        (b"iccid,pin\n1,2\n", "`RegistrationCode`"),
        (b"PK\x03\x04\x14\x00rest", "Excel workbook"),
        (b"\xff\xfei\x00c\x00", "UTF-16"),
        (b"abc\x00def\n", "binary file"),
        (b"\xd0\xcf\x11\xe0", ".xls"),
        (b"ICCID;Num\xe9ro\n1;2\n", "header row is not UTF-8 text"),
        (
            b"line,iccid,outcome,sid,status,fleet_sid\n2,89883070000123456789,registered,,,\n",
            "this is a supersim-bulk results file, not a SIM list; pass the input CSV",
        ),
        (
            b"sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\nHS1,8988,new,,,,,\n",
            "this is a supersim-bulk export",
        ),
        (
            b"H3LL0W0RLD,89883070000123456789\nABCDE12345,89883070000123456788\n",
            "columns swapped (an ICCID in column 2, not column 1)",
        ),
    ];
    for (bytes, expected) in cases {
        let got = message(bytes);
        assert!(got.contains(expected), "{bytes:?}: {got}");
        assert!(got.starts_with("cannot read test.csv: "), "{got}");
    }
    let long = format!("{}\n", "x".repeat(MAX_RECORD_BYTES + 1));
    assert!(message(long.as_bytes()).contains("too long for a header row"));
}

#[test]
fn bad_records_become_problems_and_reading_goes_on() {
    let long = "9".repeat(MAX_RECORD_BYTES + 10);
    let text = format!(
        "iccid,code,label\n\
         89883070000123456789\n\
         \"89883070000123456781,ABCDEFGHIJ,x\n\
         89883070000123456782,ABCDEFGHIJ,x\n\
         {long},x\n\
         89883070000123456783,ABCDEFGHIJ,x\n"
    );
    let got = rows(&text);
    let lines: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6], "{got:?}");
    assert!(got[0].3.as_deref().unwrap().contains("too few"), "{got:?}");
    assert!(got[1].3.as_deref().unwrap().contains("never closes"));
    assert_eq!(
        got[2].3, None,
        "the line after a stray quote is read on its own"
    );
    assert!(
        got[3]
            .3
            .as_deref()
            .unwrap()
            .contains(&format!("{} bytes long", MAX_RECORD_BYTES + 12))
    );
    assert_eq!(got[4].3, None);

    let mut reader = open_bytes(
        b"iccid,code,label\n8988307000012345678\xff,ABCDEFGHIJ,x\n89883070000123456789,ABCDEFGHIJ,M\xfcller\n",
        ReadOptions::default(),
    )
    .unwrap();
    let first = reader.next_row().unwrap().unwrap().unreadable.unwrap();
    assert_eq!(first.column, Column::Iccid);
    assert!(first.reason.contains("not UTF-8"));
    let second = reader.next_row().unwrap().unwrap().unreadable.unwrap();
    assert_eq!(second.column, Column::Row);
    assert!(second.reason.contains("field 3"));
}

#[test]
fn a_stray_quote_does_not_swallow_the_rest_of_the_file() {
    let mut text = String::from("iccid,code\n\"89883070000123456789,H3LL0W0RLD\n");
    for n in 0..100 {
        text.push_str(&format!("898830700001234{n:05},ABCDEFGHIJ\n"));
    }
    text.push_str("89883070000123456789,end\"\n");
    let got = rows(&text);
    assert_eq!(got.len(), 102);
    assert!(got[0].3.is_some());
    assert!(got[1..].iter().all(|r| r.3.is_none()), "{:?}", &got[..3]);
}

#[test]
fn debug_output_hides_the_fields() {
    let mut reader = reader("iccid,code\n89883070000123456789,SECRETCODE\n").unwrap();
    let row = reader.next_row().unwrap().unwrap();
    assert!(!format!("{row:?}").contains("SECRETCODE"));
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
    assert!(
        !reader("iccid,code\n89883070000123456789,H3LL0W0RLD\n")
            .unwrap()
            .has_fleet_column()
    );
}

#[test]
fn a_headerless_third_column_is_the_unique_name() {
    let mut sims = reader("89883070000123456789,H3LL0W0RLD,pump-7\n").unwrap();
    let row = sims.next_row().unwrap().unwrap();
    assert_eq!(row.unique_name.as_deref(), Some("pump-7"));
    assert!(!sims.has_fleet_column());
}
