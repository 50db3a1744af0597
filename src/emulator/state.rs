//! Keeping the emulated account across runs (`emulator --state FILE`, and `register
//! --emulator` beside its results file), so a rehearsal can be resumed and onboarded in a
//! later run exactly like a real account.
//!
//! The state file is an append-only journal: one JSON object per line, the SIM as it is
//! after each registration or update, written under the store's lock in the order the
//! changes happened. At start the lines are replayed, the last one of each SID winning; a
//! torn last line (the emulator was killed mid-write) is ignored. A scheduled status change
//! is saved as the status it becomes, since a later run sees it long after it is due.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::store::SimRecord;

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
            fleet_sid: sim.fleet_sid.clone(),
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
        }
    }
}

/// The open state file, appended to after every change.
pub(super) struct StateFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl StateFile {
    /// Opens (or creates) the state file and reads back the SIMs it holds, in the order
    /// they were first registered.
    pub(super) fn open(path: &Path) -> std::io::Result<(StateFile, Vec<SavedSim>)> {
        let saved = match File::open(path) {
            Ok(file) => replay(BufReader::new(file))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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

/// The SIMs of a state journal: the last line of each SID, in first-registered order.
fn replay(reader: impl BufRead) -> std::io::Result<Vec<SavedSim>> {
    let mut sims: Vec<SavedSim> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for line in reader.lines() {
        let line = line?;
        // A torn last line, or anything that is not a saved SIM, is skipped.
        let Ok(saved) = serde_json::from_str::<SavedSim>(&line) else {
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
    Ok(sims)
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
    fn the_last_line_of_each_sim_wins_and_a_torn_line_is_skipped() {
        let lines = [
            serde_json::to_string(&saved("HS1", "new")).unwrap(),
            serde_json::to_string(&saved("HS2", "new")).unwrap(),
            serde_json::to_string(&saved("HS1", "active")).unwrap(),
            "{\"sid\":\"HS3\",\"icc".to_string(),
        ];
        let sims = replay(std::io::Cursor::new(lines.join("\n"))).unwrap();
        assert_eq!(sims, vec![saved("HS1", "active"), saved("HS2", "new")]);
    }
}
