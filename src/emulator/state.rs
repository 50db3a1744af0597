//! Keeping the emulated account across runs (`emulator --state FILE`, and `register
//! --emulator` beside its results file), so a rehearsal can be resumed and onboarded in a
//! later run exactly like a real account.
//!
//! The state file is an append-only journal: a [`HEADER`] line that names it, then one JSON
//! object per line, the SIM as it is after each registration or update, written under the
//! store's lock in the order the changes happened. At start the lines are replayed, the
//! last one of each SID winning. A torn last line (the emulator was killed mid-write) is
//! cut off, as the results file's is, so the next save starts a line of its own. Nothing is
//! written before the account first changes (the journal is created, its header written or
//! a torn line cut off then), so a run refused before it sent a request leaves no journal
//! behind, and an existing one as it was. A scheduled
//! status change is saved as the status it becomes, since a later run sees it long after
//! it is due.
//!
//! Only a journal is appended to: a file that is not empty and does not start with the
//! header (a SIM CSV, a results file given by mistake), or anything but a regular file
//! (`/dev/stdout`, a pipe), is refused before the emulator starts.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::record::SimRecord;

/// One line of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedSim {
    pub(super) sid: String,
    pub(super) iccid: String,
    pub(super) status: String,
    pub(super) fleet_sid: Option<String>,
    pub(super) unique_name: Option<String>,
    pub(super) account_sid: String,
}

impl SavedSim {
    fn of(sim: &SimRecord) -> SavedSim {
        SavedSim {
            sid: sim.sid.clone(),
            iccid: sim.iccid.clone(),
            status: match &sim.scheduled {
                Some((target, _)) => target.clone(),
                None => sim.status.clone(),
            },
            fleet_sid: match &sim.scheduled_fleet {
                Some(fleet) => fleet.clone(),
                None => sim.fleet_sid.clone(),
            },
            unique_name: sim.unique_name.clone(),
            account_sid: sim.account_sid.clone(),
        }
    }

    pub(super) fn into_record(self) -> SimRecord {
        let now = SystemTime::now();
        SimRecord {
            sid: self.sid,
            iccid: self.iccid,
            status: self.status,
            fleet_sid: self.fleet_sid,
            unique_name: self.unique_name,
            account_sid: self.account_sid,
            date_created: now,
            date_updated: now,
            scheduled: None,
            scheduled_fleet: None,
        }
    }
}

/// The first line of every state journal.
pub(super) const HEADER: &str = r#"{"journal":"supersim-bulk emulator state","version":1}"#;

/// The state file, appended to after every change.
pub(super) struct StateFile {
    path: PathBuf,
    journal: Mutex<Journal>,
}

/// The journal as it stands until the first change, when it is written for the first time.
struct Journal {
    /// The file, opened for appending: from the start when it was there, else created at the
    /// first change.
    file: Option<File>,
    /// Bytes of whole lines it holds (the header's included): a torn last line after them is
    /// cut off before the first line is added, and a journal of none gets its header then.
    whole: u64,
    /// Whether the first change was written (and the journal repaired or started for it).
    started: bool,
}

impl Journal {
    /// Appends `line`, first cutting off a torn last line or writing the header the first
    /// time. A journal missing at the start is created new now, never through a file (or
    /// a symlink) put in its place meanwhile.
    fn append(&mut self, path: &Path, line: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create_new(true)
                    .open(path)?,
            ),
        };
        if !self.started {
            let length = file.metadata()?.len();
            if length > self.whole {
                tracing::warn!(
                    path = %path.display(),
                    bytes = length - self.whole,
                    "the emulator's state journal ended in a torn line; cutting it off"
                );
                file.set_len(self.whole)?;
            }
            if self.whole == 0 {
                file.write_all(format!("{HEADER}\n").as_bytes())?;
            }
            self.started = true;
        }
        file.write_all(line)
    }
}

/// Refuses `path` as a state journal unless it is missing, empty, or a regular file that
/// starts with [`HEADER`] (or with a part of it, a journal torn while it was being
/// started). Reads the first line only; nothing is written.
pub(crate) fn check_state(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(refused(path, "it is not a regular file")),
        Ok(_) => {
            let mut first = Vec::new();
            BufReader::new(File::open(path)?)
                .take(HEADER.len() as u64 + 1)
                .read_until(b'\n', &mut first)?;
            if starts_journal(&first) {
                Ok(())
            } else {
                Err(refused(
                    path,
                    "it is not empty and its first line is not the journal's header",
                ))
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// True for the first line of a journal, or the start of one cut short.
fn starts_journal(first: &[u8]) -> bool {
    match first.strip_suffix(b"\n") {
        Some(line) => line == HEADER.as_bytes(),
        None => HEADER.as_bytes().starts_with(first),
    }
}

/// `error` saying which journal it is about, unless it does already (a refusal does).
fn naming(path: &Path, error: std::io::Error) -> std::io::Error {
    if error.kind() == std::io::ErrorKind::InvalidData {
        return error;
    }
    std::io::Error::new(
        error.kind(),
        format!("cannot open the state journal {}: {error}", path.display()),
    )
}

fn refused(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{} is not an emulator state journal ({why}); the emulator appends only to a \
             journal it started: name a new file for the state, or move that one away",
            path.display()
        ),
    )
}

impl StateFile {
    /// Opens the state journal and reads back the SIMs it holds, in the order they were
    /// first registered. Nothing is written until the account changes: a journal that is not
    /// there yet is created then, and a torn last line cut off then, so a run that changes
    /// nothing (refused before it sent a request, a dry run) leaves the journal as it was,
    /// or not there at all. Whether it can be written is checked now all the same.
    pub(super) fn open(path: &Path) -> std::io::Result<(StateFile, Vec<SavedSim>)> {
        check_state(path).map_err(|error| naming(path, error))?;
        StateFile::open_checked(path).map_err(|error| naming(path, error))
    }

    fn open_checked(path: &Path) -> std::io::Result<(StateFile, Vec<SavedSim>)> {
        let (file, saved, whole) = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(mut file) => {
                if !file.metadata()?.is_file() {
                    return Err(refused(path, "it is not a regular file"));
                }
                let (saved, whole) = replay(BufReader::new(&mut file))?;
                (Some(file), saved, whole)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Its folder takes a new file: one with no name, gone when closed.
                let folder = match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent,
                    _ => Path::new("."),
                };
                tempfile::tempfile_in(folder)?;
                (None, Vec::new(), 0)
            }
            Err(error) => return Err(error),
        };
        Ok((
            StateFile {
                path: path.to_path_buf(),
                journal: Mutex::new(Journal {
                    file,
                    whole,
                    started: false,
                }),
            },
            saved,
        ))
    }

    /// Records `sim` as it is now. A write that fails is logged: the emulator goes on, and
    /// the next run sees the account as of the last line written.
    pub(super) fn save(&self, sim: &SimRecord) {
        let mut line = serde_json::to_string(&SavedSim::of(sim)).unwrap_or_default();
        line.push('\n');
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = journal.append(&self.path, line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), %error, "cannot save the emulator's state");
        }
    }
}

/// The SIMs of a state journal (its header already checked): the last line of each SID,
/// in first-registered order; and how many bytes of it are whole lines (the header's
/// included), where a torn last line starts. A whole line that is not a saved SIM is
/// skipped.
fn replay(mut reader: impl BufRead) -> std::io::Result<(Vec<SavedSim>, u64)> {
    let mut sims: Vec<SavedSim> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut whole = 0u64;
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        whole += read as u64;
        if std::mem::take(&mut first) {
            continue;
        }
        let Ok(saved) = serde_json::from_slice::<SavedSim>(&line) else {
            continue;
        };
        match index.get(&saved.sid) {
            Some(&at) => sims[at] = saved,
            None => {
                index.insert(saved.sid.clone(), sims.len());
                sims.push(saved);
            }
        }
    }
    Ok((sims, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(sid: &str, status: &str) -> SavedSim {
        SavedSim {
            sid: sid.into(),
            iccid: format!("8988307000000000{}", &sid[2..]),
            status: status.into(),
            fleet_sid: None,
            unique_name: None,
            account_sid: "AC0".into(),
        }
    }

    #[test]
    fn the_last_line_of_each_sim_wins_and_a_torn_line_is_not_counted_whole() {
        let lines = [
            HEADER.to_string(),
            serde_json::to_string(&saved("HS1", "new")).unwrap(),
            serde_json::to_string(&saved("HS2", "new")).unwrap(),
            serde_json::to_string(&saved("HS1", "active")).unwrap(),
            "{\"sid\":\"HS3\",\"icc".to_string(),
        ];
        let text = lines.join("\n");
        let (sims, whole) = replay(std::io::Cursor::new(&text)).unwrap();
        assert_eq!(sims, vec![saved("HS1", "active"), saved("HS2", "new")]);
        assert_eq!(whole as usize, text.rfind('\n').unwrap() + 1);
    }

    #[test]
    fn only_a_journal_or_the_start_of_one_is_taken() {
        assert!(starts_journal(format!("{HEADER}\n").as_bytes()));
        assert!(starts_journal(b""));
        assert!(starts_journal(&HEADER.as_bytes()[..10]));
        assert!(!starts_journal(b"Iccid,RegistrationCode\n"));
        assert!(!starts_journal(b"{\"sid\":\"HS1\"}\n"));
    }
}
