//! How this process logs, decided once at start-up and read everywhere below: whether the
//! log lines on stderr are JSON, whether they (and the progress bar) may use colour, and
//! the one way anything reaches stderr: [`Stderr`], which drops what cannot be written.
//!
//! A closed stderr, or a pipe whose reader went away (`2>&1 | head -2`), is not an error of
//! the run: the run's outcome is in the results file, the summary JSON and the exit code,
//! so log lines that cannot be written are dropped, never a panic (`eprintln!` panics on a
//! broken pipe, so nothing here uses it).
//!
//! A bottom layer, like [`crate::exit`]: `app` sets it, the commands and the run read it.

use std::io::Write;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Style {
    json: bool,
    color: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// Records the choice made at start-up; the first call wins.
pub(crate) fn set(json: bool, color: bool) {
    let _ = STYLE.set(Style { json, color });
}

/// Whether every line on stderr is a JSON object (`--log-format json`).
pub(crate) fn json() -> bool {
    STYLE.get().is_some_and(|s| s.json)
}

/// Whether stderr may carry colour: `--color`, `NO_COLOR`, `TERM=dumb` and a terminal
/// decided it at start-up.
pub(crate) fn color() -> bool {
    STYLE.get().is_some_and(|s| s.color)
}

/// `--color auto`: colour only on a terminal, and not when `NO_COLOR` is set (to anything
/// but the empty string) or `TERM` is `dumb`.
pub(crate) fn auto_color(stderr_is_terminal: bool, env: impl Fn(&str) -> Option<String>) -> bool {
    let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = env("TERM").is_some_and(|v| v == "dumb");
    stderr_is_terminal && !no_color && !dumb
}

/// Standard error for log lines and messages: whatever cannot be written (a closed
/// descriptor, a broken pipe, anything else) is dropped quietly, as if it had been written.
/// Also the `MakeWriter` tracing writes its events with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

/// One line on stderr, dropped if it cannot be written.
pub(crate) fn line(text: impl std::fmt::Display) {
    // One `write_all` of the whole line, so lines from several threads do not interleave.
    let _ = Stderr.write_all(format!("{text}\n").as_bytes());
}

/// A set-up or run error for a person or a log shipper: a tracing `error` event when the
/// logs are JSON (so every stderr line stays one JSON object), else the plain
/// `error: …` line that reads well in a terminal and in cron mail.
pub fn error(message: impl std::fmt::Display) {
    if json() {
        tracing::error!("{message}");
    } else {
        line(format_args!("error: {message}"));
    }
}

/// A warning, the same way: an event in JSON logs, a plain `warning: …` line otherwise.
pub(crate) fn warning(message: impl std::fmt::Display) {
    if json() {
        tracing::warn!("{message}");
    } else {
        line(format_args!("warning: {message}"));
    }
}

/// A note, the same way (`note: …`, or an `info` event).
pub(crate) fn note(message: impl std::fmt::Display) {
    if json() {
        tracing::info!("{message}");
    } else {
        line(format_args!("note: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colour_honours_no_color_and_dumb_terminals() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(auto_color(true, env(&[])));
        assert!(!auto_color(false, env(&[])));
        assert!(!auto_color(true, env(&[("NO_COLOR", "1")])));
        assert!(auto_color(true, env(&[("NO_COLOR", "")])));
        assert!(!auto_color(true, env(&[("TERM", "dumb")])));
    }
}
