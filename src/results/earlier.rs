//! The results CSV: its columns and outcome words (a contract scripts rely on), the writer
//! that appends one whole, flushed row per SIM, and the stream of earlier rows that lets a
//! second run resume from what the first one wrote (matched to input lines by
//! [`crate::plan`], on disk, so a million earlier rows are never held in memory).
//!
//! The file is append-only. A run never rewrites earlier rows; for each ICCID the last row
//! wins. If the previous run died in the middle of a row, the torn tail is cut off before
//! anything is appended, so the file stays a valid CSV.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::input::checks::checked_iccid_key;

/// The results columns, in order. New columns are only ever added at the end.
pub const COLUMNS: [&str; 12] = [
    "line",
    "iccid",
    "outcome",
    "sid",
    "status",
    "fleet_sid",
    "error_code",
    "error_message",
    "http_status",
    "attempts",
    "finished_at",
    "warning",
];

/// Columns of a results file written before `warning` was added. Resuming such a file keeps
/// writing its 11 columns, so it stays a valid CSV (the warnings still reach the log).
const COLUMNS_BEFORE_WARNING: usize = 11;

/// How a row ended. The words are part of the results-file contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Registered,
    AlreadyRegistered,
    Rejected,
    Invalid,
    Duplicate,
    GaveUp,
    UpdateFailed,
}

impl Outcome {
    /// In contract order; new outcomes go at the end so counts indexed by outcome stay put.
    pub const ALL: [Outcome; 7] = [
        Outcome::Registered,
        Outcome::AlreadyRegistered,
        Outcome::Rejected,
        Outcome::Invalid,
        Outcome::Duplicate,
        Outcome::GaveUp,
        Outcome::UpdateFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Registered => "registered",
            Outcome::AlreadyRegistered => "already_registered",
            Outcome::Rejected => "rejected",
            Outcome::Invalid => "invalid",
            Outcome::Duplicate => "duplicate",
            Outcome::GaveUp => "gave_up",
            Outcome::UpdateFailed => "update_failed",
        }
    }

    /// True when the SIM is on the account: nothing more to do for it.
    pub fn is_done(self) -> bool {
        matches!(self, Outcome::Registered | Outcome::AlreadyRegistered)
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == word)
            .ok_or_else(|| format!("unknown outcome {word:?}"))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One results row. Field order is [`COLUMNS`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub line: u64,
    pub iccid: String,
    pub outcome: Outcome,
    pub sid: Option<String>,
    pub status: Option<String>,
    pub fleet_sid: Option<String>,
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub finished_at: String,
    /// Soft check warnings (Luhn, ICCID prefix, lowercase code); the row was still sent.
    pub warning: Option<String>,
}

impl ResultRow {
    /// A row with only its identity and outcome filled in; the caller sets the rest.
    pub fn new(line: u64, iccid: impl Into<String>, outcome: Outcome) -> Self {
        ResultRow {
            line,
            iccid: iccid.into(),
            outcome,
            sid: None,
            status: None,
            fleet_sid: None,
            error_code: None,
            error_message: None,
            http_status: None,
            attempts: 0,
            finished_at: now_rfc3339(),
            warning: None,
        }
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What the `error_message` of a checkpoint row says: the SIM is registered and an update
/// step follows. A run writes it before the update request, so a crash between the two
/// steps leaves a row that lets the next run skip straight to the update.
pub const PENDING_MESSAGE: &str = "registered; the update step has not finished yet";

/// A SIM status as the results record it, in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum SimStatus {
    /// Not recorded (the row carries no status).
    #[default]
    Unknown,
    New,
    Ready,
    Active,
    Inactive,
    Scheduled,
    /// A word this version does not know; never equal to a status it asks for.
    Other,
}

impl SimStatus {
    pub fn parse(word: &str) -> SimStatus {
        match word {
            "" => SimStatus::Unknown,
            "new" => SimStatus::New,
            "ready" => SimStatus::Ready,
            "active" => SimStatus::Active,
            "inactive" => SimStatus::Inactive,
            "scheduled" => SimStatus::Scheduled,
            _ => SimStatus::Other,
        }
    }
}

/// What the last row of an ICCID says about the SIM, as resuming needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorSim {
    pub outcome: Outcome,
    pub sid: Option<String>,
    pub status: SimStatus,
    pub fleet_sid: Option<String>,
    /// The row is a checkpoint ([`PENDING_MESSAGE`]): the update step had not finished.
    pub pending: bool,
}

/// [`PriorSim`] packed into 24 bytes: a results file of a million SIMs must load in a few
/// tens of megabytes, so no `String` is kept per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedSim {
    /// The SID's 32 hex digits as bytes; meaningful only with [`HAS_SID`].
    sid: [u8; 16],
    /// 1 + index into the results file's table of Fleet SIDs; 0 for no Fleet.
    fleet: u32,
    outcome: Outcome,
    status: SimStatus,
    flags: u8,
}

const HAS_SID: u8 = 1;
const PENDING: u8 = 2;

/// `HS` + 32 hex digits as 16 bytes; `None` for anything else.
fn pack_sid(sid: &str) -> Option<[u8; 16]> {
    let hex = sid.strip_prefix("HS").filter(|h| h.len() == 32)?;
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

fn unpack_sid(bytes: &[u8; 16]) -> String {
    let mut sid = String::with_capacity(34);
    sid.push_str("HS");
    for byte in bytes {
        sid.push_str(&format!("{byte:02x}"));
    }
    sid
}

impl PackedSim {
    /// Bytes in [`PackedSim::to_bytes`], for the resume plan's sort records.
    pub const BYTES: usize = 24;

    /// Packs what a results row says about its SIM, interning its Fleet SID in `fleets`.
    fn from_row(outcome: Outcome, sim: &RowSim<'_>, fleets: &mut Fleets) -> PackedSim {
        let sid = pack_sid(sim.sid);
        let fleet = if sim.fleet_sid.is_empty() {
            0
        } else {
            fleets.intern(sim.fleet_sid)
        };
        let mut flags = 0;
        if sid.is_some() {
            flags |= HAS_SID;
        }
        if sim.message == PENDING_MESSAGE {
            flags |= PENDING;
        }
        PackedSim {
            sid: sid.unwrap_or_default(),
            fleet,
            outcome,
            status: SimStatus::parse(sim.status),
            flags,
        }
    }

    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut bytes = [0u8; Self::BYTES];
        bytes[..16].copy_from_slice(&self.sid);
        bytes[16..20].copy_from_slice(&self.fleet.to_be_bytes());
        bytes[20] = Outcome::ALL
            .iter()
            .position(|&o| o == self.outcome)
            .unwrap_or_default() as u8;
        bytes[21] = self.status as u8;
        bytes[22] = self.flags;
        bytes
    }

    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> PackedSim {
        const STATUSES: [SimStatus; 7] = [
            SimStatus::Unknown,
            SimStatus::New,
            SimStatus::Ready,
            SimStatus::Active,
            SimStatus::Inactive,
            SimStatus::Scheduled,
            SimStatus::Other,
        ];
        let mut sid = [0u8; 16];
        sid.copy_from_slice(&bytes[..16]);
        let mut fleet = [0u8; 4];
        fleet.copy_from_slice(&bytes[16..20]);
        PackedSim {
            sid,
            fleet: u32::from_be_bytes(fleet),
            outcome: Outcome::ALL[usize::from(bytes[20]) % Outcome::ALL.len()],
            status: STATUSES[usize::from(bytes[21]) % STATUSES.len()],
            flags: bytes[22],
        }
    }

    /// The [`PriorSim`] this packs; `fleets` is the table it was packed with.
    pub fn unpack(&self, fleets: &[String]) -> PriorSim {
        PriorSim {
            outcome: self.outcome,
            sid: (self.flags & HAS_SID != 0).then(|| unpack_sid(&self.sid)),
            status: self.status,
            fleet_sid: self
                .fleet
                .checked_sub(1)
                .and_then(|i| fleets.get(i as usize).cloned()),
            pending: self.flags & PENDING != 0,
        }
    }
}

/// Every Fleet SID seen in a results file, once: a run uses a handful, so packed rows keep a
/// small index instead of the SID.
#[derive(Debug, Default)]
struct Fleets {
    sids: Vec<String>,
    index: HashMap<String, u32>,
}

impl Fleets {
    /// 1 + the SID's index in the table.
    fn intern(&mut self, fleet_sid: &str) -> u32 {
        if let Some(&index) = self.index.get(fleet_sid) {
            return index;
        }
        self.sids.push(fleet_sid.to_string());
        let index = self.sids.len() as u32;
        self.index.insert(fleet_sid.to_string(), index);
        index
    }
}

/// One row an earlier run wrote, as resuming needs it.
#[derive(Debug, Clone, Copy)]
pub enum EarlierRow {
    /// The input line was written `invalid` or `duplicate`: a re-run does not repeat it.
    Reported { line: u64 },
    /// The latest news of a SIM (when it is the last row with this ICCID key).
    Sim { key: u64, sim: PackedSim },
    /// A row about an ICCID that no input row could send (it fails the hard checks).
    Unmatched,
}

/// The rows an earlier run wrote, read once, in file order, by the resume plan; nothing of
/// them is kept in memory but the table of Fleet SIDs.
pub struct EarlierRows {
    reader: Option<csv::Reader<BufReader<File>>>,
    record: csv::StringRecord,
    fleets: Fleets,
    /// For error messages.
    path: String,
    /// Rows read so far.
    pub rows: u64,
}

impl EarlierRows {
    /// No earlier rows: a new results file.
    pub fn none() -> Self {
        EarlierRows {
            reader: None,
            record: csv::StringRecord::new(),
            fleets: Fleets::default(),
            path: String::new(),
            rows: 0,
        }
    }

    /// The next row, in file order.
    pub fn next_row(&mut self) -> anyhow::Result<Option<EarlierRow>> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        let read = reader
            .read_record(&mut self.record)
            .with_context(|| format!("cannot resume from {}", self.path))?;
        if !read {
            return Ok(None);
        }
        self.rows += 1;
        let record = &self.record;
        let line_no = record.position().map_or(0, |p| p.line());
        let context = || format!("cannot resume from {}: row at line {line_no}", self.path);
        let line: u64 = record[0]
            .parse()
            .with_context(|| format!("{}: it has no input line number", context()))?;
        let outcome: Outcome = record[2]
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?;
        if matches!(outcome, Outcome::Invalid | Outcome::Duplicate) {
            return Ok(Some(EarlierRow::Reported { line }));
        }
        let Some(key) = checked_iccid_key(&record[1]) else {
            return Ok(Some(EarlierRow::Unmatched));
        };
        let sim = RowSim {
            sid: &record[3],
            status: &record[4],
            fleet_sid: &record[5],
            message: &record[7],
        };
        let sim = PackedSim::from_row(outcome, &sim, &mut self.fleets);
        Ok(Some(EarlierRow::Sim { key, sim }))
    }

    /// The Fleet SIDs the packed rows index into.
    pub fn into_fleets(self) -> Vec<String> {
        self.fleets.sids
    }
}

/// The columns of a results row that describe the SIM, borrowed from the CSV record.
#[derive(Default)]
struct RowSim<'a> {
    sid: &'a str,
    status: &'a str,
    fleet_sid: &'a str,
    message: &'a str,
}

/// Appends rows to the results file, one whole row per write, flushed at once.
pub struct ResultsWriter {
    csv: csv::Writer<BufWriter<File>>,
    /// How many of [`COLUMNS`] the file has: all of them, or the older 11.
    columns: usize,
}

impl ResultsWriter {
    /// Opens (or creates) the results file, repairs a torn last row, checks its header, and
    /// positions the writer at its end. The rows already in it are handed back as a stream
    /// (read once by the resume plan), not loaded.
    pub fn open(path: &Path) -> anyhow::Result<(ResultsWriter, EarlierRows)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open results file {}", path.display()))?;
        let kept = repair_torn_tail(&mut file)
            .with_context(|| format!("cannot repair results file {}", path.display()))?;
        let (earlier, columns) = if kept == 0 {
            (EarlierRows::none(), COLUMNS.len())
        } else {
            let reading = File::open(path)
                .with_context(|| format!("cannot open results file {}", path.display()))?;
            earlier_rows(reading, path)
                .with_context(|| format!("cannot resume from {}", path.display()))?
        };
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(file));
        if kept == 0 {
            csv.write_record(COLUMNS)?;
            csv.flush()?;
        }
        Ok((ResultsWriter { csv, columns }, earlier))
    }

    /// Writes one row and flushes it to the operating system.
    pub fn write(&mut self, row: &ResultRow) -> std::io::Result<()> {
        let written = if self.columns == COLUMNS_BEFORE_WARNING {
            self.csv.serialize((
                row.line,
                &row.iccid,
                row.outcome,
                &row.sid,
                &row.status,
                &row.fleet_sid,
                row.error_code,
                &row.error_message,
                row.http_status,
                row.attempts,
                &row.finished_at,
            ))
        } else {
            self.csv.serialize(row)
        };
        written.map_err(std::io::Error::other)?;
        self.csv.flush()
    }

    /// Flushes and asks the OS to put the rows on disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.csv.flush()?;
        self.csv.get_ref().get_ref().sync_data()
    }
}

/// Cuts the file back to its last complete line. Returns the length kept.
fn repair_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Read backwards in blocks until a newline shows where the last whole row ends.
    let mut end = len;
    let mut block = vec![0u8; 8192];
    loop {
        let start = end.saturating_sub(block.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        if let Some(pos) = block[..size].iter().rposition(|&b| b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                tracing::warn!(
                    dropped_bytes = len - keep,
                    "the results file ended in a partly written row; dropped it before resuming"
                );
                file.set_len(keep)?;
            }
            return Ok(keep);
        }
        if start == 0 {
            tracing::warn!("the results file held no complete row; starting it afresh");
            file.set_len(0)?;
            return Ok(0);
        }
        end = start;
    }
}

/// Checks the header of what an earlier run wrote; returns its rows, unread, and the file's
/// number of columns.
fn earlier_rows(file: File, path: &Path) -> anyhow::Result<(EarlierRows, usize)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(file));
    let headers = reader.byte_headers()?.clone();
    let known = [COLUMNS_BEFORE_WARNING, COLUMNS.len()].contains(&headers.len())
        && headers
            .iter()
            .zip(COLUMNS.iter().map(|c| c.as_bytes()))
            .all(|(found, expected)| found == expected);
    if !known {
        bail!(
            "it is not a supersim-bulk results file (its header is not {}); \
             pass --output to write results elsewhere",
            COLUMNS.join(",")
        );
    }
    let earlier = EarlierRows {
        reader: Some(reader),
        path: path.display().to_string(),
        ..EarlierRows::none()
    };
    Ok((earlier, headers.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_row(line: u64, iccid: &str, outcome: Outcome) -> ResultRow {
        ResultRow::new(line, iccid, outcome)
    }

    /// The earlier rows loaded into memory the simple way (the last row per ICCID wins), to
    /// check what the stream hands the resume plan.
    #[derive(Default)]
    struct Loaded {
        last: HashMap<u64, PackedSim>,
        reported: std::collections::HashSet<u64>,
        fleets: Vec<String>,
        rows: u64,
    }

    impl Loaded {
        fn outcome(&self, iccid: &str) -> Option<Outcome> {
            self.sim(iccid).map(|sim| sim.outcome)
        }
        fn sim(&self, iccid: &str) -> Option<PriorSim> {
            let packed = self.last.get(&checked_iccid_key(iccid)?)?;
            Some(PackedSim::from_bytes(&packed.to_bytes()).unpack(&self.fleets))
        }
        fn already_reported(&self, line: u64) -> bool {
            self.reported.contains(&line)
        }
    }

    fn open(path: &Path) -> (ResultsWriter, Loaded) {
        let (writer, mut earlier) = ResultsWriter::open(path).unwrap();
        let mut loaded = Loaded::default();
        while let Some(row) = earlier.next_row().unwrap() {
            match row {
                EarlierRow::Reported { line } => {
                    loaded.reported.insert(line);
                }
                EarlierRow::Sim { key, sim } => {
                    loaded.last.insert(key, sim);
                }
                EarlierRow::Unmatched => {}
            }
        }
        loaded.rows = earlier.rows;
        loaded.fleets = earlier.into_fleets();
        (writer, loaded)
    }

    #[test]
    fn new_file_gets_header_then_rows_and_resume_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        {
            let (mut writer, prior) = open(&path);
            assert_eq!(prior.rows, 0);
            writer
                .write(&sample_row(2, "89883070000000000011", Outcome::GaveUp))
                .unwrap();
            writer
                .write(&sample_row(3, "89883070000000000029", Outcome::Rejected))
                .unwrap();
            writer
                .write(&sample_row(4, "bad", Outcome::Invalid))
                .unwrap();
            writer
                .write(&sample_row(2, "89883070000000000011", Outcome::Registered))
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&COLUMNS.join(",")));
        assert_eq!(text.lines().count(), 5);

        let (_writer, prior) = open(&path);
        assert_eq!(
            prior.outcome("89883070000000000011"),
            Some(Outcome::Registered)
        );
        assert_eq!(
            prior.outcome("89883070000000000029"),
            Some(Outcome::Rejected)
        );
        assert!(prior.already_reported(4));
        assert!(!prior.already_reported(2));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "reopening adds no header"
        );
    }

    #[test]
    fn torn_last_row_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        {
            let (mut writer, _) = open(&path);
            writer
                .write(&sample_row(2, "89883070000000000011", Outcome::Registered))
                .unwrap();
        }
        let whole = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{whole}3,8988307000000000002")).unwrap();
        let (mut writer, prior) = open(&path);
        assert_eq!(prior.rows, 1);
        writer
            .write(&sample_row(3, "89883070000000000029", Outcome::Registered))
            .unwrap();
        drop(writer);
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[1][1], "89883070000000000029");
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "iccid,code\n1,2\n").unwrap();
        let err = ResultsWriter::open(&path).err().unwrap();
        assert!(format!("{err:#}").contains("not a supersim-bulk results file"));
    }

    #[test]
    fn resume_remembers_sid_status_and_fleet_of_the_last_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let sid = "HS0123456789abcdef0123456789abcdef";
        let fleet = "HF0123456789abcdef0123456789abcdef";
        {
            let (mut writer, _) = open(&path);
            let mut checkpoint = sample_row(2, "89883070000000000011", Outcome::Registered);
            checkpoint.sid = Some(sid.into());
            checkpoint.status = Some("new".into());
            checkpoint.error_message = Some(PENDING_MESSAGE.into());
            writer.write(&checkpoint).unwrap();
            let mut failed = sample_row(3, "89883070000000000029", Outcome::UpdateFailed);
            failed.sid = Some(sid.replace('0', "1"));
            failed.status = Some("new".into());
            writer.write(&failed).unwrap();
            let mut done = sample_row(2, "89883070000000000011", Outcome::Registered);
            done.sid = Some(sid.into());
            done.status = Some("active".into());
            done.fleet_sid = Some(fleet.into());
            writer.write(&done).unwrap();
        }
        let (_writer, prior) = open(&path);
        assert_eq!(
            prior.sim("89883070000000000011"),
            Some(PriorSim {
                outcome: Outcome::Registered,
                sid: Some(sid.into()),
                status: SimStatus::Active,
                fleet_sid: Some(fleet.into()),
                pending: false,
            })
        );
        let failed = prior.sim("89883070000000000029").unwrap();
        assert_eq!(failed.outcome, Outcome::UpdateFailed);
        assert_eq!(failed.sid.as_deref(), Some(&*sid.replace('0', "1")));
        assert_eq!(failed.fleet_sid, None);
        assert_eq!(prior.fleets.len(), 1);
    }

    #[test]
    fn checkpoint_rows_are_marked_pending_and_odd_sids_are_not_kept() {
        let mut fleets = Fleets::default();
        let sim = RowSim {
            sid: "HS0123456789ABCDEF0123456789ABCDEF",
            status: "new",
            fleet_sid: "",
            message: PENDING_MESSAGE,
        };
        let packed = PackedSim::from_row(Outcome::Registered, &sim, &mut fleets);
        let got = PackedSim::from_bytes(&packed.to_bytes()).unpack(&fleets.sids);
        assert!(got.pending);
        assert_eq!(
            got.sid.as_deref(),
            Some("HS0123456789abcdef0123456789abcdef"),
            "hex is kept as lowercase, as Twilio writes it"
        );
        let odd = RowSim {
            sid: "HSnothex",
            ..RowSim::default()
        };
        let packed = PackedSim::from_row(Outcome::GaveUp, &odd, &mut fleets);
        assert_eq!(packed.unpack(&fleets.sids).sid, None);
        assert_eq!(std::mem::size_of::<PackedSim>(), 24);
    }

    #[test]
    fn a_file_from_before_the_warning_column_is_resumed_in_its_own_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let old_header = COLUMNS[..COLUMNS_BEFORE_WARNING].join(",");
        std::fs::write(
            &path,
            format!("{old_header}\n2,89883070000000000011,registered,HS1,new,,,,,1,2025-01-01T00:00:00Z\n"),
        )
        .unwrap();
        let (mut writer, prior) = open(&path);
        assert_eq!(
            prior.outcome("89883070000000000011"),
            Some(Outcome::Registered)
        );
        let mut row = sample_row(3, "89883070000000000029", Outcome::Registered);
        row.warning = Some("ICCID check digit does not match".into());
        writer.write(&row).unwrap();
        drop(writer);
        let mut reader = csv::Reader::from_path(&path).unwrap();
        assert_eq!(reader.headers().unwrap().len(), COLUMNS_BEFORE_WARNING);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "every row has the header's 11 fields");
        assert_eq!(&rows[1][1], "89883070000000000029");
    }

    #[test]
    fn the_warning_column_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (mut writer, _) = open(&path);
        let mut row = sample_row(2, "89883070000000000011", Outcome::Registered);
        row.warning = Some("lowercase".into());
        writer.write(&row).unwrap();
        drop(writer);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("line,iccid,outcome,sid,status,fleet_sid,error_code,error_message,http_status,attempts,finished_at,warning\n"));
        assert!(text.trim_end().ends_with(",lowercase"), "{text}");
        let (_, prior) = open(&path);
        assert_eq!(prior.rows, 1);
    }

    #[test]
    fn outcome_words_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
    }
}
