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
//! - What is recorded is a [`Ledger`] (the results, the secrets, the index of token ids),
//!   changed only by its named operations ([`Ledger::import`], [`Ledger::forget`], ...,
//!   and the outcomes the recorder applies); [`invariants::check`] runs when a state is
//!   loaded and before every save, and a save that would break a rule writes nothing.
//! - A secret is durable before anything acts on it: in the journal (sealed when the run
//!   seals) before its outcome is acknowledged, then in the secrets file or a sealed file.
//! - Every file goes through a [`crate::fs::Fs`] and every timestamp and interval comes from a
//!   [`crate::clock::Clock`] (`Store::open_in`), so that a simulation can run this code; the
//!   real ones are the defaults, and `clippy.toml` keeps direct calls out.
//! - Every file that holds a secret is created 0600, never through a symlink, and read back
//!   only when it is ours (see [`crate::fs::trust`]).
//! - Errors name the file and what to do ([`StateError`]).
//!
//! The submodules are private; what callers use is re-exported here, once. Two namespaces
//! stay public: [`export`] (rendering and parsing exports) and [`sealed`] (age-sealed files).

pub mod accounts;
mod error;
pub mod export;
mod journal;
mod json;
mod ledger;
mod lock;
mod paths;
mod recorder;
pub mod sealed;
mod store;

pub(crate) use error::explain_read_only;
pub use error::{StateError, StateFile};
pub use journal::{Gap, HeldSecret, JournalRecord, Outcome};
pub(crate) use json::parse_strict;
pub use ledger::{
    AmbiguousCreates, CreatedAccount, Failure, LearnedRate, LimitKind, PendingCreate,
    PossibleOrphan, RESULTS_VERSION, ResultsFile, SealedFile, SupersededToken, TokenRecord,
    TokenSource, TokenStatus, results_schema_text,
};
pub use ledger::{Applied, ImportFromRefused, ImportRefused, ImportedFrom, Ledger, invariants};
pub use ledger::{SECRETS_VERSION, SecretRecord, SecretsFile, ShippingSecret, SupersededSecret};
pub use lock::StateLock;
pub use paths::StatePaths;
pub use recorder::{OUTCOME_LINGER, Recorder, RecorderHandle};
pub use store::{Recovery, Sealing, Store};

#[cfg(test)]
mod tests;
