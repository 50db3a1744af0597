//! Reading back what earlier runs wrote: the stream of earlier rows the resume plan reads
//! once, and the packed form of each SIM's recorded state that the plan sorts on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, bail};

use crate::input::checks::checked_iccid_key;

use super::*;

/// What the last row of an ICCID says about the SIM, as resuming needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PriorSim {
    pub(crate) outcome: Outcome,
    pub(crate) sid: Option<String>,
    pub(crate) status: SimStatus,
    pub(crate) fleet_sid: Option<String>,
    /// The row is a checkpoint ([`PENDING_MESSAGE`]): the update step had not finished.
    pub(crate) pending: bool,
    /// The Twilio error code of the row's last failure, if any.
    pub(crate) error_code: Option<u32>,
    /// [`crate::results::request_key`] of the row's `update_requested`; 0 for none.
    pub(crate) request_key: u64,
    /// The row's `code_fingerprint` ([`crate::results::code_fingerprint`]), if it has one.
    pub(crate) code_fingerprint: Option<u32>,
}

/// [`PriorSim`] packed into 40 bytes: a results file of a million SIMs must load in a few
/// tens of megabytes, so no `String` is kept per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedSim {
    /// The SID's 32 hex digits as bytes; meaningful only with [`HAS_SID`].
    sid: [u8; 16],
    /// 1 + index into the results file's table of Fleet SIDs; 0 for no Fleet.
    fleet: u32,
    outcome: Outcome,
    status: SimStatus,
    flags: u8,
    error_code: u32,
    request_key: u64,
    /// [`HAS_CODE`] | the 24-bit fingerprint of the code; 0 for none.
    code: u32,
}

/// Set in [`PackedSim::code`] when the row has a code fingerprint (which may be 0).
const HAS_CODE: u32 = 1 << 24;

const HAS_SID: u8 = 1;
const PENDING: u8 = 2;
/// The SID's hex digits were written in capitals: the account spells it so, and a request
/// naming it (`/v1/Sims/{Sid}`) must too.
const UPPER_SID: u8 = 4;

/// `HS` + 32 hex digits as 16 bytes; `None` for anything else. The hex digits are read in
/// either case, so two spellings of one SID pack the same.
pub(crate) fn pack_sid(sid: &str) -> Option<[u8; 16]> {
    // `from_str_radix` would take a sign too: `+f` is no pair of hex digits.
    let hex = sid
        .strip_prefix("HS")
        .filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// `HS` and the 32 hex digits of a SID [`pack_sid`] packed.
pub(crate) fn unpack_sid(bytes: &[u8; 16]) -> String {
    let mut sid = String::with_capacity(34);
    sid.push_str("HS");
    for byte in bytes {
        sid.push_str(&format!("{byte:02x}"));
    }
    sid
}

impl PackedSim {
    /// Bytes in [`PackedSim::to_bytes`], for the resume plan's sort records.
    pub(crate) const BYTES: usize = 40;

    /// Packs what a results row says about its SIM, interning its Fleet SID in `fleets`.
    pub(super) fn from_row(outcome: Outcome, sim: &RowSim<'_>, fleets: &mut Fleets) -> PackedSim {
        let sid = pack_sid(sim.sid);
        let fleet = if sim.fleet_sid.is_empty() {
            0
        } else {
            fleets.intern(sim.fleet_sid)
        };
        let mut flags = 0;
        if sid.is_some() {
            flags |= HAS_SID;
            if sim.sid.bytes().skip(2).any(|b| b.is_ascii_uppercase()) {
                flags |= UPPER_SID;
            }
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
            error_code: sim.error_code.parse().unwrap_or(0),
            request_key: crate::results::request_key(sim.update_requested),
            code: crate::results::parse_code_fingerprint(sim.code_fingerprint)
                .map_or(0, |fingerprint| HAS_CODE | fingerprint),
        }
    }

    /// The row's SID as [`pack_sid`] packs it, if the row has one.
    pub(crate) fn sid(&self) -> Option<[u8; 16]> {
        (self.flags & HAS_SID != 0).then_some(self.sid)
    }

    pub(crate) fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut bytes = [0u8; Self::BYTES];
        bytes[..16].copy_from_slice(&self.sid);
        bytes[16..20].copy_from_slice(&self.fleet.to_be_bytes());
        bytes[20] = Outcome::ALL
            .iter()
            .position(|&o| o == self.outcome)
            .unwrap_or_default() as u8;
        bytes[21] = self.status as u8;
        bytes[22] = self.flags;
        bytes[24..28].copy_from_slice(&self.error_code.to_be_bytes());
        bytes[28..36].copy_from_slice(&self.request_key.to_be_bytes());
        bytes[36..40].copy_from_slice(&self.code.to_be_bytes());
        bytes
    }

    pub(crate) fn from_bytes(bytes: &[u8; Self::BYTES]) -> PackedSim {
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
        let mut error_code = [0u8; 4];
        error_code.copy_from_slice(&bytes[24..28]);
        let mut request_key = [0u8; 8];
        request_key.copy_from_slice(&bytes[28..36]);
        let mut code = [0u8; 4];
        code.copy_from_slice(&bytes[36..40]);
        PackedSim {
            sid,
            fleet: u32::from_be_bytes(fleet),
            outcome: Outcome::ALL[usize::from(bytes[20]) % Outcome::ALL.len()],
            status: STATUSES[usize::from(bytes[21]) % STATUSES.len()],
            flags: bytes[22],
            error_code: u32::from_be_bytes(error_code),
            request_key: u64::from_be_bytes(request_key),
            code: u32::from_be_bytes(code),
        }
    }

    /// The [`PriorSim`] this packs; `fleets` is the table it was packed with.
    pub(crate) fn unpack(&self, fleets: &[String]) -> PriorSim {
        PriorSim {
            outcome: self.outcome,
            sid: (self.flags & HAS_SID != 0).then(|| {
                let sid = unpack_sid(&self.sid);
                if self.flags & UPPER_SID != 0 {
                    format!("HS{}", sid[2..].to_ascii_uppercase())
                } else {
                    sid
                }
            }),
            status: self.status,
            fleet_sid: self
                .fleet
                .checked_sub(1)
                .and_then(|i| fleets.get(i as usize).cloned()),
            pending: self.flags & PENDING != 0,
            error_code: (self.error_code != 0).then_some(self.error_code),
            request_key: self.request_key,
            code_fingerprint: (self.code & HAS_CODE != 0).then_some(self.code & (HAS_CODE - 1)),
        }
    }
}

/// Every Fleet SID seen in a results file, once: a run uses a handful, so packed rows keep a
/// small index instead of the SID.
#[derive(Debug, Default)]
pub(super) struct Fleets {
    pub(super) sids: Vec<String>,
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
pub(crate) enum EarlierRow {
    /// The input line was written `invalid` or `duplicate`: a re-run does not repeat it
    /// while the line holds a row that would be written the same
    /// ([`crate::results::report_key`] of it is `content`).
    Reported { line: u64, content: u64 },
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
    pub(crate) rows: u64,
    /// The accounts the rows read so far were written against (a file should hold one).
    pub(crate) accounts: Vec<String>,
}

/// More accounts than this in one results file are not listed one by one.
const MAX_ACCOUNTS_NOTED: usize = 8;

impl EarlierRows {
    /// The rows of the results file at `path`, read only (nothing is created, repaired or
    /// locked): what `--dry-run` plans from. No file means no earlier rows.
    pub(crate) fn read_only(path: &Path) -> anyhow::Result<EarlierRows> {
        match File::open(path) {
            Ok(file) => earlier_rows(file, path)
                .map(|(rows, _)| rows)
                .with_context(|| format!("cannot read {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(EarlierRows::none()),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// No earlier rows: a new results file.
    pub fn none() -> Self {
        EarlierRows {
            reader: None,
            record: csv::StringRecord::new(),
            fleets: Fleets::default(),
            path: String::new(),
            rows: 0,
            accounts: Vec::new(),
        }
    }

    /// The next row, in file order.
    pub(crate) fn next_row(&mut self) -> anyhow::Result<Option<EarlierRow>> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        loop {
            let read = match reader.read_record(&mut self.record) {
                Ok(read) => read,
                Err(error) => match utf8_error_line(&error) {
                    Some(line) => bail!(not_utf8(&self.path, line)),
                    None => {
                        return Err(error)
                            .with_context(|| format!("cannot resume from {}", self.path));
                    }
                },
            };
            if !read {
                return Ok(None);
            }
            if !is_blank_row(self.record.as_byte_record()) {
                break;
            }
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
        if let Some(account) = record.get(14).filter(|a| !a.is_empty())
            && !self.accounts.iter().any(|known| known == account)
            && self.accounts.len() < MAX_ACCOUNTS_NOTED
        {
            self.accounts.push(account.to_string());
        }
        if matches!(outcome, Outcome::Invalid | Outcome::Duplicate) {
            let content = report_key(outcome, &record[1], &record[7]);
            return Ok(Some(EarlierRow::Reported { line, content }));
        }
        let Some(key) = checked_iccid_key(&record[1]) else {
            return Ok(Some(EarlierRow::Unmatched));
        };
        let sim = RowSim {
            sid: &record[3],
            status: &record[4],
            fleet_sid: &record[5],
            message: &record[7],
            error_code: &record[6],
            update_requested: record.get(13).unwrap_or_default(),
            code_fingerprint: record.get(15).unwrap_or_default(),
        };
        let sim = PackedSim::from_row(outcome, &sim, &mut self.fleets);
        Ok(Some(EarlierRow::Sim { key, sim }))
    }

    /// The results file's path, as the messages about it name it.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The Fleet SIDs the packed rows index into.
    pub(crate) fn into_fleets(self) -> Vec<String> {
        self.fleets.sids
    }
}

/// The columns of a results row that describe the SIM, borrowed from the CSV record.
#[derive(Default)]
pub(super) struct RowSim<'a> {
    pub(super) sid: &'a str,
    pub(super) status: &'a str,
    pub(super) fleet_sid: &'a str,
    pub(super) message: &'a str,
    pub(super) error_code: &'a str,
    pub(super) update_requested: &'a str,
    pub(super) code_fingerprint: &'a str,
}

/// Checks the header of what an earlier run wrote; returns its rows, unread, and the file's
/// number of columns.
pub(super) fn earlier_rows(file: File, path: &Path) -> anyhow::Result<(EarlierRows, usize)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(file));
    let headers = reader.byte_headers()?.clone();
    let known = KNOWN_WIDTHS.contains(&headers.len())
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
