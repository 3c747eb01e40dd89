//! The simulator's state and the one decision every API request goes through.
//!
//! [`Shared`] holds what never changes after start (owner token, limits, fault table) beside one
//! mutex over what does ([`State`]: accounts, the tokens created so far, the seeded RNG, the
//! counters and the rate bucket). An API request takes that lock exactly once, in
//! [`Shared::admit`], which counts it, applies the limits, draws its fault, creates its token and
//! renders its answer's body; the answer is written after the lock is released. Keeping it one
//! lock keeps the per-request path short at benchmark rates, and makes the sequence of RNG draws,
//! and so every fault, a function of the seed alone.
//!
//! Every token-creation request is also kept as a [`CreateAttempt`], with what became of its
//! answer ([`AnswerFate`]): the server decides it here, and `server`/`conn` settle it where the
//! answer is withheld by a fault or written to the socket in full (and, later, found unread).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::accounts::{self, AccountRequest, AccountSettings};
use super::config::{FaultRates, RetryAfterMode, SimConfig, SubAccount};
use super::faults::{Fault, FaultTable};
use super::limits::{InFlight, InFlightGuard, TokenBucket};

/// The first token id handed out (ids then increase by one).
const FIRST_TOKEN_ID: i64 = 7000;

/// The first id of a sub account created through the API (ids then increase by one).
const FIRST_ACCOUNT_ID: i64 = 500_000;

/// A sub account as the simulator holds it: for tests, its ground truth.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SimAccount {
    /// `accountId`.
    pub id: i64,
    /// `accountName`.
    pub name: String,
    /// Its settings now.
    pub settings: AccountSettings,
    /// Whether it was created through the API (not configured at start).
    pub created_by_api: bool,
    /// Its log shipping token (`account.accountToken` of `GET …/detailed/{id}`).
    pub shipping_token: String,
}

impl fmt::Debug for SimAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("created_by_api", &self.created_by_api)
            .field("shipping_token", &"[redacted]")
            .finish()
    }
}

/// Retention the account lists report for the owner.
const OWNER_RETENTION_DAYS: i64 = 30;

/// A token the simulator created: its ground truth, secret included.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token id, as answered in `id`.
    pub id: i64,
    /// The sub account it was created for.
    pub account_id: i64,
    /// The token name from the request.
    pub name: String,
    /// The secret, as answered in `token`.
    pub token: String,
    /// `createdAt` as answered, in epoch seconds (the exact value of the number in the body).
    pub created_at: f64,
}

// The secret is the simulator's own ground truth, but it still stays out of logs.
impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What became of the answer to one token-creation request.
///
/// Only [`AnswerFate::Delivered`] means the client can have read the full answer; every other
/// fate leaves a client that cannot know whether a token was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFate {
    /// Not written: the request is still being answered, or its client went away (closed or
    /// reset the connection) before the answer was written, or the server was stopped.
    NotWritten,
    /// A fault withheld it: a 500 after the token was created, a connection dropped before or
    /// after creating, or a 200 whose body was cut short.
    Withheld,
    /// Written to the socket in full, and not found unread since.
    Delivered,
    /// Written in full, but the client's end then reset the connection with it unread (a client
    /// that closes or dies with unread data resets the connection): its client timed out or
    /// was killed before reading it.
    Unread,
}

/// One token-creation request the simulator received (limited, refused or served).
#[derive(Clone, Debug, PartialEq)]
pub struct CreateAttempt {
    /// `accountId` of the request.
    pub account_id: i64,
    /// `name` of the request.
    pub name: String,
    /// The token it created, if it created one.
    pub token_id: Option<i64>,
    /// What became of its answer.
    pub fate: AnswerFate,
    /// When the server decided it.
    pub at: Instant,
}

impl CreateAttempt {
    /// Whether the full answer reached the client's socket and was not found unread.
    pub fn answered(&self) -> bool {
        self.fate == AnswerFate::Delivered
    }
}

/// What the simulator has seen and done, for tests and benchmark reports.
///
/// `requests` counts API requests (not the `/__sim/` admin ones); each other counter counts one
/// kind of answer or fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// API requests received (every answer, limited or not).
    pub requests: u64,
    /// Tokens created, including those behind ambiguous faults.
    pub created: u64,
    /// 429s from the server-side limits (rate or in flight).
    pub limited_429: u64,
    /// Injected 429s.
    pub fault_429: u64,
    /// Injected 503s.
    pub fault_503: u64,
    /// Injected 500s after the token was created.
    pub error_500_after_create: u64,
    /// Connections dropped before the token was created.
    pub dropped_before_create: u64,
    /// Connections dropped after the token was created.
    pub dropped_after_create: u64,
    /// 200 answers cut short after the token was created.
    pub truncated_after_create: u64,
    /// 200 answers delayed by the slow delay after the token was created.
    pub slow_after_create: u64,
    /// 400 answers (malformed requests, region mismatch).
    pub bad_request_400: u64,
    /// 401 answers (no token).
    pub unauthorized_401: u64,
    /// 403 answers (wrong token).
    pub forbidden_403: u64,
    /// 404 answers (unknown sub account or path).
    pub not_found_404: u64,
    /// 405 answers (known path, wrong method).
    pub method_not_allowed_405: u64,
    /// 413 answers (request body over the size cap).
    pub payload_too_large_413: u64,
    /// The most API requests ever handled at once.
    pub max_in_flight_seen: u64,
    /// Sub accounts created (behind ambiguous faults included).
    pub accounts_created: u64,
    /// Sub-account updates (`PUT`) applied.
    pub account_updates: u64,
    /// Sub-account deletions (`DELETE`) received.
    pub account_deletes: u64,
}

/// A request that is answered with an error without reaching the account state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 400 with this message.
    BadRequest(String),
    /// 400, the region-mismatch message.
    RegionMismatch,
    /// 401: no `X-API-TOKEN`.
    Unauthorized,
    /// 403: not the owner token.
    Forbidden,
    /// 404: no such path.
    NoRoute,
    /// 405: the path exists, with these methods.
    MethodNotAllowed(&'static str),
    /// 413: body over the cap.
    PayloadTooLarge,
}

/// What an API request asks for, once routed, authenticated and validated (before the lock).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    /// `POST /v1/api-tokens/sub-account` with a valid body.
    Create {
        /// `accountId`.
        account_id: i64,
        /// `name`.
        name: String,
    },
    /// `GET /v1/account-management/time-based-accounts`.
    TimeBasedAccounts,
    /// `POST /v1/account-management/time-based-accounts` with a valid body.
    CreateAccount(AccountRequest),
    /// `GET …/time-based-accounts/{id}`.
    GetAccount(i64),
    /// `GET …/time-based-accounts/detailed/{id}`.
    DetailedAccount(i64),
    /// `PUT …/time-based-accounts/{id}` with a valid body.
    UpdateAccount(i64, AccountRequest),
    /// `DELETE …/time-based-accounts/{id}`.
    DeleteAccount(i64),
    /// `GET /v1/associated-accounts`.
    AssociatedAccounts,
    /// `GET /v2/whoami` with the owner token.
    WhoAmI,
    /// `GET /v2/whoami` with another token: a sub-account token's probe. Answered for a token
    /// the simulator created and no admin deleted, 403 otherwise.
    WhoAmIToken {
        /// The `X-API-TOKEN` value.
        token: String,
    },
    /// Answered with an error.
    Reject(Rejection),
}

/// What the server answers, decided under the lock.
#[derive(Debug)]
pub(crate) enum Decision {
    /// 429 from a server-side limit; the client should wait this long.
    Limited(Duration),
    /// An error answer from before the state was consulted.
    Reject(Rejection),
    /// 404: the account is not a sub account of the owner. Carries a request id.
    UnknownAccount {
        /// The account id asked for.
        account_id: i64,
        /// The request's sequence number (for `requestId`).
        request: u64,
    },
    /// A 200 with this JSON body (lists, whoami).
    Json(Bytes),
    /// 204, no body (an account update or delete).
    NoContent,
    /// 404 for a sub-account id the owner does not have.
    NoSuchAccount(i64),
    /// 400 `TimeBasedAccount/…` with this message (a request the state refuses).
    IllegalAccountRequest(String),
    /// Injected 429.
    Fault429,
    /// Injected 503.
    Fault503,
    /// Injected drop before creating.
    DropBeforeCreate,
    /// A token was created: its 200 body, and the fault (if any) that spoils the answer.
    Created {
        /// The 200 body.
        body: Bytes,
        /// `None`, or one of the faults that create.
        fault: Option<Fault>,
    },
}

impl Decision {
    /// Whether this answer is spoiled by a fault: the client gets no full answer, and for a
    /// create cannot tell whether a token exists.
    pub(crate) fn withholds_answer(&self) -> bool {
        matches!(
            self,
            Decision::DropBeforeCreate
                | Decision::Created {
                    fault: Some(
                        Fault::ErrorAfterCreate
                            | Fault::DropAfterCreate
                            | Fault::TruncateAfterCreate
                    ),
                    ..
                }
        )
    }
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A decided request: what to answer, how long to wait before answering, and (when admitted) its
/// in-flight slot, to hold until the answer is written.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    /// The answer.
    pub(crate) decision: Decision,
    /// Latency (and jitter, and the slow delay) to wait before answering.
    pub(crate) delay: Duration,
    /// The in-flight slot (`None` when limited).
    pub(crate) slot: Option<InFlightGuard<'a>>,
    /// For a token-creation request, its index in the attempts (to settle its answer's fate).
    pub(crate) attempt: Option<usize>,
}

/// The accounts the simulator serves.
#[derive(Debug)]
struct Accounts {
    owner: SubAccount,
    subs: Vec<SubAccount>,
    sub_ids: HashSet<i64>,
    /// When each account created through the API joins the list.
    listed_from: HashMap<i64, Instant>,
    /// Log shipping tokens, by account id.
    shipping: HashMap<i64, String>,
    next_account_id: i64,
    list_lag: Duration,
}

/// Everything that changes while the simulator runs: behind one mutex.
#[derive(Debug)]
struct State {
    accounts: Accounts,
    tokens: Vec<CreatedToken>,
    /// Secret -> index in `tokens`, for whoami probes.
    by_secret: HashMap<String, usize>,
    /// Ids of tokens deleted as an admin would in the UI.
    deleted: HashSet<i64>,
    next_token_id: i64,
    rng: StdRng,
    counters: Counters,
    bucket: Option<TokenBucket>,
    /// When each API request arrived, in order (for tests of the client's rate).
    arrivals: Vec<Instant>,
    /// Every token-creation request, in order.
    attempts: Vec<CreateAttempt>,
}

/// The state shared by the accept loop, every connection and every [`SimHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    addr: SocketAddr,
    owner_token: String,
    region_mismatch_message: Option<String>,
    max_in_flight: Option<usize>,
    retry_after: RetryAfterMode,
    latency: Duration,
    jitter_nanos: u64,
    slow_delay: Duration,
    faults: FaultTable,
    fault_rates: FaultRates,
    in_flight: InFlight,
    /// Where `createdAt` comes from.
    clock: crate::clock::SharedClock,
    state: Mutex<State>,
    /// Connections accepted and not yet ended.
    connections: AtomicUsize,
}

impl Shared {
    /// The shared state for a (validated) configuration, serving on `addr`.
    pub(crate) fn new(config: &SimConfig, addr: SocketAddr) -> Self {
        let sub_ids = config.sub_accounts.iter().map(|a| a.id).collect();
        Shared {
            addr,
            owner_token: config.owner_token.clone(),
            region_mismatch_message: config.region_mismatch.as_ref().map(|r| {
                format!(
                    "Account region {} differs from current server region {}",
                    r.account_region, r.server_region
                )
            }),
            max_in_flight: config.max_in_flight,
            retry_after: config.retry_after,
            latency: config.latency,
            jitter_nanos: u64::try_from(config.jitter.as_nanos()).unwrap_or(u64::MAX),
            slow_delay: config.slow_delay,
            faults: FaultTable::new(&config.faults),
            fault_rates: config.faults,
            in_flight: InFlight::default(),
            clock: std::sync::Arc::clone(&config.clock),
            state: Mutex::new(State {
                accounts: Accounts {
                    owner: SubAccount {
                        settings: AccountSettings::preset(OWNER_RETENTION_DAYS),
                        ..config.owner.clone()
                    },
                    subs: config.sub_accounts.clone(),
                    sub_ids,
                    listed_from: HashMap::new(),
                    shipping: HashMap::new(),
                    next_account_id: config
                        .sub_accounts
                        .iter()
                        .map(|a| a.id + 1)
                        .chain([FIRST_ACCOUNT_ID, config.owner.id + 1])
                        .max()
                        .unwrap_or(FIRST_ACCOUNT_ID),
                    list_lag: config.account_list_lag,
                },
                tokens: Vec::new(),
                by_secret: HashMap::new(),
                deleted: HashSet::new(),
                next_token_id: FIRST_TOKEN_ID,
                rng: StdRng::seed_from_u64(config.seed),
                counters: Counters::default(),
                bucket: config
                    .max_requests_per_second
                    .map(|rate| TokenBucket::new(rate, Instant::now())),
                arrivals: Vec::new(),
                attempts: Vec::new(),
            }),
            connections: AtomicUsize::new(0),
        }
    }

    /// The address served on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The owner token requests must carry.
    pub(crate) fn owner_token(&self) -> &str {
        &self.owner_token
    }

    /// The region-mismatch message, when the simulator plays another region.
    pub(crate) fn region_mismatch_message(&self) -> Option<&str> {
        self.region_mismatch_message.as_deref()
    }

    /// How 429s carry `Retry-After`.
    pub(crate) fn retry_after_mode(&self) -> RetryAfterMode {
        self.retry_after
    }

    // A panic elsewhere while holding the lock must not take the whole simulator down: the state
    // is a set of counters and appends, consistent at every step, so a poisoned lock is still good.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides an API request: counts it, applies the limits, and for an admitted request decides
    /// (and for a create, performs) what it asked. The only place an API request takes the lock.
    pub(crate) fn admit(&self, call: Call) -> Admission<'_> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.counters.requests += 1;
        let now = Instant::now();
        state.arrivals.push(now);
        let request = state.counters.requests;
        // A create is an attempt whatever is answered, a 429 from a limit included: a client
        // that does not get the answer cannot tell what happened.
        let attempt = match &call {
            Call::Create { account_id, name } => {
                state.attempts.push(CreateAttempt {
                    account_id: *account_id,
                    name: name.clone(),
                    token_id: None,
                    fate: AnswerFate::NotWritten,
                    at: now,
                });
                Some(state.attempts.len() - 1)
            }
            _ => None,
        };
        let mut delay = self.latency;
        if self.jitter_nanos > 0 {
            delay += Duration::from_nanos(state.rng.random_range(0..self.jitter_nanos));
        }

        // Limits first, as a gateway would: a limited request reaches nothing and takes no token.
        if let Some(max) = self.max_in_flight
            && self.in_flight.current() >= max
        {
            state.counters.limited_429 += 1;
            return Admission {
                decision: Decision::Limited(Duration::from_secs(1)),
                delay,
                slot: None,
                attempt,
            };
        }
        if let Some(bucket) = &mut state.bucket
            && let Err(wait) = bucket.try_take(Instant::now())
        {
            state.counters.limited_429 += 1;
            return Admission {
                decision: Decision::Limited(wait),
                delay,
                slot: None,
                attempt,
            };
        }
        // Entering under the lock makes "check, then enter" atomic against other requests;
        // leaving needs no lock (the count only drops).
        let (slot, now_in_flight) = self.in_flight.enter();
        let now_in_flight = u64::try_from(now_in_flight).unwrap_or(u64::MAX);
        state.counters.max_in_flight_seen = state.counters.max_in_flight_seen.max(now_in_flight);

        let decision = match call {
            Call::Reject(rejection) => {
                let counter = match rejection {
                    Rejection::BadRequest(_) | Rejection::RegionMismatch => {
                        &mut state.counters.bad_request_400
                    }
                    Rejection::Unauthorized => &mut state.counters.unauthorized_401,
                    Rejection::Forbidden => &mut state.counters.forbidden_403,
                    Rejection::NoRoute => &mut state.counters.not_found_404,
                    Rejection::MethodNotAllowed(_) => &mut state.counters.method_not_allowed_405,
                    Rejection::PayloadTooLarge => &mut state.counters.payload_too_large_413,
                };
                *counter += 1;
                Decision::Reject(rejection)
            }
            Call::TimeBasedAccounts => Decision::Json(state.accounts.time_based_json(now)),
            Call::CreateAccount(request) => self.decide_create_account(state, request, &mut delay),
            Call::GetAccount(id) => match state.accounts.get(id) {
                Some(a) => Decision::Json(to_json(&accounts::account_json(
                    a.id,
                    &a.name,
                    false,
                    &a.settings,
                ))),
                None => not_an_account(state, id),
            },
            Call::DetailedAccount(id) => state.detailed(id),
            Call::UpdateAccount(id, request) => state.update_account(id, request),
            Call::DeleteAccount(id) => {
                state.counters.account_deletes += 1;
                match state.accounts.get(id) {
                    Some(_) => {
                        state.accounts.subs.retain(|a| a.id != id);
                        state.accounts.sub_ids.remove(&id);
                        Decision::NoContent
                    }
                    None => not_an_account(state, id),
                }
            }
            Call::AssociatedAccounts => Decision::Json(state.accounts.associated_json()),
            Call::WhoAmI => Decision::Json(state.accounts.whoami_json()),
            Call::WhoAmIToken { token } => self.decide_probe(state, &token),
            Call::Create { account_id, name } => {
                let decision = self.decide_create(state, account_id, name, request, &mut delay);
                if let (Decision::Created { .. }, Some(i)) = (&decision, attempt) {
                    state.attempts[i].token_id = state.tokens.last().map(|t| t.id);
                }
                decision
            }
        };
        drop(guard);
        Admission {
            decision,
            delay,
            slot: Some(slot),
            attempt,
        }
    }

    /// A probe with a sub-account token: its account, or 403 once the token is deleted.
    fn decide_probe(&self, state: &mut State, token: &str) -> Decision {
        match state.live_token_account(token) {
            Some(account_id) => {
                // Probes meet the faults that create nothing (429, 503); the others would
                // spoil a create's answer and play as a normal answer here.
                let fault = self.faults.choose(state.rng.random());
                refusal(state, fault)
                    .unwrap_or_else(|| Decision::Json(state.accounts.whoami_of(account_id)))
            }
            None => {
                state.counters.forbidden_403 += 1;
                Decision::Reject(Rejection::Forbidden)
            }
        }
    }

    /// A create for `account_id`: a fault (drawn from the seed) or a new token.
    fn decide_create(
        &self,
        state: &mut State,
        account_id: i64,
        name: String,
        request: u64,
        delay: &mut Duration,
    ) -> Decision {
        if state.accounts.sub_ids.contains(&account_id) {
            let fault = self.faults.choose(state.rng.random());
            if let Some(refused) = refusal(state, fault) {
                return refused;
            }
            match fault {
                Some(Fault::DropBeforeCreate) => {
                    state.counters.dropped_before_create += 1;
                    Decision::DropBeforeCreate
                }
                _ => {
                    debug_assert!(fault.is_none_or(Fault::creates));
                    let counter = match fault {
                        Some(Fault::ErrorAfterCreate) => {
                            Some(&mut state.counters.error_500_after_create)
                        }
                        Some(Fault::DropAfterCreate) => {
                            Some(&mut state.counters.dropped_after_create)
                        }
                        Some(Fault::TruncateAfterCreate) => {
                            Some(&mut state.counters.truncated_after_create)
                        }
                        Some(Fault::SlowAfterCreate) => {
                            *delay += self.slow_delay;
                            Some(&mut state.counters.slow_after_create)
                        }
                        _ => None,
                    };
                    if let Some(counter) = counter {
                        *counter += 1;
                    }
                    let body = state.create(account_id, name, self.clock.now_utc());
                    Decision::Created { body, fault }
                }
            }
        } else {
            state.counters.not_found_404 += 1;
            Decision::UnknownAccount {
                account_id,
                request,
            }
        }
    }

    /// A sub-account create: a fault (drawn from the seed, as for tokens) or a new account.
    fn decide_create_account(
        &self,
        state: &mut State,
        request: AccountRequest,
        delay: &mut Duration,
    ) -> Decision {
        if let Some(unknown) = state.unknown_sharing(&request) {
            state.counters.bad_request_400 += 1;
            return Decision::IllegalAccountRequest(format!(
                "sharing account {unknown} is not an account of this owner"
            ));
        }
        let fault = self.faults.choose(state.rng.random());
        if let Some(refused) = refusal(state, fault) {
            return refused;
        }
        match fault {
            Some(Fault::DropBeforeCreate) => {
                state.counters.dropped_before_create += 1;
                Decision::DropBeforeCreate
            }
            _ => {
                match fault {
                    Some(Fault::ErrorAfterCreate) => state.counters.error_500_after_create += 1,
                    Some(Fault::DropAfterCreate) => state.counters.dropped_after_create += 1,
                    Some(Fault::TruncateAfterCreate) => state.counters.truncated_after_create += 1,
                    Some(Fault::SlowAfterCreate) => {
                        *delay += self.slow_delay;
                        state.counters.slow_after_create += 1;
                    }
                    _ => {}
                }
                let body = state.create_account(request);
                Decision::Created { body, fault }
            }
        }
    }

    /// Every sub account (configured and created), settings and shipping tokens included.
    pub(crate) fn sim_accounts(&self) -> Vec<SimAccount> {
        let state = self.lock();
        state
            .accounts
            .subs
            .iter()
            .map(|a| SimAccount {
                id: a.id,
                name: a.name.clone(),
                settings: a.settings.clone(),
                created_by_api: state.accounts.listed_from.contains_key(&a.id),
                shipping_token: state
                    .accounts
                    .shipping
                    .get(&a.id)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Gives a created sub account a new log shipping token, as an admin could in the UI;
    /// `false` when the account was not created through the API.
    pub(crate) fn rotate_shipping_token(&self, id: i64) -> bool {
        let mut state = self.lock();
        let fresh = uuid_v4(state.rng.random()).replace('-', "");
        match state.accounts.shipping.get_mut(&id) {
            Some(token) => {
                *token = fresh;
                true
            }
            None => false,
        }
    }

    /// Changes a sub account's settings as an admin would in the UI; `false` for no such id.
    pub(crate) fn edit_account(&self, id: i64, edit: impl FnOnce(&mut AccountSettings)) -> bool {
        let mut state = self.lock();
        match state.accounts.subs.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                edit(&mut a.settings);
                true
            }
            None => false,
        }
    }

    /// Settles what became of a create's answer. A fate only moves forward: an answer not yet
    /// written is withheld or delivered; a delivered one may be found unread.
    pub(crate) fn settle_answer(&self, attempt: usize, fate: AnswerFate) {
        let mut state = self.lock();
        let Some(a) = state.attempts.get_mut(attempt) else {
            return;
        };
        let allowed = matches!(
            (a.fate, fate),
            (
                AnswerFate::NotWritten,
                AnswerFate::Withheld | AnswerFate::Delivered
            ) | (AnswerFate::Delivered, AnswerFate::Unread)
        );
        if allowed {
            a.fate = fate;
        }
    }

    /// Every token-creation request so far, in order.
    pub(crate) fn attempts(&self) -> Vec<CreateAttempt> {
        self.lock().attempts.clone()
    }

    /// Counts a connection as open until the guard is dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(Arc::clone(self))
    }

    /// Every token created so far, in creation order.
    pub(crate) fn ground_truth(&self) -> Vec<CreatedToken> {
        self.lock().tokens.clone()
    }

    /// A snapshot of the counters.
    pub(crate) fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Deletes a token as an admin would in the UI: from now on its whoami answers 403. `false`
    /// when no token has this id or it is already deleted.
    pub(crate) fn delete_token(&self, id: i64) -> bool {
        let mut state = self.lock();
        state.tokens.iter().any(|t| t.id == id) && state.deleted.insert(id)
    }

    /// The ids of the tokens deleted so far, ascending.
    pub(crate) fn deleted_tokens(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().deleted.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Adds a sub account; `false` when the id is already known (owner included).
    pub(crate) fn add_sub_account(&self, account: SubAccount) -> bool {
        let mut state = self.lock();
        let accounts = &mut state.accounts;
        if account.id == accounts.owner.id || !accounts.sub_ids.insert(account.id) {
            return false;
        }
        accounts.subs.push(account);
        true
    }
}

impl State {
    /// A sharing id that is neither the owner nor one of its sub accounts.
    fn unknown_sharing(&self, request: &AccountRequest) -> Option<i64> {
        request
            .settings
            .sharing_objects_accounts
            .iter()
            .copied()
            .find(|id| *id != self.accounts.owner.id && !self.accounts.sub_ids.contains(id))
    }

    /// Creates a sub account (a name already taken makes a second one, as on Logz.io) and
    /// renders the create's 200 body, `{"accountId"}`.
    fn create_account(&mut self, request: AccountRequest) -> Bytes {
        let id = self.accounts.next_account_id;
        self.accounts.next_account_id += 1;
        let shipping = uuid_v4(self.rng.random()).replace('-', "");
        self.accounts.shipping.insert(id, shipping);
        self.accounts
            .listed_from
            .insert(id, Instant::now() + self.accounts.list_lag);
        self.accounts.sub_ids.insert(id);
        self.accounts.subs.push(SubAccount {
            id,
            name: request.name,
            settings: request.settings,
        });
        self.counters.accounts_created += 1;
        Bytes::from(format!(r#"{{"accountId":{id}}}"#))
    }

    /// `GET …/detailed/{id}`, with the account's log shipping token.
    fn detailed(&mut self, id: i64) -> Decision {
        let Some(a) = self.accounts.get(id) else {
            return not_an_account(self, id);
        };
        let token = self.accounts.shipping.get(&id).cloned().unwrap_or_else(|| {
            // A configured account's token: fixed by its id, so it is stable between calls.
            format!("{id:032x}")
        });
        let body =
            accounts::detailed_json(self.accounts.owner.id, a.id, &a.name, &a.settings, &token);
        Decision::Json(to_json(&body))
    }

    /// `PUT …/{id}`: the required fields and those the request carries replace the account's.
    fn update_account(&mut self, id: i64, request: AccountRequest) -> Decision {
        if let Some(unknown) = self.unknown_sharing(&request) {
            self.counters.bad_request_400 += 1;
            return Decision::IllegalAccountRequest(format!(
                "sharing account {unknown} is not an account of this owner"
            ));
        }
        let Some(a) = self.accounts.subs.iter_mut().find(|a| a.id == id) else {
            return not_an_account(self, id);
        };
        let new = request.settings;
        let s = &mut a.settings;
        a.name = request.name;
        s.sharing_objects_accounts = new.sharing_objects_accounts;
        for field in request.present {
            match field {
                "email" => s.email = new.email.clone(),
                "retentionDays" => s.retention_days = new.retention_days,
                "maxDailyGB" => s.max_daily_gb = new.max_daily_gb,
                "reservedDailyGB" => s.reserved_daily_gb = new.reserved_daily_gb,
                "isFlexible" => s.is_flexible = new.is_flexible,
                "searchable" => s.searchable = new.searchable,
                "accessible" => s.accessible = new.accessible,
                "docSizeSetting" => s.doc_size_setting = new.doc_size_setting,
                "utilizationSettings" => s.utilization_settings = new.utilization_settings,
                "softLimitGB" => s.soft_limit_gb = new.soft_limit_gb,
                "snapsearchRetentionDays" => {
                    s.snapsearch_retention_days = new.snapsearch_retention_days;
                }
                _ => {}
            }
        }
        self.counters.account_updates += 1;
        Decision::NoContent
    }

    /// The account of a token the simulator created and no admin deleted.
    fn live_token_account(&self, secret: &str) -> Option<i64> {
        let token = &self.tokens[*self.by_secret.get(secret)?];
        (!self.deleted.contains(&token.id)).then_some(token.account_id)
    }

    /// Creates a token and renders its 200 body.
    fn create(&mut self, account_id: i64, name: String, now: time::OffsetDateTime) -> Bytes {
        let id = self.next_token_id;
        self.next_token_id += 1;
        let token = uuid_v4(self.rng.random());
        // Logz.io's reference shows `createdAt` both as `1621858311` and as
        // `1621858311.000000000`: play both, so clients must accept both. The fraction is whole
        // quarter seconds, so `created_at` is exact; note that a JSON parser without correct
        // rounding (serde_json by default) may read `….250000000` one ulp low: clients must not
        // truncate a parsed float to seconds blindly.
        let since_epoch: Duration = (now - time::OffsetDateTime::UNIX_EPOCH)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let secs = since_epoch.as_secs();
        let (created_at_text, created_at) = if self.rng.random_bool(0.5) {
            (secs.to_string(), secs as f64)
        } else {
            let quarters = since_epoch.subsec_millis() / 250;
            (
                format!("{secs}.{:09}", quarters * 250_000_000),
                secs as f64 + f64::from(quarters) * 0.25,
            )
        };
        // Serializing a `str` cannot fail; the fallback keeps the body valid JSON regardless.
        let name_json = serde_json::to_string(&name).unwrap_or_else(|_| "\"\"".to_owned());
        let body = format!(
            r#"{{"id":{id},"name":{name_json},"token":"{token}","createdAt":{created_at_text}}}"#
        );
        self.by_secret.insert(token.clone(), self.tokens.len());
        self.tokens.push(CreatedToken {
            id,
            account_id,
            name,
            token,
            created_at,
        });
        self.counters.created += 1;
        Bytes::from(body)
    }
}

/// One entry of `GET /v1/associated-accounts`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssociatedAccount<'a> {
    account_id: i64,
    account_name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The body of `GET /v2/whoami`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WhoAmI<'a> {
    account_name: &'a str,
    account_id: i64,
}

/// Serializes a body; these types cannot fail to serialize, and an empty array is the fallback.
fn to_json(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"[]"))
}

impl Accounts {
    fn all(&self) -> impl Iterator<Item = (&SubAccount, bool)> {
        std::iter::once((&self.owner, true)).chain(self.subs.iter().map(|a| (a, false)))
    }

    /// The list: every account but those created less than the list lag ago.
    fn time_based_json(&self, now: Instant) -> Bytes {
        let list: Vec<_> = self
            .all()
            .filter(|(account, _)| self.listed_from.get(&account.id).is_none_or(|t| *t <= now))
            .map(|(account, is_owner)| {
                accounts::account_json(account.id, &account.name, is_owner, &account.settings)
            })
            .collect();
        to_json(&list)
    }

    /// A sub account by id (created ones at once: only the list lags).
    fn get(&self, id: i64) -> Option<&SubAccount> {
        self.subs.iter().find(|a| a.id == id)
    }

    fn associated_json(&self) -> Bytes {
        let list: Vec<_> = self
            .all()
            .map(|(account, is_owner)| AssociatedAccount {
                account_id: account.id,
                account_name: &account.name,
                kind: if is_owner {
                    "OWNER_ACCOUNT"
                } else {
                    "SUB_ACCOUNT"
                },
            })
            .collect();
        to_json(&list)
    }

    /// The whoami body of a sub account's token (the account is one the token was created for,
    /// so it is known; an unknown id would answer with an empty name).
    fn whoami_of(&self, account_id: i64) -> Bytes {
        let name = self
            .subs
            .iter()
            .find(|a| a.id == account_id)
            .map_or("", |a| a.name.as_str());
        to_json(&WhoAmI {
            account_name: name,
            account_id,
        })
    }

    fn whoami_json(&self) -> Bytes {
        to_json(&WhoAmI {
            account_name: &self.owner.name,
            account_id: self.owner.id,
        })
    }
}

/// Formats 128 random bits as a version-4, RFC 4122 variant UUID (lowercase, hyphenated).
pub(crate) fn uuid_v4(bits: u128) -> String {
    let v = (bits & !(0xF << 76)) | (0x4 << 76);
    let v = (v & !(0x3 << 62)) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        v >> 96,
        (v >> 80) & 0xFFFF,
        (v >> 64) & 0xFFFF,
        (v >> 48) & 0xFFFF,
        v & 0xFFFF_FFFF_FFFF
    )
}

/// A cheap, cloneable handle to a running simulator's state, usable from any thread.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The address the simulator serves on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr()
    }

    /// The base URL to point a client at: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr())
    }

    /// Every token created so far, in creation order, secrets included.
    pub fn ground_truth(&self) -> Vec<CreatedToken> {
        self.shared.ground_truth()
    }

    /// When each API request arrived (limited or not), in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.lock().arrivals.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Every token-creation request so far, in order, with what became of its answer. A fate
    /// is final once the request's connection has ended (see [`SimHandle::open_connections`]).
    pub fn create_attempts(&self) -> Vec<CreateAttempt> {
        self.shared.attempts()
    }

    /// How many client connections are open. After a client process has exited, waiting for
    /// this to reach 0 waits for the server to have seen every one of its connections end,
    /// and so for every [`AnswerFate`] of its requests to be final.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// The fault rates the simulator was started with.
    pub fn fault_rates(&self) -> FaultRates {
        self.shared.fault_rates
    }

    /// Deletes a token as an admin would in the Logz.io UI: its whoami answers 403 from the
    /// next request on. Returns `false`, changing nothing, for an unknown or deleted id.
    pub fn delete_token(&self, id: i64) -> bool {
        self.shared.delete_token(id)
    }

    /// The ids of the tokens deleted so far, ascending.
    pub fn deleted_tokens(&self) -> Vec<i64> {
        self.shared.deleted_tokens()
    }

    /// Every sub account (configured and created through the API), settings and log shipping
    /// tokens included.
    pub fn accounts(&self) -> Vec<SimAccount> {
        self.shared.sim_accounts()
    }

    /// Gives a created sub account a new log shipping token (as an admin could in the UI);
    /// `false` when the account was not created through the API.
    pub fn rotate_shipping_token(&self, id: i64) -> bool {
        self.shared.rotate_shipping_token(id)
    }

    /// Changes a sub account's settings as an admin would in the UI (to make drift); `false`
    /// when the owner has no sub account with this id.
    pub fn edit_account(&self, id: i64, edit: impl FnOnce(&mut AccountSettings)) -> bool {
        self.shared.edit_account(id, edit)
    }

    /// Adds a sub account of the owner while running (it shows in the lists and accepts tokens
    /// from the next request on). Returns `false`, changing nothing, when the id is already known.
    pub fn add_sub_account(&self, account: SubAccount) -> bool {
        self.shared.add_sub_account(account)
    }
}

/// 404 for an account id the owner does not have, counted.
fn not_an_account(state: &mut State, id: i64) -> Decision {
    state.counters.not_found_404 += 1;
    Decision::NoSuchAccount(id)
}

/// The faults that refuse a request before it reaches anything (a 429 or a 503), counted; any
/// other fault (or none) is for the caller to play.
fn refusal(state: &mut State, fault: Option<Fault>) -> Option<Decision> {
    match fault {
        Some(Fault::RateLimited) => {
            state.counters.fault_429 += 1;
            Some(Decision::Fault429)
        }
        Some(Fault::Unavailable) => {
            state.counters.fault_503 += 1;
            Some(Decision::Fault503)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shared(config: SimConfig) -> Shared {
        Shared::new(&config, SocketAddr::from(([127, 0, 0, 1], 1)))
    }

    fn create(account_id: i64) -> Call {
        Call::Create {
            account_id,
            name: "ci \"quoted\"".to_owned(),
        }
    }

    #[test]
    fn uuid_v4_shape() {
        assert_eq!(uuid_v4(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(uuid_v4(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn create_records_ground_truth_and_renders_the_body() {
        let shared = shared(SimConfig::default());
        let admission = shared.admit(create(160_343));
        let Decision::Created { body, fault: None } = admission.decision else {
            panic!("{:?}", admission.decision)
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let truth = shared.ground_truth();
        assert_eq!(truth.len(), 1);
        assert_eq!(json["id"], 7000);
        assert_eq!(json["name"], "ci \"quoted\"");
        assert_eq!(json["token"], truth[0].token.as_str());
        // serde_json's default float parsing may be one ulp off: compare loosely.
        assert!((json["createdAt"].as_f64().unwrap() - truth[0].created_at).abs() < 1e-3);
        assert!(!format!("{:?}", truth[0]).contains(&truth[0].token));
        let counters = shared.counters();
        assert_eq!((counters.requests, counters.created), (1, 1));
        assert_eq!(counters.max_in_flight_seen, 1);
    }

    #[test]
    fn every_create_is_an_attempt_and_its_fate_only_moves_forward() {
        let shared = shared(SimConfig {
            max_in_flight: Some(1),
            ..SimConfig::default()
        });
        let first = shared.admit(create(160_343));
        // Limited: still an attempt (its client cannot know, if the 429 never arrives).
        let limited = shared.admit(create(160_343));
        assert!(matches!(limited.decision, Decision::Limited(_)));
        let attempts = shared.attempts();
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (attempts[0].token_id, attempts[1].token_id),
            (Some(7000), None)
        );
        assert!(attempts.iter().all(|a| a.fate == AnswerFate::NotWritten));
        let (a, b) = (first.attempt.unwrap(), limited.attempt.unwrap());
        shared.settle_answer(a, AnswerFate::Unread); // not delivered yet: ignored
        shared.settle_answer(a, AnswerFate::Delivered);
        shared.settle_answer(a, AnswerFate::Withheld); // already delivered: ignored
        shared.settle_answer(b, AnswerFate::Withheld);
        shared.settle_answer(b, AnswerFate::Delivered); // already withheld: ignored
        let fates: Vec<_> = shared.attempts().iter().map(|a| a.fate).collect();
        assert_eq!(fates, [AnswerFate::Delivered, AnswerFate::Withheld]);
        shared.settle_answer(a, AnswerFate::Unread);
        assert_eq!(shared.attempts()[0].fate, AnswerFate::Unread);
        assert!(!shared.attempts()[0].answered());
        assert!(shared.admit(Call::WhoAmI).attempt.is_none());
    }

    #[test]
    fn unknown_and_owner_accounts_are_not_found() {
        let shared = shared(SimConfig::default());
        for id in [1, 100_000] {
            let admission = shared.admit(create(id));
            assert!(matches!(
                admission.decision,
                Decision::UnknownAccount { account_id, .. } if account_id == id
            ));
        }
        assert!(shared.ground_truth().is_empty());
        assert_eq!(shared.counters().not_found_404, 2);
        assert!(!shared.add_sub_account(SubAccount::new(100_000, "owner again")));
        assert!(shared.add_sub_account(SubAccount::new(1, "new")));
        let admission = shared.admit(create(1));
        assert!(matches!(admission.decision, Decision::Created { .. }));
    }

    #[test]
    fn in_flight_limit_holds_while_slots_are_held() {
        let shared = shared(SimConfig {
            max_in_flight: Some(1),
            ..SimConfig::default()
        });
        let first = shared.admit(Call::WhoAmI);
        assert!(first.slot.is_some());
        let second = shared.admit(Call::WhoAmI);
        assert!(matches!(second.decision, Decision::Limited(_)));
        assert!(second.slot.is_none());
        drop(first);
        let third = shared.admit(Call::WhoAmI);
        assert!(matches!(third.decision, Decision::Json(_)));
        let counters = shared.counters();
        assert_eq!((counters.requests, counters.limited_429), (3, 1));
        assert_eq!(counters.max_in_flight_seen, 1);
    }

    #[test]
    fn whoami_answers_for_live_sub_tokens_and_403_for_deleted_or_unknown() {
        let shared = shared(SimConfig::default());
        drop(shared.admit(create(160_343)));
        let token = shared.ground_truth()[0].clone();
        let probe = |secret: &str| {
            shared
                .admit(Call::WhoAmIToken {
                    token: secret.to_owned(),
                })
                .decision
        };
        let Decision::Json(body) = probe(&token.token) else {
            panic!("a live token is answered")
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["accountId"], 160_343);
        assert!(json["accountName"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(matches!(
            probe("no-such-token"),
            Decision::Reject(Rejection::Forbidden)
        ));
        assert!(shared.delete_token(token.id));
        assert!(!shared.delete_token(token.id));
        assert!(!shared.delete_token(1));
        assert!(matches!(
            probe(&token.token),
            Decision::Reject(Rejection::Forbidden)
        ));
        assert_eq!(shared.deleted_tokens(), [token.id]);
        assert_eq!(shared.counters().forbidden_403, 2);
    }

    #[test]
    fn same_seed_same_secrets() {
        let a = shared(SimConfig::default());
        let b = shared(SimConfig::default());
        let c = shared(SimConfig {
            seed: 1,
            ..SimConfig::default()
        });
        for sim in [&a, &b, &c] {
            for _ in 0..3 {
                drop(sim.admit(create(160_344)));
            }
        }
        let secrets = |s: &Shared| {
            s.ground_truth()
                .into_iter()
                .map(|t| t.token)
                .collect::<Vec<_>>()
        };
        assert_eq!(secrets(&a), secrets(&b));
        assert_ne!(secrets(&a), secrets(&c));
        let ids: Vec<_> = a.ground_truth().iter().map(|t| t.id).collect();
        assert_eq!(ids, [7000, 7001, 7002]);
    }
}
