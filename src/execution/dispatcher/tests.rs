#![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::api::{ApiError, CreatedToken};
use crate::execution::Settled;
use crate::secret::Secret;
use crate::state::Applied;
use crate::state::Outcome;
use crate::state::StateError;

/// What a fake server answers to one create call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Created,
    Status(u16),
    /// A 503 with a `Retry-After` of this many seconds.
    UnavailableFor(u64),
    Timeout,
    /// Never answers (until the test's drain timeout).
    Hang,
}

/// A scripted API: each token name gets its answers in order, then `Created`.
#[derive(Default)]
struct FakeApi {
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<String>>,
    /// When each call was made.
    call_times: Mutex<Vec<Instant>>,
    next_id: AtomicU64,
    /// Signalled at every call.
    called: tokio::sync::Notify,
    in_flight: AtomicU64,
    peak: AtomicU64,
}

impl FakeApi {
    fn with(script: &[(&str, &[Answer])]) -> Arc<FakeApi> {
        let api = FakeApi::default();
        for (name, answers) in script {
            api.script
                .lock()
                .unwrap()
                .insert((*name).to_owned(), answers.iter().cloned().collect());
        }
        Arc::new(api)
    }
    fn calls(&self, name: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    }
}

impl SendCreate for Arc<FakeApi> {
    async fn create(&self, key: &TokenKey) -> Result<CreatedToken, ApiError> {
        self.calls.lock().unwrap().push(key.token_name.clone());
        self.call_times.lock().unwrap().push(Instant::now());
        self.called.notify_one();
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        // Answers take a while (paused clock: no real wait), so that calls overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let answer = self
            .script
            .lock()
            .unwrap()
            .get_mut(&key.token_name)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Answer::Created);
        let url = "http://127.0.0.1:1/v1/api-tokens/sub-account".to_owned();
        match answer {
            Answer::Created => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) as i64 + 100;
                Ok(CreatedToken {
                    id,
                    name: Some(key.token_name.clone()),
                    token: Secret::new(format!("secret-{}", key.token_name)),
                    created_at: Some(1_621_858_311.0),
                })
            }
            Answer::Status(status) => Err(ApiError::Status {
                url,
                status,
                message: "scripted".into(),
                retry_after: None,
            }),
            Answer::UnavailableFor(secs) => Err(ApiError::Status {
                url,
                status: 503,
                message: "scripted".into(),
                retry_after: Some(Duration::from_secs(secs)),
            }),
            Answer::Timeout => Err(ApiError::Timeout {
                url,
                timeout: Duration::from_secs(30),
            }),
            Answer::Hang => std::future::pending().await,
        }
    }
}

/// An in-memory recorder that can refuse intents after a number of them.
#[derive(Default)]
struct FakeRecorder {
    intents: Mutex<Vec<(TokenKey, u32)>>,
    outcomes: Mutex<Vec<(TokenKey, Outcome)>>,
    failures: Mutex<Vec<Failure>>,
    refuse_after: Option<usize>,
    /// Names whose next created token the state already holds for another key (once per
    /// entry).
    duplicate_once: Mutex<Vec<String>>,
    /// What the executor last said of the sends ahead, and what it had said at each outcome.
    sends_ahead: std::sync::atomic::AtomicBool,
    ahead_at_outcomes: Mutex<Vec<bool>>,
    /// How long each outcome takes to be durable (an fsync waiting to be shared).
    outcome_delay: Duration,
}

impl RecordOutcomes for Arc<FakeRecorder> {
    async fn intent(&self, key: &CreateKey, attempt: u32) -> Result<u64, StateError> {
        let mut intents = self.intents.lock().unwrap();
        if self.refuse_after.is_some_and(|n| intents.len() >= n) {
            return Err(StateError::RecorderGone);
        }
        let key = key.as_token().unwrap();
        intents.push((key.clone(), attempt));
        Ok(intents.len() as u64)
    }
    async fn outcome(&self, _seq: u64, settled: Settled) -> Result<Applied, StateError> {
        let Settled::Token(key, outcome) = settled else {
            panic!("a token run settles tokens only")
        };
        if !self.outcome_delay.is_zero() {
            tokio::time::sleep(self.outcome_delay).await;
        }
        let mut dup = self.duplicate_once.lock().unwrap();
        let applied = match outcome {
            Outcome::Created { .. } if dup.contains(&key.token_name) => {
                let at = dup.iter().position(|n| n == &key.token_name).unwrap();
                dup.remove(at);
                Applied::DuplicateId(TokenKey {
                    account_id: 7,
                    token_name: "other".into(),
                })
            }
            Outcome::Created { .. } => Applied::Recorded,
            _ => Applied::Noted,
        };
        drop(dup);
        self.outcomes.lock().unwrap().push((key.clone(), outcome));
        self.ahead_at_outcomes
            .lock()
            .unwrap()
            .push(self.sends_ahead.load(Ordering::Relaxed));
        Ok(applied)
    }
    fn failure(&self, failure: Failure) {
        self.failures.lock().unwrap().push(failure);
    }
    fn sends_ahead(&self, more: bool) {
        self.sends_ahead.store(more, Ordering::Relaxed);
    }
}

fn keys(names: &[&str]) -> Vec<TokenKey> {
    names
        .iter()
        .map(|n| TokenKey {
            account_id: 7,
            token_name: (*n).to_owned(),
        })
        .collect()
}

fn config(concurrency: usize) -> ExecConfig {
    ExecConfig {
        concurrency,
        max_attempts: 3,
        max_ambiguous: 2,
        fail_fast: false,
        backoff: Backoff::default(),
        drain_timeout: Duration::from_secs(5),
        earlier_ambiguous: Default::default(),
    }
}

async fn run(
    names: &[&str],
    config: ExecConfig,
    api: &Arc<FakeApi>,
    rec: &Arc<FakeRecorder>,
    cancel: Cancel,
) -> RunReport {
    run_observed(names, config, api, rec, cancel, None, 1000.0)
        .await
        .0
}

async fn run_observed(
    names: &[&str],
    config: ExecConfig,
    api: &Arc<FakeApi>,
    rec: &Arc<FakeRecorder>,
    cancel: Cancel,
    observer: Option<Arc<dyn Observer>>,
    rate: f64,
) -> (RunReport, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let services = Services {
        creator: api.clone(),
        recorder: rec.clone(),
        pacer: Arc::new(Pacer::new(rate, false)),
        stats: stats.clone(),
        observer,
        cancel,
        rng: crate::random::seeded(7),
    };
    (execute(keys(names), config, services).await, stats)
}

/// Every event of a run, in order.
#[derive(Default)]
struct Events(Mutex<Vec<ItemEvent>>);

impl Observer for Events {
    fn event(&self, event: &ItemEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    fn of(&self, name: &str) -> Vec<ItemEvent> {
        let key = |e: &ItemEvent| match e {
            ItemEvent::Done { key, .. }
            | ItemEvent::Ambiguous { key, .. }
            | ItemEvent::Retry { key, .. } => key.token_name.clone(),
            ItemEvent::AccountDone { name, .. } | ItemEvent::AccountAmbiguous { name, .. } => {
                name.clone()
            }
        };
        let all = self.0.lock().unwrap();
        all.iter().filter(|e| key(e) == name).cloned().collect()
    }
}

fn created(rec: &FakeRecorder, name: &str) -> usize {
    rec.outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, o)| k.token_name == name && matches!(o, Outcome::Created { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_retryable_error_is_retried_and_every_outcome_recorded() {
    let api = FakeApi::with(&[("a", &[Answer::Status(503), Answer::Status(503)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&["a", "b"], config(2), &api, &rec, Cancel::default()).await;
    assert!(r.stop.is_completed(), "{:?}", r.stop);
    assert_eq!((r.created, r.attempts, r.retries), (2, 4, 2));
    assert_eq!(api.calls("a"), 3);
    assert_eq!(created(&rec, "a"), 1);
    // Every attempt's intent has an outcome.
    assert_eq!(rec.intents.lock().unwrap().len(), 4);
    assert_eq!(rec.outcomes.lock().unwrap().len(), 4);
    assert!(r.failures.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_recorder_is_told_while_more_sends_are_ahead_and_when_none_are() {
    // Sends 50 ms apart, answers 20 ms after them, two slots: the first two outcomes come
    // while the rest wait to be sent and a slot is free; the last comes once nothing is
    // left to send (the recorder then fsyncs it at once).
    let at_20_per_s = |names: &'static [&'static str], api, concurrency| async move {
        let rec = Arc::new(FakeRecorder::default());
        let cancel = Cancel::default();
        let (r, _) = run_observed(names, config(concurrency), &api, &rec, cancel, None, 20.0).await;
        (r, rec)
    };
    let (r, rec) = at_20_per_s(&["a", "b", "c"], FakeApi::with(&[]), 2).await;
    assert_eq!(r.created, 3);
    assert_eq!(*rec.ahead_at_outcomes.lock().unwrap(), [true, true, false]);
    assert!(!rec.sends_ahead.load(Ordering::Relaxed));
    // One slot: it is free as soon as the answer arrives, before the outcome is durable, so
    // the next intent can come while the outcome waits, and share its fsync (before the
    // slot was given back at the answer, no intent could come until the outcome was
    // acknowledged, and the slot sat idle through that fsync).
    let (r, rec) = at_20_per_s(&["a", "b", "c"], FakeApi::with(&[]), 1).await;
    assert_eq!(r.created, 3);
    assert_eq!(*rec.ahead_at_outcomes.lock().unwrap(), [true, true, false]);
    // A retry waiting for its backoff is not: b's outcome comes with only a's retry left.
    let api = FakeApi::with(&[("a", &[Answer::Status(503)])]);
    let (r, rec) = at_20_per_s(&["a", "b"], api, 2).await;
    assert_eq!((r.created, r.attempts), (2, 3));
    let order: Vec<String> = (rec.outcomes.lock().unwrap().iter())
        .map(|(k, _)| k.token_name.clone())
        .collect();
    assert_eq!(order, ["a", "b", "a"]);
    assert_eq!(*rec.ahead_at_outcomes.lock().unwrap(), [true, false, false]);
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_a_429_does_not_use_one_up() {
    let api = FakeApi::with(&[
        ("limited", &[Answer::Status(429); 5]),
        ("broken", &[Answer::Status(503); 10]),
    ]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(
        &["limited", "broken"],
        config(2),
        &api,
        &rec,
        Cancel::default(),
    )
    .await;
    // Five 429s, then created: 429s are not processed requests.
    assert_eq!(created(&rec, "limited"), 1);
    assert_eq!(api.calls("limited"), 6);
    // Three attempts (max_attempts), then failed for good with the reason.
    assert_eq!(api.calls("broken"), 3);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].http_status, Some(503));
    assert!(
        r.failures[0].error.contains("after 3 attempts"),
        "{:?}",
        r.failures
    );
    assert_eq!(rec.failures.lock().unwrap().len(), 1);
    assert_eq!(r.rate_limited, 5);
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_answer_is_journaled_reported_and_retried() {
    let api = FakeApi::with(&[("a", &[Answer::Timeout])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&["a"], config(1), &api, &rec, Cancel::default()).await;
    assert_eq!((r.created, r.ambiguous), (1, 1));
    let outcomes = rec.outcomes.lock().unwrap();
    assert!(matches!(outcomes[0].1, Outcome::Ambiguous { .. }));
    assert!(matches!(outcomes[1].1, Outcome::Created { .. }));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_stops_at_the_first_item_that_fails_for_good() {
    let api = FakeApi::with(&[("a", &[Answer::Status(404)])]);
    let rec = Arc::new(FakeRecorder::default());
    let cfg = ExecConfig {
        fail_fast: true,
        ..config(1)
    };
    let r = run(&["a", "b", "c"], cfg, &api, &rec, Cancel::default()).await;
    assert!(matches!(r.stop, StopReason::FailFast), "{:?}", r.stop);
    assert_eq!(r.created, 0);
    assert_eq!(r.not_attempted, 2);
    assert_eq!(api.calls("b") + api.calls("c"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_answer_stops_the_run() {
    let api = FakeApi::with(&[("a", &[Answer::Status(401)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&["a", "b", "c"], config(1), &api, &rec, Cancel::default()).await;
    assert!(
        matches!(r.stop, StopReason::Fatal(ref e) if e.http_status() == Some(401)),
        "{:?}",
        r.stop
    );
    assert_eq!(r.not_attempted, 2);
}

#[tokio::test(start_paused = true)]
async fn no_request_is_sent_once_the_state_cannot_be_written() {
    let api = FakeApi::with(&[]);
    let rec = Arc::new(FakeRecorder {
        refuse_after: Some(1),
        ..FakeRecorder::default()
    });
    let r = run(&["a", "b", "c"], config(1), &api, &rec, Cancel::default()).await;
    assert!(matches!(r.stop, StopReason::State(_)), "{:?}", r.stop);
    assert_eq!(api.calls.lock().unwrap().len(), 1);
    assert_eq!(r.created, 1);
}

/// Runs `names` one at a time, with Ctrl-C as soon as the first request was sent.
async fn run_with_ctrl_c_at_first_send(
    names: &[&str],
    api: &Arc<FakeApi>,
    rec: &Arc<FakeRecorder>,
) -> RunReport {
    let cancel = Cancel::default();
    let stopper = cancel.clone();
    let api2 = api.clone();
    tokio::spawn(async move {
        api2.called.notified().await;
        stopper.cancel();
    });
    run(names, config(1), api, rec, cancel).await
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_drains_what_is_in_flight_and_sends_nothing_new() {
    // "slow" is answered only after a while; Ctrl-C comes while it is in flight.
    let api = FakeApi::with(&[("slow", &[Answer::Status(503)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run_with_ctrl_c_at_first_send(&["slow", "b", "c"], &api, &rec).await;
    assert!(matches!(r.stop, StopReason::Interrupted), "{:?}", r.stop);
    // The one in flight ended and was recorded; its retry and the rest were not sent.
    assert_eq!(rec.outcomes.lock().unwrap().len(), 1);
    assert_eq!(api.calls.lock().unwrap().len(), 1);
    assert_eq!(r.not_attempted, 3);
    assert_eq!(r.abandoned, 0);
}

#[tokio::test(start_paused = true)]
async fn what_stopped_the_run_first_is_what_it_reports() {
    // Ctrl-C while "slow" is in flight; its answer, a 401, would stop the run on its own:
    // the run still says it was interrupted.
    let api = FakeApi::with(&[("slow", &[Answer::Status(401)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run_with_ctrl_c_at_first_send(&["slow", "b"], &api, &rec).await;
    assert!(matches!(r.stop, StopReason::Interrupted), "{:?}", r.stop);
    assert_eq!(api.calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_ends_is_abandoned_after_the_drain_timeout() {
    let api = FakeApi::with(&[("hang", &[Answer::Hang])]);
    let rec = Arc::new(FakeRecorder::default());
    let started = Instant::now();
    let r = run_with_ctrl_c_at_first_send(&["hang", "b"], &api, &rec).await;
    assert!(matches!(r.stop, StopReason::Interrupted), "{:?}", r.stop);
    assert_eq!(r.abandoned, 1);
    // Bounded by the drain timeout (paused clock: exact).
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(6));
    // Its intent has no outcome: the journal makes it a possible orphan.
    assert_eq!(rec.intents.lock().unwrap().len(), 1);
    assert!(rec.outcomes.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slot_is_free_when_the_answer_arrives_not_when_its_record_is_durable() {
    // One slot, answers after 20 ms (the fake API's latency), each outcome durable 50 ms
    // later: the next request goes as soon as the answer is in. With the slot held through
    // the record, each token took 20 + 50 ms.
    let api = FakeApi::with(&[]);
    let rec = Arc::new(FakeRecorder {
        outcome_delay: Duration::from_millis(50),
        ..FakeRecorder::default()
    });
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = run(&names, config(1), &api, &rec, Cancel::default()).await;
    assert_eq!(r.created, 10);
    assert_eq!(api.peak.load(Ordering::Relaxed), 1);
    let times = api.call_times.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(50)),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn never_more_in_flight_than_the_concurrency() {
    let api = FakeApi::with(&[]);
    let rec = Arc::new(FakeRecorder::default());
    let names: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = run(&names, config(3), &api, &rec, Cancel::default()).await;
    assert_eq!(r.created, 50);
    // The concurrency was used, and never exceeded.
    assert_eq!(api.peak.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn an_item_out_of_ambiguous_attempts_is_not_sent_again_and_observers_see_it_all() {
    let api = FakeApi::with(&[
        ("amb", &[Answer::Timeout, Answer::Timeout]),
        ("r", &[Answer::Status(503)]),
    ]);
    let rec = Arc::new(FakeRecorder::default());
    let events = Arc::new(Events::default());
    let (r, stats) = run_observed(
        &["amb", "ok", "r"],
        config(1),
        &api,
        &rec,
        Cancel::default(),
        Some(events.clone()),
        1000.0,
    )
    .await;
    assert!(r.stop.is_completed(), "{:?}", r.stop);
    assert_eq!(api.calls("amb"), 2);
    assert_eq!((r.created, r.ambiguous, r.ambiguity_exhausted), (2, 2, 1));
    assert_eq!(r.failures.len(), 1);
    assert!(
        r.failures[0]
            .error
            .contains("not sent again after 2 ambiguous attempts"),
        "{:?}",
        r.failures
    );
    assert_eq!(Stats::get(&stats.in_flight), 0);
    assert_eq!(Stats::get(&stats.failed), 1);
    assert_eq!(Stats::get(&stats.total), 3);
    let amb = events.of("amb");
    assert!(matches!(amb[0], ItemEvent::Ambiguous { .. }), "{amb:?}");
    assert!(
        matches!(amb[1], ItemEvent::Retry { attempt: 1, .. }),
        "{amb:?}"
    );
    assert!(
        matches!(
            amb.last(),
            Some(ItemEvent::Done {
                attempts: 2,
                result: ItemResult::Failed { .. },
                ..
            })
        ),
        "{amb:?}"
    );
    assert!(
        matches!(
            events.of("ok")[..],
            [ItemEvent::Done {
                attempts: 1,
                result: ItemResult::Created { .. },
                ..
            }]
        ),
        "{:?}",
        events.of("ok")
    );
    let retried = events.of("r");
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(
        matches!(&retried[0], ItemEvent::Retry { attempt: 1, reason, .. } if reason.contains("503"))
    );
}

#[tokio::test(start_paused = true)]
async fn an_id_the_state_already_holds_is_ambiguous_and_the_item_retried() {
    let api = FakeApi::with(&[]);
    let rec = Arc::new(FakeRecorder {
        duplicate_once: Mutex::new(vec!["dup".into()]),
        ..FakeRecorder::default()
    });
    let events = Arc::new(Events::default());
    let (r, stats) = run_observed(
        &["dup"],
        config(1),
        &api,
        &rec,
        Cancel::default(),
        Some(events.clone()),
        1000.0,
    )
    .await;
    assert_eq!(api.calls("dup"), 2);
    assert_eq!((r.created, r.ambiguous, r.retries), (1, 1, 1));
    assert_eq!(Stats::get(&stats.created), 1);
    let ev = events.of("dup");
    assert!(
        matches!(&ev[0], ItemEvent::Ambiguous { detail, .. } if detail.contains("already recorded for 7/other")),
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_stops_a_service_that_answers_ambiguously_but_not_one_that_refuses() {
    let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let timeouts: Vec<(&str, &[Answer])> = names
        .iter()
        .map(|n| (*n, &[Answer::Timeout, Answer::Timeout][..]))
        .collect();
    let api = FakeApi::with(&timeouts);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&names, config(1), &api, &rec, Cancel::default()).await;
    match &r.stop {
        StopReason::AmbiguityBreaker(why) => {
            assert!(why.contains("30 of the last 30"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.ambiguous, 30);
    assert!(r.not_attempted > 0);

    let refusals: Vec<(&str, &[Answer])> = names
        .iter()
        .map(|n| (*n, &[Answer::Status(503)][..]))
        .collect();
    let api = FakeApi::with(&refusals);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&names, config(1), &api, &rec, Cancel::default()).await;
    assert!(r.stop.is_completed(), "{:?}", r.stop);
    assert_eq!(r.created, 40);
}

#[tokio::test(start_paused = true)]
async fn an_item_answered_429_too_often_fails() {
    let api = FakeApi::with(&[("busy", &[Answer::Status(429); 40])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&["busy"], config(1), &api, &rec, Cancel::default()).await;
    assert_eq!(api.calls("busy"), MAX_RATE_LIMITED_PER_ITEM as usize);
    assert_eq!(r.failures.len(), 1);
    assert!(
        r.failures[0].error.contains("30 more answered 429"),
        "{:?}",
        r.failures
    );
}

#[tokio::test(start_paused = true)]
async fn an_item_waiting_for_its_retry_when_the_run_stops_is_reported() {
    let api = FakeApi::with(&[("slow", &[Answer::Status(503)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run_with_ctrl_c_at_first_send(&["slow", "b"], &api, &rec).await;
    assert!(matches!(r.stop, StopReason::Interrupted), "{:?}", r.stop);
    assert_eq!(r.not_attempted, 2);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].token_name, "slow");
    assert!(
        r.failures[0]
            .error
            .ends_with("(not retried: the run stopped)"),
        "{:?}",
        r.failures
    );
}

#[test]
fn retries_come_out_earliest_first_each_once() {
    let t0 = Instant::now();
    let mut heap = RetryHeap::default();
    assert!(heap.is_empty());
    assert_eq!(heap.next_due(), None);
    let item = |n: &str| Item::new(keys(&[n]).remove(0));
    heap.push(t0 + Duration::from_secs(2), item("late"));
    heap.push(t0 + Duration::from_secs(1), item("early"));
    heap.push(t0 + Duration::from_secs(1), item("early-too"));
    assert!(!heap.is_empty());
    assert_eq!(heap.next_due(), Some(t0 + Duration::from_secs(1)));
    let names: Vec<String> = std::iter::from_fn(|| heap.pop())
        .map(|i| i.key.as_token().unwrap().token_name.clone())
        .collect();
    assert_eq!(names, ["early", "early-too", "late"]);
    assert!(heap.is_empty());
}

#[test]
fn an_observer_prints_as_its_trait() {
    let events: Arc<dyn Observer> = Arc::new(Events::default());
    assert_eq!(format!("{events:?}"), "Observer");
}

#[tokio::test(start_paused = true)]
async fn duplicate_ids_count_against_the_ambiguity_budget() {
    let api = FakeApi::with(&[]);
    let rec = Arc::new(FakeRecorder {
        duplicate_once: Mutex::new(vec!["dup".into(), "dup".into()]),
        ..FakeRecorder::default()
    });
    let r = run(&["dup"], config(1), &api, &rec, Cancel::default()).await;
    assert_eq!(api.calls("dup"), 2);
    assert_eq!((r.created, r.ambiguity_exhausted), (0, 1));
    assert!(
        r.failures[0].error.contains("after 2 ambiguous attempts"),
        "{:?}",
        r.failures
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_time() {
    // A 503 with Retry-After: the pacer is not paused (not a 429), the retry's own time is
    // what holds it back.
    let api = FakeApi::with(&[("a", &[Answer::UnavailableFor(2)])]);
    let rec = Arc::new(FakeRecorder::default());
    let r = run(&["a"], config(1), &api, &rec, Cancel::default()).await;
    assert_eq!(r.created, 1);
    let times = api.call_times.lock().unwrap().clone();
    assert_eq!(times.len(), 2);
    assert!(
        times[1].duration_since(times[0]) >= Duration::from_secs(2),
        "{:?}",
        times[1].duration_since(times[0])
    );
}
