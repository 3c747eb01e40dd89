//! The recorded state of one manifest, and the recorder task that owns it during a run.
//!
//! [`Store::open`] takes the lock, reads the results and secrets files, replays any journal a
//! previous run left (recovering every secret it received), and writes the merged files. During
//! `apply`, a [`Recorder`] task becomes the single owner of the store and the journal: the
//! executor sends it intents and outcomes; it acknowledges an intent once it is written and an
//! outcome once it is fsync'd (many records share one fsync when they arrive together). Every few seconds it rewrites the
//! results and secrets files atomically and starts a fresh journal.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::atomic::{
    FileKind, check_secret_target, open_secret_append, parent_dir, remove_stale_temps, sync_dir,
    write_atomic,
};
use super::journal::{self, JournalRecord, Outcome};
use super::results::TokenRecord;
use super::{Failure, ResultsFile, SecretsFile, StateError, StateLock, StatePaths, TokenKey};

/// How often, at most, the results and secrets files are refreshed during a run.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long the files may go without a refresh while a run records outcomes.
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// A refresh rewrites every recorded token, so it waits for at least this fraction of that
/// number of new outcomes (or [`MAX_SAVE_INTERVAL`]): the cost of saves per created token
/// stays constant as the state grows, instead of growing with it. The journal holds
/// everything in between, so nothing waits on a save.
const SAVE_AFTER_GROWTH: usize = 4;

/// What a start-of-run replay of an earlier journal found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Tokens whose secrets were in the journal but not yet in the files.
    pub recovered_tokens: usize,
    /// Requests that were in flight when the earlier run stopped (now possible orphans).
    pub interrupted: usize,
    /// Whether the journal's last line was cut short (ignored).
    pub truncated_tail: bool,
}

/// The recorded state of a manifest, locked for this process.
#[derive(Debug)]
pub struct Store {
    /// Where the files are.
    pub paths: StatePaths,
    /// The results (no secrets).
    pub results: ResultsFile,
    /// The secrets.
    pub secrets: SecretsFile,
    /// What the replay of an earlier journal recovered.
    pub recovery: Recovery,
    lock: Option<StateLock>,
}

impl Store {
    /// Locks the state, reads it, replays any journal into it and, if the journal held anything,
    /// saves the merged files and removes the journal. `api_url` is checked against the one the
    /// results were made with.
    pub fn open(paths: StatePaths, api_url: Option<&str>) -> Result<Store, StateError> {
        let lock = StateLock::acquire(&paths.lock)?;
        // Refuse an unsafe secrets path now, before any request is sent. (A journal left by an
        // earlier run is only read, then replaced by a fresh 0600 one.)
        check_secret_target(&paths.secrets)?;
        // Temp files a killed save left behind (a secrets temp file is a full copy of the
        // secrets), and a journal replacement a killed checkpoint left behind.
        for target in [&paths.secrets, &paths.results] {
            remove_stale_temps(target).map_err(|source| StateError::Write {
                kind: "state",
                path: target.clone(),
                source,
            })?;
        }
        let mut next = paths.journal.as_os_str().to_owned();
        next.push(".next");
        let _ = std::fs::remove_file(std::path::PathBuf::from(next));
        let mut store = Store::read(paths, api_url)?;
        store.lock = Some(lock);
        if store.paths.journal.exists() {
            store.save()?;
            std::fs::remove_file(&store.paths.journal).map_err(|source| StateError::Write {
                kind: "journal",
                path: store.paths.journal.clone(),
                source,
            })?;
            let _ = sync_dir(parent_dir(&store.paths.journal));
        }
        Ok(store)
    }

    /// Reads the state and replays any journal in memory, without locking or writing (for
    /// `plan`, which must see what an interrupted run received).
    pub fn read(paths: StatePaths, api_url: Option<&str>) -> Result<Store, StateError> {
        let results = ResultsFile::load(&paths.results)?;
        if let (Some(r), Some(current)) = (&results, api_url)
            && let Some(recorded) = &r.api_url
            && recorded.trim_end_matches('/') != current.trim_end_matches('/')
        {
            return Err(StateError::OtherEndpoint {
                path: paths.results.clone(),
                recorded: recorded.clone(),
                current: current.to_owned(),
            });
        }
        let mut results = results.unwrap_or_else(|| ResultsFile::new(api_url.map(str::to_owned)));
        if results.api_url.is_none() {
            results.api_url = api_url.map(str::to_owned);
        }
        let secrets = SecretsFile::load(&paths.secrets)?.unwrap_or_default();
        let replayed = journal::replay(&paths.journal)?;
        let mut store = Store {
            paths,
            results,
            secrets,
            recovery: Recovery::default(),
            lock: None,
        };
        store.recovery.truncated_tail = replayed.truncated_tail;
        let mut index = store.token_index();
        for (key, outcome, at) in replayed.outcomes {
            if let Applied::Recorded = store.apply(&key, outcome, &at, &mut index) {
                store.recovery.recovered_tokens += 1;
            }
        }
        for (key, at) in replayed.interrupted {
            store.results.note_orphan(
                &key,
                "the run stopped while this request was in flight; a token may have been created",
                &at,
            );
            store.recovery.interrupted += 1;
        }
        Ok(store)
    }

    /// Writes the secrets file, then the results file, each atomically.
    pub fn save(&mut self) -> Result<(), StateError> {
        write_atomic(
            &self.paths.secrets,
            &self.secrets.to_bytes(),
            FileKind::Secret,
            "secrets",
        )?;
        let bytes = self.results.to_bytes();
        write_atomic(&self.paths.results, &bytes, FileKind::Public, "results")
    }

    /// Token id -> key, for spotting an id the API hands out twice.
    fn token_index(&self) -> HashMap<i64, TokenKey> {
        let mut index = HashMap::new();
        for (acc, m) in &self.results.accounts {
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
        index
    }

    /// Applies one outcome to the state.
    fn apply(
        &mut self,
        key: &TokenKey,
        outcome: Outcome,
        at: &str,
        index: &mut HashMap<i64, TokenKey>,
    ) -> Applied {
        match outcome {
            Outcome::Created {
                token_id,
                token,
                created_at,
            } => {
                if let Some(other) = index.get(&token_id)
                    && other != key
                {
                    // The API gave an id that is already recorded for another token: keep
                    // the secret, but never let it overwrite or pose as another record.
                    let other = other.clone();
                    self.secrets.quarantine(
                        key,
                        token_id,
                        token,
                        format!("the API returned id {token_id}, already recorded for {other}"),
                    );
                    self.results.note_orphan(
                            key,
                            &format!("the API returned token id {token_id}, which is already recorded for {other}"),
                            at,
                        );
                    return Applied::DuplicateId(other);
                }
                let fresh = self.results.get(key).map(|r| r.token_id) != Some(token_id);
                self.secrets.insert(key, token_id, token);
                if fresh {
                    index.insert(token_id, key.clone());
                    self.results.insert(
                        key,
                        TokenRecord {
                            token_id,
                            created_at,
                            source: None,
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
            Outcome::NotCreated { .. } => Applied::Noted,
        }
    }
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new token was recorded.
    Recorded,
    /// The same token was already recorded (a replay).
    AlreadyKnown,
    /// The API returned an id already recorded for another key: not recorded, secret kept aside.
    DuplicateId(TokenKey),
    /// A non-creating outcome was noted.
    Noted,
}

enum Msg {
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
    Failure(Failure),
    ResolvedName(String, u32),
    LearnedRate(Option<super::LearnedRate>),
    Finish(oneshot::Sender<Result<(), StateError>>),
}

type Sender = tokio::sync::mpsc::UnboundedSender<Msg>;
type Receiver = tokio::sync::mpsc::UnboundedReceiver<Msg>;

/// A cheap, cloneable handle for sending records to the recorder.
#[derive(Clone, Debug)]
pub struct RecorderHandle {
    tx: Sender,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl RecorderHandle {
    /// Journals the intent to send a request; returns once it is durable.
    pub async fn intent(&self, key: &TokenKey, attempt: u32) -> Result<u64, StateError> {
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

    /// Journals and applies an outcome; returns once it is durable.
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

    /// Remembers an account name's id (for offline plans).
    pub fn resolved_name(&self, name: String, id: u32) {
        let _ = self.tx.send(Msg::ResolvedName(name, id));
    }

    /// Remembers the server's rate limit as this run found it (for the next run's start).
    pub fn learned_rate(&self, rate: Option<super::LearnedRate>) {
        let _ = self.tx.send(Msg::LearnedRate(rate));
    }
}

/// The recorder task: the single writer of the journal and the state files during a run.
///
/// It runs on the caller's runtime. Journal writes go to the page cache (microseconds) and an
/// fsync of a few tens of microseconds follows each batch holding an outcome, so doing them
/// inline costs less than handing every record to another thread and back.
#[derive(Debug)]
pub struct Recorder {
    handle: RecorderHandle,
    task: tokio::task::JoinHandle<(Store, Result<(), StateError>)>,
}

impl Recorder {
    /// Starts recording into `store`: creates a fresh journal (0600) and the thread.
    /// The failures of the previous run are cleared: this run's replace them.
    pub fn start(mut store: Store) -> Result<Recorder, StateError> {
        let journal =
            open_secret_append(&store.paths.journal).map_err(|source| StateError::Write {
                kind: "journal",
                path: store.paths.journal.clone(),
                source,
            })?;
        let _ = sync_dir(parent_dir(&store.paths.journal));
        store.results.failures.clear();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, journal, rx));
        Ok(Recorder {
            handle: RecorderHandle { tx },
            task,
        })
    }

    /// A handle for the executor.
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Saves everything, removes the journal when the save succeeded, and returns the store
    /// with the outcome of the final save.
    pub async fn finish(self) -> (Option<Store>, Result<(), StateError>) {
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

async fn run(
    mut store: Store,
    mut journal: std::fs::File,
    mut rx: Receiver,
) -> (Store, Result<(), StateError>) {
    let mut index = store.token_index();
    let mut seq: u64 = 0;
    // Intents without an outcome yet, re-written into each fresh journal.
    let mut pending: HashMap<u64, JournalRecord> = HashMap::new();
    let mut broken: Option<String> = None;
    let mut dirty = false;
    let mut save_every = SAVE_INTERVAL;
    let mut next_save = Instant::now() + save_every;
    let mut last_save = Instant::now();
    let mut outcomes_since_save = 0usize;
    let mut batch: Vec<Msg> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut finish: Option<oneshot::Sender<Result<(), StateError>>> = None;
    let jerr = |path: &std::path::Path, source| StateError::Write {
        kind: "journal",
        path: path.to_path_buf(),
        source,
    };

    loop {
        let wait = next_save.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait.max(Duration::from_millis(1)), rx.recv()).await {
            Ok(Some(m)) => batch.push(m),
            Err(_) => {}
            Ok(None) => break,
        }
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }

        // 1. Journal every record of the batch with one write and one fsync.
        buf.clear();
        let now = super::now_rfc3339();
        let mut seqs = Vec::with_capacity(batch.len());
        for m in &batch {
            match m {
                // Once the state is broken no request may start: its intent is not journaled
                // (it would later pose as a possible orphan) and is refused below.
                Msg::Intent { .. } if broken.is_some() => seqs.push(0),
                Msg::Intent { key, attempt, .. } => {
                    seq += 1;
                    let rec = JournalRecord::Intent {
                        seq,
                        account_id: key.account_id,
                        token_name: key.token_name.clone(),
                        attempt: *attempt,
                        at: now.clone(),
                    };
                    buf.extend(rec.to_line());
                    pending.insert(seq, rec);
                    seqs.push(seq);
                }
                Msg::Outcome {
                    seq: s,
                    key,
                    outcome,
                    ..
                } => {
                    pending.remove(s);
                    buf.extend(
                        JournalRecord::Outcome {
                            seq: *s,
                            account_id: key.account_id,
                            token_name: key.token_name.clone(),
                            outcome: outcome.clone(),
                            at: now.clone(),
                        }
                        .to_line(),
                    );
                    seqs.push(*s);
                }
                _ => seqs.push(0),
            }
        }
        // Intents are written before their request is sent (so they survive the process being
        // killed: the kernel has them); outcomes are also fsync'd before they are acknowledged
        // (so a received secret survives even a power loss). The fsync of an outcome covers
        // every intent written before it.
        let needs_sync = batch.iter().any(|m| matches!(m, Msg::Outcome { .. }));
        let written = if buf.is_empty() {
            Ok(())
        } else {
            journal
                .write_all(&buf)
                .and_then(|()| {
                    if needs_sync {
                        journal.sync_data()
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| jerr(&store.paths.journal, e))
        };
        let journal_ok = written.is_ok();
        if let Err(e) = &written {
            broken.get_or_insert_with(|| e.to_string());
            // The intents of a failed write are refused: their requests are never sent.
            for (m, s) in batch.iter().zip(&seqs) {
                if matches!(m, Msg::Intent { .. }) {
                    pending.remove(s);
                }
            }
        }

        // 2. Apply and acknowledge.
        for (m, s) in batch.drain(..).zip(seqs) {
            match m {
                Msg::Intent { ack, .. } => {
                    let res = match &broken {
                        None => Ok(s),
                        Some(why) => Err(broken_state(&store.paths.journal, why)),
                    };
                    let _ = ack.send(res);
                }
                Msg::Outcome {
                    key, outcome, ack, ..
                } => {
                    // Applied in memory even if the journal write failed: the final save may
                    // still succeed, and the error tells the executor to stop.
                    let applied = store.apply(&key, outcome, &now, &mut index);
                    dirty = true;
                    outcomes_since_save += 1;
                    let res = if journal_ok {
                        Ok(applied)
                    } else {
                        Err(broken_state(
                            &store.paths.journal,
                            broken.as_deref().unwrap_or_default(),
                        ))
                    };
                    let _ = ack.send(res);
                }
                Msg::Failure(f) => {
                    store.results.failures.push(f);
                    dirty = true;
                }
                Msg::ResolvedName(name, id) => {
                    if store.results.resolved_names.insert(name, id) != Some(id) {
                        dirty = true;
                    }
                }
                Msg::LearnedRate(rate) => {
                    if store.results.learned_rate != rate {
                        store.results.learned_rate = rate;
                        dirty = true;
                    }
                }
                Msg::Finish(ack) => finish = Some(ack),
            }
        }

        if finish.is_some() {
            break;
        }

        // 3. Refresh the files every few seconds; then start a fresh journal holding only the
        // intents still in flight. Skipped once anything failed: the journal stays as it is.
        let grown = outcomes_since_save >= index.len() / SAVE_AFTER_GROWTH
            || last_save.elapsed() >= MAX_SAVE_INTERVAL;
        if dirty && broken.is_none() && Instant::now() >= next_save && grown {
            let started = Instant::now();
            match checkpoint(&mut store, &mut journal, &pending) {
                Ok(()) => {
                    dirty = false;
                    outcomes_since_save = 0;
                    last_save = Instant::now();
                }
                Err(e) => {
                    broken = Some(e.to_string());
                }
            }
            // Saving a large state takes a while; keep it to a few percent of the run.
            save_every = SAVE_INTERVAL.max(started.elapsed() * 30);
        }
        if Instant::now() >= next_save {
            next_save = Instant::now() + save_every;
        }
    }

    // Requests still in flight (abandoned by a second Ctrl-C or a drain timeout) are possible
    // orphans now; the journal is kept so a later replay notes them too (idempotently).
    for rec in pending.values() {
        if let JournalRecord::Intent {
            account_id,
            token_name,
            at,
            ..
        } = rec
        {
            store.results.note_orphan(
                &TokenKey {
                    account_id: *account_id,
                    token_name: token_name.clone(),
                },
                "the run stopped while this request was in flight; a token may have been created",
                at,
            );
        }
    }
    // Final save. The journal is removed only when the files hold everything it held.
    let res = store.save().and_then(|()| {
        if pending.is_empty() {
            drop(journal);
            std::fs::remove_file(&store.paths.journal)
                .map_err(|e| jerr(&store.paths.journal, e))?;
            let _ = sync_dir(parent_dir(&store.paths.journal));
        }
        Ok(())
    });
    let res = match (&broken, res) {
        (Some(why), Ok(())) => Err(broken_state(&store.paths.results, why)),
        (_, r) => r,
    };
    if let Some(ack) = finish {
        let _ = ack.send(Ok(()));
    }
    (store, res)
}

/// The error every later record gets once a write of the state failed (`why` says which).
fn broken_state(path: &std::path::Path, why: &str) -> StateError {
    StateError::Write {
        kind: "state",
        path: path.to_path_buf(),
        source: std::io::Error::other(why.to_owned()),
    }
}

/// Saves the files, then replaces the journal with one holding only the intents still in
/// flight. The replacement is atomic (a new 0600 file, fsync'd, renamed over the old one), so a
/// crash at any instant leaves either the old journal or the new one, never an empty one.
fn checkpoint(
    store: &mut Store,
    journal: &mut std::fs::File,
    pending: &HashMap<u64, JournalRecord>,
) -> Result<(), StateError> {
    store.save()?;
    let path = store.paths.journal.clone();
    let jerr = |source| StateError::Write {
        kind: "journal",
        path: path.clone(),
        source,
    };
    let mut keep: Vec<(&u64, &JournalRecord)> = pending.iter().collect();
    keep.sort_by_key(|(s, _)| **s);
    let mut buf = Vec::new();
    for (_, r) in keep {
        buf.extend(r.to_line());
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".next");
    let tmp = std::path::PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut next = open_secret_append(&tmp).map_err(jerr)?;
    next.write_all(&buf).map_err(jerr)?;
    next.sync_data().map_err(jerr)?;
    std::fs::rename(&tmp, &path).map_err(jerr)?;
    sync_dir(parent_dir(&path)).map_err(jerr)?;
    *journal = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secret::Secret;

    fn key(n: &str) -> TokenKey {
        TokenKey {
            account_id: 42,
            token_name: n.into(),
        }
    }

    #[tokio::test]
    async fn recorder_journals_saves_and_a_crash_loses_nothing_received() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let store = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        let rec = Recorder::start(store).unwrap();
        let h = rec.handle();
        let s1 = h.intent(&key("a"), 1).await.unwrap();
        let created = Outcome::Created {
            token_id: 10,
            token: Secret::new("sek-a"),
            created_at: "2021-05-24T12:11:51Z".into(),
        };
        assert_eq!(
            h.outcome(s1, &key("a"), created).await.unwrap(),
            Applied::Recorded
        );
        let _s2 = h.intent(&key("b"), 1).await.unwrap();
        // The journal now holds the secret and the dangling intent, 0600.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&paths.journal).unwrap().mode() & 0o777,
            0o600
        );
        // Simulate a crash: read the state as the next run would, from the journal alone.
        drop(h);
        let replayed = Store::read(paths.clone(), None).unwrap();
        assert_eq!(
            replayed.secrets.get(&key("a")).unwrap().token.expose(),
            "sek-a"
        );
        assert_eq!(replayed.recovery.interrupted, 1);
        assert_eq!(replayed.results.possible_orphans[0].token_name, "b");
        let (store, res) = rec.finish().await;
        res.unwrap();
        assert_eq!(store.unwrap().results.get(&key("a")).unwrap().token_id, 10);
        // An intent without outcome keeps the journal so the next run reports it.
        assert!(paths.journal.exists());
        let again = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        assert!(!paths.journal.exists());
        assert_eq!(again.results.possible_orphans.len(), 1);
        assert_eq!(again.results.possible_orphans[0].ambiguous_attempts, 1);
    }

    #[test]
    fn another_endpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let mut s = Store::open(paths.clone(), Some("https://api-eu.logz.io")).unwrap();
        s.save().unwrap();
        drop(s);
        let err = Store::open(paths, Some("https://api.logz.io")).unwrap_err();
        assert!(err.to_string().contains("api-eu"), "{err}");
    }
}
