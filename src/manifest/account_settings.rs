//! The settings of a sub account the manifest may create (`defaults.create`, an account's
//! `create`), and the API's rules for them that can be checked offline: the account-name
//! characters and the email pattern of `TimeBasedAccountCreateRequest`.
//!
//! Every field is optional here: what an entry declares is what the plan compares with the live
//! account (drift) and what an update sends; the fields a create needs are checked once the
//! entry's settings are laid over `defaults.create`.

use std::fmt;

use serde::Serialize;

/// Settings of a sub account, in the manifest's snake_case; `None`: not declared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccountSettings {
    /// `email`: the account's admin, a user of the main account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `retention_days` (>= 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// `max_daily_gb`: the daily volume cap (required unless `flexible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_daily_gb: Option<f64>,
    /// `reserved_daily_gb`: the reserved volume of a flexible account (required when flexible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_daily_gb: Option<f64>,
    /// `flexible` (the API's `isFlexible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flexible: Option<bool>,
    /// `searchable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searchable: Option<bool>,
    /// `accessible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accessible: Option<bool>,
    /// `doc_size_setting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_size_setting: Option<bool>,
    /// `sharing_objects_accounts`: the accounts this one shares objects with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing_objects_accounts: Option<Vec<AccountRef>>,
    /// `utilization: {enabled, frequency_minutes}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<Utilization>,
    /// `soft_limit_gb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_limit_gb: Option<f64>,
    /// `snapsearch_retention_days` (>= 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapsearch_retention_days: Option<u32>,
}

/// `utilization`: the API's `utilizationSettings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Utilization {
    /// `enabled` (`utilizationEnabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `frequency_minutes` (`frequencyMinutes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_minutes: Option<u32>,
}

/// An account named in `sharing_objects_accounts`: by id, or by the name of a manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum AccountRef {
    /// A numeric account id.
    Id(u32),
    /// The name of an account of the manifest (possibly one this run creates).
    Name(String),
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRef::Id(id) => write!(f, "{id}"),
            AccountRef::Name(n) => write!(f, "{n}"),
        }
    }
}

impl AccountSettings {
    /// These settings laid over `base`: every field this one declares wins, field by field
    /// (`utilization`'s two fields each on their own).
    pub fn over(&self, base: &AccountSettings) -> AccountSettings {
        let utilization = match (self.utilization, base.utilization) {
            (Some(mine), Some(theirs)) => Some(Utilization {
                enabled: mine.enabled.or(theirs.enabled),
                frequency_minutes: mine.frequency_minutes.or(theirs.frequency_minutes),
            }),
            (mine, theirs) => mine.or(theirs),
        };
        AccountSettings {
            email: self.email.clone().or_else(|| base.email.clone()),
            retention_days: self.retention_days.or(base.retention_days),
            max_daily_gb: self.max_daily_gb.or(base.max_daily_gb),
            reserved_daily_gb: self.reserved_daily_gb.or(base.reserved_daily_gb),
            flexible: self.flexible.or(base.flexible),
            searchable: self.searchable.or(base.searchable),
            accessible: self.accessible.or(base.accessible),
            doc_size_setting: self.doc_size_setting.or(base.doc_size_setting),
            sharing_objects_accounts: self
                .sharing_objects_accounts
                .clone()
                .or_else(|| base.sharing_objects_accounts.clone()),
            utilization,
            soft_limit_gb: self.soft_limit_gb.or(base.soft_limit_gb),
            snapsearch_retention_days: self
                .snapsearch_retention_days
                .or(base.snapsearch_retention_days),
        }
    }

    /// The names this account's sharing references give (its dependencies on other entries).
    pub fn shared_names(&self) -> impl Iterator<Item = &str> {
        self.sharing_objects_accounts
            .iter()
            .flatten()
            .filter_map(|r| match r {
                AccountRef::Name(n) => Some(n.as_str()),
                AccountRef::Id(_) => None,
            })
    }

    /// Whether the account is flexible (`flexible: true`).
    pub fn is_flexible(&self) -> bool {
        self.flexible == Some(true)
    }
}

/// The characters an account name may hold for the API to create it: letters, digits, `-`,
/// `.`, `_` and space. The first other character, if any.
pub fn bad_account_name_char(name: &str) -> Option<char> {
    name.chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ' ')))
}

/// Whether `email` matches the API's pattern,
/// `^[_A-Za-z0-9-\+]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(\.[A-Za-z]{2,})$`.
pub fn is_api_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let mut parts = local.split('.');
    let first_ok = parts.next().is_some_and(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    });
    let rest_ok = parts.all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    first_ok && rest_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_the_api_pattern() {
        for ok in [
            "platform@example.com",
            "a+c.b@x-y.example.co",
            "first_last-1@sub.domain.io",
            "+x@a.bc",
        ] {
            assert!(is_api_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@b",
            "a@b.c",
            "a@b.c1",
            "a..b@example.com",
            "a.+b@example.com",
            "a.b+c@example.com",
            "a@@example.com",
            "a@exa_mple.com",
            "a b@example.com",
            "a@.example.com",
            "a@example.com.",
            "ä@example.com",
        ] {
            assert!(!is_api_email(bad), "{bad}");
        }
    }

    #[test]
    fn account_names_allow_letters_digits_and_four_marks() {
        assert_eq!(bad_account_name_char("team-search_2.prod eu"), None);
        assert_eq!(bad_account_name_char("équipe"), None);
        for c in ['<', '>', ':', '"', '/', '\\', '|', '?', '*', '@'] {
            assert_eq!(bad_account_name_char(&format!("a{c}b")), Some(c));
        }
    }

    #[test]
    fn an_entry_wins_field_by_field_over_the_defaults() {
        let base = AccountSettings {
            email: Some("a@example.com".into()),
            retention_days: Some(7),
            max_daily_gb: Some(5.0),
            utilization: Some(Utilization {
                enabled: Some(true),
                frequency_minutes: Some(5),
            }),
            ..AccountSettings::default()
        };
        let mine = AccountSettings {
            retention_days: Some(30),
            utilization: Some(Utilization {
                enabled: None,
                frequency_minutes: Some(10),
            }),
            sharing_objects_accounts: Some(vec![AccountRef::Name("x".into()), AccountRef::Id(3)]),
            ..AccountSettings::default()
        };
        let merged = mine.over(&base);
        assert_eq!(merged.email.as_deref(), Some("a@example.com"));
        assert_eq!(merged.retention_days, Some(30));
        assert_eq!(merged.max_daily_gb, Some(5.0));
        assert_eq!(
            merged.utilization,
            Some(Utilization {
                enabled: Some(true),
                frequency_minutes: Some(10)
            })
        );
        assert_eq!(merged.shared_names().collect::<Vec<_>>(), vec!["x"]);
        assert!(!merged.is_flexible());
    }
}
