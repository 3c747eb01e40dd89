//! What the tool has recorded: the results file (token ids, no secrets), the secrets file
//! (0600) or sealed files, the write-ahead journal that makes every received secret durable
//! before anything else happens to it, and the lock that keeps two runs from interleaving.
//!
//! This module knows nothing of HTTP: it records what the executor tells it.
//!
//! # The contract
//!
//! - [`Store`] is the state of one results file: [`Store::open`] takes the lock, reads the
//!   files and replays a journal a killed run left; [`Store::save`] writes them back
//!   atomically. During `apply` the [`Recorder`] owns the store: it is the single writer of
//!   the journal and the files, and the executor talks to it through a [`RecorderHandle`].
//! - A secret is durable before anything acts on it: in the journal (sealed when the run
//!   seals) before its outcome is acknowledged, then in the secrets file or a sealed file.
//! - Every file that holds a secret is created 0600, never through a symlink, and read back
//!   only when it is ours (see [`crate::fs::trust`]).
//! - Errors name the file and what to do ([`StateError`]).
//!
//! The submodules are private; what callers use is re-exported here, once. Two namespaces
//! stay public: [`export`] (rendering and parsing exports) and [`sealed`] (age-sealed files).

mod error;
pub mod export;
mod journal;
mod json;
pub mod ledger;
mod lock;
mod paths;
mod recorder;
mod results;
pub mod sealed;
mod secrets;
mod store;

pub(crate) use error::explain_read_only;
pub use error::{StateError, StateFile};
pub use journal::{Gap, HeldSecret, JournalRecord, Outcome};
pub use ledger::{Applied, ImportRefused, Ledger};
pub use lock::StateLock;
pub use paths::StatePaths;
pub use recorder::{OUTCOME_LINGER, Recorder, RecorderHandle};
pub use results::{
    Failure, LearnedRate, LimitKind, PossibleOrphan, RESULTS_VERSION, ResultsFile, SupersededToken,
    TokenRecord, TokenSource, TokenStatus, results_schema_text,
};
pub use secrets::{SECRETS_VERSION, SecretRecord, SecretsFile, SupersededSecret};
pub use store::{Recovery, Sealing, Store};

#[cfg(test)]
mod tests;
