//! The ledger's sub-account operation: what an account record of a run (or of a replayed
//! journal) changes in the results and the secrets.

use super::Ledger;
use super::results::{AmbiguousCreates, CreatedAccount, PendingCreate};
use super::secrets::ShippingSecret;
use crate::state::HeldSecret;
use crate::state::accounts::{AccountOutcome, AccountRecord};

impl Ledger {
    /// Applies an account record: an intent makes the name pending (until an outcome says
    /// what became of it); a create or adoption records the account (`accounts_created`, the
    /// name's id); a lookup that found none or several settles it; a shipping token goes with
    /// the other secrets. `run_id`: the run that created it, for the record.
    pub(crate) fn apply_account(
        &mut self,
        record: AccountRecord,
        run_id: &str,
        sealed_blobs: &mut Vec<String>,
    ) {
        match record {
            AccountRecord::Intent {
                name,
                known,
                run_id: sent_by,
                at,
                ..
            } => {
                // The run that sent it: the record's (a replayed journal's run), else this one.
                let run_id = Some(sent_by.unwrap_or_else(|| run_id.to_owned()));
                self.results.accounts_pending.insert(
                    name,
                    PendingCreate {
                        known,
                        since: at,
                        run_id,
                    },
                );
            }
            AccountRecord::Outcome {
                name, outcome, at, ..
            } => match outcome {
                AccountOutcome::Created {
                    account_id,
                    created_at,
                }
                | AccountOutcome::Adopted {
                    account_id,
                    created_at,
                } => {
                    // Created by the run that sent the create (a lookup after a crash may find
                    // it in a later run).
                    let sent_by = self
                        .results
                        .accounts_pending
                        .remove(&name)
                        .and_then(|p| p.run_id)
                        .unwrap_or_else(|| run_id.to_owned());
                    self.results
                        .accounts_created
                        .entry(name.clone())
                        .or_insert_with(|| CreatedAccount {
                            account_id,
                            created_at,
                            run_id: sent_by,
                            shipping_token: false,
                        });
                    // Found: its ambiguous creates made this one.
                    self.results.accounts_ambiguous.remove(&name);
                    self.results.resolved_names.insert(name, account_id);
                }
                AccountOutcome::Ambiguous { detail } => {
                    // Counted across runs, against the ambiguity budget.
                    let entry = self
                        .results
                        .accounts_ambiguous
                        .entry(name)
                        .or_insert_with(|| AmbiguousCreates {
                            ambiguous_attempts: 0,
                            detail: String::new(),
                            at: String::new(),
                        });
                    entry.ambiguous_attempts += 1;
                    entry.detail = detail;
                    entry.at = at;
                }
                AccountOutcome::NotFound { .. }
                | AccountOutcome::Duplicates { .. }
                | AccountOutcome::NotCreated { .. } => {
                    self.results.accounts_pending.remove(&name);
                }
                AccountOutcome::Shipping {
                    account_id,
                    secret: HeldSecret { token, sealed },
                } => {
                    if let Some(created) = self.results.accounts_created.get_mut(&name) {
                        created.shipping_token = true;
                    }
                    if let Some(token) = token {
                        self.secret_sink().shipping.insert(
                            account_id,
                            ShippingSecret {
                                account_name: name,
                                token,
                            },
                        );
                    }
                    if let Some(blob) = sealed {
                        // Written out as a sealed file before the next save.
                        self.shipping_sealed.insert(account_id);
                        sealed_blobs.push(blob);
                    }
                }
            },
        }
    }
}
