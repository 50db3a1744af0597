//! Connecting to the account, shared by `register`, `export` and `reconcile`: the account
//! settings of the last two, and the API client for the resolved [`Target`], starting the
//! built-in emulator first for `--emulator`.

use std::time::Duration;

use anyhow::Context;

use crate::api::Client;
use crate::config::{AccountConfig, Target};
use crate::emulator::{CodeRule, Emulator, EmulatorConfig};
use crate::secret::Credentials;

/// The account settings of `export` or `reconcile` from their flags and the environment,
/// or the exit code after saying why they cannot be used.
pub(crate) fn account_config(args: &crate::cli::AccountArgs) -> Result<AccountConfig, u8> {
    AccountConfig::resolve(args, |name| std::env::var(name).ok()).map_err(|error| {
        crate::logs::error(format_args!("{error:#}"));
        crate::exit::USAGE_OR_CONFIG
    })
}

/// The client for `target`, and the in-process emulator it talks to, if one was started
/// (dropping it stops the emulator).
pub(crate) async fn connect(
    target: &Target,
    timeout: Duration,
) -> anyhow::Result<(Client, Option<Emulator>)> {
    let (base_url, credentials, emulator): (String, Credentials, _) = match target {
        Target::Api {
            base_url,
            credentials,
            ..
        } => (base_url.clone(), credentials.clone(), None),
        Target::Emulator {
            credentials,
            state,
            account,
        } => {
            let emulator_config = EmulatorConfig {
                credentials: vec![(credentials.username.clone(), credentials.password.clone())],
                state: state.clone(),
                // Long enough that a rehearsal shows `scheduled` and what --wait does.
                update_delay: Duration::from_secs(1),
                // A rehearsal with the real box's file and the real command: every
                // well-formed code registers (but `WR0NG...`), and the Fleets it names exist.
                codes: CodeRule::AnyWellFormed,
                make_up_fleets: true,
                ..(**account).clone()
            };
            let emulator = Emulator::start(emulator_config, ([127, 0, 0, 1], 0).into())
                .await
                .context("cannot start the built-in emulator")?;
            // On a terminal the start line says "against the built-in emulator" already.
            if crate::logs::interactive() {
                tracing::debug!(url = %emulator.base_url(), "running against the built-in emulator");
            } else {
                tracing::info!(url = %emulator.base_url(), "running against the built-in emulator");
            }
            (emulator.base_url(), credentials.clone(), Some(emulator))
        }
    };
    let client = Client::new(&base_url, credentials, timeout)?;
    Ok((client, emulator))
}

/// The variables the credentials came from, for the message after a 401.
pub(crate) fn credentials_source(target: &Target) -> &str {
    match target {
        Target::Api {
            credentials_source, ..
        } => credentials_source,
        Target::Emulator { .. } => "the emulator's test credentials",
    }
}

/// The start line of `export` and `reconcile`: what runs, against which API, as whom.
pub(crate) fn log_start(command: &str, target: &Target, input: Option<&str>) {
    let api = match target {
        Target::Api { base_url, .. } => base_url.clone(),
        Target::Emulator { .. } => "emulator".to_string(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        command,
        input,
        api = %api,
        pid = std::process::id(),
        "starting"
    );
}
