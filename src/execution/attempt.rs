//! One attempt at one token: journal the intent, send, journal the outcome, then decide what
//! the dispatcher does next. What an attempt calls is behind the two [ports](super::ports), so
//! that the executor runs against fakes in its unit tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ambiguity::{Breaker, breaker_message};
use super::{
    Answer, ItemEvent, ItemResult, Observer, Pacer, RecordOutcomes, SendCreate, Stats, Ticket,
};
use crate::api::{ApiError, ErrorClass};
use crate::key::TokenKey;
use crate::state::Applied;
use crate::state::StateError;
use crate::state::{HeldSecret, Outcome};
use crate::timestamp::epoch_to_rfc3339;

/// An item of the plan and what its attempts so far taught.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) key: TokenKey,
    /// Attempts made, not counting those answered 429.
    pub(super) attempt: u32,
    /// Attempts answered 429.
    pub(super) rate_limited: u32,
    /// Attempts whose outcome was ambiguous.
    pub(super) ambiguous: u32,
    pub(super) last_error: Option<(Option<u16>, String)>,
}

impl Item {
    pub(super) fn new(key: TokenKey) -> Item {
        Item {
            key,
            attempt: 0,
            rate_limited: 0,
            ambiguous: 0,
            last_error: None,
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

    /// Why the run must stop sending, when the ambiguity breaker opened.
    pub(super) fn breaker_stop(&self) -> Option<String> {
        let b = self.breaker();
        b.is_open().then(|| {
            let (ambiguous, of) = b.recent();
            breaker_message(ambiguous, of)
        })
    }
}

/// One attempt: journal the intent, send, journal the outcome, then decide.
pub(super) async fn attempt<C: SendCreate, R: RecordOutcomes>(
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
    let res = sh.creator.create(&item.key).await;
    sh.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    let created = match res {
        Ok(created) => created,
        Err(e) => return on_error(item, seq, e, &sh, ticket).await,
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

async fn on_error<C, R: RecordOutcomes>(
    mut item: Item,
    seq: u64,
    e: ApiError,
    sh: &Shared<C, R>,
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
        ErrorClass::FatalRun => AttemptOutcome::Fatal(e),
    }
}
