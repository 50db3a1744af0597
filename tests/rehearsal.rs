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
