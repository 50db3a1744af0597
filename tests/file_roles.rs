//! The files `register` and `validate` write beside themselves and rename into place
//! (`--summary-json`, `--failed-out`) replace only a regular file or a new path: a symbolic
//! link (such as one to `/proc/self/fd/1`, which is what `/dev/stdout` is), a device or a
//! named pipe is refused with exit 2 before anything is sent, and left as it was.
//! `validate` is read-only: its failed-out file may not be its input. `--summary-json -`
//! writes the JSON to standard output. The real binary, against the emulator.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use common::{TestEnv, binary_command, exit_code, good_sim, stderr, stdout};

/// Things that are not regular files, made in `dir`: a symlink to this process's stdout (as
/// `/dev/stdout` is), a named pipe, and (where the tests may create device nodes) a
/// character device with the numbers of `/dev/null`.
fn not_regular_files(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut made = Vec::new();
    let link = dir.join("stdout-link");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    made.push(("a symbolic link", link));
    let fifo = dir.join("pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(status.unwrap().success(), "mkfifo makes a named pipe");
    made.push(("a named pipe", fifo));
    let device = dir.join("device");
    let made_device = std::process::Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if made_device {
        made.push(("a character device", device));
    }
    made
}

/// What is at `path`, to see it was left as it was.
fn kind(path: &Path) -> &'static str {
    let file_type = std::fs::symlink_metadata(path).unwrap().file_type();
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "something else"
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_refuses_to_replace_anything_but_a_regular_file() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1), ("123".to_string(), "X".to_string())]);
    for (what, path) in not_regular_files(env.dir.path()) {
        for flag in ["--summary-json", "--failed-out"] {
            let output = env.register(&[flag, path.to_str().unwrap()]).await;
            assert_eq!(exit_code(&output), 2, "{flag} {what}: {}", stderr(&output));
            let err = stderr(&output);
            assert!(err.contains(flag) && err.contains(what), "{flag}: {err}");
            assert!(err.contains("regular file"), "{err}");
            assert_eq!(kind(&path), what, "{flag} left {what} as it was");
            assert_eq!(env.emulator.stats().requests, 0, "nothing was sent");
        }
    }
    // A regular file, and a new path, are still written.
    let old = env.dir.path().join("old.json");
    std::fs::write(&old, "{}").unwrap();
    let fix = env.dir.path().join("fix.csv");
    let output = env
        .register(&[
            "--summary-json",
            old.to_str().unwrap(),
            "--failed-out",
            fix.to_str().unwrap(),
        ])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    assert!(std::fs::read_to_string(&old).unwrap().contains("\"end\""));
    assert!(std::fs::read_to_string(&fix).unwrap().contains("123,X,"));
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_json_dash_writes_the_json_to_stdout_and_the_summary_to_stderr() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1), good_sim(2)]);
    let output = env
        .register_command(&["--summary-json", "-"], &TestEnv::test_credentials())
        .current_dir(env.dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("stdout is the JSON ({e}): {}", stdout(&output)));
    assert_eq!(json["end"], "finished");
    assert_eq!(json["this_run"]["registered"], 2);
    assert!(
        stderr(&output).contains("registered"),
        "{}",
        stderr(&output)
    );
    assert!(!env.dir.path().join("-").exists(), "no file named -");
}

async fn validate(dir: &Path, args: &[&str]) -> std::process::Output {
    binary_command()
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_never_replaces_its_input_with_the_failed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = "Iccid,RegistrationCode\n89883070000000000011,H3LL0W0RLD\n123,X\n";
    std::fs::write(dir.path().join("sims.csv"), input).unwrap();
    std::os::unix::fs::symlink("sims.csv", dir.path().join("link.csv")).unwrap();
    std::fs::hard_link(dir.path().join("sims.csv"), dir.path().join("hard.csv")).unwrap();
    for failed_out in ["sims.csv", "./sims.csv", "hard.csv"] {
        let output = validate(dir.path(), &["sims.csv", "--failed-out", failed_out]).await;
        assert_eq!(exit_code(&output), 2, "{failed_out}: {}", stdout(&output));
        let err = stderr(&output);
        assert!(err.contains("is the input file"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sims.csv")).unwrap(),
            input
        );
    }
    // The input named through a symlink: refused as the input, or as a link.
    let output = validate(dir.path(), &["link.csv", "--failed-out", "sims.csv"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let output = validate(dir.path(), &["sims.csv", "--failed-out", "link.csv"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    assert_eq!(kind(&dir.path().join("link.csv")), "a symbolic link");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sims.csv")).unwrap(),
        input
    );
    // Another file is written as before.
    let output = validate(dir.path(), &["sims.csv", "--failed-out", "fix.csv"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    assert!(
        std::fs::read_to_string(dir.path().join("fix.csv"))
            .unwrap()
            .contains("123,X,")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_refuses_a_failed_out_that_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sims.csv"),
        "Iccid,RegistrationCode\n123,X\n",
    )
    .unwrap();
    for (what, path) in not_regular_files(dir.path()) {
        let output = validate(
            dir.path(),
            &["sims.csv", "--failed-out", path.to_str().unwrap()],
        )
        .await;
        assert_eq!(exit_code(&output), 2, "{what}: {}", stdout(&output));
        let err = stderr(&output);
        assert!(err.contains(what) && err.contains("regular file"), "{err}");
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
        assert_eq!(kind(&path), what);
    }
}

/// Starts `supersim-bulk emulator --state STATE --port 0`; returns it and its URL, or `None`
/// when it ended without listening.
async fn start_emulator(state: &Path) -> (tokio::process::Child, Option<String>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = binary_command()
        .args(["emulator", "--port", "0", "--state"])
        .arg(state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next_line().await.unwrap().map(|line| {
        line.split_once("listening on ")
            .unwrap_or_else(|| panic!("a banner: {line}"))
            .1
            .to_string()
    });
    // Keep reading the banner so the emulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// Registers SIM `n` through the emulator at `url`, with its own input and results.
async fn register_through(dir: &Path, url: &str, n: u32) {
    let (iccid, code) = good_sim(n);
    let input = dir.join(format!("sim{n}.csv"));
    std::fs::write(&input, format!("Iccid,RegistrationCode\n{iccid},{code}\n")).unwrap();
    let output = binary_command()
        .arg("register")
        .arg(&input)
        .args(["--base-url", url])
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_appends_only_to_its_own_state_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sims = dir.path().join("sims.csv");
    let text = "Iccid,RegistrationCode\n89883070000000000011,H3LL0W0RLD\n";
    std::fs::write(&sims, text).unwrap();
    let (mut emulator, url) = start_emulator(&sims).await;
    if let Some(url) = url {
        // It started on a SIM CSV: show what that costs, then fail.
        register_through(dir.path(), &url, 1).await;
        emulator.kill().await.unwrap();
        panic!(
            "the emulator used a SIM CSV as its journal; it now reads:\n{}",
            std::fs::read_to_string(&sims).unwrap()
        );
    }
    let output = emulator.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 2);
    let err = stderr(&output);
    assert!(err.contains("sims.csv") && err.contains("not"), "{err}");
    assert!(err.contains("journal"), "{err}");
    assert_eq!(std::fs::read_to_string(&sims).unwrap(), text);

    // Nor anything that is not a regular file.
    let link = dir.path().join("stdout-link");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let (emulator, url) = start_emulator(&link).await;
    assert_eq!(url, None, "the emulator refuses a link to its stdout");
    assert_eq!(exit_code(&emulator.wait_with_output().await.unwrap()), 2);
}

/// A journal whose last line was torn (the emulator killed mid-write) is cut back to its
/// last whole line, as the results file is: the next save is not glued to the torn one.
#[tokio::test(flavor = "multi_thread")]
async fn a_torn_last_line_of_the_state_journal_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("account.jsonl");
    let (mut emulator, url) = start_emulator(&journal).await;
    register_through(dir.path(), &url.unwrap(), 1).await;
    emulator.kill().await.unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    std::io::Write::write_all(&mut file, b"{\"sid\":\"HS0000\",\"icc").unwrap();
    drop(file);

    let (mut emulator, url) = start_emulator(&journal).await;
    register_through(dir.path(), &url.unwrap(), 2).await;
    emulator.kill().await.unwrap();

    let (mut emulator, url) = start_emulator(&journal).await;
    let output = binary_command()
        .args(["export", "--base-url", &url.unwrap()])
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    emulator.kill().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let listed = stdout(&output);
    for n in [1, 2] {
        assert!(
            listed.contains(&good_sim(n).0),
            "SIM {n} kept: {listed}\njournal:\n{}",
            std::fs::read_to_string(&journal).unwrap()
        );
    }
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("supersim-bulk emulator state"),
        "the journal names itself on its first line: {text}"
    );
}

/// The results file lists the account's SIMs: a new one is created owner-only (0600), as the
/// export and the failed-out file are; an existing one keeps its mode.
#[tokio::test]
async fn a_new_results_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let mode = std::fs::metadata(env.results_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// A rehearsal keeps its emulated account in `<results stem>.state.jsonl` beside its results
/// file. A run refused before it sends anything (its results file a folder, a named pipe,
/// another program's CSV) leaves no journal there, and an existing one as it was, torn last
/// line included: `-o /dev/null` must not leave `/dev/null.state.jsonl` behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_rehearsal_leaves_no_state_journal() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let dir = env.dir.path();
    std::fs::create_dir(dir.join("folder.csv")).unwrap();
    let fifo = dir.join("pipe.csv");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(status.unwrap().success(), "mkfifo makes a named pipe");
    std::fs::write(dir.join("notes.csv"), "name,phone\nann,555\n").unwrap();
    // A journal an earlier rehearsal left torn (killed mid-write) beside a results file that
    // is now refused: repairing it is for the run that will write to it.
    let torn = format!(
        "{}\n{{\"sid\":\"HS00",
        r#"{"journal":"supersim-bulk emulator state","version":1}"#
    );
    std::fs::write(dir.join("foreign.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(dir.join("foreign.state.jsonl"), &torn).unwrap();
    for results in ["folder.csv", "pipe.csv", "notes.csv", "foreign.csv"] {
        let output = binary_command()
            .current_dir(dir)
            .args(["register", "sims.csv", "--emulator", "-o", results])
            .output()
            .await
            .unwrap();
        assert_eq!(exit_code(&output), 2, "{results}: {}", stderr(&output));
        let journal = dir.join(results.replace(".csv", ".state.jsonl"));
        if results == "foreign.csv" {
            assert_eq!(
                std::fs::read_to_string(&journal).unwrap(),
                torn,
                "{results}: the journal was changed"
            );
        } else {
            assert!(
                !journal.exists(),
                "{results}: a refused run left {}: {:?}",
                journal.display(),
                std::fs::read_to_string(&journal)
            );
        }
    }
}

/// The lock beside the results file is refused as `--summary-json`, `--report` or
/// `--metrics-file`, and that refusal, a set-up error, writes none of them over it: a lock
/// replaced by a new file is another inode, which the next run would lock while a run
/// already under way still holds the old one, two runs on one results file.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_end_file_is_not_written_over_the_lock() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let first = env.register(&[]).await;
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let lock = env.dir.path().join("sims.results.csv.lock");
    let before = std::fs::read(&lock).unwrap();
    let inode = std::fs::metadata(&lock).unwrap().ino();
    for flag in ["--summary-json", "--report", "--metrics-file"] {
        let output = env.register(&[flag, lock.to_str().unwrap()]).await;
        assert_eq!(exit_code(&output), 2, "{flag}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("is the lock"),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            (
                std::fs::metadata(&lock).unwrap().ino(),
                std::fs::read(&lock).unwrap()
            ),
            (inode, before.clone()),
            "{flag}: the lock was replaced by {:?}",
            String::from_utf8_lossy(&std::fs::read(&lock).unwrap())
        );
    }
}

/// A rehearsal's emulated account is its journal beside the results file: like the input,
/// the results and the lock, it is no place for the failed rows, the summary, the report
/// or the metrics, which would be renamed over it and the account lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsals_journal_is_no_place_for_another_file_of_the_run() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let dir = env.dir.path();
    let rehearse = |extra: Vec<String>| {
        binary_command()
            .current_dir(dir)
            .args(["register", "sims.csv", "--emulator"])
            .args(extra)
            .output()
    };
    let first = rehearse(vec![]).await.unwrap();
    assert_eq!(exit_code(&first), 0, "{}", stderr(&first));
    let journal = dir.join("sims.emulator.results.state.jsonl");
    let before = std::fs::read_to_string(&journal).unwrap();
    assert!(before.contains(&good_sim(1).0), "{before}");
    for flag in [
        "--failed-out",
        "--summary-json",
        "--report",
        "--metrics-file",
    ] {
        let output = rehearse(vec![flag.into(), journal.display().to_string()])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap(),
            before,
            "{flag}: the rehearsal's journal was replaced (exit {})",
            exit_code(&output)
        );
        assert_eq!(exit_code(&output), 2, "{flag}: {}", stderr(&output));
    }
}

/// A rehearsal whose results file is to go in a folder that is not there says which path
/// it cannot use, as a real run does, rather than a bare "No such file or directory".
#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_into_a_missing_folder_names_the_path() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let output = binary_command()
        .current_dir(env.dir.path())
        .args([
            "register",
            "sims.csv",
            "--emulator",
            "-o",
            "no-such-folder/x.csv",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    let error = err
        .lines()
        .find(|line| line.contains("error:"))
        .unwrap_or_else(|| panic!("an error line: {err}"));
    assert!(
        error.contains("no-such-folder/x."),
        "the error does not say which path: {error}"
    );
    assert!(!env.dir.path().join("no-such-folder").exists());
}

/// A path written with a trailing `/` names a folder. As the results file it is refused
/// rather than created as a file of that name; as the summary, the report, the metrics or
/// the failed-out file it is refused before anything is sent, rather than found unwritable
/// after every SIM was registered.
#[tokio::test(flavor = "multi_thread")]
async fn a_path_ending_in_a_slash_is_refused_before_anything_is_sent() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let dir = env.dir.path();
    for flag in [
        "-o",
        "--summary-json",
        "--report",
        "--metrics-file",
        "--failed-out",
    ] {
        let name = format!("new-folder{}", flag.trim_start_matches('-'));
        let path = format!("{}/{name}/", dir.display());
        let output = env.register(&[flag, &path]).await;
        assert_eq!(exit_code(&output), 2, "{flag} {path}: {}", stderr(&output));
        assert_eq!(
            env.emulator.stats().requests,
            0,
            "{flag}: requests were sent"
        );
        assert!(
            !dir.join(&name).exists(),
            "{flag}: a file was made at {name}"
        );
    }
}
