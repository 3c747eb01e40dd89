//! The simulated API behind the executor's `SendCreate` port: the simulator's own state and
//! fault draw ([`InProcess`]), its latency played on tokio's paused clock, its answers mapped to
//! what the real client returns for the same bytes. Every call is two network events (the
//! request reaches the server; its answer reaches the client); the driver may crash the run or
//! press Ctrl-C at any event.
//!
//! The sub-account side (create, the list read by lookups, the shipping token's read) goes
//! through the same server state and fault draw. The list's lag is played here, on the paused
//! clock: each created account joins the list a seeded time after its create, on a timeline
//! that runs on across the runs of a scenario (a run that resumes right after a crash may
//! still not see it). Reads fail with a seeded 503 or a cut body now and then.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use logzio_tokens::api::{AccountRequest, ApiError, CreatedToken, SubAccountInfo};
use logzio_tokens::execution::{Cancel, SendCreate};
use logzio_tokens::key::TokenKey;
use logzio_tokens::secret::Secret;
use logzio_tokens::simulator::{CreateAnswer, InProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

/// What the driver does at one network event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEvent {
    /// The process dies: nothing after this event happens.
    Crash,
    /// Ctrl-C: the run drains and saves.
    CtrlC,
}

/// How long a stall holds every answer: past the recorder's save interval (3 s), so that the
/// next outcome finds a checkpoint due. The recorder's clock is tokio's, paused: the stall
/// costs no real time.
pub const STALL: Duration = Duration::from_millis(3_100);

/// What a request does after a network event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Go,
    Dead,
}

/// The network as the driver controls it: counts events, stops the run at one.
#[derive(Debug, Default)]
pub struct Net {
    events: Mutex<u64>,
    stop_at: Mutex<Option<(u64, AtEvent)>>,
    stall_at: Mutex<Option<u64>>,
    /// Until when the server holds every answer (a stall).
    held_until: Mutex<Option<tokio::time::Instant>>,
    /// Woken when the run crashes.
    pub crashed: Notify,
    crashed_flag: Mutex<bool>,
    cancel: Mutex<Option<Cancel>>,
    /// The trace: every network event, in order.
    pub trace: Mutex<Vec<String>>,
    /// The paused time of the runs before this one (the list lag's timeline).
    before: Mutex<Duration>,
    /// This run's first and latest instants seen by the account side.
    run_span: Mutex<Option<(tokio::time::Instant, tokio::time::Instant)>>,
}

impl Net {
    /// Stops the next run at its `n`-th network event (1-based).
    pub fn stop_at(&self, stop: Option<(u64, AtEvent)>, stall: Option<u64>, cancel: Cancel) {
        *self.events.lock().unwrap() = 0;
        *self.stop_at.lock().unwrap() = stop;
        *self.stall_at.lock().unwrap() = stall;
        *self.held_until.lock().unwrap() = None;
        *self.crashed_flag.lock().unwrap() = false;
        *self.cancel.lock().unwrap() = Some(cancel);
        if let Some((first, last)) = self.run_span.lock().unwrap().take() {
            *self.before.lock().unwrap() += last - first;
        }
    }

    /// Where the scenario's timeline is now: the paused time of the runs so far.
    fn timeline(&self) -> Duration {
        let now = tokio::time::Instant::now();
        let mut span = self.run_span.lock().unwrap();
        let (first, last) = span.get_or_insert((now, now));
        *last = now.max(*last);
        *self.before.lock().unwrap() + (now - *first)
    }

    /// Whether the current run crashed.
    pub fn has_crashed(&self) -> bool {
        *self.crashed_flag.lock().unwrap()
    }

    /// Counts one event: whether the request goes on, stalls first, or never returns (the
    /// process crashed here or before).
    fn event(&self, what: &str, dead: bool) -> Step {
        if self.has_crashed() || dead {
            return Step::Dead;
        }
        let n = {
            let mut e = self.events.lock().unwrap();
            *e += 1;
            *e
        };
        self.trace.lock().unwrap().push(format!("net {n} {what}"));
        let stall = *self.stall_at.lock().unwrap() == Some(n);
        if stall {
            self.trace.lock().unwrap().push(format!("STALL at net {n}"));
            *self.held_until.lock().unwrap() = Some(tokio::time::Instant::now() + STALL);
        }
        match *self.stop_at.lock().unwrap() {
            Some((at, AtEvent::Crash)) if at == n => {
                *self.crashed_flag.lock().unwrap() = true;
                self.trace.lock().unwrap().push(format!("CRASH at net {n}"));
                self.crashed.notify_one();
                Step::Dead
            }
            Some((at, AtEvent::CtrlC)) if at == n => {
                self.trace
                    .lock()
                    .unwrap()
                    .push(format!("CTRL-C at net {n}"));
                if let Some(c) = self.cancel.lock().unwrap().as_ref() {
                    c.cancel();
                }
                Step::Go
            }
            _ => Step::Go,
        }
    }
}

/// The simulated API.
#[derive(Debug, Clone)]
pub struct SimApi {
    /// The server.
    pub sim: InProcess,
    /// The network.
    pub net: Arc<Net>,
    /// What the recorder acknowledged (shared by every endpoint of a scenario).
    pub acks: Arc<Mutex<super::watch::Acks>>,
    /// The disk: once it crashed, the process is dead and sends nothing more.
    pub fs: super::fs::SimFs,
    /// The account side's list lag and read faults.
    pub accounts: Arc<AccountSide>,
}

/// The account side's own seeded choices: each new account's list lag, the reads that fail.
#[derive(Debug)]
pub struct AccountSide {
    /// Drawn from the scenario's seed.
    rng: Mutex<StdRng>,
    /// The longest list lag (each account's is drawn up to it).
    pub max_lag: Duration,
    /// The share of list and shipping-token reads answered 503 or cut short.
    pub read_faults: f64,
    /// When (on the timeline) each created account joins the list.
    listed_from: Mutex<BTreeMap<i64, Duration>>,
}

impl AccountSide {
    /// The account side of a server, from `seed`.
    pub fn new(seed: u64, max_lag: Duration, read_faults: f64) -> AccountSide {
        AccountSide {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            max_lag,
            read_faults,
            listed_from: Mutex::new(BTreeMap::new()),
        }
    }

    fn lag(&self) -> Duration {
        let most = u64::try_from(self.max_lag.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.lock().unwrap().random_range(0..=most))
    }

    /// A read's fault: 503, a body cut short, or none.
    fn read_fault(&self) -> Option<&'static str> {
        let mut rng = self.rng.lock().unwrap();
        if self.read_faults > 0.0 && rng.random_bool(self.read_faults) {
            Some(if rng.random_bool(0.5) { "503" } else { "cut" })
        } else {
            None
        }
    }
}

const URL: &str = "http://sim.invalid/v1/api-tokens/sub-account";
const ACCOUNTS_URL: &str = "http://sim.invalid/v1/account-management/time-based-accounts";

fn status(url: &str, status: u16, message: &str) -> ApiError {
    ApiError::Status {
        url: url.into(),
        status,
        message: message.into(),
        retry_after: None,
    }
}

fn undecodable(url: &str, e: &serde_json::Error) -> ApiError {
    ApiError::Undecodable {
        url: url.into(),
        status: 200,
        detail: format!("not JSON at column {}", e.column()),
    }
}

/// What the real client returns for an account create's answer.
fn client_sees_account(answer: CreateAnswer) -> Result<u32, ApiError> {
    #[derive(serde::Deserialize)]
    struct Created {
        #[serde(rename = "accountId")]
        account_id: i64,
    }
    match answer {
        CreateAnswer::Created(body) | CreateAnswer::Truncated(body) => {
            let created: Created =
                serde_json::from_slice(&body).map_err(|e| undecodable(ACCOUNTS_URL, &e))?;
            u32::try_from(created.account_id).map_err(|_| ApiError::Undecodable {
                url: ACCOUNTS_URL.into(),
                status: 200,
                detail: "the account id is not a positive 32-bit number".into(),
            })
        }
        CreateAnswer::ErrorAfterCreate => Err(status(ACCOUNTS_URL, 500, "Internal Server Error")),
        CreateAnswer::Lost { .. } => Err(ApiError::Timeout {
            url: ACCOUNTS_URL.into(),
            timeout: Duration::from_secs(30),
        }),
        CreateAnswer::RateLimited => Err(status(ACCOUNTS_URL, 429, "Too Many Requests")),
        CreateAnswer::Unavailable => Err(status(ACCOUNTS_URL, 503, "Service Unavailable")),
        CreateAnswer::UnknownAccount => Err(status(ACCOUNTS_URL, 400, "Bad Request")),
    }
}

/// What the real client returns for this answer.
fn client_sees(answer: CreateAnswer) -> Result<CreatedToken, ApiError> {
    let status = |status: u16, message: &str, retry_after: Option<Duration>| ApiError::Status {
        url: URL.into(),
        status,
        message: message.into(),
        retry_after,
    };
    match answer {
        CreateAnswer::Created(body) | CreateAnswer::Truncated(body) => {
            serde_json::from_slice::<CreatedToken>(&body).map_err(|e| ApiError::Undecodable {
                url: URL.into(),
                status: 200,
                detail: format!("not JSON at column {}", e.column()),
            })
        }
        CreateAnswer::ErrorAfterCreate => Err(status(500, "Internal Server Error", None)),
        CreateAnswer::Lost { .. } => Err(ApiError::Timeout {
            url: URL.into(),
            timeout: Duration::from_secs(30),
        }),
        CreateAnswer::RateLimited => Err(status(429, "Too Many Requests", None)),
        CreateAnswer::Unavailable => Err(status(503, "Service Unavailable", None)),
        CreateAnswer::UnknownAccount => Err(status(404, "Sub account not found", None)),
    }
}

fn answer_name(a: &CreateAnswer) -> &'static str {
    match a {
        CreateAnswer::Created(_) => "200",
        CreateAnswer::Truncated(_) => "200-cut",
        CreateAnswer::ErrorAfterCreate => "500-created",
        CreateAnswer::Lost { created: true } => "lost-created",
        CreateAnswer::Lost { created: false } => "lost",
        CreateAnswer::RateLimited => "429",
        CreateAnswer::Unavailable => "503",
        CreateAnswer::UnknownAccount => "404",
    }
}

impl SendCreate for SimApi {
    fn create(
        &self,
        key: &TokenKey,
    ) -> impl std::future::Future<Output = Result<CreatedToken, ApiError>> + Send {
        let this = self.clone();
        let key = key.clone();
        async move {
            match this
                .net
                .event(&format!("send {key}"), this.fs.has_crashed())
            {
                Step::Dead => {
                    // The process is dead: its destructors touch no file either.
                    this.fs.kill();
                    return std::future::pending().await;
                }
                Step::Go => {}
            }
            this.acks.lock().unwrap().sent(&key);
            let (answer, delay) = this.sim.create(i64::from(key.account_id), &key.token_name);
            tokio::time::sleep(delay).await;
            let held = *this.net.held_until.lock().unwrap();
            if let Some(until) = held {
                tokio::time::sleep_until(until).await;
            }
            match this.net.event(
                &format!("answer {key} {}", answer_name(&answer)),
                this.fs.has_crashed(),
            ) {
                Step::Dead => {
                    // The process is dead: its destructors touch no file either.
                    this.fs.kill();
                    return std::future::pending().await;
                }
                Step::Go => {}
            }
            client_sees(answer)
        }
    }

    fn create_account(
        &self,
        request: &AccountRequest,
    ) -> impl std::future::Future<Output = Result<u32, ApiError>> + Send {
        let this = self.clone();
        let name = request.account_name.clone();
        let body = serde_json::to_vec(request).unwrap_or_default();
        async move {
            this.pass(format!("send account {name}")).await;
            this.acks.lock().unwrap().sent_account(&name);
            let before: BTreeSet<i64> = this.sim.accounts().iter().map(|a| a.id).collect();
            let (answer, delay) = this.sim.create_account(&body);
            let now = this.net.timeline();
            for a in this.sim.accounts() {
                if !before.contains(&a.id) {
                    let from = now + this.accounts.lag();
                    this.accounts.listed_from.lock().unwrap().insert(a.id, from);
                }
            }
            tokio::time::sleep(delay).await;
            this.hold().await;
            this.pass(format!("answer account {name} {}", answer_name(&answer)))
                .await;
            client_sees_account(answer)
        }
    }

    fn list_accounts(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<SubAccountInfo>, ApiError>> + Send {
        let this = self.clone();
        async move {
            this.pass("list accounts".to_owned()).await;
            let (answer, delay) = this.sim.list_accounts();
            let now = this.net.timeline();
            let fault = this.accounts.read_fault();
            tokio::time::sleep(delay).await;
            this.hold().await;
            let listed = match (answer, fault) {
                (Err(code), _) => Err(status(ACCOUNTS_URL, code, "refused")),
                (Ok(_), Some("503")) => Err(status(ACCOUNTS_URL, 503, "Service Unavailable")),
                (Ok(body), Some(_)) => {
                    serde_json::from_slice::<Vec<SubAccountInfo>>(&body[..body.len() / 2])
                        .map_err(|e| undecodable(ACCOUNTS_URL, &e))
                }
                (Ok(body), None) => serde_json::from_slice::<Vec<SubAccountInfo>>(&body)
                    .map_err(|e| undecodable(ACCOUNTS_URL, &e)),
            };
            // The list lags the creates: an account shows once its time on the timeline came.
            let listed = listed.map(|list| {
                let from = this.accounts.listed_from.lock().unwrap();
                list.into_iter()
                    .filter(|a| from.get(&a.account_id).is_none_or(|t| *t <= now))
                    .collect::<Vec<_>>()
            });
            let seen = match &listed {
                Ok(l) => format!("{} listed", l.len()),
                Err(e) => format!("{:?}", e.http_status()),
            };
            this.pass(format!("answer list {seen}")).await;
            listed
        }
    }

    fn shipping_token(
        &self,
        account_id: u32,
    ) -> impl std::future::Future<Output = Result<Secret, ApiError>> + Send {
        let this = self.clone();
        async move {
            this.pass(format!("read shipping {account_id}")).await;
            let (answer, delay) = this.sim.detailed_account(i64::from(account_id));
            let fault = this.accounts.read_fault();
            tokio::time::sleep(delay).await;
            this.hold().await;
            let url = format!("{ACCOUNTS_URL}/detailed/{account_id}");
            let read = match (answer, fault) {
                (Err(code), _) => Err(status(&url, code, "refused")),
                (Ok(_), Some("503")) => Err(status(&url, 503, "Service Unavailable")),
                (Ok(body), fault) => {
                    let body = if fault.is_some() {
                        body.slice(..body.len() / 2)
                    } else {
                        body
                    };
                    match serde_json::from_slice::<serde_json::Value>(&body) {
                        Err(e) => Err(undecodable(&url, &e)),
                        Ok(v) => match v.pointer("/account/accountToken") {
                            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => {
                                Ok(Secret::new(t.clone()))
                            }
                            _ => Err(ApiError::Undecodable {
                                url: url.clone(),
                                status: 200,
                                detail: "`account.accountToken` is missing or empty".into(),
                            }),
                        },
                    }
                }
            };
            let seen = match &read {
                Ok(_) => "200".to_owned(),
                Err(e) => format!("{:?}", e.http_status()),
            };
            this.pass(format!("answer shipping {account_id} {seen}"))
                .await;
            read
        }
    }
}

impl SimApi {
    /// One network event of the account side: returns when the request goes on, never when
    /// the process died here or before.
    async fn pass(&self, what: String) {
        if self.net.event(&what, self.fs.has_crashed()) == Step::Dead {
            // The process is dead: its destructors touch no file either.
            self.fs.kill();
            std::future::pending::<()>().await;
        }
    }

    /// Waits out a stall, if one holds every answer.
    async fn hold(&self) {
        let held = *self.net.held_until.lock().unwrap();
        if let Some(until) = held {
            tokio::time::sleep_until(until).await;
        }
    }
}

impl SimApi {
    /// The list as apply's preflight reads it now (as it lags; no event, no fault): every
    /// sub account listed, id -> name.
    pub fn listed_now(&self) -> logzio_tokens::plan::LiveAccounts {
        let now = self.net.timeline();
        let from = self.accounts.listed_from.lock().unwrap();
        self.sim
            .accounts()
            .into_iter()
            .filter(|a| from.get(&a.id).is_none_or(|t| *t <= now))
            .filter_map(|a| Some((u32::try_from(a.id).ok()?, a.name)))
            .collect()
    }
}
