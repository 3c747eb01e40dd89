//! The simulator's configuration: who owns the account, which sub accounts exist, which limits and
//! faults to play, and the seed that makes a run repeatable.
//!
//! Everything here is plain data with defaults that match the project's examples, so tests, the
//! `simulate` command and `apply --simulate` describe a simulator in one struct literal.
//! [`SimConfig::validate`] rejects values the server could not honour (a probability above 1, a
//! zero rate) before anything is bound.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The owner token the simulator accepts unless configured otherwise.
pub const DEFAULT_OWNER_TOKEN: &str = "sim-owner-token";

/// The default owner (main) account id.
pub const DEFAULT_OWNER_ID: i64 = 100_000;

/// The default owner (main) account name.
pub const DEFAULT_OWNER_NAME: &str = "acme-main";

/// How long a `slow_after_create` fault waits by default: longer than any sane client timeout.
pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(120);

/// The default sub accounts, as `(id, name)`: `examples/quickstart.yaml` refers to them.
const DEFAULT_SUB_ACCOUNTS: [(i64, &str); 6] = [
    (160_343, "payments-prod"),
    (160_344, "payments-staging"),
    (160_345, "search-prod"),
    (160_346, "search-staging"),
    (160_347, "data-platform"),
    (160_348, "ml-sandbox"),
];

/// The sub accounts a default simulator serves (the ones the project's examples use).
pub fn default_sub_accounts() -> Vec<SubAccount> {
    DEFAULT_SUB_ACCOUNTS
        .iter()
        .map(|&(id, name)| SubAccount::new(id, name))
        .collect()
}

/// An account the simulator knows: the owner, or one of its sub accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAccount {
    /// The account id (`accountId` in the API).
    pub id: i64,
    /// The account name (`accountName` in the API).
    pub name: String,
    /// Its settings, as the sub-account endpoints show them.
    pub settings: super::accounts::AccountSettings,
}

impl SubAccount {
    /// An account with this id and name.
    pub fn new(id: i64, name: impl Into<String>) -> Self {
        SubAccount {
            id,
            name: name.into(),
            settings: super::accounts::AccountSettings::preset(7),
        }
    }
}

/// Play a server of another region: every authenticated API call answers
/// `Account region <account_region> differs from current server region <server_region>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionMismatch {
    /// The region the account really lives in (the one the user should pass as `--region`).
    pub account_region: String,
    /// The region this server pretends to be.
    pub server_region: String,
}

/// Whether and how a 429 from a server-side limit (or an injected 429) carries `Retry-After`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryAfterMode {
    /// No `Retry-After` header (the client must back off on its own). The default: Logz.io does not
    /// document the header, so a faithful stand-in does not promise it.
    #[default]
    None,
    /// `Retry-After: N`, whole seconds, at least 1.
    Seconds,
    /// `Retry-After: <IMF-fixdate>`.
    HttpDate,
}

/// Probabilities of the injected faults, each in `0.0..=1.0`, summing to at most 1.
///
/// They apply to token-creation calls only, after authentication and validation succeeded: one
/// seeded draw per call picks at most one fault.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    /// 429 `Too Many Requests` (plain text); no token is created.
    pub rate_limited: f64,
    /// 503 `{"message":"Service Unavailable"}`; no token is created.
    pub unavailable: f64,
    /// The token is created, then the answer is 500 `{"message":"Internal Server Error"}`.
    pub error_after_create: f64,
    /// No token is created and the connection is closed without a response byte.
    pub drop_before_create: f64,
    /// The token is created and the connection is closed without a response byte.
    pub drop_after_create: f64,
    /// The token is created; the 200 head and part of the body are written, then the connection is
    /// closed.
    pub truncate_after_create: f64,
    /// The token is created; the normal 200 comes only after [`SimConfig::slow_delay`].
    pub slow_after_create: f64,
}

impl FaultRates {
    /// The rates with their names, in the order the fault draw walks them.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("rate_limited", self.rate_limited),
            ("unavailable", self.unavailable),
            ("error_after_create", self.error_after_create),
            ("drop_before_create", self.drop_before_create),
            ("drop_after_create", self.drop_after_create),
            ("truncate_after_create", self.truncate_after_create),
            ("slow_after_create", self.slow_after_create),
        ]
    }

    /// The same probability for every fault kind (handy for soak runs and demos).
    pub fn uniform(rate: f64) -> Self {
        FaultRates {
            rate_limited: rate,
            unavailable: rate,
            error_after_create: rate,
            drop_before_create: rate,
            drop_after_create: rate,
            truncate_after_create: rate,
            slow_after_create: rate,
        }
    }
}

/// Everything a [`Simulator`](super::Simulator) is started with.
#[derive(Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// The owner account's API token, expected in `X-API-TOKEN` (default `sim-owner-token`).
    pub owner_token: String,
    /// The main (owner) account (default id 100000, `acme-main`).
    pub owner: SubAccount,
    /// The owner's sub accounts (default: [`default_sub_accounts`]).
    pub sub_accounts: Vec<SubAccount>,
    /// When set, every authenticated API call answers the region-mismatch error.
    pub region_mismatch: Option<RegionMismatch>,
    /// Server-side request rate limit (token bucket), answered with a plain-text 429.
    pub max_requests_per_second: Option<f64>,
    /// Server-side limit on requests handled at once, answered with a plain-text 429.
    pub max_in_flight: Option<usize>,
    /// Whether and how 429 answers carry `Retry-After` (default: not at all).
    pub retry_after: RetryAfterMode,
    /// Fixed latency added to every API answer.
    pub latency: Duration,
    /// Plus a uniformly random extra latency in `0..jitter`.
    pub jitter: Duration,
    /// Fault probabilities for token-creation calls.
    pub faults: FaultRates,
    /// How long a `slow_after_create` fault holds its answer (default 120 s).
    pub slow_delay: Duration,
    /// Seed of the one RNG behind faults, jitter, secrets and the `createdAt` shape.
    pub seed: u64,
    /// How long a sub account created through the API stays out of the account list (reads
    /// lag writes on Logz.io); `GET …/{id}` knows it at once.
    pub account_list_lag: Duration,
    /// Where `createdAt` of a created token comes from (default: the system clock; a
    /// simulation passes its own).
    pub clock: crate::clock::SharedClock,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            owner_token: DEFAULT_OWNER_TOKEN.to_owned(),
            owner: SubAccount::new(DEFAULT_OWNER_ID, DEFAULT_OWNER_NAME),
            sub_accounts: default_sub_accounts(),
            region_mismatch: None,
            max_requests_per_second: None,
            max_in_flight: None,
            retry_after: RetryAfterMode::None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            faults: FaultRates::default(),
            slow_delay: DEFAULT_SLOW_DELAY,
            seed: 0,
            account_list_lag: Duration::ZERO,
            clock: crate::clock::SystemClock::shared(),
        }
    }
}

// The owner token is a credential in the tool's eyes: keep it out of `Debug`, as everywhere else.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("owner_token", &"[redacted]")
            .field("owner", &self.owner)
            .field("sub_accounts", &self.sub_accounts)
            .field("region_mismatch", &self.region_mismatch)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("max_in_flight", &self.max_in_flight)
            .field("retry_after", &self.retry_after)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("faults", &self.faults)
            .field("slow_delay", &self.slow_delay)
            .field("seed", &self.seed)
            .field("account_list_lag", &self.account_list_lag)
            .field("clock", &self.clock)
            .finish()
    }
}

/// A configuration the simulator cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimConfigError {
    /// A fault probability outside `0.0..=1.0` (or not a number).
    #[error("fault rate `{name}` is {value}, but it must be between 0 and 1")]
    FaultRateOutOfRange {
        /// The [`FaultRates`] field.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// Fault probabilities that add up to more than 1.
    #[error(
        "the fault rates add up to {sum}, but at most one fault is drawn per request: the sum must be at most 1"
    )]
    FaultRatesSumAboveOne {
        /// The sum of all rates.
        sum: f64,
    },
    /// A request rate that is zero, negative or not finite.
    #[error("max_requests_per_second is {0}, but it must be a positive number")]
    BadRate(f64),
    /// An in-flight limit of zero (nothing could ever be served).
    #[error("max_in_flight must be at least 1")]
    ZeroInFlight,
    /// An empty owner token (a missing header could not be told from it).
    #[error("the owner token must not be empty")]
    EmptyOwnerToken,
    /// Two accounts (owner included) with the same id.
    #[error("account id {0} is configured twice")]
    DuplicateAccount(i64),
}

impl SimConfig {
    /// Checks that the server can honour this configuration.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let mut sum = 0.0;
        for (name, value) in self.faults.named() {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::FaultRateOutOfRange { name, value });
            }
            sum += value;
        }
        // A little slack so that e.g. 7 × (1/7) is accepted despite rounding.
        if sum > 1.0 + 1e-9 {
            return Err(SimConfigError::FaultRatesSumAboveOne { sum });
        }
        if let Some(rate) = self.max_requests_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(SimConfigError::BadRate(rate));
        }
        if self.max_in_flight == Some(0) {
            return Err(SimConfigError::ZeroInFlight);
        }
        if self.owner_token.is_empty() {
            return Err(SimConfigError::EmptyOwnerToken);
        }
        let mut ids = std::collections::HashSet::new();
        for account in std::iter::once(&self.owner).chain(&self.sub_accounts) {
            if !ids.insert(account.id) {
                return Err(SimConfigError::DuplicateAccount(account.id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_examples() {
        let config = SimConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.sub_accounts.len(), 6);
        assert_eq!(
            config.sub_accounts[0],
            SubAccount::new(160_343, "payments-prod")
        );
        assert!(!format!("{config:?}").contains(DEFAULT_OWNER_TOKEN));
    }

    #[test]
    fn rejects_what_cannot_be_honoured() {
        let bad_rate = SimConfig {
            faults: FaultRates {
                unavailable: 1.5,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        };
        assert!(matches!(
            bad_rate.validate(),
            Err(SimConfigError::FaultRateOutOfRange {
                name: "unavailable",
                ..
            })
        ));
        let over_one = SimConfig {
            faults: FaultRates::uniform(0.2),
            ..SimConfig::default()
        };
        assert!(matches!(
            over_one.validate(),
            Err(SimConfigError::FaultRatesSumAboveOne { .. })
        ));
        let sevenths = SimConfig {
            faults: FaultRates::uniform(1.0 / 7.0),
            ..SimConfig::default()
        };
        assert_eq!(sevenths.validate(), Ok(()));
        let zero_rps = SimConfig {
            max_requests_per_second: Some(0.0),
            ..SimConfig::default()
        };
        assert_eq!(zero_rps.validate(), Err(SimConfigError::BadRate(0.0)));
        let duplicate = SimConfig {
            sub_accounts: vec![SubAccount::new(DEFAULT_OWNER_ID, "again")],
            ..SimConfig::default()
        };
        assert_eq!(
            duplicate.validate(),
            Err(SimConfigError::DuplicateAccount(DEFAULT_OWNER_ID))
        );
    }
}
