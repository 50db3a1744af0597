//! The per-line plan: before the main pass over the input, everything that needs to remember
//! ICCIDs across rows (which rows repeat an earlier one, and what earlier runs recorded for
//! each SIM) is worked out on disk, so memory stays flat whatever the size of the input or
//! of the results file.
//!
//! Keeping an in-memory map of the ICCIDs seen and of the results file's rows cost 58 MB for
//! a million SIMs in `validate` and 159 MB to resume a million-row results file. Instead, a
//! sort-merge with fixed-size chunks ([`crate::extsort`]) turns them into facts about input
//! lines, which the main pass reads back in line order with a forward-only cursor:
//!
//! 1. Pass 1 reads the input with the same reader and the same checks as the main pass
//!    ([`Screen::sendable_key`]) and records `(ICCID key, line)` for every row that would be
//!    sent. Sorted, each key's first line is the original and every later line is a
//!    duplicate of it. Invalid rows are never recorded, so they are never a duplicate nor
//!    the original of a later row.
//! 2. The results file's rows are streamed in file order: rows written `invalid` or
//!    `duplicate` become "line already reported" facts; the others are sorted by (key, row
//!    order), so the last row of each ICCID wins, and merge-joined with pass 1's sorted keys
//!    to give the first input line of that ICCID its prior record.
//! 3. The facts are sorted by line and read back by [`Plan::at`] as the rows come.
//!
//! An `invalid` or `duplicate` row is about its line and what was on it, so its fact carries
//! a fingerprint of what the row said: a line that holds another row since is reported
//! again. Pass 1's keys with their first lines are also kept, in key order, for compaction
//! to put each SIM's row on its current line ([`Plan::take_input_sims`]).
//!
//! Pass 1 also fingerprints every row it reads (its line and fields, under a key made fresh
//! for each run) into a temporary file in line order. The main pass checks each row it reads
//! against its fingerprint with [`Plan::matches`] before anything is sent for it, and that
//! no planned row went missing ([`Plan::all_rows_matched`]): an input rewritten under a run
//! stops it, fresh results file or not, so no SIM is posted twice by one run.
//!
//! The one thing kept per SIM in memory is the results file's SIDs, each with its ICCID
//! ([`SidLedger`], 24 bytes a SID): a SID another ICCID's row holds must be caught before
//! the row that would repeat it is written, not at compaction.
//!
//! Pass 1 also gathers the distinct Fleets named in a `fleet` column by rows that would be
//! sent, so they are resolved once before anything is registered (see
//! [`crate::run::fleets`]); past [`MAX_DISTINCT_FLEETS`] it only notes that there are more.
//!
//! Temporary files are anonymous (removed by the operating system when closed, even after a
//! crash) and made in the folder given to [`Plan::build`]: the results file's folder for
//! `register`, the system's temporary folder for `validate`. Standard input cannot be read
//! twice, so [`Replayable`] first spools it to such a file (owner-only: it holds
//! registration codes).

use std::collections::BTreeSet;
use std::fs::File;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::extsort::{Sorted, Sorter};
use crate::input::screen::Screen;
use crate::input::{InputError, InputRow, InputSource, ReadOptions, SimReader};
use crate::results::{EarlierRow, EarlierRows, PackedSim, PriorSim, unpack_sid};
use crate::run::fleets::MAX_DISTINCT_FLEETS;
use crate::run::sids::{SidLedger, iccid_of_key};

/// What the plan knows about one input line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineFacts {
    /// The row's ICCID was first on this earlier line (among rows that would be sent).
    pub duplicate_of: Option<u64>,
    /// What the last `invalid` or `duplicate` row an earlier run wrote for this line said
    /// ([`crate::results::report_key`]), if any.
    pub(crate) reported: Option<u64>,
    /// What the last results row of this row's ICCID recorded (set on the first line of
    /// the ICCID only: a duplicate line is never sent).
    pub(crate) prior: Option<PriorSim>,
    /// The ICCID key pass 1 read on this line, carried with the facts that are about an
    /// ICCID (`duplicate_of`, `prior`), so they are never applied to another row.
    pub(crate) iccid_key: Option<u64>,
}

impl LineFacts {
    /// Everything the last results row of this line's ICCID recorded about the SIM.
    pub(crate) fn sim(&self) -> Option<PriorSim> {
        self.prior.clone()
    }

    /// The outcome an earlier run left for this line's ICCID.
    pub(crate) fn outcome(&self) -> Option<crate::results::Outcome> {
        self.prior.as_ref().map(|p| p.outcome)
    }

    /// True when an earlier run already wrote this line as `invalid` or `duplicate`, saying
    /// what a row of this `content` ([`crate::results::report_key`]) would say now. A line
    /// that holds another row since is reported again.
    pub(crate) fn already_reported(&self, content: u64) -> bool {
        self.reported == Some(content)
    }

    /// False when the row now on this line is not the one pass 1 read there (the input
    /// changed while the run was going): its facts belong to another ICCID.
    pub(crate) fn fit_row(&self, sendable_key: Option<u64>) -> bool {
        self.iccid_key.is_none() || self.iccid_key == sendable_key
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The input could not be read (the main pass would fail the same way).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The results file or a temporary file could not be read or written.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// A fact record: line (8 bytes, big-endian), kind (1), the ICCID key the fact is about
/// (8; for a reported line, what its row said), payload (up to 36; for a reported line, the
/// row's order in the results file, so the last one counts).
const FACT: usize = 17 + PackedSim::BYTES;
const DUPLICATE: u8 = 0;
const REPORTED: u8 = 1;
const PRIOR: u8 = 2;

/// A pass-1 record: ICCID key, then line, both big-endian.
const FIRST: usize = 16;
/// A results record: ICCID key, row number in the file, then the packed SIM.
const SIM: usize = 16 + PackedSim::BYTES;

fn fact(line: u64, kind: u8, key: u64, payload: &[u8]) -> [u8; FACT] {
    let mut record = [0u8; FACT];
    record[..8].copy_from_slice(&line.to_be_bytes());
    record[8] = kind;
    record[9..17].copy_from_slice(&key.to_be_bytes());
    record[17..17 + payload.len()].copy_from_slice(payload);
    record
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// The fingerprint of every row pass 1 read, in line order, for the main pass to check its
/// rows against. Keyed afresh for each run: the file, though anonymous and owner-only,
/// never holds anything from which a registration code could be worked out.
struct Fingerprints {
    key: RandomState,
    /// `(line, fingerprint)` records, both big-endian, read back once in order.
    read: BufReader<File>,
}

/// A fingerprint record: line, then fingerprint.
const PRINT: usize = 16;

fn fingerprint(key: &RandomState, row: &InputRow) -> u64 {
    let mut hasher = key.build_hasher();
    hasher.write_u64(row.line);
    for field in row.fields.iter() {
        hasher.write_usize(field.len());
        hasher.write(field);
    }
    hasher.finish()
}

impl Fingerprints {
    /// The next planned `(line, fingerprint)`, `None` once every planned row was read.
    fn next(&mut self) -> io::Result<Option<(u64, u64)>> {
        let mut record = [0u8; PRINT];
        match self.read.read_exact(&mut record) {
            Ok(()) => Ok(Some((u64_at(&record, 0), u64_at(&record, 8)))),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Every ICCID the input would send, with the line it is first on, in key order: what
/// compaction needs to put each SIM's row on its current line (see
/// [`crate::results::compact`]). Read from an anonymous temporary file, once.
pub(crate) struct InputSims {
    read: BufReader<File>,
}

impl Iterator for InputSims {
    type Item = io::Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = [0u8; FIRST];
        match self.read.read_exact(&mut record) {
            Ok(()) => Some(Ok((u64_at(&record, 0), u64_at(&record, 8)))),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// The facts of every input line that has any, read in line order.
pub struct Plan {
    facts: Peekable<Sorted<FACT>>,
    fingerprints: Fingerprints,
    /// Taken by [`Plan::take_input_sims`] for compaction.
    input_sims: Option<InputSims>,
    /// The Fleet SIDs that packed prior records index into.
    fleets: Vec<String>,
    /// Rows in the results file.
    pub(crate) earlier_rows: u64,
    /// The accounts the results file's rows were written against (one, in a sound file).
    pub(crate) earlier_accounts: Vec<String>,
    /// The SIDs the results file's rows hold, each with its ICCID: taken by the run, which
    /// records no SID for an ICCID when another ICCID's row holds it.
    pub(crate) earlier_sids: SidLedger,
    /// Input rows seen by pass 1.
    pub(crate) rows: u64,
    /// The distinct ICCIDs of rows that would be sent that the results file has no row for:
    /// SIMs this run sends for the first time.
    pub(crate) new_sims: u64,
    /// The line of the last input row pass 1 saw. Rows after it (appended to the file since)
    /// are not planned, so the main pass leaves them to the next run.
    pub(crate) last_line: Option<u64>,
    /// The distinct `fleet` cells of rows that would be sent, at most
    /// [`MAX_DISTINCT_FLEETS`] of them.
    pub(crate) fleet_names: BTreeSet<String>,
    /// True when rows name more than [`MAX_DISTINCT_FLEETS`] distinct Fleets.
    pub(crate) too_many_fleets: bool,
}

impl Plan {
    /// Reads the input once (pass 1) and the results file's earlier rows, and sorts their
    /// facts by line, with temporary files in `dir`.
    pub fn build(
        mut reader: SimReader,
        screen: Screen,
        earlier: EarlierRows,
        dir: &Path,
    ) -> Result<Plan, PlanError> {
        Self::build_from_rows(
            std::iter::from_fn(|| reader.next_row()),
            screen,
            earlier,
            dir,
            None,
        )
    }

    /// [`Plan::build`] over any rows in line order; `chunk_records` overrides the sort's chunk
    /// size (tests use tiny chunks to exercise the merge).
    pub(crate) fn build_from_rows(
        rows: impl Iterator<Item = Result<InputRow, InputError>>,
        screen: Screen,
        mut earlier: EarlierRows,
        dir: &Path,
        chunk_records: Option<usize>,
    ) -> Result<Plan, PlanError> {
        fn sorter<const N: usize>(dir: &Path, chunk: Option<usize>) -> Sorter<N> {
            match chunk {
                Some(records) => Sorter::with_chunk_records(dir, records),
                None => Sorter::new(dir),
            }
        }
        let temp = |e: io::Error| {
            PlanError::Other(anyhow::Error::new(e).context(format!(
                "cannot use temporary files in {} to plan the run",
                dir.display()
            )))
        };

        // Pass 1: the key and line of every row that would be sent, and every row's
        // fingerprint.
        let mut firsts = sorter::<FIRST>(dir, chunk_records);
        let print_key = RandomState::new();
        let mut prints = BufWriter::new(tempfile::tempfile_in(dir).map_err(temp)?);
        let mut rows_seen = 0;
        let mut last_line = None;
        let mut fleet_names = BTreeSet::new();
        let mut too_many_fleets = false;
        for row in rows {
            let row = row?;
            rows_seen += 1;
            last_line = Some(row.line);
            let mut print = [0u8; PRINT];
            print[..8].copy_from_slice(&row.line.to_be_bytes());
            print[8..].copy_from_slice(&fingerprint(&print_key, &row).to_be_bytes());
            prints.write_all(&print).map_err(temp)?;
            if let Some(key) = screen.sendable_key(&row) {
                if let Some(fleet) = row.fleet.as_deref().filter(|f| !f.is_empty())
                    && !fleet_names.contains(fleet)
                {
                    if fleet_names.len() < MAX_DISTINCT_FLEETS {
                        fleet_names.insert(fleet.to_string());
                    } else {
                        too_many_fleets = true;
                    }
                }
                let mut record = [0u8; FIRST];
                record[..8].copy_from_slice(&key.to_be_bytes());
                record[8..].copy_from_slice(&row.line.to_be_bytes());
                firsts.push(record).map_err(temp)?;
            }
        }

        let mut prints = prints.into_inner().map_err(|e| temp(e.into_error()))?;
        prints.seek(SeekFrom::Start(0)).map_err(temp)?;
        let fingerprints = Fingerprints {
            key: print_key,
            read: BufReader::new(prints),
        };

        // The results file, in file order.
        let mut facts = sorter::<FACT>(dir, chunk_records);
        let mut sims = sorter::<SIM>(dir, chunk_records);
        let mut order = 0u64;
        let mut earlier_sids = SidLedger::default();
        while let Some(row) = earlier.next_row()? {
            match row {
                EarlierRow::Reported { line, content } => facts
                    .push(fact(line, REPORTED, content, &earlier.rows.to_be_bytes()))
                    .map_err(temp)?,
                EarlierRow::Sim { key, sim } => {
                    if let Some(sid) = sim.sid() {
                        earlier_sids.note_earlier(sid, key);
                    }
                    let mut record = [0u8; SIM];
                    record[..8].copy_from_slice(&key.to_be_bytes());
                    record[8..16].copy_from_slice(&order.to_be_bytes());
                    record[16..].copy_from_slice(&sim.to_bytes());
                    sims.push(record).map_err(temp)?;
                    order += 1;
                }
                EarlierRow::Unmatched => {}
            }
        }
        let earlier_rows = earlier.rows;
        let results = earlier.path().to_string();
        let earlier_accounts = std::mem::take(&mut earlier.accounts);
        let fleets = earlier.into_fleets();

        // Merge-join by key: duplicates, and each ICCID's prior record on its first line.
        let mut latest = LatestPerKey {
            sorted: sims.finish().map_err(temp)?.peekable(),
            two_sids: None,
        };
        let mut next_sim = latest.next().map_err(temp)?;
        let mut group: Option<(u64, u64)> = None;
        let mut new_sims = 0;
        let mut input_sims = BufWriter::new(tempfile::tempfile_in(dir).map_err(temp)?);
        for record in firsts.finish().map_err(temp)? {
            let record = record.map_err(temp)?;
            let (key, line) = (u64_at(&record, 0), u64_at(&record, 8));
            match group {
                Some((group_key, first_line)) if group_key == key => {
                    facts
                        .push(fact(line, DUPLICATE, key, &first_line.to_be_bytes()))
                        .map_err(temp)?;
                }
                _ => {
                    group = Some((key, line));
                    input_sims.write_all(&record).map_err(temp)?;
                    while next_sim.is_some_and(|(sim_key, _)| sim_key < key) {
                        next_sim = latest.next().map_err(temp)?;
                    }
                    if let Some((sim_key, sim)) = next_sim
                        && sim_key == key
                    {
                        facts.push(fact(line, PRIOR, key, &sim)).map_err(temp)?;
                    } else {
                        new_sims += 1;
                    }
                }
            }
        }
        // The keys after the input's last are read too: the rounded ICCIDs that name two
        // SIDs are seldom any input row's.
        while next_sim.is_some() {
            next_sim = latest.next().map_err(temp)?;
        }
        if let Some((key, held, other)) = latest.two_sids {
            return Err(PlanError::Other(anyhow::anyhow!(
                "{results} holds two SIDs for ICCID {iccid} ({first} and {second}), and a \
                 SIM has only one: the file's ICCIDs were changed since the tool wrote them, \
                 most often by a spreadsheet that read them as numbers and kept 15 digits (the \
                 rest written as zeros). Nothing was sent. Put the file back as the tool wrote \
                 it, or pass -o (--output) with a new file name (SIMs already registered then \
                 come back already_registered)",
                iccid = iccid_of_key(key),
                first = unpack_sid(&held),
                second = unpack_sid(&other),
            )));
        }
        drop(latest);
        let mut input_sims = input_sims.into_inner().map_err(|e| temp(e.into_error()))?;
        input_sims.seek(SeekFrom::Start(0)).map_err(temp)?;

        Ok(Plan {
            facts: facts.finish().map_err(temp)?.peekable(),
            fingerprints,
            input_sims: Some(InputSims {
                read: BufReader::new(input_sims),
            }),
            fleets,
            earlier_rows,
            earlier_accounts,
            earlier_sids,
            rows: rows_seen,
            new_sims,
            last_line,
            fleet_names,
            too_many_fleets,
        })
    }

    /// The facts of input line `line`. Lines must be asked for in increasing order; facts of
    /// lines skipped over are dropped.
    pub fn at(&mut self, line: u64) -> io::Result<LineFacts> {
        let mut facts = LineFacts::default();
        let mut last_reported = 0u64;
        loop {
            let record = match self.facts.peek() {
                None => break,
                Some(Ok(record)) => *record,
                Some(Err(_)) => match self.facts.next() {
                    Some(Err(error)) => return Err(error),
                    _ => unreachable!("peeked an error"),
                },
            };
            let fact_line = u64_at(&record, 0);
            if fact_line > line {
                break;
            }
            self.facts.next();
            if fact_line < line {
                continue;
            }
            match record[8] {
                DUPLICATE => {
                    facts.duplicate_of = Some(u64_at(&record, 17));
                    facts.iccid_key = Some(u64_at(&record, 9));
                }
                REPORTED => {
                    let order = u64_at(&record, 17);
                    if facts.reported.is_none() || order >= last_reported {
                        last_reported = order;
                        facts.reported = Some(u64_at(&record, 9));
                    }
                }
                PRIOR => {
                    let mut packed = [0u8; PackedSim::BYTES];
                    packed.copy_from_slice(&record[17..]);
                    facts.prior = Some(PackedSim::from_bytes(&packed).unpack(&self.fleets));
                    facts.iccid_key = Some(u64_at(&record, 9));
                }
                _ => {}
            }
        }
        Ok(facts)
    }

    /// The input's ICCIDs and their first lines, for compaction once the run ends.
    pub(crate) fn take_input_sims(&mut self) -> Option<InputSims> {
        self.input_sims.take()
    }

    /// True when `row` is the row pass 1 read next: same line, same fields. Rows must be
    /// given in the order they are read, each once (a row after [`Plan::covers`] is not).
    pub(crate) fn matches(&mut self, row: &InputRow) -> io::Result<bool> {
        Ok(match self.fingerprints.next()? {
            Some((line, print)) => {
                line == row.line && print == fingerprint(&self.fingerprints.key, row)
            }
            None => false,
        })
    }

    /// At the end of the main pass: true when every row pass 1 read was matched; else the
    /// line of the first planned row that was not read again (the input shrank).
    pub(crate) fn all_rows_matched(&mut self) -> io::Result<Result<(), u64>> {
        Ok(match self.fingerprints.next()? {
            Some((line, _)) => Err(line),
            None => Ok(()),
        })
    }

    /// False for a row after the last one pass 1 saw.
    pub(crate) fn covers(&self, line: u64) -> bool {
        self.last_line.is_some_and(|last| line <= last)
    }
}

/// The last (by row order) packed SIM of each key of a sorted stream of results records.
struct LatestPerKey {
    sorted: Peekable<Sorted<SIM>>,
    /// The first ICCID key whose rows name two different SIDs, with both. A SIM has one
    /// SID, and a run never records another for an ICCID its file holds: such a file was
    /// changed since (ICCIDs a spreadsheet rounded to 15 digits).
    two_sids: Option<(u64, [u8; 16], [u8; 16])>,
}

impl LatestPerKey {
    fn next(&mut self) -> io::Result<Option<(u64, [u8; PackedSim::BYTES])>> {
        let Some(first) = self.sorted.next().transpose()? else {
            return Ok(None);
        };
        let key = u64_at(&first, 0);
        let sid_of = |record: &[u8; SIM]| {
            let mut sim = [0u8; PackedSim::BYTES];
            sim.copy_from_slice(&record[16..]);
            PackedSim::from_bytes(&sim).sid()
        };
        let mut sid = sid_of(&first);
        let mut last = first;
        while let Some(Ok(record)) = self.sorted.peek() {
            if u64_at(record, 0) != key {
                break;
            }
            if let (Some(held), Some(other)) = (sid, sid_of(record))
                && held != other
                && self.two_sids.is_none()
            {
                self.two_sids = Some((key, held, other));
            }
            sid = sid.or(sid_of(record));
            last = *record;
            self.sorted.next();
        }
        if let Some(Err(_)) = self.sorted.peek()
            && let Some(Err(error)) = self.sorted.next()
        {
            return Err(error);
        }
        let mut sim = [0u8; PackedSim::BYTES];
        sim.copy_from_slice(&last[16..]);
        Ok(Some((key, sim)))
    }
}

/// The input, readable twice: a file by its path, standard input (or a path that is a pipe,
/// such as `/dev/stdin` or `<(...)`) through a spool file.
pub(crate) enum Replayable {
    File(InputSource),
    /// Standard input or a pipe, copied to an anonymous owner-only temporary file, with the
    /// name messages give it.
    Spool {
        file: File,
        name: String,
    },
}

impl Replayable {
    /// Spools standard input, or a path that is not a regular file (a pipe, a device: read
    /// twice, the second read would find it drained), into `dir`; a file needs nothing.
    pub(crate) fn new(source: &InputSource, dir: &Path) -> Result<Replayable, PlanError> {
        let name = source.display_name();
        let mut stream: Box<dyn Read> = match source {
            InputSource::File(_) if !source.reads_once() => {
                return Ok(Replayable::File(source.clone()));
            }
            InputSource::File(path) => {
                Box::new(File::open(path).map_err(|source| InputError::Io {
                    path: name.clone(),
                    source,
                })?)
            }
            InputSource::Stdin => Box::new(io::stdin().lock()),
        };
        let mut spool = tempfile::tempfile_in(dir).with_context(|| {
            format!(
                "cannot make a temporary file in {} for {name}",
                dir.display()
            )
        })?;
        io::copy(&mut stream, &mut spool).map_err(|source| InputError::Io {
            path: name.clone(),
            source,
        })?;
        Ok(Replayable::Spool { file: spool, name })
    }

    /// A reader from the start of the input. Readers of a spool keep their own position,
    /// so two may be open at once (used one after the other, not from two threads at once).
    pub(crate) fn open(&self, options: ReadOptions) -> Result<SimReader, InputError> {
        match self {
            Replayable::File(source) => SimReader::open(source, options),
            Replayable::Spool { file, name } => {
                let file = file.try_clone().map_err(|source| InputError::Io {
                    path: name.clone(),
                    source,
                })?;
                SimReader::from_reader(Box::new(SpoolReader { file, at: 0 }), name.clone(), options)
            }
        }
    }
}

/// Reads a spool file from its own position, whatever other handles of it did meanwhile.
struct SpoolReader {
    file: File,
    at: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.seek(SeekFrom::Start(self.at))?;
        let read = self.file.read(buf)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// Where `register` makes its temporary files: beside the results file.
pub(crate) fn temp_dir_beside(results: &Path) -> PathBuf {
    match results.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests;
