//! How the report is written: the text a person reads (one aligned line per SIM listed,
//! then the counts), or JSON Lines for a program (one object per SIM listed, then one
//! `{"summary": {...}}`), each line written as its SIM is judged. Neither ever holds a
//! registration code: the file's code columns are never read.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::verdict::{Counts, Verdict};
use crate::cli::ReportFormat;
use crate::exit;

/// One SIM as the report lists it.
#[derive(Serialize)]
struct SimLine<'a> {
    verdict: &'static str,
    /// The input line the file's row is about; `None` for a SIM only on the account.
    line: Option<u64>,
    iccid: &'a str,
    sid: Option<&'a str>,
    message: &'a str,
}

/// The last JSON line: the counts, what was compared, and the exit code they give.
#[derive(Serialize)]
struct Summary<'a> {
    file: String,
    file_sims: u64,
    account_sims: u64,
    #[serde(rename = "match")]
    matched: u64,
    differ: u64,
    missing: u64,
    not_registered: u64,
    /// `None` when extras were not looked for (neither `--all` nor `--fleet`).
    extra: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<&'a str>,
    skipped: u64,
    /// True when the account matches the file.
    matches: bool,
    exit_code: u8,
}

/// Writes the report in one format.
pub(super) struct Report<'w> {
    pub(super) format: ReportFormat,
    pub(super) out: &'w mut dyn Write,
}

impl Report<'_> {
    /// One SIM: its verdict, the file's line (`-` or empty when none), ICCID, SID and what
    /// differs.
    pub(super) fn sim(
        &mut self,
        verdict: Verdict,
        line: Option<&str>,
        iccid: &str,
        sid: Option<&str>,
        text: &str,
    ) -> std::io::Result<()> {
        match self.format {
            ReportFormat::Text => writeln!(
                self.out,
                "{:<14} line {:<7} {iccid}  {}  {text}",
                verdict.word(),
                line.unwrap_or("-"),
                sid.unwrap_or("-")
            ),
            ReportFormat::Json => {
                let line = SimLine {
                    verdict: verdict.word(),
                    line: line.and_then(|line| line.parse().ok()),
                    iccid,
                    sid,
                    message: text,
                };
                serde_json::to_writer(&mut *self.out, &line)?;
                writeln!(self.out)
            }
        }
    }

    /// The counts, and whether the account matches the file. `extras` is how extras were
    /// looked for: `None` when not at all, `Some(None)` on the whole account, `Some(Some
    /// (fleet))` in that Fleet.
    pub(super) fn counts(
        &mut self,
        path: &Path,
        extras: Option<Option<&str>>,
        counts: &Counts,
    ) -> std::io::Result<()> {
        let matches = counts.exit_code() == exit::SUCCESS;
        if self.format == ReportFormat::Json {
            let summary = Summary {
                file: path.display().to_string(),
                file_sims: counts.file_sims,
                account_sims: counts.account_sims,
                matched: counts.matched,
                differ: counts.differ,
                missing: counts.missing,
                not_registered: counts.not_registered,
                extra: extras.map(|_| counts.extra),
                fleet: extras.flatten(),
                skipped: counts.unreadable,
                matches,
                exit_code: counts.exit_code(),
            };
            serde_json::to_writer(&mut *self.out, &serde_json::json!({ "summary": summary }))?;
            return writeln!(self.out);
        }
        let out = &mut *self.out;
        writeln!(
            out,
            "{}: {} SIMs in the file, {} on the account",
            path.display(),
            counts.file_sims,
            counts.account_sims
        )?;
        writeln!(out, "  match           {}", counts.matched)?;
        writeln!(out, "  differ          {}", counts.differ)?;
        writeln!(out, "  missing         {}", counts.missing)?;
        writeln!(out, "  not registered  {}", counts.not_registered)?;
        match extras {
            Some(Some(fleet)) => {
                writeln!(out, "  extra           {} (in Fleet {fleet})", counts.extra)?
            }
            Some(None) => writeln!(out, "  extra           {}", counts.extra)?,
            None => writeln!(out, "  extra           not checked (pass --all)")?,
        }
        if counts.unreadable > 0 {
            writeln!(
                out,
                "  skipped         {} (rows cut short or without a valid ICCID)",
                counts.unreadable
            )?;
        }
        if matches {
            writeln!(out, "the account matches the file")
        } else {
            writeln!(out, "the account differs from the file")
        }
    }
}
