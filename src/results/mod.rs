//! The results file: its columns and outcome words (a contract scripts rely on, defined
//! here), the [`writer`] that appends one whole, flushed row per SIM, and reading back what
//! [`earlier`] runs wrote so a second run can resume (matched to input lines by
//! `run::plan`, on disk, so a million earlier rows are never held in memory).
//!
//! [`cell`] keeps a server's text from being taken for a spreadsheet formula.
//!
//! [`compact`] turns the journal into one row per SIM when a run ends: the rows of the
//! input's SIMs on their current lines, then the rows of SIMs no longer in the input.
//!
//! The file is append-only while a run goes on. A run never rewrites earlier rows; for each
//! ICCID the last row wins. A file is written to only once its header shows it is a results
//! file; then, if the previous run died in the middle of a row, the file is cut back to its
//! last whole CSV record (quotes honoured) before anything is appended, so it stays a valid
//! CSV.

pub(crate) mod cell;
pub mod compact;
pub(crate) mod earlier;
#[cfg(test)]
mod tests;
pub(crate) mod writer;

pub use earlier::EarlierRows;
pub(crate) use earlier::{EarlierRow, PackedSim, PriorSim, pack_sid, unpack_sid};
pub(crate) use writer::ResultsWriter;

use std::str::FromStr;

use serde::Serialize;

/// The results columns, in order. New columns are only ever added at the end.
pub const COLUMNS: [&str; 16] = [
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
    "unique_name",
    "update_requested",
    "account_sid",
    "code_fingerprint",
];

/// Columns of a results file written before `warning` was added. Resuming such a file keeps
/// writing its 11 columns, so it stays a valid CSV (the warnings still reach the log).
const COLUMNS_BEFORE_WARNING: usize = 11;
/// Columns of a results file written before rows named their account. Resumed in its own
/// 12 columns too; its rows cannot say which account they were written against.
const COLUMNS_BEFORE_ACCOUNT: usize = 12;
/// Columns of a results file written before rows kept a fingerprint of their code. Resumed
/// in its own 15 columns too; a refused row of such a file is sent again only with
/// `--retry-rejected`, as the file cannot tell a fixed code from the refused one.
const COLUMNS_BEFORE_CODE_FINGERPRINT: usize = 15;
/// The column counts of every results format this version reads and appends to.
const KNOWN_WIDTHS: [usize; 4] = [
    COLUMNS_BEFORE_WARNING,
    COLUMNS_BEFORE_ACCOUNT,
    COLUMNS_BEFORE_CODE_FINGERPRINT,
    COLUMNS.len(),
];

/// How a row ended. The words are part of the results-file contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
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
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Registered,
        Outcome::AlreadyRegistered,
        Outcome::Rejected,
        Outcome::Invalid,
        Outcome::Duplicate,
        Outcome::GaveUp,
        Outcome::UpdateFailed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn is_done(self) -> bool {
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
pub(crate) struct ResultRow {
    pub(crate) line: u64,
    pub(crate) iccid: String,
    pub(crate) outcome: Outcome,
    pub(crate) sid: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) fleet_sid: Option<String>,
    pub(crate) error_code: Option<u32>,
    pub(crate) error_message: Option<String>,
    pub(crate) http_status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) finished_at: String,
    /// Soft check warnings (Luhn, ICCID prefix, lowercase code); the row was still sent.
    pub(crate) warning: Option<String>,
    /// The SIM's UniqueName as the API last showed it.
    pub(crate) unique_name: Option<String>,
    /// The update this run asked for (`fleet=...;status=...;unique_name=...`), if any: a
    /// later run sends a refused update again only when it asks for something else.
    pub(crate) update_requested: Option<String>,
    /// The account the row was written against: the Sim's, or this run's for a row with no
    /// SIM. A results file is never resumed against another account.
    pub(crate) account_sid: Option<String>,
    /// [`code_fingerprint`] of the registration code the row's request sent: a later run
    /// sends a refused SIM again when its code in the input is no longer that one. Never the
    /// code itself.
    #[serde(serialize_with = "code_fingerprint_cell")]
    pub(crate) code_fingerprint: Option<u32>,
}

impl ResultRow {
    /// A row with only its identity and outcome filled in; the caller sets the rest.
    pub(crate) fn new(line: u64, iccid: impl Into<String>, outcome: Outcome) -> Self {
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
            unique_name: None,
            update_requested: None,
            account_sid: None,
            code_fingerprint: None,
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What the `error_message` of a checkpoint row says: the SIM is registered and an update
/// step follows. A run writes it before the update request, so a crash between the two
/// steps leaves a row that lets the next run skip straight to the update.
pub(crate) const PENDING_MESSAGE: &str = "registered; the update step has not finished yet";

/// A SIM status as the results record it, in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum SimStatus {
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
    pub(crate) fn parse(word: &str) -> SimStatus {
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

/// Whether `error` is a results row that is not UTF-8 text, and then at which line.
pub(crate) fn utf8_error_line(error: &csv::Error) -> Option<u64> {
    match error.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => Some(pos.as_ref().map_or(0, csv::Position::line)),
        _ => None,
    }
}

/// The refusal of a results file whose row at `line` is not UTF-8 text: what a spreadsheet
/// that saved the file again in its own encoding leaves (an `é` of a unique name written as
/// one byte). The way out is named, not the byte.
pub(crate) fn not_utf8(path: &str, line: u64) -> String {
    format!(
        "cannot read {path}: the row at line {line} is not UTF-8 text, as a spreadsheet that \
         saved the file in its own encoding leaves it; convert it back to UTF-8, changing \
         nothing else (`iconv -f WINDOWS-1252 -t UTF-8`)"
    )
}

/// A row whose every cell is empty: what a spreadsheet leaves of a row whose contents were
/// cleared, and writes for the empty rows below the last. It says nothing about any SIM or
/// line, so everything that reads the results file passes over it, as over a blank line;
/// compaction leaves it out.
pub(crate) fn is_blank_row(record: &csv::ByteRecord) -> bool {
    record.iter().all(<[u8]>::is_empty)
}

/// A 64-bit fingerprint of an `update_requested` cell (FNV-1a), so resuming can tell a
/// repeated request from a changed one without keeping a string per row. 0 means none.
pub(crate) fn request_key(update_requested: &str) -> u64 {
    if update_requested.is_empty() {
        return 0;
    }
    fnv1a(update_requested.bytes()).max(1)
}

/// A short fingerprint of the registration code sent for `iccid`: 24 bits of an FNV-1a
/// hash of both, written as 6 hex digits. It is enough to notice that the code on an input
/// line is not the one a SIM was refused with (a changed code looks unchanged once in 16
/// million), and far too short to stand for the code: each fingerprint fits about 200
/// million of the 36^10 possible codes, so the results file still holds no claim secret.
/// The ICCID is hashed in, so one code on two SIMs gives two fingerprints.
pub(crate) fn code_fingerprint(iccid: &str, code: &crate::secret::RegistrationCode) -> u32 {
    let parts = [
        b"supersim-bulk/code/".as_slice(),
        iccid.as_bytes(),
        b"/",
        code.expose().as_bytes(),
    ];
    let hash = fnv1a(parts.iter().flat_map(|part| part.iter().copied()));
    ((hash ^ (hash >> 32)) & 0xff_ffff) as u32
}

/// The value of a `code_fingerprint` cell, if it holds one.
pub(crate) fn parse_code_fingerprint(cell: &str) -> Option<u32> {
    if cell.len() != 6 {
        return None;
    }
    u32::from_str_radix(cell, 16).ok()
}

/// A `code_fingerprint` cell: the fingerprint as 6 hex digits, empty for none.
fn code_fingerprint_cell<S: serde::Serializer>(
    fingerprint: &Option<u32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match fingerprint {
        Some(fingerprint) => serializer.serialize_str(&format!("{fingerprint:06x}")),
        None => serializer.serialize_none(),
    }
}

/// A 64-bit fingerprint of what an `invalid` or `duplicate` row says (outcome, ICCID cell,
/// message): such a row is about its input line and what was on it, so a later run counts
/// it as already reported only when the row now on that line would be written the same.
pub(crate) fn report_key(outcome: Outcome, iccid: &str, message: &str) -> u64 {
    let text = [outcome.as_str(), iccid, message];
    fnv1a(text.iter().flat_map(|part| part.bytes().chain([0])))
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
