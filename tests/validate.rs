//! End-to-end runs of `supersim-bulk validate` (no network, no credentials) and of
//! `register` over messy input: file-level errors, the report, exit codes, `--strict` and
//! the fix-and-refeed file.

mod common;

use std::path::Path;
use std::process::Output;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};
use supersim_bulk::emulator::registration_code_for;

/// A Super SIM ICCID that passes the Luhn check, distinct per `n`, and its emulator code.
fn luhn_sim(n: u32) -> (String, String) {
    let body = format!("8988307000{n:09}");
    let check = (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|iccid| supersim_bulk::input::checks::luhn_ok(iccid))
        .unwrap();
    let code = registration_code_for(&check);
    (check, code)
}

/// Runs the binary with no Twilio variables at all, so nothing could reach an API.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_supersim-bulk"));
    command.current_dir(dir).args(args);
    for var in [
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "SUPERSIM_BASE_URL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.output().expect("the binary runs")
}

fn validate_bytes(bytes: &[u8], extra: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sims.csv"), bytes).unwrap();
    let mut args = vec!["validate", "sims.csv"];
    args.extend_from_slice(extra);
    (run(dir.path(), &args), dir)
}

#[test]
fn each_file_level_problem_exits_2_with_one_sentence_naming_the_fix() {
    let cases: &[(&[u8], &[&str])] = &[
        (
            b"",
            &[
                "the file is empty",
                "header row such as `Iccid,RegistrationCode`",
            ],
        ),
        (b"\n\r\n   \n", &["the file is empty"]),
        (
            b"Iccid,RegistrationCode\n\n",
            &["has a header row but no SIM rows", "add one row per SIM"],
        ),
        (
            b"serial;pin\n1;2\n",
            &[
                "no column named like ICCID (found: serial, pin)",
                "name it `Iccid`",
                "accepted names: Iccid, ICCID, sim_iccid",
                "--no-header",
            ],
        ),
        (
            b"ICCID,pin\n89883070000123456780,2\n",
            &[
                "no column named like a registration code (found: ICCID, pin)",
                "name it `RegistrationCode`",
                "accepted names: RegistrationCode, Registration Code",
            ],
        ),
        (
            b"\x7fELF\x02\x01\x01\x00\x00\x00",
            &["it is a binary file", "export the SIM list as CSV text"],
        ),
        (
            b"PK\x03\x04\x14\x00\x06\x00",
            &["Excel workbook (.xlsx)", "save it as \"CSV UTF-8"],
        ),
        (b"\xff\xfeI\x00C\x00", &["UTF-16 text", "CSV UTF-8"]),
    ];
    for (bytes, expected) in cases {
        let (output, _dir) = validate_bytes(bytes, &[]);
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 2, "{bytes:?}: {err}");
        // Off a terminal the line starts with its time and the process id.
        let said = err.splitn(3, ' ').nth(2).unwrap_or_default();
        assert!(said.starts_with("error: cannot read sims.csv: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
        for part in *expected {
            assert!(err.contains(part), "{bytes:?}: expected {part:?} in {err}");
        }
        assert!(stdout(&output).is_empty());
    }

    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["validate", "missing.csv"]);
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("cannot read missing.csv: there is no such file; check the path"),
        "{}",
        stderr(&output)
    );
    std::fs::create_dir(dir.path().join("box")).unwrap();
    let output = run(dir.path(), &["validate", "box"]);
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("cannot read box: it is a folder, not a file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_report_counts_then_lists_problems_by_line_and_column() {
    let (good, good_code) = luhn_sim(1);
    let (other, other_code) = luhn_sim(2);
    let text = format!(
        "\u{feff}ICCID;Registration Code;Label\r\n\
         {good};{good_code};a\r\n\
         \r\n\
         12345;{good_code};b\r\n\
         {good};{good_code};repeat\r\n\
         {other};{lower};lower\r\n\
         \"{good};x\r\n\
         {other}0;SECRETCODE;long\r\n",
        lower = other_code.to_lowercase(),
    );
    let (output, _dir) = validate_bytes(text.as_bytes(), &[]);
    let out = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{out}{}", stderr(&output));
    assert!(
        out.starts_with(
            "sims.csv: 6 rows\n  would be sent  2\n  invalid        3\n  duplicate      1\n  warnings       1\n"
        ),
        "{out}"
    );
    for expected in [
        "line 4: iccid: ICCID must be 19 or 20 digits, found 5\n",
        "line 5: iccid: same ICCID as line 2; it is sent only once\n",
        "line 6: registration_code: warning: registration code has lowercase letters",
        "line 7: row: a quoted field opens with `\"` and never closes",
        "line 8: iccid: ICCID must be 19 or 20 digits, found 21\n",
    ] {
        assert!(out.contains(expected), "expected {expected:?} in\n{out}");
    }
    assert!(
        !out.contains("SECRETCODE") && !out.contains(&good_code),
        "{out}"
    );
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));

    let clean = format!("Iccid,RegistrationCode\n{good},{good_code}\n{good},{good_code}\n");
    let (output, _dir) = validate_bytes(clean.as_bytes(), &[]);
    assert_eq!(
        exit_code(&output),
        0,
        "duplicates alone do not fail: {}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("every row would be sent"));
}

#[test]
fn strict_makes_warnings_invalid() {
    // The API's own example ICCID fails the Luhn check: a warning, sent; invalid with --strict.
    let iccid = "89883070000123456789";
    let text = format!(
        "Iccid,RegistrationCode\n{iccid},{}\n",
        registration_code_for(iccid)
    );
    let (output, _dir) = validate_bytes(text.as_bytes(), &[]);
    assert_eq!(exit_code(&output), 0, "{}", stdout(&output));
    assert!(stdout(&output).contains("line 2: iccid: warning: ICCID check digit does not match"));
    let (output, _dir) = validate_bytes(text.as_bytes(), &["--strict"]);
    assert_eq!(exit_code(&output), 1, "{}", stdout(&output));
    assert!(stdout(&output).contains("line 2: iccid: ICCID check digit does not match"));
}

#[test]
fn at_most_50_problem_lines_then_a_count_unless_all() {
    let mut text = String::from("Iccid,RegistrationCode\n");
    for n in 0..75 {
        text.push_str(&format!("{n},ABCDEFGHIJ\n"));
    }
    let (output, _dir) = validate_bytes(text.as_bytes(), &[]);
    let out = stdout(&output);
    assert_eq!(out.lines().filter(|l| l.starts_with("line ")).count(), 50);
    assert!(
        out.contains("... and 25 more problem lines; pass --all to list every one"),
        "{out}"
    );
    let (output, _dir) = validate_bytes(text.as_bytes(), &["--all"]);
    assert_eq!(
        stdout(&output)
            .lines()
            .filter(|l| l.starts_with("line "))
            .count(),
        75
    );
    assert_eq!(exit_code(&output), 1);
}

#[test]
fn validate_failed_out_is_private_and_can_be_fixed_and_fed_back() {
    let (good, good_code) = good_sim(1);
    let text = format!("iccid|code|label\n{good}|{good_code}|ok\n898830700000|{good_code}|short\n");
    let (output, dir) = validate_bytes(text.as_bytes(), &["--failed-out", "fix.csv"]);
    assert_eq!(exit_code(&output), 1);
    let fix = dir.path().join("fix.csv");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fix).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it holds registration codes");
    }
    let written = std::fs::read_to_string(&fix).unwrap();
    assert_eq!(
        written,
        format!(
            "iccid|code|label|reason\n898830700000|{good_code}|short|line 3: iccid: ICCID must be 19 or 20 digits, found 12\n"
        )
    );
    // A person corrects the ICCID and feeds the file straight back.
    let (fixed, fixed_code) = good_sim(2);
    std::fs::write(
        &fix,
        written
            .replace("898830700000", &fixed)
            .replace(&good_code, &fixed_code),
    )
    .unwrap();
    let output = run(dir.path(), &["validate", "fix.csv"]);
    assert_eq!(exit_code(&output), 0, "{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn register_reads_messy_input_and_sends_only_checked_rows() {
    let env = TestEnv::new().await;
    let (a, a_code) = good_sim(1);
    let (b, b_code) = good_sim(2);
    let (wrong, _) = good_sim(3);
    // A 19-digit ICCID printed with a trailing F filler, in groups.
    let nineteen = "8988307000000000041";
    let luhn_bad = "89883070000123456789";
    let printed = format!(
        "{} {} {} {} {}F",
        &nineteen[..4],
        &nineteen[4..8],
        &nineteen[8..12],
        &nineteen[12..16],
        &nineteen[16..]
    );
    let text = format!(
        "{a};{a_code}\r\n\
         {b};{b_code};tracker-2\r\n\
         {printed};{};card\r\n\
         {luhn_bad};{};example\r\n\
         {wrong};WR0NGC0DE1;wrong\r\n\
         12;ABCDEFGHIJ\r\n\
         {a};{a_code}\r\n\
         {b}\r\n",
        registration_code_for(nineteen),
        registration_code_for(luhn_bad),
    );
    std::fs::write(env.input_path(), text).unwrap();
    let failed = env.dir.path().join("failed.csv");
    let output = env
        .register(&["--failed-out", failed.to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));

    let rows = env.results();
    // The last row of a line is its final one (a unique name adds a checkpoint row first).
    let by_line = |line: &str| rows.iter().rfind(|r| r["line"] == line).unwrap().clone();
    assert_eq!(
        by_line("1")["outcome"],
        "registered",
        "headerless: line 1 is a SIM"
    );
    assert_eq!(by_line("2")["outcome"], "registered");
    assert_eq!(by_line("3")["outcome"], "registered");
    assert_eq!(by_line("3")["iccid"], nineteen);
    assert_eq!(by_line("4")["outcome"], "registered");
    assert!(
        by_line("4")["warning"].contains("check digit"),
        "{:?}",
        by_line("4")
    );
    assert_eq!(by_line("5")["outcome"], "rejected");
    assert_eq!(by_line("6")["outcome"], "invalid");
    assert_eq!(by_line("7")["outcome"], "duplicate");
    assert_eq!(by_line("8")["outcome"], "invalid");
    assert!(
        by_line("8")["error_message"].contains("too few"),
        "{:?}",
        by_line("8")
    );
    let lines: std::collections::HashSet<&str> = rows.iter().map(|r| r["line"].as_str()).collect();
    assert_eq!(lines.len(), 8, "one final row per input line");
    assert_eq!(
        rows.len(),
        8,
        "and no more: the checkpoint rows of lines 2 to 4 are compacted away"
    );
    assert_eq!(
        env.emulator.stats().create_requests,
        5,
        "only the five checked, distinct rows reach the server"
    );
    assert!(
        stderr(&output).contains("sending despite a warning"),
        "{}",
        stderr(&output)
    );

    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .flexible(true)
        .from_path(&failed)
        .unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["iccid", "registration_code", "unique_name", "reason"]
    );
    let mut failed_rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    failed_rows.sort();
    assert_eq!(failed_rows.len(), 3, "{failed_rows:?}");
    assert_eq!(failed_rows[0][..3], ["12", "ABCDEFGHIJ", ""]);
    assert!(failed_rows[0][3].starts_with("line 6: iccid: ICCID must be 19 or 20 digits"));
    assert_eq!(failed_rows[1][..3], [b.as_str(), "", ""]);
    assert!(failed_rows[1][3].starts_with("line 8: registration_code: row has 1 field"));
    assert_eq!(failed_rows[2][..3], [wrong.as_str(), "WR0NGC0DE1", "wrong"]);
    assert!(failed_rows[2][3].starts_with("line 5: rejected (Twilio error 83002)"));
    for secret in [&a_code, &b_code] {
        assert!(!stderr(&output).contains(secret.as_str()));
        assert!(
            !std::fs::read_to_string(env.results_path())
                .unwrap()
                .contains(secret.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_stops_at_a_file_level_problem_before_any_request() {
    let env = TestEnv::new().await;
    std::fs::write(env.input_path(), "Iccid,RegistrationCode\n").unwrap();
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("has a header row but no SIM rows"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.emulator.stats().create_requests, 0);
    assert!(
        !env.results_path().exists(),
        "no results file for a file that cannot be read"
    );
}

#[test]
fn validate_reads_standard_input_once_and_dedupes_it_like_a_file() {
    use std::io::Write;
    let (a, a_code) = luhn_sim(1);
    let (b, b_code) = luhn_sim(2);
    let input =
        format!("Iccid,RegistrationCode\n{a},{a_code}\n{b},x\n{b},{b_code}\n{a},{a_code}\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_supersim-bulk"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = stdout(&output);
    assert_eq!(exit_code(&output), 1, "{text}{}", stderr(&output));
    assert!(text.contains("standard input: 4 rows"), "{text}");
    assert!(text.contains("  would be sent  2\n"), "{text}");
    assert!(text.contains("  duplicate      1\n"), "{text}");
    assert!(text.contains("line 3: registration_code"), "{text}");
    assert!(
        text.contains("line 5: iccid: same ICCID as line 2"),
        "the invalid line 3 is not the original of line 4: {text}"
    );
    assert!(!text.contains("line 4: iccid: same"), "{text}");
}

/// A file with no header row whose first SIM's ICCID is mistyped (or whose delimiter is
/// not the one the file uses) is read as having a header, and refused for want of an ICCID
/// column; the message lists the columns found, which are then that SIM's values: its
/// registration code is masked there, in `validate`'s and `register`'s errors and in the
/// summary JSON, like any code.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_row_read_as_a_header_never_shows_its_registration_code() {
    let env = TestEnv::new().await;
    let (good_iccid, good_code) = luhn_sim(7);
    for (first_row, delimiter) in [
        // An ICCID cut short, then a good row.
        ("898830700004,QWERTYUIO1", None),
        // An ICCID with a letter typed in.
        ("8988307000004210000X,QWERTYUIO1", None),
        // Read with another delimiter than the file's, the row is one cell.
        ("89883070000042100006,QWERTYUIO1,tracker-1", Some(";")),
    ] {
        env.write_csv(&format!("{first_row}\n{good_iccid},{good_code}\n"));
        let mut args = vec!["validate", "sims.csv"];
        args.extend(delimiter.iter().flat_map(|d| ["--delimiter", *d]));
        let checked = run(env.dir.path(), &args);
        let mut extra = vec!["--summary-json", "-"];
        extra.extend(delimiter.iter().flat_map(|d| ["--delimiter", *d]));
        let registered = env.register(&extra).await;
        for (what, output) in [("validate", &checked), ("register", &registered)] {
            assert_eq!(exit_code(output), 2, "{what}: {}", stderr(output));
            let said = format!("{}{}", stderr(output), stdout(output));
            assert!(
                said.contains("no column named like ICCID"),
                "{what}: {said}"
            );
            assert!(
                !said.contains("QWERTYUIO1"),
                "{what} shows a registration code: {said}"
            );
        }
    }
    assert_eq!(env.emulator.stats().requests, 0);
}

/// An input path that is a pipe (`/dev/stdin` fed by one, `<(...)`, a named pipe) cannot be
/// read twice any more than `-` can: it is read once, as standard input is, and every row
/// is registered, rather than the second read finding the pipe drained ("the file is
/// empty").
#[tokio::test(flavor = "multi_thread")]
async fn an_input_path_that_is_a_pipe_is_read_once() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(luhn_sim).collect();
    let mut input = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        input.push_str(&format!("{iccid},{code}\n"));
    }
    let results = env.results_path();
    let mut command = env.register_command_for(
        std::ffi::OsStr::new("/dev/stdin"),
        &["-o", results.to_str().unwrap()],
        &TestEnv::test_credentials(),
    );
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let rows = env.results();
    assert_eq!(rows.len(), sims.len(), "{rows:?}");
    assert!(
        rows.iter().all(|row| row["outcome"] == "registered"),
        "{rows:?}"
    );
}
