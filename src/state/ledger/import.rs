//! `import --from`: what the state takes from a JSON export, as one operation.
//!
//! An export holds, per row, a token (account, name, id, secret), the account's name when the
//! manifest gives it by name, and the tokens that name replaced. [`Ledger::import_from`] checks
//! every row before it changes anything, then learns the account names, records the tokens not
//! recorded yet (`source: imported`), lists the replaced ones, and hands back the secrets to
//! keep (the caller keeps them in the secrets file or seals them, then saves). A refusal
//! ([`ImportFromRefused`]) leaves the ledger as it was.

use std::collections::{BTreeMap, BTreeSet};

use super::{ImportRefused, Ledger, ResultsFile, SecretsFile, SupersededToken};
use crate::key::TokenKey;
use crate::state::export::ExportedToken;

/// What [`Ledger::import_from`] recorded.
#[derive(Debug)]
pub struct ImportedFrom {
    /// The tokens recorded (rows whose key was recorded already are not listed).
    pub recorded: Vec<TokenKey>,
    /// The ids of the replaced tokens newly listed (one listed already is not listed twice).
    pub replaced: Vec<i64>,
    /// The secrets the export held, current and replaced (the replaced ones kept aside, never
    /// as current): for the caller to keep, in the secrets file or sealed, before it saves.
    pub secrets: SecretsFile,
}

/// Why an export is not imported. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportFromRefused {
    /// The export gives an account name another id than the one the results file (or an
    /// earlier row) resolved it to.
    NameConflict {
        /// The account name.
        name: String,
        /// The id the export gives it.
        exported: u32,
        /// The id known already.
        recorded: u32,
    },
    /// The caller does not ask for this token (not in the manifest).
    NotWanted(TokenKey),
    /// The token cannot be recorded as this id.
    Token {
        /// Which token.
        key: TokenKey,
        /// The id the export gives it.
        token_id: i64,
        /// Why.
        why: ImportRefused,
    },
    /// The export lists this key in two rows.
    KeyTwice(TokenKey),
    /// The export gives this token id to two rows.
    IdTwice {
        /// The token id.
        token_id: i64,
        /// The first row's key.
        first: TokenKey,
        /// The second row's key.
        second: TokenKey,
    },
    /// A replaced token is another row's current token, or one the results file records as
    /// current: recording it as replaced would have `plan` tell the admin to delete a token in
    /// use.
    ReplacedButCurrent {
        /// The replaced token's id.
        replaced: i64,
        /// The row listing it as replaced.
        row: TokenKey,
        /// The key whose current token it is.
        current: TokenKey,
    },
}

fn key_of(r: &ExportedToken) -> TokenKey {
    TokenKey {
        account_id: r.account_id,
        token_name: r.token_name.clone(),
    }
}

impl Ledger {
    /// Imports the API tokens of a JSON export (its shipping tokens belong to accounts, not to
    /// tokens the results file records, and are left out), made at `at` where the export does
    /// not say. `wanted` says whether a key is one to record (the manifest asks for it), given
    /// the account names known with the export's learned. Every row is checked first: a
    /// refusal changes nothing.
    pub fn import_from(
        &mut self,
        rows: Vec<ExportedToken>,
        at: &str,
        mut wanted: impl FnMut(&TokenKey, &BTreeMap<String, u32>) -> bool,
    ) -> Result<ImportedFrom, ImportFromRefused> {
        let rows: Vec<ExportedToken> = rows
            .into_iter()
            .filter(ExportedToken::is_api_token)
            .collect();
        // Checked first, names learned on the way: a refusal forgets them again.
        let known = self.results.resolved_names.clone();
        if let Err(refused) = self.check_export(&rows, &mut wanted) {
            self.results.resolved_names = known;
            return Err(refused);
        }
        // Checked: from here on nothing is refused.
        let mut done = ImportedFrom {
            recorded: Vec::new(),
            replaced: Vec::new(),
            secrets: SecretsFile::default(),
        };
        for r in rows {
            let key = key_of(&r);
            for old in r.superseded {
                if let Some(replaced_by) = old.replaced_by
                    && self.supersede(SupersededToken {
                        account_id: key.account_id,
                        token_name: key.token_name.clone(),
                        token_id: old.token_id,
                        created_at: old.created_at.unwrap_or_else(|| at.to_owned()),
                        replaced_by,
                        status: old.status,
                        checked_at: old.checked_at,
                    })
                {
                    done.replaced.push(old.token_id);
                }
                if let Some(secret) = old.token {
                    let note = old
                        .note
                        .unwrap_or_else(|| "imported as replaced".to_owned());
                    done.secrets.quarantine(&key, old.token_id, secret, note);
                }
            }
            if self.results.get(&key).is_none() {
                // Checked above: the key and the id are free (ids are distinct among rows).
                self.import(&key, r.token_id, at)
                    .map_err(|why| ImportFromRefused::Token {
                        key: key.clone(),
                        token_id: r.token_id,
                        why,
                    })?;
                done.recorded.push(key.clone());
            }
            done.secrets.insert(&key, r.token_id, r.token);
        }
        Ok(done)
    }

    /// Whether every row of an export may be recorded; learns the account names it gives.
    fn check_export(
        &mut self,
        rows: &[ExportedToken],
        wanted: &mut impl FnMut(&TokenKey, &BTreeMap<String, u32>) -> bool,
    ) -> Result<(), ImportFromRefused> {
        // Accounts given by name: a name not known yet is learned from the export, one known
        // must agree.
        for r in rows {
            if let Some(name) = &r.account_name
                && let Err(known) = self.learn_account_name(name, r.account_id)
            {
                return Err(ImportFromRefused::NameConflict {
                    name: name.clone(),
                    exported: r.account_id,
                    recorded: known,
                });
            }
        }
        let mut keys = BTreeSet::new();
        let mut ids: BTreeMap<i64, TokenKey> = BTreeMap::new();
        for r in rows {
            let key = key_of(r);
            if !wanted(&key, &self.results.resolved_names) {
                return Err(ImportFromRefused::NotWanted(key));
            }
            if let Err(why) = self.check_import(&key, r.token_id) {
                return Err(ImportFromRefused::Token {
                    key,
                    token_id: r.token_id,
                    why,
                });
            }
            if !keys.insert(key.clone()) {
                return Err(ImportFromRefused::KeyTwice(key));
            }
            if let Some(first) = ids.insert(r.token_id, key.clone()) {
                return Err(ImportFromRefused::IdTwice {
                    token_id: r.token_id,
                    first,
                    second: key,
                });
            }
        }
        match replaced_but_current(rows, &self.results) {
            Some((replaced, row, current)) => Err(ImportFromRefused::ReplacedButCurrent {
                replaced,
                row,
                current,
            }),
            None => Ok(()),
        }
    }
}

/// A replaced token of an export that is a current token (issue 25, defect 14): another row's,
/// or one `results` records as current. Recording it as replaced would have `plan` tell the
/// admin to delete a token in use, so the whole export is refused. Returns the replaced id,
/// the row listing it as replaced, and the key whose current token it is.
fn replaced_but_current(
    rows: &[ExportedToken],
    results: &ResultsFile,
) -> Option<(i64, TokenKey, TokenKey)> {
    if crate::reintroduced::on(crate::reintroduced::Bug::ImportReplacedCurrent) {
        return None;
    }
    rows.iter().find_map(|r| {
        r.superseded.iter().find_map(|old| {
            let current = rows
                .iter()
                .find(|other| other.token_id == old.token_id)
                .map(key_of)
                .or_else(|| results.find_token_id(old.token_id))?;
            Some((old.token_id, key_of(r), current))
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secret::Secret;
    use crate::state::export::ExportedReplaced;
    use crate::state::journal::{HeldSecret, Outcome};
    use crate::state::{TokenSource, TokenStatus};

    const AT: &str = "2026-11-23T20:00:00.000Z";
    const THEN: &str = "2026-01-02T03:04:05.000Z";

    fn key(account_id: u32, n: &str) -> TokenKey {
        TokenKey {
            account_id,
            token_name: n.into(),
        }
    }

    /// A ledger holding 7/a as token 10, with its secret.
    fn loaded() -> Ledger {
        let mut l = Ledger::new(ResultsFile::new_at(None, AT.into()), SecretsFile::default());
        let created = Outcome::Created {
            token_id: 10,
            secret: HeldSecret::plain(Secret::new("sek-a")),
            created_at: AT.into(),
        };
        l.apply(&key(7, "a"), created, AT, &mut Vec::new());
        l
    }

    fn row(account_id: u32, n: &str, token_id: i64) -> ExportedToken {
        ExportedToken {
            account_id,
            account_name: None,
            token_name: n.into(),
            token_id,
            token: Secret::new(format!("sek-{token_id}")),
            superseded: Vec::new(),
            kind: None,
        }
    }

    fn old(token_id: i64, replaced_by: Option<i64>) -> ExportedReplaced {
        ExportedReplaced {
            token_id,
            replaced_by,
            created_at: None,
            status: None,
            checked_at: None,
            token: Some(Secret::new(format!("old-{token_id}"))),
            note: None,
        }
    }

    fn all(_: &TokenKey, _: &BTreeMap<String, u32>) -> bool {
        true
    }

    /// What a refusal must leave as it was.
    fn snapshot(l: &Ledger) -> (ResultsFile, SecretsFile, usize) {
        (l.results.clone(), l.secrets.clone(), l.token_count())
    }

    fn refused(rows: Vec<ExportedToken>) -> ImportFromRefused {
        let mut l = loaded();
        let before = snapshot(&l);
        let e = l.import_from(rows, AT, all).unwrap_err();
        assert_eq!(snapshot(&l), before, "a refusal changed the ledger");
        e
    }

    #[test]
    fn every_row_is_recorded_as_imported_with_its_secret() {
        let mut l = loaded();
        let done = l
            .import_from(vec![row(7, "b", 11), row(8, "c", 12)], AT, all)
            .unwrap();
        assert_eq!(done.recorded, vec![key(7, "b"), key(8, "c")]);
        assert!(done.replaced.is_empty());
        for (k, id) in [(key(7, "b"), 11), (key(8, "c"), 12)] {
            let r = l.results().get(&k).unwrap();
            assert_eq!(
                (r.token_id, r.created_at.as_str(), r.source),
                (id, AT, Some(TokenSource::Imported))
            );
            let s = &done.secrets.accounts[&k.account_id][&k.token_name];
            assert_eq!(
                (s.token_id, s.token.expose()),
                (id, format!("sek-{id}").as_str())
            );
        }
        assert_eq!(l.token_count(), 3);
        // The secrets are handed back, not kept: the caller seals or keeps them.
        assert!(!l.secrets().accounts.contains_key(&8));
    }

    #[test]
    fn a_row_recorded_already_is_not_recorded_again_but_its_secret_is_handed_back() {
        let mut l = loaded();
        let done = l.import_from(vec![row(7, "a", 10)], AT, all).unwrap();
        assert!(done.recorded.is_empty());
        assert_eq!(l.results().get(&key(7, "a")).unwrap().source, None);
        assert_eq!(done.secrets.accounts[&7]["a"].token.expose(), "sek-10");
    }

    #[test]
    fn shipping_tokens_are_left_out() {
        let mut l = loaded();
        let mut shipping = row(9, "", 0);
        shipping.kind = Some("shipping_token".into());
        let mut api = row(7, "b", 11);
        api.kind = Some("api_token".into());
        let done = l.import_from(vec![shipping, api], AT, all).unwrap();
        assert_eq!(done.recorded, vec![key(7, "b")]);
        assert!(!done.secrets.accounts.contains_key(&9));
    }

    #[test]
    fn replaced_tokens_are_listed_once_with_what_the_export_says_and_their_secrets_kept_aside() {
        let mut l = loaded();
        let mut r = row(7, "b", 11);
        let mut full = old(5, Some(11));
        full.created_at = Some(THEN.into());
        full.status = Some(TokenStatus::Revoked);
        full.checked_at = Some(THEN.into());
        full.note = Some("rotated".into());
        // Replaced by nobody the results file could name: its secret is kept, no record.
        let unlinked = old(4, None);
        r.superseded = vec![full, unlinked, old(6, Some(11))];
        let done = l.import_from(vec![r], AT, all).unwrap();
        assert_eq!(done.replaced, vec![5, 6]);
        let listed: Vec<_> = l.results().superseded.clone();
        assert_eq!(
            listed,
            vec![
                SupersededToken {
                    account_id: 7,
                    token_name: "b".into(),
                    token_id: 5,
                    created_at: THEN.into(),
                    replaced_by: 11,
                    status: Some(TokenStatus::Revoked),
                    checked_at: Some(THEN.into()),
                },
                SupersededToken {
                    account_id: 7,
                    token_name: "b".into(),
                    token_id: 6,
                    created_at: AT.into(),
                    replaced_by: 11,
                    status: None,
                    checked_at: None,
                },
            ]
        );
        let kept: Vec<_> = done
            .secrets
            .superseded
            .iter()
            .map(|s| (s.token_id, s.token.expose(), s.note.as_str()))
            .collect();
        assert_eq!(
            kept,
            vec![
                (5, "old-5", "rotated"),
                (4, "old-4", "imported as replaced"),
                (6, "old-6", "imported as replaced"),
            ]
        );
        // Never current: the row's own token is.
        assert_eq!(done.secrets.accounts[&7]["b"].token_id, 11);
        // The same export again lists nothing twice.
        let mut again = row(7, "b", 11);
        again.superseded = vec![old(5, Some(11))];
        let done = l.import_from(vec![again], AT, all).unwrap();
        assert!(done.replaced.is_empty() && done.recorded.is_empty());
        assert_eq!(l.results().superseded.len(), 2);
    }

    #[test]
    fn account_names_are_learned_and_the_manifest_check_sees_them() {
        let mut l = loaded();
        let mut r = row(8, "c", 12);
        r.account_name = Some("acme".into());
        let mut seen = Vec::new();
        l.import_from(vec![r], AT, |k, names| {
            seen.push((k.clone(), names.get("acme").copied()));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(key(8, "c"), Some(8))]);
        assert_eq!(l.results().resolved_names.get("acme"), Some(&8));
    }

    #[test]
    fn a_name_known_as_another_account_is_refused() {
        let mut l = loaded();
        l.results.resolved_names.insert("acme".into(), 7);
        let before = snapshot(&l);
        let mut r = row(8, "c", 12);
        r.account_name = Some("acme".into());
        assert_eq!(
            l.import_from(vec![r], AT, all).unwrap_err(),
            ImportFromRefused::NameConflict {
                name: "acme".into(),
                exported: 8,
                recorded: 7
            }
        );
        assert_eq!(snapshot(&l), before);
    }

    #[test]
    fn two_rows_giving_a_name_two_ids_are_refused_and_no_name_is_learned() {
        let (mut a, mut b) = (row(8, "c", 12), row(9, "d", 13));
        a.account_name = Some("acme".into());
        b.account_name = Some("acme".into());
        assert_eq!(
            refused(vec![a, b]),
            ImportFromRefused::NameConflict {
                name: "acme".into(),
                exported: 9,
                recorded: 8
            }
        );
    }

    #[test]
    fn a_token_the_caller_does_not_ask_for_is_refused_after_names_are_forgotten() {
        let mut l = loaded();
        let before = snapshot(&l);
        let mut a = row(8, "c", 12);
        a.account_name = Some("acme".into());
        let e = l
            .import_from(vec![a, row(7, "x", 13)], AT, |k, _| k.token_name != "x")
            .unwrap_err();
        assert_eq!(e, ImportFromRefused::NotWanted(key(7, "x")));
        assert_eq!(snapshot(&l), before);
    }

    #[test]
    fn a_token_the_ledger_cannot_record_is_refused_with_why() {
        let token = |key, token_id, why| ImportFromRefused::Token { key, token_id, why };
        assert_eq!(
            refused(vec![row(7, "b", 11), row(7, "c", 0)]),
            token(key(7, "c"), 0, ImportRefused::NotPositive)
        );
        assert_eq!(
            refused(vec![row(7, "a", 12)]),
            token(key(7, "a"), 12, ImportRefused::KeyHasOtherId(10))
        );
        assert_eq!(
            refused(vec![row(7, "b", 10)]),
            token(key(7, "b"), 10, ImportRefused::IdHasOtherKey(key(7, "a")))
        );
    }

    #[test]
    fn a_key_or_an_id_twice_is_refused() {
        assert_eq!(
            refused(vec![row(7, "b", 11), row(7, "b", 11)]),
            ImportFromRefused::KeyTwice(key(7, "b"))
        );
        assert_eq!(
            refused(vec![row(7, "b", 11), row(7, "b", 12)]),
            ImportFromRefused::KeyTwice(key(7, "b"))
        );
        assert_eq!(
            refused(vec![row(7, "b", 11), row(7, "c", 11)]),
            ImportFromRefused::IdTwice {
                token_id: 11,
                first: key(7, "b"),
                second: key(7, "c"),
            }
        );
    }

    #[test]
    fn a_replaced_token_that_is_current_is_refused() {
        // Another row's current token.
        let mut b = row(7, "c", 12);
        b.superseded = vec![old(11, Some(12))];
        assert_eq!(
            refused(vec![row(7, "b", 11), b]),
            ImportFromRefused::ReplacedButCurrent {
                replaced: 11,
                row: key(7, "c"),
                current: key(7, "b")
            }
        );
        // The results file's current token.
        let mut b = row(7, "c", 12);
        b.superseded = vec![old(10, Some(12))];
        assert_eq!(
            refused(vec![b]),
            ImportFromRefused::ReplacedButCurrent {
                replaced: 10,
                row: key(7, "c"),
                current: key(7, "a")
            }
        );
    }
}
