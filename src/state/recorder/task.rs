//! The recorder task: its state and its loop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::oneshot;

use super::handle::{AccountMsg, Ahead, Msg, Receiver};
use super::save_clock::SaveClock;
use crate::fs::{Fs, RealFs};
use crate::key::{CreateKind, TokenKey};
use crate::state::journal::JournalWriter;
use crate::state::{
    HeldSecret, JournalRecord, Outcome, SecretsFile, StateError, StateFile, Store,
    explain_read_only,
};

/// How far back the journal's last records are suspect when a write fails (see `Task::recent`).
const SUSPECT_WINDOW: Duration = Duration::from_millis(200);
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

/// A batch written to the journal whose acknowledgements wait for its fsync.
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
pub(super) struct Task<F: Fs = RealFs> {
    store: Store<F>,
    /// The journal: every filesystem call of the run's records goes through it, and it keeps
    /// their bookkeeping (sequence numbers, intents in flight, the room held, what awaits an
    /// fsync).
    journal: JournalWriter<F>,
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
    recent: VecDeque<(Instant, Vec<TokenKey>)>,
    /// Those keys when the first write failed.
    suspects: Vec<TokenKey>,
    /// Whether the files lag behind what was recorded.
    dirty: bool,
    /// The batches written since the last fsync, in order: acknowledged once it is done.
    waiting: Vec<Written>,
    /// Whether the executor has more requests to send (`RecorderHandle::sends_ahead`).
    pub(super) ahead: Arc<Ahead>,
    saves: SaveClock,
    finish: Option<oneshot::Sender<Result<(), StateError>>>,
    /// This run's id, for the sub accounts it creates (the sealed file's, when it seals).
    run_id: String,
}

impl<F: Fs> Task<F> {
    pub(super) fn new(store: Store<F>, journal: JournalWriter<F>) -> Task<F> {
        let saves = SaveClock::new(store.clock().now());
        let mut task = Task {
            store,
            journal,
            outcome_room: 0,
            broken: None,
            unjournaled: Vec::new(),
            recent: VecDeque::new(),
            suspects: Vec::new(),
            dirty: false,
            waiting: Vec::new(),
            ahead: Arc::new(Ahead::default()),
            saves,
            finish: None,
            run_id: String::new(),
        };
        task.run_id = match task.store.sealing() {
            Some(s) => s.run_id.clone(),
            None => task.store.new_run_id(),
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
            create: CreateKind::Token,
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

    pub(super) async fn run(mut self, mut rx: Receiver) -> (Store<F>, Result<(), StateError>) {
        let mut batch: Vec<Msg> = Vec::new();
        // Journal records hold secrets: the buffer is zeroed when the recorder ends.
        let mut buf = zeroize::Zeroizing::new(Vec::<u8>::new());
        while self.next_batch(&mut rx, &mut batch).await {
            if !batch.is_empty() {
                self.write_batch(
                    std::mem::take(&mut batch),
                    &mut buf,
                    self.store.clock().now_rfc3339(),
                );
            }
            if self.sync_due() {
                self.sync_and_ack();
            }
            if self.finish.is_some() {
                break;
            }
            if self.waiting.is_empty() {
                self.maybe_checkpoint();
            }
        }
        self.sync_and_ack();
        self.finish()
    }

    /// Journals a batch (one write) and holds its acknowledgements for `sync_and_ack`.
    fn write_batch(&mut self, batch: Vec<Msg>, buf: &mut Vec<u8>, now: String) {
        let (seqs, ok) = self.journal_batch(&batch, buf, &now);
        self.waiting.push(Written {
            batch,
            seqs,
            ok,
            now,
            at: self.now(),
        });
    }

    /// When the oldest batch not yet fsync'd was written.
    fn unsynced_since(&self) -> Option<Instant> {
        self.waiting.first().map(|w| w.at)
    }

    /// Whether the written batches must be fsync'd and acknowledged now: only outcomes wait
    /// (see [`OUTCOME_LINGER`]), and only while the executor has more requests to send, whose
    /// intents can carry them.
    fn sync_due(&self) -> bool {
        let Some(since) = self.unsynced_since() else {
            return false;
        };
        let only_outcomes = self
            .waiting
            .iter()
            .all(|w| w.ok && w.batch.iter().all(|m| matches!(m, Msg::Outcome { .. })));
        !only_outcomes
            || !self.ahead.more.load(Ordering::Relaxed)
            || self.now().saturating_duration_since(since) >= OUTCOME_LINGER
    }

    /// Fsyncs what was written since the last fsync, then applies and acknowledges those
    /// batches. False when the fsync failed: their outcomes are then unjournaled, their
    /// intents refused.
    fn sync_and_ack(&mut self) -> bool {
        let mut waiting = std::mem::take(&mut self.waiting);
        let reintroduced = crate::reintroduced::on(crate::reintroduced::Bug::IntentUnsynced)
            && waiting
                .iter()
                .all(|w| w.batch.iter().all(|m| matches!(m, Msg::Intent { .. })));
        // A failed fsync releases the intents it was to make durable (the journal's
        // bookkeeping); they are refused below.
        let synced = reintroduced
            || match self.journal.sync() {
                Ok(()) => true,
                Err(e) => {
                    self.write_failed(e);
                    for w in &mut waiting {
                        w.ok = false;
                    }
                    false
                }
            };
        for mut w in waiting {
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
        let wait = until.saturating_duration_since(self.now());
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
                self.journal.settle(*seq);
                match self.journaled(key, outcome) {
                    Ok(outcome) => buf.extend(
                        JournalRecord::Outcome {
                            seq: *seq,
                            create: CreateKind::Token,
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
        self.journal_accounts(batch, &mut seqs, buf, now, &mut seal_failed);
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
        if seal_failed.is_some() {
            // The batch fails like a failed write (below): its intents are never sent.
            self.journal.release_unwritten();
        }
        // A failed write releases the batch's intents (the journal's bookkeeping).
        let written = self.journal.write(buf).and_then(|()| {
            // A secret that could not be sealed is not in the journal: fail like a write.
            seal_failed.map_or(Ok(()), Err)
        });
        if let Err(e) = written {
            self.write_failed(e);
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

    /// Adds the batch's sub-account records to `buf`: each outcome settles its intent; each
    /// intent gets the next sequence number and stays pending (re-written into each fresh
    /// journal) until its outcome comes. Accounts are few: no room is held for them, and their
    /// records are fsync'd at once.
    fn journal_accounts(
        &mut self,
        batch: &[Msg],
        seqs: &mut [u64],
        buf: &mut Vec<u8>,
        now: &str,
        seal_failed: &mut Option<std::io::Error>,
    ) {
        for (m, slot) in batch.iter().zip(seqs.iter_mut()) {
            let Msg::Account { record, .. } = m else {
                continue;
            };
            match record {
                AccountMsg::Outcome { seq, name, outcome } => {
                    // A shipping token's record (seq 0) settles no intent: no intent has 0.
                    self.journal.settle(*seq);
                    match self.store.journaled_account(name, outcome) {
                        Ok(outcome) => buf.extend(
                            JournalRecord::AccountOutcome {
                                seq: *seq,
                                name: name.clone(),
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
                AccountMsg::Intent {
                    name,
                    attempt,
                    known,
                } => {
                    // Once the state is broken no request may start.
                    if self.broken.is_some() {
                        continue;
                    }
                    let rec = JournalRecord::AccountIntent {
                        seq: self.journal.next_seq(),
                        name: name.clone(),
                        attempt: *attempt,
                        known: known.clone(),
                        run_id: Some(self.run_id.clone()),
                        at: now.to_owned(),
                    };
                    buf.extend(rec.to_line());
                    *slot = self.journal.pend(rec, 0);
                }
            }
        }
    }

    /// Notes the keys of a batch just made durable (see `recent`).
    fn remember(&mut self, batch: &[Msg]) {
        let now = self.now();
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
        let now = self.now();
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
                    seq: self.journal.next_seq() + new.len() as u64,
                    create: CreateKind::Token,
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
        let more = (buf.len() + lines.len()) as u64 + rooms;
        if new.is_empty() {
            // Nothing new is sent; an outcome bigger than its room may have used the spare
            // room of others: take more if the disk has it.
            let _ = self.journal.hold_ahead(more);
            return;
        }
        if let Err(e) = self.journal.hold_ahead(more) {
            let need = more + self.journal.held();
            let why = format!(
                "cannot hold {} KiB of room in journal file {} for the {} requests in flight and the {} about to be sent: {e}; no new request was sent, and the answers in flight were written to room held before",
                need.div_ceil(1024),
                self.store.paths().journal.display(),
                self.journal.in_flight(),
                new.len()
            );
            tracing::warn!("{why}");
            self.broken = Some(why);
            return;
        }
        buf.extend(lines);
        for (i, rec, room) in new {
            seqs[i] = self.journal.pend(rec, room);
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
                        Some(why) => Err(broken_state(&self.store.paths().journal, why)),
                    };
                    let _ = ack.send(res);
                }
                Msg::Outcome {
                    key, outcome, ack, ..
                } => {
                    // Applied in memory even if the journal write failed: the final save may
                    // still succeed, and the error tells the executor to stop.
                    let applied = self.store.apply(&key, outcome, now);
                    self.dirty = true;
                    self.saves.outcomes_since += 1;
                    let res = if journal_ok {
                        Ok(applied)
                    } else {
                        self.unjournaled.push(key);
                        Err(broken_state(
                            &self.store.paths().journal,
                            self.broken.as_deref().unwrap_or_default(),
                        ))
                    };
                    let _ = ack.send(res);
                }
                Msg::Account { record, ack } => {
                    let res = match (&self.broken, &record) {
                        (Some(why), AccountMsg::Intent { .. }) => {
                            Err(broken_state(&self.store.paths().journal, why))
                        }
                        (Some(why), AccountMsg::Outcome { .. }) if !journal_ok => {
                            Err(broken_state(&self.store.paths().journal, why))
                        }
                        _ => Ok(s),
                    };
                    // Applied only once durable (an intent refused is never sent).
                    if res.is_ok() {
                        let record = match record {
                            AccountMsg::Intent { name, known, .. } => {
                                crate::state::accounts::AccountRecord::Intent {
                                    seq: s,
                                    name,
                                    known,
                                    run_id: Some(self.run_id.clone()),
                                    at: now.to_owned(),
                                }
                            }
                            AccountMsg::Outcome { seq, name, outcome } => {
                                crate::state::accounts::AccountRecord::Outcome {
                                    seq,
                                    name,
                                    outcome,
                                    at: now.to_owned(),
                                }
                            }
                        };
                        let run_id = self.run_id.clone();
                        self.store.apply_account(record, &run_id);
                        self.dirty = true;
                    }
                    let _ = ack.send(res);
                }
                Msg::Failure(f) => {
                    self.store.ledger_mut().note_failure(f);
                    self.dirty = true;
                }
                Msg::ResolvedName(name, id) => {
                    if self.store.ledger_mut().resolve_name(name, id) {
                        self.dirty = true;
                    }
                }
                Msg::LearnedRate(rate) => {
                    if self.store.ledger_mut().set_learned_rate(rate) {
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
        if self.dirty
            && self.broken.is_none()
            && self
                .saves
                .due(self.store.ledger().token_count(), self.now())
        {
            let started = self.now();
            match self.checkpoint() {
                Ok(()) => {
                    self.dirty = false;
                    let now = self.now();
                    self.saves
                        .saved(now.saturating_duration_since(started), now);
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
        let now = self.now();
        self.saves.tick(now);
    }

    /// Seals the secrets received since the last checkpoint into a new sealed file (when the
    /// run seals), saves the files, then replaces the journal with one holding only the intents
    /// still in flight. The results file never names a token before its secret is in the
    /// secrets file or a listed sealed file (invariant 1): the secrets are written first. The
    /// replacement is atomic (a new 0600 file, fsync'd, renamed over the old one), so a crash
    /// at any instant leaves either the old journal or the new one, never an empty one.
    fn checkpoint(&mut self) -> Result<(), StateError> {
        if crate::reintroduced::on(crate::reintroduced::Bug::CheckpointAheadOfSealed) {
            self.store.save()?;
            self.seal_received()?;
        } else {
            self.seal_received()?;
            self.store.save()?;
        }
        match self.journal.checkpoint(&begin_record(&self.store)) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.journal_error(e)),
        }
    }

    /// Notes the requests still in flight as possible orphans, saves, and removes the journal
    /// when the files hold everything it held.
    fn finish(mut self) -> (Store<F>, Result<(), StateError>) {
        // Requests still in flight (abandoned by a second Ctrl-C or a drain timeout) are
        // possible orphans now; the journal is kept so a later replay notes them too
        // (idempotently).
        for rec in self.journal.pending() {
            if let JournalRecord::Intent {
                account_id,
                token_name,
                at,
                ..
            } = rec
            {
                self.store.ledger_mut().note_orphan(
                    &TokenKey {
                        account_id: *account_id,
                        token_name: token_name.clone(),
                    },
                    "the run stopped while this request was in flight; a token may have been created",
                    at,
                );
            }
        }
        // The secrets first, then the results file that names their tokens (invariant 1).
        let res = self
            .seal_received()
            .and_then(|()| self.store.save())
            .and_then(|()| {
                if self.journal.in_flight() == 0 {
                    self.journal.remove().map_err(|e| self.journal_error(e))?;
                }
                Ok(())
            });
        if res.is_err() {
            // What no disk holds, or may not: named to the user, since no file can.
            let mut unsaved: Vec<TokenKey> = std::mem::take(&mut self.unjournaled);
            unsaved.append(&mut self.suspects);
            unsaved.extend(self.journal.pending().filter_map(|rec| match rec {
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
            self.store.set_unsaved(unsaved);
        }
        let res = match (&self.broken, res) {
            (Some(why), Ok(())) => Err(broken_state(&self.store.paths().results, why)),
            (_, r) => r,
        };
        if let Some(ack) = self.finish.take() {
            let _ = ack.send(Ok(()));
        }
        (self.store, res)
    }

    /// When the run seals: writes the secrets received since the last call into a new sealed
    /// file, journaling its name and digest first (so a run killed before the next save still
    /// gets it listed), and lists it in the results file (saved next).
    fn seal_received(&mut self) -> Result<(), StateError> {
        let journal = &mut self.journal;
        let journal_path = self.store.paths().journal.clone();
        let at = self.store.clock().now_rfc3339();
        let sealed = self.store.seal_run(|file| {
            let line = JournalRecord::Sealed {
                file: file.clone(),
                at,
            }
            .to_line();
            journal
                .write(&line)
                .and_then(|()| journal.sync())
                .map_err(|source| StateError::Write {
                    kind: StateFile::Journal,
                    path: journal_path,
                    source: explain_read_only(source),
                })
        });
        if let Some(path) = sealed? {
            tracing::info!(file = %path.display(), "sealed the secrets received");
        }
        Ok(())
    }

    /// The monotonic time now, from the store's clock.
    fn now(&self) -> Instant {
        self.store.clock().now()
    }

    fn journal_error(&self, source: std::io::Error) -> StateError {
        StateError::Write {
            kind: StateFile::Journal,
            path: self.store.paths().journal.clone(),
            source: explain_read_only(source),
        }
    }
}

/// The first line of every journal: the endpoint its records are bound to (invariant 3).
pub(super) fn begin_record<F: Fs>(store: &Store<F>) -> Vec<u8> {
    match &store.results().api_url {
        Some(endpoint) => JournalRecord::Begin {
            endpoint: endpoint.clone(),
            at: store.clock().now_rfc3339(),
        }
        .to_line(),
        None => Vec::new(),
    }
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
mod tests;
