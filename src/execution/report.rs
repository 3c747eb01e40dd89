//! What a run tells the outside: live counters, item events for observers, and the report
//! at the end. Nothing here carries a secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::api::ApiError;
use crate::key::TokenKey;
use crate::state::{Failure, StateError};

/// Live counters, read by progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    /// Items in the plan.
    pub total: AtomicU64,
    /// Items created and recorded: tokens, and sub accounts (created or found by a lookup).
    pub created: AtomicU64,
    /// Items that failed for good.
    pub failed: AtomicU64,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Requests sent.
    pub attempts: AtomicU64,
    /// Retries scheduled.
    pub retries: AtomicU64,
    /// 429 answers.
    pub rate_limited: AtomicU64,
    /// Ambiguous outcomes (possible orphans).
    pub ambiguous: AtomicU64,
}

impl Stats {
    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// How an item ended, for observers (never carries a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// Created and recorded.
    Created {
        /// The new token's id.
        token_id: i64,
    },
    /// Failed for good.
    Failed {
        /// The last HTTP status.
        http_status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// How a sub account item ended, for observers (never carries a secret: the shipping token
/// is not part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountResult {
    /// Created by this run, its id durable.
    Created {
        /// The new account's id.
        account_id: u32,
    },
    /// Found by a lookup after an ambiguous create (this run's or an interrupted run's).
    Adopted {
        /// The account's id.
        account_id: u32,
    },
    /// Not created (or not known to be: the error says whether it may exist).
    Failed {
        /// The last HTTP status, when an answer came.
        http_status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// Something that happened to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemEvent {
    /// A sub account item is done.
    AccountDone {
        /// The account's name.
        name: String,
        /// Creates sent.
        attempts: u32,
        /// How it ended.
        result: AccountResult,
    },
    /// A sub account create's outcome was ambiguous: the account may exist (a lookup follows).
    AccountAmbiguous {
        /// The account's name.
        name: String,
        /// What happened.
        detail: String,
    },
    /// The item is done.
    Done {
        /// Which token.
        key: TokenKey,
        /// Attempts made.
        attempts: u32,
        /// How it ended.
        result: ItemResult,
    },
    /// An attempt's outcome was ambiguous: a token may exist.
    Ambiguous {
        /// Which token.
        key: TokenKey,
        /// What happened.
        detail: String,
    },
    /// An attempt will be retried.
    Retry {
        /// Which token.
        key: TokenKey,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        reason: String,
    },
}

/// Receives item events (progress displays, JSON output). Must be quick.
pub trait Observer: Send + Sync {
    /// An event.
    fn event(&self, event: &ItemEvent);
}

/// Why a run stopped. The errors stay typed (shared, since a report is cloned); the CLI
/// renders them once.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// Every item was tried to the end.
    Completed,
    /// An error that stops the run (401, 403, wrong region, a redirect).
    Fatal(Arc<ApiError>),
    /// The state could not be written.
    State(Arc<StateError>),
    /// `--fail-fast` and an item failed.
    FailFast,
    /// Ctrl-C.
    Interrupted,
    /// Too many recent answers were ambiguous: the service answers errors after creating.
    AmbiguityBreaker(String),
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Why it stopped.
    pub stop: StopReason,
    /// Tokens created and recorded.
    pub created: u64,
    /// Items that failed for good.
    pub failures: Vec<Failure>,
    /// Items not tried because the run stopped early.
    pub not_attempted: u64,
    /// Requests sent.
    pub attempts: u64,
    /// Retries.
    pub retries: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Ambiguous outcomes.
    pub ambiguous: u64,
    /// Items not re-sent because they used up their ambiguous attempts.
    pub ambiguity_exhausted: u64,
    /// Requests abandoned in flight when the drain timed out.
    pub abandoned: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The effective rate at the end.
    pub final_rate: f64,
    /// How the sub-account items went.
    pub accounts: super::accounts::AccountsReport,
}

impl StopReason {
    /// Whether the run went to its end (no stop reason).
    pub fn is_completed(&self) -> bool {
        matches!(self, StopReason::Completed)
    }
}

impl std::fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}
