//! The comparison itself, with memory flat whatever the sizes: the file is read once and
//! each usable row is reduced to a 16-byte record (its ICCID key, then its byte offset in
//! the file) for the external sort of [`crate::extsort`]; the account is listed page by
//! page into an anonymous spool file, with the same records. The two sorted streams are
//! then merged by ICCID, and only the one row and the one SIM being compared are read back
//! (by seeking). For each ICCID the file's last row wins, as it does when a run resumes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};

use super::format::Report;
use super::layout::{Layout, WrittenOn};
use super::verdict::{AccountSim, Counts, Verdict, judge};
use crate::api::SimFilter;
use crate::api::gate::Gate;
use crate::api::preflight::{PreflightError, preflight};
use crate::commands::listing::{ListError, export_fields, list_sims};
use crate::extsort::Sorter;
use crate::input::checks::checked_iccid_key;
use crate::results::{Outcome, is_blank_row, not_utf8};

/// A sort record: the ICCID key, then the row's byte offset, both big-endian.
type Record = [u8; 16];

/// Keys from here up stand for the account's SIMs whose ICCID is not a Super SIM's: above
/// every ICCID key (a 20-digit ICCID's is under 2^63 + 2^60), so no file row shares one.
const NOT_A_SUPER_SIM_ICCID: u64 = 0xC000_0000_0000_0000;

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
pub(crate) struct Reconcile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) all: bool,
    /// With `--fleet`: the Fleet's SID. Only the SIMs in it the file does not mention are
    /// extra (with or without `--all`); every SIM of the file is compared wherever it is.
    pub(crate) fleet_sid: Option<&'a str>,
    pub(crate) matches: bool,
    pub(crate) temp_dir: &'a Path,
    /// The account the credentials name, if they do.
    pub(crate) account_sid: Option<&'a str>,
}

impl Reconcile<'_> {
    /// Whether a SIM on the account that the file does not mention is reported: with
    /// `--fleet`, when it is in that Fleet; else with `--all`.
    fn is_extra(&self, fleet_sid: &str) -> bool {
        match self.fleet_sid {
            Some(fleet) => fleet.eq_ignore_ascii_case(fleet_sid),
            None => self.all,
        }
    }

    /// Compares; the report goes to `out`.
    pub(super) async fn run(
        &self,
        gate: &Gate,
        filter: &SimFilter,
        out: &mut Report<'_>,
    ) -> Result<Counts, ListError> {
        let other = ListError::Other;
        let mut counts = Counts::default();
        // The file first: a wrong file is found before any request is made.
        let (layout, file_sorted, written_on) = self.sort_file(&mut counts).map_err(other)?;
        self.check_account(gate, &written_on).await?;
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
        let mut not_an_iccid = 0u64;
        list_sims(gate, filter, |sim| {
            counts.account_sims += 1;
            let fields = export_fields(&sim);
            // Where this SIM starts: everything before it has been handed to `Counting`.
            let offset = spool.get_ref().written;
            // An ICCID that is not a Super SIM's as this tool knows them cannot be in the
            // file; it is still judged only in the merge, once the listing is whole, so a
            // listing given up reports nothing. Each gets a key of its own above every
            // ICCID's, so the merge meets it last and alone.
            let key = checked_iccid_key(fields[1]).unwrap_or_else(|| {
                not_an_iccid += 1;
                NOT_A_SUPER_SIM_ICCID + not_an_iccid
            });
            account.push(record(key, offset))?;
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

    /// Refuses a file written against another account than the one being listed: as on
    /// resume, its rows say nothing true about this one. The account is the one the
    /// credentials name, else the one the preflight learns from a SIM or Fleet; a file
    /// that names no account, or an account that cannot be learned, is compared as it is.
    async fn check_account(&self, gate: &Gate, written_on: &WrittenOn) -> Result<(), ListError> {
        if written_on.0.is_empty() {
            return Ok(());
        }
        let account = match self.account_sid {
            Some(account) => account.to_string(),
            None => match preflight(gate.client()).await {
                Ok(proven) => match proven.account_sid {
                    Some(account) => account,
                    None => return Ok(()),
                },
                Err(PreflightError::CredentialsRefused(refusal)) => {
                    return Err(ListError::CredentialsRefused(refusal));
                }
                Err(error) => return Err(ListError::Other(anyhow::anyhow!("{error}"))),
            },
        };
        match written_on.refusal(self.path, &account) {
            Some(sentence) => Err(ListError::Other(anyhow::anyhow!(sentence))),
            None => Ok(()),
        }
    }

    /// Reads the file once, sorting its usable rows by ICCID, and notes the accounts its
    /// rows were written against.
    fn sort_file(
        &self,
        counts: &mut Counts,
    ) -> anyhow::Result<(Layout, crate::extsort::Sorted<16>, WrittenOn)> {
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
        let mut written_on = WrittenOn::default();
        let mut row = csv::ByteRecord::new();
        let width = headers.len();
        while reader
            .read_byte_record(&mut row)
            .with_context(|| format!("cannot read {shown}"))?
        {
            if is_blank_row(&row) {
                continue;
            }
            // The rows compared are read back as text: one that is not is refused now, as
            // the file it is, not later as a report that cannot be written.
            if row.iter().any(|field| std::str::from_utf8(field).is_err()) {
                let line = row.position().map_or(0, csv::Position::line);
                bail!(not_utf8(&shown.to_string(), line));
            }
            if row.len() < width {
                // A row cut short, as a run killed mid-write leaves one.
                counts.unreadable += 1;
                continue;
            }
            if let Some(account) = layout.account {
                written_on.note(&row[account]);
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
        Ok((layout, sorter.finish()?, written_on))
    }

    fn merge(
        &self,
        layout: Layout,
        file_sorted: crate::extsort::Sorted<16>,
        account_sorted: crate::extsort::Sorted<16>,
        mut spool: File,
        counts: &mut Counts,
        out: &mut Report<'_>,
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
                Some(offset) => Some(layout.row(file_rows.at(offset)?)?),
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
            if verdict == Verdict::Extra
                && !sim
                    .as_ref()
                    .is_some_and(|sim| self.is_extra(&sim.fleet_sid))
            {
                continue;
            }
            counts.add(verdict);
            if verdict != Verdict::Match || self.matches {
                let line = row.as_ref().map(|r| r.line.as_str());
                let iccid = row
                    .as_ref()
                    .map(|r| r.iccid.as_str())
                    .or(sim.as_ref().map(|s| s.iccid.as_str()))
                    .unwrap_or_default();
                let sid = sim
                    .as_ref()
                    .map(|s| s.sid.as_str())
                    .or(row.as_ref().map(|r| r.sid.as_str()))
                    .filter(|s| !s.is_empty());
                out.sim(verdict, line, iccid, sid, &text)?;
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
