//! Sub accounts in the state: how an account create ended, as the journal holds it, and what
//! that makes of the results file (`accounts_created`, `resolved_names`) and of the intents a
//! crashed run left to look up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::HeldSecret;
use super::{CreatedAccount, ResultsFile};

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

    /// Whether the intent it answers still needs a lookup (its create may have made the
    /// account, and nothing since said whether it did).
    pub fn leaves_lookup(&self) -> bool {
        matches!(self, AccountOutcome::Ambiguous { .. })
    }
}

/// Records a created (or adopted) account in the results: `accounts_created` and the name's
/// id, so that no later run creates it again, even while the account list lags.
pub fn record_created(
    results: &mut ResultsFile,
    name: &str,
    outcome: &AccountOutcome,
    run_id: &str,
) {
    let (
        Some(account_id),
        AccountOutcome::Created { created_at, .. } | AccountOutcome::Adopted { created_at, .. },
    ) = (outcome.account_id(), outcome)
    else {
        return;
    };
    results
        .accounts_created
        .entry(name.to_owned())
        .or_insert_with(|| CreatedAccount {
            account_id,
            created_at: created_at.clone(),
            run_id: run_id.to_owned(),
        });
    results.resolved_names.insert(name.to_owned(), account_id);
}

/// The account intents of a journal that still need a lookup: those with no outcome, and those
/// whose last outcome was ambiguous. `records`: (seq, name, known ids) for each intent, and
/// (seq, outcome) for each outcome, in journal order.
pub fn pending_lookups(
    intents: &[(u64, String, Vec<u32>)],
    outcomes: &[(u64, AccountOutcome)],
) -> Vec<(u64, String, Vec<u32>)> {
    let mut last: BTreeMap<u64, &AccountOutcome> = BTreeMap::new();
    for (seq, outcome) in outcomes {
        if !matches!(outcome, AccountOutcome::Shipping { .. }) {
            last.insert(*seq, outcome);
        }
    }
    intents
        .iter()
        .filter(|(seq, _, _)| last.get(seq).is_none_or(|o| o.leaves_lookup()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_and_adopted_accounts_are_recorded_once_with_their_name() {
        let mut r = ResultsFile::new(None);
        let created = AccountOutcome::Created {
            account_id: 9,
            created_at: "t".into(),
        };
        record_created(&mut r, "a", &created, "run1");
        record_created(
            &mut r,
            "a",
            &AccountOutcome::Adopted {
                account_id: 9,
                created_at: "t2".into(),
            },
            "run2",
        );
        record_created(
            &mut r,
            "b",
            &AccountOutcome::Ambiguous { detail: "x".into() },
            "run1",
        );
        assert_eq!(r.accounts_created.len(), 1);
        assert_eq!(r.accounts_created["a"].run_id, "run1");
        assert_eq!(r.resolved_names["a"], 9);
    }

    #[test]
    fn intents_without_a_settled_outcome_are_looked_up() {
        let intents = vec![
            (1, "a".to_owned(), vec![]),
            (2, "b".to_owned(), vec![]),
            (3, "c".to_owned(), vec![4]),
            (4, "d".to_owned(), vec![]),
        ];
        let outcomes = vec![
            (
                1,
                AccountOutcome::Created {
                    account_id: 1,
                    created_at: "t".into(),
                },
            ),
            (2, AccountOutcome::Ambiguous { detail: "x".into() }),
            (4, AccountOutcome::Ambiguous { detail: "x".into() }),
            (
                4,
                AccountOutcome::NotFound {
                    detail: "none".into(),
                },
            ),
        ];
        let pending: Vec<String> = pending_lookups(&intents, &outcomes)
            .into_iter()
            .map(|(_, n, _)| n)
            .collect();
        assert_eq!(pending, ["b", "c"]);
    }
}
