//! The `reconcile` command: a results file (or an earlier export) compared with what the
//! account holds now, SIM by SIM.
//!
//! Memory stays flat whatever the sizes: the file is read once and each usable row is
//! reduced to a 16-byte record (its ICCID key, then its byte offset in the file) for the
//! external sort of [`crate::extsort`]; the account is listed page by page into an
//! anonymous spool file, with the same records. The two sorted streams are then merged by
//! ICCID, and only the one row and the one SIM being compared are read back (by seeking).
//! For each ICCID the file's last row wins, as it does when a run resumes.
//!
//! Not done: `--fix`. The update steps a results row still needs depend on the `register`
//! flags of that run (Fleet, status), which the file does not record; re-running `register`
//! with the same flags already repeats exactly the missing steps.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::export::{ListError, export_fields, list_sims};
use crate::api::SimFilter;
use crate::api::gate::Gate;
use crate::cli::ReconcileArgs;
use crate::exit;
use crate::extsort::Sorter;
use crate::input::checks::checked_iccid_key;
use crate::results::{Outcome, PENDING_MESSAGE};

/// A sort record: the ICCID key, then the row's byte offset, both big-endian.
type Record = [u8; 16];

fn record(key: u64, offset: u64) -> Record {
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&key.to_be_bytes());
    record[8..].copy_from_slice(&offset.to_be_bytes());
    record
}

fn split(record: &Record) -> (u64, u64) {
    let mut key = [0u8; 8];
    let mut offset = [0u8; 8];
    key.copy_from_slice(&record[..8]);
    offset.copy_from_slice(&record[8..]);
    (u64::from_be_bytes(key), u64::from_be_bytes(offset))
}

/// What kind of file is being reconciled, and where its columns are.
#[derive(Debug, Clone)]
struct Layout {
    results: bool,
    line: Option<usize>,
    iccid: usize,
    outcome: Option<usize>,
    sid: usize,
    status: usize,
    fleet_sid: usize,
    unique_name: Option<usize>,
    error_message: Option<usize>,
}

impl Layout {
    fn of(headers: &csv::StringRecord, path: &Path) -> anyhow::Result<Layout> {
        let col = |name: &str| headers.iter().position(|h| h == name);
        let names: Vec<&str> = headers.iter().collect();
        let results_start = ["line", "iccid", "outcome"];
        let export = super::export::EXPORT_COLUMNS;
        if names.len() >= 6 && names[..3] == results_start {
            let need = |name| {
                col(name).with_context(|| {
                    format!(
                        "{} is a results file without a `{name}` column",
                        path.display()
                    )
                })
            };
            return Ok(Layout {
                results: true,
                line: col("line"),
                iccid: 1,
                outcome: Some(2),
                sid: need("sid")?,
                status: need("status")?,
                fleet_sid: need("fleet_sid")?,
                unique_name: col("unique_name"),
                error_message: col("error_message"),
            });
        }
        if names == export {
            return Ok(Layout {
                results: false,
                line: None,
                iccid: 1,
                outcome: None,
                sid: 0,
                status: 2,
                fleet_sid: 3,
                unique_name: Some(4),
                error_message: None,
            });
        }
        bail!(
            "{} is neither a results file (a header starting `line,iccid,outcome`) nor an \
             export (`{}`); pass the results file that register wrote",
            path.display(),
            export.join(",")
        )
    }
}

/// How a SIM compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On the account as the file says.
    Match,
    /// On the account, but its status, Fleet, name or SID differ from the file, or the file
    /// says it was not registered.
    Differs,
    /// The file says it is on the account; the account has no SIM with its ICCID.
    Missing,
    /// The file says it was not registered (rejected, gave_up), and the account agrees.
    NotRegistered,
    /// On the account, not in the file (reported with `--all`).
    Extra,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Differs => "differs",
            Verdict::Missing => "missing",
            Verdict::NotRegistered => "not-registered",
            Verdict::Extra => "extra",
        }
    }
}

/// SIMs by verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub file_sims: u64,
    pub account_sims: u64,
    pub matched: u64,
    pub differ: u64,
    pub missing: u64,
    pub not_registered: u64,
    pub extra: u64,
    /// Rows skipped: an ICCID that is not one, or a row cut short.
    pub unreadable: u64,
}

impl Counts {
    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Match => self.matched += 1,
            Verdict::Differs => self.differ += 1,
            Verdict::Missing => self.missing += 1,
            Verdict::NotRegistered => self.not_registered += 1,
            Verdict::Extra => self.extra += 1,
        }
    }

    /// 0 when everything matches, 1 when something differs.
    pub fn exit_code(&self) -> u8 {
        if self.differ + self.missing + self.extra > 0 {
            exit::ROWS_FAILED
        } else {
            exit::SUCCESS
        }
    }
}

/// One row of the file, as compared.
struct FileRow {
    line: String,
    iccid: String,
    outcome: Option<Outcome>,
    sid: String,
    status: String,
    fleet_sid: String,
    unique_name: Option<String>,
    pending: bool,
}

/// One SIM of the account, from the spool (in export column order).
struct AccountSim {
    sid: String,
    iccid: String,
    status: String,
    fleet_sid: String,
    unique_name: String,
}

/// Counts the bytes handed to it; `flush` leaves them in the buffer below, so flushing the
/// CSV writer after each SIM costs no system call.
struct Counting {
    inner: std::io::BufWriter<File>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads single records at byte offsets of a CSV file.
struct Seeker {
    reader: csv::Reader<File>,
    record: csv::StringRecord,
}

impl Seeker {
    fn new(file: File, has_headers: bool) -> Self {
        Seeker {
            reader: csv::ReaderBuilder::new()
                .has_headers(has_headers)
                .flexible(true)
                .buffer_capacity(4096)
                .from_reader(file),
            record: csv::StringRecord::new(),
        }
    }

    fn at(&mut self, offset: u64) -> anyhow::Result<&csv::StringRecord> {
        let mut position = csv::Position::new();
        position.set_byte(offset);
        self.reader.seek(position)?;
        if !self.reader.read_record(&mut self.record)? {
            bail!("a row vanished from the file while it was being compared");
        }
        Ok(&self.record)
    }
}

/// The work of one reconcile.
pub struct Reconcile<'a> {
    pub path: &'a Path,
    pub all: bool,
    pub matches: bool,
    pub temp_dir: &'a Path,
}

impl Reconcile<'_> {
    /// Compares; the report goes to `out`.
    pub async fn run(
        &self,
        gate: &Gate,
        filter: &SimFilter,
        out: &mut dyn Write,
    ) -> Result<Counts, ListError> {
        let other = ListError::Other;
        let mut counts = Counts::default();
        // The file first: a wrong file is found before any request is made.
        let (layout, file_sorted) = self.sort_file(&mut counts).map_err(other)?;
        let spool = Counting {
            inner: std::io::BufWriter::new(
                tempfile::tempfile_in(self.temp_dir)
                    .context("cannot create a spool file")
                    .map_err(other)?,
            ),
            written: 0,
        };
        let mut spool = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(spool);
        let mut account = Sorter::<16>::new(self.temp_dir);
        list_sims(gate, filter, |sim| {
            counts.account_sims += 1;
            let fields = export_fields(&sim);
            // Where this SIM starts: everything before it has been handed to `Counting`.
            let offset = spool.get_ref().written;
            match checked_iccid_key(fields[1]) {
                Some(key) => account.push(record(key, offset))?,
                // Not a Super SIM ICCID as this tool knows them: it cannot be in the file,
                // so it is reported at once rather than sorted.
                None if self.all => {
                    counts.extra += 1;
                    writeln!(
                        out,
                        "{:<14} line -       {}  {}  on the account, not in the file",
                        Verdict::Extra.word(),
                        fields[1],
                        fields[0]
                    )?;
                }
                None => {}
            }
            spool.write_record(fields)?;
            spool.flush().context("cannot write the spool file")?;
            Ok(())
        })
        .await?;
        let spool_file = spool
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write the spool file: {}", e.error()))
            .map_err(other)?
            .inner
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write the spool file: {}", e.error()))
            .map_err(other)?;
        let account_sorted = account
            .finish()
            .context("cannot sort the account's SIMs")
            .map_err(other)?;
        self.merge(
            layout,
            file_sorted,
            account_sorted,
            spool_file,
            &mut counts,
            out,
        )
        .context("cannot write the report")
        .map_err(other)?;
        Ok(counts)
    }

    /// Reads the file once, sorting its usable rows by ICCID.
    fn sort_file(
        &self,
        counts: &mut Counts,
    ) -> anyhow::Result<(Layout, crate::extsort::Sorted<16>)> {
        let shown = self.path.display();
        let file = File::open(self.path).with_context(|| format!("cannot read {shown}"))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(std::io::BufReader::new(file));
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read {shown}"))?
            .clone();
        let layout = Layout::of(&headers, self.path)?;
        let mut sorter = Sorter::<16>::new(self.temp_dir);
        let mut row = csv::ByteRecord::new();
        let width = headers.len();
        while reader
            .read_byte_record(&mut row)
            .with_context(|| format!("cannot read {shown}"))?
        {
            if row.len() < width {
                // A row cut short, as a run killed mid-write leaves one.
                counts.unreadable += 1;
                continue;
            }
            if let Some(outcome) = layout.outcome {
                let word = String::from_utf8_lossy(&row[outcome]);
                let outcome: Outcome = word
                    .parse()
                    .map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?;
                // About an input line, not a SIM.
                if matches!(outcome, Outcome::Invalid | Outcome::Duplicate) {
                    continue;
                }
            }
            let iccid = std::str::from_utf8(&row[layout.iccid]).unwrap_or_default();
            let Some(key) = checked_iccid_key(iccid) else {
                counts.unreadable += 1;
                continue;
            };
            let offset = row.position().map_or(0, |p| p.byte());
            sorter.push(record(key, offset))?;
        }
        Ok((layout, sorter.finish()?))
    }

    fn file_row(&self, layout: &Layout, record: &csv::StringRecord) -> anyhow::Result<FileRow> {
        let get = |i: usize| record.get(i).unwrap_or_default().to_string();
        Ok(FileRow {
            line: match layout.line {
                Some(i) => get(i),
                None => record.position().map_or(0, |p| p.line()).to_string(),
            },
            iccid: get(layout.iccid),
            outcome: match layout.outcome {
                Some(i) => Some(get(i).parse().map_err(|e: String| anyhow::anyhow!(e))?),
                None => None,
            },
            sid: get(layout.sid),
            status: get(layout.status),
            fleet_sid: get(layout.fleet_sid),
            unique_name: layout.unique_name.map(get),
            pending: layout
                .error_message
                .is_some_and(|i| get(i) == PENDING_MESSAGE),
        })
    }

    fn merge(
        &self,
        layout: Layout,
        file_sorted: crate::extsort::Sorted<16>,
        account_sorted: crate::extsort::Sorted<16>,
        mut spool: File,
        counts: &mut Counts,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        spool.seek(SeekFrom::Start(0))?;
        let mut file_rows = Seeker::new(File::open(self.path)?, true);
        let mut account_sims = Seeker::new(spool, false);
        let mut file = Grouped::new(file_sorted);
        let mut account = Grouped::new(account_sorted);
        let mut next_file = file.next()?;
        let mut next_account = account.next()?;
        loop {
            let (file_at, account_at) = match (next_file, next_account) {
                (None, None) => break,
                (Some((fk, fo)), Some((ak, ao))) if fk == ak => (Some(fo), Some(ao)),
                (Some((fk, fo)), Some((ak, _))) if fk < ak => (Some(fo), None),
                (Some((_, fo)), None) => (Some(fo), None),
                (_, Some((_, ao))) => (None, Some(ao)),
            };
            if file_at.is_some() {
                next_file = file.next()?;
                counts.file_sims += 1;
            }
            if account_at.is_some() {
                next_account = account.next()?;
            }
            let row = match file_at {
                Some(offset) => Some(self.file_row(&layout, file_rows.at(offset)?)?),
                None => None,
            };
            let sim = match account_at {
                Some(offset) => {
                    let fields = account_sims.at(offset)?;
                    let get = |i: usize| fields.get(i).unwrap_or_default().to_string();
                    Some(AccountSim {
                        sid: get(0),
                        iccid: get(1),
                        status: get(2),
                        fleet_sid: get(3),
                        unique_name: get(4),
                    })
                }
                None => None,
            };
            let (verdict, text) = judge(layout.results, row.as_ref(), sim.as_ref());
            if verdict == Verdict::Extra && !self.all {
                continue;
            }
            counts.add(verdict);
            if verdict != Verdict::Match || self.matches {
                let line = row.as_ref().map_or("-", |r| r.line.as_str());
                let iccid = row
                    .as_ref()
                    .map(|r| r.iccid.as_str())
                    .or(sim.as_ref().map(|s| s.iccid.as_str()))
                    .unwrap_or_default();
                let sid = sim
                    .as_ref()
                    .map(|s| s.sid.as_str())
                    .or(row.as_ref().map(|r| r.sid.as_str()))
                    .filter(|s| !s.is_empty())
                    .unwrap_or("-");
                writeln!(
                    out,
                    "{:<14} line {line:<7} {iccid}  {sid}  {text}",
                    verdict.word()
                )?;
            }
        }
        Ok(())
    }
}

/// Sorted records grouped by ICCID key: the last (highest) offset of each key.
struct Grouped {
    sorted: std::iter::Peekable<crate::extsort::Sorted<16>>,
}

impl Grouped {
    fn new(sorted: crate::extsort::Sorted<16>) -> Self {
        Grouped {
            sorted: sorted.peekable(),
        }
    }

    fn next(&mut self) -> anyhow::Result<Option<(u64, u64)>> {
        let Some(first) = self.sorted.next() else {
            return Ok(None);
        };
        let (key, mut offset) = split(&first?);
        while let Some(Ok(next)) = self.sorted.peek() {
            let (next_key, next_offset) = split(next);
            if next_key != key {
                break;
            }
            offset = next_offset;
            self.sorted.next();
        }
        if let Some(Err(_)) = self.sorted.peek()
            && let Some(Err(error)) = self.sorted.next()
        {
            return Err(error).context("cannot read the sorted rows back");
        }
        Ok(Some((key, offset)))
    }
}

/// The verdict for one ICCID, and what to say about it.
fn judge(results: bool, row: Option<&FileRow>, sim: Option<&AccountSim>) -> (Verdict, String) {
    let shown = |value: &str| {
        if value.is_empty() {
            "(none)".to_string()
        } else {
            value.to_string()
        }
    };
    match (row, sim) {
        (None, None) => (Verdict::Match, String::new()),
        (None, Some(sim)) => (
            Verdict::Extra,
            format!(
                "on the account (status {}), not in the file",
                shown(&sim.status)
            ),
        ),
        (Some(row), None) => match row.outcome {
            Some(outcome) if !on_account(outcome) => (
                Verdict::NotRegistered,
                format!("the file says {outcome}; the account does not have it either"),
            ),
            Some(outcome) => (
                Verdict::Missing,
                format!("the file says {outcome}; the account has no SIM with this ICCID"),
            ),
            None => (
                Verdict::Missing,
                "in the file; the account has no SIM with this ICCID".to_string(),
            ),
        },
        (Some(row), Some(sim)) => {
            if let Some(outcome) = row.outcome
                && !on_account(outcome)
            {
                return (
                    Verdict::Differs,
                    format!(
                        "the file says {outcome}; the account has it (status {})",
                        shown(&sim.status)
                    ),
                );
            }
            let mut differences = Vec::new();
            let mut compare = |field: &str, file: &str, account: &str| {
                if file != account {
                    differences.push(format!(
                        "{field}: file {}, account {}",
                        shown(file),
                        shown(account)
                    ));
                }
            };
            if !row.sid.is_empty() {
                compare("sid", &row.sid, &sim.sid);
            }
            let status_matches = if results {
                match row.status.as_str() {
                    // Not recorded: nothing to compare.
                    "" => true,
                    // A change was under way: any settled status but `new` is where it went.
                    "scheduled" => sim.status != "new",
                    status => status == sim.status,
                }
            } else {
                row.status == sim.status
            };
            if !status_matches {
                compare("status", &row.status, &sim.status);
            }
            // Only a row that recorded the SIM resource recorded its Fleet.
            if !results || !row.sid.is_empty() {
                compare("fleet_sid", &row.fleet_sid, &sim.fleet_sid);
            }
            if let Some(name) = &row.unique_name {
                compare("unique_name", name, &sim.unique_name);
            }
            if differences.is_empty() {
                (Verdict::Match, "as the file says".to_string())
            } else {
                let mut text = differences.join("; ");
                if row.pending {
                    text.push_str(
                        " (the file's last row is a checkpoint: its update step had not finished)",
                    );
                }
                (Verdict::Differs, text)
            }
        }
    }
}

/// Whether a results outcome says the SIM is on the account.
fn on_account(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Registered | Outcome::AlreadyRegistered | Outcome::UpdateFailed
    )
}

fn write_counts(
    path: &Path,
    all: bool,
    counts: &Counts,
    out: &mut dyn Write,
) -> std::io::Result<()> {
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
    if all {
        writeln!(out, "  extra           {}", counts.extra)?;
    } else {
        writeln!(out, "  extra           not checked (pass --all)")?;
    }
    if counts.unreadable > 0 {
        writeln!(
            out,
            "  skipped         {} (rows cut short or without a valid ICCID)",
            counts.unreadable
        )?;
    }
    if counts.exit_code() == exit::SUCCESS {
        writeln!(out, "the account matches the file")?;
    } else {
        writeln!(out, "the account differs from the file")?;
    }
    Ok(())
}

/// `reconcile`: the report to stdout, errors to stderr.
pub async fn run(args: ReconcileArgs, stop: CancellationToken) -> u8 {
    let config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    super::connect::log_start(
        "reconcile",
        &config.target,
        Some(&args.results.display().to_string()),
    );
    let connected = super::connect::connect(&config.target, config.timeout).await;
    let (client, _emulator) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            crate::logs::error(format_args!("{error:#}"));
            return exit::USAGE_OR_CONFIG;
        }
    };
    let gate = Gate::new(client, config.limits, stop);
    let temp_dir = std::env::temp_dir();
    let reconcile = Reconcile {
        path: &args.results,
        all: args.all,
        matches: args.matches,
        temp_dir: &temp_dir,
    };
    let filter = SimFilter {
        page_size: config.page_size,
        ..SimFilter::default()
    };
    let mut stdout = std::io::stdout().lock();
    match reconcile.run(&gate, &filter, &mut stdout).await {
        Ok(counts) => {
            if let Err(error) = write_counts(&args.results, args.all, &counts, &mut stdout) {
                // The comparison is complete, so the exit code still tells the truth.
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    return counts.exit_code();
                }
                crate::logs::error(format_args!("cannot write the report: {error}"));
                return exit::USAGE_OR_CONFIG;
            }
            counts.exit_code()
        }
        Err(error) => error.report(&config.target),
    }
}
