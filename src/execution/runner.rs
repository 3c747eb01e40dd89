//! The dispatcher: takes items from the plan and from the retry timer heap, waits for a
//! concurrency slot and a send slot, and runs each attempt as its own task. A retry waiting
//! for its backoff holds no slot. Every loop is bounded: attempts per item, the drain time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ambiguity::{Breaker, breaker_message};
use super::{Answer, Backoff, Pacer, Ticket};
use crate::api::{ApiClient, ApiError, ErrorClass};
use crate::state::journal::Outcome;
use crate::state::store::Applied;
use crate::state::{Failure, RecorderHandle, StateError, TokenKey, epoch_to_rfc3339, now_rfc3339};

/// How a run executes.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Most requests in flight.
    pub concurrency: usize,
    /// Most attempts per token.
    pub max_attempts: u32,
    /// Most ambiguous attempts per token (each may have created one that is not recorded).
    pub max_ambiguous: u32,
    /// Stop at the first item that fails for good.
    pub fail_fast: bool,
    /// Retry delays.
    pub backoff: Backoff,
    /// How long to wait for in-flight requests when stopping early.
    pub drain_timeout: Duration,
}

/// Live counters, read by progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    /// Items in the plan.
    pub total: AtomicU64,
    /// Tokens created and recorded.
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
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A stop request (Ctrl-C): stop sending, drain, save.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Cancel {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Cancel {
    /// Asks the run to stop.
    pub fn cancel(&self) {
        let _ = self.tx.send(true);
    }
    /// Whether a stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }
    async fn cancelled(&mut self) {
        let _ = self.rx.wait_for(|c| *c).await;
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

/// Something that happened to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemEvent {
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

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Every item was tried to the end.
    Completed,
    /// An error that stops the run (401, 403, wrong region).
    Fatal(String),
    /// The state could not be written.
    State(String),
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
}

/// A 429 means the request was not processed, so it does not use up one of the item's
/// attempts; these are bounded on their own, so that no loop is unbounded.
pub const MAX_RATE_LIMITED_PER_ITEM: u32 = 30;

#[derive(Debug, Clone)]
struct Item {
    key: TokenKey,
    /// Attempts made, not counting those answered 429.
    attempt: u32,
    /// Attempts answered 429.
    rate_limited: u32,
    /// Attempts whose outcome was ambiguous.
    ambiguous: u32,
    last_error: Option<(Option<u16>, String)>,
}

enum AttemptOutcome {
    Created,
    Retry {
        item: Item,
        retry_after: Option<Duration>,
    },
    Failed(Item, Option<u16>, String),
    Fatal(String),
    State(StateError),
}

struct Shared {
    client: ApiClient,
    recorder: RecorderHandle,
    pacer: Arc<Pacer>,
    stats: Arc<Stats>,
    observer: Option<Arc<dyn Observer>>,
    max_attempts: u32,
    max_ambiguous: u32,
    breaker: std::sync::Mutex<Breaker>,
}

impl Shared {
    fn emit(&self, e: ItemEvent) {
        if let Some(o) = &self.observer {
            o.event(&e);
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the run must stop sending, when the ambiguity breaker opened.
    fn breaker_stop(&self) -> Option<String> {
        let b = self.breaker();
        b.is_open().then(|| {
            let (ambiguous, of) = b.recent();
            breaker_message(ambiguous, of)
        })
    }
}

/// Runs the plan's creates. Returns when every item is done or the run stopped.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    items: Vec<TokenKey>,
    client: ApiClient,
    recorder: RecorderHandle,
    config: ExecConfig,
    pacer: Arc<Pacer>,
    stats: Arc<Stats>,
    observer: Option<Arc<dyn Observer>>,
    mut cancel: Cancel,
) -> RunReport {
    let started = Instant::now();
    Stats::add(&stats.total, items.len() as u64);
    let shared = Arc::new(Shared {
        client,
        recorder,
        pacer: pacer.clone(),
        stats: stats.clone(),
        observer,
        max_attempts: config.max_attempts.max(1),
        max_ambiguous: config.max_ambiguous.max(1),
        breaker: std::sync::Mutex::new(Breaker::default()),
    });
    let mut queue: VecDeque<Item> = items
        .into_iter()
        .map(|key| Item {
            key,
            attempt: 0,
            rate_limited: 0,
            ambiguous: 0,
            last_error: None,
        })
        .collect();
    let mut retries: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut retry_items: std::collections::HashMap<u64, Item> = std::collections::HashMap::new();
    let mut retry_seq = 0u64;
    let mut inflight: JoinSet<AttemptOutcome> = JoinSet::new();
    let mut report = RunReport {
        stop: StopReason::Completed,
        created: 0,
        failures: Vec::new(),
        not_attempted: 0,
        attempts: 0,
        retries: 0,
        rate_limited: 0,
        ambiguous: 0,
        ambiguity_exhausted: 0,
        abandoned: 0,
        elapsed: Duration::ZERO,
        final_rate: 0.0,
    };
    let concurrency = config.concurrency.max(1);

    loop {
        if report.stop != StopReason::Completed {
            break;
        }
        if cancel.is_cancelled() {
            report.stop = StopReason::Interrupted;
            break;
        }
        if let Some(why) = shared.breaker_stop() {
            report.stop = StopReason::AmbiguityBreaker(why);
            break;
        }
        let now = Instant::now();
        let due_retry = retries.peek().is_some_and(|Reverse((t, _))| *t <= now);
        let has_work = due_retry || !queue.is_empty();
        if inflight.len() < concurrency && has_work {
            // Wait for a send slot, but stay responsive to Ctrl-C and finished attempts.
            let ticket = tokio::select! {
                biased;
                () = cancel.cancelled() => continue,
                Some(res) = inflight.join_next(), if !inflight.is_empty() => {
                    handle(res, &mut report, &mut retries, &mut retry_items, &mut retry_seq, &config, &shared);
                    continue;
                }
                t = shared.pacer.acquire() => t,
            };
            let item = if due_retry {
                match retries.pop() {
                    Some(Reverse((_, id))) => retry_items.remove(&id),
                    None => None,
                }
            } else {
                queue.pop_front()
            };
            if let Some(mut item) = item {
                item.attempt += 1;
                let sh = shared.clone();
                inflight.spawn(async move { attempt(item, sh, ticket).await });
            }
            continue;
        }
        if inflight.is_empty() && queue.is_empty() && retries.is_empty() {
            break;
        }
        let next_due = retries.peek().map(|Reverse((t, _))| *t);
        tokio::select! {
            biased;
            () = cancel.cancelled() => {}
            Some(res) = inflight.join_next(), if !inflight.is_empty() => {
                handle(res, &mut report, &mut retries, &mut retry_items, &mut retry_seq, &config, &shared);
            }
            () = sleep_until_opt(next_due), if next_due.is_some() && inflight.len() < concurrency => {}
        }
    }

    // Stopping early: no new requests; wait (bounded) for those in flight.
    let deadline = Instant::now() + config.drain_timeout;
    while !inflight.is_empty() {
        match tokio::time::timeout_at(deadline, inflight.join_next()).await {
            Ok(Some(res)) => {
                let before = report.stop.clone();
                handle(
                    res,
                    &mut report,
                    &mut retries,
                    &mut retry_items,
                    &mut retry_seq,
                    &config,
                    &shared,
                );
                // A retry scheduled while draining is not sent; an earlier stop reason stays.
                if before != StopReason::Completed {
                    report.stop = before;
                }
            }
            Ok(None) => break,
            Err(_) => {
                report.abandoned = inflight.len() as u64;
                inflight.abort_all();
                break;
            }
        }
    }
    report.not_attempted = queue.len() as u64 + retry_items.len() as u64;
    for item in retry_items.into_values() {
        // Items waiting for a retry when the run stopped: record why they have no token.
        let (status, error) = item
            .last_error
            .unwrap_or((None, "not retried: the run stopped".into()));
        report.failures.push(Failure {
            account_id: Some(item.key.account_id),
            account_name: None,
            token_name: item.key.token_name,
            http_status: status,
            error: format!("{error} (not retried: the run stopped)"),
        });
    }
    report.attempts = Stats::get(&stats.attempts);
    report.retries = Stats::get(&stats.retries);
    report.rate_limited = Stats::get(&stats.rate_limited);
    report.ambiguous = Stats::get(&stats.ambiguous);
    report.elapsed = started.elapsed();
    report.final_rate = pacer.snapshot().rate;
    report
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn handle(
    res: Result<AttemptOutcome, tokio::task::JoinError>,
    report: &mut RunReport,
    retries: &mut BinaryHeap<Reverse<(Instant, u64)>>,
    retry_items: &mut std::collections::HashMap<u64, Item>,
    retry_seq: &mut u64,
    config: &ExecConfig,
    shared: &Shared,
) {
    let outcome = match res {
        Ok(o) => o,
        Err(e) => {
            // A panicking attempt task is a bug; its intent stays in the journal (possible orphan).
            tracing::error!(error = %e, "an attempt task failed");
            return;
        }
    };
    match outcome {
        AttemptOutcome::Created => report.created += 1,
        AttemptOutcome::Retry { item, retry_after } => {
            if item.ambiguous >= shared.max_ambiguous {
                // Each re-send may leave one more token only a person can delete.
                let (status, _) = item.last_error.clone().unwrap_or((None, String::new()));
                let why = format!(
                    "not sent again after {} ambiguous attempts (each may have created a token; see the possible orphans)",
                    item.ambiguous
                );
                report.ambiguity_exhausted += 1;
                fail(report, shared, config, item, status, why);
                return;
            }
            if item.attempt >= shared.max_attempts || item.rate_limited >= MAX_RATE_LIMITED_PER_ITEM
            {
                let (status, error) = item
                    .last_error
                    .clone()
                    .unwrap_or((None, "no more attempts".into()));
                let tries = format!(
                    "{error} (after {} attempts, and {} more answered 429)",
                    item.attempt, item.rate_limited
                );
                fail(report, shared, config, item, status, tries);
                return;
            }
            Stats::add(&shared.stats.retries, 1);
            let delay = config.backoff.delay(item.attempt + 1, retry_after);
            *retry_seq += 1;
            retries.push(Reverse((Instant::now() + delay, *retry_seq)));
            retry_items.insert(*retry_seq, item);
        }
        AttemptOutcome::Failed(item, status, error) => {
            fail(report, shared, config, item, status, error);
        }
        AttemptOutcome::Fatal(msg) => {
            if !matches!(report.stop, StopReason::Fatal(_) | StopReason::State(_)) {
                report.stop = StopReason::Fatal(msg);
            }
        }
        AttemptOutcome::State(e) => {
            if !matches!(report.stop, StopReason::State(_)) {
                report.stop = StopReason::State(e.to_string());
            }
        }
    }
}

fn fail(
    report: &mut RunReport,
    shared: &Shared,
    config: &ExecConfig,
    item: Item,
    status: Option<u16>,
    error: String,
) {
    Stats::add(&shared.stats.failed, 1);
    let failure = Failure {
        account_id: Some(item.key.account_id),
        account_name: None,
        token_name: item.key.token_name.clone(),
        http_status: status,
        error: error.clone(),
    };
    shared.recorder.failure(failure.clone());
    report.failures.push(failure);
    shared.emit(ItemEvent::Done {
        key: item.key,
        attempts: item.attempt,
        result: ItemResult::Failed {
            http_status: status,
            error,
        },
    });
    if config.fail_fast && report.stop == StopReason::Completed {
        report.stop = StopReason::FailFast;
    }
}

/// One attempt: journal the intent, send, journal the outcome, then decide.
async fn attempt(mut item: Item, sh: Arc<Shared>, ticket: Ticket) -> AttemptOutcome {
    let seq = match sh.recorder.intent(&item.key, item.attempt).await {
        Ok(s) => s,
        Err(e) => return AttemptOutcome::State(e),
    };
    Stats::add(&sh.stats.attempts, 1);
    Stats::add(&sh.stats.in_flight, 1);
    let res = sh
        .client
        .create_token(item.key.account_id, &item.key.token_name)
        .await;
    sh.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    match res {
        Ok(created) => {
            sh.pacer.on_answer(ticket, Answer::Served, None);
            let created_at = created
                .created_at
                .map(epoch_to_rfc3339)
                .unwrap_or_else(now_rfc3339);
            let token_id = created.id;
            let outcome = Outcome::Created {
                token_id,
                token: created.token,
                created_at,
            };
            match sh.recorder.outcome(seq, &item.key, outcome).await {
                Ok(Applied::DuplicateId(other)) => {
                    let detail = format!(
                        "the API returned token id {token_id}, already recorded for {other}; the secret was kept aside"
                    );
                    Stats::add(&sh.stats.ambiguous, 1);
                    sh.breaker().record(true);
                    item.ambiguous += 1;
                    sh.emit(ItemEvent::Ambiguous {
                        key: item.key.clone(),
                        detail: detail.clone(),
                    });
                    item.last_error = Some((None, detail));
                    AttemptOutcome::Retry {
                        item,
                        retry_after: None,
                    }
                }
                Ok(_) => {
                    sh.breaker().record(false);
                    Stats::add(&sh.stats.created, 1);
                    sh.emit(ItemEvent::Done {
                        key: item.key,
                        attempts: item.attempt,
                        result: ItemResult::Created { token_id },
                    });
                    AttemptOutcome::Created
                }
                Err(e) => AttemptOutcome::State(e),
            }
        }
        Err(e) => on_error(item, seq, e, &sh, ticket).await,
    }
}

async fn on_error(
    mut item: Item,
    seq: u64,
    e: ApiError,
    sh: &Shared,
    ticket: Ticket,
) -> AttemptOutcome {
    let class = e.class();
    let status = e.http_status();
    let detail = e.short();
    if e.is_rate_limited() {
        Stats::add(&sh.stats.rate_limited, 1);
        sh.pacer.on_answer(ticket, Answer::Limited, e.retry_after());
    } else {
        // 5xx and timeouts are not a rate signal: they have their own backoff, and ambiguous
        // ones their own budget.
        let answer = if status.is_some() {
            Answer::Served
        } else {
            Answer::Lost
        };
        sh.pacer.on_answer(ticket, answer, None);
        sh.breaker().record(class == ErrorClass::Ambiguous);
    }
    let outcome = match class {
        ErrorClass::Ambiguous => Outcome::Ambiguous {
            detail: detail.clone(),
        },
        _ => Outcome::NotCreated {
            http_status: status,
            detail: detail.clone(),
        },
    };
    if let Err(se) = sh.recorder.outcome(seq, &item.key, outcome).await {
        return AttemptOutcome::State(se);
    }
    tracing::debug!(token = %item.key, attempt = item.attempt, error = %detail, "attempt failed");
    item.last_error = Some((status, detail.clone()));
    if e.is_rate_limited() {
        // Not processed: this attempt does not count against max_attempts.
        item.attempt = item.attempt.saturating_sub(1);
        item.rate_limited += 1;
    }
    match class {
        ErrorClass::Retryable | ErrorClass::Ambiguous => {
            if class == ErrorClass::Ambiguous {
                Stats::add(&sh.stats.ambiguous, 1);
                item.ambiguous += 1;
                sh.emit(ItemEvent::Ambiguous {
                    key: item.key.clone(),
                    detail: detail.clone(),
                });
            }
            sh.emit(ItemEvent::Retry {
                key: item.key.clone(),
                attempt: item.attempt,
                reason: detail,
            });
            AttemptOutcome::Retry {
                retry_after: e.retry_after(),
                item,
            }
        }
        ErrorClass::FatalItem => AttemptOutcome::Failed(item, status, detail),
        ErrorClass::FatalRun => AttemptOutcome::Fatal(e.to_string()),
    }
}
