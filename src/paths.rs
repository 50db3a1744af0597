//! Files compared by what they are, not by how their paths are spelled: `./x.csv`, `x.csv`,
//! `sub/../x.csv`, a symlink to it and a hard link to it are all one file. The run uses this
//! to refuse giving one file two roles (input, results, failed-out, summary), to lock the
//! results file by its real path, and to check a file can be created before anything is sent.
//!
//! Files written beside themselves and renamed into place (the summary JSON, the
//! failed-out file, an export) replace only a regular file or a new path: a rename over a
//! symbolic link, a device or a pipe would put a file where the system keeps something
//! else (`/dev/stdout` is a link to `/proc/self/fd/1`), so [`not_replaceable`] says what
//! stands there instead.
//!
//! It imports nothing else of the crate, so every layer may use it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileId {
    /// A file that exists: its device and inode (symlinks followed).
    Existing { dev: u64, ino: u64 },
    /// A file not created yet: where it would be created, with every symlink resolved.
    Planned(PathBuf),
}

/// The identity of the file at `path`. An error means the path cannot name a file at all
/// (its folder is missing or is not a folder, a symlink loop, ...).
pub(crate) fn file_id(path: &Path) -> io::Result<FileId> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(FileId::Existing {
            dev: meta.dev(),
            ino: meta.ino(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Ok(FileId::Planned(resolve(path)?))
        }
        Err(error) => Err(error),
    }
}

/// Whether `a` and `b` are known to be one file. A path whose identity cannot be worked out
/// is never the same as another: it cannot be opened either, and says so when it is.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (file_id(a), file_id(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The real path of `path`: the file itself when it exists, or where it would be created,
/// with every symlink on the way resolved (a symlink to a missing file included, since
/// creating the file would follow it).
pub(crate) fn resolve(path: &Path) -> io::Result<PathBuf> {
    refuse_a_folders_spelling(path)?;
    let mut path = path.to_path_buf();
    // The limit the kernel uses for symlinks in one lookup.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                // An absolute target replaces the folder; a relative one is taken from it.
                path = folder_of(&path).join(target);
            }
            Ok(_) => return std::fs::canonicalize(&path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let name = path.file_name().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "it names a folder, not a file")
                })?;
                let folder = std::fs::canonicalize(folder_of(&path))?;
                if !std::fs::metadata(&folder)?.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                return Ok(folder.join(name));
            }
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// A path that ends in `/` names a folder, whatever is there: `Path` drops that slash (its
/// `file_name` of `out/` is `out`), so a file named `out` would be made in its place, or
/// the path found unwritable only when written to.
fn refuse_a_folders_spelling(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().ends_with(b"/") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it ends in `/`, so it names a folder, not a file",
        ));
    }
    Ok(())
}

/// The folder a path's file lives in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// What stands at `path` if a file renamed over it would replace something other than a
/// regular file: "a symbolic link (to ...)", "a named pipe", "a character device", ...
/// `None` for a regular file or a path where nothing is yet.
pub(crate) fn not_replaceable(path: &Path) -> io::Result<Option<String>> {
    use std::os::unix::fs::FileTypeExt;
    let file_type = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let what = if file_type.is_file() {
        return Ok(None);
    } else if file_type.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => format!("a symbolic link (to {})", target.display()),
            Err(_) => "a symbolic link".to_string(),
        }
    } else if file_type.is_dir() {
        "a folder".to_string()
    } else if file_type.is_char_device() {
        "a character device".to_string()
    } else if file_type.is_block_device() {
        "a block device".to_string()
    } else if file_type.is_fifo() {
        "a named pipe".to_string()
    } else if file_type.is_socket() {
        "a socket".to_string()
    } else {
        "not a regular file".to_string()
    };
    Ok(Some(what))
}

/// Checks that a file can be written at `path` by replacing it, as the summary JSON and the
/// failed-out file are written: a new file beside `path`, renamed over it (so the folder
/// that counts is the one `path` names; callers refuse a symlink there first, with
/// [`not_replaceable`]). Creates and removes a probe file there; nothing at `path` is
/// touched.
pub(crate) fn check_writable(path: &Path) -> io::Result<()> {
    refuse_a_folders_spelling(path)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "it names a folder, not a file")
    })?;
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a folder, not a file",
        ));
    }
    let mut probe = name.to_os_string();
    probe.push(format!(".{}.probe", std::process::id()));
    let probe = folder_of(path).join(probe);
    // A leftover probe from an earlier process with this PID: remove it (a symlink is
    // removed, not followed), then create ours afresh.
    match std::fs::remove_file(&probe) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    create_new(&probe)?;
    std::fs::remove_file(&probe)
}

/// Creates a new file for writing; fails if anything (a symlink included) is in its place.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Writes `contents` to `path` atomically: to a new file beside it (whatever was in that
/// place, a leftover or a planted symlink, is removed, never followed), synced, then renamed
/// over `path`, so a reader sees the old file or the whole new one, never half of it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = folder_of(path).join(format!(".{name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = create_new(&temp)?;
    let result = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Options that refuse to open a symlink (`O_NOFOLLOW`): the error is `ELOOP`.
pub(crate) fn no_follow() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW);
    options
}

/// True when `error` is what [`no_follow`] gives for a symlink.
pub(crate) fn is_symlink_refused(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_symlinks_and_hard_links_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.csv");
        std::fs::write(&file, "x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("link.csv")).unwrap();
        std::fs::hard_link(&file, dir.path().join("hard.csv")).unwrap();
        for other in ["sub/../x.csv", "./x.csv", "link.csv", "hard.csv"] {
            assert!(same_file(&file, &dir.path().join(other)), "{other}");
        }
        std::fs::write(dir.path().join("y.csv"), "x").unwrap();
        assert!(!same_file(&file, &dir.path().join("y.csv")));
    }

    #[test]
    fn files_not_yet_created_compare_by_their_real_folder_and_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let planned = dir.path().join("new.csv");
        assert!(same_file(&planned, &dir.path().join("sub/../new.csv")));
        assert!(!same_file(&planned, &dir.path().join("sub/new.csv")));
        // A dangling symlink leads where creating the file would go.
        std::os::unix::fs::symlink(&planned, dir.path().join("dangling.csv")).unwrap();
        assert!(same_file(&planned, &dir.path().join("dangling.csv")));
        assert_eq!(
            resolve(&dir.path().join("dangling.csv")).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap().join("new.csv")
        );
    }

    #[test]
    fn a_file_in_place_of_a_folder_is_an_error_and_never_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "a file").unwrap();
        let inside = blocker.join("x.json");
        assert!(file_id(&inside).is_err());
        assert!(!same_file(&inside, &inside));
        assert!(check_writable(&inside).is_err());
        assert!(check_writable(&dir.path().join("fine.json")).is_ok());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no probe left"
        );
        assert!(
            check_writable(dir.path()).is_err(),
            "a folder is not a file"
        );
        // Nor is a path spelled as a folder's, there or not.
        for spelled in ["fine.json/", "new/"] {
            let path = PathBuf::from(format!("{}/{spelled}", dir.path().display()));
            assert!(check_writable(&path).is_err(), "{spelled}");
            assert!(resolve(&path).is_err(), "{spelled}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_a_regular_file_or_a_new_path_is_replaceable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        assert_eq!(not_replaceable(&file).unwrap(), None);
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(not_replaceable(&file).unwrap(), None);
        let link = dir.path().join("stdout");
        std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
        assert_eq!(
            not_replaceable(&link).unwrap().as_deref(),
            Some("a symbolic link (to /proc/self/fd/1)")
        );
        assert_eq!(
            not_replaceable(dir.path()).unwrap().as_deref(),
            Some("a folder")
        );
        assert_eq!(
            not_replaceable(Path::new("/dev/null")).unwrap().as_deref(),
            Some("a character device")
        );
    }

    #[test]
    fn no_follow_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let error = no_follow().append(true).open(&link).unwrap_err();
        assert!(is_symlink_refused(&error), "{error}");
        assert!(create_new(&link).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
