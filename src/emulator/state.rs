//! Keeping the emulated account across runs (`emulator --state FILE`, and `register
//! --emulator` beside its results file), so a rehearsal can be resumed and onboarded in a
//! later run exactly like a real account.
//!
//! The state file is an append-only journal: a [`HEADER`] line that names it, then one JSON
//! object per line, the SIM as it is after each registration or update, written under the
//! store's lock in the order the changes happened. At start the lines are replayed, the
//! last one of each SID winning. A torn last line (the emulator was killed mid-write) is
//! cut off, as the results file's is, so the next save starts a line of its own. A scheduled
//! status change is saved as the status it becomes, since a later run sees it long after
//! it is due.
//!
//! Only a journal is appended to: a file that is not empty and does not start with the
//! header (a SIM CSV, a results file given by mistake), or anything but a regular file
//! (`/dev/stdout`, a pipe), is refused before the emulator starts.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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

/// The open state file, appended to after every change.
pub(super) struct StateFile {
    path: PathBuf,
    file: Mutex<File>,
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
    /// Opens (or creates) the state journal and reads back the SIMs it holds, in the order
    /// they were first registered. A torn last line is cut off first.
    pub(super) fn open(path: &Path) -> std::io::Result<(StateFile, Vec<SavedSim>)> {
        check_state(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(refused(path, "it is not a regular file"));
        }
        let (saved, whole) = replay(BufReader::new(&mut file))?;
        let length = file.seek(SeekFrom::End(0))?;
        if whole < length {
            tracing::warn!(
                path = %path.display(),
                bytes = length - whole,
                "the emulator's state journal ended in a torn line; cutting it off"
            );
            file.set_len(whole)?;
        }
        if whole == 0 {
            file.write_all(format!("{HEADER}\n").as_bytes())?;
        }
        Ok((
            StateFile {
                path: path.to_path_buf(),
                file: Mutex::new(file),
            },
            saved,
        ))
    }

    /// Records `sim` as it is now. A write that fails is logged: the emulator goes on, and
    /// the next run sees the account as of the last line written.
    pub(super) fn save(&self, sim: &SimRecord) {
        let mut line = serde_json::to_string(&SavedSim::of(sim)).unwrap_or_default();
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()) {
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
