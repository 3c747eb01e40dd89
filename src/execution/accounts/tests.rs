//! Account items in the one executor, against fakes of the API and the recorder.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // a fake notes when reads come, by the real clock

use std::sync::Mutex;

use super::*;
use crate::api::CreatedToken;
use crate::execution::{ExecConfig, Pacer, Services, Stats, execute};
use crate::key::TokenKey;
use crate::state::{Applied, Failure, StateError};

/// A fake API: each create answers per the script (`makes`: the account is made; `answered`:
/// the client gets the answer rather than a timeout). Token creates always succeed.
#[derive(Default)]
struct Fake {
    accounts: Mutex<Vec<(u32, String)>>,
    script: Mutex<Vec<(bool, bool)>>,
    creates: Mutex<Vec<AccountRequest>>,
    tokens: Mutex<Vec<TokenKey>>,
    /// Asked to stop (Ctrl-C) when a create is sent.
    stop_on_create: Mutex<Option<Cancel>>,
    /// Every read of the list fails.
    list_fails: std::sync::atomic::AtomicBool,
    /// This many reads of the list answer 429 (with a Retry-After of 600 ms) first.
    list_limited: std::sync::atomic::AtomicU32,
    /// When each read of the list came.
    list_reads: Mutex<Vec<std::time::Instant>>,
}

impl Fake {
    fn creates(&self) -> usize {
        self.creates.lock().unwrap().len()
    }
}

impl SendCreate for Arc<Fake> {
    async fn create(&self, key: &TokenKey) -> Result<CreatedToken, ApiError> {
        let mut tokens = self.tokens.lock().unwrap();
        tokens.push(key.clone());
        Ok(CreatedToken {
            id: 1000 + tokens.len() as i64,
            name: Some(key.token_name.clone()),
            token: Secret::new(format!("secret-{key}")),
            created_at: None,
        })
    }
    async fn create_account(&self, request: &AccountRequest) -> Result<u32, ApiError> {
        self.creates.lock().unwrap().push(request.clone());
        if let Some(c) = self.stop_on_create.lock().unwrap().as_ref() {
            c.cancel();
        }
        let next = self.script.lock().unwrap().pop();
        let (makes, answered) = next.unwrap_or((true, true));
        let mut accounts = self.accounts.lock().unwrap();
        let id = 100 + u32::try_from(accounts.len()).unwrap();
        if makes {
            accounts.push((id, request.account_name.clone()));
        }
        if answered && makes {
            Ok(id)
        } else {
            Err(ApiError::Timeout {
                url: "x".into(),
                timeout: Duration::from_secs(1),
            })
        }
    }
    async fn list_accounts(&self) -> Result<Vec<SubAccountInfo>, ApiError> {
        self.list_reads
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        let limited = self.list_limited.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
        if limited.is_ok() {
            return Err(ApiError::Status {
                url: "list".into(),
                status: 429,
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(600)),
            });
        }
        if self.list_fails.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ApiError::Timeout {
                url: "list".into(),
                timeout: Duration::from_secs(1),
            });
        }
        Ok(self
            .accounts
            .lock()
            .unwrap()
            .iter()
            .map(|(id, name)| SubAccountInfo {
                account_id: i64::from(*id),
                account_name: name.clone(),
                is_owner: false,
                settings: Default::default(),
            })
            .collect())
    }
    async fn shipping_token(&self, id: u32) -> Result<Secret, ApiError> {
        Ok(Secret::new(format!("ship-{id}")))
    }
}

/// The recorder's log, one line a record: `intent a 1`, `a created`, `token 100/ci`, ….
#[derive(Default)]
struct Log(Mutex<Vec<String>>, Mutex<Vec<Failure>>);

impl RecordOutcomes for Arc<Log> {
    async fn intent(&self, key: &CreateKey, attempt: u32) -> Result<u64, StateError> {
        let mut l = self.0.lock().unwrap();
        l.push(match key {
            CreateKey::Token(k) => format!("intent {k}"),
            CreateKey::Account(name) => format!("intent {name} {attempt}"),
        });
        Ok(l.len() as u64)
    }
    async fn outcome(&self, seq: u64, settled: Settled) -> Result<Applied, StateError> {
        let line = match settled {
            Settled::Token(k, _) => format!("token {k}"),
            Settled::Account(name, outcome) => {
                let what = serde_json::to_value(&outcome).unwrap()["result"].clone();
                format!("{name} {} {seq}", what.as_str().unwrap())
            }
        };
        self.0.lock().unwrap().push(line);
        Ok(Applied::Recorded)
    }
    fn failure(&self, failure: Failure) {
        self.1.lock().unwrap().push(failure);
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// The lines about `name` (its records, without the intent seq numbers).
    fn of(&self, name: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with(&format!("{name} ")) || l == &format!("intent {name} 1"))
            .collect()
    }
}

fn settings() -> AccountSettings {
    AccountSettings {
        email: Some("a@example.com".into()),
        retention_days: Some(7),
        max_daily_gb: Some(1.0),
        ..Default::default()
    }
}

fn account(name: &str, tokens: &[&str]) -> AccountWork {
    AccountWork {
        name: name.into(),
        settings: Some(settings()),
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        pending: None,
        earlier_ambiguous: 0,
    }
}

fn config() -> ExecConfig {
    ExecConfig {
        concurrency: 4,
        max_attempts: 4,
        max_ambiguous: 2,
        fail_fast: false,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
        drain_timeout: Duration::from_secs(5),
        earlier_ambiguous: Default::default(),
    }
}

async fn run(
    script: Vec<(bool, bool)>,
    accounts: Vec<AccountWork>,
    api: Arc<Fake>,
) -> (crate::execution::RunReport, Arc<Log>) {
    run_with(script, accounts, api, Cancel::default()).await
}

async fn run_with(
    script: Vec<(bool, bool)>,
    accounts: Vec<AccountWork>,
    api: Arc<Fake>,
    cancel: Cancel,
) -> (crate::execution::RunReport, Arc<Log>) {
    let pacer = Arc::new(Pacer::new(1000.0, false));
    let (report, log, _) = run_seen(script, accounts, api, cancel, config(), pacer).await;
    (report, log)
}

/// Collects the events a run emits.
#[derive(Default)]
struct Seen(Mutex<Vec<crate::execution::ItemEvent>>);

impl crate::execution::Observer for Seen {
    fn event(&self, event: &crate::execution::ItemEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// A run that also returns its events and its live counters at the end.
async fn run_seen(
    script: Vec<(bool, bool)>,
    accounts: Vec<AccountWork>,
    api: Arc<Fake>,
    cancel: Cancel,
    config: ExecConfig,
    pacer: Arc<Pacer>,
) -> (
    crate::execution::RunReport,
    Arc<Log>,
    (Vec<crate::execution::ItemEvent>, Arc<Stats>),
) {
    *api.script.lock().unwrap() = script.into_iter().rev().collect();
    let log = Arc::new(Log::default());
    let stats = Arc::new(Stats::default());
    let seen = Arc::new(Seen::default());
    let work = Work {
        accounts,
        lookup: Duration::from_millis(300),
        ..Work::default()
    };
    let services = Services {
        creator: api,
        recorder: log.clone(),
        pacer,
        stats: stats.clone(),
        observer: Some(seen.clone()),
        cancel,
        rng: crate::random::seeded(1),
    };
    let report = execute(work, config, services).await;
    let events = seen.0.lock().unwrap().clone();
    (report, log, (events, stats))
}

#[tokio::test]
async fn account_items_tell_observers_and_the_counters_how_they_went() {
    use crate::execution::{AccountResult, ItemEvent};
    use std::sync::atomic::Ordering::Relaxed;
    let api = Arc::new(Fake::default());
    // `a` is created at once; `b`'s create is ambiguous and made it (adopted); `c`'s creates
    // are ambiguous and make nothing, so it stops at its budget.
    let (report, _, (events, stats)) = run_seen(
        vec![(true, true), (true, false), (false, false), (false, false)],
        vec![account("a", &["ci"]), account("b", &[]), account("c", &[])],
        api.clone(),
        Cancel::default(),
        config(),
        Arc::new(Pacer::new(1000.0, false)),
    )
    .await;
    assert_eq!(report.accounts.created.len(), 2, "{report:?}");
    let done = |name: &str| {
        events
            .iter()
            .find_map(|e| match e {
                ItemEvent::AccountDone {
                    name: n, result, ..
                } if n == name => Some(result.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no event for {name}: {events:?}"))
    };
    assert_eq!(
        done("a"),
        AccountResult::Created {
            account_id: report.accounts.created["a"]
        }
    );
    assert_eq!(
        done("b"),
        AccountResult::Adopted {
            account_id: report.accounts.created["b"]
        }
    );
    assert!(
        matches!(done("c"), AccountResult::Failed { error, .. } if error.contains("check the Logz.io UI")),
        "{events:?}"
    );
    let ambiguous: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ItemEvent::AccountAmbiguous { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ambiguous, ["b", "c", "c"], "{events:?}");
    // Three accounts and a's token: four items, three created, one failed.
    assert_eq!(
        (
            stats.total.load(Relaxed),
            stats.created.load(Relaxed),
            stats.failed.load(Relaxed)
        ),
        (4, 3, 1)
    );
}

#[tokio::test]
async fn the_ambiguity_budget_of_an_account_holds_across_runs() {
    // Earlier runs used the whole budget: not sent, and its tokens fail unsent.
    let api = Arc::new(Fake::default());
    let spent = AccountWork {
        earlier_ambiguous: 2,
        ..account("a", &["ci"])
    };
    let (report, log) = run(vec![], vec![spent], api.clone()).await;
    assert_eq!(api.creates(), 0);
    assert!(report.accounts.created.is_empty());
    let (name, why) = &report.accounts.failed[0];
    assert_eq!(name, "a");
    assert!(
        why.contains("earlier runs made 2 ambiguous creates") && why.contains("orphans clear"),
        "{why}"
    );
    assert_eq!(report.ambiguity_exhausted, 1);
    assert!(api.tokens.lock().unwrap().is_empty());
    assert_eq!(log.1.lock().unwrap().len(), 1, "its token fails, unsent");
    // One left: one more ambiguous create, then it stops.
    let api = Arc::new(Fake::default());
    let half = AccountWork {
        earlier_ambiguous: 1,
        ..account("b", &[])
    };
    let (report, _) = run(vec![(false, false), (true, true)], vec![half], api.clone()).await;
    assert_eq!(api.creates(), 1);
    assert!(
        report.accounts.failed[0].1.contains("orphans clear"),
        "{:?}",
        report.accounts.failed
    );
}

#[tokio::test]
async fn a_lookups_reads_go_through_the_pacer_and_its_429s_feed_the_controller() {
    let api = Arc::new(Fake::default());
    api.list_limited
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let pacer = Arc::new(Pacer::new(100.0, true));
    // An ambiguous create that made the account: the lookup's first read answers 429 with a
    // Retry-After of 600 ms, which the pacer keeps: the next read waits for it (unpaced, it
    // would come at the lookup's next poll, 250 ms on).
    let (report, _, (_, stats)) = run_seen(
        vec![(true, false)],
        vec![account("a", &[])],
        api.clone(),
        Cancel::default(),
        config(),
        pacer.clone(),
    )
    .await;
    assert!(report.accounts.adopted.contains("a"), "{report:?}");
    assert_eq!(api.creates(), 1);
    let reads = api.list_reads.lock().unwrap().clone();
    assert!(reads.len() >= 2, "{reads:?}");
    let waited = reads[1] - reads[0];
    assert!(
        waited >= Duration::from_millis(550),
        "the read after the 429 waited for its Retry-After: {waited:?}"
    );
    assert_eq!(
        stats
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "counted with the run's 429s"
    );
}

#[tokio::test]
async fn a_new_accounts_tokens_start_once_its_id_is_durable_and_land_under_it() {
    let api = Arc::new(Fake::default());
    let (report, log) = run(vec![], vec![account("a", &["ci", "grafana"])], api.clone()).await;
    assert_eq!(report.accounts.created["a"], 100);
    assert_eq!(report.created, 2);
    let lines = log.lines();
    let durable = lines.iter().position(|l| l == "a created 1").unwrap();
    let first_token = lines
        .iter()
        .position(|l| l.starts_with("intent 100/"))
        .unwrap();
    assert!(durable < first_token, "{lines:?}");
    assert!(lines.contains(&"a shipping 0".to_owned()), "{lines:?}");
    assert_eq!(report.accounts.shipping["a"], 100);
    let mut tokens: Vec<String> = api
        .tokens
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["100/ci", "100/grafana"]);
}

#[tokio::test]
async fn an_ambiguous_create_that_made_the_account_is_adopted_not_sent_again() {
    let api = Arc::new(Fake::default());
    let (report, log) = run(
        vec![(true, false)],
        vec![account("a", &["ci"])],
        api.clone(),
    )
    .await;
    assert_eq!(report.accounts.created["a"], 100);
    assert!(report.accounts.adopted.contains("a"));
    assert_eq!(api.creates(), 1);
    assert_eq!(
        log.of("a"),
        ["intent a 1", "a ambiguous 1", "a adopted 1", "a shipping 0"]
    );
    assert_eq!(report.created, 1);
}

#[tokio::test]
async fn an_ambiguous_create_that_made_nothing_is_sent_again_after_the_lookup() {
    let api = Arc::new(Fake::default());
    let (report, log) = run(
        vec![(false, false), (true, true)],
        vec![account("a", &[])],
        api.clone(),
    )
    .await;
    assert_eq!(report.accounts.created.len(), 1);
    assert_eq!(api.creates(), 2);
    let lines = log.lines();
    let at = |l: &str| lines.iter().position(|x| x == l).unwrap();
    assert!(at("a ambiguous 1") < at("a not_found 1"));
    assert!(at("a not_found 1") < at("intent a 2"), "{lines:?}");
}

#[tokio::test]
async fn an_account_no_lookup_finds_stops_at_its_budget_and_its_tokens_fail_unsent() {
    let api = Arc::new(Fake::default());
    let (report, log) = run(
        vec![(false, false), (false, false)],
        vec![account("a", &["ci"])],
        api.clone(),
    )
    .await;
    assert!(report.accounts.created.is_empty());
    assert_eq!(api.creates(), 2);
    let (name, why) = &report.accounts.failed[0];
    assert_eq!(name, "a");
    assert!(why.contains("check the Logz.io UI"), "{why}");
    assert!(api.tokens.lock().unwrap().is_empty());
    let failures = log.1.lock().unwrap().clone();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].account_name.as_deref(), Some("a"));
    assert!(
        failures[0]
            .error
            .contains("its sub account was not created"),
        "{failures:?}"
    );
    assert_eq!(report.failures.len(), 1);
}

#[tokio::test]
async fn a_lookup_cut_short_by_ctrl_c_leaves_the_create_pending_and_sends_nothing_more() {
    let api = Arc::new(Fake::default());
    let cancel = Cancel::default();
    *api.stop_on_create.lock().unwrap() = Some(cancel.clone());
    let (report, log) = run_with(
        vec![(false, false)],
        vec![account("a", &["ci"])],
        api.clone(),
        cancel,
    )
    .await;
    assert_eq!(api.creates(), 1);
    // Not settled as "not found": the next run must look again before sending.
    assert_eq!(log.of("a"), ["intent a 1", "a ambiguous 1"]);
    assert!(
        report.accounts.failed[0].1.contains("looks for it again"),
        "{:?}",
        report.accounts.failed
    );
    assert!(api.tokens.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_lookup_that_cannot_read_the_list_never_sends_again() {
    let api = Arc::new(Fake::default());
    api.list_fails
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (report, log) = run(
        vec![(true, false), (true, true)],
        vec![account("a", &[])],
        api.clone(),
    )
    .await;
    assert_eq!(api.creates(), 1, "no blind re-send");
    assert_eq!(log.of("a"), ["intent a 1", "a ambiguous 1"]);
    assert!(report.accounts.failed[0].1.contains("could not be read"));
}

#[tokio::test]
async fn an_account_waits_for_the_one_it_shares_with_and_is_sent_with_its_id() {
    let api = Arc::new(Fake::default());
    let mut b = account("b", &["ci"]);
    b.settings.as_mut().unwrap().sharing_objects_accounts =
        Some(vec![AccountRef::Name("a".into()), AccountRef::Id(5)]);
    // b first: the gate, not the order given, holds it back.
    let (report, _) = run(vec![], vec![b, account("a", &[])], api.clone()).await;
    let creates = api.creates.lock().unwrap().clone();
    assert_eq!(creates[0].account_name, "a");
    assert_eq!(creates[1].account_name, "b");
    assert_eq!(creates[1].sharing_objects_accounts, vec![100, 5]);
    assert_eq!(report.accounts.created["b"], 101);
}

#[tokio::test]
async fn an_account_sharing_with_one_not_created_is_not_sent_nor_are_its_tokens() {
    let api = Arc::new(Fake::default());
    let mut b = account("b", &["ci"]);
    b.settings.as_mut().unwrap().sharing_objects_accounts =
        Some(vec![AccountRef::Name("a".into())]);
    let (report, _) = run(
        vec![(false, false), (false, false)],
        vec![account("a", &[]), b],
        api.clone(),
    )
    .await;
    assert_eq!(api.creates(), 2, "only a's two creates");
    assert!(
        report
            .accounts
            .failed
            .iter()
            .any(|(n, why)| n == "b" && why.contains("`a`")),
        "{:?}",
        report.accounts.failed
    );
    assert!(api.tokens.lock().unwrap().is_empty());
    assert_eq!(report.failures.len(), 1);
}

#[tokio::test]
async fn an_interrupted_create_is_looked_up_first_and_adopted_without_a_send() {
    let api = Arc::new(Fake::default());
    api.accounts.lock().unwrap().push((42, "a".into()));
    let mut a = account("a", &["ci"]);
    a.pending = Some(PendingAccount {
        seq: 9,
        name: "a".into(),
        known: vec![],
    });
    let (report, log) = run(vec![], vec![a], api.clone()).await;
    assert_eq!(api.creates(), 0);
    assert_eq!(report.accounts.created["a"], 42);
    assert!(log.lines().contains(&"a adopted 9".to_owned()));
    assert_eq!(api.tokens.lock().unwrap()[0].to_string(), "42/ci");
}

#[tokio::test]
async fn an_interrupted_create_that_made_nothing_is_sent_once_after_the_lookup() {
    let api = Arc::new(Fake::default());
    let mut a = account("a", &[]);
    a.pending = Some(PendingAccount {
        seq: 9,
        name: "a".into(),
        known: vec![],
    });
    // Only looked up: the plan no longer creates it.
    let gone = AccountWork {
        settings: None,
        pending: Some(PendingAccount {
            seq: 10,
            name: "gone".into(),
            known: vec![],
        }),
        ..account("gone", &[])
    };
    let (report, log) = run(vec![], vec![a, gone], api.clone()).await;
    assert_eq!(api.creates(), 1);
    assert_eq!(report.accounts.created["a"], 100);
    let lines = log.lines();
    assert!(lines.contains(&"a not_found 9".to_owned()), "{lines:?}");
    assert!(lines.contains(&"gone not_found 10".to_owned()), "{lines:?}");
    assert!(report.accounts.failed.is_empty());
}

#[tokio::test]
async fn several_new_accounts_with_the_name_stop_it_naming_their_ids() {
    let api = Arc::new(Fake::default());
    api.accounts.lock().unwrap().extend([
        (7, "a".to_owned()),
        (8, "a".to_owned()),
        (9, "a".to_owned()),
    ]);
    let found = look_up(
        &api,
        "a",
        &[7],
        Duration::from_millis(10),
        &Cancel::default(),
        &crate::clock::SystemClock::shared(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(found, Lookup::Several(vec![8, 9]));
    assert!(several("a", &[8, 9]).contains("ids 8, 9"));

    // Through the executor: an interrupted create that several accounts answer.
    let mut a = account("a", &["ci"]);
    a.pending = Some(PendingAccount {
        seq: 3,
        name: "a".into(),
        known: vec![7],
    });
    let (report, _) = run(vec![], vec![a], api.clone()).await;
    assert_eq!(api.creates(), 0);
    assert!(report.accounts.failed[0].1.contains("ids 8, 9"));
    assert!(api.tokens.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_earlier_runs_missing_shipping_token_is_read() {
    let api = Arc::new(Fake::default());
    *api.script.lock().unwrap() = Vec::new();
    let log = Arc::new(Log::default());
    let work = Work {
        shipping: vec![("old".into(), 77)],
        lookup: Duration::from_millis(300),
        ..Work::default()
    };
    let services = Services {
        creator: api.clone(),
        recorder: log.clone(),
        pacer: Arc::new(Pacer::new(1000.0, false)),
        stats: Arc::new(Stats::default()),
        observer: None,
        cancel: Cancel::default(),
        rng: crate::random::seeded(1),
    };
    let report = execute(work, config(), services).await;
    assert_eq!(report.accounts.shipping["old"], 77);
    assert_eq!(log.lines(), ["old shipping 0"]);
}

#[test]
fn an_update_sends_the_live_fields_the_manifest_does_not_declare() {
    let live = SubAccountInfo {
        account_id: 5,
        account_name: "x".into(),
        is_owner: false,
        settings: crate::api::LiveSettings {
            email: Some("old@example.com".into()),
            retention_days: Some(3),
            max_daily_gb: Some(2.0),
            searchable: Some(true),
            sharing_objects_accounts: Some(vec![4]),
            ..Default::default()
        },
    };
    let declared = AccountSettings {
        retention_days: Some(30),
        ..Default::default()
    };
    let r = update_request(&live, &declared, &BTreeMap::new()).unwrap();
    assert_eq!(r.retention_days, Some(30));
    assert_eq!(r.max_daily_gb, Some(2.0));
    assert_eq!(r.searchable, Some(true));
    assert_eq!(r.email.as_deref(), Some("old@example.com"));
    assert_eq!(r.sharing_objects_accounts, vec![4]);
    assert_eq!(r.account_name, "x");
}
