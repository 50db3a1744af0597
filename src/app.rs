//! The glue between the command line and the commands: logging set-up, signal handling,
//! and handing each subcommand to its entry point in `commands`.
//!
//! Kept out of `main.rs` so that `main` only parses arguments and hands over.

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, ColorChoice, Command, LogFormat};
use crate::{commands, exit};

/// Logs go to stderr. Colour per `--color` (auto: on a terminal, unless `NO_COLOR` or
/// `TERM=dumb`). HTTP internals are capped at `debug`
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
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => crate::logs::auto_color(std::io::stderr().is_terminal(), |name| {
            std::env::var(name).ok()
        }),
    };
    let json = cli.log_format == LogFormat::Json;
    crate::logs::set(json, color && !json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.with_ansi(false).json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(color).compact().init(),
    }
}

/// Runs the parsed command to its end.
pub async fn main(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Register(args) => commands::register::run(args).await,
        Command::Emulator(args) => commands::emulator::run(args).await,
        Command::Validate(args) => commands::validate::run(args),
        Command::Export(args) => commands::export::run(args).await,
        Command::Reconcile(args) => commands::reconcile::run(args).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Completions(args) => commands::shell::completions(args),
        Command::Man => commands::shell::man(),
    };
    ExitCode::from(code)
}

/// First SIGINT or SIGTERM: cancel `stop` so the run winds down and writes what is in
/// flight. Second: leave at once; the results file is valid after any whole row.
pub(crate) fn watch_signals(stop: CancellationToken) {
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
                if crate::logs::json() {
                    tracing::error!("interrupted twice: quitting now; run again to resume");
                } else {
                    eprintln!("interrupted twice: quitting now; run again to resume");
                }
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}
