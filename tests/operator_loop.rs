//! The operator's loop around a run: the results file opened and saved again by a
//! spreadsheet between runs, then resumed, compacted and resumed again. The real binary,
//! against the emulator over loopback.

mod common;

use common::{TestEnv, exit_code, good_sim, stderr, stdout};

/// The results file's text with every line ending `\r\n`, as a spreadsheet saves a CSV.
fn with_crlf(text: &str) -> String {
    text.lines().map(|line| format!("{line}\r\n")).collect()
}

/// An account and a results file on which three SIMs were registered by a first run.
async fn three_sims_registered() -> (TestEnv, Vec<(String, String)>) {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    env.write_input(&sims);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    (env, sims)
}

#[tokio::test]
async fn a_results_file_saved_with_crlf_line_ends_stays_resumable_after_compaction() {
    // The first SIM's row deleted: compaction rewrites the file from its header on.
    crlf_resave_then_resume(1).await;
    // The second's: compaction keeps the first row as it was and rewrites after it.
    crlf_resave_then_resume(2).await;
}

/// Registers three SIMs, deletes the results row at `deleted` (0 is the header) and saves
/// the file with CRLF line ends, as a spreadsheet does, then resumes twice.
async fn crlf_resave_then_resume(deleted: usize) {
    let (env, sims) = three_sims_registered().await;

    // Opened in a spreadsheet, a row deleted, saved as CSV (CRLF line ends).
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(deleted);
    std::fs::write(env.results_path(), with_crlf(&lines.join("\n"))).unwrap();

    // The deleted SIM is sent again (it is already on the account), and the file compacted
    // with its row back on its line.
    let second = env.register(&[]).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));

    // The next run reads the file it compacted: nothing left to do, nothing refused.
    let third = env.register(&[]).await;
    assert_eq!(
        exit_code(&third),
        0,
        "row {deleted} deleted: the third run refused the file the second compacted: {}",
        stderr(&third)
    );
    assert!(
        stdout(&third).contains("nothing to do"),
        "{}",
        stdout(&third)
    );
    let bytes = std::fs::read(env.results_path()).unwrap();
    assert!(
        !bytes
            .windows(2)
            .any(|pair| pair[0] == b'\r' && pair[1] != b'\n'),
        "a line ends with a bare CR: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let rows = env.results();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, (iccid, _)) in rows.iter().zip(&sims) {
        assert_eq!(&row["iccid"], iccid);
        assert!(row["sid"].starts_with("HS"), "{row:?}");
    }
}

#[tokio::test]
async fn a_results_file_a_spreadsheet_changed_is_refused_naming_what_changed() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1), good_sim(2)]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let (header, rows) = text.split_once('\n').unwrap();
    let with_notes: String = std::iter::once(format!("{header},notes\n"))
        .chain(rows.lines().map(|row| format!("{row},checked\n")))
        .collect();
    let quoted: String = std::iter::once(
        header
            .split(',')
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(",")
            + "\n",
    )
    .chain(std::iter::once(rows.to_string()))
    .collect();
    let (first_column, rest) = header.split_once(',').unwrap();
    let moved = format!("{rest},{first_column}\n");
    // (the file as a spreadsheet saved it, what the refusal must name)
    let cases = [
        (format!("\u{feff}{text}"), "byte-order mark"),
        (with_notes, "`notes`"),
        (quoted, "quoted"),
        (moved, "another order"),
    ];
    for (saved, named) in cases {
        std::fs::write(env.results_path(), &saved).unwrap();
        let run = env.register(&[]).await;
        let said = stderr(&run);
        assert_eq!(exit_code(&run), 2, "{said}");
        assert!(
            said.contains(named),
            "the refusal should name {named}: {said}"
        );
        assert!(said.contains("left untouched"), "{said}");
        assert_eq!(std::fs::read_to_string(env.results_path()).unwrap(), saved);
    }
}

/// `89883070000000000001` as a spreadsheet that reads it as a number writes it back: 15
/// significant digits, then zeros (`89883070000000000000`).
fn rounded_to_15_digits(iccid: &str) -> String {
    format!("{}{}", &iccid[..15], "0".repeat(iccid.len() - 15))
}

#[tokio::test]
async fn a_results_file_whose_iccids_a_spreadsheet_rounded_is_refused_not_retried_forever() {
    let (env, sims) = three_sims_registered().await;

    // Opened in a spreadsheet, which showed the ICCIDs as numbers, and saved: three SIMs'
    // rows now name one ICCID, each with its own SID.
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let mut saved = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            saved.push_str(line);
        } else {
            let (number, rest) = line.split_once(',').unwrap();
            let (iccid, rest) = rest.split_once(',').unwrap();
            saved.push_str(&format!("{number},{},{rest}", rounded_to_15_digits(iccid)));
        }
        saved.push_str("\r\n");
    }
    std::fs::write(env.results_path(), &saved).unwrap();

    let sim_requests = || {
        let stats = env.emulator.stats();
        stats.create_requests + stats.lookup_requests
    };
    let before = sim_requests();
    let run = env.register(&[]).await;
    let said = stderr(&run);
    assert_eq!(
        exit_code(&run),
        2,
        "a file that holds two SIDs for one ICCID is a set-up error, not one to retry: {said}{}",
        stdout(&run)
    );
    assert!(said.contains(&rounded_to_15_digits(&sims[0].0)), "{said}");
    assert!(said.contains("15 digits"), "{said}");
    assert_eq!(sim_requests(), before, "nothing is sent on such a file");
    assert_eq!(std::fs::read_to_string(env.results_path()).unwrap(), saved);
}

#[tokio::test]
async fn a_results_row_a_spreadsheet_cleared_is_a_row_deleted_not_a_broken_file() {
    let (env, sims) = three_sims_registered().await;

    // The second SIM's row cleared (its cells emptied, the row left), and two empty rows
    // below the last, as a spreadsheet saves them.
    let blank = ",".repeat(15);
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = blank.clone();
    lines.push(blank.clone());
    lines.push(blank);
    std::fs::write(env.results_path(), lines.join("\r\n") + "\r\n").unwrap();

    let reconciled = env
        .account_command("reconcile", &["sims.results.csv"])
        .await;
    assert_eq!(
        exit_code(&reconciled),
        0,
        "{}{}",
        stdout(&reconciled),
        stderr(&reconciled)
    );

    let run = env.register(&[]).await;
    assert_eq!(exit_code(&run), 0, "{}", stderr(&run));
    let rows = env.results();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, (iccid, _)) in rows.iter().zip(&sims) {
        assert_eq!(&row["iccid"], iccid);
        assert!(row["sid"].starts_with("HS"), "{row:?}");
    }
    assert_eq!(rows[1]["outcome"], "already_registered", "{rows:?}");
    assert_eq!(env.emulator.commits(&sims[1].0), 1, "registered once");
}

#[tokio::test]
async fn a_product_code_column_is_not_taken_for_the_registration_code() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=2).map(good_sim).collect();
    // A supplier's sheet: the article's `Code` comes before the SIM's registration code.
    let mut text = String::from("ICCID,Code,Registration Code\n");
    for (iccid, code) in &sims {
        text.push_str(&format!("{iccid},SKU4711ABC,{code}\n"));
    }
    env.write_csv(&text);
    let run = env.register(&[]).await;
    assert_eq!(exit_code(&run), 0, "{}{}", stdout(&run), stderr(&run));
    for row in env.results() {
        assert_eq!(row["outcome"], "registered", "{row:?}");
    }
}

#[tokio::test]
async fn a_results_file_saved_in_a_spreadsheets_own_encoding_is_named_as_such() {
    let env = TestEnv::new().await;
    let (iccid, code) = good_sim(1);
    env.write_csv(&format!(
        "ICCID,Registration Code,unique_name\n{iccid},{code},capteur-\u{e9}t\u{e9}\n"
    ));
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));

    // Saved again as "CSV (Comma delimited)", in Windows-1252: `é` is one byte, 0xE9.
    let text = std::fs::read_to_string(env.results_path()).unwrap();
    let saved: Vec<u8> = text
        .chars()
        .map(|c| if c == '\u{e9}' { 0xe9 } else { c as u8 })
        .collect();
    std::fs::write(env.results_path(), &saved).unwrap();

    let run = env.register(&[]).await;
    let said = stderr(&run);
    assert_eq!(exit_code(&run), 2, "{said}");
    assert!(said.contains("line 2"), "{said}");
    assert!(
        said.contains("convert it back to UTF-8"),
        "the way out is named: {said}"
    );

    let reconciled = env
        .account_command("reconcile", &["sims.results.csv"])
        .await;
    let said = stderr(&reconciled);
    assert_eq!(exit_code(&reconciled), 2, "{said}");
    assert!(
        !said.contains("cannot write the report"),
        "the file could not be read, the report could be written: {said}"
    );
    assert!(said.contains("line 2"), "{said}");
    assert!(
        said.contains("convert it back to UTF-8"),
        "the way out is named: {said}"
    );
    assert_eq!(std::fs::read(env.results_path()).unwrap(), saved);
}

#[tokio::test]
async fn an_input_that_is_a_pipe_by_name_is_read_once_as_standard_input_is() {
    use tokio::io::AsyncWriteExt;
    // `register <(grep box17 all.csv)` and `... | register /dev/stdin` name a pipe: it can
    // be read only once, and the run reads its input twice.
    let env = TestEnv::new().await;
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    let mut text = String::from("Iccid,RegistrationCode\n");
    for (iccid, code) in &sims {
        text.push_str(&format!("{iccid},{code}\n"));
    }
    let results = env.results_path();
    let mut command = env.register_command_for(
        "/dev/stdin".as_ref(),
        &["-o", results.to_str().unwrap()],
        &TestEnv::test_credentials(),
    );
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let run = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&run), 0, "{}{}", stdout(&run), stderr(&run));
    let rows = env.results();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in rows {
        assert_eq!(row["outcome"], "registered", "{row:?}");
    }

    // Without --output there is no folder beside a pipe: a set-up error that says so.
    let mut command =
        env.register_command_for("/dev/stdin".as_ref(), &[], &TestEnv::test_credentials());
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdin.take());
    let run = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&run), 2, "{}", stderr(&run));
    assert!(stderr(&run).contains("--output"), "{}", stderr(&run));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_through_a_symlink_to_its_results_keeps_one_emulated_account() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (good_sim(1), good_sim(2));
    let csv = |sims: &[&(String, String)]| {
        let mut text = String::from("Iccid,RegistrationCode\n");
        for (iccid, code) in sims {
            text.push_str(&format!("{iccid},{code}\n"));
        }
        text
    };
    std::fs::write(dir.path().join("box.csv"), csv(&[&a])).unwrap();
    let rehearse = |args: &[&str]| {
        let mut command = common::binary_command();
        command.current_dir(dir.path()).args(args);
        async move { command.output().await.unwrap() }
    };
    let first = rehearse(&["register", "box.csv", "--emulator"]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));

    // The same results file, named through a link a script keeps to "the current box".
    std::os::unix::fs::symlink("box.emulator.results.csv", dir.path().join("current.csv")).unwrap();
    std::fs::write(dir.path().join("box.csv"), csv(&[&a, &b])).unwrap();
    let second = rehearse(&["register", "box.csv", "--emulator", "-o", "current.csv"]).await;
    assert_eq!(exit_code(&second), 0, "{}", stderr(&second));

    // One emulated account holds what the one results file says.
    for name in ["box.emulator.results.csv", "current.csv"] {
        let reconciled = rehearse(&["reconcile", name, "--emulator"]).await;
        assert_eq!(
            exit_code(&reconciled),
            0,
            "{name}: {}{}",
            stdout(&reconciled),
            stderr(&reconciled)
        );
    }
    assert!(!dir.path().join("current.state.jsonl").exists());
}
