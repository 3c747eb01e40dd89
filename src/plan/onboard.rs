//! Onboarding in the plan: the accounts of the manifest to create (and in which order), those
//! that exist already, and how an existing account's live settings differ from the ones the
//! manifest declares for it (drift), field by field. Pure: the live settings come in
//! [`LiveAccounts`](super::LiveAccounts), in the manifest's own terms.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::manifest::{AccountRef, AccountSettings};

/// A sub account `apply` would create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAccount {
    /// Its name.
    pub name: String,
    /// What it is created with (the entry's `create` over `defaults.create`).
    pub settings: AccountSettings,
    /// The token names it gets once created.
    pub tokens: Vec<String>,
}

/// An account the manifest says to create that exists already (by exactly one name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExistingAccount {
    /// Its name.
    pub name: String,
    /// Its id.
    pub account_id: u32,
}

/// One declared field whose live value differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDrift {
    /// The manifest's name for the field (`retention_days`, `utilization.enabled`).
    pub field: String,
    /// The declared value, as written.
    pub declared: String,
    /// The live value (`none` when the account has none).
    pub live: String,
}

impl fmt::Display for FieldDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} declared, {} live",
            self.field, self.declared, self.live
        )
    }
}

/// An existing account whose live settings differ from the declared ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountDrift {
    /// Its name.
    pub name: String,
    /// Its id.
    pub account_id: u32,
    /// The fields that differ, in the manifest's order of fields.
    pub fields: Vec<FieldDrift>,
}

/// How the declared settings differ from the live ones. Only declared fields count; a live
/// `email` the API does not show (the lists often give null) is not drift. `resolve` gives the
/// id of a sharing reference (`None`: not known, so it differs).
pub fn drift(
    declared: &AccountSettings,
    live: &AccountSettings,
    resolve: &dyn Fn(&AccountRef) -> Option<u32>,
) -> Vec<FieldDrift> {
    let mut out = Vec::new();
    let mut push = |field: &str, declared: String, live: String| {
        out.push(FieldDrift {
            field: field.to_owned(),
            declared,
            live,
        });
    };
    fn shown<T: fmt::Display>(v: Option<T>) -> String {
        v.map_or_else(|| "none".to_owned(), |v| v.to_string())
    }
    if let (Some(d), Some(l)) = (&declared.email, &live.email)
        && d != l
    {
        push("email", d.clone(), l.clone());
    }
    let mut exact = |field: &str, d: Option<String>, l: Option<String>| {
        if let Some(d) = d
            && Some(&d) != l.as_ref()
        {
            push(field, d, shown(l));
        }
    };
    let text = |v: Option<u32>| v.map(|v| v.to_string());
    let flag = |v: Option<bool>| v.map(|v| v.to_string());
    // GB figures compare as numbers written the same way (5 and 5.0 are one value).
    let gb = |v: Option<f64>| v.map(|v| v.to_string());
    exact(
        "retention_days",
        text(declared.retention_days),
        text(live.retention_days),
    );
    exact(
        "max_daily_gb",
        gb(declared.max_daily_gb),
        gb(live.max_daily_gb),
    );
    exact(
        "reserved_daily_gb",
        gb(declared.reserved_daily_gb),
        gb(live.reserved_daily_gb),
    );
    exact("flexible", flag(declared.flexible), flag(live.flexible));
    exact(
        "searchable",
        flag(declared.searchable),
        flag(live.searchable),
    );
    exact(
        "accessible",
        flag(declared.accessible),
        flag(live.accessible),
    );
    exact(
        "doc_size_setting",
        flag(declared.doc_size_setting),
        flag(live.doc_size_setting),
    );
    exact(
        "soft_limit_gb",
        gb(declared.soft_limit_gb),
        gb(live.soft_limit_gb),
    );
    exact(
        "snapsearch_retention_days",
        text(declared.snapsearch_retention_days),
        text(live.snapsearch_retention_days),
    );
    if let Some(d) = declared.utilization {
        let l = live.utilization.unwrap_or_default();
        exact("utilization.enabled", flag(d.enabled), flag(l.enabled));
        exact(
            "utilization.frequency_minutes",
            text(d.frequency_minutes),
            text(l.frequency_minutes),
        );
    }
    if let Some(refs) = &declared.sharing_objects_accounts {
        let wanted: Option<BTreeSet<u32>> = refs.iter().map(resolve).collect();
        let have: BTreeSet<u32> = live
            .sharing_objects_accounts
            .iter()
            .flatten()
            .filter_map(|r| match r {
                AccountRef::Id(id) => Some(*id),
                AccountRef::Name(_) => None,
            })
            .collect();
        if wanted.as_ref() != Some(&have) {
            let list = |items: Vec<String>| format!("[{}]", items.join(", "));
            push(
                "sharing_objects_accounts",
                list(refs.iter().map(ToString::to_string).collect()),
                list(have.iter().map(ToString::to_string).collect()),
            );
        }
    }
    out
}

/// The accounts to create in an order where each comes after every account to create that it
/// shares with (the manifest refuses cycles; any left are put last, in manifest order).
pub fn creation_order(new: &[NewAccount]) -> Vec<&NewAccount> {
    let index: BTreeMap<&str, usize> = new
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();
    let mut placed = vec![false; new.len()];
    let mut out = Vec::with_capacity(new.len());
    loop {
        let before = out.len();
        for (i, account) in new.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let ready = account
                .settings
                .shared_names()
                .filter_map(|n| index.get(n))
                .all(|&j| placed[j] || j == i);
            if ready {
                placed[i] = true;
                out.push(account);
            }
        }
        if out.len() == new.len() {
            return out;
        }
        if out.len() == before {
            out.extend(
                new.iter()
                    .enumerate()
                    .filter(|(i, _)| !placed[*i])
                    .map(|(_, a)| a),
            );
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Utilization;

    fn live() -> AccountSettings {
        AccountSettings {
            email: None,
            retention_days: Some(3),
            max_daily_gb: Some(5.0),
            searchable: Some(true),
            sharing_objects_accounts: Some(vec![AccountRef::Id(7)]),
            utilization: Some(Utilization {
                enabled: Some(false),
                frequency_minutes: Some(5),
            }),
            ..AccountSettings::default()
        }
    }

    #[test]
    fn only_declared_fields_that_differ_are_drift() {
        let declared = AccountSettings {
            email: Some("a@example.com".into()),
            retention_days: Some(30),
            max_daily_gb: Some(5.0),
            searchable: Some(true),
            accessible: Some(true),
            sharing_objects_accounts: Some(vec![AccountRef::Name("x".into())]),
            utilization: Some(Utilization {
                enabled: Some(true),
                frequency_minutes: None,
            }),
            ..AccountSettings::default()
        };
        let resolve = |r: &AccountRef| match r {
            AccountRef::Id(id) => Some(*id),
            AccountRef::Name(n) if n == "x" => Some(7),
            AccountRef::Name(_) => None,
        };
        let found: Vec<String> = drift(&declared, &live(), &resolve)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "retention_days: 30 declared, 3 live",
                "accessible: true declared, none live",
                "utilization.enabled: true declared, false live",
            ]
        );
        let other = |r: &AccountRef| match r {
            AccountRef::Name(_) => Some(8),
            AccountRef::Id(id) => Some(*id),
        };
        let shared = drift(&declared, &live(), &other);
        assert!(
            shared
                .iter()
                .any(|d| d.to_string() == "sharing_objects_accounts: [x] declared, [7] live")
        );
        assert!(drift(&AccountSettings::default(), &live(), &resolve).is_empty());
    }

    #[test]
    fn accounts_are_created_after_those_they_share_with() {
        let new = |name: &str, shares: &[&str]| NewAccount {
            name: name.into(),
            settings: AccountSettings {
                sharing_objects_accounts: Some(
                    shares
                        .iter()
                        .map(|s| AccountRef::Name((*s).into()))
                        .collect(),
                ),
                ..AccountSettings::default()
            },
            tokens: vec![],
        };
        let list = [
            new("c", &["b", "existing"]),
            new("b", &["a"]),
            new("a", &[]),
            new("d", &[]),
        ];
        let order: Vec<&str> = creation_order(&list)
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(order, ["a", "d", "b", "c"]);
    }
}
