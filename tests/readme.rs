//! The README's commands run as shown and print what it shows, so it cannot drift.

mod common;

use common::{binary_command, exit_code, stderr, stdout};

/// The lines of the first fenced block after `marker` in the README.
fn block_after(readme: &str, marker: &str) -> Vec<String> {
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has {marker}"));
    let rest = &readme[start..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close].lines().map(String::from).collect()
}

/// A fresh copy of the sample in a folder of its own.
fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("samples")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sims.csv"),
        dir.path().join("samples/sims.csv"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_main_command_prints_the_summary_the_readme_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let command = "cargo run --release -- register samples/sims.csv --emulator";
    assert!(readme.contains(command), "the README's main command");
    let shown = block_after(&readme, "and this summary:");

    let dir = sample();
    let output = binary_command()
        .current_dir(dir.path())
        .args(["register", "samples/sims.csv", "--emulator"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        exit_code(&output),
        1,
        "as the README says: {}",
        stderr(&output)
    );
    let printed: Vec<String> = stdout(&output).lines().map(String::from).collect();
    // The first line holds the time taken, and where the adaptive limit settled depends on
    // timing; everything else is as shown, the other traffic included: the run is alone on
    // the account, and its own requests are never taken for other traffic, whatever the
    // moment the emulator counted them at.
    let timing = ["concurrency:"];
    let steady = |lines: &[String]| -> Vec<String> {
        lines[1..]
            .iter()
            .filter(|l| !timing.iter().any(|prefix| l.starts_with(prefix)))
            .cloned()
            .collect()
    };
    assert_eq!(steady(&printed), steady(&shown), "{}", stdout(&output));
    assert!(printed.iter().any(|l| l.starts_with("concurrency: ")));
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("other traffic on the account: "))
    );
    assert!(printed[0].starts_with("205 rows in "), "{}", printed[0]);
    assert!(
        dir.path()
            .join("samples/sims.emulator.results.csv")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_prints_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = block_after(&readme, "**Check a file, with no network:**");
    assert_eq!(shown[0], "$ supersim-bulk validate samples/sims.csv");
    let dir = sample();
    let output = binary_command()
        .current_dir(dir.path())
        .args(["validate", "samples/sims.csv"])
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let printed: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(printed, shown[1..], "{}", stdout(&output));
}
