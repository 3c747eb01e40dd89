//! What can go wrong with the state files, and what to do about it.
//!
//! Each error names the file and says what happened ([`StateError`]'s message); most also say
//! what to do ([`StateError::help`]). `Display` gives both, the help on its own line in the
//! manifest diagnostics' `= help:` form.

use std::path::PathBuf;

/// Which state file an error is about; `Display` gives the word the messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// The results file.
    Results,
    /// The secrets file.
    Secrets,
    /// The write-ahead journal.
    Journal,
    /// The lock file.
    Lock,
    /// The state as a whole (once a write failed, every later record is refused).
    State,
    /// One of the state files, found changed or foreign.
    StateFile,
    /// A directory holding state files.
    StateDirectory,
    /// A sealed secrets file.
    Sealed,
    /// The directory of sealed secrets files.
    SealedDirectory,
}

impl StateFile {
    /// The word the messages use.
    pub fn word(self) -> &'static str {
        match self {
            StateFile::Results => "results",
            StateFile::Secrets => "secrets",
            StateFile::Journal => "journal",
            StateFile::Lock => "lock file",
            StateFile::State => "state",
            StateFile::StateFile => "state file",
            StateFile::StateDirectory => "state directory",
            StateFile::Sealed => "sealed",
            StateFile::SealedDirectory => "sealed directory",
        }
    }
}

impl std::fmt::Display for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Errors reading or writing the state files. Each names the file and what to do.
#[derive(Debug)]
pub enum StateError {
    /// A state file exists but cannot be read.
    Read {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A state file exists but is not in the expected format. Never treated as empty: that
    /// would create every token again.
    Corrupt {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong, with the line and column where known.
        detail: String,
    },
    /// A state file cannot be written.
    Write {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The secrets file is unsafe to write (a symlink, or readable/writable by others).
    Unsafe {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A state file or directory that another user made, could have made, or could change.
    Untrusted {
        /// What it is ("journal file", "state directory").
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file that is only ever written new exists already.
    Exists {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
    },
    /// Another run holds the lock on these state files.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
    /// The results file was made against another API.
    OtherEndpoint {
        /// The results file.
        path: PathBuf,
        /// The API URL it records.
        recorded: String,
        /// The API URL of this run.
        current: String,
    },
    /// A state file was replaced or edited by another program while this process had it
    /// open; it is not overwritten.
    ChangedUnderfoot {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// The journal that keeps this run's records.
        journal: PathBuf,
    },
    /// A save would break one of the state's rules (`ledger::invariants`); nothing was
    /// written.
    Invariant {
        /// The results file.
        path: PathBuf,
        /// The rule and what breaks it.
        violation: String,
    },
    /// A promise of the state (`super::invariants`: a sealed state continued in plaintext,
    /// another endpoint's journal) would break; nothing was written. The message says what to
    /// do.
    Broken {
        /// The results file.
        path: PathBuf,
        /// What would break.
        violation: super::invariants::promises::Violation,
    },
    /// The recorder stopped (it hit a write error earlier, reported there).
    RecorderGone,
}

impl StateError {
    /// What happened, naming the file.
    fn message(&self) -> String {
        match self {
            StateError::Read { kind, path, source } => {
                format!("cannot read {kind} file {}: {source}", path.display())
            }
            StateError::Corrupt { kind, path, detail } => {
                format!("{kind} file {} is corrupt: {detail}", path.display())
            }
            StateError::Write { kind, path, source } => {
                format!("cannot write {kind} file {}: {source}", path.display())
            }
            StateError::Unsafe { path, reason } => {
                format!("refusing to write secrets to {}: {reason}", path.display())
            }
            StateError::Untrusted { kind, path, reason } => {
                format!("refusing to use {kind} {}: {reason}", path.display())
            }
            StateError::Exists { kind, path } => format!(
                "refusing to replace {kind} file {}: it exists already",
                path.display()
            ),
            StateError::Locked { path, holder } => format!(
                "another logzio-tokens run is using these state files (lock {}{holder})",
                path.display()
            ),
            StateError::OtherEndpoint {
                path,
                recorded,
                current,
            } => format!(
                "results file {} was made against {recorded}, but this run targets {current}",
                path.display()
            ),
            StateError::ChangedUnderfoot { kind, path, .. } => format!(
                "{kind} file {} was replaced or changed by another program during this run; it was not overwritten",
                path.display()
            ),
            StateError::Invariant { path, violation } => format!(
                "refusing to save results file {}: {violation}",
                path.display()
            ),
            StateError::Broken { violation, .. } => violation.to_string(),
            StateError::RecorderGone => {
                "the state recorder has stopped after an earlier error".to_owned()
            }
        }
    }

    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            StateError::Corrupt { .. } => "restore it from a backup or version control; it is never treated as empty, because that would create every token again".to_owned(),
            StateError::Write { .. } => "check that the directory exists, is writable and the disk is not full".to_owned(),
            StateError::Untrusted { .. } => "check who made it and what it holds; move it away if it is not yours, then run again".to_owned(),
            StateError::Exists { .. } => "pass --force to replace it, or choose another path".to_owned(),
            StateError::Locked { .. } => "wait for it to finish; if no run is active, the lock is released automatically when its process exits".to_owned(),
            StateError::OtherEndpoint { .. } => "pass --results/--secrets for a separate pair of files per region or endpoint".to_owned(),
            StateError::ChangedUnderfoot { journal, .. } => format!(
                "everything this run recorded is in the journal {}; find out what changed the file (another run on another machine, a checkout, an editor), then run apply again: it merges the journal into the file as it is then",
                journal.display()
            ),
            StateError::Invariant { .. } => "nothing was written; this is a bug in logzio-tokens (please report it with the command that led here); what a run received is still in its journal".to_owned(),
            StateError::Read { .. }
            | StateError::Unsafe { .. }
            | StateError::Broken { .. }
            | StateError::RecorderGone => {
                return None;
            }
        })
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())?;
        match self.help() {
            Some(help) => write!(f, "\n  = help: {help}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Read { source, .. } | StateError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Adds what to do to an error that says the state's filesystem turned read-only (a remount,
/// or the kernel's own after a disk error).
pub(crate) fn explain_read_only(e: std::io::Error) -> std::io::Error {
    if !crate::fs::errno::is_read_only(&e) {
        return e;
    }
    std::io::Error::new(
        e.kind(),
        format!(
            "{e}; the state directory's filesystem became read-only during the run (remounted, or turned read-only by the kernel after a disk error): no new request is sent; make it writable again (after a filesystem check), then run apply again: it recovers every answer the journal holds and lists the requests that were in flight as possible orphans"
        ),
    )
}

impl From<crate::fs::FileError> for StateError {
    /// A file error of the state, named as the state names its files (`what` is the word of
    /// one of them; see [`StateFile::word`]).
    fn from(e: crate::fs::FileError) -> StateError {
        use crate::fs::FileError;
        let kind = |what: &str| {
            [
                StateFile::Results,
                StateFile::Secrets,
                StateFile::Journal,
                StateFile::Lock,
                StateFile::State,
                StateFile::StateFile,
                StateFile::StateDirectory,
                StateFile::Sealed,
                StateFile::SealedDirectory,
            ]
            .into_iter()
            .find(|k| k.word() == what)
            .unwrap_or(StateFile::StateFile)
        };
        match e {
            FileError::Read { what, path, source } => StateError::Read {
                kind: kind(what),
                path,
                source,
            },
            FileError::Write { what, path, source } => StateError::Write {
                kind: kind(what),
                path,
                source,
            },
            FileError::Unsafe { path, reason } => StateError::Unsafe { path, reason },
            FileError::Untrusted { what, path, reason } => StateError::Untrusted {
                kind: kind(what),
                path,
                reason,
            },
            FileError::Exists { what, path } => StateError::Exists {
                kind: kind(what),
                path,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn state_files_have_the_words_the_messages_use() {
        let words = [
            (StateFile::Results, "results"),
            (StateFile::Secrets, "secrets"),
            (StateFile::Journal, "journal"),
            (StateFile::Lock, "lock file"),
            (StateFile::State, "state"),
            (StateFile::StateFile, "state file"),
            (StateFile::StateDirectory, "state directory"),
            (StateFile::Sealed, "sealed"),
            (StateFile::SealedDirectory, "sealed directory"),
        ];
        for (kind, word) in words {
            assert_eq!(kind.to_string(), word);
        }
    }

    #[test]
    fn the_help_goes_on_its_own_line_and_only_where_there_is_some() {
        let e = StateError::Exists {
            kind: StateFile::Results,
            path: "r.json".into(),
        };
        assert_eq!(
            e.to_string(),
            "refusing to replace results file r.json: it exists already\n  = help: pass --force to replace it, or choose another path"
        );
        let e = StateError::Unsafe {
            path: "s.json".into(),
            reason: "it is a symbolic link".into(),
        };
        assert_eq!(e.help(), None);
        assert_eq!(
            e.to_string(),
            "refusing to write secrets to s.json: it is a symbolic link"
        );
        let e = StateError::Write {
            kind: StateFile::Journal,
            path: "j".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(std::error::Error::source(&e).is_some());
        assert!(
            e.to_string()
                .starts_with("cannot write journal file j: disk full\n  = help: ")
        );
    }

    #[test]
    fn read_only_and_full_disks_are_told_apart_from_other_errors() {
        use std::io::{Error, ErrorKind};
        let erofs = explain_read_only(Error::from_raw_os_error(libc::EROFS));
        assert!(erofs.to_string().contains("became read-only"), "{erofs}");
        let kind = explain_read_only(Error::new(ErrorKind::ReadOnlyFilesystem, "ro"));
        assert!(kind.to_string().contains("became read-only"), "{kind}");
        let other = explain_read_only(Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            other.to_string(),
            Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        assert!(crate::fs::errno::is_out_of_space(
            &Error::from_raw_os_error(libc::ENOSPC)
        ));
        assert!(crate::fs::errno::is_out_of_space(
            &Error::from_raw_os_error(libc::EDQUOT)
        ));
        assert!(crate::fs::errno::is_out_of_space(&Error::new(
            ErrorKind::StorageFull,
            "x"
        )));
        assert!(crate::fs::errno::is_out_of_space(&Error::new(
            ErrorKind::QuotaExceeded,
            "x"
        )));
        assert!(!crate::fs::errno::is_out_of_space(
            &Error::from_raw_os_error(libc::EIO)
        ));
    }
}
