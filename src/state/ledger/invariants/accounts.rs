//! The rules of the sub accounts this tool created (`accounts_created`): each is complete (an
//! id, a name, when, the run), a name maps to one id and an id to one name, and no account is
//! marked as having its shipping token kept unless the secret is durable (in the secrets file,
//! or in a sealed file written and listed).

use std::collections::HashMap;

use super::{Violation, broken};
use crate::state::ledger::Ledger;

/// Every recorded account has an id, a name, a creation time (RFC 3339) and the run that
/// created it.
pub fn recorded_accounts_are_complete(ledger: &Ledger) -> Result<(), Violation> {
    const RULE: &str = "recorded_accounts_are_complete";
    for (name, c) in &ledger.results.accounts_created {
        let missing = if name.trim().is_empty() {
            Some("a name")
        } else if c.account_id == 0 {
            Some("an id")
        } else if time::OffsetDateTime::parse(
            &c.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .is_err()
        {
            Some("an RFC 3339 creation time")
        } else if c.run_id.trim().is_empty() {
            Some("the run that created it")
        } else {
            None
        };
        if let Some(what) = missing {
            return broken(
                RULE,
                format!(
                    "sub account `{name}` (id {}) is recorded without {what}",
                    c.account_id
                ),
            );
        }
    }
    Ok(())
}

/// A created account's name maps to one id (the same in `resolved_names`), and no id is
/// recorded for two names.
pub fn account_names_have_one_id(ledger: &Ledger) -> Result<(), Violation> {
    const RULE: &str = "account_names_have_one_id";
    let results = &ledger.results;
    let mut names: HashMap<u32, &str> = HashMap::new();
    for (name, c) in &results.accounts_created {
        if let Some(other) = names.insert(c.account_id, name) {
            return broken(
                RULE,
                format!(
                    "sub account id {} is recorded for both `{other}` and `{name}`",
                    c.account_id
                ),
            );
        }
        if let Some(resolved) = results.resolved_names.get(name)
            && *resolved != c.account_id
        {
            return broken(
                RULE,
                format!(
                    "sub account `{name}` is recorded as created with id {} and resolved to id {resolved}",
                    c.account_id
                ),
            );
        }
    }
    Ok(())
}

/// An account is marked as having its shipping token kept only once the secret is durable:
/// in the secrets file, or in a sealed file written and listed (never only in memory, held
/// for sealing). Accounts marked when the results file was last read or written are not held
/// to it (a secrets file lost since is reported by `verify` and `export`, not refused).
pub fn shipping_tokens_are_durable(ledger: &Ledger) -> Result<(), Violation> {
    for (name, c) in &ledger.results.accounts_created {
        let id = c.account_id;
        if !c.shipping_token
            || ledger.shipping_durable.contains(&id)
            || ledger.shipping_sealed.contains(&id)
            || ledger.secrets.shipping.contains_key(&id)
        {
            continue;
        }
        return broken(
            "shipping_tokens_are_durable",
            format!(
                "sub account `{name}` (id {id}) would be recorded with its shipping token kept, \
                 but the secret is not durable"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secret::Secret;
    use crate::state::accounts::{AccountOutcome, AccountRecord};
    use crate::state::ledger::results::CreatedAccount;
    use crate::state::{HeldSecret, ResultsFile, SecretsFile};

    const AT: &str = "2026-11-23T20:00:00.000Z";

    fn rule(r: Result<(), Violation>) -> &'static str {
        r.err().map_or("ok", |v| v.rule)
    }

    fn created(name: &str, id: u32) -> CreatedAccount {
        let _ = name;
        CreatedAccount {
            account_id: id,
            created_at: AT.into(),
            run_id: "r1".into(),
            shipping_token: false,
        }
    }

    fn ledger(accounts: &[(&str, CreatedAccount)]) -> Ledger {
        let mut results = ResultsFile::new_at(None, AT.into());
        for (name, c) in accounts {
            results.accounts_created.insert((*name).into(), c.clone());
        }
        Ledger::new(results, SecretsFile::default())
    }

    fn outcome(name: &str, outcome: AccountOutcome) -> AccountRecord {
        AccountRecord::Outcome {
            seq: 0,
            name: name.into(),
            outcome,
            at: AT.into(),
        }
    }

    fn shipping(id: u32) -> AccountOutcome {
        AccountOutcome::Shipping {
            account_id: id,
            secret: HeldSecret::plain(Secret::new("ship")),
        }
    }

    #[test]
    fn a_recorded_account_needs_an_id_a_time_and_its_run() {
        assert_eq!(
            rule(recorded_accounts_are_complete(&ledger(&[(
                "a",
                created("a", 5)
            )]))),
            "ok"
        );
        for broken in [
            CreatedAccount {
                account_id: 0,
                ..created("a", 5)
            },
            CreatedAccount {
                created_at: "yesterday".into(),
                ..created("a", 5)
            },
            CreatedAccount {
                run_id: String::new(),
                ..created("a", 5)
            },
        ] {
            assert_eq!(
                rule(recorded_accounts_are_complete(&ledger(&[("a", broken)]))),
                "recorded_accounts_are_complete"
            );
        }
    }

    #[test]
    fn a_name_has_one_id_and_an_id_one_name() {
        assert_eq!(
            rule(account_names_have_one_id(&ledger(&[
                ("a", created("a", 5)),
                ("b", created("b", 6))
            ]))),
            "ok"
        );
        assert_eq!(
            rule(account_names_have_one_id(&ledger(&[
                ("a", created("a", 5)),
                ("b", created("b", 5))
            ]))),
            "account_names_have_one_id"
        );
        let mut l = ledger(&[("a", created("a", 5))]);
        l.results.resolved_names.insert("a".into(), 9);
        assert_eq!(
            rule(account_names_have_one_id(&l)),
            "account_names_have_one_id"
        );
    }

    #[test]
    fn a_shipping_token_is_marked_kept_only_once_its_secret_is_durable() {
        // Plaintext: the secret goes to the secrets file with the mark.
        let mut l = ledger(&[]);
        let mut blobs = Vec::new();
        let create = AccountOutcome::Created {
            account_id: 5,
            created_at: AT.into(),
        };
        l.apply_account(outcome("a", create.clone()), "r1", &mut blobs);
        l.apply_account(outcome("a", shipping(5)), "r1", &mut blobs);
        assert_eq!(rule(shipping_tokens_are_durable(&l)), "ok");

        // Sealing: held in memory, not durable, until written as a sealed file.
        let mut l = ledger(&[]);
        l.hold_for_sealing();
        l.apply_account(outcome("a", create), "r1", &mut blobs);
        l.apply_account(outcome("a", shipping(5)), "r1", &mut blobs);
        assert_eq!(
            rule(shipping_tokens_are_durable(&l)),
            "shipping_tokens_are_durable"
        );
        assert!(l.take_run_secrets().is_some());
        assert_eq!(rule(shipping_tokens_are_durable(&l)), "ok");

        // A mark the results file held when read is not held to it.
        let mut marked = created("a", 5);
        marked.shipping_token = true;
        assert_eq!(
            rule(shipping_tokens_are_durable(&ledger(&[("a", marked)]))),
            "ok"
        );
    }
}
