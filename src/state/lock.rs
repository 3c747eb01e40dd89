//! The advisory lock that keeps two runs from interleaving writes to the same state files.
//!
//! `flock` on a lock file beside the results file: released by the kernel when the process
//! exits, even on `kill -9`, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::StateError;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock at `path` without waiting, or says who holds it.
    pub fn acquire(path: &Path) -> Result<StateLock, StateError> {
        let werr = |source| StateError::Write {
            kind: "lock",
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(werr)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
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
            Err(std::fs::TryLockError::Error(e)) => return Err(werr(e)),
        }
        // Record who holds it, for the message the next run prints.
        let who = format!(
            "pid {} since {}\n",
            std::process::id(),
            super::now_rfc3339()
        );
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

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
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
}
