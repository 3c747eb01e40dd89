//! The advisory lock that keeps two runs from interleaving writes to the same state files.
//!
//! `flock` on a lock file beside the results file: released by the kernel when the process
//! exits, even on `kill -9`, so a crash never leaves a stale lock behind.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{StateError, StateFile};
use crate::clock::{Clock, SystemClock};
use crate::fs::{Fs, FsFile, OpenHow, RealFs, TryLock};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StateLock<F: Fs = RealFs> {
    file: F::File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock at `path` without waiting, or says who holds it.
    pub fn acquire(path: &Path) -> Result<StateLock, StateError> {
        StateLock::acquire_in(&RealFs, path, &SystemClock.now_rfc3339())
    }
}

impl<F: Fs> StateLock<F> {
    /// Takes the lock at `path` on the filesystem `fs` without waiting, or says who holds it;
    /// `now` (RFC 3339) goes into the lock file, for the message another run prints.
    pub fn acquire_in(fs: &F, path: &Path, now: &str) -> Result<StateLock<F>, StateError> {
        let werr = |source| StateError::Write {
            kind: StateFile::Lock,
            path: path.to_path_buf(),
            source,
        };
        // Never through a symlink (its target would be truncated below), never a FIFO or a
        // device (the open would block, or write somewhere else), never a file of another user
        // or with other names (hard links): the lock file is truncated each time it is taken.
        let how = OpenHow {
            read: true,
            write: true,
            create: true,
            create_new: false,
            mode: 0o644,
            follow: false,
            nonblock: true,
        };
        let mut file = fs.open(path, &how).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                unsafe_lock(path, "it is a symbolic link")
            } else {
                werr(e)
            }
        })?;
        let meta = file.metadata().map_err(werr)?;
        if !meta.is_file() {
            return Err(unsafe_lock(path, "it is not a regular file"));
        }
        if meta.nlink > 1 {
            return Err(unsafe_lock(
                path,
                "it has other names (hard links), so writing it would change another file",
            ));
        }
        if meta.uid != crate::fs::trust::euid() {
            return Err(unsafe_lock(
                path,
                &format!("it belongs to another user (uid {})", meta.uid),
            ));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLock::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(", held by {holder}")
                    },
                });
            }
            Err(TryLock::Error(e)) => return Err(werr(e)),
        }
        // Record who holds it, for the message the next run prints.
        let who = format!("pid {} since {now}\n", std::process::id());
        file.set_len(0).map_err(werr)?;
        file.rewind().map_err(werr)?;
        file.write_all(who.as_bytes()).map_err(werr)?;
        Ok(StateLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The error for a lock file that must not be used.
fn unsafe_lock(path: &Path, why: &str) -> StateError {
    StateError::Untrusted {
        kind: StateFile::Lock,
        path: path.to_path_buf(),
        reason: format!("{why}, and a lock file is rewritten each time it is taken"),
    }
}

impl<F: Fs> Drop for StateLock<F> {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.lock");
        let first = StateLock::acquire(&p).unwrap();
        let err = StateLock::acquire(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("r.lock"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        StateLock::acquire(&p).unwrap();
    }

    #[test]
    fn a_symlinked_or_hard_linked_lock_never_truncates_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, b"keep me").unwrap();
        let link = dir.path().join("s.lock");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        let err = StateLock::acquire(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(matches!(err, StateError::Untrusted { .. }), "{err:?}");
        let hard = dir.path().join("h.lock");
        std::fs::hard_link(&precious, &hard).unwrap();
        let err = StateLock::acquire(&hard).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    }

    #[test]
    fn the_holder_is_written_while_held_and_erased_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.lock");
        let lock = StateLock::acquire(&p).unwrap();
        assert_eq!(lock.path(), p);
        let held = std::fs::read_to_string(&p).unwrap();
        assert!(
            held.starts_with(&format!("pid {} since ", std::process::id())),
            "{held}"
        );
        drop(lock);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn a_fifo_lock_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.lock");
        // mkfifo is coreutils'; making one in-process would need unsafe code.
        let made = std::process::Command::new("mkfifo").arg(&p).status();
        assert!(made.unwrap().success());
        // Opened read-write, a FIFO does not block the open; it is refused as what it is.
        let err = StateLock::acquire(&p).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
