//! Where secrets may go: secret-bearing files are created 0600 with `O_EXCL` and never
//! through a symlink, read back only when they are ours and 0600, and only in a place no other
//! user can write (ssh's StrictModes). What another user could plant or swap is refused.

use std::path::Path;

use super::atomic::parent_dir;
use super::{FileError, Fs, FsFile, OpenHow};
use crate::bounded::Symlinks;

/// Refuses to write secrets through a symlink or over a file others can read or write.
pub(crate) fn check_secret_target<F: Fs>(fs: &F, path: &Path) -> Result<(), FileError> {
    match fs.symlink_metadata(path) {
        Ok(meta) => {
            if meta.is_symlink() {
                return Err(FileError::Unsafe {
                    path: path.to_path_buf(),
                    reason: "it is a symbolic link; point --secrets at a regular file".into(),
                });
            }
            if !meta.is_file() {
                return Err(FileError::Unsafe {
                    path: path.to_path_buf(),
                    reason: "it is not a regular file".into(),
                });
            }
            if meta.uid != euid() {
                return Err(FileError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!(
                        "it belongs to another user (uid {}), who could read what is written",
                        meta.uid
                    ),
                });
            }
            if meta.mode & 0o077 != 0 {
                return Err(FileError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its mode is {:04o}, so other users can read or change it; run `chmod 600 {}` after checking who read it",
                        meta.mode & 0o7777,
                        path.display()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError::Write {
            what: "secrets",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates a new file with mode 0600, for reading and positioned writes (the journal writes
/// at the end of its records, which need not be the end of the file). Never opens one that
/// exists (another user may have planted it, 0666, to receive the secrets) and never follows
/// a symlink.
pub(crate) fn open_secret_new<F: Fs>(fs: &F, path: &Path) -> std::io::Result<F::File> {
    fs.open(path, &OpenHow::create_new(0o600)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(
                e.kind(),
                "the file appeared while this run was starting (someone else created it?); \
                     it is not written to: check who made it and remove it, then run again",
            )
        } else {
            e
        }
    })
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Opens `path` for reading if it is a regular file (as [`crate::bounded::open_regular`], on
/// the filesystem `fs`). The open itself never blocks (a FIFO is opened non-blocking, then
/// refused).
pub fn open_regular<F: Fs>(fs: &F, path: &Path, symlinks: Symlinks) -> std::io::Result<F::File> {
    let file = fs
        .open(path, &OpenHow::read(symlinks == Symlinks::Follow))
        .map_err(|e| {
            if symlinks == Symlinks::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it is a symbolic link, which is not followed for this file",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a directory, FIFO, socket or device)",
        ));
    }
    Ok(file)
}

/// Opens a secret-bearing file this tool wrote (the journal) for reading, if it exists, and
/// only if it can be trusted: a regular file (not through a symlink, not a FIFO or device),
/// owned by this user, readable by no one else, at most `limit` bytes. A file that fails
/// these checks may have been planted with crafted records, or made to leak what is read.
pub(crate) fn open_own_secret_file<F: Fs>(
    fs: &F,
    path: &Path,
    what: &'static str,
    limit: u64,
) -> Result<Option<F::File>, FileError> {
    let untrusted = |reason: String| FileError::Untrusted {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let file = match open_regular(fs, path, Symlinks::Refuse) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(untrusted(e.to_string()));
        }
        Err(source) => {
            return Err(FileError::Read {
                what,
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| FileError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if meta.uid != euid() {
        return Err(untrusted(format!(
            "it belongs to another user (uid {}), who may have written it",
            meta.uid
        )));
    }
    if meta.mode & 0o077 != 0 {
        return Err(untrusted(format!(
            "its mode is {:04o}; this tool creates it 0600, so someone else made or changed it",
            meta.mode & 0o7777
        )));
    }
    if meta.len > limit {
        return Err(untrusted(format!(
            "it is larger than {limit} bytes, more than any run writes"
        )));
    }
    Ok(Some(file))
}

/// Whether a directory owned by `uid` belongs to another user than `me` (root's are trusted,
/// like ssh's).
pub(crate) fn owned_by_another(uid: u32, me: u32) -> bool {
    uid != me && uid != 0
}

/// ssh's StrictModes for the state: every directory that holds a state file, and each of its
/// ancestors, belongs to this user or root and cannot be written by others (unless it is
/// sticky, like /tmp, where others cannot remove or rename what is ours; a group-writable
/// directory is accepted only for this user's own group). And every state file that exists
/// belongs to this user. Otherwise another user could plant or swap the files secrets go to.
pub(crate) fn check_state_place<F: Fs>(fs: &F, files: &[&Path]) -> Result<(), FileError> {
    let me = euid();
    let my_group = rustix::process::getegid().as_raw();
    let mut seen: Vec<std::path::PathBuf> = Vec::new();
    for file in files {
        if let Ok(meta) = fs.symlink_metadata(file)
            && meta.uid != me
        {
            return Err(FileError::Untrusted {
                what: "state file",
                path: file.to_path_buf(),
                reason: format!(
                    "it belongs to another user (uid {}), who may have planted it",
                    meta.uid
                ),
            });
        }
        // A directory that does not exist yet is reported by the write that needs it.
        let Ok(dir) = fs.canonicalize(parent_dir(file)) else {
            continue;
        };
        for d in dir.ancestors() {
            if seen.iter().any(|s| s == d) {
                break;
            }
            seen.push(d.to_path_buf());
            let Ok(meta) = fs.metadata(d) else {
                continue;
            };
            let mode = meta.mode;
            let sticky = mode & 0o1000 != 0;
            let reason = if owned_by_another(meta.uid, me) {
                Some(format!("it belongs to another user (uid {})", meta.uid))
            } else if mode & 0o002 != 0 && !sticky {
                Some(format!(
                    "its mode is {:04o}: every user can write it",
                    mode & 0o7777
                ))
            } else if mode & 0o020 != 0 && !sticky && meta.gid != my_group {
                Some(format!(
                    "its mode is {:04o}: the users of group {} can write it",
                    mode & 0o7777,
                    meta.gid
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(FileError::Untrusted {
                    what: "state directory",
                    path: d.to_path_buf(),
                    reason: format!(
                        "{reason}, so they could swap the files secrets are written to. Keep the state in a directory only you can write (`chmod go-w`), or a sticky one"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use std::fs;

    use crate::fs::RealFs;
    use crate::fs::atomic::{FileKind, write_atomic};

    #[test]
    fn a_planted_journal_is_never_opened_for_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("m.results.journal");
        fs::write(&j, b"").unwrap();
        fs::set_permissions(&j, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(open_secret_new(&RealFs, &j).is_err());
        let link = dir.path().join("link.journal");
        std::os::unix::fs::symlink(&j, &link).unwrap();
        assert!(open_secret_new(&RealFs, &link).is_err());
        fs::remove_file(&j).unwrap();
        // The symlink dangles now: still not followed to create its target.
        assert!(open_secret_new(&RealFs, &link).is_err());
        assert!(!j.exists());
    }

    #[test]
    fn a_secret_file_read_back_must_be_ours_and_0600() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j");
        assert!(
            open_own_secret_file(&RealFs, &j, "journal", 100)
                .unwrap()
                .is_none()
        );
        fs::write(&j, b"{}").unwrap();
        fs::set_permissions(&j, fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_own_secret_file(&RealFs, &j, "journal", 100).unwrap_err();
        assert!(err.to_string().contains("0644"), "{err}");
        fs::set_permissions(&j, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            open_own_secret_file(&RealFs, &j, "journal", 100)
                .unwrap()
                .is_some()
        );
        let err = open_own_secret_file(&RealFs, &j, "journal", 1).unwrap_err();
        assert!(err.to_string().contains("larger"), "{err}");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&j, &link).unwrap();
        let err = open_own_secret_file(&RealFs, &link, "journal", 100).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let f = state.join("m.results.json");
        check_state_place(&RealFs, &[&f]).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_state_place(&RealFs, &[&f]).unwrap_err();
        assert!(err.to_string().contains("every user can write it"), "{err}");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
        check_state_place(&RealFs, &[&f]).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_loose_modes_for_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, b"{}", FileKind::Secret, "secrets").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"x");

        let loose = dir.path().join("loose.json");
        fs::write(&loose, b"{}").unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o666)).unwrap();
        let err = write_atomic(&loose, b"{}", FileKind::Secret, "secrets").unwrap_err();
        assert!(err.to_string().contains("0666"), "{err}");
    }

    #[test]
    fn errors_other_than_a_missing_file_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let under = file.join("x");
        // A missing file is fine to write; a path through a file is not.
        check_secret_target(&RealFs, &dir.path().join("new.json")).unwrap();
        assert!(matches!(
            check_secret_target(&RealFs, &under),
            Err(FileError::Write { .. })
        ));
        assert!(matches!(
            open_own_secret_file(&RealFs, &under, "journal", 100),
            Err(FileError::Read { .. })
        ));
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        let err = check_secret_target(&RealFs, &d).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(RealFs.sync_dir(&dir.path().join("missing")).is_err());
        RealFs.sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_journal_that_appeared_meanwhile_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("m.results.journal");
        fs::write(&j, b"").unwrap();
        let err = open_secret_new(&RealFs, &j).unwrap_err();
        assert!(err.to_string().contains("appeared while this run"), "{err}");
        let fresh = open_secret_new(&RealFs, &dir.path().join("fresh.journal")).unwrap();
        assert_eq!(FsFile::metadata(&fresh).unwrap().mode & 0o777, 0o600);
    }

    #[test]
    fn a_secret_file_read_back_is_refused_through_a_link_and_allowed_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j");
        fs::write(&j, b"{}").unwrap();
        fs::set_permissions(&j, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            open_own_secret_file(&RealFs, &j, "journal", 2)
                .unwrap()
                .is_some()
        );
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&j, &link).unwrap();
        assert!(matches!(
            open_own_secret_file(&RealFs, &link, "journal", 100),
            Err(FileError::Untrusted { .. })
        ));
    }

    #[test]
    fn every_ancestor_of_the_state_is_checked_and_group_writable_needs_our_group() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let state = open.join("state");
        fs::create_dir_all(&state).unwrap();
        let f = state.join("m.results.json");
        fs::write(&f, b"{}").unwrap();
        // An existing state file of ours is fine.
        check_state_place(&RealFs, &[&f]).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_state_place(&RealFs, &[&f]).unwrap_err();
        assert!(err.to_string().contains("open"), "{err}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        // Group-writable: fine for our own group, refused for another's unless sticky.
        let my_group = rustix::process::getegid().as_raw();
        let other = my_group + 4321;
        fs::set_permissions(&state, fs::Permissions::from_mode(0o775)).unwrap();
        check_state_place(&RealFs, &[&f]).unwrap();
        std::os::unix::fs::chown(&state, None, Some(other)).unwrap();
        let err = check_state_place(&RealFs, &[&f]).unwrap_err();
        assert!(err.to_string().contains(&format!("group {other}")), "{err}");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o1775)).unwrap();
        check_state_place(&RealFs, &[&f]).unwrap();
        // Another group that cannot write: fine.
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        check_state_place(&RealFs, &[&f]).unwrap();
        // Another user's directory: refused.
        if euid() == 0 {
            std::os::unix::fs::chown(&state, Some(4321), None).unwrap();
            let err = check_state_place(&RealFs, &[&f]).unwrap_err();
            assert!(err.to_string().contains("uid 4321"), "{err}");
        }
    }
}
