//! The plan: a pure function of (validated manifest, recorded results, optional live account
//! information, account filter) to the actions `apply` would take. No I/O, no clock.
//!
//! [`accounts`] holds where names and ids meet (the live list, the filter, the one lookup);
//! [`saved`] the plan file that `plan --out` writes and `apply PLAN_FILE` checks.

pub mod accounts;
pub mod onboard;
pub mod saved;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::key::TokenKey;
use crate::manifest::{AccountSelector, Manifest};
use crate::state::{Failure, ResultsFile, TokenStatus};

pub use accounts::{AccountBook, AccountFilter, AccountRef, LiveAccounts, NameResolution};
pub use onboard::{AccountDrift, ExistingAccount, FieldDrift, NewAccount, creation_order};
pub use saved::{Decision, SAVED_PLAN_KIND, SAVED_PLAN_VERSION, SavedPlan, SavedPlanError};

/// Why an account given by name has no id in this plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unresolved {
    /// No live account list was available (offline plan) and no earlier run resolved it.
    NeedsLookup,
    /// The live list has no sub account with this name.
    NotFound {
        /// Names that look alike.
        similar: Vec<String>,
    },
    /// The live list has several sub accounts with this name.
    Ambiguous {
        /// Their ids.
        candidates: Vec<u32>,
    },
}

/// An account given by name that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnresolvedAccount {
    /// The name in the manifest.
    pub name: String,
    /// The token names it wants.
    pub tokens: Vec<String>,
    /// Why it is unresolved.
    #[serde(flatten)]
    pub why: Unresolved,
}

/// An account id that is not a sub account of the owner (live check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownAccount {
    /// The id.
    pub account_id: u32,
    /// The token names it wants.
    pub tokens: Vec<String>,
}

/// A recorded token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Account and name.
    #[serde(flatten)]
    pub key: TokenKey,
    /// Its id.
    pub token_id: i64,
}

/// Why a recorded token is replaced by a new one under the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ReplaceReason {
    /// `verify` saw it revoked, and recreation was asked (`--recreate-revoked` or the setting).
    Revoked,
    /// It is older than its rotation age (`--rotate-older-than`, else `rotate_after_days`).
    Rotation {
        /// The rotation age, in seconds.
        older_than_seconds: u64,
    },
}

impl ReplaceReason {
    /// `revoked` or `older than 90d`, for people.
    pub fn describe(&self) -> String {
        match self {
            ReplaceReason::Revoked => "revoked".into(),
            ReplaceReason::Rotation { older_than_seconds } => {
                format!("older than {}", format_age(*older_than_seconds))
            }
        }
    }
}

/// An age in the largest unit that divides it: `90d`, `12h`, `30m`, `1s`.
pub fn format_age(seconds: u64) -> String {
    match seconds {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A recorded token that `apply` replaces: a new token under the same name; the recorder
/// moves the old id to `superseded` (to remove by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Account and name.
    #[serde(flatten)]
    pub key: TokenKey,
    /// The id of the token it replaces.
    pub replaces: i64,
    /// When the replaced token was created (as recorded).
    pub created_at: String,
    /// Why.
    #[serde(flatten)]
    pub reason: ReplaceReason,
}

/// One token `apply` would create, with its kind: what a saved plan lists and the prompt
/// shows. New kinds of change get a variant here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A token not recorded yet.
    Create {
        /// The sub account.
        account_id: u32,
        /// The token name.
        token_name: String,
    },
    /// A new token under the name of a recorded one.
    Replace {
        /// The sub account.
        account_id: u32,
        /// The token name.
        token_name: String,
        /// The id of the token it replaces.
        replaces: i64,
        /// Why.
        #[serde(flatten)]
        reason: ReplaceReason,
    },
}

impl Change {
    /// The token it creates.
    pub fn key(&self) -> TokenKey {
        match self {
            Change::Create {
                account_id,
                token_name,
            }
            | Change::Replace {
                account_id,
                token_name,
                ..
            } => TokenKey {
                account_id: *account_id,
                token_name: token_name.clone(),
            },
        }
    }

    /// `+ 7/ci` or `-/+ 7/ci (replaces 7749, revoked)`, for people.
    pub fn describe(&self) -> String {
        match self {
            Change::Create {
                account_id,
                token_name,
            } => format!("+ {account_id}/{token_name}"),
            Change::Replace {
                account_id,
                token_name,
                replaces,
                reason,
            } => format!(
                "-/+ {account_id}/{token_name} (replaces {replaces}, {})",
                reason.describe()
            ),
        }
    }
}

/// What `apply` would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Sub accounts to create (no account has their name), in manifest order; their tokens
    /// are created right after each.
    pub accounts_to_create: Vec<NewAccount>,
    /// Accounts the manifest says to create that exist already.
    pub accounts_existing: Vec<ExistingAccount>,
    /// Existing accounts whose live settings differ from the declared ones.
    pub drift: Vec<AccountDrift>,
    /// Accounts to create whose names could not be checked (no live account list).
    pub accounts_unchecked: Vec<String>,
    /// Tokens to create, in manifest order.
    pub create: Vec<TokenKey>,
    /// Recorded tokens to replace (revoked ones when asked, old ones when rotating).
    pub replace: Vec<Replacement>,
    /// Tokens already recorded (skipped).
    pub present: Vec<Recorded>,
    /// Recorded tokens that `verify` saw revoked (401/403): not recreated unasked, since an
    /// admin may have deleted one on purpose (`apply --recreate-revoked` recreates them).
    pub revoked: Vec<Recorded>,
    /// Replaced tokens (recreated or rotated) not yet seen deleted: still working, to be
    /// removed by hand in the Logz.io UI.
    pub replaced_to_remove: Vec<Recorded>,
    /// Tokens recorded but no longer in the manifest: the API cannot delete tokens, so these
    /// are for removal by hand in the Logz.io UI (Settings > Tools > Manage Tokens > API tokens).
    pub remove_by_hand: Vec<Recorded>,
    /// Accounts given by name that could not be resolved.
    pub unresolved: Vec<UnresolvedAccount>,
    /// Account ids that are not sub accounts of the owner (only with a live check).
    pub unknown_accounts: Vec<UnknownAccount>,
    /// Accounts given by name, resolved: name -> id.
    pub resolved_names: BTreeMap<String, u32>,
    /// The name each account of the plan is known by, when known (given by id or by name):
    /// its live name, else its manifest name, else the name a run resolved to it: id -> name.
    pub account_names: BTreeMap<u32, String>,
    /// Possible orphans still listed in the results file.
    pub possible_orphans: usize,
    /// Whether the plan was checked against the live account list.
    pub live: bool,
}

impl Plan {
    /// Holds the ambiguity budget across runs: a token whose earlier runs made `max_ambiguous`
    /// or more ambiguous attempts (each may have created a token, listed in the results file's
    /// possible orphans) is taken out of the plan, a creation or a replacement alike, and
    /// returned as a failure that says how to send it again; the others are returned with the
    /// attempts already spent, which count against the budget of this run
    /// (`ExecConfig::earlier_ambiguous`).
    pub fn hold_ambiguity_budget(
        &mut self,
        results: &ResultsFile,
        max_ambiguous: u32,
    ) -> (HashMap<TokenKey, u32>, Vec<Failure>) {
        let max_ambiguous = max_ambiguous.max(1);
        let mut earlier = HashMap::new();
        let mut at_budget = Vec::new();
        let mut keep = |key: &TokenKey| {
            if crate::reintroduced::on(crate::reintroduced::Bug::BudgetResets) {
                return true;
            }
            let Some(o) = results
                .possible_orphans
                .iter()
                .find(|o| o.account_id == key.account_id && o.token_name == key.token_name)
            else {
                return true;
            };
            if o.ambiguous_attempts >= max_ambiguous {
                at_budget.push(Failure {
                    account_id: Some(key.account_id),
                    account_name: None,
                    token_name: key.token_name.clone(),
                    http_status: None,
                    error: format!(
                        "not sent: earlier runs made {} ambiguous attempts for it (each may have created a token; the budget is {max_ambiguous}); check the Logz.io UI for those tokens, then run `logzio-tokens orphans clear` (or pass --resend-ambiguous) to send it again",
                        o.ambiguous_attempts
                    ),
                });
                return false;
            }
            earlier.insert(key.clone(), o.ambiguous_attempts);
            true
        };
        self.create.retain(|key| keep(key));
        self.replace.retain(|r| keep(&r.key));
        (earlier, at_budget)
    }

    /// Whether applying would change anything: tokens to create or replace, accounts to
    /// create, or drift.
    pub fn has_changes(&self) -> bool {
        !self.create.is_empty()
            || !self.replace.is_empty()
            || !self.accounts_to_create.is_empty()
            || !self.drift.is_empty()
    }

    /// Every token apply would create, with its kind: creations, then replacements.
    pub fn changes(&self) -> Vec<Change> {
        let creates = self.create.iter().map(|k| Change::Create {
            account_id: k.account_id,
            token_name: k.token_name.clone(),
        });
        let replaces = self.replace.iter().map(|r| Change::Replace {
            account_id: r.key.account_id,
            token_name: r.key.token_name.clone(),
            replaces: r.replaces,
            reason: r.reason.clone(),
        });
        creates.chain(replaces).collect()
    }

    /// The tokens the executor sends, in [`Plan::changes`]' order.
    pub fn to_send(&self) -> Vec<TokenKey> {
        self.create
            .iter()
            .cloned()
            .chain(self.replace.iter().map(|r| r.key.clone()))
            .collect()
    }

    /// Moves into `replace` what apply replaces under the same names: the revoked tokens
    /// when `recreate`, and every present token at least as old as its rotation age
    /// (`older_than`, else the manifest's `rotate_after_days`) at `now`. A token whose
    /// creation time cannot be read is never rotated on a guess.
    pub fn add_replacements(
        &mut self,
        manifest: &Manifest,
        results: &ResultsFile,
        recreate: bool,
        older_than: Option<std::time::Duration>,
        now: time::OffsetDateTime,
    ) {
        let created_at = |k: &TokenKey| {
            results
                .get(k)
                .map(|r| r.created_at.clone())
                .unwrap_or_default()
        };
        if recreate {
            for r in std::mem::take(&mut self.revoked) {
                self.replace.push(Replacement {
                    created_at: created_at(&r.key),
                    replaces: r.token_id,
                    key: r.key,
                    reason: ReplaceReason::Revoked,
                });
            }
        }
        // Each account's rotation age, once: its own, else `defaults`', else `settings`'.
        let by_account: HashMap<u32, u64> = manifest
            .accounts
            .iter()
            .filter_map(|a| {
                let id = match &a.selector {
                    AccountSelector::Id(id) => *id,
                    AccountSelector::Name(n) => *self.resolved_names.get(n)?,
                };
                let days = manifest.rotate_after_days(a)?;
                Some((id, u64::from(days) * 86_400))
            })
            .collect();
        let age_of = |account_id: u32| {
            older_than
                .map(|d| d.as_secs())
                .or_else(|| by_account.get(&account_id).copied())
        };
        let mut keep = Vec::new();
        for r in std::mem::take(&mut self.present) {
            let Some(age) = age_of(r.key.account_id) else {
                keep.push(r);
                continue;
            };
            let recorded = created_at(&r.key);
            let Ok(created) = time::OffsetDateTime::parse(
                &recorded,
                &time::format_description::well_known::Rfc3339,
            ) else {
                keep.push(r);
                continue;
            };
            if (now - created).whole_seconds() >= i64::try_from(age).unwrap_or(i64::MAX) {
                self.replace.push(Replacement {
                    replaces: r.token_id,
                    key: r.key,
                    created_at: recorded,
                    reason: ReplaceReason::Rotation {
                        older_than_seconds: age,
                    },
                });
            } else {
                keep.push(r);
            }
        }
        self.present = keep;
        // In manifest order, as the lists they came from.
        let mut order: HashMap<(u32, &str), usize> = HashMap::new();
        for a in &manifest.accounts {
            let id = match &a.selector {
                AccountSelector::Id(id) => *id,
                AccountSelector::Name(n) => match self.resolved_names.get(n) {
                    Some(id) => *id,
                    None => continue,
                },
            };
            for t in &a.tokens {
                let next = order.len();
                order.entry((id, t.as_str())).or_insert(next);
            }
        }
        let rank = |r: &Replacement| {
            order
                .get(&(r.key.account_id, r.key.token_name.as_str()))
                .copied()
                .unwrap_or(usize::MAX)
        };
        let mut replace = std::mem::take(&mut self.replace);
        replace.sort_by_key(|r| rank(r));
        self.replace = replace;
    }

    /// The daily volume the accounts to create add, in GB (their `max_daily_gb`, or the
    /// reserved volume of a flexible one).
    pub fn added_daily_gb(&self) -> f64 {
        self.accounts_to_create
            .iter()
            .map(|a| {
                a.settings
                    .max_daily_gb
                    .or(a.settings.reserved_daily_gb)
                    .unwrap_or(0.0)
            })
            .sum()
    }

    /// The token names of every account to create.
    pub fn new_account_token_count(&self) -> usize {
        self.accounts_to_create.iter().map(|a| a.tokens.len()).sum()
    }

    /// Whether some wanted tokens cannot be created as things stand.
    pub fn has_blockers(&self) -> bool {
        self.unresolved
            .iter()
            .any(|u| u.why != Unresolved::NeedsLookup)
            || !self.unknown_accounts.is_empty()
    }
}

/// Whether recorded accounts absent from the manifest may be judged (see [`plan`]): every
/// account of the manifest could be placed (an unresolved name, one that needs a lookup or
/// not, might be one of them) and no filter narrows the manifest.
fn judge_absent_all(out: &Plan, filter: &AccountFilter) -> bool {
    out.unresolved.is_empty() && !filter.is_active()
}

/// Computes the plan. `live` is the preflight's account list when an API was reachable.
pub fn plan(
    manifest: &Manifest,
    recorded: &ResultsFile,
    live: Option<&LiveAccounts>,
    filter: &AccountFilter,
) -> Plan {
    let mut out = Plan {
        live: live.is_some(),
        possible_orphans: recorded.possible_orphans.len(),
        ..Plan::default()
    };
    // Desired tokens per resolved account id, in manifest order, without duplicates (an
    // account may appear once by id and once by name).
    let mut order: Vec<u32> = Vec::new();
    let mut desired: HashMap<u32, Vec<String>> = HashMap::new();
    let book = AccountBook::new(live, &recorded.resolved_names);
    // Accounts this tool created: placed by the results file while the list lags the create.
    let created_ids: BTreeSet<u32> = recorded
        .accounts_created
        .values()
        .map(|c| c.account_id)
        .collect();
    let place = |selector: &AccountSelector, create: bool| -> Result<u32, Unresolved> {
        let found = book.id(selector);
        match (selector, found) {
            (
                AccountSelector::Name(n),
                Err(Unresolved::NotFound { .. } | Unresolved::NeedsLookup),
            ) if create && recorded.accounts_created.contains_key(n) => {
                Ok(recorded.accounts_created[n].account_id)
            }
            (_, found) => found,
        }
    };
    // A sharing reference's id: a number, or the name of a manifest account placed above.
    let resolve_ref = |r: &crate::manifest::AccountRef| match r {
        crate::manifest::AccountRef::Id(id) => Some(*id),
        crate::manifest::AccountRef::Name(n) => place(&AccountSelector::Name(n.clone()), true).ok(),
    };

    for entry in &manifest.accounts {
        let (id, name) = match &entry.selector {
            // An account given by id is known by its name too (for --account NAME).
            AccountSelector::Id(id) => (*id, book.name(*id)),
            AccountSelector::Name(n) => match place(&entry.selector, entry.create.is_some()) {
                Ok(id) => (id, Some(n.as_str())),
                Err(Unresolved::NotFound { .. })
                    if entry.create.is_some() && filter.admits(None, Some(n)) =>
                {
                    if let Some(settings) = &entry.create {
                        out.accounts_to_create.push(NewAccount {
                            name: n.clone(),
                            settings: settings.clone(),
                            tokens: entry.tokens.clone(),
                        });
                    }
                    continue;
                }
                Err(why) => {
                    if entry.create.is_some()
                        && why == Unresolved::NeedsLookup
                        && filter.admits(None, Some(n))
                    {
                        out.accounts_unchecked.push(n.clone());
                    }
                    if filter.admits(None, Some(n)) {
                        out.unresolved.push(UnresolvedAccount {
                            name: n.clone(),
                            tokens: entry.tokens.clone(),
                            why,
                        });
                    }
                    continue;
                }
            },
        };
        if !filter.admits(Some(id), name) {
            continue;
        }
        if let AccountSelector::Name(n) = &entry.selector {
            out.resolved_names.insert(n.clone(), id);
        }
        if let Some(n) = name {
            out.account_names.entry(id).or_insert_with(|| n.to_owned());
        }
        if let (AccountSelector::Name(n), Some(declared)) = (&entry.selector, &entry.create) {
            out.accounts_existing.push(ExistingAccount {
                name: n.clone(),
                account_id: id,
            });
            if let Some(live_settings) = live.and_then(|l| l.settings.get(&id)) {
                let fields = onboard::drift(declared, live_settings, &resolve_ref);
                if !fields.is_empty() {
                    out.drift.push(AccountDrift {
                        name: n.clone(),
                        account_id: id,
                        fields,
                    });
                }
            }
        }
        if let Some(l) = live
            && !l.sub_accounts.contains_key(&id)
            && !created_ids.contains(&id)
        {
            out.unknown_accounts.push(UnknownAccount {
                account_id: id,
                tokens: entry.tokens.clone(),
            });
            continue;
        }
        let list = desired.entry(id).or_insert_with(|| {
            order.push(id);
            Vec::new()
        });
        for t in &entry.tokens {
            if !list.contains(t) {
                list.push(t.clone());
            }
        }
    }

    for id in &order {
        for name in &desired[id] {
            let key = TokenKey {
                account_id: *id,
                token_name: name.clone(),
            };
            match recorded.get(&key) {
                Some(r) if r.status == Some(TokenStatus::Revoked) => out.revoked.push(Recorded {
                    key,
                    token_id: r.token_id,
                }),
                Some(r) => out.present.push(Recorded {
                    key,
                    token_id: r.token_id,
                }),
                None => out.create.push(key),
            }
        }
    }

    for s in recorded.superseded_to_remove() {
        let id = s.account_id;
        if desired.contains_key(&id) || (judge_absent_all(&out, filter)) {
            out.replaced_to_remove.push(Recorded {
                key: TokenKey {
                    account_id: id,
                    token_name: s.token_name.clone(),
                },
                token_id: s.token_id,
            });
        }
    }

    // Recorded tokens the manifest no longer wants. Accounts absent from the manifest are only
    // judged when every account of the manifest could be placed (an unresolved name might be
    // one of them) and when no filter narrows the manifest.
    let judge_absent = judge_absent_all(&out, filter);
    let wanted_unknown: BTreeSet<u32> = out.unknown_accounts.iter().map(|u| u.account_id).collect();
    for (acc, tokens) in &recorded.accounts {
        let wanted = desired.get(acc);
        if wanted.is_none() && (!judge_absent || wanted_unknown.contains(acc)) {
            continue;
        }
        for (name, r) in tokens {
            if !wanted.is_some_and(|w| w.contains(name)) {
                out.remove_by_hand.push(Recorded {
                    key: TokenKey {
                        account_id: *acc,
                        token_name: name.clone(),
                    },
                    token_id: r.token_id,
                });
            }
        }
    }
    // Accounts the manifest no longer lists, by the name the book knows them by.
    let recorded_only: Vec<u32> = out
        .replaced_to_remove
        .iter()
        .chain(&out.remove_by_hand)
        .map(|r| r.key.account_id)
        .collect();
    for id in recorded_only {
        if let Some(n) = book.name(id) {
            out.account_names.entry(id).or_insert_with(|| n.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::{AccountEntry, Settings};
    use crate::state::TokenRecord;
    use proptest::prelude::*;

    /// A manifest whose named accounts all have `create` with these settings.
    fn onboarding(names: &[&str], settings: &crate::manifest::AccountSettings) -> Manifest {
        let mut m = manifest(
            names
                .iter()
                .map(|n| (AccountSelector::Name((*n).into()), vec!["ci"]))
                .collect(),
        );
        for entry in &mut m.accounts {
            entry.create = Some(settings.clone());
        }
        m
    }

    fn declared() -> crate::manifest::AccountSettings {
        crate::manifest::AccountSettings {
            email: Some("a@example.com".into()),
            retention_days: Some(30),
            max_daily_gb: Some(5.0),
            ..Default::default()
        }
    }

    /// The budget holds for a replacement (a rotation or a recreation) as for a creation: a key
    /// whose earlier runs used it up is not sent again, whichever way the plan would send it.
    #[test]
    fn the_ambiguity_budget_holds_for_replacements_as_for_creations() {
        let key = |name: &str| TokenKey {
            account_id: 160_343,
            token_name: name.into(),
        };
        let orphan = |name: &str, attempts: u32| crate::state::PossibleOrphan {
            account_id: 160_343,
            token_name: name.into(),
            ambiguous_attempts: attempts,
            detail: "connection lost".into(),
            at: "2026-12-07T00:00:00Z".into(),
        };
        let mut results = ResultsFile::new(None);
        results.possible_orphans = vec![orphan("new", 2), orphan("rotated", 2), orphan("some", 1)];
        let mut p = Plan {
            create: vec![key("new"), key("some"), key("clean")],
            replace: vec![Replacement {
                key: key("rotated"),
                replaces: 7002,
                created_at: "2026-01-02T00:00:00Z".into(),
                reason: ReplaceReason::Revoked,
            }],
            ..Plan::default()
        };
        let (earlier, failed) = p.hold_ambiguity_budget(&results, 2);
        assert_eq!(p.to_send(), [key("some"), key("clean")]);
        let failed: Vec<&str> = failed.iter().map(|f| f.token_name.as_str()).collect();
        assert_eq!(failed, ["new", "rotated"]);
        assert_eq!(earlier, HashMap::from([(key("some"), 1)]));
    }

    #[test]
    fn accounts_to_create_exist_or_drift_and_a_twin_name_is_an_error() {
        let m = onboarding(&["new-a", "new-b", "there", "twin"], &declared());
        let mut live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(5, "there".into()), (6, "twin".into()), (7, "twin".into())].into(),
        };
        live.settings.insert(
            5,
            crate::manifest::AccountSettings {
                retention_days: Some(3),
                max_daily_gb: Some(5.0),
                ..Default::default()
            },
        );
        let p = plan(
            &m,
            &ResultsFile::new(None),
            Some(&live),
            &AccountFilter::default(),
        );
        let names: Vec<&str> = p
            .accounts_to_create
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["new-a", "new-b"]);
        assert!((p.added_daily_gb() - 10.0).abs() < 1e-9);
        assert_eq!(p.new_account_token_count(), 2);
        assert_eq!(
            p.accounts_existing,
            [ExistingAccount {
                name: "there".into(),
                account_id: 5
            }]
        );
        assert_eq!(p.drift.len(), 1);
        assert_eq!(
            p.drift[0].fields[0].to_string(),
            "retention_days: 30 declared, 3 live"
        );
        // The existing account's tokens are planned as usual; the twin name blocks its entry.
        assert_eq!(p.create.len(), 1);
        assert!(matches!(
            &p.unresolved[..],
            [UnresolvedAccount {
                why: Unresolved::Ambiguous { .. },
                ..
            }]
        ));
        assert!(p.has_changes() && p.has_blockers());

        // Drift alone is a change (for --detailed-exitcode).
        let only_drift = plan(
            &onboarding(&["there"], &declared()),
            &{
                let mut r = ResultsFile::new(None);
                r.accounts
                    .entry(5)
                    .or_default()
                    .insert("ci".into(), TokenRecord::default());
                r
            },
            Some(&live),
            &AccountFilter::default(),
        );
        assert!(only_drift.create.is_empty() && only_drift.accounts_to_create.is_empty());
        assert!(only_drift.has_changes());
    }

    #[test]
    fn a_created_account_is_never_planned_again_while_the_list_lags_and_offline_says_unchecked() {
        let m = onboarding(&["new-a"], &declared());
        let mut recorded = ResultsFile::new(None);
        recorded.accounts_created.insert(
            "new-a".into(),
            crate::state::CreatedAccount {
                account_id: 900,
                created_at: "2026-01-01T00:00:00Z".into(),
                run_id: "r".into(),
                shipping_token: true,
            },
        );
        let empty_live = LiveAccounts::default();
        let p = plan(&m, &recorded, Some(&empty_live), &AccountFilter::default());
        assert!(p.accounts_to_create.is_empty(), "{p:?}");
        assert!(p.unknown_accounts.is_empty());
        assert_eq!(p.create[0].account_id, 900);

        let offline = plan(&m, &ResultsFile::new(None), None, &AccountFilter::default());
        assert_eq!(offline.accounts_unchecked, ["new-a"]);
        assert!(offline.accounts_to_create.is_empty());
    }

    fn manifest(accounts: Vec<(AccountSelector, Vec<&str>)>) -> Manifest {
        Manifest {
            path: "m.yaml".into(),
            version: 1,
            endpoint: None,
            settings: Settings::default(),
            recipients: Vec::new(),
            default_tokens: vec![],
            default_rotate_after_days: None,
            default_create: None,
            accounts: accounts
                .into_iter()
                .enumerate()
                .map(|(i, (selector, tokens))| AccountEntry {
                    selector,
                    tokens: tokens.into_iter().map(String::from).collect(),
                    rotate_after_days: None,
                    create: None,
                    line: i as u32 + 1,
                    column: 3,
                })
                .collect(),
        }
    }

    fn record(r: &mut ResultsFile, acc: u32, name: &str, id: i64) {
        r.insert(
            &TokenKey {
                account_id: acc,
                token_name: name.into(),
            },
            TokenRecord {
                token_id: id,
                created_at: "2021-05-24T12:11:51Z".into(),
                source: None,
                ..TokenRecord::default()
            },
        );
    }

    #[test]
    fn creates_skips_and_reports_removals() {
        let m = manifest(vec![
            (AccountSelector::Id(1), vec!["ci", "grafana"]),
            (AccountSelector::Id(2), vec!["ci"]),
        ]);
        let mut r = ResultsFile::new(None);
        record(&mut r, 1, "ci", 10);
        record(&mut r, 1, "old", 11);
        record(&mut r, 3, "gone", 12);
        let p = plan(&m, &r, None, &AccountFilter::default());
        let names: Vec<String> = p.create.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["1/grafana", "2/ci"]);
        assert_eq!(p.present.len(), 1);
        let removals: Vec<String> = p.remove_by_hand.iter().map(|r| r.key.to_string()).collect();
        assert_eq!(removals, ["1/old", "3/gone"]);
        assert!(p.has_changes());
    }

    #[test]
    fn names_resolve_live_or_from_the_cache_or_stay_unresolved() {
        let m = manifest(vec![
            (AccountSelector::Name("pay".into()), vec!["ci"]),
            (AccountSelector::Name("dup".into()), vec!["ci"]),
            (AccountSelector::Name("nope".into()), vec!["ci"]),
        ]);
        let r = ResultsFile::new(None);
        let offline = plan(&m, &r, None, &AccountFilter::default());
        assert_eq!(offline.unresolved.len(), 3);
        assert!(
            offline
                .unresolved
                .iter()
                .all(|u| u.why == Unresolved::NeedsLookup)
        );
        assert!(!offline.has_blockers());

        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(5, "pay".into()), (6, "dup".into()), (7, "dup".into())].into(),
        };
        let p = plan(&m, &r, Some(&live), &AccountFilter::default());
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].account_id, 5);
        assert_eq!(p.resolved_names["pay"], 5);
        assert!(
            matches!(&p.unresolved[0].why, Unresolved::Ambiguous { candidates } if candidates == &vec![6, 7])
        );
        assert!(matches!(&p.unresolved[1].why, Unresolved::NotFound { .. }));
        assert!(p.has_blockers());

        let mut cached = ResultsFile::new(None);
        cached.resolved_names.insert("pay".into(), 5);
        let p = plan(&m, &cached, None, &AccountFilter::default());
        assert_eq!(p.create[0].account_id, 5);
    }

    #[test]
    fn live_check_reports_unknown_ids_and_filters_apply() {
        let m = manifest(vec![
            (AccountSelector::Id(1), vec!["a"]),
            (AccountSelector::Id(9), vec!["a"]),
        ]);
        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(1, "one".into())].into(),
        };
        let r = ResultsFile::new(None);
        let p = plan(&m, &r, Some(&live), &AccountFilter::default());
        assert_eq!(p.unknown_accounts[0].account_id, 9);
        assert_eq!(p.create.len(), 1);
        let only9 = AccountFilter {
            include: vec!["9".into()],
            exclude: vec![],
        };
        let p = plan(&m, &r, None, &only9);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].account_id, 9);
        let not1 = AccountFilter {
            include: vec![],
            exclude: vec!["1".into()],
        };
        assert_eq!(plan(&m, &r, None, &not1).create[0].account_id, 9);
    }

    #[test]
    fn every_account_of_the_plan_is_named_when_a_name_is_known() {
        let m = manifest(vec![
            (AccountSelector::Id(1), vec!["a"]),
            (AccountSelector::Name("pay".into()), vec!["a"]),
            (AccountSelector::Id(3), vec!["a"]),
        ]);
        let mut r = ResultsFile::new(None);
        record(&mut r, 2, "gone", 20);
        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(1, "one".into()), (2, "two".into()), (5, "pay".into())].into(),
        };
        let p = plan(&m, &r, Some(&live), &AccountFilter::default());
        assert_eq!(p.remove_by_hand[0].key.account_id, 2);
        let names: Vec<(u32, &str)> = p
            .account_names
            .iter()
            .map(|(id, n)| (*id, n.as_str()))
            .collect();
        // Given by id, by name, absent from the manifest; 3 is no sub account: no name.
        assert_eq!(names, [(1, "one"), (2, "two"), (5, "pay")]);
        // Offline: the names runs resolved, whichever way the manifest gives the account.
        r.resolved_names.insert("pay".into(), 5);
        r.resolved_names.insert("one".into(), 1);
        let p = plan(&m, &r, None, &AccountFilter::default());
        assert_eq!(p.account_names[&1], "one");
        assert_eq!(p.account_names[&5], "pay");
        assert!(!p.account_names.contains_key(&3));
    }

    fn keys(list: &[Recorded]) -> Vec<String> {
        list.iter()
            .map(|r| format!("{}#{}", r.key, r.token_id))
            .collect()
    }

    /// Account 1 in the manifest (ci revoked, web replaced once); account 2 absent from it
    /// (x replaced once, y recorded); an orphan noted.
    fn state_with_history() -> ResultsFile {
        let mut r = ResultsFile::new(None);
        record(&mut r, 1, "ci", 10);
        r.set_statuses(
            &[(10, TokenStatus::Revoked)].into_iter().collect(),
            "2026-01-01T00:00:00Z",
        );
        record(&mut r, 1, "web", 9);
        record(&mut r, 1, "web", 11);
        record(&mut r, 2, "x", 20);
        record(&mut r, 2, "x", 21);
        record(&mut r, 2, "y", 22);
        r.note_orphan(
            &TokenKey {
                account_id: 1,
                token_name: "web".into(),
            },
            "timeout",
            "2026-01-01T00:00:00Z",
        );
        r
    }

    #[test]
    fn revoked_and_replaced_tokens_are_reported_and_absent_accounts_judged_when_safe() {
        let m = manifest(vec![(AccountSelector::Id(1), vec!["ci", "web"])]);
        let r = state_with_history();
        let p = plan(&m, &r, None, &AccountFilter::default());
        assert!(p.create.is_empty());
        assert!(!p.has_changes());
        assert_eq!(keys(&p.revoked), ["1/ci#10"]);
        assert_eq!(keys(&p.present), ["1/web#11"]);
        assert_eq!(keys(&p.replaced_to_remove), ["1/web#9", "2/x#20"]);
        assert_eq!(keys(&p.remove_by_hand), ["2/x#21", "2/y#22"]);
        assert_eq!(p.possible_orphans, 1);
        assert!(!p.live);

        // A filter: accounts outside it are not judged (their tokens are not "unwanted").
        let only1 = AccountFilter {
            include: vec!["1".into()],
            exclude: vec![],
        };
        let p = plan(&m, &r, None, &only1);
        assert_eq!(keys(&p.replaced_to_remove), ["1/web#9"]);
        assert!(p.remove_by_hand.is_empty());

        // A name that needs a lookup might be account 2: not judged either.
        let m2 = manifest(vec![
            (AccountSelector::Id(1), vec!["ci", "web"]),
            (AccountSelector::Name("maybe-two".into()), vec!["x"]),
        ]);
        let p = plan(&m2, &r, None, &AccountFilter::default());
        assert_eq!(keys(&p.replaced_to_remove), ["1/web#9"]);
        assert!(p.remove_by_hand.is_empty());

        // A name the live list does not know: not judged.
        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(1, "one".into()), (2, "two".into())].into(),
        };
        let p = plan(&m2, &r, Some(&live), &AccountFilter::default());
        assert!(p.live);
        assert_eq!(keys(&p.replaced_to_remove), ["1/web#9"]);
        assert!(p.remove_by_hand.is_empty());
        assert!(p.has_blockers());
    }

    #[test]
    fn an_unknown_account_is_not_judged_and_an_account_given_twice_is_planned_once() {
        let m = manifest(vec![
            (AccountSelector::Id(5), vec!["ci"]),
            (AccountSelector::Name("pay".into()), vec!["ci", "x"]),
            (AccountSelector::Id(9), vec!["a"]),
        ]);
        let mut r = ResultsFile::new(None);
        record(&mut r, 9, "old", 1);
        record(&mut r, 7, "gone", 2);
        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [(5, "pay".into()), (7, "seven".into())].into(),
        };
        let p = plan(&m, &r, Some(&live), &AccountFilter::default());
        let names: Vec<String> = p.create.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["5/ci", "5/x"]);
        assert_eq!(p.unknown_accounts[0].account_id, 9);
        // 9 is in the manifest (unknown to the server): its tokens are not for removal.
        assert_eq!(keys(&p.remove_by_hand), ["7/gone#2"]);
        assert!(p.has_blockers());
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        prop::collection::vec((1u32..50, prop::collection::vec("[a-c]{1,2}", 1..4)), 1..20)
            .prop_map(|accounts| {
                let mut seen = BTreeSet::new();
                let accounts = accounts
                    .into_iter()
                    .filter(|(id, _)| seen.insert(*id))
                    .map(|(id, mut tokens)| {
                        tokens.sort();
                        tokens.dedup();
                        (AccountSelector::Id(id), tokens)
                    })
                    .collect::<Vec<_>>();
                Manifest {
                    accounts: accounts
                        .into_iter()
                        .map(|(selector, tokens)| AccountEntry {
                            selector,
                            tokens,
                            rotate_after_days: None,
                            create: None,
                            line: 1,
                            column: 1,
                        })
                        .collect(),
                    ..manifest(vec![])
                }
            })
    }

    proptest! {
        #[test]
        fn planning_is_deterministic_and_converges(m in arb_manifest(), pre in prop::collection::vec((1u32..50, "[a-c]{1,2}"), 0..10)) {
            let mut r = ResultsFile::new(None);
            for (i, (acc, name)) in pre.iter().enumerate() {
                record(&mut r, *acc, name, i as i64 + 1);
            }
            let p1 = plan(&m, &r, None, &AccountFilter::default());
            let p2 = plan(&m, &r, None, &AccountFilter::default());
            prop_assert_eq!(&p1, &p2);
            // Record every created token: planning again yields nothing to create.
            for (i, k) in p1.create.iter().enumerate() {
                record(&mut r, k.account_id, &k.token_name, 1000 + i as i64);
            }
            let p3 = plan(&m, &r, None, &AccountFilter::default());
            prop_assert!(p3.create.is_empty());
            prop_assert_eq!(p3.present.len(), m.token_count());
        }
    }
}
