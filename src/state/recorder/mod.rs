//! The recorder: during `apply`, the single writer of the journal and the state files.
//!
//! The executor sends it intents and outcomes through a [`RecorderHandle`]. It acknowledges
//! each once it is written and fsync'd (an intent survives a power loss or a filesystem turned
//! read-only, so a request sent is always known; a received secret too); records that arrive
//! together share one write and one fsync. An outcome is written at once (from then on it
//! survives the process being killed) and its fsync waits up to [`OUTCOME_LINGER`] to be
//! shared with the next send group's intents, which need one anyway. Every few seconds it
//! rewrites the results and secrets files atomically and starts a fresh journal holding only
//! the intents still in flight. Once any write fails, no new request may start, and the
//! journal is kept as it is for the next run to replay.
//!
//! An intent is acknowledged only once the journal holds the disk room for it and for the
//! outcome of every request in flight (`crate::state::journal::room`): when the disk fills, no new request is
//! sent, and the answers on their way still land in the journal.
//!
//! With recipients set, a received secret is sealed inside its journal record, the state
//! refreshes write the results file only, and the journal stays until the run's one sealed
//! file is written at the end: no plaintext secret reaches the disk.

mod handle;
mod save_clock;
mod task;

pub use handle::{Recorder, RecorderHandle};
pub use task::OUTCOME_LINGER;
