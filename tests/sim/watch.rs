//! The recorder port as the simulation sees it: the real recorder handle, with every
//! acknowledgement noted, so the checker knows what the tool promised was durable (an intent
//! before its send; a created token once its outcome returned) and can hold it to it after any
//! later crash.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use logzio_tokens::execution::{RecordOutcomes, Settled};
use logzio_tokens::key::{CreateKey, TokenKey};
use logzio_tokens::state::Applied;
use logzio_tokens::state::{Failure, Outcome, RecorderHandle, StateError};

/// What the tool acknowledged as durable, across every run of a scenario.
#[derive(Debug, Default)]
pub struct Acks {
    /// Intents acknowledged and not yet answered by an outcome, per key (a key may have
    /// several in flight only across runs).
    pub open_intents: BTreeMap<TokenKey, u32>,
    /// (endpoint, key, token id) of every created token whose outcome was acknowledged.
    pub durable: Vec<(usize, TokenKey, i64)>,
    /// Sends without an acknowledged intent (each a problem).
    pub unjournaled_sends: Vec<TokenKey>,
    /// Account creates' intents acknowledged and not yet sent, per name.
    pub open_account_intents: BTreeMap<String, u32>,
    /// (endpoint, name, account id) of every created account whose outcome was acknowledged.
    pub durable_accounts: Vec<(usize, String, u32)>,
    /// Account creates sent without an acknowledged intent (each a problem).
    pub unjournaled_account_sends: Vec<String>,
}

impl Acks {
    /// Notes a send of `key`; a send with no acknowledged intent is a problem.
    pub fn sent(&mut self, key: &TokenKey) {
        match self.open_intents.get_mut(key) {
            Some(n) if *n > 0 => *n -= 1,
            _ => self.unjournaled_sends.push(key.clone()),
        }
    }

    /// Notes a create of the account `name`; one with no acknowledged intent is a problem.
    pub fn sent_account(&mut self, name: &str) {
        match self.open_account_intents.get_mut(name) {
            Some(n) if *n > 0 => *n -= 1,
            _ => self.unjournaled_account_sends.push(name.to_owned()),
        }
    }

    /// A new run: intents of an earlier run are no longer waiting for a send.
    pub fn new_run(&mut self) {
        self.open_intents.clear();
        self.open_account_intents.clear();
    }
}

/// The real recorder handle, watched.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The handle.
    pub inner: RecorderHandle,
    /// Where acknowledgements are noted.
    pub acks: Arc<Mutex<Acks>>,
    /// The endpoint of this run.
    pub endpoint: usize,
}

impl RecordOutcomes for Watched {
    fn intent(
        &self,
        key: &CreateKey,
        attempt: u32,
    ) -> impl std::future::Future<Output = Result<u64, StateError>> + Send {
        let this = self.clone();
        let create = key.clone();
        async move {
            let r = RecordOutcomes::intent(&this.inner, &create, attempt).await;
            if let (Ok(_), Some(key)) = (&r, create.as_token().cloned()) {
                *this
                    .acks
                    .lock()
                    .unwrap()
                    .open_intents
                    .entry(key)
                    .or_default() += 1;
            }
            if let (Ok(_), CreateKey::Account(name)) = (&r, &create) {
                *this
                    .acks
                    .lock()
                    .unwrap()
                    .open_account_intents
                    .entry(name.clone())
                    .or_default() += 1;
            }
            r
        }
    }

    fn outcome(
        &self,
        seq: u64,
        settled: Settled,
    ) -> impl std::future::Future<Output = Result<Applied, StateError>> + Send {
        let this = self.clone();
        async move {
            let created = match &settled {
                Settled::Token(key, Outcome::Created { token_id, .. }) => {
                    Some((key.clone(), *token_id))
                }
                _ => None,
            };
            let account = match &settled {
                Settled::Account(name, o) => o.account_id().map(|id| (name.clone(), id)),
                Settled::Token(..) => None,
            };
            let r = RecordOutcomes::outcome(&this.inner, seq, settled).await;
            if let (Ok(_), Some((name, id))) = (&r, account) {
                this.acks
                    .lock()
                    .unwrap()
                    .durable_accounts
                    .push((this.endpoint, name, id));
            }
            if let (Ok(Applied::Recorded | Applied::AlreadyKnown), Some((key, id))) = (&r, created)
            {
                this.acks
                    .lock()
                    .unwrap()
                    .durable
                    .push((this.endpoint, key, id));
            }
            r
        }
    }

    fn failure(&self, failure: Failure) {
        self.inner.failure(failure);
    }

    fn sends_ahead(&self, more: bool) {
        self.inner.sends_ahead(more);
    }
}
