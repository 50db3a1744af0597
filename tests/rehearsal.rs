//! A rehearsal with the real box and the real command: under `--emulator` every
//! well-formed code registers (but one starting `WR0NG`, to rehearse a refusal), the Fleets
//! the command names exist on the emulated account (and the summary says they were made up),
//! and `reconcile --emulator` reads the rehearsal's account.

mod common;

use common::{binary_command, exit_code, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn the_real_box_and_command_rehearse_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    // Codes a supplier printed: nothing the emulator derives.
    let box_csv = "ICCID,Registration Code\n\
                   89883070000042100006,K7Q2M9X4PL\n\
                   89883070000042100014,A1B2C3D4E5\n\
                   89883070000042100022,WR0NGC0DE3\n";
    std::fs::write(dir.path().join("box-17.csv"), box_csv).unwrap();
    let output = binary_command()
        .current_dir(dir.path())
        .args([
            "register",
            "box-17.csv",
            "--emulator",
            "--fleet",
            "trackers-eu",
        ])
        .args(["--activate"])
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let said = stdout(&output);
    assert!(said.contains("  registered          2\n"), "{said}");
    assert!(said.contains("  rejected            1\n"), "{said}");
    assert!(
        said.contains("rehearsal: Fleet trackers-eu made up on the emulated account"),
        "{said}"
    );

    let output = binary_command()
        .current_dir(dir.path())
        .args(["reconcile", "box-17.emulator.results.csv", "--emulator"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        exit_code(&output),
        0,
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("the account matches the file"),
        "{}",
        stdout(&output)
    );
}

/// `export --emulator` reads a rehearsal's account: the journal `register --emulator` kept
/// beside its results (or one `emulator --state` wrote), named by `--state`.
#[tokio::test(flavor = "multi_thread")]
async fn export_emulator_lists_the_rehearsals_sims() {
    let dir = tempfile::tempdir().unwrap();
    let box_csv = "ICCID,Registration Code\n\
                   89883070000042100006,K7Q2M9X4PL\n\
                   89883070000042100014,A1B2C3D4E5\n";
    std::fs::write(dir.path().join("box-17.csv"), box_csv).unwrap();
    let output = binary_command()
        .current_dir(dir.path())
        .args([
            "register",
            "box-17.csv",
            "--emulator",
            "--fleet",
            "trackers-eu",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let state = "box-17.emulator.results.state.jsonl";
    let journal = std::fs::read(dir.path().join(state)).unwrap();
    let export = |args: &[&str]| {
        let mut command = binary_command();
        command.current_dir(dir.path()).arg("export").args(args);
        async move { command.output().await.unwrap() }
    };
    for args in [
        &["--emulator", "--state", state][..],
        &["--emulator", "--state", state, "--fleet", "trackers-eu"][..],
    ] {
        let output = export(args).await;
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
        let text = stdout(&output);
        assert_eq!(text.lines().count(), 3, "{args:?}: {text}");
        assert!(text.contains("89883070000042100006"), "{text}");
        assert!(text.contains("89883070000042100014"), "{text}");
    }
    // The results file given by mistake: the message names the journal beside it.
    let output = export(&["--emulator", "--state", "box-17.emulator.results.csv"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    assert!(stderr(&output).contains(state), "{}", stderr(&output));
    // --state is for the built-in emulator only.
    let output = export(&["--state", state, "--base-url", "http://127.0.0.1:9"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    // The journal was only read.
    assert_eq!(std::fs::read(dir.path().join(state)).unwrap(), journal);
}
