//! `check`: the set-up proven without a CSV, as `gh auth status` does for GitHub: where the
//! requests go, whose credentials they carry and where those came from, the account they
//! belong to, whether the API answers, and the Fleets a run could name. It sends only the
//! preflight's reads and one Fleet listing, and exits with the codes `register` would
//! for the same set-up: 0 ready, 2 a set-up mistake (refused credentials among them), 75
//! the API cannot be reached now.

use std::io::Write as _;

use crate::api::preflight::{PreflightError, preflight};
use crate::cli::CheckArgs;
use crate::config::{AccountConfig, Target};
use crate::exit;

/// Fleets listed by name; past this, "and N more".
const FLEETS_SHOWN: usize = 20;

/// `check`: prints what it proved, one `name  value` line each, and returns the exit code.
pub(crate) async fn run(args: CheckArgs) -> u8 {
    let config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut report = Report::default();
    report.line("api", describe_target(&config));
    report.line(
        "credentials",
        match &config.target {
            Target::Api {
                credentials,
                credentials_source,
                ..
            } => shown_user(&credentials.username, credentials_source),
            Target::Emulator { .. } => "the emulator's test credentials".to_string(),
        },
    );
    let code = prove(&config, &mut report).await;
    report.print();
    code
}

/// The credentials' user name, an identifier (an API key SID or an Account SID), and where
/// it came from. One that is no SID is not shown: with the pair swapped it is the secret.
fn shown_user(username: &str, source: &str) -> String {
    let is_sid = username.len() == 34
        && (username.starts_with("SK") || username.starts_with("AC"))
        && username[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if is_sid {
        format!("{username} (from {source})")
    } else {
        format!(
            "not shown (from {source}): it is not an API key SID or an Account SID, SK or AC \
             and 32 hex digits; are the SID and the secret swapped?"
        )
    }
}

/// What `check` found, in the order it found it.
#[derive(Default)]
struct Report {
    lines: Vec<(&'static str, String)>,
}

impl Report {
    fn line(&mut self, name: &'static str, value: String) {
        self.lines.push((name, value));
    }

    fn print(&self) {
        let mut out = super::Stdout::lock();
        for (name, value) in &self.lines {
            let _ = writeln!(out, "{name:<12} {value}");
        }
    }
}

fn describe_target(config: &AccountConfig) -> String {
    match &config.target {
        Target::Api { base_url, .. } => base_url.clone(),
        Target::Emulator { .. } => "the built-in emulator (no account, no network)".to_string(),
    }
}

/// Connects, runs the preflight and lists the Fleets, noting each result in `report`.
async fn prove(config: &AccountConfig, report: &mut Report) -> u8 {
    let (client, _emulator) = match super::connect::connect(&config.target, config.timeout).await {
        Ok(connected) => connected,
        Err(error) => {
            crate::logs::error(format_args!("{error:#}"));
            return exit::USAGE_OR_CONFIG;
        }
    };
    let proven = match preflight(&client).await {
        Ok(proven) => proven,
        Err(PreflightError::CredentialsRefused(refusal)) => {
            report.line("reachable", "yes".to_string());
            report.line("account", format!("refused the credentials ({refusal})"));
            crate::logs::error(format_args!(
                "the API refused the credentials ({refusal}); check {}",
                super::connect::credentials_source(&config.target)
            ));
            return exit::USAGE_OR_CONFIG;
        }
        Err(PreflightError::Setup(why)) => {
            report.line(
                "reachable",
                "yes, but it is not the Super SIM API".to_string(),
            );
            crate::logs::error(format_args!("{why}"));
            return exit::USAGE_OR_CONFIG;
        }
        Err(PreflightError::Unreachable(why)) => {
            report.line("reachable", "no".to_string());
            crate::logs::error(format_args!("{why}"));
            return exit::TEMPORARY_FAILURE;
        }
    };
    report.line("reachable", "yes".to_string());
    // The account the credentials name, as the run works it out (a profile's included).
    let said = config.account_sid.clone();
    match (proven.account_sid, said) {
        (Some(learned), Some(said)) if learned != said => {
            report.line("account", learned.clone());
            crate::logs::error(format_args!(
                "the credentials belong to account {learned}, but TWILIO_ACCOUNT_SID says \
                 {said}; set TWILIO_ACCOUNT_SID to the account of the API key"
            ));
            return exit::USAGE_OR_CONFIG;
        }
        (Some(account), _) => report.line("account", account),
        (None, Some(said)) => report.line(
            "account",
            format!("{said} (as the credentials say; the account has no SIM or Fleet to show it)"),
        ),
        (None, None) => report.line(
            "account",
            "not known yet (no SIM or Fleet on the account names it)".to_string(),
        ),
    }
    match client.list_fleets(FLEETS_SHOWN + 1).await.into_result() {
        Ok(fleets) => report.line("fleets", describe_fleets(&fleets)),
        Err(error) => {
            report.line("fleets", format!("cannot be listed: {error}"));
            return exit::TEMPORARY_FAILURE;
        }
    }
    exit::SUCCESS
}

fn describe_fleets(fleets: &[crate::api::client::Fleet]) -> String {
    if fleets.is_empty() {
        return "none (a run with --fleet or a `fleet` column needs one)".to_string();
    }
    let names: Vec<String> = fleets
        .iter()
        .take(FLEETS_SHOWN)
        .map(|fleet| match (&fleet.unique_name, &fleet.sid) {
            (Some(name), Some(sid)) => format!("{name} ({sid})"),
            (Some(name), None) => name.clone(),
            (None, Some(sid)) => sid.clone(),
            (None, None) => "(unnamed)".to_string(),
        })
        .collect();
    let more = if fleets.len() > FLEETS_SHOWN {
        ", and more"
    } else {
        ""
    };
    format!("{}{more}", names.join(", "))
}
