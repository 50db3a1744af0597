//! The glue between the command line and the commands: logging set-up, the stop token
//! (from [`crate::signals`]) handed to each command, and each subcommand's entry point in
//! `commands`.
//!
//! Kept out of `main.rs` so that `main` only parses arguments and hands over. Nothing below
//! imports this module.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, ColorChoice, Command, LogFormat};
use crate::{commands, signals};

/// Logs go to stderr, and are dropped when stderr cannot be written (see
/// [`crate::logs::Stderr`]). Colour per `--color` (auto: on a terminal, unless `NO_COLOR` or
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
    let terminal = std::io::stderr().is_terminal();
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => crate::logs::auto_color(terminal, |name| std::env::var(name).ok()),
    };
    let json = cli.log_format == LogFormat::Json;
    crate::logs::set(crate::logs::Style {
        json,
        color: color && !json,
        terminal,
        quiet: cli.quiet,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logs::Stderr)
        // Its own complaint about a failed write would go to the same broken stderr.
        .log_internal_errors(false)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.with_ansi(false).json().flatten_event(true).init(),
        // Off a terminal each line also names the process (see `logs::Stamp`).
        LogFormat::Text => builder
            .with_ansi(color)
            .with_timer(crate::logs::Stamp)
            .compact()
            .init(),
    }
}

/// Runs the parsed command to its end. The stop token is made here, once, and handed to
/// every command that sends requests, so each honours SIGINT, SIGTERM and SIGHUP the same way.
pub async fn main(cli: Cli) -> ExitCode {
    let stop = signals::watch();
    let code = match cli.command {
        Command::Register(args) => commands::register::run(args, stop).await,
        Command::Emulator(args) => commands::emulator::run(args, stop).await,
        Command::Validate(args) => commands::validate::run(args),
        Command::Export(args) => commands::export::run(args, stop).await,
        Command::Reconcile(args) => commands::reconcile::run(args, stop).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Completions(args) => commands::shell::completions(args),
        Command::Man => commands::shell::man(),
    };
    ExitCode::from(code)
}
