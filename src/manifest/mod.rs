//! The manifest: its model, loading from YAML, and validation with source locations.
//!
//! Stages: the YAML text is parsed into a located node tree (`node`), every rule is checked
//! against that tree collecting *all* problems (`validate`), and only a manifest without a
//! single problem becomes a [`Manifest`]. The serde types in [`schema`] describe the same shape
//! for the JSON Schema that editors use; a test keeps the two in step.
//!
//! This module knows nothing of HTTP, terminals or the command line; the base-URL rule it
//! checks `api_url` against is [`crate::endpoint`]'s, the one the client applies.

mod account_settings;
pub mod diagnostic;
mod env;
mod load;
mod node;
pub mod schema;
mod validate;

use std::path::PathBuf;

pub use crate::endpoint::Endpoint;
pub use account_settings::{
    AccountRef, AccountSettings, Utilization, bad_account_name_char, is_api_email,
};
pub use diagnostic::{Diagnostic, ManifestError, Note};
pub use load::{load, load_bytes, load_str, read};
pub use schema::{manifest_schema, manifest_schema_text};

/// The manifest format version this build understands.
pub const SUPPORTED_VERSION: u64 = 1;
/// The longest token name accepted, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 128;
/// The largest manifest file accepted, in bytes (a 100,000-account manifest is about 4 MB).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// A manifest that passed every check: what the user wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it was read from (as given by the user).
    pub path: PathBuf,
    /// The format version (always [`SUPPORTED_VERSION`] once validated).
    pub version: u64,
    /// Where the API is, if the manifest says; the command line and environment can override it.
    pub endpoint: Option<Endpoint>,
    /// Optional execution settings; command-line options win over them.
    pub settings: Settings,
    /// The age recipients secrets are sealed to (from `secrets.recipients` and
    /// `secrets.recipients_file`), each checked; empty for plaintext secrets.
    pub recipients: Vec<String>,
    /// The token names given to accounts that list none.
    pub default_tokens: Vec<String>,
    /// `defaults.rotate_after_days`.
    pub default_rotate_after_days: Option<u32>,
    /// `defaults.create`, as written (entries with `create` already hold it merged).
    pub default_create: Option<AccountSettings>,
    /// The accounts, in manifest order, each with its final list of token names
    /// (its own list, or the defaults).
    pub accounts: Vec<AccountEntry>,
}

impl Manifest {
    /// The number of (account, token name) pairs the manifest asks for.
    pub fn token_count(&self) -> usize {
        self.accounts.iter().map(|a| a.tokens.len()).sum()
    }

    /// The rotation age of an account's tokens, in days: its own, else `defaults`', else
    /// `settings`'; `None`: never rotated by age.
    pub fn rotate_after_days(&self, entry: &AccountEntry) -> Option<u32> {
        entry
            .rotate_after_days
            .or(self.default_rotate_after_days)
            .or(self.settings.rotate_after_days)
    }
}

/// Execution settings from the manifest's `settings` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Most requests in flight.
    pub concurrency: Option<u32>,
    /// Most requests per second.
    pub rate_per_second: Option<f64>,
    /// Most attempts per token before it is reported as failed.
    pub max_attempts: Option<u32>,
    /// Most ambiguous attempts per token (each may have created one that is not recorded).
    pub max_ambiguous: Option<u32>,
    /// Per-request timeout, in seconds.
    pub request_timeout_seconds: Option<f64>,
    /// Recreate tokens `verify` saw revoked.
    pub recreate_revoked: Option<bool>,
    /// Rotate tokens older than this many days (accounts and `defaults` may override it).
    pub rotate_after_days: Option<u32>,
    /// PUT the declared settings of drifted sub accounts (`--update-accounts`).
    pub update_accounts: Option<bool>,
    /// How long to look for a sub account whose create had an ambiguous outcome, in seconds.
    pub account_lookup_seconds: Option<f64>,
}

/// Inclusive bounds for each setting, shared by the validator, the CLI and the schema.
pub mod limits {
    /// `settings.concurrency` / `--concurrency`.
    pub const CONCURRENCY: (u32, u32) = (1, 100);
    /// `settings.rate_per_second` / `--rate`.
    pub const RATE_PER_SECOND: (f64, f64) = (0.1, 1000.0);
    /// `settings.max_attempts`.
    pub const MAX_ATTEMPTS: (u32, u32) = (1, 20);
    /// `settings.max_ambiguous` / `--max-ambiguous`.
    pub const MAX_AMBIGUOUS: (u32, u32) = (1, 20);
    /// `settings.request_timeout_seconds`.
    pub const REQUEST_TIMEOUT_SECONDS: (f64, f64) = (1.0, 600.0);
    /// `rotate_after_days` (settings, defaults, account): up to 100 years.
    pub const ROTATE_AFTER_DAYS: (u32, u32) = (1, 36_500);
    /// `settings.account_lookup_seconds`.
    pub const ACCOUNT_LOOKUP_SECONDS: (f64, f64) = (1.0, 3600.0);
    /// Day counts of a created account (`retention_days`, `snapsearch_retention_days`): the
    /// API's int32, from 1.
    pub const ACCOUNT_DAYS: (u32, u32) = (1, 2_147_483_647);
    /// `utilization.frequency_minutes`.
    pub const FREQUENCY_MINUTES: (u32, u32) = (1, 2_147_483_647);
}

/// One account of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEntry {
    /// How the account is identified.
    pub selector: AccountSelector,
    /// The token names it must have (never empty, no duplicates).
    pub tokens: Vec<String>,
    /// Its own `rotate_after_days`.
    pub rotate_after_days: Option<u32>,
    /// `create`: the settings to create it with when no account has its name (its own
    /// `create` mapping laid over `defaults.create`); `None`: never created by this tool.
    pub create: Option<AccountSettings>,
    /// Where the entry starts in the manifest (1-based).
    pub line: u32,
    /// Column of the entry (1-based).
    pub column: u32,
}

/// How a manifest account is identified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountSelector {
    /// By its numeric account id.
    Id(u32),
    /// By its account name, resolved through the sub-account list.
    Name(String),
}

impl std::fmt::Display for AccountSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountSelector::Id(id) => write!(f, "account {id}"),
            AccountSelector::Name(n) => write!(f, "account named {n:?}"),
        }
    }
}
