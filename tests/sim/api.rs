//! The simulated API behind the executor's `SendCreate` port: the simulator's own state and
//! fault draw ([`InProcess`]), its latency played on tokio's paused clock, its answers mapped to
//! what the real client returns for the same bytes. Every call is two network events (the
//! request reaches the server; its answer reaches the client); the driver may crash the run or
//! press Ctrl-C at any event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use logzio_tokens::api::{ApiError, CreatedToken};
use logzio_tokens::execution::{Cancel, SendCreate};
use logzio_tokens::key::TokenKey;
use logzio_tokens::simulator::{CreateAnswer, InProcess};
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
}

const URL: &str = "http://sim.invalid/v1/api-tokens/sub-account";

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
}
