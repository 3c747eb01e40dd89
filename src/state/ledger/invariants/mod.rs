//! The rules every recorded state keeps, in one place: checked when a state is loaded and
//! before every save, so that a new feature cannot break them silently.
//!
//! - [`check`] runs the ledger's rules ([`RULES`]: one function of the ledger each; adding one
//!   is adding a function to the list and a test): ids are unique, a superseded id is never a
//!   current one, and no token id is recorded unless its secret is durable beside it; the
//!   sub accounts this tool created ([`accounts`]) are complete, one id per name, and their
//!   shipping token is marked kept only once its secret is durable.
//! - [`promises`] holds the rules that need more than the ledger (the sealed files on disk, the
//!   endpoint, the paths): secrets durable in the secrets file or a listed sealed file, a
//!   sealed state never continued in plaintext without `--allow-plaintext`, one endpoint per
//!   state and journal, only listed sealed files whose SHA-256 matches are trusted, and the
//!   lock taken on the real results file. The store calls them on load and before each save.

use std::collections::HashMap;
use std::fmt;

use super::Ledger;
use crate::key::TokenKey;

pub mod accounts;
pub mod promises;

/// A rule a state breaks, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name.
    pub rule: &'static str,
    /// What breaks it, naming the tokens (never a secret).
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.rule)
    }
}

type Rule = fn(&Ledger) -> Result<(), Violation>;

/// Every rule, in the order they are checked.
pub const RULES: &[(&str, Rule)] = &[
    ("ids_are_unique", ids_are_unique),
    (
        "superseded_ids_are_not_current",
        superseded_ids_are_not_current,
    ),
    ("new_ids_have_durable_secrets", new_ids_have_durable_secrets),
    (
        "recorded_accounts_are_complete",
        accounts::recorded_accounts_are_complete,
    ),
    (
        "account_names_have_one_id",
        accounts::account_names_have_one_id,
    ),
    (
        "shipping_tokens_are_durable",
        accounts::shipping_tokens_are_durable,
    ),
];

/// Checks every rule; the first broken one is the error.
pub fn check(ledger: &Ledger) -> Result<(), Violation> {
    RULES.iter().try_for_each(|(_, rule)| rule(ledger))
}

fn broken(rule: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, detail })
}

/// No token id is recorded for two tokens: an id names one token.
pub fn ids_are_unique(ledger: &Ledger) -> Result<(), Violation> {
    let mut seen: HashMap<i64, TokenKey> = HashMap::new();
    for (acc, m) in &ledger.results.accounts {
        for (name, r) in m {
            let key = TokenKey {
                account_id: *acc,
                token_name: name.clone(),
            };
            if let Some(other) = seen.insert(r.token_id, key.clone()) {
                return broken(
                    "ids_are_unique",
                    format!(
                        "token id {} is recorded for both {other} and {key}",
                        r.token_id
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A replaced token's id is not also a current token's: `plan` would tell the user to
/// delete a token in use.
pub fn superseded_ids_are_not_current(ledger: &Ledger) -> Result<(), Violation> {
    for s in &ledger.results.superseded {
        if let Some(key) = ledger.index.get(&s.token_id) {
            return broken(
                "superseded_ids_are_not_current",
                format!(
                    "token id {} is listed as replaced ({}/{}) and as the current token of {key}",
                    s.token_id, s.account_id, s.token_name
                ),
            );
        }
    }
    Ok(())
}

/// No token id reaches the results file before its secret is kept with it: every token
/// recorded since the results file was last read or written, unless imported (the user may
/// not have its secret), has its secret in the secrets file, or in a sealed file already
/// written and listed (never only in memory, held for sealing: a run killed then would leave
/// the results file naming a token whose secret is lost). (Tokens recorded earlier are not held to it: a secrets
/// file lost since is reported by `verify` and `export`, not refused.)
pub fn new_ids_have_durable_secrets(ledger: &Ledger) -> Result<(), Violation> {
    for (acc, m) in &ledger.results.accounts {
        for (name, r) in m {
            if ledger.durable.contains(&r.token_id)
                || r.source.is_some()
                || ledger.sealed_ids.contains(&r.token_id)
            {
                continue;
            }
            let key = TokenKey {
                account_id: *acc,
                token_name: name.clone(),
            };
            let held = |doc: &crate::state::SecretsFile| {
                doc.get(&key).is_some_and(|s| s.token_id == r.token_id)
            };
            // Secrets held in memory for sealing are not durable: a sealing run writes them
            // into a listed sealed file before the save that names their tokens.
            if !held(&ledger.secrets) {
                return broken(
                    "new_ids_have_durable_secrets",
                    format!(
                        "token {} of {key} would be recorded without its secret",
                        r.token_id
                    ),
                );
            }
        }
    }
    Ok(())
}
