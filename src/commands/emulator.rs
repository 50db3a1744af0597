//! The `emulator` command: a local Super SIM API on a chosen port, for rehearsals and for
//! other tools' tests.

use tokio_util::sync::CancellationToken;

use crate::cli::EmulatorArgs;
use crate::emulator::{EmulatorConfig, credentials_from_env};
use crate::exit;

/// `emulator`: serves the emulated API until `stop` (Ctrl-C, SIGTERM, SIGHUP), listing its
/// Fleets at start-up.
pub(crate) async fn run(args: EmulatorArgs, stop: CancellationToken) -> u8 {
    let mut config = EmulatorConfig {
        fail_rate: args.fail_rate,
        seed: args.seed,
        credentials: credentials_from_env(),
        update_delay: args.update_delay,
        state: args.state.clone(),
        ..crate::config::emulated_account(&args.account)
    };
    config.fleets.extend(args.fleets);
    // A state file that is not a journal is refused before the banner says it is listening.
    if let Some(state) = &config.state
        && let Err(error) = crate::emulator::check_state(state)
    {
        crate::logs::error(format_args!("{error}"));
        return exit::USAGE_OR_CONFIG;
    }
    let listener = match tokio::net::TcpListener::bind((args.host, args.port)).await {
        Ok(listener) => listener,
        Err(error) => {
            crate::logs::error(format_args!(
                "cannot listen on {}:{}: {error}",
                args.host, args.port
            ));
            return exit::USAGE_OR_CONFIG;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            println!("Super SIM API emulator listening on http://{addr}");
            println!(
                "  {}",
                accepted_credentials(|name| std::env::var(name).ok())
            );
            let mut listed = Vec::new();
            for name in &config.fleets {
                if !listed.contains(&name) {
                    println!("  fleet {} {name}", crate::emulator::fleet_sid_for(name));
                    listed.push(name);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the listening address"),
    }
    let shutdown = async move { stop.cancelled().await };
    match crate::emulator::serve(config, listener, shutdown).await {
        Ok(()) => exit::SUCCESS,
        Err(error) => {
            crate::logs::error(format_args!("the emulator stopped: {error}"));
            exit::USAGE_OR_CONFIG
        }
    }
}

/// Which credentials the emulator accepts, by the names of the variables they came from (or
/// the fixed test pair, which is no secret); never a value from the environment.
pub(crate) fn accepted_credentials(env: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    let pairs: Vec<String> = [
        ("TWILIO_API_KEY", "TWILIO_API_SECRET"),
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    ]
    .into_iter()
    .filter(|(user, secret)| set(user) && set(secret))
    .map(|(user, secret)| format!("{user} + {secret}"))
    .collect();
    if pairs.is_empty() {
        format!(
            "credentials: the test pair {} / {} (no Twilio credentials in the environment)",
            crate::emulator::TEST_ACCOUNT_SID,
            crate::emulator::TEST_AUTH_TOKEN
        )
    } else {
        format!(
            "credentials: the values of {} from this environment",
            pairs.join(" and of ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_variables_never_values() {
        let env = |name: &str| match name {
            "TWILIO_API_KEY" => Some("SKcanary".to_string()),
            "TWILIO_API_SECRET" => Some("secret-canary".to_string()),
            _ => None,
        };
        let line = accepted_credentials(env);
        assert!(
            line.contains("TWILIO_API_KEY + TWILIO_API_SECRET"),
            "{line}"
        );
        assert!(!line.contains("canary"), "{line}");
        let line = accepted_credentials(|_| None);
        assert!(line.contains(crate::emulator::TEST_AUTH_TOKEN), "{line}");
    }
}
