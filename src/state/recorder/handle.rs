//! The recorder's two handles: the [`Recorder`] that starts and finishes it, and the
//! cloneable [`RecorderHandle`] the executor sends records through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

use super::task::Task;
use crate::fs::{Fs, RealFs};
use crate::key::{CreateKey, TokenKey};
use crate::state::accounts::Settled;
use crate::state::journal::JournalWriter;
use crate::state::{Applied, Failure, LearnedRate, Outcome, StateError, StateFile, Store};

pub(super) enum Msg {
    Intent {
        key: TokenKey,
        attempt: u32,
        ack: oneshot::Sender<Result<u64, StateError>>,
    },
    Outcome {
        seq: u64,
        key: TokenKey,
        outcome: Outcome,
        ack: oneshot::Sender<Result<Applied, StateError>>,
    },
    /// A sub-account record: an intent (answered with its seq) or an outcome.
    Account {
        record: AccountMsg,
        ack: oneshot::Sender<Result<u64, StateError>>,
    },
    Failure(Failure),
    ResolvedName(String, u32),
    LearnedRate(Option<LearnedRate>),
    Finish(oneshot::Sender<Result<(), StateError>>),
}

/// A sub-account record to journal and apply.
pub(super) enum AccountMsg {
    Intent {
        name: String,
        attempt: u32,
        known: Vec<u32>,
    },
    Outcome {
        seq: u64,
        name: String,
        outcome: crate::state::accounts::AccountOutcome,
    },
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

pub(super) type Sender = tokio::sync::mpsc::UnboundedSender<Msg>;
pub(super) type Receiver = tokio::sync::mpsc::UnboundedReceiver<Msg>;

/// A cheap, cloneable handle for sending records to the recorder.
#[derive(Clone, Debug)]
pub struct RecorderHandle {
    pub(super) tx: Sender,
    pub(super) ahead: Arc<Ahead>,
}

/// Whether the executor can send more requests soon (`RecorderHandle::sends_ahead`), and a
/// wake-up for the recorder when that stops: outcomes waiting for the next intents' fsync are
/// then fsync'd at once.
#[derive(Debug, Default)]
pub(super) struct Ahead {
    pub(super) more: AtomicBool,
    pub(super) stopped: tokio::sync::Notify,
}

impl RecorderHandle {
    /// Journals the intent to send attempt `attempt` of an item (a token, or a sub account:
    /// a create of this run, sent when no account had the name); returns its sequence number
    /// once it is durable. An error means the request must not be sent.
    pub async fn intent(&self, key: impl Into<CreateKey>, attempt: u32) -> Result<u64, StateError> {
        match key.into() {
            CreateKey::Token(key) => self.token_intent(&key, attempt).await,
            CreateKey::Account(name) => self.account_intent(&name, attempt, &[]).await,
        }
    }

    /// Journals and applies how an item's request (or what followed it) ended; returns once
    /// it is durable.
    pub async fn settle(&self, seq: u64, settled: Settled) -> Result<Applied, StateError> {
        match settled {
            Settled::Token(key, outcome) => self.outcome(seq, &key, outcome).await,
            Settled::Account(name, outcome) => {
                let recorded = outcome.account_id().is_some();
                self.account_outcome(seq, &name, outcome).await?;
                Ok(if recorded {
                    Applied::Recorded
                } else {
                    Applied::Noted
                })
            }
        }
    }

    /// Journals the intent to send a sub-account create (with the ids the name had before);
    /// returns its sequence number once durable.
    async fn account_intent(
        &self,
        name: &str,
        attempt: u32,
        known: &[u32],
    ) -> Result<u64, StateError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Account {
                record: AccountMsg::Intent {
                    name: name.to_owned(),
                    attempt,
                    known: known.to_vec(),
                },
                ack,
            })
            .map_err(|_| StateError::RecorderGone)?;
        rx.await.map_err(|_| StateError::RecorderGone)?
    }

    /// Journals and applies how a sub-account create (or its lookup) ended, or (`seq` 0) a
    /// new account's shipping token; returns once durable.
    async fn account_outcome(
        &self,
        seq: u64,
        name: &str,
        outcome: crate::state::accounts::AccountOutcome,
    ) -> Result<(), StateError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Account {
                record: AccountMsg::Outcome {
                    seq,
                    name: name.to_owned(),
                    outcome,
                },
                ack,
            })
            .map_err(|_| StateError::RecorderGone)?;
        rx.await.map_err(|_| StateError::RecorderGone)?.map(|_| ())
    }

    /// Journals the intent to send a token's create; returns once it is durable.
    async fn token_intent(&self, key: &TokenKey, attempt: u32) -> Result<u64, StateError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Intent {
                key: key.clone(),
                attempt,
                ack,
            })
            .map_err(|_| StateError::RecorderGone)?;
        rx.await.map_err(|_| StateError::RecorderGone)?
    }

    /// Journals and applies a token create's outcome; returns once it is durable (the token
    /// case of [`RecorderHandle::settle`]).
    pub async fn outcome(
        &self,
        seq: u64,
        key: &TokenKey,
        outcome: Outcome,
    ) -> Result<Applied, StateError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Outcome {
                seq,
                key: key.clone(),
                outcome,
                ack,
            })
            .map_err(|_| StateError::RecorderGone)?;
        rx.await.map_err(|_| StateError::RecorderGone)?
    }

    /// Records an item of this run that did not get a token (in the next save).
    pub fn failure(&self, failure: Failure) {
        let _ = self.tx.send(Msg::Failure(failure));
    }

    /// Says whether the executor has more requests to send and room to send them (not
    /// counting retries waiting for their backoff). While it has, an outcome's fsync may wait
    /// for the next intents' (see [`OUTCOME_LINGER`](super::OUTCOME_LINGER)); once it has not, every record is
    /// fsync'd at once, and outcomes already waiting are fsync'd now.
    pub fn sends_ahead(&self, more: bool) {
        if self.ahead.more.swap(more, Ordering::Relaxed) && !more {
            self.ahead.stopped.notify_one();
        }
    }

    /// Remembers an account name's id (for offline plans).
    pub fn resolved_name(&self, name: String, id: u32) {
        let _ = self.tx.send(Msg::ResolvedName(name, id));
    }

    /// Remembers the server's rate limit as this run found it (for the next run's start).
    pub fn learned_rate(&self, rate: Option<LearnedRate>) {
        let _ = self.tx.send(Msg::LearnedRate(rate));
    }
}

/// The recorder task: the single writer of the journal and the state files during a run.
///
/// It runs on the caller's runtime. Journal writes go to the page cache (microseconds) and an
/// fsync of a few tens of microseconds follows each batch holding an outcome, so doing them
/// inline costs less than handing every record to another thread and back.
#[derive(Debug)]
pub struct Recorder<F: Fs = RealFs> {
    handle: RecorderHandle,
    task: tokio::task::JoinHandle<(Store<F>, Result<(), StateError>)>,
}

impl<F: Fs> Recorder<F> {
    /// Starts recording into `store`: creates a fresh journal (0600) and the task.
    /// The failures of the previous run are cleared: this run's replace them.
    pub fn start(mut store: Store<F>) -> Result<Recorder<F>, StateError> {
        let mut journal = JournalWriter::create(
            store.fs().clone(),
            &store.paths().journal,
            store.paths().next_journal(),
        )
        .map_err(|source| StateError::Write {
            kind: StateFile::Journal,
            path: store.paths().journal.clone(),
            source,
        })?;
        // The journal is bound to the run's endpoint before its first request (invariant 3).
        journal
            .write(&super::task::begin_record(&store))
            .and_then(|()| journal.sync())
            .map_err(|source| StateError::Write {
                kind: StateFile::Journal,
                path: store.paths().journal.clone(),
                source,
            })?;
        store.ledger_mut().clear_failures();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = Task::new(store, journal);
        let ahead = task.ahead.clone();
        let task = tokio::spawn(task.run(rx));
        Ok(Recorder {
            handle: RecorderHandle { tx, ahead },
            task,
        })
    }

    /// A handle for the executor.
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Saves everything, removes the journal when the save succeeded, and returns the store
    /// with the outcome of the final save.
    pub async fn finish(self) -> (Option<Store<F>>, Result<(), StateError>) {
        let (ack, rx) = oneshot::channel();
        let sent = self.handle.tx.send(Msg::Finish(ack)).is_ok();
        drop(self.handle);
        if sent {
            let _ = rx.await;
        }
        match self.task.await {
            Ok((store, res)) => (Some(store), res),
            Err(_) => (None, Err(StateError::RecorderGone)),
        }
    }
}
