//! Accounts: the live sub-account list, the `--account` filter, and [`AccountBook`], the one
//! place where a manifest entry becomes an account id and an id gets the name people know.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::Unresolved;
use crate::manifest::{AccountSelector, AccountSettings};

/// What is known about the owner's sub accounts from a live preflight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveAccounts {
    /// Every sub account of the owner: id -> name.
    pub sub_accounts: BTreeMap<u32, String>,
    /// Their settings as the list shows them, in the manifest's terms (for drift); an id
    /// missing here has none known.
    pub settings: BTreeMap<u32, AccountSettings>,
}

impl FromIterator<(u32, String)> for LiveAccounts {
    /// The view from a listing of (id, name) pairs.
    fn from_iter<I: IntoIterator<Item = (u32, String)>>(iter: I) -> Self {
        LiveAccounts {
            sub_accounts: iter.into_iter().collect(),
            settings: BTreeMap::new(),
        }
    }
}

impl LiveAccounts {
    /// Resolves an account name: exactly one sub account must carry it.
    pub fn resolve(&self, name: &str) -> NameResolution {
        let matches: Vec<u32> = self
            .sub_accounts
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id)
            .collect();
        match matches.as_slice() {
            [] => NameResolution::NotFound {
                similar: self.similar_names(name),
            },
            [id] => NameResolution::Resolved(*id),
            _ => NameResolution::Ambiguous(matches),
        }
    }

    fn similar_names(&self, name: &str) -> Vec<String> {
        let lower = name.to_lowercase();
        let mut v: Vec<String> = self
            .sub_accounts
            .values()
            .filter(|n| {
                let nl = n.to_lowercase();
                nl == lower || nl.contains(&lower) || lower.contains(&nl)
            })
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v.truncate(5);
        v
    }
}

/// How an account name resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NameResolution {
    /// Exactly one sub account has this name.
    Resolved(u32),
    /// None has it.
    NotFound {
        /// Names that look alike, to help the user.
        similar: Vec<String>,
    },
    /// Several have it: the candidates' ids.
    Ambiguous(Vec<u32>),
}

/// An account as `--account` / `--exclude-account` name it: an id or a name. Text that reads
/// as an account id is also kept as text, since a sub account may be named `1234`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// As given (trimmed).
    text: String,
    /// The text read as an account id, when it is one.
    id: Option<u32>,
}

impl From<&str> for AccountRef {
    fn from(s: &str) -> Self {
        let text = s.trim().to_owned();
        let id = text.parse().ok();
        AccountRef { text, id }
    }
}

impl std::str::FromStr for AccountRef {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AccountRef::from(s))
    }
}

impl AccountRef {
    /// The text as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this names the account with this id and/or name.
    fn names(&self, id: Option<u32>, name: Option<&str>) -> bool {
        (self.id.is_some() && self.id == id) || name == Some(self.text.as_str())
    }
}

/// Which accounts a plan covers: `--account` / `--exclude-account` (by id or name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// When not empty, only these accounts.
    pub include: Vec<AccountRef>,
    /// Never these accounts.
    pub exclude: Vec<AccountRef>,
}

impl AccountFilter {
    /// Whether an account (by id and/or name) is covered.
    pub fn admits(&self, id: Option<u32>, name: Option<&str>) -> bool {
        let hit = |list: &[AccountRef]| list.iter().any(|r| r.names(id, name));
        (self.include.is_empty() || hit(&self.include)) && !hit(&self.exclude)
    }

    /// Whether the filter limits anything.
    pub fn is_active(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }

    /// The values of `--account` (`false`) and `--exclude-account` (`true`) that name no
    /// entry of the manifest (by id, by name, or by the name `book` knows an id by), each with
    /// the closest entries (at most three, nearest first).
    pub fn unmatched(
        &self,
        manifest: &crate::manifest::Manifest,
        book: &AccountBook<'_>,
    ) -> Vec<(bool, &AccountRef, Vec<String>)> {
        // Every way an entry can be named, and how to show it.
        let mut names: Vec<(String, String)> = Vec::new();
        for e in &manifest.accounts {
            match &e.selector {
                AccountSelector::Id(id) => {
                    let shown = match book.name(*id) {
                        Some(n) => {
                            names.push((n.to_owned(), format!("{id} ({n})")));
                            format!("{id} ({n})")
                        }
                        None => id.to_string(),
                    };
                    names.push((id.to_string(), shown));
                }
                AccountSelector::Name(n) => names.push((n.clone(), n.clone())),
            }
        }
        let matches = |r: &AccountRef| {
            manifest.accounts.iter().any(|e| match &e.selector {
                AccountSelector::Id(id) => r.names(Some(*id), book.name(*id)),
                AccountSelector::Name(n) => {
                    r.text == *n || book.id(&e.selector).is_ok_and(|id| r.id == Some(id))
                }
            })
        };
        // Without the live list, a name may belong to an id entry whose name is not known
        // yet, and an id to a name entry not resolved yet: such a value cannot be judged.
        let unknowable = |r: &AccountRef| {
            manifest.accounts.iter().any(|e| match &e.selector {
                AccountSelector::Id(id) => r.id.is_none() && book.name(*id).is_none(),
                AccountSelector::Name(_) => {
                    r.id.is_some() && book.id(&e.selector) == Err(Unresolved::NeedsLookup)
                }
            })
        };
        let mut out = Vec::new();
        for (exclude, list) in [(false, &self.include), (true, &self.exclude)] {
            for r in list.iter().filter(|r| !matches(r) && !unknowable(r)) {
                let mut ranked: Vec<(usize, &String)> = names
                    .iter()
                    .map(|(key, shown)| {
                        (distance(&r.text.to_lowercase(), &key.to_lowercase()), shown)
                    })
                    .collect();
                ranked.sort();
                let mut closest: Vec<String> = Vec::new();
                for (_, shown) in ranked {
                    if !closest.contains(shown) {
                        closest.push(shown.clone());
                    }
                    if closest.len() == 3 {
                        break;
                    }
                }
                out.push((exclude, r, closest));
            }
        }
        out
    }
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Where account names and ids meet, for one command: the live sub-account list when the
/// preflight ran, else the names earlier runs resolved (the results file's `resolved_names`).
/// Every command that turns a manifest entry into an id, or an id into the name a person
/// knows it by, asks here.
#[derive(Debug)]
pub struct AccountBook<'a> {
    live: Option<&'a LiveAccounts>,
    recorded: &'a BTreeMap<String, u32>,
    /// `recorded` the other way round, built once.
    recorded_by_id: HashMap<u32, &'a str>,
}

impl<'a> AccountBook<'a> {
    /// A book over the live list, if any, and the recorded names.
    pub fn new(live: Option<&'a LiveAccounts>, recorded: &'a BTreeMap<String, u32>) -> Self {
        let recorded_by_id = match live {
            Some(_) => HashMap::new(),
            None => recorded.iter().map(|(n, id)| (*id, n.as_str())).collect(),
        };
        AccountBook {
            live,
            recorded,
            recorded_by_id,
        }
    }

    /// The id of a manifest entry's account.
    pub fn id(&self, selector: &AccountSelector) -> Result<u32, Unresolved> {
        let name = match selector {
            AccountSelector::Id(id) => return Ok(*id),
            AccountSelector::Name(n) => n,
        };
        match self.live {
            Some(l) => match l.resolve(name) {
                NameResolution::Resolved(id) => Ok(id),
                NameResolution::NotFound { similar } => Err(Unresolved::NotFound { similar }),
                NameResolution::Ambiguous(candidates) => Err(Unresolved::Ambiguous { candidates }),
            },
            None => self
                .recorded
                .get(name)
                .copied()
                .ok_or(Unresolved::NeedsLookup),
        }
    }

    /// The name an account id is known by: its live name, else the name a run resolved to it.
    pub fn name(&self, id: u32) -> Option<&'a str> {
        match self.live {
            Some(l) => l.sub_accounts.get(&id).map(String::as_str),
            None => self.recorded_by_id.get(&id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(list: &[&str]) -> Vec<AccountRef> {
        list.iter().map(|s| AccountRef::from(*s)).collect()
    }

    #[test]
    fn a_filter_value_naming_no_entry_is_found_with_the_closest_entries() {
        use crate::manifest::{AccountEntry, Manifest, Settings};
        let entry = |selector| AccountEntry {
            selector,
            tokens: vec!["ci".into()],
            rotate_after_days: None,
            create: None,
            line: 1,
            column: 1,
        };
        let m = Manifest {
            path: "m.yaml".into(),
            version: 1,
            endpoint: None,
            settings: Settings::default(),
            recipients: Vec::new(),
            default_tokens: vec![],
            default_rotate_after_days: None,
            default_create: None,
            accounts: vec![
                entry(AccountSelector::Id(998)),
                entry(AccountSelector::Id(12)),
                entry(AccountSelector::Name("payments".into())),
            ],
        };
        let live = LiveAccounts {
            settings: BTreeMap::new(),
            sub_accounts: [
                (998, "web".into()),
                (12, "db".into()),
                (5, "payments".into()),
            ]
            .into(),
        };
        let none = BTreeMap::new();
        let book = AccountBook::new(Some(&live), &none);
        let f = AccountFilter {
            include: refs(&["999", "998", "web", "5", "paymnts"]),
            exclude: refs(&["nope"]),
        };
        let found: Vec<(bool, String, Vec<String>)> = f
            .unmatched(&m, &book)
            .into_iter()
            .map(|(x, r, c)| (x, r.as_str().to_owned(), c))
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].1, "999");
        assert_eq!(found[0].2[0], "998 (web)");
        assert_eq!(found[1].1, "paymnts");
        assert_eq!(found[1].2[0], "payments");
        assert!(found[2].0 && found[2].1 == "nope");
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_filter_matches_ids_as_numbers_and_names_as_text() {
        let f = AccountFilter {
            include: refs(&[" 0160343 ", "payments"]),
            exclude: vec![],
        };
        assert!(f.admits(Some(160_343), None));
        assert!(f.admits(None, Some("payments")));
        assert!(!f.admits(Some(1), Some("other")));
        let numeric_name = AccountFilter {
            include: vec![],
            exclude: refs(&["1234"]),
        };
        assert!(!numeric_name.admits(Some(9), Some("1234")));
        assert!(numeric_name.admits(Some(9), Some("12345")));
    }

    #[test]
    fn the_book_reads_the_live_list_else_the_recorded_names() {
        let recorded: BTreeMap<String, u32> = [("pay".to_owned(), 7)].into();
        let offline = AccountBook::new(None, &recorded);
        assert_eq!(offline.id(&AccountSelector::Name("pay".into())), Ok(7));
        assert_eq!(
            offline.id(&AccountSelector::Name("new".into())),
            Err(Unresolved::NeedsLookup)
        );
        assert_eq!(offline.id(&AccountSelector::Id(3)), Ok(3));
        assert_eq!(offline.name(7), Some("pay"));
        let live: LiveAccounts = [(8, "pay".to_owned()), (9, "x".to_owned())]
            .into_iter()
            .collect();
        let online = AccountBook::new(Some(&live), &recorded);
        assert_eq!(online.id(&AccountSelector::Name("pay".into())), Ok(8));
        assert_eq!(online.name(9), Some("x"));
        assert_eq!(online.name(7), None);
    }

    #[test]
    fn a_name_resolves_to_one_account_or_says_why_not() {
        let live: LiveAccounts = [
            (1, "Payments".to_owned()),
            (2, "payments-eu".to_owned()),
            (3, "twin".to_owned()),
            (4, "twin".to_owned()),
            (5, "other".to_owned()),
            (6, "pay".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(live.resolve("other"), NameResolution::Resolved(5));
        assert_eq!(live.resolve("twin"), NameResolution::Ambiguous(vec![3, 4]));
        // Alike: the same ignoring case, or one inside the other; sorted.
        assert_eq!(
            live.resolve("payments"),
            NameResolution::NotFound {
                similar: vec!["Payments".into(), "pay".into(), "payments-eu".into()]
            }
        );
        assert_eq!(
            live.resolve("zzz"),
            NameResolution::NotFound { similar: vec![] }
        );
        // At most five, each once.
        let many: LiveAccounts = (0..8).map(|i| (i, format!("team-{}", i % 7))).collect();
        match many.resolve("team") {
            NameResolution::NotFound { similar } => {
                assert_eq!(similar, ["team-0", "team-1", "team-2", "team-3", "team-4"]);
            }
            other => panic!("{other:?}"),
        }
        let parsed: AccountRef = "  42 ".parse().unwrap_or_else(|e| match e {});
        assert_eq!(parsed, AccountRef::from("42"));
        assert!(parsed.names(Some(42), None));
        assert!(!parsed.names(None, None));
        assert!(!AccountRef::from("pay").names(None, None));
    }

    #[test]
    fn excluded_accounts_are_left_out_and_an_empty_filter_is_inactive() {
        let none = AccountFilter::default();
        assert!(!none.is_active());
        assert!(none.admits(Some(1), None));
        assert!(none.admits(None, None));
        let only = AccountFilter {
            include: refs(&["1"]),
            exclude: vec![],
        };
        assert!(only.is_active());
        let ex = AccountFilter {
            include: vec![],
            exclude: refs(&["pay"]),
        };
        assert!(ex.is_active());
        assert!(!ex.admits(Some(1), Some("pay")));
        assert!(ex.admits(Some(1), Some("other")));
        let both = AccountFilter {
            include: refs(&["1", "2"]),
            exclude: refs(&["2"]),
        };
        assert!(both.admits(Some(1), None));
        assert!(!both.admits(Some(2), None));
        assert!(!both.admits(Some(3), None));
    }
}
