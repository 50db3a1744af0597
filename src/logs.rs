//! How this process logs, decided once at start-up and read everywhere below: whether the
//! log lines on stderr are JSON, whether they (and the progress bar) may use colour, whether
//! stderr is a terminal, whether `-q` asked for errors only, and the one way anything
//! reaches stderr: [`Stderr`], which drops what cannot be written.
//!
//! Off a terminal every text line starts with an RFC 3339 UTC timestamp and the process id
//! in brackets (`2026-03-02T07:00:01.123456Z [4242]  INFO ...`, `... [4242] error: ...`), so
//! a log file read the morning after says when each line was written and which of several
//! interleaved cron runs wrote it. On a terminal lines keep the shorter human form: the
//! `error:` / `warning:` / `note:` lines bare, tracing's events with their time.
//!
//! While the progress bar is drawn, every write goes through [`indicatif`]'s `suspend`: the
//! bar is wiped, the line written, the bar redrawn below it, so no frozen copy of the bar is
//! left in the scrollback.
//!
//! A closed stderr, or a pipe whose reader went away (`2>&1 | head -2`), is not an error of
//! the run: the run's outcome is in the results file, the summary JSON and the exit code,
//! so log lines that cannot be written are dropped, never a panic (`eprintln!` panics on a
//! broken pipe, so nothing here uses it).
//!
//! A bottom layer, like [`crate::exit`]: `app` sets it, the commands and the run read it.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    /// `--log-format json`.
    pub(crate) json: bool,
    /// Colour on stderr (see [`auto_color`]).
    pub(crate) color: bool,
    /// Standard error is a terminal: a person is watching.
    pub(crate) terminal: bool,
    /// `-q`: errors only.
    pub(crate) quiet: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// The progress bar while it is drawn, for [`Stderr`] to write around.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Records the choice made at start-up; the first call wins.
pub(crate) fn set(style: Style) {
    let _ = STYLE.set(style);
}

/// Whether stderr is a terminal (as decided at start-up).
pub(crate) fn terminal() -> bool {
    STYLE.get().is_some_and(|s| s.terminal)
}

/// Whether a person reads the text logs on a terminal: start lines are one short sentence
/// there, and the whole configuration is logged at debug (`-v`).
pub(crate) fn interactive() -> bool {
    terminal() && !json()
}

/// Whether `-q` asked for errors only: no start line, no progress, no summary text.
pub(crate) fn quiet() -> bool {
    STYLE.get().is_some_and(|s| s.quiet)
}

/// Whether text lines start with a timestamp and the process id: text logs off a terminal.
fn stamped() -> bool {
    STYLE.get().is_none_or(|s| !s.json && !s.terminal)
}

/// Lines written to stderr from now on go around `bar` (see the module's notes); `None`
/// when the bar is finished.
pub(crate) fn draw_around(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// The time, and off a terminal the process id, that start each text log line. Tracing's
/// events get it through [`FormatTime`](tracing_subscriber::fmt::time::FormatTime), the
/// `error:` lines through [`line`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stamp;

impl Stamp {
    fn write(w: &mut impl std::fmt::Write) -> std::fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )?;
        if stamped() {
            write!(w, " [{}]", std::process::id())?;
        }
        Ok(())
    }
}

impl tracing_subscriber::fmt::time::FormatTime for Stamp {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        Stamp::write(w)
    }
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
        let write = || {
            let _ = std::io::stderr().write_all(buf);
        };
        // Cloned out of the lock: `suspend` redraws the bar, which must not wait on it.
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
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

/// One line on stderr, dropped if it cannot be written; off a terminal (text logs) it
/// starts with the timestamp and process id, like every other log line.
pub(crate) fn line(text: impl std::fmt::Display) {
    let mut whole = String::new();
    if stamped() {
        let _ = Stamp::write(&mut whole);
        whole.push(' ');
    }
    // One `write_all` of the whole line, so lines from several threads do not interleave.
    use std::fmt::Write as _;
    let _ = writeln!(whole, "{text}");
    let _ = Stderr.write_all(whole.as_bytes());
}

/// A document on stderr as one line, as it is: never stamped, so whatever reads it (the
/// summary JSON, when its file cannot be written) parses the line whole.
pub(crate) fn document(text: impl std::fmt::Display) {
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

/// A warning, the same way: an event in JSON logs, a plain `warning: …` line otherwise;
/// nothing with `-q`.
pub(crate) fn warning(message: impl std::fmt::Display) {
    if quiet() {
        return;
    }
    if json() {
        tracing::warn!("{message}");
    } else {
        line(format_args!("warning: {message}"));
    }
}

/// A note, the same way (`note: …`, or an `info` event); nothing with `-q`.
pub(crate) fn note(message: impl std::fmt::Display) {
    if quiet() {
        return;
    }
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
