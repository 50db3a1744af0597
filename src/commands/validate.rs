//! The `validate` command: every read and check that `register` does, with no network and no
//! credentials, ending in a report a person can act on.
//!
//! It drives the same [`crate::input::SimReader`], [`Screen`] and [`Plan`] (for repeated ICCIDs) as
//! `register`, so a file that validates is a file that registers. The report starts with counts and then lists each problem as
//! `line N: column: reason`: the first [`SHOWN_PROBLEMS`], then a count of the rest (or all of
//! them with `--all`, spooled to an unlinked temporary file so memory stays flat).
//!
//! It is the read-only command: `--failed-out` may not name its input (by any path, a
//! link included), and replaces only a regular file or a new path, as `register`'s does.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::ValidateArgs;
use crate::exit;
use crate::input::failed_out::FailedOut;
use crate::input::screen::{Problem, Screen, Verdict, locate};
use crate::input::{InputSource, ReadOptions};
use crate::results::EarlierRows;
use crate::run::job::RunError;
use crate::run::plan::{Plan, Replayable};

/// Problem lines printed before the rest are only counted.
pub(crate) const SHOWN_PROBLEMS: usize = 50;

/// The `validate` job, resolved from its flags.
#[derive(Debug, Clone)]
pub(crate) struct ValidateConfig {
    pub(crate) input: InputSource,
    pub(crate) read: ReadOptions,
    pub(crate) strict: bool,
    /// List every problem, not only the first [`SHOWN_PROBLEMS`].
    pub(crate) all: bool,
    pub(crate) failed_out: Option<PathBuf>,
}

/// Rows by what would happen to them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) rows: u64,
    pub(crate) would_send: u64,
    pub(crate) invalid: u64,
    pub(crate) duplicate: u64,
    /// Rows that would be sent with a warning.
    pub(crate) warned: u64,
}

impl Counts {
    /// 0 when every row would be sent (repeats aside), 1 when some are invalid.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.invalid > 0 {
            crate::exit::ROWS_FAILED
        } else {
            crate::exit::SUCCESS
        }
    }
}

/// Problem lines: the first few kept, the rest counted or spooled.
struct ProblemLines {
    shown: Vec<String>,
    all: bool,
    spool: Option<BufWriter<File>>,
    not_shown: u64,
}

impl ProblemLines {
    /// `line N: column: reason`, with `tag` (such as `warning: `) before the reason.
    fn push_problem(&mut self, line: u64, problem: &Problem, tag: &str) -> anyhow::Result<()> {
        self.push(format!(
            "line {line}: {}: {tag}{}",
            problem.column, problem.reason
        ))
    }

    fn push(&mut self, text: String) -> anyhow::Result<()> {
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push(text);
        } else if self.all {
            if self.spool.is_none() {
                self.spool = Some(BufWriter::new(spool_file()?));
            }
            if let Some(spool) = &mut self.spool {
                writeln!(spool, "{text}").context("cannot write the report's spool file")?;
            }
        } else {
            self.not_shown += 1;
        }
        Ok(())
    }
}

/// An anonymous temporary file: created, then unlinked at once, so nothing is left behind.
fn spool_file() -> anyhow::Result<File> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "supersim-bulk-report-{}-{nanos}",
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create a spool file in {}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// Reads and checks the whole input, writes the report to `out`, and returns the counts.
pub(crate) fn check(config: &ValidateConfig, out: &mut dyn Write) -> Result<Counts, RunError> {
    // Temporary files (the plan's sort, a spool of standard input) go to the system's.
    let temp_dir = std::env::temp_dir();
    let setup = RunError::Setup;
    if let Some(failed_out) = &config.failed_out {
        check_failed_out(&config.input, failed_out).map_err(setup)?;
    }
    let input = Replayable::new(&config.input, &temp_dir)?;
    let mut reader = input.open(config.read)?;
    let mut failed_out = match &config.failed_out {
        Some(path) => {
            Some(FailedOut::create(path, reader.header(), reader.delimiter()).map_err(setup)?)
        }
        None => None,
    };
    let screen = Screen::new(config.strict);
    let mut plan = Plan::build(
        input.open(config.read)?,
        screen,
        EarlierRows::none(),
        &temp_dir,
    )?;
    let mut counts = Counts::default();
    let mut lines = ProblemLines {
        shown: Vec::new(),
        all: config.all,
        spool: None,
        not_shown: 0,
    };
    while let Some(row) = reader.next_row() {
        let row = row?;
        if !plan.covers(row.line) {
            // Added to the file since the plan was made: not counted, as if read a moment earlier.
            break;
        }
        let facts = plan
            .at(row.line)
            .context("cannot read the plan back from its temporary file")
            .map_err(setup)?;
        counts.rows += 1;
        match screen.judge(&row, facts.duplicate_of) {
            Verdict::Send { warnings, .. } => {
                counts.would_send += 1;
                if !warnings.is_empty() {
                    counts.warned += 1;
                }
                for warning in &warnings {
                    lines
                        .push_problem(row.line, warning, "warning: ")
                        .map_err(setup)?;
                }
            }
            Verdict::Invalid { problems, .. } => {
                counts.invalid += 1;
                for problem in &problems {
                    lines.push_problem(row.line, problem, "").map_err(setup)?;
                }
                if let Some(failed_out) = &mut failed_out {
                    failed_out
                        .write(&row.fields, &locate(row.line, &problems))
                        .context("cannot write the failed-out file")
                        .map_err(setup)?;
                }
            }
            Verdict::Duplicate { first_line, .. } => {
                counts.duplicate += 1;
                let problem = Verdict::duplicate_problem(first_line);
                lines.push_problem(row.line, &problem, "").map_err(setup)?;
            }
        }
    }
    let failed_out_rows = match failed_out {
        Some(failed_out) => Some(failed_out.finish().map_err(setup)?),
        None => None,
    };
    write_report(
        config,
        reader.display_name(),
        &counts,
        lines,
        failed_out_rows,
        out,
    )
    .context("cannot write the report")
    .map_err(setup)?;
    Ok(counts)
}

/// Refuses a `--failed-out` that would replace the input (it is written beside itself as
/// `PATH.partial` and renamed over `PATH`), or anything but a regular file or a new path.
fn check_failed_out(input: &InputSource, failed_out: &Path) -> anyhow::Result<()> {
    if let InputSource::File(input) = input {
        let partial = FailedOut::partial_path(failed_out);
        for place in [failed_out, partial.as_path()] {
            if crate::paths::same_file(place, input) {
                anyhow::bail!(
                    "--failed-out {} is the input file {}; validate only reads its input: \
                     pass --failed-out with another name",
                    place.display(),
                    input.display()
                );
            }
        }
    }
    FailedOut::check_replaceable(failed_out)
}

fn write_report(
    config: &ValidateConfig,
    name: &str,
    counts: &Counts,
    lines: ProblemLines,
    failed_out_rows: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    writeln!(out, "{name}: {} row{}", counts.rows, plural(counts.rows))?;
    writeln!(out, "  would be sent  {}", counts.would_send)?;
    writeln!(out, "  invalid        {}", counts.invalid)?;
    writeln!(out, "  duplicate      {}", counts.duplicate)?;
    writeln!(out, "  warnings       {}", counts.warned)?;
    for line in &lines.shown {
        writeln!(out, "{line}")?;
    }
    if let Some(spool) = lines.spool {
        let mut file = spool.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        std::io::copy(&mut file, out)?;
    }
    if lines.not_shown > 0 {
        writeln!(
            out,
            "... and {} more problem line{}; pass --all to list every one",
            lines.not_shown,
            plural(lines.not_shown)
        )?;
    }
    if let (Some(path), Some(rows)) = (&config.failed_out, failed_out_rows) {
        writeln!(
            out,
            "failed-out: {} ({rows} row{}, holds registration codes, owner-only)",
            path.display(),
            plural(rows)
        )?;
    }
    // The closing line counts what the list above holds: invalid rows and duplicates.
    let skipped = counts.invalid + counts.duplicate;
    let duplicates = format!("{} duplicate{}", counts.duplicate, plural(counts.duplicate));
    if skipped == 0 {
        writeln!(out, "every row would be sent")?;
    } else if counts.invalid == 0 {
        writeln!(
            out,
            "every row would be sent, {duplicates} aside (a repeated ICCID is sent once, from its first line)"
        )?;
    } else if counts.duplicate == 0 {
        writeln!(
            out,
            "{} invalid row{} would not be sent; fix {} and validate again",
            counts.invalid,
            plural(counts.invalid),
            if counts.invalid == 1 { "it" } else { "them" }
        )?;
    } else {
        writeln!(
            out,
            "{skipped} rows would not be sent ({} invalid, {duplicates}); fix the invalid \
             row{} and validate again",
            counts.invalid,
            plural(counts.invalid)
        )?;
    }
    Ok(())
}

/// `validate`: the report goes to stdout, a file-level error to stderr (exit 2).
pub(crate) fn run(args: ValidateArgs) -> u8 {
    let config = ValidateConfig {
        input: crate::input::InputSource::from_arg(&args.input),
        read: crate::config::read_options(&args.input_options),
        strict: args.input_options.strict,
        all: args.all,
        failed_out: args.input_options.failed_out,
    };
    // At debug level: validate's stderr is for the one sentence of a file-level error.
    tracing::debug!(
        version = env!("CARGO_PKG_VERSION"),
        command = "validate",
        input = %config.input.display_name(),
        pid = std::process::id(),
        "starting"
    );
    // A closed stdout (`validate ... | head`) is no reason to fail: the exit code still
    // says what the report would have.
    match check(&config, &mut super::Stdout::lock()) {
        Ok(counts) => counts.exit_code(),
        Err(error) => {
            crate::logs::error(format_args!("{error}"));
            exit::USAGE_OR_CONFIG
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str, all: bool, strict: bool) -> (String, Counts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sims.csv");
        std::fs::write(&path, text).unwrap();
        let config = ValidateConfig {
            input: InputSource::File(path),
            read: ReadOptions::default(),
            strict,
            all,
            failed_out: None,
        };
        let mut out = Vec::new();
        let counts = check(&config, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), counts)
    }

    #[test]
    fn counts_then_located_problems() {
        let (text, counts) = report(
            "Iccid,RegistrationCode\n\
             89883070000123456780,H3LL0W0RLD\n\
             12345,H3LL0W0RLD\n\
             89883070000123456780,H3LL0W0RLD\n\
             89883070000123456789,h3ll0w0rld\n",
            false,
            false,
        );
        assert_eq!(
            counts,
            Counts {
                rows: 4,
                would_send: 2,
                invalid: 1,
                duplicate: 1,
                warned: 1
            }
        );
        assert_eq!(counts.exit_code(), 1);
        assert!(
            text.contains("line 3: iccid: ICCID must be 19 or 20 digits, found 5\n"),
            "{text}"
        );
        assert!(
            text.contains("line 4: iccid: same ICCID as line 2"),
            "{text}"
        );
        assert!(
            text.contains("line 5: iccid: warning: ICCID check digit"),
            "{text}"
        );
        assert!(
            text.contains("line 5: registration_code: warning: registration code has lowercase"),
            "{text}"
        );
        assert!(
            !text.contains("h3ll0w0rld") && !text.contains("H3LL0W0RLD"),
            "{text}"
        );
        // The closing count covers every row listed as not sent, the duplicate included.
        assert!(
            text.ends_with(
                "2 rows would not be sent (1 invalid, 1 duplicate); fix the invalid row and validate again\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn at_most_fifty_problem_lines_unless_all() {
        let mut input = String::from("Iccid,RegistrationCode\n");
        for n in 0..120 {
            input.push_str(&format!("{n},H3LL0W0RLD\n"));
        }
        let (text, counts) = report(&input, false, false);
        assert_eq!(counts.invalid, 120);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("line ")).count(),
            SHOWN_PROBLEMS
        );
        assert!(
            text.contains("... and 70 more problem lines; pass --all"),
            "{text}"
        );
        let (text, _) = report(&input, true, false);
        assert_eq!(text.lines().filter(|l| l.starts_with("line ")).count(), 120);
        assert!(text.contains("line 121: iccid"), "{text}");
        assert!(!text.contains("more problem"));
    }

    #[test]
    fn strict_turns_warnings_into_invalid_rows() {
        let input = "Iccid,RegistrationCode\n89883070000123456789,H3LL0W0RLD\n";
        assert_eq!(report(input, false, false).1.exit_code(), 0);
        let (text, counts) = report(input, false, true);
        assert_eq!(counts.invalid, 1);
        assert!(text.contains("line 2: iccid: ICCID check digit"), "{text}");
    }
}
