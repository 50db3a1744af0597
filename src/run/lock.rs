//! One run at a time per results file: an advisory lock on `<results>.lock`, held for the
//! whole run. `results` is the file's real path (symlinks resolved), so every spelling of
//! one file, a symlink to it included, shares one lock. A hard link is another name with
//! its own `.lock`, so the results file itself, when it exists, is locked too: two runs
//! through two of its names would otherwise append to one file at once.
//!
//! The lock file is opened without following a symlink: one planted at the lock path is
//! refused (a set-up error), never written through. So is anything that is not a plain
//! file with a single link.
//!
//! The operating system releases the lock when the process ends, however it ends, so a lock
//! left by a killed run never blocks the next one. The file itself stays behind and holds
//! the PID of the last run that took it, which the refusal message quotes.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::paths;

/// Held while it lives; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
    /// The results file itself, locked while the run lasts (when it existed at the start).
    _results: Option<File>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "another run{} is using {results} (lock {lock}); this run left it untouched. \
         Wait for it to finish, then run again",
        pid.as_ref().map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    Busy {
        results: String,
        lock: String,
        pid: Option<String>,
    },
    /// The results file itself is locked by a run that named it otherwise (a hard link).
    #[error(
        "another run is using {results} through another of its names (a hard link to it); \
         this run left it untouched. Wait for it to finish, then run again"
    )]
    BusyElsewhere { results: String },
    /// The lock file cannot be created or opened: a set-up error, not "try again later".
    #[error(
        "cannot lock {lock}: {source}; the lock is created beside the results file: \
         pass -o (--output) with a file in a folder you can write to"
    )]
    Io {
        lock: String,
        #[source]
        source: std::io::Error,
    },
    /// Something other than our lock file stands at the lock path: left alone.
    #[error("{lock} {why}; it was left alone: remove it, then run again")]
    Planted { lock: String, why: &'static str },
}

/// `sims.results.csv` -> `sims.results.csv.lock`.
pub(crate) fn lock_path(results: &Path) -> PathBuf {
    let mut name = results.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl RunLock {
    /// Takes the lock for `results` (its real path) without waiting.
    pub(crate) fn acquire(results: &Path) -> Result<RunLock, LockError> {
        let path = lock_path(results);
        let io_error = |source| LockError::Io {
            lock: path.display().to_string(),
            source,
        };
        let refused = |why| LockError::Planted {
            lock: path.display().to_string(),
            why,
        };
        let mut file = paths::no_follow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| {
                if paths::is_symlink_refused(&error) {
                    refused("is a symbolic link, which a lock never follows")
                } else {
                    io_error(error)
                }
            })?;
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() || meta.nlink() > 1 {
            return Err(refused(
                "is not a plain file of its own (a folder, a device or a hard link)",
            ));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = Some(holder.trim().to_string()).filter(|p| !p.is_empty());
                return Err(LockError::Busy {
                    results: results.display().to_string(),
                    lock: path.display().to_string(),
                    pid,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error(source)),
        }
        let results_file = lock_the_file_itself(results)?;
        file.set_len(0).map_err(io_error)?;
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        writeln!(file, "{}", std::process::id()).map_err(io_error)?;
        Ok(RunLock {
            _file: file,
            _results: results_file,
        })
    }
}

/// Locks the results file itself, if it is there as a plain file, for the run; a run that
/// holds it through another name (a hard link) is busy. Anything the file's own checks
/// refuse later (a folder, a pipe, a file that cannot be opened) is left to them.
fn lock_the_file_itself(results: &Path) -> Result<Option<File>, LockError> {
    // Looked at before it is opened: opening a named pipe would wait for a writer.
    if !std::fs::symlink_metadata(results).is_ok_and(|meta| meta.is_file()) {
        return Ok(None);
    }
    let Ok(file) = paths::no_follow().read(true).open(results) else {
        return Ok(None);
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return Ok(None);
    }
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(LockError::BusyElsewhere {
            results: results.display().to_string(),
        }),
        Err(TryLockError::Error(_)) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r.csv");
        let first = RunLock::acquire(&results).unwrap();
        let refused = RunLock::acquire(&results).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("PID {}", std::process::id())),
            "{refused}"
        );
        assert!(refused.contains("r.csv.lock"), "{refused}");
        drop(first);
        RunLock::acquire(&results).expect("free again once released");
    }

    #[test]
    fn a_results_file_named_through_a_hard_link_is_one_file_to_lock() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r.csv");
        std::fs::write(&results, "line,iccid\n").unwrap();
        let other_name = dir.path().join("copy.csv");
        std::fs::hard_link(&results, &other_name).unwrap();
        let first = RunLock::acquire(&results).unwrap();
        let refused = RunLock::acquire(&other_name).unwrap_err();
        assert!(
            matches!(refused, LockError::BusyElsewhere { .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("another of its names"),
            "{refused}"
        );
        drop(first);
        RunLock::acquire(&other_name).expect("free again once released");
    }

    #[test]
    fn a_planted_symlink_or_hard_link_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r.csv");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, lock_path(&results)).unwrap();
        let refused = RunLock::acquire(&results).unwrap_err();
        assert!(matches!(refused, LockError::Planted { .. }), "{refused}");
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        std::fs::remove_file(lock_path(&results)).unwrap();
        std::fs::hard_link(&victim, lock_path(&results)).unwrap();
        let refused = RunLock::acquire(&results).unwrap_err();
        assert!(refused.to_string().contains("hard link"), "{refused}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
