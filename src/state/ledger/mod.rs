//! The ledger: what the state records (the results, the secrets, and an index of the
//! recorded token ids) and the only code that changes it.
//!
//! Every change is a named operation: [`Ledger::apply`] (an outcome of a run), and those the
//! commands need ([`Ledger::import`], [`Ledger::import_from`], [`Ledger::forget`],
//! [`Ledger::clear_orphans`], [`Ledger::set_statuses`], ...). The rules every state must
//! keep are in [`invariants`], checked when a state is loaded and before every save.
//!
//! The two documents it holds are defined beside it, private, and re-exported here: the
//! results file ([`ResultsFile`]: token ids, failures, possible orphans, no secrets) and the
//! secrets file ([`SecretsFile`], 0600). Their fields are public for reading and for the
//! files' (de)serialization; outside `src/state` the state's own are only ever read
//! (`Store::results`, `Store::secrets`), and every change goes through a named operation here.

mod accounts;
mod import;
pub mod invariants;
mod results;
mod secrets;

use std::collections::{HashMap, HashSet};

pub use import::{ImportFromRefused, ImportedFrom};
pub use results::{
    AmbiguousCreates, CreatedAccount, Failure, LearnedRate, LimitKind, PendingCreate,
    PossibleOrphan, RESULTS_VERSION, ResultsFile, SealedFile, SupersededToken, TokenRecord,
    TokenSource, TokenStatus, results_schema_text,
};
pub use secrets::{SECRETS_VERSION, SecretRecord, SecretsFile, ShippingSecret, SupersededSecret};

use super::journal::{HeldSecret, Outcome};
use crate::key::TokenKey;

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new token was recorded.
    Recorded,
    /// The token was already recorded (a replay).
    AlreadyKnown,
    /// The API returned an id already recorded for this other token; the secret was kept
    /// aside and the item is a possible orphan.
    DuplicateId(TokenKey),
    /// Nothing to record (a failure), or noted as a possible orphan.
    Noted,
}

/// Why a token cannot be imported as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportRefused {
    /// Token ids are positive.
    NotPositive,
    /// The key is recorded with another id.
    KeyHasOtherId(i64),
    /// The id is recorded for another key.
    IdHasOtherKey(TokenKey),
}

/// The recorded state of one results file.
#[derive(Debug)]
pub struct Ledger {
    results: ResultsFile,
    secrets: SecretsFile,
    /// This run's secrets when it seals them: held here, never in `secrets`, until they are
    /// written as a sealed file.
    run_secrets: Option<SecretsFile>,
    /// Token id -> key of every current token, for spotting an id the API hands out twice.
    index: HashMap<i64, TokenKey>,
    /// The token ids the results file held when it was last read or written.
    durable: HashSet<i64>,
    /// Token ids whose secret is held sealed (recovered from a journal, written out as a
    /// sealed file before the next save).
    sealed_ids: HashSet<i64>,
    /// The sub accounts whose shipping token the results file marked kept when it was last
    /// read or written.
    shipping_durable: HashSet<u32>,
    /// The sub accounts whose shipping token is held sealed (in a sealed file written, or
    /// recovered from a journal and written out before the next save).
    shipping_sealed: HashSet<u32>,
}

impl Ledger {
    /// The ledger of a results file and a secrets file as read.
    pub(crate) fn new(results: ResultsFile, secrets: SecretsFile) -> Ledger {
        let mut index = HashMap::new();
        for (acc, m) in &results.accounts {
            for (name, r) in m {
                index.insert(
                    r.token_id,
                    TokenKey {
                        account_id: *acc,
                        token_name: name.clone(),
                    },
                );
            }
        }
        let durable = index.keys().copied().collect();
        let shipping_durable = shipping_marked(&results);
        Ledger {
            results,
            secrets,
            run_secrets: None,
            index,
            durable,
            sealed_ids: HashSet::new(),
            shipping_durable,
            shipping_sealed: HashSet::new(),
        }
    }

    /// The results (read only: changes go through the operations).
    pub fn results(&self) -> &ResultsFile {
        &self.results
    }

    /// The plaintext secrets (read only).
    pub fn secrets(&self) -> &SecretsFile {
        &self.secrets
    }

    /// The plaintext secrets, to change by hand (tests).
    #[cfg(test)]
    pub(crate) fn secrets_mut(&mut self) -> &mut SecretsFile {
        &mut self.secrets
    }

    /// This run's secrets, when it seals them.
    pub(crate) fn run_secrets(&self) -> Option<&SecretsFile> {
        self.run_secrets.as_ref()
    }

    /// The number of recorded tokens.
    pub fn token_count(&self) -> usize {
        self.index.len()
    }

    /// From now on, secrets received are held for sealing, never in the plaintext secrets.
    pub(crate) fn hold_for_sealing(&mut self) {
        self.run_secrets.get_or_insert_with(SecretsFile::default);
    }

    /// Takes this run's secrets held for sealing (once written as a sealed file); they count
    /// as durable from then on.
    pub(crate) fn take_run_secrets(&mut self) -> Option<SecretsFile> {
        let held = self.run_secrets.as_mut()?;
        if held.accounts.is_empty() && held.superseded.is_empty() && held.shipping.is_empty() {
            return None;
        }
        for m in held.accounts.values() {
            self.sealed_ids.extend(m.values().map(|r| r.token_id));
        }
        self.shipping_sealed.extend(held.shipping.keys().copied());
        Some(std::mem::take(held))
    }

    /// Where secrets received now go: this run's sealed document, or the secrets file.
    fn secret_sink(&mut self) -> &mut SecretsFile {
        match &mut self.run_secrets {
            Some(held) => held,
            None => &mut self.secrets,
        }
    }

    /// Serializes the results, dated `at`, for a save.
    pub(crate) fn results_bytes(&mut self, at: &str) -> Vec<u8> {
        self.results.to_bytes(at)
    }

    /// Lists a sealed file this tool wrote (`sealed_files`; invariant 4), once.
    pub(crate) fn list_sealed(&mut self, file: crate::state::SealedFile) {
        if !self
            .results
            .sealed_files
            .iter()
            .any(|f| f.file == file.file)
        {
            self.results.sealed_files.push(file);
        }
    }

    /// The secrets of these token ids are in a sealed file now written and listed.
    pub(crate) fn sealed_durable(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.sealed_ids.extend(ids);
    }

    /// The results file now holds every current token (a save succeeded).
    pub(crate) fn saved(&mut self) {
        self.durable = self.index.keys().copied().collect();
        self.shipping_durable = shipping_marked(&self.results);
    }

    /// Applies one outcome of a request (the domain's transition). A secret sealed in an
    /// earlier run's journal comes back as `sealed`: the caller writes it out as a sealed file
    /// before the next save.
    pub(crate) fn apply(
        &mut self,
        key: &TokenKey,
        outcome: Outcome,
        at: &str,
        sealed: &mut Vec<String>,
    ) -> Applied {
        match outcome {
            Outcome::Created {
                token_id,
                secret:
                    HeldSecret {
                        token,
                        sealed: blob,
                    },
                created_at,
            } => {
                let held_sealed = blob.is_some();
                if let Some(blob) = blob {
                    // Sealed in an earlier run's journal: kept as it is, written out as a
                    // sealed file by `open` (a duplicate id is sorted out by `export`, which
                    // prefers the id the results file records).
                    sealed.push(blob);
                }
                if let Some(other) = self.index.get(&token_id)
                    && other != key
                {
                    // The API gave an id that is already recorded for another token: keep
                    // the secret, but never let it overwrite or pose as another record.
                    let other = other.clone();
                    if let Some(token) = token {
                        self.secret_sink().quarantine(
                            key,
                            token_id,
                            token,
                            format!("the API returned id {token_id}, already recorded for {other}"),
                        );
                    }
                    self.results.note_orphan(
                            key,
                            &format!("the API returned token id {token_id}, which is already recorded for {other}"),
                            at,
                        );
                    return Applied::DuplicateId(other);
                }
                let fresh = self.results.get(key).map(|r| r.token_id) != Some(token_id);
                if let Some(token) = token {
                    self.secret_sink().insert(key, token_id, token);
                }
                if held_sealed {
                    self.sealed_ids.insert(token_id);
                }
                if fresh {
                    self.record(
                        key,
                        TokenRecord {
                            token_id,
                            created_at,
                            // No `source`: made by this tool (the default's None).
                            ..TokenRecord::default()
                        },
                    );
                    Applied::Recorded
                } else {
                    Applied::AlreadyKnown
                }
            }
            Outcome::Ambiguous { detail } => {
                self.results.note_orphan(key, &detail, at);
                Applied::Noted
            }
            Outcome::KeptAside {
                token_id,
                secret:
                    HeldSecret {
                        token,
                        sealed: blob,
                    },
                detail,
            } => {
                if let Some(token) = token {
                    self.secret_sink()
                        .quarantine(key, token_id, token, detail.clone());
                }
                if let Some(blob) = blob {
                    sealed.push(blob);
                }
                self.results.note_orphan(key, &detail, at);
                Applied::Noted
            }
            Outcome::NotCreated { .. } => Applied::Noted,
        }
    }

    /// Records `record` as `key`'s token, keeping the index in step (a token it replaces
    /// moves to `superseded`).
    fn record(&mut self, key: &TokenKey, record: TokenRecord) {
        if let Some(old) = self.results.get(key) {
            self.index.remove(&old.token_id);
        }
        self.index.insert(record.token_id, key.clone());
        self.results.insert(key, record);
    }

    /// Whether `key` may be recorded as `token_id` by an import: the id is positive, and
    /// neither the key nor the id is recorded otherwise.
    pub fn check_import(&self, key: &TokenKey, token_id: i64) -> Result<(), ImportRefused> {
        if token_id <= 0 {
            return Err(ImportRefused::NotPositive);
        }
        if let Some(existing) = self.results.get(key)
            && existing.token_id != token_id
        {
            return Err(ImportRefused::KeyHasOtherId(existing.token_id));
        }
        if let Some(other) = self.index.get(&token_id)
            && other != key
        {
            return Err(ImportRefused::IdHasOtherKey(other.clone()));
        }
        Ok(())
    }

    /// Records a token created outside the tool (`source: imported`), made at `at` (a record
    /// of the same token is replaced by this one). Returns whether the key was not recorded
    /// before.
    pub fn import(
        &mut self,
        key: &TokenKey,
        token_id: i64,
        at: &str,
    ) -> Result<bool, ImportRefused> {
        self.check_import(key, token_id)?;
        let new = self.results.get(key).is_none();
        self.record(
            key,
            TokenRecord {
                token_id,
                created_at: at.to_owned(),
                source: Some(TokenSource::Imported),
                ..TokenRecord::default()
            },
        );
        Ok(new)
    }

    /// Records a token that an imported one replaced (see [`Ledger::import_from`]). Returns
    /// whether it was new (an id already listed as replaced is not listed twice).
    fn supersede(&mut self, replaced: SupersededToken) -> bool {
        if self
            .results
            .superseded
            .iter()
            .any(|s| s.token_id == replaced.token_id)
        {
            return false;
        }
        self.results.superseded.push(replaced);
        true
    }

    /// Adds secrets the user gave (an import) to the plaintext secrets file.
    pub fn keep_secrets(&mut self, doc: SecretsFile) {
        self.secrets.merge(doc);
    }

    /// Learns an account name's id. Refused, with the id known, when the name is known as
    /// another account.
    fn learn_account_name(&mut self, name: &str, id: u32) -> Result<(), u32> {
        match self.results.resolved_names.get(name) {
            Some(known) if *known != id => Err(*known),
            Some(_) => Ok(()),
            None => {
                self.results.resolved_names.insert(name.to_owned(), id);
                Ok(())
            }
        }
    }

    /// Remembers an account name's id as a run resolved it; returns whether it changed.
    pub(crate) fn resolve_name(&mut self, name: String, id: u32) -> bool {
        self.results.resolved_names.insert(name, id) != Some(id)
    }

    /// Remembers the server's rate limit as a run found it; returns whether it changed.
    pub(crate) fn set_learned_rate(&mut self, rate: Option<LearnedRate>) -> bool {
        if self.results.learned_rate == rate {
            return false;
        }
        self.results.learned_rate = rate;
        true
    }

    /// Forgets the failures of an earlier run (a new run lists its own).
    pub(crate) fn clear_failures(&mut self) {
        self.results.failures.clear();
    }

    /// Records an item of this run that did not get a token.
    pub(crate) fn note_failure(&mut self, failure: Failure) {
        self.results.failures.push(failure);
    }

    /// Notes a request that may have created a token not recorded (see
    /// [`ResultsFile::note_orphan`]).
    pub(crate) fn note_orphan(&mut self, key: &TokenKey, detail: &str, at: &str) {
        self.results.note_orphan(key, detail, at);
    }

    /// Clears the possible orphans `which` chooses (the user checked them); returns them.
    pub fn clear_orphans(
        &mut self,
        mut which: impl FnMut(&PossibleOrphan) -> bool,
    ) -> Vec<PossibleOrphan> {
        let (cleared, kept) = std::mem::take(&mut self.results.possible_orphans)
            .into_iter()
            .partition(|o| which(o));
        self.results.possible_orphans = kept;
        cleared
    }

    /// Clears the ambiguous creates of the sub accounts `which` chooses by name (a person
    /// checked that no account of that name was made, or kept the one that was); returns
    /// their names.
    pub fn clear_account_orphans(&mut self, mut which: impl FnMut(&str) -> bool) -> Vec<String> {
        let names: Vec<String> = self
            .results
            .accounts_ambiguous
            .keys()
            .filter(|n| which(n))
            .cloned()
            .collect();
        for n in &names {
            self.results.accounts_ambiguous.remove(n);
        }
        names
    }

    /// Notes what `verify` saw of each token id in `seen` (see
    /// [`ResultsFile::set_statuses`]).
    pub fn set_statuses(&mut self, seen: &HashMap<i64, TokenStatus>, at: &str) -> usize {
        self.results.set_statuses(seen, at)
    }

    /// Removes `key`'s record, made at `at`: the tool forgets the token (it is not deleted
    /// from Logz.io, and a later apply creates the key again). Its plaintext secret, if any,
    /// moves to the secrets file's `forgotten` list, never deleted. Returns the record.
    pub fn forget(&mut self, key: &TokenKey, at: &str) -> Option<TokenRecord> {
        let record = self
            .results
            .accounts
            .get_mut(&key.account_id)?
            .remove(&key.token_name)?;
        if self
            .results
            .accounts
            .get(&key.account_id)
            .is_some_and(|m| m.is_empty())
        {
            self.results.accounts.remove(&key.account_id);
        }
        self.index.remove(&record.token_id);
        self.durable.remove(&record.token_id);
        self.secrets.forget(key, record.token_id, at);
        Some(record)
    }
}

#[cfg(test)]
mod tests;

/// The sub accounts a results file marks as having their shipping token kept.
fn shipping_marked(results: &ResultsFile) -> HashSet<u32> {
    results
        .accounts_created
        .values()
        .filter(|c| c.shipping_token)
        .map(|c| c.account_id)
        .collect()
}
