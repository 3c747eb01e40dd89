//! One attempt at one item: journal the intent, send, journal the outcome, then decide what
//! the dispatcher does next. A token's attempt is here; a sub account's is
//! [`super::accounts::attempt`]. What an attempt calls is behind the two [ports](super::ports), so
//! that the executor runs against fakes in its unit tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::accounts::AccountItem;
use super::ambiguity::{Breaker, breaker_message};
use super::{
    Answer, Cancel, ItemEvent, ItemResult, Observer, Pacer, RecordOutcomes, SendCreate, Settled,
    Stats, Ticket,
};
use crate::api::{ApiError, ErrorClass};
use crate::key::{CreateKey, TokenKey};
use crate::state::Applied;
use crate::state::StateError;
use crate::state::{HeldSecret, Outcome};
use crate::timestamp::epoch_to_rfc3339;

/// An item of the plan and what its attempts so far taught.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) key: CreateKey,
    /// Attempts made, not counting those answered 429.
    pub(super) attempt: u32,
    /// Attempts answered 429.
    pub(super) rate_limited: u32,
    /// Attempts whose outcome was ambiguous.
    pub(super) ambiguous: u32,
    pub(super) last_error: Option<(Option<u16>, String)>,
    /// A sub account's settings and step (`None` for a token).
    pub(super) account: Option<Box<AccountItem>>,
}

impl Item {
    pub(super) fn new(key: impl Into<CreateKey>) -> Item {
        Item {
            key: key.into(),
            attempt: 0,
            rate_limited: 0,
            ambiguous: 0,
            last_error: None,
            account: None,
        }
    }

    /// A sub account's item.
    pub(super) fn account(name: &str, account: AccountItem) -> Item {
        Item {
            account: Some(Box::new(account)),
            ..Item::new(super::accounts::key(name))
        }
    }
}

/// How an attempt ended, for the dispatcher.
pub(super) enum AttemptOutcome {
    Created,
    Retry {
        item: Item,
        retry_after: Option<Duration>,
    },
    Failed(Item, Option<u16>, String),
    Fatal(ApiError),
    State(StateError),
    /// A sub account's id is durable (created, or found by a lookup): what waits for it goes.
    AccountReady {
        item: Item,
        id: u32,
        adopted: bool,
    },
    /// A sub account item needs the dependency gate again (a lookup found nothing; it is to be
    /// created).
    Waits(Item),
    /// A sub account item with nothing more to do.
    AccountDone,
    /// A sub account's shipping token is durable.
    ShippingRead {
        name: String,
        id: u32,
    },
    /// A sub account's shipping token could not be read.
    ShippingFailed {
        name: String,
        id: u32,
        why: String,
    },
}

/// What every attempt of a run shares.
pub(super) struct Shared<C, R> {
    pub(super) creator: C,
    pub(super) recorder: R,
    pub(super) pacer: Arc<Pacer>,
    pub(super) stats: Arc<Stats>,
    pub(super) observer: Option<Arc<dyn Observer>>,
    /// The run-wide share of ambiguous answers.
    pub(super) breaker: std::sync::Mutex<Breaker>,
    /// Set when an answer stops the run (a redirect, a refused owner token), before that
    /// answer frees its slot: the slot is free when the answer arrives, while the run learns
    /// of the stop only once the outcome is recorded, and no request may go out in between.
    pub(super) fatal_seen: std::sync::atomic::AtomicBool,
    /// Ctrl-C (a lookup stops looking).
    pub(super) cancel: Cancel,
    /// How long to look for a sub account after an ambiguous create.
    pub(super) lookup: Duration,
}

impl<C, R> Shared<C, R> {
    pub(super) fn emit(&self, e: ItemEvent) {
        if let Some(o) = &self.observer {
            o.event(&e);
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an answer in the run-wide share of ambiguous ones.
    pub(super) fn breaker_record(&self, ambiguous: bool) {
        self.breaker().record(ambiguous);
    }

    /// Why the run must stop sending, when the ambiguity breaker opened.
    pub(super) fn breaker_stop(&self) -> Option<String> {
        let b = self.breaker();
        b.is_open().then(|| {
            let (ambiguous, of) = b.recent();
            breaker_message(ambiguous, of)
        })
    }
}

/// One attempt of an item, of its kind.
pub(super) async fn attempt<C: SendCreate, R: RecordOutcomes>(
    item: Item,
    sh: Arc<Shared<C, R>>,
    ticket: Ticket,
) -> AttemptOutcome {
    match item.key.clone() {
        CreateKey::Token(key) => token(key, item, sh, ticket).await,
        CreateKey::Account(name) => super::accounts::attempt(item, name, sh, ticket).await,
    }
}

/// A token's attempt: journal the intent, send, journal the outcome, then decide.
async fn token<C: SendCreate, R: RecordOutcomes>(
    key: TokenKey,
    mut item: Item,
    sh: Arc<Shared<C, R>>,
    ticket: Ticket,
) -> AttemptOutcome {
    let seq = match sh.recorder.intent(&item.key, item.attempt).await {
        Ok(s) => s,
        Err(e) => {
            // Never sent: its slot is free at once.
            sh.pacer.on_unsent(ticket);
            return AttemptOutcome::State(e);
        }
    };
    Stats::add(&sh.stats.attempts, 1);
    Stats::add(&sh.stats.in_flight, 1);
    let res = sh.creator.create(&key).await;
    sh.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    let created = match res {
        Ok(created) => created,
        Err(e) => return on_error(key, item, seq, e, &sh, ticket).await,
    };
    sh.pacer.on_answer(ticket, Answer::Served, None);
    let created_at = created
        .created_at
        .map(epoch_to_rfc3339)
        .unwrap_or_else(|| sh.pacer.clock().now_rfc3339());
    let token_id = created.id;
    let outcome = Outcome::Created {
        token_id,
        secret: HeldSecret::plain(created.token),
        created_at,
    };
    match sh
        .recorder
        .outcome(seq, Settled::Token(key.clone(), outcome))
        .await
    {
        Ok(Applied::DuplicateId(other)) => {
            let detail = format!(
                "the API returned token id {token_id}, already recorded for {other}; the secret was kept aside"
            );
            Stats::add(&sh.stats.ambiguous, 1);
            sh.breaker().record(true);
            item.ambiguous += 1;
            sh.emit(ItemEvent::Ambiguous {
                key,
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
                key,
                attempts: item.attempt,
                result: ItemResult::Created { token_id },
            });
            AttemptOutcome::Created
        }
        Err(e) => AttemptOutcome::State(e),
    }
}

async fn on_error<C, R: RecordOutcomes>(
    key: TokenKey,
    mut item: Item,
    seq: u64,
    e: ApiError,
    sh: &Shared<C, R>,
    ticket: Ticket,
) -> AttemptOutcome {
    let class = e.class();
    let status = e.http_status();
    let detail = e.short();
    if class == ErrorClass::FatalRun {
        sh.fatal_seen.store(true, Ordering::SeqCst);
    }
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
    let outcome = match (class, e.kept_secret()) {
        // A secret in an answer that cannot be recorded: journaled and kept aside, never dropped.
        (_, Some((token, token_id))) => Outcome::KeptAside {
            token_id,
            secret: HeldSecret::plain(token.clone()),
            detail: detail.clone(),
        },
        (ErrorClass::Ambiguous, None) => Outcome::Ambiguous {
            detail: detail.clone(),
        },
        (_, None) => Outcome::NotCreated {
            http_status: status,
            detail: detail.clone(),
        },
    };
    if let Err(se) = sh
        .recorder
        .outcome(seq, Settled::Token(key.clone(), outcome))
        .await
    {
        return AttemptOutcome::State(se);
    }
    tracing::debug!(token = %key, attempt = item.attempt, error = %detail, "attempt failed");
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
                    key: key.clone(),
                    detail: detail.clone(),
                });
            }
            sh.emit(ItemEvent::Retry {
                key,
                attempt: item.attempt,
                reason: detail,
            });
            AttemptOutcome::Retry {
                retry_after: e.retry_after(),
                item,
            }
        }
        ErrorClass::FatalItem => AttemptOutcome::Failed(item, status, detail),
        ErrorClass::FatalRun => AttemptOutcome::Fatal(e),
    }
}
