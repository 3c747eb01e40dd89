//! Sub accounts, each created exactly once: the second kind of item of the one executor.
//!
//! An account item goes through the dispatcher like a token item (the same pacer, rate
//! controller, journal, recorder and Ctrl-C drain), and the items that need its id wait for it:
//! its tokens, and accounts that share with it. They go once the id is durable; if it is not
//! created, its tokens fail as "its sub account was not created", never sent.
//!
//! The create call is not idempotent and account names are not unique, so a create is never
//! re-sent blindly. Each attempt's intent (the name) is durable before the send; its outcome
//! (the id) after. After an ambiguous outcome (a timeout, a 5xx, a dropped connection, a cut
//! answer) the account list is read again for a bounded time, outlasting its lag: exactly one
//! account with the name that was not there at the intent is adopted; none, and the create is
//! sent again within the ambiguity budget; two or more, and the account stops with an error
//! naming their ids, for a person to sort out (never deleted here). An interrupted run's intent
//! without an outcome starts its item with the same lookup, before anything is sent for it.
//!
//! Once the id is durable, the account's log shipping token is read (`GET …/detailed/{id}`)
//! and recorded as a secret, as the item's last step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::attempt::{AttemptOutcome, Item, Sent, Shared};
use super::{
    Answer, Backoff, Cancel, ItemEvent, Pacer, RecordOutcomes, SendCreate, Settled, Stats, Ticket,
};
use crate::api::{AccountRequest, ApiError, ErrorClass, SubAccountInfo, UtilizationSettings};
use crate::clock::SharedClock;
use crate::key::CreateKey;
use crate::manifest::{AccountRef, AccountSettings};
use crate::random::Random;
use crate::secret::Secret;
use crate::state::HeldSecret;
use crate::state::accounts::AccountOutcome;
pub use crate::state::accounts::PendingAccount;

/// How often the account list is read while looking for an account after an ambiguous create.
const LOOKUP_POLL: Duration = Duration::from_millis(250);

/// The default time to look for an account after an ambiguous create: the Terraform provider
/// polls a new account for about as long before giving up.
pub const DEFAULT_ACCOUNT_LOOKUP: Duration = Duration::from_secs(30);

/// A sub account for a run: to create (with its tokens, which wait for it), or an interrupted
/// run's create to look up first, or both.
#[derive(Debug, Clone)]
pub struct AccountWork {
    /// Its name.
    pub name: String,
    /// What it is created with; `None` when the plan does not create it (an interrupted run's
    /// create is only looked up).
    pub settings: Option<AccountSettings>,
    /// The token names it gets once it has an id.
    pub tokens: Vec<String>,
    /// An interrupted run's create of this name with no outcome: looked up before any send.
    pub pending: Option<PendingAccount>,
    /// Ambiguous creates earlier runs made of this name that no lookup found (the results
    /// file's `accounts_ambiguous`): they count against the ambiguity budget, so the budget
    /// holds across runs; at the budget, the create is not sent.
    pub earlier_ambiguous: u32,
}

/// What a run executes: tokens of accounts with ids, and sub accounts with the tokens that
/// wait for them.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// Tokens of accounts that have an id.
    pub tokens: Vec<crate::key::TokenKey>,
    /// Sub accounts to create or look up, in dependency order.
    pub accounts: Vec<AccountWork>,
    /// The ids of the manifest's accounts by name (for sharing references).
    pub ids: BTreeMap<String, u32>,
    /// Accounts an earlier run created whose shipping token is not kept yet: name and id.
    pub shipping: Vec<(String, u32)>,
    /// How long to look for an account after an ambiguous create.
    pub lookup: Duration,
}

impl From<Vec<crate::key::TokenKey>> for Work {
    fn from(tokens: Vec<crate::key::TokenKey>) -> Work {
        Work {
            tokens,
            lookup: DEFAULT_ACCOUNT_LOOKUP,
            ..Work::default()
        }
    }
}

/// How the account items of a run went.
#[derive(Debug, Default, Clone)]
pub struct AccountsReport {
    /// Accounts created or found by a lookup in this run: name -> id.
    pub created: BTreeMap<String, u32>,
    /// Those of them found by a lookup (after an ambiguous create, or an interrupted run's).
    pub adopted: BTreeSet<String>,
    /// Accounts that did not get created, with why.
    pub failed: Vec<(String, String)>,
    /// Shipping tokens kept: name -> id.
    pub shipping: BTreeMap<String, u32>,
    /// Shipping tokens that could not be read: name, id, why.
    pub shipping_failed: Vec<(String, u32, String)>,
    /// Ambiguous creates met.
    pub ambiguous: u32,
}

/// An account item's settings and where it stands.
#[derive(Debug, Clone)]
pub(super) struct AccountItem {
    /// What it is created with (`None`: only looked up).
    pub(super) settings: Option<AccountSettings>,
    /// The create request, once every account it shares with has an id.
    pub(super) request: Option<AccountRequest>,
    /// What the next attempt does.
    pub(super) step: Step,
}

/// What an account item's next attempt does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Looks for an interrupted run's create (intent `seq`, with the ids the name had).
    Recover { seq: u64, known: Vec<u32> },
    /// Sends the create.
    Create,
    /// Reads the shipping token of the account `id`.
    Shipping { id: u32 },
}

impl AccountItem {
    /// The names of this run's accounts it waits for (sharing references with no id yet).
    pub(super) fn waits_for<'a>(
        &'a self,
        name: &'a str,
        ids: &'a BTreeMap<String, u32>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let creates = self.request.is_none();
        self.settings
            .iter()
            .filter(move |_| creates)
            .flat_map(AccountSettings::shared_names)
            .filter(move |n| *n != name && !ids.contains_key(*n))
    }
}

/// One attempt of an account item: a lookup of an interrupted create, a create (with the
/// lookup after an ambiguous answer), or the shipping token's read.
pub(super) async fn attempt<C: SendCreate, R: RecordOutcomes>(
    mut item: Item,
    name: String,
    sh: Arc<Shared<C, R>>,
    ticket: Ticket,
) -> AttemptOutcome {
    let Some(account) = item.account.as_ref() else {
        sh.pacer.on_unsent(ticket);
        return AttemptOutcome::Failed(item, None, "internal error: no account settings".into());
    };
    match account.step.clone() {
        Step::Recover { seq, known } => {
            // A read, not a create: it takes no send slot.
            sh.pacer.on_unsent(ticket);
            item.attempt -= 1;
            look_for(item, name, seq, &known, &sh).await
        }
        Step::Shipping { id } => shipping(item, name, id, &sh, ticket).await,
        Step::Create => create(item, name, &sh, ticket).await,
    }
}

async fn create<C: SendCreate, R: RecordOutcomes>(
    mut item: Item,
    name: String,
    sh: &Shared<C, R>,
    ticket: Ticket,
) -> AttemptOutcome {
    let Some(request) = item.account.as_ref().and_then(|a| a.request.clone()) else {
        sh.pacer.on_unsent(ticket);
        return AttemptOutcome::Failed(item, None, "internal error: no create request".into());
    };
    let Sent { seq, answer } = match sh
        .send_after_intent(&item, ticket, || sh.creator.create_account(&request))
        .await
    {
        Ok(sent) => sent,
        Err(out) => return out,
    };
    let e = match answer {
        Ok(id) => {
            sh.breaker_record(false);
            let outcome = AccountOutcome::Created {
                account_id: id,
                created_at: sh.pacer.clock().now_rfc3339(),
            };
            return match settle(sh, seq, &name, outcome).await {
                Ok(()) => AttemptOutcome::AccountReady {
                    item,
                    id,
                    adopted: false,
                },
                Err(e) => e,
            };
        }
        Err(e) => e,
    };
    let class = e.class();
    let status = e.http_status();
    let detail = e.short();
    item.last_error = Some((status, detail.clone()));
    if class == ErrorClass::Ambiguous {
        sh.ambiguous(
            &mut item,
            ItemEvent::AccountAmbiguous {
                name: name.clone(),
                detail: detail.clone(),
            },
        );
        let outcome = AccountOutcome::Ambiguous {
            detail: detail.clone(),
        };
        if let Err(e) = settle(sh, seq, &name, outcome).await {
            return e;
        }
        // Never sent again blindly: look first.
        let mut out = look_for(item, name, seq, &[], sh).await;
        if let AttemptOutcome::Retry { retry_after, .. } = &mut out {
            *retry_after = e.retry_after();
        }
        return out;
    }
    let outcome = AccountOutcome::NotCreated {
        http_status: status,
        detail: detail.clone(),
    };
    if let Err(e) = settle(sh, seq, &name, outcome).await {
        return e;
    }
    tracing::debug!(account = %name, attempt = item.attempt, error = %detail, "account create failed");
    match class {
        ErrorClass::FatalRun => AttemptOutcome::Fatal(e),
        ErrorClass::FatalItem => AttemptOutcome::Failed(item, status, e.to_string()),
        _ => {
            if e.is_rate_limited() {
                item.rate_limited();
            }
            AttemptOutcome::Retry {
                retry_after: e.retry_after(),
                item,
            }
        }
    }
}

/// Looks for the account a create of intent `seq` may have made: adopts exactly one new
/// account with the name; several stop the item; none sends it (again) when the plan creates
/// it, within the ambiguity budget.
async fn look_for<C: SendCreate, R: RecordOutcomes>(
    mut item: Item,
    name: String,
    seq: u64,
    known: &[u32],
    sh: &Shared<C, R>,
) -> AttemptOutcome {
    let clock = sh.pacer.clock();
    let found = match look_up(
        &sh.creator,
        &name,
        known,
        sh.lookup,
        &sh.cancel,
        clock,
        Some((&sh.pacer, &sh.stats)),
    )
    .await
    {
        Ok(found) => found,
        Err(e) => {
            sh.fatal_seen
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return AttemptOutcome::Fatal(e);
        }
    };
    let found = match found {
        Lookup::Unsettled(_)
            if crate::reintroduced::on(crate::reintroduced::Bug::AccountLookupCutShort) =>
        {
            Lookup::None
        }
        found => found,
    };
    let recovering = matches!(
        item.account.as_ref().map(|a| &a.step),
        Some(Step::Recover { .. })
    );
    match found {
        Lookup::One(id) => {
            let outcome = AccountOutcome::Adopted {
                account_id: id,
                created_at: clock.now_rfc3339(),
            };
            match settle(sh, seq, &name, outcome).await {
                Ok(()) => AttemptOutcome::AccountReady {
                    item,
                    id,
                    adopted: true,
                },
                Err(e) => e,
            }
        }
        Lookup::Several(ids) => {
            let message = several(&name, &ids);
            let outcome = AccountOutcome::Duplicates {
                account_ids: ids,
                detail: message.clone(),
            };
            match settle(sh, seq, &name, outcome).await {
                Ok(()) => AttemptOutcome::Failed(item, None, message),
                Err(e) => e,
            }
        }
        Lookup::Unsettled(why) => {
            // Not settled: the intent stays pending (its outcome so far, if any, is ambiguous),
            // and the next run looks again before it sends anything for this name.
            AttemptOutcome::Failed(
                item,
                None,
                format!(
                    "{why}; it may exist: the next apply looks for it again before sending a create"
                ),
            )
        }
        Lookup::None => {
            let detail = if recovering {
                format!(
                    "an interrupted run's create found no account named `{name}` after {}s",
                    sh.lookup.as_secs_f64()
                )
            } else {
                format!(
                    "no account named `{name}` showed within {}s",
                    sh.lookup.as_secs_f64()
                )
            };
            if let Err(e) = settle(sh, seq, &name, AccountOutcome::NotFound { detail }).await {
                return e;
            }
            let Some(account) = item.account.as_mut() else {
                return AttemptOutcome::AccountDone;
            };
            if recovering {
                if account.settings.is_none() {
                    // The plan does not create it: nothing more to do.
                    return AttemptOutcome::AccountDone;
                }
                account.step = Step::Create;
                return AttemptOutcome::Waits(item);
            }
            AttemptOutcome::Retry {
                item,
                retry_after: None,
            }
        }
    }
}

/// Reads and records the shipping token of the account `id`: the first read under the send
/// slot, retries (a new account may briefly answer 404) with the read backoff.
async fn shipping<C: SendCreate, R: RecordOutcomes>(
    item: Item,
    name: String,
    id: u32,
    sh: &Shared<C, R>,
    ticket: Ticket,
) -> AttemptOutcome {
    let first = sh.creator.shipping_token(id).await;
    let (answer, retry_after) = answer_of(&first);
    if answer == Answer::Limited {
        Stats::add(&sh.stats.rate_limited, 1);
    }
    sh.pacer.on_answer(ticket, answer, retry_after);
    let read = match first {
        Ok(token) => Ok(token),
        Err(e) if !reread(&e) => Err(e),
        Err(_) => {
            let mut rng = crate::random::seeded(u64::from(id));
            read_shipping_token(
                &sh.creator,
                id,
                sh.lookup,
                sh.pacer.clock(),
                &mut rng,
                Some((&sh.pacer, &sh.stats)),
            )
            .await
        }
    };
    let _ = item;
    match read {
        Ok(token) => {
            let outcome = AccountOutcome::Shipping {
                account_id: id,
                secret: HeldSecret::plain(token),
            };
            match settle(sh, 0, &name, outcome).await {
                Ok(()) => AttemptOutcome::ShippingRead { name, id },
                Err(e) => e,
            }
        }
        Err(e) => AttemptOutcome::ShippingFailed {
            name,
            id,
            why: e.to_string(),
        },
    }
}

/// What an answer tells the rate controller, and the pause a 429 asks for.
fn answer_of<T>(answer: &Result<T, ApiError>) -> (Answer, Option<Duration>) {
    match answer {
        Err(e) if e.is_rate_limited() => (Answer::Limited, e.retry_after()),
        Err(e) if e.http_status().is_none() => (Answer::Lost, None),
        _ => (Answer::Served, None),
    }
}

/// Sends one read under `pacer` when there is one: the read takes a send slot like a create
/// (one owner token, one limit), and its answer, a 429 above all, feeds the rate controller.
/// `None` when `cancel` came while it waited for its slot (nothing was sent). Its 429s count
/// in the run's `stats` with the others.
async fn paced<T>(
    pacer: Option<(&Pacer, &Stats)>,
    cancel: &Cancel,
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Option<Result<T, ApiError>> {
    let Some((pacer, stats)) = pacer else {
        return Some(read.await);
    };
    let mut stop = cancel.clone();
    let ticket = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        t = pacer.acquire() => t,
    };
    let answer = read.await;
    let (a, retry_after) = answer_of(&answer);
    if a == Answer::Limited {
        Stats::add(&stats.rate_limited, 1);
    }
    pacer.on_answer(ticket, a, retry_after);
    Some(answer)
}

/// Whether a failed read of a shipping token is read again.
fn reread(e: &ApiError) -> bool {
    e.class() != ErrorClass::FatalRun
        && (e.class() != ErrorClass::FatalItem || e.http_status() == Some(404))
}

async fn settle<C, R: RecordOutcomes>(
    sh: &Shared<C, R>,
    seq: u64,
    name: &str,
    outcome: AccountOutcome,
) -> Result<(), AttemptOutcome> {
    sh.recorder
        .outcome(seq, Settled::Account(name.to_owned(), outcome))
        .await
        .map(|_| ())
        .map_err(AttemptOutcome::State)
}

/// The key of an account item.
pub(super) fn key(name: &str) -> CreateKey {
    CreateKey::Account(name.to_owned())
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
    /// The lookup could not tell (the run stopped, or no read of the list succeeded): the
    /// create stays pending, for the next run to look again before any send.
    Unsettled(String),
}

/// Reads the account list until an account named `name` that is not in `known` shows, or
/// `within` passes. A read that fails is read again (reads are idempotent); a fatal one ends
/// the lookup with its error. With a `pacer` (a run's, with its counters), each read takes a send slot and its
/// answer feeds the rate controller, as a create's does.
pub async fn look_up<A: SendCreate>(
    api: &A,
    name: &str,
    known: &[u32],
    within: Duration,
    cancel: &Cancel,
    clock: &SharedClock,
    pacer: Option<(&Pacer, &Stats)>,
) -> Result<Lookup, ApiError> {
    let deadline = clock.now() + within;
    let known: BTreeSet<u32> = known.iter().copied().collect();
    let mut read = false;
    loop {
        let Some(listed) = paced(pacer, cancel, api.list_accounts()).await else {
            return Ok(Lookup::Unsettled(format!(
                "the run stopped while looking for an account named `{name}`"
            )));
        };
        match listed {
            Ok(list) => {
                read = true;
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
        if cancel.is_cancelled() {
            return Ok(Lookup::Unsettled(format!(
                "the run stopped while looking for an account named `{name}`"
            )));
        }
        if now >= deadline {
            return Ok(if read {
                Lookup::None
            } else {
                Lookup::Unsettled(format!(
                    "the account list could not be read to look for an account named `{name}`"
                ))
            });
        }
        let mut stop = cancel.clone();
        tokio::select! {
            () = tokio::time::sleep(LOOKUP_POLL.min(deadline.saturating_duration_since(now))) => {}
            () = stop.cancelled() => {}
        }
    }
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

/// Reads a new account's log shipping token, retrying reads (a new account may briefly answer
/// 404 while reads lag the create). With a `pacer` (a run's, with its counters), each read takes a send slot and
/// its answer feeds the rate controller.
pub async fn read_shipping_token<A: SendCreate>(
    api: &A,
    account_id: u32,
    within: Duration,
    clock: &SharedClock,
    rng: &mut Random,
    pacer: Option<(&Pacer, &Stats)>,
) -> Result<Secret, ApiError> {
    let deadline = clock.now() + within;
    let mut attempt = 1;
    loop {
        let read = paced(pacer, &Cancel::default(), api.shipping_token(account_id)).await;
        let Some(read) = read else {
            continue;
        };
        match read {
            Ok(t) => return Ok(t),
            Err(e) if clock.now() < deadline && reread(&e) => {
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
mod tests;
