//! Shell conventions: completion scripts and the man page from the clap definitions, worked
//! examples at the end of each subcommand's help, and the emulator's credential banner.

mod common;

use common::{binary_command, exit_code, stderr, stdout};

async fn run(args: &[&str]) -> std::process::Output {
    binary_command()
        .args(args)
        .output()
        .await
        .expect("the binary runs")
}

#[tokio::test]
async fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = run(&["completions", shell]).await;
        assert_eq!(exit_code(&output), 0, "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for word in [
            "register",
            "validate",
            "export",
            "reconcile",
            "page-size",
            "failed-out",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let output = run(&["completions", "tcsh"]).await;
    assert_eq!(exit_code(&output), 2);
}

#[tokio::test]
async fn the_man_page_covers_every_subcommand_and_the_exit_codes() {
    let output = run(&["man"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH supersim-bulk 1"), "{page}");
    for section in [
        "SUPERSIM-BULK REGISTER",
        "SUPERSIM-BULK VALIDATE",
        "SUPERSIM-BULK EXPORT",
        "SUPERSIM-BULK RECONCILE",
        "SUPERSIM-BULK EMULATOR",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.contains("interrupted; rows in flight were written"));
    // The text after the flags is titled by its own headings, not clap_mangen's `EXTRA`.
    assert!(!page.contains(".SH EXTRA"), "{page}");
    for title in [".SH \"EXIT CODES\"", ".SH EXAMPLES"] {
        assert!(page.contains(title), "no {title}");
    }
    assert!(page.contains("\\-\\-fleet") || page.contains("--fleet"));
}

#[tokio::test]
async fn each_subcommands_help_ends_with_worked_examples() {
    let subcommands = common::subcommands();
    let top = std::iter::once("");
    for subcommand in top.chain(subcommands.iter().map(String::as_str)) {
        let args: Vec<&str> = [subcommand, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let output = run(&args).await;
        assert_eq!(exit_code(&output), 0, "{subcommand}");
        let help = stdout(&output);
        let examples = help
            .rfind("\nExamples:\n")
            .unwrap_or_else(|| panic!("{subcommand} --help has no examples:\n{help}"));
        let shown = help[examples..]
            .lines()
            .filter(|line| line.trim_start().starts_with("supersim-bulk "))
            .count();
        assert!(shown >= 2, "{subcommand}: {shown} examples\n{help}");
    }
    let help = stdout(&run(&["register", "--help"]).await);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(
        help.contains("TWILIO_API_KEY + TWILIO_API_SECRET"),
        "{help}"
    );
}

#[tokio::test]
async fn validate_help_promises_only_what_validate_can_write() {
    let help = stdout(&run(&["validate", "--help"]).await);
    let failed_out = &help[help.find("--failed-out").unwrap()..];
    let failed_out = &failed_out[..failed_out.find("\n\n").unwrap_or(failed_out.len())];
    assert!(!failed_out.contains("rejected"), "{failed_out}");
    assert!(!failed_out.contains("gave_up"), "{failed_out}");
    assert!(failed_out.contains("invalid"), "{failed_out}");
    let help = stdout(&run(&["register", "--help"]).await);
    assert!(help.contains("(invalid, rejected, gave_up)"), "{help}");
}

/// Reads the emulator's banner (until its credentials line), then stops it.
async fn banner(env: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = binary_command()
        .args(["emulator", "--port", "0"])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        text.push_str(&line);
        text.push('\n');
        if line.contains("credentials:") {
            break;
        }
    }
    child.kill().await.unwrap();
    text
}

#[tokio::test]
async fn the_emulator_banner_names_the_credentials_it_accepts_never_a_secret() {
    let text = banner(&[]).await;
    assert!(
        text.contains("AC00000000000000000000000000000000 / emulator-test-token"),
        "{text}"
    );
    let text = banner(&[
        ("TWILIO_API_KEY", "SKcanary-user"),
        ("TWILIO_API_SECRET", "canary-secret"),
    ])
    .await;
    assert!(
        text.contains("TWILIO_API_KEY + TWILIO_API_SECRET"),
        "{text}"
    );
    assert!(!text.contains("canary"), "{text}");
    assert!(!text.contains("emulator-test-token"), "{text}");
}
