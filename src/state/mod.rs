//! What the tool has recorded: the results file (token ids, no secrets), the secrets file
//! (0600), the write-ahead journal that makes every received secret durable before anything
//! else happens to it, and the lock that keeps two runs from interleaving.
//!
//! This module knows nothing of HTTP: it records what the executor tells it.

pub mod accounts;
mod atomic;
pub mod export;
pub mod journal;
mod lock;
mod paths;
pub mod recorder;
pub mod results;
mod room;
pub mod sealed;
pub mod secrets;
pub mod store;

pub use atomic::{FileKind, parent_dir, write_atomic, write_atomic_new};
pub use journal::{JournalRecord, Outcome};
pub use lock::StateLock;
pub use paths::StatePaths;
pub use recorder::{Recorder, RecorderHandle};
pub use results::{
    CreatedAccount, Failure, LearnedRate, PossibleOrphan, ResultsFile, SupersededToken,
    TokenRecord, TokenStatus,
};
pub use sealed::{Identities, Recipients};
pub use secrets::{SecretRecord, SecretsFile};
pub use store::{Sealing, Store};

use std::path::PathBuf;

/// A (sub account, token name) pair: one token the manifest wants.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TokenKey {
    /// The sub account's id.
    pub account_id: u32,
    /// The token's name.
    pub token_name: String,
}

impl std::fmt::Display for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account_id, self.token_name)
    }
}

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
    /// A saved plan.
    Plan,
    /// An export.
    Export,
    /// The simulator's ground truth dump.
    GroundTruth,
}

impl std::fmt::Display for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateFile::Results => "results",
            StateFile::Secrets => "secrets",
            StateFile::Journal => "journal",
            StateFile::Lock => "lock file",
            StateFile::State => "state",
            StateFile::StateFile => "state file",
            StateFile::StateDirectory => "state directory",
            StateFile::Sealed => "sealed",
            StateFile::Plan => "plan",
            StateFile::Export => "export",
            StateFile::GroundTruth => "ground truth",
        })
    }
}

/// Errors reading or writing the state files. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state file exists but cannot be read.
    #[error("cannot read {kind} file {path}: {source}")]
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
    #[error(
        "{kind} file {path} is corrupt: {detail}\n  = help: restore it from a backup or version control; \
         it is never treated as empty, because that would create every token again"
    )]
    Corrupt {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong, with the line and column where known.
        detail: String,
    },
    /// A state file cannot be written.
    #[error(
        "cannot write {kind} file {path}: {source}\n  = help: check that the directory exists, is writable and the disk is not full"
    )]
    Write {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The secrets file is unsafe to write (a symlink, or readable/writable by others).
    #[error("refusing to write secrets to {path}: {reason}")]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A state file or directory that another user made, could have made, or could change.
    #[error(
        "refusing to use {kind} {path}: {reason}\n  = help: check who made it and what it holds; move it away if it is not yours, then run again"
    )]
    Untrusted {
        /// What it is ("journal file", "state directory").
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file that is only ever written new exists already.
    #[error(
        "refusing to replace {kind} file {path}: it exists already\n  = help: pass --force to replace it, or choose another path"
    )]
    Exists {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
    },
    /// Another run holds the lock on these state files.
    #[error(
        "another logzio-tokens run is using these state files (lock {path}{holder})\n  = help: wait for it to finish; if no run is active, the lock is released automatically when its process exits"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
    /// The results file was made against another API.
    #[error(
        "results file {path} was made against {recorded}, but this run targets {current}\n  = help: pass --results/--secrets for a separate pair of files per region or endpoint"
    )]
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
    #[error(
        "{kind} file {path} was replaced or changed by another program during this run; it was not overwritten\n  = help: everything this run recorded is in the journal {journal}; find out what changed the file (another run on another machine, a checkout, an editor), then run apply again: it merges the journal into the file as it is then"
    )]
    ChangedUnderfoot {
        /// Which file.
        kind: StateFile,
        /// Its path.
        path: PathBuf,
        /// The journal that keeps this run's records.
        journal: PathBuf,
    },
    /// The recorder stopped (it hit a write error earlier, reported there).
    #[error("the state recorder has stopped after an earlier error")]
    RecorderGone,
}

/// How a recorded token came to be, when not created by this tool (`source` in the results
/// file; absent for tokens this tool created).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Recorded by `logzio-tokens import`: created outside the tool.
    Imported,
}

/// Orders two RFC 3339 timestamps by the instant they name, not by their text (`…:58Z` and
/// `…:58.000Z` are the same instant; as text the first sorts after `…:58.500Z`). A timestamp
/// that does not parse sorts by its text, after every one that does.
pub fn rfc3339_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The current time as RFC 3339 with millisecond precision, in UTC.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 (`2026-11-23T20:00:00.123Z`), UTC.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Converts API epoch seconds (integer or decimal) to RFC 3339.
pub fn epoch_to_rfc3339(epoch_seconds: f64) -> String {
    // Round to milliseconds first: a decimal like 1621858311.000000000 may parse as
    // 1621858310.9999998, which must not become the second before.
    let nanos = (epoch_seconds * 1e3).round() as i128 * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            t.format(&fmt).unwrap_or_else(|_| epoch_seconds.to_string())
        }
        Err(_) => epoch_seconds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_conversion_accepts_integer_and_decimal() {
        assert_eq!(epoch_to_rfc3339(1621858311.0), "2021-05-24T12:11:51Z");
        assert_eq!(
            epoch_to_rfc3339(1621858311.000000000),
            "2021-05-24T12:11:51Z"
        );
    }

    #[test]
    fn timestamps_compare_as_instants() {
        use std::cmp::Ordering::*;
        assert_eq!(
            rfc3339_cmp("2026-11-23T19:59:58Z", "2026-11-23T19:59:58.000Z"),
            Equal
        );
        assert_eq!(
            rfc3339_cmp("2026-11-23T19:59:58Z", "2026-11-23T19:59:58.500Z"),
            Less
        );
        assert_eq!(
            rfc3339_cmp("2026-11-23T21:00:00+01:00", "2026-11-23T19:59:59Z"),
            Greater
        );
        assert_eq!(rfc3339_cmp("garbage", "2026-11-23T19:59:58Z"), Greater);
    }

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
            (StateFile::Plan, "plan"),
            (StateFile::Export, "export"),
            (StateFile::GroundTruth, "ground truth"),
        ];
        for (kind, word) in words {
            assert_eq!(kind.to_string(), word);
        }
    }

    #[test]
    fn now_is_the_current_instant_in_utc_with_milliseconds() {
        let before = time::OffsetDateTime::now_utc();
        let now = now_rfc3339();
        let after = time::OffsetDateTime::now_utc();
        let parsed =
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{now:?} is not RFC 3339: {e}"));
        assert!(now.ends_with('Z') && now.len() == "2026-11-23T20:00:00.500Z".len());
        // Truncated to the millisecond, so up to 1 ms before `before`.
        assert!(parsed > before - time::Duration::milliseconds(1) && parsed <= after);
    }

    #[test]
    fn rfc3339_has_milliseconds() {
        let t = time::macros::datetime!(2026-11-23 20:00:00.5 UTC);
        assert_eq!(format_rfc3339(t), "2026-11-23T20:00:00.500Z");
    }
}
