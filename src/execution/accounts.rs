//! Sub accounts, each created exactly once: the account items of a run, sent before the
//! tokens that wait on them, under the run's pacer and recorder.
//!
//! The create call is not idempotent and account names are not unique, so a create is never
//! re-sent blindly. Each attempt's intent (the name, and the ids that already carried it) is
//! durable before the send; its outcome (the id) after. After an ambiguous outcome (a timeout,
//! a 5xx, a dropped connection, a cut answer) the account list is read again for a bounded time,
//! outlasting its lag: exactly one account with the name that was not there at the intent is
//! adopted; none, and the create is sent again within the ambiguity budget; two or more, and the
//! account stops with an error naming their ids, for a person to sort out (never deleted here).
//! Recovery after a crash does the same lookup for every intent that has no outcome.
//!
//! Accounts go in dependency order (an account that shares with another created in the same
//! run waits for its id). Once created, the account's log shipping token is read
//! (`GET …/detailed/{id}`) and recorded as a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Answer, Backoff, Cancel, Pacer};
use crate::api::{
    AccountRequest, ApiClient, ApiError, ErrorClass, SubAccountInfo, UtilizationSettings,
};
use crate::clock::SharedClock;
use crate::manifest::{AccountRef, AccountSettings};
use crate::random::Random;
use crate::secret::Secret;
use crate::state::RecorderHandle;
use crate::state::StateError;
use crate::state::accounts::AccountOutcome;
pub use crate::state::accounts::PendingAccount;

/// Most 429 answers one account's create may meet (each is not processed, so it does not use
/// up an attempt; bounded on its own).
const MAX_RATE_LIMITED: u32 = 30;

/// How often the account list is read while looking for an account after an ambiguous create.
const LOOKUP_POLL: Duration = Duration::from_millis(250);

/// The default time to look for an account after an ambiguous create: the Terraform provider
/// polls a new account for about as long before giving up.
pub const DEFAULT_ACCOUNT_LOOKUP: Duration = Duration::from_secs(30);

/// The sub-account calls an account item makes (the API client in a run).
pub trait AccountApi: Send + Sync + 'static {
    /// `POST …/time-based-accounts`: not idempotent.
    fn create_account(
        &self,
        request: &AccountRequest,
    ) -> impl Future<Output = Result<u32, ApiError>> + Send;
    /// `GET …/time-based-accounts`.
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<SubAccountInfo>, ApiError>> + Send;
    /// `GET …/detailed/{id}`: the log shipping token.
    fn shipping_token(
        &self,
        account_id: u32,
    ) -> impl Future<Output = Result<Secret, ApiError>> + Send;
}

impl AccountApi for ApiClient {
    fn create_account(
        &self,
        request: &AccountRequest,
    ) -> impl Future<Output = Result<u32, ApiError>> + Send {
        ApiClient::create_account(self, request)
    }
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<SubAccountInfo>, ApiError>> + Send {
        ApiClient::list_accounts(self)
    }
    fn shipping_token(
        &self,
        account_id: u32,
    ) -> impl Future<Output = Result<Secret, ApiError>> + Send {
        ApiClient::shipping_token(self, account_id)
    }
}

/// Makes an account item's intents and outcomes durable (the recorder in a run).
pub trait RecordAccounts: Send + Sync + 'static {
    /// Journals the intent to send attempt `attempt` of the account `name`, with the ids that
    /// carry the name before the send; returns its sequence number once durable.
    fn account_intent(
        &self,
        name: &str,
        attempt: u32,
        known: &[u32],
    ) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// Journals and applies the outcome of intent `seq`; returns once durable.
    fn account_outcome(
        &self,
        seq: u64,
        name: &str,
        outcome: AccountOutcome,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
}

impl RecordAccounts for RecorderHandle {
    fn account_intent(
        &self,
        name: &str,
        attempt: u32,
        known: &[u32],
    ) -> impl Future<Output = Result<u64, StateError>> + Send {
        RecorderHandle::account_intent(self, name, attempt, known)
    }
    fn account_outcome(
        &self,
        seq: u64,
        name: &str,
        outcome: AccountOutcome,
    ) -> impl Future<Output = Result<(), StateError>> + Send {
        RecorderHandle::account_outcome(self, seq, name, outcome)
    }
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct AccountJob {
    /// Its name.
    pub name: String,
    /// What it is created with.
    pub settings: AccountSettings,
}

/// How the account items of a run went.
#[derive(Debug, Default)]
pub struct AccountsReport {
    /// Accounts created (or adopted after an ambiguous create): name -> id.
    pub created: BTreeMap<String, u32>,
    /// Accounts that did not get created, with why.
    pub failed: Vec<(String, String)>,
    /// A run-wide stop (authentication, the state), when one happened.
    pub fatal: Option<String>,
    /// Ambiguous creates met.
    pub ambiguous: u32,
    /// Accounts found by a lookup after an ambiguous create.
    pub adopted: u32,
}

/// How account items run.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Most attempts per account (429s not counted).
    pub max_attempts: u32,
    /// Most ambiguous creates per account.
    pub max_ambiguous: u32,
    /// How long to look for an account after an ambiguous create.
    pub lookup: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// The run's clock (deadlines, record times).
    pub clock: SharedClock,
}

/// The create request for an account: its settings, with sharing references as ids (`ids`
/// gives those of accounts by name). `Err` names a reference with no id.
pub fn create_request(
    name: &str,
    settings: &AccountSettings,
    ids: &BTreeMap<String, u32>,
) -> Result<AccountRequest, String> {
    let sharing = sharing_ids(settings, ids)?;
    Ok(AccountRequest {
        account_name: name.to_owned(),
        email: settings.email.clone(),
        retention_days: settings.retention_days.map(i64::from),
        sharing_objects_accounts: sharing,
        max_daily_gb: settings.max_daily_gb,
        reserved_daily_gb: settings.reserved_daily_gb,
        is_flexible: settings.flexible,
        searchable: settings.searchable,
        accessible: settings.accessible,
        doc_size_setting: settings.doc_size_setting,
        utilization_settings: settings.utilization.map(|u| UtilizationSettings {
            frequency_minutes: u.frequency_minutes.map(i64::from),
            utilization_enabled: u.enabled,
        }),
        soft_limit_gb: settings.soft_limit_gb,
        snapsearch_retention_days: settings.snapsearch_retention_days.map(i64::from),
    })
}

/// The update request for a drifted account: every live field, with the declared ones laid
/// over them, so that a field the manifest does not declare is sent as it is (never cleared).
pub fn update_request(
    live: &SubAccountInfo,
    declared: &AccountSettings,
    ids: &BTreeMap<String, u32>,
) -> Result<AccountRequest, String> {
    let l = &live.settings;
    let sharing = match &declared.sharing_objects_accounts {
        Some(_) => sharing_ids(declared, ids)?,
        None => l.sharing_objects_accounts.clone().unwrap_or_default(),
    };
    let utilization = match (declared.utilization, l.utilization_settings) {
        (None, live) => live,
        (Some(d), live) => {
            let live = live.unwrap_or_default();
            Some(UtilizationSettings {
                frequency_minutes: d
                    .frequency_minutes
                    .map(i64::from)
                    .or(live.frequency_minutes),
                utilization_enabled: d.enabled.or(live.utilization_enabled),
            })
        }
    };
    Ok(AccountRequest {
        account_name: live.account_name.clone(),
        email: declared.email.clone().or_else(|| l.email.clone()),
        retention_days: declared.retention_days.map(i64::from).or(l.retention_days),
        sharing_objects_accounts: sharing,
        max_daily_gb: declared.max_daily_gb.or(l.max_daily_gb),
        reserved_daily_gb: declared.reserved_daily_gb.or(l.reserved_daily_gb),
        is_flexible: declared.flexible.or(l.is_flexible),
        searchable: declared.searchable.or(l.searchable),
        accessible: declared.accessible.or(l.accessible),
        doc_size_setting: declared.doc_size_setting.or(l.doc_size_setting),
        utilization_settings: utilization,
        soft_limit_gb: declared.soft_limit_gb.or(l.soft_limit_gb),
        snapsearch_retention_days: declared
            .snapsearch_retention_days
            .map(i64::from)
            .or(l.snapsearch_retention_days),
    })
}

fn sharing_ids(
    settings: &AccountSettings,
    ids: &BTreeMap<String, u32>,
) -> Result<Vec<i64>, String> {
    settings
        .sharing_objects_accounts
        .iter()
        .flatten()
        .map(|r| match r {
            AccountRef::Id(id) => Ok(i64::from(*id)),
            AccountRef::Name(n) => ids.get(n).map(|id| i64::from(*id)).ok_or_else(|| {
                format!("it shares with `{n}`, which has no id (it was not created)")
            }),
        })
        .collect()
}

/// The ids of the accounts named `name` in a listing.
fn ids_named(list: &[SubAccountInfo], name: &str) -> BTreeSet<u32> {
    list.iter()
        .filter(|a| a.account_name == name && !a.is_owner)
        .filter_map(|a| u32::try_from(a.account_id).ok())
        .collect()
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Exactly one new account with the name.
    One(u32),
    /// None appeared within the time.
    None,
    /// Several: their ids.
    Several(Vec<u32>),
}

/// Reads the account list until an account named `name` that is not in `known` shows, or
/// `within` passes. A read that fails is read again (reads are idempotent); a fatal one ends
/// the lookup with its error.
pub async fn look_up<A: AccountApi>(
    api: &A,
    name: &str,
    known: &[u32],
    within: Duration,
    cancel: &Cancel,
    clock: &SharedClock,
) -> Result<Lookup, ApiError> {
    let deadline = clock.now() + within;
    let known: BTreeSet<u32> = known.iter().copied().collect();
    loop {
        match api.list_accounts().await {
            Ok(list) => {
                let new: Vec<u32> = ids_named(&list, name).difference(&known).copied().collect();
                match new.as_slice() {
                    [] => {}
                    [one] => return Ok(Lookup::One(*one)),
                    _ => return Ok(Lookup::Several(new)),
                }
            }
            Err(e) if e.class() == ErrorClass::FatalRun => return Err(e),
            Err(e) => tracing::debug!(account = name, error = %e, "account lookup read failed"),
        }
        let now = clock.now();
        if now >= deadline || cancel.is_cancelled() {
            return Ok(Lookup::None);
        }
        tokio::time::sleep(LOOKUP_POLL.min(deadline.saturating_duration_since(now))).await;
    }
}

/// Resolves the intents a crashed run left without an outcome: each is looked up like an
/// ambiguous create, and adopted when exactly one new account carries its name. Returns the
/// names adopted (name -> id) and the problems (several accounts with the name).
pub async fn recover<A: AccountApi, R: RecordAccounts>(
    pending: &[PendingAccount],
    api: &A,
    recorder: &R,
    lookup: Duration,
    cancel: &Cancel,
    clock: &SharedClock,
) -> Result<(BTreeMap<String, u32>, Vec<(String, String)>), String> {
    let mut adopted = BTreeMap::new();
    let mut problems = Vec::new();
    for p in pending {
        let found = look_up(api, &p.name, &p.known, lookup, cancel, clock)
            .await
            .map_err(|e| e.to_string())?;
        let outcome = match found {
            Lookup::One(id) => {
                adopted.insert(p.name.clone(), id);
                AccountOutcome::Adopted {
                    account_id: id,
                    created_at: clock.now_rfc3339(),
                }
            }
            Lookup::None => AccountOutcome::NotFound {
                detail: format!(
                    "an interrupted run's create found no account named `{}` after {}s",
                    p.name,
                    lookup.as_secs()
                ),
            },
            Lookup::Several(ids) => {
                let message = several(&p.name, &ids);
                problems.push((p.name.clone(), message.clone()));
                AccountOutcome::Duplicates {
                    account_ids: ids,
                    detail: message,
                }
            }
        };
        recorder
            .account_outcome(p.seq, &p.name, outcome)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok((adopted, problems))
}

fn several(name: &str, ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
    format!(
        "{} accounts named `{name}` appeared after an ambiguous create (ids {}): keep one and \
         delete the others in the Logz.io UI (this tool never deletes an account), then run \
         apply again",
        ids.len(),
        list.join(", ")
    )
}

/// Creates the accounts, in dependency order, each exactly once; `ids` holds the ids of the
/// manifest's accounts by name known so far (sharing references), and gains the new ones.
pub async fn create_accounts<A: AccountApi, R: RecordAccounts>(
    jobs: Vec<AccountJob>,
    ids: &mut BTreeMap<String, u32>,
    config: &AccountConfig,
    (api, recorder, pacer): (Arc<A>, Arc<R>, Arc<Pacer>),
    cancel: &Cancel,
    rng: &mut Random,
) -> AccountsReport {
    let mut report = AccountsReport::default();
    for job in jobs {
        if cancel.is_cancelled() || report.fatal.is_some() {
            report
                .failed
                .push((job.name.clone(), "not sent: the run stopped".into()));
            continue;
        }
        let request = match create_request(&job.name, &job.settings, ids) {
            Ok(r) => r,
            Err(why) => {
                report.failed.push((job.name.clone(), why));
                continue;
            }
        };
        match one(
            &job.name,
            &request,
            config,
            (&*api, &*recorder, &pacer),
            cancel,
            &mut report,
            rng,
        )
        .await
        {
            Ok(id) => {
                ids.insert(job.name.clone(), id);
                report.created.insert(job.name, id);
            }
            Err(Stop::Item(why)) => report.failed.push((job.name, why)),
            Err(Stop::Run(why)) => {
                report.failed.push((job.name, why.clone()));
                report.fatal = Some(why);
            }
        }
    }
    report
}

enum Stop {
    Item(String),
    Run(String),
}

/// One account: send, and after an ambiguous answer look before sending again.
async fn one<A: AccountApi, R: RecordAccounts>(
    name: &str,
    request: &AccountRequest,
    config: &AccountConfig,
    (api, recorder, pacer): (&A, &R, &Pacer),
    cancel: &Cancel,
    report: &mut AccountsReport,
    rng: &mut Random,
) -> Result<u32, Stop> {
    let clock = &config.clock;
    let (mut attempt, mut limited, mut ambiguous) = (0u32, 0u32, 0u32);
    // The accounts with this name before the first send: none, or the plan would not create it.
    let known: Vec<u32> = Vec::new();
    loop {
        if cancel.is_cancelled() {
            return Err(Stop::Item("not sent: the run stopped".into()));
        }
        attempt += 1;
        let seq = recorder
            .account_intent(name, attempt, &known)
            .await
            .map_err(|e| Stop::Run(e.to_string()))?;
        let ticket = pacer.acquire().await;
        let sent = api.create_account(request).await;
        let record = |outcome| recorder.account_outcome(seq, name, outcome);
        let e = match sent {
            Ok(id) => {
                pacer.on_answer(ticket, Answer::Served, None);
                record(AccountOutcome::Created {
                    account_id: id,
                    created_at: clock.now_rfc3339(),
                })
                .await
                .map_err(|e| Stop::Run(e.to_string()))?;
                return Ok(id);
            }
            Err(e) => e,
        };
        let status = e.http_status();
        if e.is_rate_limited() {
            pacer.on_answer(ticket, Answer::Limited, e.retry_after());
        } else {
            pacer.on_answer(
                ticket,
                if status.is_some() {
                    Answer::Served
                } else {
                    Answer::Lost
                },
                None,
            );
        }
        let detail = e.short();
        match e.class() {
            ErrorClass::Ambiguous => {
                report.ambiguous += 1;
                ambiguous += 1;
                record(AccountOutcome::Ambiguous {
                    detail: detail.clone(),
                })
                .await
                .map_err(|e| Stop::Run(e.to_string()))?;
                let found = look_up(api, name, &known, config.lookup, cancel, clock)
                    .await
                    .map_err(|e| Stop::Run(e.to_string()))?;
                match found {
                    Lookup::One(id) => {
                        record(AccountOutcome::Adopted {
                            account_id: id,
                            created_at: clock.now_rfc3339(),
                        })
                        .await
                        .map_err(|e| Stop::Run(e.to_string()))?;
                        report.adopted += 1;
                        return Ok(id);
                    }
                    Lookup::Several(ids) => {
                        let message = several(name, &ids);
                        record(AccountOutcome::Duplicates {
                            account_ids: ids,
                            detail: message.clone(),
                        })
                        .await
                        .map_err(|e| Stop::Run(e.to_string()))?;
                        return Err(Stop::Item(message));
                    }
                    Lookup::None => {
                        record(AccountOutcome::NotFound {
                            detail: format!(
                                "no account named `{name}` showed within {}s",
                                config.lookup.as_secs_f64()
                            ),
                        })
                        .await
                        .map_err(|e| Stop::Run(e.to_string()))?;
                        if ambiguous >= config.max_ambiguous {
                            return Err(Stop::Item(format!(
                                "{detail}; not sent again after {ambiguous} ambiguous creates \
                                 that no lookup found: check the Logz.io UI for an account \
                                 named `{name}` before running apply again"
                            )));
                        }
                    }
                }
            }
            class => {
                record(AccountOutcome::NotCreated {
                    http_status: status,
                    detail: detail.clone(),
                })
                .await
                .map_err(|e| Stop::Run(e.to_string()))?;
                match class {
                    ErrorClass::FatalRun => return Err(Stop::Run(e.to_string())),
                    ErrorClass::FatalItem => return Err(Stop::Item(e.to_string())),
                    _ => {}
                }
                if e.is_rate_limited() {
                    attempt -= 1;
                    limited += 1;
                    if limited >= MAX_RATE_LIMITED {
                        return Err(Stop::Item(format!("{detail} ({limited} times)")));
                    }
                } else if attempt >= config.max_attempts {
                    return Err(Stop::Item(format!("{detail} (after {attempt} attempts)")));
                }
            }
        }
        tokio::time::sleep(config.backoff.delay(attempt + 1, e.retry_after(), rng)).await;
    }
}

/// Reads a new account's log shipping token, retrying reads (a new account may briefly answer
/// 404 while reads lag the create).
pub async fn read_shipping_token<A: AccountApi>(
    api: &A,
    account_id: u32,
    within: Duration,
    clock: &SharedClock,
    rng: &mut Random,
) -> Result<Secret, ApiError> {
    let deadline = clock.now() + within;
    let mut attempt = 1;
    loop {
        match api.shipping_token(account_id).await {
            Ok(t) => return Ok(t),
            Err(e)
                if clock.now() < deadline
                    && (e.class() != ErrorClass::FatalRun)
                    && (e.class() != ErrorClass::FatalItem || e.http_status() == Some(404)) =>
            {
                attempt += 1;
                tokio::time::sleep(
                    Backoff::READS
                        .delay(attempt, e.retry_after(), rng)
                        .min(deadline.saturating_duration_since(clock.now())),
                )
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    /// A fake API: each create answers per the script (`true`: the account is made), and
    /// `answered`: whether the client gets the answer or a timeout.
    #[derive(Default)]
    struct Fake {
        accounts: Mutex<Vec<(u32, String)>>,
        script: Mutex<Vec<(bool, bool)>>,
        creates: Mutex<u32>,
    }

    impl AccountApi for Fake {
        async fn create_account(&self, request: &AccountRequest) -> Result<u32, ApiError> {
            *self.creates.lock().unwrap() += 1;
            let (makes, answered) = self.script.lock().unwrap().pop().unwrap_or((true, true));
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
        async fn shipping_token(&self, _: u32) -> Result<Secret, ApiError> {
            Ok(Secret::new("s".to_owned()))
        }
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl RecordAccounts for Log {
        async fn account_intent(
            &self,
            name: &str,
            attempt: u32,
            _: &[u32],
        ) -> Result<u64, StateError> {
            let mut l = self.0.lock().unwrap();
            l.push(format!("intent {name} {attempt}"));
            Ok(l.len() as u64)
        }
        async fn account_outcome(
            &self,
            _: u64,
            name: &str,
            outcome: AccountOutcome,
        ) -> Result<(), StateError> {
            let what = serde_json::to_value(&outcome).unwrap()["result"].clone();
            self.0
                .lock()
                .unwrap()
                .push(format!("{name} {}", what.as_str().unwrap()));
            Ok(())
        }
    }

    fn config() -> AccountConfig {
        AccountConfig {
            max_attempts: 4,
            max_ambiguous: 2,
            lookup: Duration::from_millis(300),
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            clock: crate::clock::SystemClock::shared(),
        }
    }

    fn job(name: &str) -> AccountJob {
        AccountJob {
            name: name.into(),
            settings: AccountSettings {
                email: Some("a@example.com".into()),
                retention_days: Some(7),
                max_daily_gb: Some(1.0),
                ..Default::default()
            },
        }
    }

    async fn run(
        script: Vec<(bool, bool)>,
        jobs: Vec<AccountJob>,
    ) -> (AccountsReport, Arc<Fake>, Vec<String>) {
        let api = Arc::new(Fake::default());
        *api.script.lock().unwrap() = script.into_iter().rev().collect();
        let log = Arc::new(Log::default());
        let mut ids = BTreeMap::new();
        let report = create_accounts(
            jobs,
            &mut ids,
            &config(),
            (
                api.clone(),
                log.clone(),
                Arc::new(Pacer::new(1000.0, false)),
            ),
            &Cancel::default(),
            &mut crate::random::seeded(1),
        )
        .await;
        let lines = log.0.lock().unwrap().clone();
        (report, api, lines)
    }

    #[tokio::test]
    async fn an_ambiguous_create_that_made_the_account_is_adopted_not_sent_again() {
        let (report, api, log) = run(vec![(true, false)], vec![job("a")]).await;
        assert_eq!(report.created["a"], 100);
        assert_eq!(*api.creates.lock().unwrap(), 1);
        assert_eq!(log, ["intent a 1", "a ambiguous", "a adopted"]);
    }

    #[tokio::test]
    async fn an_ambiguous_create_that_made_nothing_is_sent_again_after_the_lookup() {
        let (report, api, log) = run(vec![(false, false), (true, true)], vec![job("a")]).await;
        assert_eq!(report.created.len(), 1);
        assert_eq!(*api.creates.lock().unwrap(), 2);
        assert_eq!(
            log,
            [
                "intent a 1",
                "a ambiguous",
                "a not_found",
                "intent a 2",
                "a created"
            ]
        );
    }

    #[tokio::test]
    async fn the_ambiguity_budget_stops_an_account_that_no_lookup_finds() {
        let (report, api, _) = run(vec![(false, false), (false, false)], vec![job("a")]).await;
        assert!(report.created.is_empty());
        assert_eq!(*api.creates.lock().unwrap(), 2);
        assert!(
            report.failed[0].1.contains("check the Logz.io UI"),
            "{:?}",
            report.failed
        );
    }

    #[tokio::test]
    async fn an_account_sharing_with_a_failed_one_is_not_sent() {
        let mut b = job("b");
        b.settings.sharing_objects_accounts = Some(vec![AccountRef::Name("a".into())]);
        let (report, api, _) = run(vec![(false, false), (false, false)], vec![job("a"), b]).await;
        assert_eq!(*api.creates.lock().unwrap(), 2);
        assert!(
            report
                .failed
                .iter()
                .any(|(n, why)| n == "b" && why.contains("`a`"))
        );
    }

    #[tokio::test]
    async fn several_new_accounts_with_the_name_stop_it_naming_their_ids() {
        let api = Fake::default();
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
        )
        .await
        .unwrap();
        assert_eq!(found, Lookup::Several(vec![8, 9]));
        assert!(several("a", &[8, 9]).contains("ids 8, 9"));
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
}
