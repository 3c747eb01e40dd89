//! The recorder: during `apply`, the single writer of the journal and the state files.
//!
//! The executor sends it intents and outcomes through a [`RecorderHandle`]. It acknowledges
//! each once it is written and fsync'd (an intent survives a power loss or a filesystem turned
//! read-only, so a request sent is always known; a received secret too); records that arrive
//! together share one write and one fsync. An outcome is written at once (from then on it
//! survives the process being killed) and its fsync waits up to [`OUTCOME_LINGER`] to be
//! shared with the next send group's intents, which need one anyway. Every few seconds it
//! rewrites the results and secrets files atomically and starts a fresh journal holding only
//! the intents still in flight. Once any write fails, no new request may start, and the
//! journal is kept as it is for the next run to replay.
//!
//! An intent is acknowledged only once the journal holds the disk room for it and for the
//! outcome of every request in flight (`super::room`): when the disk fills, no new request is
//! sent, and the answers on their way still land in the journal.
//!
//! With recipients set, a received secret is sealed inside its journal record, the state
//! refreshes write the results file only, and the journal stays until the run's one sealed
//! file is written at the end: no plaintext secret reaches the disk.

use crate::state::StateFile;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::fs::atomic::{open_secret_new, parent_dir, sync_dir};
use crate::state::journal::room::Room;
use crate::state::journal::{HeldSecret, JournalRecord, Outcome};
use crate::state::store::{Applied, Store};
use crate::state::{Failure, SecretsFile, StateError, TokenKey};

/// How often, at most, the results and secrets files are refreshed during a run.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(3);
/// How far back the journal's last records are suspect when a write fails (see `Task::recent`).
const SUSPECT_WINDOW: Duration = Duration::from_millis(200);
/// How long the files may go without a refresh while a run records outcomes.
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// A refresh rewrites every recorded token, so it waits for at least this fraction of that
/// number of new outcomes (or [`MAX_SAVE_INTERVAL`]): the cost of saves per created token
/// stays constant as the state grows, instead of growing with it. The journal holds
/// everything in between, so nothing waits on a save.
const SAVE_AFTER_GROWTH: usize = 4;
/// Most messages taken into one batch (one write, at most one fsync).
const MAX_BATCH: usize = 4096;
/// How long, at most, a written outcome waits for its fsync while more requests are queued and
/// a concurrency slot is free to send them (with every slot taken, no intent comes until an
/// outcome is acknowledged: `RecorderHandle::sends_ahead`), so
/// that the next send group's intents (whose fsync cannot wait: it comes before their sends)
/// carry it. At the benchmark's 100 creates/s a group of four leaves every 40 ms, and one of
/// eight every 80 ms once the server has served a hundred sends in a row (the executor's
/// pacer decides), and the answers come back 30 ms after their group. Sharing
/// takes the fsyncs per created token from about 0.6 to 0.25 in groups of four, and to 0.135
/// once in groups of eight (269 for 2,000 tokens). The outcome is in the file from
/// the start, so a killed process loses nothing; what the wait adds is that a power loss in
/// those milliseconds loses the record, and its intent, fsync'd before the send, then names
/// the token as a possible orphan (a filesystem turned read-only fails the fsync instead, and
/// the run names the token). The executor sees the outcome only once it is fsync'd, as before.
pub const OUTCOME_LINGER: Duration = Duration::from_millis(50);
/// The longest secret the journal room held for an outcome allows for without spilling past
/// it (the API's secrets are 36-character UUIDs).
const SECRET_ROOM: usize = 256;

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
    LearnedRate(Option<crate::state::LearnedRate>),
    Finish(oneshot::Sender<Result<(), StateError>>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

type Sender = tokio::sync::mpsc::UnboundedSender<Msg>;
type Receiver = tokio::sync::mpsc::UnboundedReceiver<Msg>;

/// A cheap, cloneable handle for sending records to the recorder.
#[derive(Clone, Debug)]
pub struct RecorderHandle {
    tx: Sender,
    ahead: Arc<Ahead>,
}

/// Whether the executor can send more requests soon (`RecorderHandle::sends_ahead`), and a
/// wake-up for the recorder when that stops: outcomes waiting for the next intents' fsync are
/// then fsync'd at once.
#[derive(Debug, Default)]
struct Ahead {
    more: AtomicBool,
    stopped: tokio::sync::Notify,
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

    /// Says whether the executor has more requests to send and room to send them (not
    /// counting retries waiting for their backoff). While it has, an outcome's fsync may wait
    /// for the next intents' (see [`OUTCOME_LINGER`]); once it has not, every record is
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
    pub fn learned_rate(&self, rate: Option<crate::state::LearnedRate>) {
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
    /// Starts recording into `store`: creates a fresh journal (0600) and the task.
    /// The failures of the previous run are cleared: this run's replace them.
    pub fn start(mut store: Store) -> Result<Recorder, StateError> {
        let journal =
            open_secret_new(&store.paths.journal).map_err(|source| StateError::Write {
                kind: StateFile::Journal,
                path: store.paths.journal.clone(),
                source,
            })?;
        let _ = sync_dir(parent_dir(&store.paths.journal));
        store.results.failures.clear();
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

/// When the next refresh of the state files is due.
#[derive(Debug)]
struct SaveClock {
    every: Duration,
    next: Instant,
    last: Instant,
    outcomes_since: usize,
}

impl SaveClock {
    fn new() -> Self {
        let now = Instant::now();
        SaveClock {
            every: SAVE_INTERVAL,
            next: now + SAVE_INTERVAL,
            last: now,
            outcomes_since: 0,
        }
    }

    /// Whether a refresh is due, for a state of `tokens` recorded tokens.
    fn due(&self, tokens: usize) -> bool {
        let grown = self.outcomes_since >= tokens / SAVE_AFTER_GROWTH
            || self.last.elapsed() >= MAX_SAVE_INTERVAL;
        Instant::now() >= self.next && grown
    }

    fn saved(&mut self, took: Duration) {
        self.outcomes_since = 0;
        self.last = Instant::now();
        // Saving a large state takes a while; keep it to a few percent of the run.
        self.every = SAVE_INTERVAL.max(took * 30);
    }

    fn tick(&mut self) {
        if Instant::now() >= self.next {
            self.next = Instant::now() + self.every;
        }
    }
}

/// A batch written to the journal whose acknowledgements wait for the fsync.
#[derive(Debug)]
struct Written {
    batch: Vec<Msg>,
    seqs: Vec<u64>,
    /// Whether its write held.
    ok: bool,
    now: String,
    /// When it was written.
    at: Instant,
}

/// The recorder task's state.
#[derive(Debug)]
struct Task {
    store: Store,
    journal: std::fs::File,
    /// Token id -> key, for spotting an id the API hands out twice.
    index: HashMap<i64, TokenKey>,
    seq: u64,
    /// Intents without an outcome yet (re-written into each fresh journal), with the journal
    /// room held for their outcomes.
    pending: HashMap<u64, (JournalRecord, u64)>,
    /// The journal room held beyond its records.
    room: Room,
    /// The sum of the room held for the outcomes of `pending`.
    held: u64,
    /// The room an outcome needs beyond six bytes per byte of its token name (measured on a
    /// record with a [`SECRET_ROOM`]-byte secret, sealed when the run seals).
    outcome_room: u64,
    /// Why the state cannot be written any more, once a write failed.
    broken: Option<String>,
    /// The outcomes that came back when the journal could not take them (their secrets are
    /// in memory only).
    unjournaled: Vec<TokenKey>,
    /// The keys of the records fsync'd in the last [`SUSPECT_WINDOW`], by when: a filesystem
    /// the kernel turns read-only after an error can drop its last committed writes (seen on
    /// ext4 with `errors=remount-ro`: about one run in four lost the last fsync'd record).
    recent: std::collections::VecDeque<(Instant, Vec<TokenKey>)>,
    /// Those keys when the first write failed.
    suspects: Vec<TokenKey>,
    /// Whether the files lag behind what was recorded.
    dirty: bool,
    /// The batches written since the last fsync, in order.
    unsynced: Vec<Written>,
    /// Whether the journal holds bytes written since its last fsync.
    journal_dirty: bool,
    /// Whether the executor has more requests to send (`RecorderHandle::sends_ahead`).
    ahead: Arc<Ahead>,
    saves: SaveClock,
    finish: Option<oneshot::Sender<Result<(), StateError>>>,
}

impl Task {
    fn new(store: Store, journal: std::fs::File) -> Task {
        let written = journal.metadata().map_or(0, |m| m.len());
        let room = Room::new(&journal, written);
        let mut task = Task {
            index: store.token_index(),
            store,
            journal,
            seq: 0,
            pending: HashMap::new(),
            room,
            held: 0,
            outcome_room: 0,
            broken: None,
            unjournaled: Vec::new(),
            recent: std::collections::VecDeque::new(),
            suspects: Vec::new(),
            dirty: false,
            unsynced: Vec::new(),
            journal_dirty: false,
            ahead: Arc::new(Ahead::default()),
            saves: SaveClock::new(),
            finish: None,
        };
        task.outcome_room = task.measure_outcome_room();
        task
    }

    /// The size of the largest outcome record of a token with an empty name: a created token
    /// with a [`SECRET_ROOM`]-byte secret, sealed as the run seals (age's armor grows with the
    /// number of recipients), plus a margin.
    fn measure_outcome_room(&self) -> u64 {
        let key = TokenKey {
            account_id: u32::MAX,
            token_name: String::new(),
        };
        let outcome = Outcome::Created {
            token_id: i64::MIN,
            secret: HeldSecret::plain(crate::secret::Secret::new("x".repeat(SECRET_ROOM))),
            created_at: "2026-11-29T23:59:59.999999999+00:00".into(),
        };
        let outcome = self.journaled(&key, &outcome).unwrap_or(outcome);
        let line = JournalRecord::Outcome {
            seq: u64::MAX,
            account_id: key.account_id,
            token_name: key.token_name,
            outcome,
            at: "2026-11-29T23:59:59.999999999+00:00".into(),
        }
        .to_line();
        line.len() as u64 + 256
    }

    /// The journal room held for the outcome of a request for `key`. A name byte is in the
    /// record once (at most two bytes escaped) and, when sealed, once more inside the sealed
    /// document (escaped, then base64 and its line breaks: under three bytes).
    fn room_for(&self, key: &TokenKey) -> u64 {
        self.outcome_room + 6 * key.token_name.len() as u64
    }

    async fn run(mut self, mut rx: Receiver) -> (Store, Result<(), StateError>) {
        let mut batch: Vec<Msg> = Vec::new();
        // Journal records hold secrets: the buffer is zeroed when the recorder ends.
        let mut buf = zeroize::Zeroizing::new(Vec::<u8>::new());
        while self.next_batch(&mut rx, &mut batch).await {
            if !batch.is_empty() {
                self.write_batch(
                    std::mem::take(&mut batch),
                    &mut buf,
                    crate::state::now_rfc3339(),
                );
            }
            if self.sync_due() {
                self.sync_and_ack();
            }
            if self.finish.is_some() {
                break;
            }
            if self.unsynced.is_empty() {
                self.maybe_checkpoint();
            }
        }
        self.sync_and_ack();
        self.finish()
    }

    /// Journals a batch (one write) and holds its acknowledgements for `sync_and_ack`.
    fn write_batch(&mut self, batch: Vec<Msg>, buf: &mut Vec<u8>, now: String) {
        let (seqs, ok) = self.journal_batch(&batch, buf, &now);
        self.unsynced.push(Written {
            batch,
            seqs,
            ok,
            now,
            at: Instant::now(),
        });
    }

    /// When the oldest batch not yet fsync'd was written.
    fn unsynced_since(&self) -> Option<Instant> {
        self.unsynced.first().map(|w| w.at)
    }

    /// Whether the written batches must be fsync'd and acknowledged now: only outcomes wait
    /// (see [`OUTCOME_LINGER`]), and only while the executor has more requests to send, whose
    /// intents can carry them.
    fn sync_due(&self) -> bool {
        let Some(since) = self.unsynced_since() else {
            return false;
        };
        let only_outcomes = self
            .unsynced
            .iter()
            .all(|w| w.ok && w.batch.iter().all(|m| matches!(m, Msg::Outcome { .. })));
        !only_outcomes
            || !self.ahead.more.load(Ordering::Relaxed)
            || since.elapsed() >= OUTCOME_LINGER
    }

    /// Fsyncs what was written since the last fsync, then applies and acknowledges those
    /// batches. False when the fsync failed: their outcomes are then unjournaled, their
    /// intents refused.
    fn sync_and_ack(&mut self) -> bool {
        let mut unsynced = std::mem::take(&mut self.unsynced);
        let synced = !self.journal_dirty || {
            match self.journal.sync_data() {
                Ok(()) => {
                    self.journal_dirty = false;
                    true
                }
                Err(e) => {
                    self.write_failed(e);
                    for w in &mut unsynced {
                        self.refuse_intents(&w.batch, &w.seqs);
                        w.ok = false;
                    }
                    false
                }
            }
        };
        for mut w in unsynced {
            if w.ok {
                self.remember(&w.batch);
            }
            self.apply_and_ack(&mut w.batch, w.seqs, w.ok, &w.now);
        }
        synced
    }

    /// Waits for the next message (or the next save, or the end of an outcome's wait for its
    /// fsync), then takes whatever else is queued. False once every handle is gone.
    async fn next_batch(&mut self, rx: &mut Receiver, batch: &mut Vec<Msg>) -> bool {
        let until = match self.unsynced_since() {
            Some(since) => since + OUTCOME_LINGER,
            None => self.saves.next,
        };
        let wait = until.saturating_duration_since(Instant::now());
        tokio::select! {
            next = tokio::time::timeout(wait.max(Duration::from_millis(1)), rx.recv()) => {
                match next {
                    Ok(Some(m)) => batch.push(m),
                    Err(_) => {}
                    Ok(None) => return false,
                }
            }
            // The executor can send no more for now: what waits for an fsync is due.
            () = self.ahead.stopped.notified() => {}
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        true
    }

    /// Journals every record of the batch with one write (its fsync is `sync_and_ack`'s).
    /// Returns each message's sequence number (0 for none) and whether the write held.
    ///
    /// Outcomes go first: their room was held when their intents were written. Intents go in
    /// only when the journal can hold the room for them and for every outcome still to come;
    /// otherwise the state is broken ("stop sending") and they are refused.
    fn journal_batch(&mut self, batch: &[Msg], buf: &mut Vec<u8>, now: &str) -> (Vec<u64>, bool) {
        buf.clear();
        let mut seqs = vec![0; batch.len()];
        let mut seal_failed: Option<std::io::Error> = None;
        for (m, slot) in batch.iter().zip(seqs.iter_mut()) {
            if let Msg::Outcome {
                seq, key, outcome, ..
            } = m
            {
                if let Some((_, room)) = self.pending.remove(seq) {
                    self.held -= room;
                }
                match self.journaled(key, outcome) {
                    Ok(outcome) => buf.extend(
                        JournalRecord::Outcome {
                            seq: *seq,
                            account_id: key.account_id,
                            token_name: key.token_name.clone(),
                            outcome,
                            at: now.to_owned(),
                        }
                        .to_line(),
                    ),
                    Err(e) => {
                        seal_failed.get_or_insert(e);
                    }
                }
                *slot = *seq;
            }
        }
        self.journal_intents(batch, &mut seqs, buf, now);
        // Every record is fsync'd before it is acknowledged: an outcome so that a received
        // secret survives a power loss, and an intent so that a request sent is on the disk
        // before its answer can exist. Written but not fsync'd, an intent survives the process
        // being killed, but not a power loss, nor a filesystem the kernel turns read-only
        // after a disk error (its dirty pages are dropped): a token created then would be
        // neither recorded nor listed as a possible orphan. One fsync covers the batch, and
        // the outcomes written before it.
        if buf.is_empty() && seal_failed.is_none() {
            return (seqs, true);
        }
        let written = self.room.write(&self.journal, buf).and_then(|()| {
            self.journal_dirty = true;
            // A secret that could not be sealed is not in the journal: fail like a write.
            seal_failed.map_or(Ok(()), Err)
        });
        if let Err(e) = written {
            self.write_failed(e);
            self.refuse_intents(batch, &seqs);
            return (seqs, false);
        }
        (seqs, true)
    }

    /// Breaks the state after a failed write or fsync of the journal: no new request starts.
    fn write_failed(&mut self, e: std::io::Error) {
        let e = self.journal_error(e);
        tracing::debug!(error = %e, "a journal write failed; no new request will start");
        if self.broken.is_none() {
            self.suspects = self.recent_keys();
        }
        self.broken.get_or_insert_with(|| e.to_string());
    }

    /// Refuses the intents of a batch whose write or fsync failed: their requests are never
    /// sent, and the room held for their outcomes is released.
    fn refuse_intents(&mut self, batch: &[Msg], seqs: &[u64]) {
        for (m, s) in batch.iter().zip(seqs) {
            if matches!(m, Msg::Intent { .. })
                && let Some((_, room)) = self.pending.remove(s)
            {
                self.held -= room;
            }
        }
    }

    /// Notes the keys of a batch just made durable (see `recent`).
    fn remember(&mut self, batch: &[Msg]) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > SUSPECT_WINDOW)
        {
            self.recent.pop_front();
        }
        let keys: Vec<TokenKey> = batch
            .iter()
            .filter_map(|m| match m {
                Msg::Intent { key, .. } | Msg::Outcome { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            self.recent.push_back((now, keys));
        }
    }

    /// The keys of the records made durable in the last [`SUSPECT_WINDOW`].
    fn recent_keys(&self) -> Vec<TokenKey> {
        let now = Instant::now();
        self.recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= SUSPECT_WINDOW)
            .flat_map(|(_, k)| k.iter().cloned())
            .collect()
    }

    /// Adds the batch's intents to `buf` once the journal holds the room for them, for their
    /// outcomes and for those of every request already in flight. When it cannot (the disk is
    /// full), the state is broken and the intents are left out: their requests are never sent.
    fn journal_intents(&mut self, batch: &[Msg], seqs: &mut [u64], buf: &mut Vec<u8>, now: &str) {
        // Once the state is broken no request may start: its intent is not journaled (it
        // would later pose as a possible orphan) and is refused when acknowledged.
        if self.broken.is_some() {
            return;
        }
        let mut lines = Vec::new();
        let mut new = Vec::new();
        let mut rooms = 0;
        for (i, m) in batch.iter().enumerate() {
            if let Msg::Intent { key, attempt, .. } = m {
                let rec = JournalRecord::Intent {
                    seq: self.seq + 1 + new.len() as u64,
                    account_id: key.account_id,
                    token_name: key.token_name.clone(),
                    attempt: *attempt,
                    at: now.to_owned(),
                };
                lines.extend(rec.to_line());
                let room = self.room_for(key);
                rooms += room;
                new.push((i, rec, room));
            }
        }
        let need = (buf.len() + lines.len()) as u64 + self.held + rooms;
        if new.is_empty() {
            // Nothing new is sent; an outcome bigger than its room may have used the spare
            // room of others: take more if the disk has it.
            let _ = self.room.hold(&self.journal, need);
            return;
        }
        if let Err(e) = self.room.hold(&self.journal, need) {
            let why = format!(
                "cannot hold {} KiB of room in journal file {} for the {} requests in flight and the {} about to be sent: {e}; no new request was sent, and the answers in flight were written to room held before",
                need.div_ceil(1024),
                self.store.paths.journal.display(),
                self.pending.len(),
                new.len()
            );
            tracing::warn!("{why}");
            self.broken = Some(why);
            return;
        }
        buf.extend(lines);
        self.held += rooms;
        for (i, rec, room) in new {
            self.seq += 1;
            seqs[i] = self.seq;
            self.pending.insert(self.seq, (rec, room));
        }
    }

    /// The outcome as the journal holds it: with recipients set, a received secret is sealed
    /// (as a one-token secrets document) before it reaches the disk.
    fn journaled(&self, key: &TokenKey, outcome: &Outcome) -> std::io::Result<Outcome> {
        let Some(sealing) = self.store.sealing() else {
            return Ok(outcome.clone());
        };
        let seal = |doc: &SecretsFile| {
            sealing
                .recipients
                .seal_secrets(doc)
                .map(|armored| HeldSecret::sealed(String::from_utf8_lossy(&armored).into_owned()))
                .map_err(std::io::Error::other)
        };
        let mut doc = SecretsFile::default();
        match outcome {
            Outcome::Created {
                token_id,
                secret: HeldSecret {
                    token: Some(token), ..
                },
                created_at,
            } => {
                doc.insert(key, *token_id, token.clone());
                Ok(Outcome::Created {
                    token_id: *token_id,
                    secret: seal(&doc)?,
                    created_at: created_at.clone(),
                })
            }
            Outcome::KeptAside {
                token_id,
                secret: HeldSecret {
                    token: Some(token), ..
                },
                detail,
            } => {
                doc.quarantine(key, *token_id, token.clone(), detail.clone());
                Ok(Outcome::KeptAside {
                    token_id: *token_id,
                    secret: seal(&doc)?,
                    detail: detail.clone(),
                })
            }
            other => Ok(other.clone()),
        }
    }

    /// Applies each message to the store and acknowledges it.
    fn apply_and_ack(&mut self, batch: &mut Vec<Msg>, seqs: Vec<u64>, journal_ok: bool, now: &str) {
        for (m, s) in batch.drain(..).zip(seqs) {
            match m {
                Msg::Intent { ack, .. } => {
                    let res = match &self.broken {
                        None => Ok(s),
                        Some(why) => Err(broken_state(&self.store.paths.journal, why)),
                    };
                    let _ = ack.send(res);
                }
                Msg::Outcome {
                    key, outcome, ack, ..
                } => {
                    // Applied in memory even if the journal write failed: the final save may
                    // still succeed, and the error tells the executor to stop.
                    let applied = self.store.apply(&key, outcome, now, &mut self.index);
                    self.dirty = true;
                    self.saves.outcomes_since += 1;
                    let res = if journal_ok {
                        Ok(applied)
                    } else {
                        self.unjournaled.push(key);
                        Err(broken_state(
                            &self.store.paths.journal,
                            self.broken.as_deref().unwrap_or_default(),
                        ))
                    };
                    let _ = ack.send(res);
                }
                Msg::Failure(f) => {
                    self.store.results.failures.push(f);
                    self.dirty = true;
                }
                Msg::ResolvedName(name, id) => {
                    if self.store.results.resolved_names.insert(name, id) != Some(id) {
                        self.dirty = true;
                    }
                }
                Msg::LearnedRate(rate) => {
                    if self.store.results.learned_rate != rate {
                        self.store.results.learned_rate = rate;
                        self.dirty = true;
                    }
                }
                Msg::Finish(ack) => self.finish = Some(ack),
            }
        }
    }

    /// Refreshes the files when due, then starts a fresh journal holding only the intents
    /// still in flight. Skipped once anything failed: the journal stays as it is.
    fn maybe_checkpoint(&mut self) {
        if self.dirty && self.broken.is_none() && self.saves.due(self.index.len()) {
            let started = Instant::now();
            match self.checkpoint() {
                Ok(()) => {
                    self.dirty = false;
                    self.saves.saved(started.elapsed());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a save failed; no new request will start");
                    if self.broken.is_none() {
                        self.suspects = self.recent_keys();
                    }
                    self.broken = Some(e.to_string());
                }
            }
        }
        self.saves.tick();
    }

    /// Saves the files, then replaces the journal with one holding only the intents still in
    /// flight. The replacement is atomic (a new 0600 file, fsync'd, renamed over the old one),
    /// so a crash at any instant leaves either the old journal or the new one, never an empty
    /// one.
    fn checkpoint(&mut self) -> Result<(), StateError> {
        self.store.save()?;
        if self.store.sealing().is_some() {
            // The journal holds this run's sealed secrets until its sealed file is written
            // at the end; it is not replaced.
            return Ok(());
        }
        let path = self.store.paths.journal.clone();
        let mut keep: Vec<(&u64, &JournalRecord)> =
            self.pending.iter().map(|(s, (r, _))| (s, r)).collect();
        keep.sort_by_key(|(s, _)| **s);
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        for (_, r) in keep {
            buf.extend(r.to_line());
        }
        let held = self.held;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".next");
        let tmp = std::path::PathBuf::from(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        // The new journal holds the room for the outcomes in flight before it replaces the old
        // one; when the disk cannot give it, the old journal (and its room) stays.
        let replaced = (|| {
            let next = open_secret_new(&tmp)?;
            let mut room = Room::new(&next, 0);
            room.hold(&next, buf.len() as u64 + held)?;
            room.write(&next, &buf)?;
            next.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(parent_dir(&path))?;
            Ok((next, room))
        })();
        match replaced {
            Ok((next, room)) => {
                self.journal = next;
                self.room = room;
                Ok(())
            }
            Err(e) if is_out_of_space(&e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(error = %e, "no room for a fresh journal; the current one stays");
                Ok(())
            }
            Err(e) => Err(self.journal_error(e)),
        }
    }

    /// Notes the requests still in flight as possible orphans, saves, and removes the journal
    /// when the files hold everything it held.
    fn finish(mut self) -> (Store, Result<(), StateError>) {
        // Requests still in flight (abandoned by a second Ctrl-C or a drain timeout) are
        // possible orphans now; the journal is kept so a later replay notes them too
        // (idempotently).
        for (rec, _) in self.pending.values() {
            if let JournalRecord::Intent {
                account_id,
                token_name,
                at,
                ..
            } = rec
            {
                self.store.results.note_orphan(
                    &TokenKey {
                        account_id: *account_id,
                        token_name: token_name.clone(),
                    },
                    "the run stopped while this request was in flight; a token may have been created",
                    at,
                );
            }
        }
        let journal_path = self.store.paths.journal.clone();
        let res = self.store.save().and_then(|()| {
            if let Some(path) = self.store.seal_run()? {
                tracing::info!(file = %path.display(), "sealed this run's secrets");
            }
            if self.pending.is_empty() {
                std::fs::remove_file(&journal_path).map_err(|e| self.journal_error(e))?;
                let _ = sync_dir(parent_dir(&journal_path));
            }
            Ok(())
        });
        if res.is_err() {
            // What no disk holds, or may not: named to the user, since no file can.
            let mut unsaved: Vec<TokenKey> = std::mem::take(&mut self.unjournaled);
            unsaved.append(&mut self.suspects);
            unsaved.extend(self.pending.values().filter_map(|(rec, _)| match rec {
                JournalRecord::Intent {
                    account_id,
                    token_name,
                    ..
                } => Some(TokenKey {
                    account_id: *account_id,
                    token_name: token_name.clone(),
                }),
                _ => None,
            }));
            unsaved.sort();
            unsaved.dedup();
            self.store.unsaved = unsaved;
        }
        let res = match (&self.broken, res) {
            (Some(why), Ok(())) => Err(broken_state(&self.store.paths.results, why)),
            (_, r) => r,
        };
        if let Some(ack) = self.finish.take() {
            let _ = ack.send(Ok(()));
        }
        (self.store, res)
    }

    fn journal_error(&self, source: std::io::Error) -> StateError {
        StateError::Write {
            kind: StateFile::Journal,
            path: self.store.paths.journal.clone(),
            source: explain_read_only(source),
        }
    }
}

/// Adds what to do to an error that says the state's filesystem turned read-only (a remount,
/// or the kernel's own after a disk error).
pub(crate) fn explain_read_only(e: std::io::Error) -> std::io::Error {
    let read_only =
        e.raw_os_error() == Some(libc::EROFS) || e.kind() == std::io::ErrorKind::ReadOnlyFilesystem;
    if !read_only {
        return e;
    }
    std::io::Error::new(
        e.kind(),
        format!(
            "{e}; the state directory's filesystem became read-only during the run (remounted, or turned read-only by the kernel after a disk error): no new request is sent; make it writable again (after a filesystem check), then run apply again: it recovers every answer the journal holds and lists the requests that were in flight as possible orphans"
        ),
    )
}

/// Whether `e` says the filesystem has no room left (for this user).
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// The error every later record gets once a write of the state failed (`why` says which).
fn broken_state(path: &std::path::Path, why: &str) -> StateError {
    StateError::Write {
        kind: StateFile::State,
        path: path.to_path_buf(),
        source: std::io::Error::other(why.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secret::Secret;
    use crate::state::StatePaths;

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
            secret: HeldSecret::plain(Secret::new("sek-a")),
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

    fn identity(dir: &std::path::Path) -> (crate::state::Recipients, crate::state::Identities) {
        use age::secrecy::ExposeSecret;
        let key = age::x25519::Identity::generate();
        let file = dir.join("key.txt");
        std::fs::write(&file, format!("{}\n", key.to_string().expose_secret())).unwrap();
        (
            crate::state::Recipients::new(vec![key.to_public()]).unwrap(),
            crate::state::Identities::load(&file).unwrap(),
        )
    }

    /// Every byte of every file under `dir`, as text.
    fn all_bytes(dir: &std::path::Path) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push_str(&all_bytes(&p));
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
        out
    }

    fn rec_paths_journal(dir: &std::path::Path) -> std::path::PathBuf {
        dir.join("m.results.journal")
    }

    fn created(id: i64, secret: &str) -> Outcome {
        Outcome::Created {
            token_id: id,
            secret: HeldSecret::plain(Secret::new(secret)),
            created_at: "2021-05-24T12:11:51Z".into(),
        }
    }

    /// A recorder sealing to a fresh key, in a fresh state directory.
    struct Sealed {
        dir: tempfile::TempDir,
        _keys: tempfile::TempDir,
        ids: crate::state::Identities,
        paths: StatePaths,
        rec: Recorder,
    }

    fn sealed_recorder() -> Sealed {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (recipients, ids) = identity(keys.path());
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let mut store = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        store.seal_to(recipients);
        Sealed {
            dir,
            _keys: keys,
            ids,
            paths,
            rec: Recorder::start(store).unwrap(),
        }
    }

    #[tokio::test]
    async fn with_recipients_no_plaintext_reaches_the_disk_and_a_run_leaves_one_sealed_file() {
        let Sealed {
            dir,
            _keys,
            ids,
            paths,
            rec,
        } = sealed_recorder();
        let h = rec.handle();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let s = h.intent(&key(name), 1).await.unwrap();
            let secret = format!("plaintext-secret-{name}");
            h.outcome(s, &key(name), created(10 + i as i64, &secret))
                .await
                .unwrap();
        }
        // A secret in an answer that could not be recorded is kept aside, sealed too.
        let s = h.intent(&key("odd"), 1).await.unwrap();
        let kept = Outcome::KeptAside {
            token_id: 0,
            secret: HeldSecret::plain(Secret::new("plaintext-secret-kept-aside")),
            detail: "the id is unusable".into(),
        };
        h.outcome(s, &key("odd"), kept).await.unwrap();
        // Mid-run: the journal holds the outcomes, sealed.
        let mid = all_bytes(dir.path());
        assert!(mid.contains("BEGIN AGE ENCRYPTED FILE"), "{mid}");
        assert!(!mid.contains("plaintext-secret"));
        drop(h);
        let (store, res) = rec.finish().await;
        res.unwrap();
        let store = store.unwrap();
        assert_eq!(store.results.get(&key("b")).unwrap().token_id, 11);
        // After the run: no secrets file, no journal, one sealed file; no plaintext anywhere.
        assert!(!paths.secrets.exists());
        assert!(!paths.journal.exists());
        let files = crate::state::sealed::list(&paths.sealed).unwrap();
        assert_eq!(files.len(), 1);
        assert!(!all_bytes(dir.path()).contains("plaintext-secret"));
        let doc = ids.open(&files[0]).unwrap();
        assert_eq!(
            doc.get(&key("c")).unwrap().token.expose(),
            "plaintext-secret-c"
        );
        // export's view: every secret, through the identity.
        drop(store);
        let again = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        let all = again.all_secrets(Some(&ids)).unwrap();
        assert_eq!(
            all.get(&key("a")).unwrap().token.expose(),
            "plaintext-secret-a"
        );
        assert!(
            all.superseded
                .iter()
                .any(|s| s.token.expose() == "plaintext-secret-kept-aside")
        );
        assert!(again.all_secrets(None).is_err());
    }

    #[tokio::test]
    async fn a_crash_with_recipients_is_recovered_into_sealed_files_without_the_key() {
        let Sealed {
            dir,
            _keys,
            ids,
            paths: _,
            rec,
        } = sealed_recorder();
        let h = rec.handle();
        let s1 = h.intent(&key("a"), 1).await.unwrap();
        h.outcome(s1, &key("a"), created(10, "plaintext-secret-a"))
            .await
            .unwrap();
        let _s2 = h.intent(&key("b"), 1).await.unwrap();
        // The process dies here: what the next run finds is the journal as it is now (copied
        // to another directory, since this process still holds the lock on the first).
        let dir2 = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir2.path().join("m.yaml"), None, None);
        std::fs::copy(rec_paths_journal(dir.path()), &paths.journal).unwrap();
        drop(h);
        let next = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        assert_eq!(next.results.get(&key("a")).unwrap().token_id, 10);
        assert_eq!(next.results.possible_orphans[0].token_name, "b");
        assert!(!paths.journal.exists());
        assert!(!paths.secrets.exists());
        assert!(!all_bytes(dir2.path()).contains("plaintext-secret"));
        assert_eq!(crate::state::sealed::list(&paths.sealed).unwrap().len(), 1);
        let all = next.all_secrets(Some(&ids)).unwrap();
        assert_eq!(
            all.get(&key("a")).unwrap().token.expose(),
            "plaintext-secret-a"
        );
    }

    /// A recorder task on a fresh state, driven by hand (no runtime, no channel).
    fn task(dir: &std::path::Path) -> Task {
        let paths = StatePaths::for_manifest(&dir.join("m.yaml"), None, None);
        let store = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        let journal = open_secret_new(&paths.journal).unwrap();
        Task::new(store, journal)
    }

    const NOW: &str = "2026-11-30T01:00:00.000Z";

    fn intent_msg(k: &TokenKey) -> (Msg, oneshot::Receiver<Result<u64, StateError>>) {
        let (ack, rx) = oneshot::channel();
        let m = Msg::Intent {
            key: k.clone(),
            attempt: 1,
            ack,
        };
        (m, rx)
    }

    fn outcome_msg(
        seq: u64,
        k: &TokenKey,
        outcome: Outcome,
    ) -> (Msg, oneshot::Receiver<Result<Applied, StateError>>) {
        let (ack, rx) = oneshot::channel();
        let m = Msg::Outcome {
            seq,
            key: k.clone(),
            outcome,
            ack,
        };
        (m, rx)
    }

    /// Journals, fsyncs and applies one batch, as `run` does when no outcome waits.
    fn step(t: &mut Task, batch: Vec<Msg>) -> (Vec<u64>, bool) {
        let (seqs, ok) = write(t, batch);
        let synced = t.sync_and_ack();
        (seqs, ok && synced)
    }

    /// The journal's records; what follows them (its room, when held as zeros) is all zeros.
    fn journal_lines(t: &Task) -> Vec<JournalRecord> {
        let bytes = std::fs::read(&t.store.paths.journal).unwrap();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        assert!(
            bytes[end..].iter().all(|b| *b == 0),
            "records after the room"
        );
        String::from_utf8(bytes[..end].to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn intent_seq(r: &JournalRecord) -> u64 {
        match r {
            JournalRecord::Intent { seq, .. } => *seq,
            other => panic!("not an intent: {other:?}"),
        }
    }

    #[test]
    fn a_message_prints_as_its_type_only() {
        let m = Msg::Failure(Failure {
            account_id: Some(1),
            account_name: None,
            token_name: "t".into(),
            http_status: None,
            error: "secret-looking detail".into(),
        });
        assert_eq!(format!("{m:?}"), "Msg");
    }

    #[test]
    fn a_save_is_due_after_the_interval_and_enough_new_outcomes() {
        let now = Instant::now();
        let clock = |past_next: bool, since: usize, last_ago: Duration| SaveClock {
            every: SAVE_INTERVAL,
            next: if past_next {
                now - Duration::from_millis(1)
            } else {
                now + Duration::from_secs(3600)
            },
            last: now - last_ago,
            outcomes_since: since,
        };
        let recent = Duration::from_secs(1);
        // 12 tokens: a quarter of them (3) must be new since the last save.
        assert!(!clock(true, 2, recent).due(12));
        assert!(clock(true, 3, recent).due(12));
        assert!(clock(true, 0, recent).due(0));
        // Not before the next save time, however much is new.
        assert!(!clock(false, 100, recent).due(12));
        assert!(!clock(false, 0, MAX_SAVE_INTERVAL * 2).due(12));
        // A minute without a save: due even with few new outcomes.
        assert!(clock(true, 0, MAX_SAVE_INTERVAL + recent).due(1000));
        assert!(!clock(true, 0, MAX_SAVE_INTERVAL - recent).due(1000));
    }

    #[test]
    fn a_slow_save_spaces_the_next_ones_and_the_clock_moves_on() {
        let mut clock = SaveClock::new();
        clock.outcomes_since = 7;
        clock.last = Instant::now() - Duration::from_secs(100);
        clock.saved(Duration::from_secs(1));
        assert_eq!(clock.outcomes_since, 0);
        assert!(clock.last.elapsed() < Duration::from_secs(50));
        assert_eq!(clock.every, Duration::from_secs(30));
        clock.saved(Duration::from_millis(10));
        assert_eq!(clock.every, SAVE_INTERVAL);
        // Not yet due: tick leaves the next save time alone.
        let next = clock.next;
        clock.tick();
        assert_eq!(clock.next, next);
        // Due: the next one is an interval from now.
        clock.every = Duration::from_secs(10);
        clock.next = Instant::now() - Duration::from_millis(1);
        let before = Instant::now();
        clock.tick();
        assert!(clock.next >= before + Duration::from_secs(10));
        assert!(clock.next <= Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn the_room_for_an_outcome_covers_its_record_and_grows_with_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let t = task(dir.path());
        let line = JournalRecord::Outcome {
            seq: 123,
            account_id: 42,
            token_name: String::new(),
            outcome: created(1_000_000, &"s".repeat(SECRET_ROOM)),
            at: NOW.into(),
        }
        .to_line();
        let line = line.len() as u64;
        assert!(t.outcome_room > line + 200, "{} vs {line}", t.outcome_room);
        assert!(t.outcome_room < line + 1024, "{} vs {line}", t.outcome_room);
        assert_eq!(t.room_for(&key("")), t.outcome_room);
        assert_eq!(t.room_for(&key("abc")), t.outcome_room + 18);
    }

    #[test]
    fn intents_get_consecutive_seqs_and_the_room_for_their_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        // A name long enough that its intent record is larger than the room taken ahead: the
        // room held must count the records written as well as the outcomes to come.
        let big = key(&"n".repeat(80_000));
        let (m1, r1) = intent_msg(&key("a"));
        let (m2, r2) = intent_msg(&big);
        let (seqs, ok) = step(&mut t, vec![m1, m2]);
        assert!(ok);
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(t.seq, 2);
        assert_eq!(r1.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(r2.blocking_recv().unwrap().unwrap(), 2);
        let lines = journal_lines(&t);
        assert_eq!(lines.iter().map(intent_seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(intent_seq(&t.pending[&1].0), 1);
        assert_eq!(intent_seq(&t.pending[&2].0), 2);
        let rooms = t.room_for(&key("a")) + t.room_for(&big);
        assert_eq!(t.held, rooms);
        assert!(t.room.spare() >= t.held, "{:?} for {}", t.room, t.held);

        // An outcome frees its intent's room; the next intent holds room beside the rest.
        let (m, r) = outcome_msg(2, &big, created(10, "sek"));
        let (seqs, ok) = step(&mut t, vec![m]);
        assert!(ok);
        assert_eq!(seqs, vec![2]);
        assert_eq!(r.blocking_recv().unwrap().unwrap(), Applied::Recorded);
        assert_eq!(t.held, t.room_for(&key("a")));
        assert_eq!(t.pending.len(), 1);
        assert_eq!(t.saves.outcomes_since, 1);
        let big2 = key(&"m".repeat(80_000));
        let (m3, r3) = intent_msg(&big2);
        let (seqs, _) = step(&mut t, vec![m3]);
        assert_eq!(seqs, vec![3]);
        assert_eq!(r3.blocking_recv().unwrap().unwrap(), 3);
        assert_eq!(t.held, t.room_for(&key("a")) + t.room_for(&big2));
        assert!(t.room.spare() >= t.held, "{:?} for {}", t.room, t.held);
        assert_eq!(journal_lines(&t).len(), 4);
    }

    /// Journals one batch as `run` does, leaving its fsync and acknowledgements to
    /// `sync_and_ack`. Returns each message's sequence number and whether the write held.
    fn write(t: &mut Task, batch: Vec<Msg>) -> (Vec<u64>, bool) {
        t.write_batch(batch, &mut Vec::new(), NOW.into());
        let w = t.unsynced.last().unwrap();
        (w.seqs.clone(), w.ok)
    }

    #[test]
    fn an_outcome_is_written_at_once_and_acknowledged_with_the_next_intents_fsync() {
        use tokio::sync::oneshot::error::TryRecvError;
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (m1, _r1) = intent_msg(&key("a"));
        let (m2, _r2) = intent_msg(&key("b"));
        step(&mut t, vec![m1, m2]);
        t.ahead.more.store(true, Ordering::Relaxed);
        // a's answer is in the file at once (a killed process loses nothing), not yet
        // acknowledged: its fsync waits for the next intents'.
        let (m, mut ra) = outcome_msg(1, &key("a"), created(10, "sek-a"));
        write(&mut t, vec![m]);
        assert!(!t.sync_due());
        assert!(t.journal_dirty);
        assert!(matches!(ra.try_recv(), Err(TryRecvError::Empty)));
        let lines = journal_lines(&t);
        assert!(
            matches!(&lines[2], JournalRecord::Outcome { seq: 1, .. }),
            "{lines:?}"
        );
        assert!(t.store.results.get(&key("a")).is_none());
        // The next intent cannot wait: one fsync makes both durable, then both are acknowledged.
        let (m, mut rc) = intent_msg(&key("c"));
        write(&mut t, vec![m]);
        assert!(t.sync_due());
        assert!(t.sync_and_ack());
        assert!(!t.journal_dirty);
        assert_eq!(ra.try_recv().unwrap().unwrap(), Applied::Recorded);
        assert_eq!(rc.try_recv().unwrap().unwrap(), 3);
        assert_eq!(t.store.results.get(&key("a")).unwrap().token_id, 10);
        assert!(t.unsynced.is_empty());
        // An outcome waits at most OUTCOME_LINGER...
        let (m, _rb) = outcome_msg(2, &key("b"), created(11, "sek-b"));
        write(&mut t, vec![m]);
        assert!(!t.sync_due());
        t.unsynced[0].at = Instant::now() - OUTCOME_LINGER;
        assert!(t.sync_due());
        t.sync_and_ack();
        // ...and not at all once nothing more is to be sent, nor beside anything but outcomes.
        let (m, _rc) = outcome_msg(3, &key("c"), created(12, "sek-c"));
        write(&mut t, vec![m]);
        assert!(!t.sync_due());
        t.ahead.more.store(false, Ordering::Relaxed);
        assert!(t.sync_due());
        t.sync_and_ack();
        t.ahead.more.store(true, Ordering::Relaxed);
        write(&mut t, vec![Msg::ResolvedName("acme".into(), 5)]);
        assert!(t.sync_due());
    }

    #[test]
    fn a_failed_fsync_fails_every_record_it_was_to_make_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (m1, _r1) = intent_msg(&key("a"));
        step(&mut t, vec![m1]);
        t.ahead.more.store(true, Ordering::Relaxed);
        let (m, ra) = outcome_msg(1, &key("a"), created(10, "sek-a"));
        write(&mut t, vec![m]);
        let (m, rb) = intent_msg(&key("b"));
        write(&mut t, vec![m]);
        assert!(t.held > 0 && t.pending.contains_key(&2));
        // Both were written; the fsync that was to carry them fails (a handle that cannot
        // be fsync'd stands in for a disk error).
        t.journal = std::fs::File::open("/dev/null").unwrap();
        assert!(!t.sync_and_ack());
        assert!(t.broken.is_some());
        // The outcome is applied but reported, and named if the final save fails too.
        assert!(ra.blocking_recv().unwrap().is_err());
        assert_eq!(t.store.results.get(&key("a")).unwrap().token_id, 10);
        assert_eq!(t.unjournaled, [key("a")]);
        // The intent is refused (never sent), its room released.
        assert!(rb.blocking_recv().unwrap().is_err());
        assert!(t.pending.is_empty());
        assert_eq!(t.held, 0);
    }

    #[tokio::test]
    async fn a_waiting_outcome_is_acknowledged_without_more_records_coming() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let store = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        let rec = Recorder::start(store).unwrap();
        let h = rec.handle();
        h.sends_ahead(true);
        let s = h.intent(&key("a"), 1).await.unwrap();
        // No intent follows: the answer waits its full time for one (the executor said more
        // were queued), then the wait ends on its own, long before the next save is due.
        let started = Instant::now();
        let applied = h.outcome(s, &key("a"), created(10, "sek-a")).await.unwrap();
        assert_eq!(applied, Applied::Recorded);
        assert!(
            started.elapsed() >= OUTCOME_LINGER,
            "{:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < SAVE_INTERVAL / 2,
            "{:?}",
            started.elapsed()
        );
        drop(h);
        let (store, res) = rec.finish().await;
        res.unwrap();
        assert_eq!(store.unwrap().results.get(&key("a")).unwrap().token_id, 10);
    }

    #[test]
    fn a_failed_journal_write_refuses_its_intents_and_releases_their_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (m, _r) = intent_msg(&key("a"));
        step(&mut t, vec![m]);
        let held = t.held;
        // The room is held already; the write itself fails (a read-only handle).
        t.journal = std::fs::File::open(&t.store.paths.journal).unwrap();
        let (m, r) = intent_msg(&key("b"));
        let (_, ok) = step(&mut t, vec![m]);
        assert!(!ok);
        assert!(r.blocking_recv().unwrap().is_err());
        assert_eq!(t.held, held);
        assert_eq!(t.pending.len(), 1);
        assert!(t.broken.is_some());
        // Once broken, no intent is journaled, and an outcome is applied but reported.
        let (m, r) = outcome_msg(1, &key("a"), created(10, "sek"));
        let (_, ok) = step(&mut t, vec![m]);
        assert!(!ok);
        assert!(r.blocking_recv().unwrap().is_err());
        assert_eq!(t.store.results.get(&key("a")).unwrap().token_id, 10);
    }

    #[test]
    fn names_failures_and_the_rate_make_the_state_dirty_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        step(&mut t, vec![Msg::ResolvedName("acme".into(), 5)]);
        assert!(t.dirty);
        t.dirty = false;
        step(&mut t, vec![Msg::ResolvedName("acme".into(), 5)]);
        assert!(!t.dirty);
        step(&mut t, vec![Msg::ResolvedName("acme".into(), 6)]);
        assert!(t.dirty);
        assert_eq!(t.store.results.resolved_names["acme"], 6);
        t.dirty = false;
        let rate = Some(crate::state::LearnedRate {
            per_second: 10.0,
            endpoint: "http://127.0.0.1:1".into(),
            at: NOW.into(),
        });
        step(&mut t, vec![Msg::LearnedRate(rate.clone())]);
        assert!(t.dirty);
        assert_eq!(t.store.results.learned_rate, rate);
        t.dirty = false;
        step(&mut t, vec![Msg::LearnedRate(rate)]);
        assert!(!t.dirty);
        step(&mut t, vec![Msg::LearnedRate(None)]);
        assert!(t.dirty);
        assert_eq!(t.store.results.learned_rate, None);
    }

    #[test]
    fn a_checkpoint_saves_when_due_and_keeps_only_the_intents_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (m1, _r1) = intent_msg(&key("a"));
        let (m2, _r2) = intent_msg(&key("b"));
        step(&mut t, vec![m1, m2]);
        let (m, _r) = outcome_msg(1, &key("a"), created(10, "sek"));
        step(&mut t, vec![m]);
        let results = t.store.paths.results.clone();
        // Not due yet: nothing saved.
        t.maybe_checkpoint();
        assert!(!results.exists());
        // Due but nothing new: nothing saved.
        t.saves.next = Instant::now() - Duration::from_millis(1);
        t.dirty = false;
        t.maybe_checkpoint();
        assert!(!results.exists());
        // Due but broken: nothing saved.
        t.saves.next = Instant::now() - Duration::from_millis(1);
        t.dirty = true;
        t.broken = Some("a write failed".into());
        t.maybe_checkpoint();
        assert!(!results.exists());
        // Due: saved, and the journal now holds only b's intent, with its room.
        t.broken = None;
        t.saves.next = Instant::now() - Duration::from_millis(1);
        t.maybe_checkpoint();
        assert!(results.exists());
        assert!(!t.dirty);
        let lines = journal_lines(&t);
        assert_eq!(lines.len(), 1);
        assert_eq!(intent_seq(&lines[0]), 2);
        // The fresh journal holds exactly the room for b's outcome, plus the room taken
        // ahead (64 KiB, `room::AHEAD`).
        assert_eq!(t.room.spare(), t.held + 64 * 1024, "{:?}", t.room);
        assert!(t.saves.next > Instant::now());
    }

    #[test]
    fn a_checkpoint_that_cannot_replace_the_journal_fails_unless_the_disk_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (m, _r) = intent_msg(&key("a"));
        step(&mut t, vec![m]);
        // Something sits where the next journal is made (not a file: it cannot be removed).
        let mut next = t.store.paths.journal.as_os_str().to_owned();
        next.push(".next");
        std::fs::create_dir(std::path::PathBuf::from(next)).unwrap();
        let err = t.checkpoint().unwrap_err();
        assert!(err.to_string().contains("journal"), "{err}");
        assert_eq!(journal_lines(&t).len(), 1);
    }

    #[test]
    fn read_only_and_full_disks_are_told_apart_from_other_errors() {
        use std::io::{Error, ErrorKind};
        let erofs = explain_read_only(Error::from_raw_os_error(libc::EROFS));
        assert!(erofs.to_string().contains("became read-only"), "{erofs}");
        let kind = explain_read_only(Error::new(ErrorKind::ReadOnlyFilesystem, "ro"));
        assert!(kind.to_string().contains("became read-only"), "{kind}");
        let other = explain_read_only(Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            other.to_string(),
            Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        assert!(is_out_of_space(&Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_out_of_space(&Error::from_raw_os_error(libc::EDQUOT)));
        assert!(is_out_of_space(&Error::new(ErrorKind::StorageFull, "x")));
        assert!(is_out_of_space(&Error::new(ErrorKind::QuotaExceeded, "x")));
        assert!(!is_out_of_space(&Error::from_raw_os_error(libc::EIO)));
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..MAX_BATCH + 1 {
            tx.send(Msg::LearnedRate(None)).unwrap();
        }
        let mut batch = Vec::new();
        assert!(t.next_batch(&mut rx, &mut batch).await);
        assert_eq!(batch.len(), MAX_BATCH);
        batch.clear();
        assert!(t.next_batch(&mut rx, &mut batch).await);
        assert_eq!(batch.len(), 1);
        drop(tx);
        batch.clear();
        assert!(!t.next_batch(&mut rx, &mut batch).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_an_answers_fsync_to_fall_due_not_less() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // An answer written just now waits for an intent to share its fsync: with nothing
        // coming, the recorder wakes once, when the wait is over (paused clock: exact).
        let (m, _r) = outcome_msg(1, &key("a"), created(10, "sek"));
        write(&mut t, vec![m]);
        let started = tokio::time::Instant::now();
        let mut batch = Vec::new();
        assert!(t.next_batch(&mut rx, &mut batch).await);
        assert!(batch.is_empty());
        let waited = started.elapsed();
        assert!(
            waited >= OUTCOME_LINGER - Duration::from_millis(5)
                && waited <= OUTCOME_LINGER + Duration::from_millis(10),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_answer_is_due_at_once_when_the_executor_can_send_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(dir.path());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let h = RecorderHandle {
            tx,
            ahead: t.ahead.clone(),
        };
        h.sends_ahead(true);
        let (m, _r) = outcome_msg(1, &key("a"), created(10, "sek"));
        write(&mut t, vec![m]);
        assert!(!t.sync_due());
        // 10 ms into the answer's wait, every slot is taken (or nothing is left to send): the
        // wait ends then, not at OUTCOME_LINGER (paused clock: exact). Saying again that sends
        // are ahead (the executor says it at every turn) does not end it.
        let started = tokio::time::Instant::now();
        let mut batch = Vec::new();
        let batch_taken = async {
            let woke = t.next_batch(&mut rx, &mut batch).await;
            (woke, started.elapsed())
        };
        let ((woke, waited), ()) = tokio::join!(batch_taken, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            h.sends_ahead(true);
            tokio::time::sleep(Duration::from_millis(5)).await;
            h.sends_ahead(false);
        });
        assert!(woke && batch.is_empty());
        assert!(
            waited >= Duration::from_millis(10) && waited < Duration::from_millis(15),
            "{waited:?}"
        );
        assert!(t.sync_due());
    }

    #[tokio::test]
    async fn failures_names_and_the_rate_sent_through_a_handle_are_saved() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let store = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
        let rec = Recorder::start(store).unwrap();
        let h = rec.handle();
        h.failure(Failure {
            account_id: Some(42),
            account_name: None,
            token_name: "x".into(),
            http_status: Some(400),
            error: "refused".into(),
        });
        h.resolved_name("acme".into(), 42);
        let rate = Some(crate::state::LearnedRate {
            per_second: 10.0,
            endpoint: "http://127.0.0.1:1".into(),
            at: NOW.into(),
        });
        h.learned_rate(rate.clone());
        drop(h);
        let (store, res) = rec.finish().await;
        res.unwrap();
        let results = store.unwrap().results;
        assert_eq!(results.failures.len(), 1);
        assert_eq!(results.failures[0].token_name, "x");
        assert_eq!(results.resolved_names["acme"], 42);
        assert_eq!(results.learned_rate, rate);
    }
}
