//! The dispatcher: takes items from the plan and from the retry timer heap, waits for a
//! concurrency slot and a send slot, and runs each attempt as its own task. A retry waiting
//! for its backoff holds no slot. Every loop is bounded: attempts per item, the drain time.
//!
//! Items are of two kinds ([`CreateKey`]): tokens, and sub accounts. Items that need a sub
//! account's id wait at the [gate](Gate) until it is durable (its tokens, accounts sharing
//! with it), and fail, never sent, when it is not created.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::accounts::{AccountItem, AccountWork, AccountsReport, Step, Work, create_request};
use super::ambiguity::Breaker;
use super::attempt::{AttemptOutcome, Item, Shared, attempt};
use super::{
    AccountResult, Backoff, Cancel, ItemEvent, ItemResult, Observer, Pacer, RecordOutcomes,
    RunReport, SendCreate, Stats, StopReason,
};
use crate::clock::SharedClock;
use crate::key::{CreateKey, TokenKey};
use crate::random::Random;
use crate::state::Failure;

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
    /// Ambiguous attempts earlier runs made per token (the possible orphans'
    /// `ambiguous_attempts`): they count against `max_ambiguous`, so the budget holds across
    /// runs, not per run.
    pub earlier_ambiguous: std::collections::HashMap<TokenKey, u32>,
}

/// A 429 means the request was not processed, so it does not use up one of the item's
/// attempts; these are bounded on their own, so that no loop is unbounded.
pub const MAX_RATE_LIMITED_PER_ITEM: u32 = 30;

/// What a run talks to: the API (through `creator`), the state (through `recorder`), and the
/// live displays. In a run these are the API client and the recorder handle; in tests, fakes.
#[derive(Debug)]
pub struct Services<C, R> {
    /// Sends the create calls.
    pub creator: C,
    /// Makes every intent and outcome durable.
    pub recorder: R,
    /// The rate shared by every request.
    pub pacer: Arc<Pacer>,
    /// Live counters.
    pub stats: Arc<Stats>,
    /// Receives item events (JSON output).
    pub observer: Option<Arc<dyn Observer>>,
    /// Ctrl-C.
    pub cancel: Cancel,
    /// Where the retries' jitter comes from ([`crate::random::from_os`] in a run).
    pub rng: Random,
}

/// Runs the plan's creates: tokens, and sub accounts with the tokens that wait for them.
/// Returns when every item is done or the run stopped.
pub async fn execute<C: SendCreate, R: RecordOutcomes>(
    work: impl Into<Work>,
    config: ExecConfig,
    services: Services<C, R>,
) -> RunReport {
    Dispatcher::new(work.into(), config, services).run().await
}

/// Items waiting for a sub account's id, and the ids known.
#[derive(Debug, Default)]
struct Gate {
    /// The ids of accounts by name: the manifest's that exist, and those this run made.
    ids: BTreeMap<String, u32>,
    /// The accounts this run may still create.
    open: BTreeSet<String>,
    /// Tokens waiting for their account: account name -> token names.
    tokens: BTreeMap<String, Vec<String>>,
    /// Account items waiting for accounts they share with.
    accounts: Vec<Item>,
}

/// Retries waiting for their backoff: a timer heap; they hold no concurrency slot.
#[derive(Debug, Default)]
struct RetryHeap {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, Item>,
    seq: u64,
}

impl RetryHeap {
    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.due.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, item);
    }

    /// When the earliest retry is due.
    fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    fn pop(&mut self) -> Option<Item> {
        let Reverse((_, id)) = self.due.pop()?;
        self.items.remove(&id)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The dispatcher of one run: owns the queue of items not yet tried, the retry heap and the
/// attempts in flight, and builds the report.
struct Dispatcher<C, R> {
    shared: Arc<Shared<C, R>>,
    config: ExecConfig,
    cancel: Cancel,
    queue: VecDeque<Item>,
    retries: RetryHeap,
    inflight: JoinSet<AttemptOutcome>,
    report: RunReport,
    started: Instant,
    /// Where the retries' jitter comes from.
    rng: Random,
    /// The run's clock (the pacer's).
    clock: SharedClock,
    /// Items waiting for a sub account's id.
    gate: Gate,
}

impl<C: SendCreate, R: RecordOutcomes> Dispatcher<C, R> {
    fn new(work: Work, config: ExecConfig, services: Services<C, R>) -> Self {
        // Every item counts: tokens, those waiting for their account, and the accounts.
        let waiting: usize = work.accounts.iter().map(|a| a.tokens.len()).sum();
        Stats::add(
            &services.stats.total,
            (work.tokens.len() + waiting + work.accounts.len()) as u64,
        );
        // The pacer counts the requests at the server (see `dispatch`).
        services
            .pacer
            .cap_in_flight(u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX));
        let clock = services.pacer.clock().clone();
        let shared = Arc::new(Shared {
            creator: services.creator,
            recorder: services.recorder,
            pacer: services.pacer,
            stats: services.stats,
            observer: services.observer,
            breaker: std::sync::Mutex::new(Breaker::default()),
            fatal_seen: std::sync::atomic::AtomicBool::new(false),
            cancel: services.cancel.clone(),
            lookup: work.lookup,
        });
        let mut dispatcher = Dispatcher {
            shared,
            cancel: services.cancel,
            queue: work
                .tokens
                .into_iter()
                .map(|key| {
                    let earlier = config.earlier_ambiguous.get(&key).copied().unwrap_or(0);
                    let mut item = Item::new(key);
                    item.ambiguous = earlier;
                    item
                })
                .collect(),
            retries: RetryHeap::default(),
            inflight: JoinSet::new(),
            report: RunReport {
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
                accounts: AccountsReport::default(),
            },
            config: ExecConfig {
                concurrency: config.concurrency.max(1),
                max_attempts: config.max_attempts.max(1),
                max_ambiguous: config.max_ambiguous.max(1),
                ..config
            },
            started: clock.now(),
            rng: services.rng,
            clock,
            gate: Gate {
                ids: work.ids,
                ..Gate::default()
            },
        };
        dispatcher.admit_accounts(work.accounts, work.shipping);
        dispatcher
    }

    /// Puts the sub accounts ahead of the tokens: interrupted creates to look up, accounts to
    /// create (at the gate until those they share with have ids), shipping tokens to read.
    fn admit_accounts(&mut self, accounts: Vec<AccountWork>, shipping: Vec<(String, u32)>) {
        let mut first = Vec::new();
        for work in &accounts {
            if work.settings.is_some() {
                self.gate.open.insert(work.name.clone());
                self.gate
                    .tokens
                    .insert(work.name.clone(), work.tokens.clone());
            }
        }
        for (name, id) in shipping {
            first.push(Item::account(
                &name,
                AccountItem {
                    settings: None,
                    request: None,
                    step: Step::Shipping { id },
                },
            ));
        }
        for work in accounts.into_iter().rev() {
            let AccountWork {
                name,
                settings,
                pending,
                earlier_ambiguous,
                ..
            } = work;
            let step = match pending {
                Some(p) => Step::Recover {
                    seq: p.seq,
                    known: p.known,
                },
                None if settings.is_some() => Step::Create,
                None => continue,
            };
            let mut item = Item::account(
                &name,
                AccountItem {
                    settings,
                    request: None,
                    step,
                },
            );
            item.ambiguous = earlier_ambiguous;
            if matches!(item.account.as_ref().map(|a| &a.step), Some(Step::Create)) {
                self.admit(item);
            } else {
                first.push(item);
            }
        }
        for item in first {
            self.queue.push_front(item);
        }
    }

    /// An account item to create goes ahead once every account it shares with has an id, and
    /// fails, not sent, when one of them will not get one.
    fn admit(&mut self, mut item: Item) {
        let Some(name) = item.key.as_account().map(str::to_owned) else {
            self.queue.push_front(item);
            return;
        };
        if item.ambiguous >= self.config.max_ambiguous {
            // Earlier runs used up its budget: each of their creates may have made it.
            let why = format!(
                "not sent: earlier runs made {} ambiguous creates of it that no lookup found \
                 (each may have made the account; the budget is {}): check the Logz.io UI for \
                 an account named `{name}`, then run `logzio-tokens orphans clear` (or pass \
                 --resend-ambiguous) to send it again",
                item.ambiguous, self.config.max_ambiguous
            );
            self.report.ambiguity_exhausted += 1;
            self.fail(item, None, why);
            return;
        }
        let Some(account) = item.account.as_mut() else {
            return;
        };
        let waits: Vec<String> = account
            .waits_for(&name, &self.gate.ids)
            .map(str::to_owned)
            .collect();
        if let Some(lost) = waits.iter().find(|n| !self.gate.open.contains(*n)) {
            let why = format!("it shares with `{lost}`, which has no id (it was not created)");
            self.fail(item, None, why);
            return;
        }
        if !waits.is_empty() {
            self.gate.accounts.push(item);
            return;
        }
        let Some(settings) = &account.settings else {
            return;
        };
        match create_request(&name, settings, &self.gate.ids) {
            Ok(request) => {
                account.request = Some(request);
                self.queue.push_front(item);
            }
            Err(why) => self.fail(item, None, why),
        }
    }

    /// A sub account's id is durable: its tokens go next, then what shares with it.
    fn account_ready(&mut self, name: &str, id: u32) {
        self.gate.ids.insert(name.to_owned(), id);
        self.gate.open.remove(name);
        for token_name in self
            .gate
            .tokens
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .rev()
        {
            self.queue.push_front(Item::new(TokenKey {
                account_id: id,
                token_name,
            }));
        }
        for item in std::mem::take(&mut self.gate.accounts) {
            self.admit(item);
        }
    }

    /// A sub account will not be created: its tokens fail, not sent, and so does what shares
    /// with it.
    fn account_closed(&mut self, name: &str, why: &str) {
        self.gate.open.remove(name);
        for token_name in self.gate.tokens.remove(name).unwrap_or_default() {
            let failure = Failure {
                account_id: None,
                account_name: Some(name.to_owned()),
                token_name,
                http_status: None,
                error: format!("not sent: its sub account was not created: {why}"),
            };
            Stats::add(&self.shared.stats.failed, 1);
            self.shared.recorder.failure(failure.clone());
            self.report.failures.push(failure);
        }
        for item in std::mem::take(&mut self.gate.accounts) {
            self.admit(item);
        }
    }

    async fn run(mut self) -> RunReport {
        self.dispatch().await;
        self.drain().await;
        self.into_report()
    }

    /// Whether an answer that stops the run has arrived (see `Shared::fatal_seen`).
    fn fatal_seen(&self) -> bool {
        self.shared
            .fatal_seen
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends items while there is work and no stop: each waits for a concurrency slot and a
    /// send slot, staying responsive to Ctrl-C and to finished attempts.
    async fn dispatch(&mut self) {
        while self.report.stop.is_completed() {
            // The requests at the server are the pacer's to count: a slot is free when the
            // answer arrives (see the in-flight window), while the attempt that sent it may
            // still wait for its outcome to be durable (an fsync shared with the next sends'
            // intents, up to 50 ms). So attempts may outnumber the slots: those waiting for
            // their records are bounded too, at a few times the slots.
            let has_slot = self.inflight.len() < 4 * self.config.concurrency + 8;
            // Sends are ahead when queued items can go now. Retries are left out: waiting for
            // their backoff, they could keep an outcome waiting for an fsync that no intent
            // comes to share (at a run's tail, each retry would start that much later). With
            // every slot taken, no intent comes until an outcome is acknowledged, so an
            // outcome waiting to share the next intents' fsync would wait out its time.
            self.shared
                .recorder
                .sends_ahead(has_slot && !self.queue.is_empty());
            if self.cancel.is_cancelled() {
                self.report.stop = StopReason::Interrupted;
                return;
            }
            if let Some(why) = self.shared.breaker_stop() {
                self.report.stop = StopReason::AmbiguityBreaker(why);
                return;
            }
            // An answer that stops the run arrived: send nothing more, and let the attempt
            // that got it record it and set the stop.
            if self.fatal_seen() {
                match self.inflight.join_next().await {
                    Some(res) => {
                        self.handle(res);
                        continue;
                    }
                    None => return,
                }
            }
            let due_retry = self
                .retries
                .next_due()
                .is_some_and(|t| t <= self.clock.now());
            if has_slot && (due_retry || !self.queue.is_empty()) {
                let ticket = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => continue,
                    Some(res) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                        self.handle(res);
                        continue;
                    }
                    t = self.shared.pacer.acquire() => t,
                };
                if self.fatal_seen() {
                    self.shared.pacer.on_unsent(ticket);
                    continue;
                }
                let item = if due_retry {
                    self.retries.pop()
                } else {
                    self.queue.pop_front()
                };
                if let Some(mut item) = item {
                    item.attempt += 1;
                    let sh = self.shared.clone();
                    self.inflight
                        .spawn(async move { attempt(item, sh, ticket).await });
                } else {
                    self.shared.pacer.on_unsent(ticket);
                }
                continue;
            }
            if self.inflight.is_empty() && self.queue.is_empty() && self.retries.is_empty() {
                return;
            }
            let next_due = self.retries.next_due();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {}
                Some(res) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    self.handle(res);
                }
                () = sleep_until_opt(next_due), if next_due.is_some() && has_slot => {}
            }
        }
    }

    /// Stopping (early or not): no new requests; waits, bounded, for those in flight.
    async fn drain(&mut self) {
        self.shared.recorder.sends_ahead(false);
        let deadline = self.clock.now() + self.config.drain_timeout;
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(deadline, self.inflight.join_next()).await {
                Ok(Some(res)) => {
                    let before = self.report.stop.clone();
                    self.handle(res);
                    // A retry scheduled while draining is not sent; an earlier stop reason stays.
                    if !before.is_completed() {
                        self.report.stop = before;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    self.report.abandoned = self.inflight.len() as u64;
                    self.inflight.abort_all();
                    break;
                }
            }
        }
    }

    fn into_report(self) -> RunReport {
        let mut report = self.report;
        let tokens = |item: &&Item| item.key.as_token().is_some();
        report.not_attempted = self.queue.iter().filter(tokens).count() as u64
            + self.retries.items.values().filter(tokens).count() as u64;
        for item in self.retries.items.into_values() {
            // Items waiting for a retry when the run stopped: record why they have no token.
            let (status, error) = item
                .last_error
                .unwrap_or((None, "not retried: the run stopped".into()));
            let error = format!("{error} (not retried: the run stopped)");
            match item.key {
                CreateKey::Token(key) => report.failures.push(Failure {
                    account_id: Some(key.account_id),
                    account_name: None,
                    token_name: key.token_name,
                    http_status: status,
                    error,
                }),
                CreateKey::Account(name) => {
                    report.accounts.failed.push((name, error));
                }
            }
        }
        // Sub accounts the run stopped before creating, and the tokens waiting for them.
        for name in &self.gate.open {
            if !report.accounts.failed.iter().any(|(n, _)| n == name) {
                report
                    .accounts
                    .failed
                    .push((name.clone(), "not created: the run stopped".into()));
            }
        }
        for (name, tokens) in self.gate.tokens {
            report.not_attempted += tokens.len() as u64;
            for token_name in tokens {
                report.failures.push(Failure {
                    account_id: None,
                    account_name: Some(name.clone()),
                    token_name,
                    http_status: None,
                    error: "not sent: the run stopped before its sub account was created".into(),
                });
            }
        }
        let stats = &self.shared.stats;
        report.attempts = Stats::get(&stats.attempts);
        report.retries = Stats::get(&stats.retries);
        report.rate_limited = Stats::get(&stats.rate_limited);
        report.ambiguous = Stats::get(&stats.ambiguous);
        report.elapsed = self.clock.now().saturating_duration_since(self.started);
        report.final_rate = self.shared.pacer.snapshot().rate;
        report
    }

    /// Acts on a finished attempt.
    fn handle(&mut self, res: Result<AttemptOutcome, tokio::task::JoinError>) {
        let outcome = match res {
            Ok(o) => o,
            Err(e) => {
                // A panicking attempt task is a bug; its intent stays in the journal (possible
                // orphan).
                tracing::error!(error = %e, "an attempt task failed");
                return;
            }
        };
        match outcome {
            AttemptOutcome::Created => self.report.created += 1,
            AttemptOutcome::AccountReady { item, id, adopted } => {
                let Some(name) = item.key.as_account().map(str::to_owned) else {
                    return;
                };
                self.report.accounts.created.insert(name.clone(), id);
                if adopted {
                    self.report.accounts.adopted.insert(name.clone());
                }
                Stats::add(&self.shared.stats.created, 1);
                self.shared.emit(ItemEvent::AccountDone {
                    name: name.clone(),
                    attempts: item.attempt,
                    result: if adopted {
                        AccountResult::Adopted { account_id: id }
                    } else {
                        AccountResult::Created { account_id: id }
                    },
                });
                self.account_ready(&name, id);
                // Its shipping token, first of what goes next.
                self.queue.push_front(Item::account(
                    &name,
                    AccountItem {
                        settings: None,
                        request: None,
                        step: Step::Shipping { id },
                    },
                ));
            }
            AttemptOutcome::Waits(item) => self.admit(item),
            AttemptOutcome::AccountDone => {
                // An interrupted run's create that found nothing, and the plan does not create
                // it: not an item of this run after all.
                self.shared
                    .stats
                    .total
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            AttemptOutcome::ShippingRead { name, id } => {
                self.report.accounts.shipping.insert(name, id);
            }
            AttemptOutcome::ShippingFailed { name, id, why } => {
                self.report.accounts.shipping_failed.push((name, id, why));
            }
            AttemptOutcome::Retry { item, retry_after } => self.retry(item, retry_after),
            AttemptOutcome::Failed(item, status, error) => self.fail(item, status, error),
            AttemptOutcome::Fatal(msg) => {
                if !matches!(
                    self.report.stop,
                    StopReason::Fatal(_) | StopReason::State(_)
                ) {
                    self.report.stop = StopReason::Fatal(Arc::new(msg));
                }
            }
            AttemptOutcome::State(e) => {
                if !matches!(self.report.stop, StopReason::State(_)) {
                    self.report.stop = StopReason::State(Arc::new(e));
                }
            }
        }
    }

    /// Schedules another attempt, or fails the item when its attempts are used up.
    fn retry(&mut self, item: Item, retry_after: Option<Duration>) {
        if item.ambiguous >= self.config.max_ambiguous {
            // Each re-send may leave one more token (or account) only a person can delete.
            let (status, detail) = item.last_error.clone().unwrap_or((None, String::new()));
            let why = match &item.key {
                CreateKey::Token(_) => format!(
                    "not sent again after {} ambiguous attempts (each may have created a token; see the possible orphans)",
                    item.ambiguous
                ),
                CreateKey::Account(name) => format!(
                    "{detail}; not sent again after {} ambiguous creates that no lookup found: \
                     check the Logz.io UI for an account named `{name}`, then run \
                     `logzio-tokens orphans clear` (or pass --resend-ambiguous) to send it again",
                    item.ambiguous
                ),
            };
            self.report.ambiguity_exhausted += 1;
            self.fail(item, status, why);
            return;
        }
        if item.attempt >= self.config.max_attempts
            || item.rate_limited >= MAX_RATE_LIMITED_PER_ITEM
        {
            let (status, error) = item
                .last_error
                .clone()
                .unwrap_or((None, "no more attempts".into()));
            let tries = format!(
                "{error} (after {} attempts, and {} more answered 429)",
                item.attempt, item.rate_limited
            );
            self.fail(item, status, tries);
            return;
        }
        Stats::add(&self.shared.stats.retries, 1);
        let delay = self
            .config
            .backoff
            .delay(item.attempt + 1, retry_after, &mut self.rng);
        self.retries.push(self.clock.now() + delay, item);
    }

    /// Records an item that failed for good (a sub account: with what waits for it).
    fn fail(&mut self, item: Item, status: Option<u16>, error: String) {
        let key = match item.key {
            CreateKey::Token(key) => key,
            CreateKey::Account(name) => {
                Stats::add(&self.shared.stats.failed, 1);
                self.shared.emit(ItemEvent::AccountDone {
                    name: name.clone(),
                    attempts: item.attempt,
                    result: AccountResult::Failed {
                        http_status: status,
                        error: error.clone(),
                    },
                });
                self.report
                    .accounts
                    .failed
                    .push((name.clone(), error.clone()));
                self.account_closed(&name, &error);
                if self.config.fail_fast && self.report.stop.is_completed() {
                    self.report.stop = StopReason::FailFast;
                }
                return;
            }
        };
        Stats::add(&self.shared.stats.failed, 1);
        let failure = Failure {
            account_id: Some(key.account_id),
            account_name: None,
            token_name: key.token_name.clone(),
            http_status: status,
            error: error.clone(),
        };
        self.shared.recorder.failure(failure.clone());
        self.report.failures.push(failure);
        self.shared.emit(ItemEvent::Done {
            key,
            attempts: item.attempt,
            result: ItemResult::Failed {
                http_status: status,
                error,
            },
        });
        if self.config.fail_fast && self.report.stop.is_completed() {
            self.report.stop = StopReason::FailFast;
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
