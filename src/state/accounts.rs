//! Sub accounts in the state: how an account create ended, as the journal holds it, and what
//! that makes of the results file (`accounts_created`, `accounts_pending`, `resolved_names`)
//! and of the secrets (a created account's shipping token). The recorder and the journal's
//! replay both apply account records through [`Store::apply_account`], so a crashed run's
//! journal leaves the files as the run would have.

use serde::{Deserialize, Serialize};

use super::ShippingSecret;
use super::{HeldSecret, SecretsFile, Store};

/// How an account create (or the lookup after it) ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AccountOutcome {
    /// The create was answered with the new account's id.
    Created {
        /// The id.
        account_id: u32,
        /// When (RFC 3339).
        created_at: String,
    },
    /// After an ambiguous create, exactly one new account with the name showed: it is the one.
    Adopted {
        /// The id.
        account_id: u32,
        /// When it was found (RFC 3339).
        created_at: String,
    },
    /// The create may have made the account (timeout, 5xx, dropped connection).
    Ambiguous {
        /// What happened.
        detail: String,
    },
    /// A lookup after an ambiguous create found no account with the name in its time.
    NotFound {
        /// What happened.
        detail: String,
    },
    /// A lookup found several new accounts with the name: a person must keep one.
    Duplicates {
        /// Their ids.
        account_ids: Vec<u32>,
        /// The message.
        detail: String,
    },
    /// Definitely not created (refused, or never reached the server).
    NotCreated {
        /// The HTTP status, if an answer came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        /// What happened.
        detail: String,
    },
    /// The account's log shipping token, read after the create.
    Shipping {
        /// The account.
        account_id: u32,
        /// The secret, in plaintext or sealed.
        #[serde(flatten)]
        secret: HeldSecret,
    },
}

impl AccountOutcome {
    /// The account id this outcome settles the create with.
    pub fn account_id(&self) -> Option<u32> {
        match self {
            AccountOutcome::Created { account_id, .. }
            | AccountOutcome::Adopted { account_id, .. } => Some(*account_id),
            _ => None,
        }
    }
}

/// How an item's attempt (or what followed it) ended, with the item it settles: the key and
/// the outcome of one kind go together, so that neither can be recorded under the other.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// A token's create.
    Token(crate::key::TokenKey, super::Outcome),
    /// A sub account's create, the lookup after it, or (intent 0) its shipping token.
    Account(String, AccountOutcome),
}

impl Settled {
    /// The item it settles.
    pub fn key(&self) -> crate::key::CreateKey {
        match self {
            Settled::Token(k, _) => crate::key::CreateKey::Token(k.clone()),
            Settled::Account(name, _) => crate::key::CreateKey::Account(name.clone()),
        }
    }
}

/// An account record of the journal, as the replay reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountRecord {
    /// A create about to be sent.
    Intent {
        /// Its sequence number.
        seq: u64,
        /// The account name.
        name: String,
        /// The ids the name had before.
        known: Vec<u32>,
        /// The run that sent it, when the record says.
        run_id: Option<String>,
        /// When.
        at: String,
    },
    /// How it ended.
    Outcome {
        /// The intent's sequence number.
        seq: u64,
        /// The account name.
        name: String,
        /// What happened.
        outcome: AccountOutcome,
        /// When.
        at: String,
    },
}

/// A create whose outcome is not known: looked up before anything else is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAccount {
    /// The intent's sequence number (0 when it came from the results file).
    pub seq: u64,
    /// The account name.
    pub name: String,
    /// The ids that carried the name before the send.
    pub known: Vec<u32>,
}

impl<F: crate::fs::Fs> Store<F> {
    /// The creates a stopped run left without an outcome, to look up first.
    pub fn pending_accounts(&self) -> Vec<PendingAccount> {
        self.results()
            .accounts_pending
            .iter()
            .map(|(name, p)| PendingAccount {
                seq: 0,
                name: name.clone(),
                known: p.known.clone(),
            })
            .collect()
    }

    /// The accounts this tool created whose shipping token is not kept yet (a run stopped
    /// before it read it): name and id.
    pub fn accounts_missing_shipping(&self) -> Vec<(String, u32)> {
        self.results()
            .accounts_created
            .iter()
            .filter(|(_, c)| !c.shipping_token)
            .map(|(n, c)| (n.clone(), c.account_id))
            .collect()
    }

    /// The outcome as the journal holds it: with recipients set, a shipping token is sealed
    /// (as a secrets document holding it) before it reaches the disk.
    pub(super) fn journaled_account(
        &self,
        name: &str,
        outcome: &AccountOutcome,
    ) -> std::io::Result<AccountOutcome> {
        let (
            Some(sealing),
            AccountOutcome::Shipping {
                account_id,
                secret: HeldSecret {
                    token: Some(token), ..
                },
            },
        ) = (self.sealing(), outcome)
        else {
            return Ok(outcome.clone());
        };
        let mut doc = SecretsFile::default();
        doc.shipping.insert(
            *account_id,
            ShippingSecret {
                account_name: name.to_owned(),
                token: token.clone(),
            },
        );
        let armored = sealing
            .recipients
            .seal_secrets(&doc)
            .map_err(std::io::Error::other)?;
        Ok(AccountOutcome::Shipping {
            account_id: *account_id,
            secret: HeldSecret::sealed(String::from_utf8_lossy(&armored).into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secret::Secret;
    use crate::state::StatePaths;

    fn outcome(seq: u64, name: &str, outcome: AccountOutcome) -> AccountRecord {
        AccountRecord::Outcome {
            seq,
            name: name.into(),
            outcome,
            at: "t".into(),
        }
    }

    #[test]
    fn intents_stay_pending_until_an_outcome_settles_them_and_created_ones_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let mut store = Store::read(paths, None).unwrap();
        for (seq, name) in [(1, "a"), (2, "b"), (3, "c")] {
            store.apply_account(
                AccountRecord::Intent {
                    seq,
                    name: name.into(),
                    known: vec![],
                    run_id: None,
                    at: "t".into(),
                },
                "run1",
            );
        }
        let created = |id| AccountOutcome::Created {
            account_id: id,
            created_at: "t".into(),
        };
        store.apply_account(outcome(1, "a", created(9)), "run1");
        store.apply_account(outcome(1, "a", created(9)), "run2");
        store.apply_account(
            outcome(2, "b", AccountOutcome::Ambiguous { detail: "x".into() }),
            "run1",
        );
        store.apply_account(
            outcome(
                3,
                "c",
                AccountOutcome::NotFound {
                    detail: "none".into(),
                },
            ),
            "run1",
        );
        store.apply_account(
            outcome(
                0,
                "a",
                AccountOutcome::Shipping {
                    account_id: 9,
                    secret: HeldSecret::plain(Secret::new("ship".to_owned())),
                },
            ),
            "run1",
        );
        // An interrupted create found by a later run is the sending run's.
        store.apply_account(
            AccountRecord::Intent {
                seq: 4,
                name: "d".into(),
                known: vec![],
                run_id: Some("crashed".into()),
                at: "t".into(),
            },
            "recovered",
        );
        store.apply_account(
            outcome(
                0,
                "d",
                AccountOutcome::Adopted {
                    account_id: 12,
                    created_at: "t".into(),
                },
            ),
            "later",
        );
        assert_eq!(store.results().accounts_created["d"].run_id, "crashed");
        let r = store.results();
        assert_eq!(r.accounts_created.len(), 2);
        assert_eq!(r.accounts_created["a"].run_id, "run1");
        assert_eq!(r.resolved_names["a"], 9);
        let pending: Vec<String> = store
            .pending_accounts()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(pending, ["b"]);
        assert_eq!(store.secrets().shipping[&9].token.expose(), "ship");
        // "a"'s shipping token is kept, "d"'s not yet.
        assert_eq!(store.accounts_missing_shipping(), [("d".to_owned(), 12)]);
    }

    #[test]
    fn only_a_created_or_adopted_account_settles_the_create_with_its_id() {
        let at = || "t".to_owned();
        let detail = || "x".to_owned();
        let settled = [
            AccountOutcome::Created {
                account_id: 9,
                created_at: at(),
            },
            AccountOutcome::Adopted {
                account_id: 12,
                created_at: at(),
            },
        ];
        assert_eq!(settled.map(|o| o.account_id()), [Some(9), Some(12)]);
        let unsettled = [
            AccountOutcome::Ambiguous { detail: detail() },
            AccountOutcome::NotFound { detail: detail() },
            AccountOutcome::Duplicates {
                account_ids: vec![3, 4],
                detail: detail(),
            },
            AccountOutcome::NotCreated {
                http_status: Some(400),
                detail: detail(),
            },
            AccountOutcome::Shipping {
                account_id: 9,
                secret: HeldSecret::plain(Secret::new("ship".to_owned())),
            },
        ];
        for o in unsettled {
            assert_eq!(o.account_id(), None, "{o:?}");
        }
    }
}
