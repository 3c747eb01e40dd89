//! Files written so that a crash never leaves half of one ([`atomic`]), and secret-bearing
//! files that no other user can read, plant or swap ([`trust`]). Used by the state and by the
//! commands that write files of their own (plans, exports); knows nothing of either.
//!
//! Everything the state does to files goes through the [`Fs`] seam ([`seam`]); [`RealFs`] is
//! the real filesystem and the default everywhere.

pub mod atomic;
pub mod errno;
mod real;
pub mod seam;
pub mod trust;

pub use atomic::{FileKind, parent_dir, write_atomic, write_atomic_in, write_atomic_new};
pub use real::RealFs;
pub use seam::{DirEntry, FileType, Fs, FsFile, Meta, OpenHow, TryLock};

use std::path::PathBuf;

/// A file that could not be written or trusted. `what` is the word the messages use for it
/// ("results", "plan", "state directory").
#[derive(Debug)]
pub enum FileError {
    /// A file exists but cannot be read.
    Read {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file cannot be written.
    Write {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Secrets would go where others could read them (a symlink, a loose mode).
    Unsafe {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file or directory that another user made, could have made, or could change.
    Untrusted {
        /// What it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file that is only ever written new exists already.
    Exists {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
}

impl FileError {
    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            FileError::Write { .. } => {
                Some("check that the directory exists, is writable and the disk is not full")
            }
            FileError::Untrusted { .. } => Some(
                "check who made it and what it holds; move it away if it is not yours, then run again",
            ),
            FileError::Exists { .. } => Some("pass --force to replace it, or choose another path"),
            FileError::Read { .. } | FileError::Unsafe { .. } => None,
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read { what, path, source } => {
                write!(f, "cannot read {what} file {}: {source}", path.display())
            }
            FileError::Write { what, path, source } => {
                write!(f, "cannot write {what} file {}: {source}", path.display())
            }
            FileError::Unsafe { path, reason } => {
                write!(
                    f,
                    "refusing to write secrets to {}: {reason}",
                    path.display()
                )
            }
            FileError::Untrusted { what, path, reason } => {
                write!(f, "refusing to use {what} {}: {reason}", path.display())
            }
            FileError::Exists { what, path } => write!(
                f,
                "refusing to replace {what} file {}: it exists already",
                path.display()
            ),
        }?;
        match self.help() {
            Some(help) => write!(f, "\n  = help: {help}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Read { source, .. } | FileError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_read_or_write_error_has_the_os_error_as_its_source() {
        let eio = || std::io::Error::from_raw_os_error(libc::EIO);
        let read = FileError::Read {
            what: "plan",
            path: "p".into(),
            source: eio(),
        };
        let write = FileError::Write {
            what: "plan",
            path: "p".into(),
            source: eio(),
        };
        for e in [read, write] {
            let source = e.source().map(|s| s.to_string());
            assert_eq!(source, Some(eio().to_string()), "{e}");
        }
        let exists = FileError::Exists {
            what: "plan",
            path: "p".into(),
        };
        assert!(exists.source().is_none());
    }
}
