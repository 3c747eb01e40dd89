//! One attempt at one item: journal the intent, send, journal the outcome, then decide what
//! the dispatcher does next. A token's attempt is here; a sub account's is
//! [`super::accounts::attempt`]. Both send their create through [`Shared::send_after_intent`],
//! the one place that keeps a create from going out before its intent is durable. What an
//! attempt calls is behind the two [ports](super::ports), so that the executor runs against
//! fakes in its unit tests.

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

    /// A 429: the server did not process the attempt, so it does not count against
    /// max_attempts.
    pub(super) fn rate_limited(&mut self) {
        self.attempt = self.attempt.saturating_sub(1);
        self.rate_limited += 1;
    }
}

/// A create that went out: the sequence number of its durable intent (which its outcome must
/// settle) and the answer (already told to the pacer).
pub(super) struct Sent<T> {
    pub(super) seq: u64,
    pub(super) answer: Result<T, ApiError>,
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

    /// Journals the intent of `item`'s attempt and, only once it is durable, sends the create
    /// `send` makes, then gives the send slot back with what the answer tells the pacer. Every
    /// create of a run, a token's or a sub account's, goes out here: a create is not
    /// idempotent, and one sent before its intent is durable could make a token or an account
    /// that no record names after a crash. When the intent cannot be journaled, nothing is
    /// sent, the slot is free at once, and the attempt ends with the state error.
    pub(super) async fn send_after_intent<T, F>(
        &self,
        item: &Item,
        ticket: Ticket,
        send: impl FnOnce() -> F,
    ) -> Result<Sent<T>, AttemptOutcome>
    where
        R: RecordOutcomes,
        F: std::future::Future<Output = Result<T, ApiError>>,
    {
        let unjournaled = matches!(item.key, CreateKey::Account(_))
            && crate::reintroduced::on(crate::reintroduced::Bug::AccountCreateUnjournaled);
        let intent = if unjournaled {
            Ok(0)
        } else {
            self.recorder.intent(&item.key, item.attempt).await
        };
        let seq = match intent {
            Ok(s) => s,
            Err(e) => {
                // Never sent: its slot is free at once.
                self.pacer.on_unsent(ticket);
                return Err(AttemptOutcome::State(e));
            }
        };
        Stats::add(&self.stats.attempts, 1);
        Stats::add(&self.stats.in_flight, 1);
        let answer = send().await;
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        match &answer {
            Ok(_) => self.pacer.on_answer(ticket, Answer::Served, None),
            Err(e) => self.answered_with_error(ticket, e),
        }
        Ok(Sent { seq, answer })
    }

    /// What a create's error answer tells the run, before its outcome is journaled: a stop is
    /// seen before the slot is given back (see `fatal_seen`), a 429 slows the rate controller,
    /// and any other answer gives the slot back as served or lost and counts in the
    /// ambiguity breaker.
    fn answered_with_error(&self, ticket: Ticket, e: &ApiError) {
        if e.class() == ErrorClass::FatalRun {
            self.fatal_seen.store(true, Ordering::SeqCst);
        }
        if e.is_rate_limited() {
            Stats::add(&self.stats.rate_limited, 1);
            self.pacer
                .on_answer(ticket, Answer::Limited, e.retry_after());
        } else {
            // 5xx and timeouts are not a rate signal: they have their own backoff, and
            // ambiguous ones their own budget.
            let answer = if e.http_status().is_some() {
                Answer::Served
            } else {
                Answer::Lost
            };
            self.pacer.on_answer(ticket, answer, None);
            self.breaker_record(e.class() == ErrorClass::Ambiguous);
        }
    }

    /// Counts an ambiguous outcome of `item` (one more possible orphan, against its budget)
    /// and tells the observer.
    pub(super) fn ambiguous(&self, item: &mut Item, event: ItemEvent) {
        Stats::add(&self.stats.ambiguous, 1);
        item.ambiguous += 1;
        self.emit(event);
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
    let Sent { seq, answer } = match sh
        .send_after_intent(&item, ticket, || sh.creator.create(&key))
        .await
    {
        Ok(sent) => sent,
        Err(out) => return out,
    };
    let created = match answer {
        Ok(created) => created,
        Err(e) => return on_error(key, item, seq, e, &sh).await,
    };
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
            sh.breaker_record(true);
            sh.ambiguous(
                &mut item,
                ItemEvent::Ambiguous {
                    key,
                    detail: detail.clone(),
                },
            );
            item.last_error = Some((None, detail));
            AttemptOutcome::Retry {
                item,
                retry_after: None,
            }
        }
        Ok(_) => {
            sh.breaker_record(false);
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
) -> AttemptOutcome {
    let class = e.class();
    let status = e.http_status();
    let detail = e.short();
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
        item.rate_limited();
    }
    match class {
        ErrorClass::Retryable | ErrorClass::Ambiguous => {
            if class == ErrorClass::Ambiguous {
                sh.ambiguous(
                    &mut item,
                    ItemEvent::Ambiguous {
                        key: key.clone(),
                        detail: detail.clone(),
                    },
                );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::state::Failure;

    /// A journal whose intents take a while to be durable (an fsync), or are refused.
    #[derive(Default)]
    struct SlowJournal {
        durable: AtomicBool,
        refuse: bool,
    }

    impl RecordOutcomes for Arc<SlowJournal> {
        async fn intent(&self, _key: &CreateKey, _attempt: u32) -> Result<u64, StateError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.refuse {
                return Err(StateError::RecorderGone);
            }
            self.durable.store(true, Ordering::SeqCst);
            Ok(7)
        }
        async fn outcome(&self, _seq: u64, _settled: Settled) -> Result<Applied, StateError> {
            Ok(Applied::Noted)
        }
        fn failure(&self, _failure: Failure) {}
    }

    /// What attempts share, with one send slot.
    fn shared(journal: &Arc<SlowJournal>) -> Shared<(), Arc<SlowJournal>> {
        let pacer = Pacer::new(1000.0, false);
        pacer.cap_in_flight(1);
        Shared {
            creator: (),
            recorder: journal.clone(),
            pacer: Arc::new(pacer),
            stats: Arc::default(),
            observer: None,
            breaker: std::sync::Mutex::default(),
            fatal_seen: AtomicBool::default(),
            cancel: Cancel::default(),
            lookup: Duration::from_secs(1),
        }
    }

    fn item() -> Item {
        Item::new(TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        })
    }

    /// The one send slot is free again (the next send can take it).
    async fn slot_is_free<C, R>(sh: &Shared<C, R>) {
        let next = tokio::time::timeout(Duration::from_secs(5), sh.pacer.acquire()).await;
        assert!(next.is_ok(), "the send slot was not given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_goes_out_only_once_its_intent_is_durable() {
        let journal = Arc::new(SlowJournal::default());
        let sh = shared(&journal);
        let ticket = sh.pacer.acquire().await;
        let sent = sh
            .send_after_intent(&item(), ticket, || async {
                Ok::<bool, ApiError>(journal.durable.load(Ordering::SeqCst))
            })
            .await;
        let Ok(Sent { seq, answer }) = sent else {
            panic!("the intent was journaled, so the create was sent");
        };
        assert_eq!(seq, 7, "the outcome settles the intent's sequence number");
        assert!(
            answer.unwrap(),
            "the create went out before its intent was durable"
        );
        assert_eq!(sh.stats.attempts.load(Ordering::Relaxed), 1);
        assert_eq!(sh.stats.in_flight.load(Ordering::Relaxed), 0);
        slot_is_free(&sh).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_intent_sends_nothing_and_frees_the_slot() {
        let journal = Arc::new(SlowJournal {
            refuse: true,
            ..SlowJournal::default()
        });
        let sh = shared(&journal);
        let ticket = sh.pacer.acquire().await;
        let called = AtomicBool::new(false);
        let out = sh
            .send_after_intent(&item(), ticket, || async {
                called.store(true, Ordering::SeqCst);
                Ok::<(), ApiError>(())
            })
            .await;
        assert!(matches!(
            out,
            Err(AttemptOutcome::State(StateError::RecorderGone))
        ));
        assert!(
            !called.load(Ordering::SeqCst),
            "sent without a durable intent"
        );
        assert_eq!(sh.stats.attempts.load(Ordering::Relaxed), 0);
        slot_is_free(&sh).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_answer_gives_the_slot_back_and_a_stop_is_seen() {
        let url = || "http://127.0.0.1:1/x".to_owned();
        let answers = [
            ApiError::Status {
                url: url(),
                status: 429,
                message: "slow down".into(),
                retry_after: None,
            },
            ApiError::Timeout {
                url: url(),
                timeout: Duration::from_secs(1),
            },
            ApiError::Status {
                url: url(),
                status: 401,
                message: "no".into(),
                retry_after: None,
            },
        ];
        let journal = Arc::new(SlowJournal::default());
        let sh = shared(&journal);
        for e in answers {
            let fatal = e.class() == ErrorClass::FatalRun;
            let ticket = sh.pacer.acquire().await;
            let sent = sh
                .send_after_intent(&item(), ticket, || async { Err::<(), _>(e) })
                .await;
            assert!(matches!(sent, Ok(Sent { answer: Err(_), .. })));
            assert_eq!(sh.fatal_seen.load(Ordering::SeqCst), fatal);
        }
        assert!(sh.fatal_seen.load(Ordering::SeqCst), "a 401 stops the run");
        assert_eq!(sh.stats.rate_limited.load(Ordering::Relaxed), 1);
        assert_eq!(sh.stats.attempts.load(Ordering::Relaxed), 3);
        slot_is_free(&sh).await;
    }
}
