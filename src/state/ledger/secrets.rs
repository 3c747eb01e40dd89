//! The secrets file: every token secret ever received, 0600 from the moment it exists.
//! A run adds to it and never drops an entry: a secret replaced under the same name moves to
//! `superseded` rather than disappearing.

use crate::state::StateFile;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::key::TokenKey;
use crate::secret::Secret;
use crate::state::StateError;

/// The secrets file format version.
pub const SECRETS_VERSION: u32 = 1;

/// The secrets file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsFile {
    /// Format version; always 1.
    pub version: u32,
    /// account id -> token name -> the token's id and secret.
    #[serde(default)]
    pub accounts: BTreeMap<u32, BTreeMap<String, SecretRecord>>,
    /// Secrets that were replaced under the same account and name (kept, never dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededSecret>,
    /// Secrets of tokens whose records were forgotten (`forget`): kept, never dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<SupersededSecret>,
    /// The log shipping tokens of the sub accounts this tool created: account id -> token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shipping: BTreeMap<u32, ShippingSecret>,
}

/// A created sub account's log shipping token (`account.accountToken`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingSecret {
    /// The account's name.
    pub account_name: String,
    /// The token.
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub token: Secret,
}

/// One token's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRecord {
    /// The token's id.
    pub token_id: i64,
    /// The secret value.
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub token: Secret,
}

/// A secret that is no longer the current one for its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupersededSecret {
    /// The account id.
    pub account_id: u32,
    /// The token name.
    pub token_name: String,
    /// The token's id.
    pub token_id: i64,
    /// The secret value.
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub token: Secret,
    /// Why it was moved here.
    pub note: String,
}

impl Default for SecretsFile {
    fn default() -> Self {
        SecretsFile {
            version: SECRETS_VERSION,
            accounts: BTreeMap::new(),
            superseded: Vec::new(),
            forgotten: Vec::new(),
            shipping: BTreeMap::new(),
        }
    }
}

impl SecretsFile {
    /// Reads the file; missing means none yet. Unreadable or malformed is an error.
    pub fn load(path: &Path) -> Result<Option<SecretsFile>, StateError> {
        SecretsFile::load_in(&crate::fs::RealFs, path)
    }

    /// [`SecretsFile::load`] on the filesystem `fs`.
    pub fn load_in<F: crate::fs::Fs>(
        fs: &F,
        path: &Path,
    ) -> Result<Option<SecretsFile>, StateError> {
        // Ours and 0600 only, never through a symlink; a key twice is corruption.
        let Some(file) = crate::state::json::load_own_secret_json::<F, SecretsFile>(
            fs,
            path,
            StateFile::Secrets,
        )?
        else {
            return Ok(None);
        };
        if file.version != SECRETS_VERSION {
            return Err(StateError::Corrupt {
                kind: StateFile::Secrets,
                path: path.to_path_buf(),
                detail: format!("version {} is not supported", file.version),
            });
        }
        Ok(Some(file))
    }

    /// Adds a secret. The same token id again is a no-op; a different one under the same name
    /// moves the old secret to `superseded`.
    pub fn insert(&mut self, key: &TokenKey, token_id: i64, token: Secret) {
        let slot = self
            .accounts
            .entry(key.account_id)
            .or_default()
            .entry(key.token_name.clone());
        match slot {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(SecretRecord { token_id, token });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if o.get().token_id == token_id {
                    return;
                }
                let old = o.insert(SecretRecord { token_id, token });
                self.superseded.push(SupersededSecret {
                    account_id: key.account_id,
                    token_name: key.token_name.clone(),
                    token_id: old.token_id,
                    token: old.token,
                    note: format!("replaced by token {token_id}"),
                });
            }
        }
    }

    /// Keeps a secret that must not become the current one (e.g. a duplicate id).
    pub fn quarantine(&mut self, key: &TokenKey, token_id: i64, token: Secret, note: String) {
        if self
            .superseded
            .iter()
            .any(|s| s.token_id == token_id && s.token.same_as(&token))
        {
            return;
        }
        self.superseded.push(SupersededSecret {
            account_id: key.account_id,
            token_name: key.token_name.clone(),
            token_id,
            token,
            note,
        });
    }

    /// Adds every secret of `other` (a later document): a different token under the same
    /// name replaces the current one, which moves to `superseded`; nothing is dropped.
    pub fn merge(&mut self, other: SecretsFile) {
        self.shipping.extend(other.shipping);
        for (account_id, tokens) in other.accounts {
            for (token_name, rec) in tokens {
                let key = TokenKey {
                    account_id,
                    token_name,
                };
                self.insert(&key, rec.token_id, rec.token);
            }
        }
        for s in other.superseded {
            let known = self
                .superseded
                .iter()
                .any(|x| x.token_id == s.token_id && x.token.same_as(&s.token));
            if !known {
                self.superseded.push(s);
            }
        }
        for s in other.forgotten {
            let known = self
                .forgotten
                .iter()
                .any(|x| x.token_id == s.token_id && x.token.same_as(&s.token));
            if !known {
                self.forgotten.push(s);
            }
        }
    }

    /// Moves `key`'s secret, if it is token `token_id`'s, to `forgotten` (noted with `at`).
    pub(crate) fn forget(&mut self, key: &TokenKey, token_id: i64, at: &str) {
        let Some(m) = self.accounts.get_mut(&key.account_id) else {
            return;
        };
        if m.get(&key.token_name)
            .is_none_or(|r| r.token_id != token_id)
        {
            return;
        }
        let Some(rec) = m.remove(&key.token_name) else {
            return;
        };
        if m.is_empty() {
            self.accounts.remove(&key.account_id);
        }
        self.forgotten.push(SupersededSecret {
            account_id: key.account_id,
            token_name: key.token_name.clone(),
            token_id: rec.token_id,
            token: rec.token,
            note: format!("its record was forgotten at {at}"),
        });
    }

    /// Makes the token whose id `recorded` names the current one for its name, where it is
    /// among the superseded ones (the results file says which token is current).
    pub fn prefer_ids(&mut self, recorded: impl Fn(&TokenKey) -> Option<i64>) {
        let mut i = 0;
        while i < self.superseded.len() {
            let s = &self.superseded[i];
            let key = TokenKey {
                account_id: s.account_id,
                token_name: s.token_name.clone(),
            };
            let current = self.get(&key).map(|r| r.token_id);
            if recorded(&key) == Some(s.token_id) && current != Some(s.token_id) {
                let s = self.superseded.remove(i);
                self.insert(&key, s.token_id, s.token);
                continue;
            }
            i += 1;
        }
    }

    /// Makes the results file the judge of which token is current under each name: the
    /// secret of the id `recorded` names becomes the current one where it is held, and a
    /// current secret of another id moves to `superseded` (it was replaced, or its token never
    /// became the recorded one). Names the results file does not record are left as they are.
    pub fn follow_results(&mut self, recorded: impl Fn(&TokenKey) -> Option<i64>) {
        self.prefer_ids(&recorded);
        let mut demoted = Vec::new();
        for (account_id, tokens) in &mut self.accounts {
            tokens.retain(|name, rec| {
                let key = TokenKey {
                    account_id: *account_id,
                    token_name: name.clone(),
                };
                match recorded(&key) {
                    Some(id) if id != rec.token_id => {
                        demoted.push(SupersededSecret {
                            account_id: *account_id,
                            token_name: name.clone(),
                            token_id: rec.token_id,
                            token: rec.token.clone(),
                            note: format!(
                                "not the current token: the results file records token {id} for this name"
                            ),
                        });
                        false
                    }
                    _ => true,
                }
            });
        }
        self.accounts.retain(|_, m| !m.is_empty());
        for d in demoted {
            let known = self
                .superseded
                .iter()
                .any(|x| x.token_id == d.token_id && x.token.same_as(&d.token));
            if !known {
                self.superseded.push(d);
            }
        }
    }

    /// The secret recorded for a key.
    pub fn get(&self, key: &TokenKey) -> Option<&SecretRecord> {
        self.accounts
            .get(&key.account_id)
            .and_then(|m| m.get(&key.token_name))
    }

    /// Serializes, pretty, with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn contract_example_round_trips_and_never_drops() {
        let text = r#"{ "version": 1, "accounts": { "160343": { "ci": { "token_id": 7386, "token": "c498fbc3-x" } } } }"#;
        let mut f: SecretsFile = serde_json::from_str(text).unwrap();
        let k = TokenKey {
            account_id: 160343,
            token_name: "ci".into(),
        };
        assert_eq!(f.get(&k).unwrap().token.expose(), "c498fbc3-x");
        f.insert(&k, 7386, Secret::new("c498fbc3-x"));
        assert!(f.superseded.is_empty());
        f.insert(&k, 9999, Secret::new("new"));
        assert_eq!(f.get(&k).unwrap().token_id, 9999);
        assert_eq!(f.superseded[0].token.expose(), "c498fbc3-x");
        let out = String::from_utf8(f.to_bytes()).unwrap();
        assert!(out.contains("c498fbc3-x") && out.contains("\"new\""));
        // Debug never shows a secret.
        assert!(!format!("{f:?}").contains("c498fbc3"));
    }

    fn key(name: &str) -> TokenKey {
        TokenKey {
            account_id: 7,
            token_name: name.into(),
        }
    }

    #[test]
    fn load_reads_what_was_written_and_refuses_another_version() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        assert!(
            SecretsFile::load(&p).unwrap().is_none(),
            "missing is none yet"
        );
        let mut f = SecretsFile::default();
        f.insert(&key("ci"), 5, Secret::new("kept-secret"));
        let write = |bytes: &[u8]| {
            let _ = std::fs::remove_file(&p);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap();
            std::io::Write::write_all(&mut out, bytes).unwrap();
        };
        write(&f.to_bytes());
        let back = SecretsFile::load(&p).unwrap().unwrap();
        assert_eq!(back.get(&key("ci")).unwrap().token.expose(), "kept-secret");
        assert_eq!(back, f);
        write(br#"{"version": 2, "accounts": {}}"#);
        let err = SecretsFile::load(&p).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn a_secret_kept_aside_twice_is_kept_once_and_a_different_one_beside_it() {
        let mut f = SecretsFile::default();
        f.quarantine(&key("a"), 9, Secret::new("one"), "why".into());
        f.quarantine(&key("a"), 9, Secret::new("one"), "again".into());
        assert_eq!(f.superseded.len(), 1);
        // The same id with another secret, or another id with the same secret: both kept.
        f.quarantine(&key("a"), 9, Secret::new("two"), "why".into());
        f.quarantine(&key("a"), 10, Secret::new("one"), "why".into());
        assert_eq!(f.superseded.len(), 3);
    }

    #[test]
    fn merging_keeps_every_secret_once_and_the_later_token_current() {
        let mut older = SecretsFile::default();
        older.insert(&key("a"), 1, Secret::new("old-a"));
        older.quarantine(&key("x"), 7, Secret::new("aside"), "why".into());
        let mut later = SecretsFile::default();
        later.insert(&key("a"), 2, Secret::new("new-a"));
        later.quarantine(&key("x"), 7, Secret::new("aside"), "why".into());
        later.quarantine(&key("x"), 7, Secret::new("aside-2"), "why".into());
        older.merge(later);
        assert_eq!(older.get(&key("a")).unwrap().token.expose(), "new-a");
        let kept: Vec<&str> = older.superseded.iter().map(|s| s.token.expose()).collect();
        assert_eq!(kept, ["aside", "old-a", "aside-2"]);
        // The results file says token 1 is the current one: it comes back.
        older.prefer_ids(|k| (k.token_name == "a").then_some(1));
        assert_eq!(older.get(&key("a")).unwrap().token.expose(), "old-a");
        assert!(older.superseded.iter().any(|s| s.token.expose() == "new-a"));
    }

    fn kept(list: &[SupersededSecret]) -> Vec<(i64, &str)> {
        list.iter()
            .map(|s| (s.token_id, s.token.expose()))
            .collect()
    }

    #[test]
    fn merging_keeps_every_forgotten_secret_once() {
        let mut older = SecretsFile::default();
        older.insert(&key("a"), 7, Secret::new("gone"));
        older.forget(&key("a"), 7, "then");
        let mut later = SecretsFile::default();
        // The same one again, the same id with another secret, another id with the same one.
        for (id, secret) in [(7, "gone"), (7, "gone-2"), (8, "gone")] {
            later.insert(&key("a"), id, Secret::new(secret));
            later.forget(&key("a"), id, "later");
        }
        older.merge(later);
        assert_eq!(
            kept(&older.forgotten),
            [(7, "gone"), (7, "gone-2"), (8, "gone")]
        );
        assert!(older.accounts.is_empty() && older.superseded.is_empty());
    }

    #[test]
    fn the_results_file_decides_which_secret_is_current_and_none_is_dropped() {
        let k = |account_id: u32, name: &str| TokenKey {
            account_id,
            token_name: name.into(),
        };
        let mut f = SecretsFile::default();
        // "a": the recorded token 2 is among the superseded; "b": the recorded token 4 is not
        // held at all, and the secret of another token 3 was kept aside before; "c": the
        // recorded one is current; "d": not recorded; "e" (alone in its account): token 6 is
        // not the recorded one, and is already among the superseded.
        f.insert(&k(7, "a"), 2, Secret::new("two"));
        f.insert(&k(7, "a"), 1, Secret::new("one"));
        f.insert(&k(7, "b"), 3, Secret::new("three"));
        f.quarantine(&k(7, "b"), 3, Secret::new("three-aside"), "why".into());
        f.insert(&k(7, "c"), 5, Secret::new("five"));
        f.insert(&k(7, "d"), 11, Secret::new("eleven"));
        f.insert(&k(8, "e"), 6, Secret::new("six"));
        f.quarantine(&k(8, "e"), 6, Secret::new("six"), "why".into());
        f.follow_results(|key| match (key.account_id, key.token_name.as_str()) {
            (7, "a") => Some(2),
            (7, "b") => Some(4),
            (7, "c") => Some(5),
            (8, "e") => Some(9),
            _ => None,
        });
        let current = |account_id, name| f.get(&k(account_id, name)).map(|r| r.token_id);
        assert_eq!(current(7, "a"), Some(2));
        assert_eq!(current(7, "b"), None, "token 3 is not the recorded one");
        assert_eq!(current(7, "c"), Some(5));
        assert_eq!(
            current(7, "d"),
            Some(11),
            "a name not recorded is left as it is"
        );
        assert_eq!(current(8, "e"), None);
        assert!(!f.accounts.contains_key(&8), "an account left empty goes");
        assert_eq!(
            kept(&f.superseded),
            [(3, "three-aside"), (6, "six"), (1, "one"), (3, "three")]
        );
        let three = f.superseded.iter().find(|s| s.token.expose() == "three");
        assert_eq!(
            three.unwrap().note,
            "not the current token: the results file records token 4 for this name"
        );
    }
}
