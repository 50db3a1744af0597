//! The `register` command: flags and environment resolved into a run, the API client (or
//! the built-in emulator) to run it against, and the run's end turned into a summary, the
//! summary JSON and an exit code.

use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::app::watch_signals;
use crate::cli::RegisterArgs;
use crate::config::RegisterConfig;
use crate::emulator::Emulator;
use crate::exit;
use crate::run::job::{self, RunError};
use crate::run::summary::{EndReason, write_json_atomically};

/// `register`: resolves the flags, connects (starting the built-in emulator for
/// `--emulator`), runs the job, prints the summary and writes `--summary-json`.
pub async fn run(args: RegisterArgs) -> u8 {
    let config = match RegisterConfig::resolve(&args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::USAGE_OR_CONFIG;
        }
    };
    let credentials_source = super::connect::credentials_source(&config.target);
    let (client, _emulator) = match connect(&config).await {
        Ok(connected) => connected,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::USAGE_OR_CONFIG;
        }
    };
    let stop = CancellationToken::new();
    watch_signals(stop.clone());
    let summary_json = config.summary_json.clone();
    let (code, json) = match job::run(config, client, stop).await {
        Ok(summary) => {
            print!("{}", summary.render());
            if summary.end == EndReason::CredentialsRefused {
                eprintln!(
                    "error: the API refused the credentials (HTTP 401, Twilio error 20003); \
                     check {credentials_source}"
                );
            }
            (
                summary.exit_code(),
                Some(serde_json::to_value(summary.to_json())),
            )
        }
        Err(RunError::Locked(error)) => {
            // The other run owns the results and the summary: touch neither.
            eprintln!("error: {error}");
            return exit::TEMPORARY_FAILURE;
        }
        Err(error) => {
            eprintln!("error: {error}");
            // An input that changed under the run is worth retrying later, as is a lock.
            let code = match error {
                RunError::InputChanged(_) => exit::TEMPORARY_FAILURE,
                _ => exit::USAGE_OR_CONFIG,
            };
            let json = serde_json::json!({
                "tool": "supersim-bulk",
                "version": env!("CARGO_PKG_VERSION"),
                "end": "error",
                "reason": error.to_string(),
                "exit_code": code,
            });
            (code, Some(Ok(json)))
        }
    };
    if let (Some(path), Some(Ok(json))) = (summary_json, json)
        && let Err(error) = write_json_atomically(&path, &json)
    {
        eprintln!(
            "error: cannot write the summary to {}: {error}",
            path.display()
        );
    }
    code
}

/// Starts the in-process emulator when asked to, and builds the API client.
async fn connect(config: &RegisterConfig) -> anyhow::Result<(Client, Option<Emulator>)> {
    super::connect::connect(&config.target, config.timeout).await
}
