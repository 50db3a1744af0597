//! The glue between the command line and the jobs: logging set-up, signal handling, and
//! turning each job's end into a message and a documented exit code.
//!
//! Kept out of `main.rs` so that `main` only parses arguments and hands over.

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, EmulatorArgs, LogFormat, RegisterArgs, ValidateArgs};
use crate::config::{RegisterConfig, Target};
use crate::emulator::{EmulatorConfig, credentials_from_env};
use crate::exit;
use crate::register::{self, RunError};
use crate::summary::{EndReason, write_json_atomically};

/// Logs go to stderr. Colour only on a terminal. HTTP internals are capped at `debug`
/// whatever RUST_LOG says, because at `trace` they dump request headers, and the
/// Authorization header is a secret.
pub fn init_tracing(cli: &Cli) {
    let own_level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("warn,supersim_bulk={own_level}"));
    let mut filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("warn"));
    for noisy in [
        "h2",
        "hyper",
        "hyper_util",
        "reqwest",
        "rustls",
        "tower",
        "axum",
    ] {
        if let Ok(directive) = format!("{noisy}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .init(),
    }
}

/// Runs the parsed command to its end.
pub async fn main(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Register(args) => register(args).await,
        Command::Emulator(args) => emulator(args).await,
        Command::Validate(args) => validate(args),
    };
    ExitCode::from(code)
}

async fn register(args: RegisterArgs) -> u8 {
    let config = match RegisterConfig::resolve(&args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::USAGE_OR_CONFIG;
        }
    };
    let credentials_source = match &config.target {
        Target::Api {
            credentials_source, ..
        } => *credentials_source,
        Target::Emulator { .. } => "the emulator's test credentials",
    };
    let stop = CancellationToken::new();
    watch_signals(stop.clone());
    let summary_json = config.summary_json.clone();
    let (code, json) = match register::run(config, stop).await {
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
            let json = serde_json::json!({
                "tool": "supersim-bulk",
                "version": env!("CARGO_PKG_VERSION"),
                "end": "error",
                "reason": error.to_string(),
                "exit_code": exit::USAGE_OR_CONFIG,
            });
            (exit::USAGE_OR_CONFIG, Some(Ok(json)))
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

/// `validate`: the report goes to stdout, a file-level error to stderr (exit 2).
fn validate(args: ValidateArgs) -> u8 {
    let config = crate::report::ValidateConfig {
        input: crate::input::InputSource::from_arg(&args.input),
        read: crate::config::read_options(&args.input_options),
        strict: args.input_options.strict,
        all: args.all,
        failed_out: args.input_options.failed_out,
    };
    match crate::report::run(&config, &mut std::io::stdout().lock()) {
        Ok(counts) => counts.exit_code(),
        Err(error) => {
            eprintln!("error: {error}");
            exit::USAGE_OR_CONFIG
        }
    }
}

async fn emulator(args: EmulatorArgs) -> u8 {
    let mut config = EmulatorConfig {
        latency: args.latency,
        max_concurrent: args.max_concurrent,
        fail_rate: args.fail_rate,
        seed: args.seed,
        credentials: credentials_from_env(),
        update_delay: args.update_delay,
        ..EmulatorConfig::default()
    };
    config.fleets.extend(args.fleets);
    let listener = match tokio::net::TcpListener::bind((args.host, args.port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "error: cannot listen on {}:{}: {error}",
                args.host, args.port
            );
            return exit::USAGE_OR_CONFIG;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            println!("Super SIM API emulator listening on http://{addr}");
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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match crate::emulator::serve(config, listener, shutdown).await {
        Ok(()) => exit::SUCCESS,
        Err(error) => {
            eprintln!("error: the emulator stopped: {error}");
            exit::USAGE_OR_CONFIG
        }
    }
}

/// First SIGINT or SIGTERM: cancel `stop` so the run winds down and writes what is in
/// flight. Second: leave at once; the results file is valid after any whole row.
fn watch_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM");
                    None
                }
            };
        for count in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match terminate.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
            }
            if count == 0 {
                tracing::warn!(
                    "interrupted: finishing the requests in flight (interrupt again to quit at once)"
                );
                stop.cancel();
            } else {
                eprintln!("interrupted twice: quitting now; run again to resume");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}
