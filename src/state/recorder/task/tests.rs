#![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
#![allow(clippy::unwrap_used)]
use std::sync::atomic::Ordering;

use super::super::save_clock::{MAX_SAVE_INTERVAL, SAVE_INTERVAL};
use super::super::{Recorder, RecorderHandle};
use super::*;
use crate::secret::Secret;
use crate::state::sealed::{Identities, Recipients};
use crate::state::{Applied, Failure, StatePaths};

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
        replayed.secrets().get(&key("a")).unwrap().token.expose(),
        "sek-a"
    );
    assert_eq!(replayed.recovery().interrupted, 1);
    assert_eq!(replayed.results().possible_orphans[0].token_name, "b");
    let (store, res) = rec.finish().await;
    res.unwrap();
    assert_eq!(
        store.unwrap().results().get(&key("a")).unwrap().token_id,
        10
    );
    // An intent without outcome keeps the journal so the next run reports it.
    assert!(paths.journal.exists());
    let again = Store::open(paths.clone(), Some("http://127.0.0.1:1")).unwrap();
    assert!(!paths.journal.exists());
    assert_eq!(again.results().possible_orphans.len(), 1);
    assert_eq!(again.results().possible_orphans[0].ambiguous_attempts, 1);
}

fn identity(dir: &std::path::Path) -> (Recipients, Identities) {
    use age::secrecy::ExposeSecret;
    let key = age::x25519::Identity::generate();
    let file = dir.join("key.txt");
    std::fs::write(&file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    (
        Recipients::new(vec![key.to_public()]).unwrap(),
        Identities::load(&file).unwrap(),
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
    ids: Identities,
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
    assert_eq!(store.results().get(&key("b")).unwrap().token_id, 11);
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
    assert_eq!(next.results().get(&key("a")).unwrap().token_id, 10);
    assert_eq!(next.results().possible_orphans[0].token_name, "b");
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
    let journal = JournalWriter::create(RealFs, &paths.journal, paths.next_journal()).unwrap();
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
    let bytes = std::fs::read(&t.store.paths().journal).unwrap();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    assert!(
        bytes[end..].iter().all(|b| *b == 0),
        "records after the room"
    );
    String::from_utf8(bytes[..end].to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        // The endpoint every journal starts with (checked where it matters).
        .filter(|r| !matches!(r, JournalRecord::Begin { .. }))
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
    assert!(!clock(true, 2, recent).due(12, Instant::now()));
    assert!(clock(true, 3, recent).due(12, Instant::now()));
    assert!(clock(true, 0, recent).due(0, Instant::now()));
    // Not before the next save time, however much is new.
    assert!(!clock(false, 100, recent).due(12, Instant::now()));
    assert!(!clock(false, 0, MAX_SAVE_INTERVAL * 2).due(12, Instant::now()));
    // A minute without a save: due even with few new outcomes.
    assert!(clock(true, 0, MAX_SAVE_INTERVAL + recent).due(1000, Instant::now()));
    assert!(!clock(true, 0, MAX_SAVE_INTERVAL - recent).due(1000, Instant::now()));
}

#[test]
fn a_slow_save_spaces_the_next_ones_and_the_clock_moves_on() {
    let mut clock = SaveClock::new(Instant::now());
    clock.outcomes_since = 7;
    clock.last = Instant::now() - Duration::from_secs(100);
    clock.saved(Duration::from_secs(1), Instant::now());
    assert_eq!(clock.outcomes_since, 0);
    assert!(clock.last.elapsed() < Duration::from_secs(50));
    assert_eq!(clock.every, Duration::from_secs(30));
    clock.saved(Duration::from_millis(10), Instant::now());
    assert_eq!(clock.every, SAVE_INTERVAL);
    // Not yet due: tick leaves the next save time alone.
    let next = clock.next;
    clock.tick(Instant::now());
    assert_eq!(clock.next, next);
    // Due: the next one is an interval from now.
    clock.every = Duration::from_secs(10);
    clock.next = Instant::now() - Duration::from_millis(1);
    let before = Instant::now();
    clock.tick(Instant::now());
    assert!(clock.next >= before + Duration::from_secs(10));
    assert!(clock.next <= Instant::now() + Duration::from_secs(10));
}

#[test]
fn the_room_for_an_outcome_covers_its_record_and_grows_with_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(dir.path());
    let line = JournalRecord::Outcome {
        seq: 123,
        create: CreateKind::Token,
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
    assert_eq!(t.journal.last_seq(), 2);
    assert_eq!(r1.blocking_recv().unwrap().unwrap(), 1);
    assert_eq!(r2.blocking_recv().unwrap().unwrap(), 2);
    let lines = journal_lines(&t);
    assert_eq!(lines.iter().map(intent_seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(intent_seq(t.journal.pending_intent(1).unwrap()), 1);
    assert_eq!(intent_seq(t.journal.pending_intent(2).unwrap()), 2);
    let rooms = t.room_for(&key("a")) + t.room_for(&big);
    assert_eq!(t.journal.held(), rooms);
    assert!(
        t.journal.spare() >= t.journal.held(),
        "{} for {}",
        t.journal.spare(),
        t.journal.held()
    );

    // An outcome frees its intent's room; the next intent holds room beside the rest.
    let (m, r) = outcome_msg(2, &big, created(10, "sek"));
    let (seqs, ok) = step(&mut t, vec![m]);
    assert!(ok);
    assert_eq!(seqs, vec![2]);
    assert_eq!(r.blocking_recv().unwrap().unwrap(), Applied::Recorded);
    assert_eq!(t.journal.held(), t.room_for(&key("a")));
    assert_eq!(t.journal.in_flight(), 1);
    assert_eq!(t.saves.outcomes_since, 1);
    let big2 = key(&"m".repeat(80_000));
    let (m3, r3) = intent_msg(&big2);
    let (seqs, _) = step(&mut t, vec![m3]);
    assert_eq!(seqs, vec![3]);
    assert_eq!(r3.blocking_recv().unwrap().unwrap(), 3);
    assert_eq!(t.journal.held(), t.room_for(&key("a")) + t.room_for(&big2));
    assert!(
        t.journal.spare() >= t.journal.held(),
        "{} for {}",
        t.journal.spare(),
        t.journal.held()
    );
    assert_eq!(journal_lines(&t).len(), 4);
}

/// Journals one batch as `run` does, leaving its fsync and acknowledgements to
/// `sync_and_ack`. Returns each message's sequence number and whether the write held.
fn write(t: &mut Task, batch: Vec<Msg>) -> (Vec<u64>, bool) {
    t.write_batch(batch, &mut Vec::new(), NOW.into());
    let w = t.waiting.last().unwrap();
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
    assert!(t.journal.dirty());
    assert!(matches!(ra.try_recv(), Err(TryRecvError::Empty)));
    let lines = journal_lines(&t);
    assert!(
        matches!(&lines[2], JournalRecord::Outcome { seq: 1, .. }),
        "{lines:?}"
    );
    assert!(t.store.results().get(&key("a")).is_none());
    // The next intent cannot wait: one fsync makes both durable, then both are acknowledged.
    let (m, mut rc) = intent_msg(&key("c"));
    write(&mut t, vec![m]);
    assert!(t.sync_due());
    assert!(t.sync_and_ack());
    assert!(!t.journal.dirty());
    assert_eq!(ra.try_recv().unwrap().unwrap(), Applied::Recorded);
    assert_eq!(rc.try_recv().unwrap().unwrap(), 3);
    assert_eq!(t.store.results().get(&key("a")).unwrap().token_id, 10);
    assert!(t.waiting.is_empty());
    // An outcome waits at most OUTCOME_LINGER...
    let (m, _rb) = outcome_msg(2, &key("b"), created(11, "sek-b"));
    write(&mut t, vec![m]);
    assert!(!t.sync_due());
    t.waiting[0].at = Instant::now() - OUTCOME_LINGER;
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
    assert!(t.journal.held() > 0 && t.journal.pending_intent(2).is_some());
    // Both were written; the fsync that was to carry them fails (a handle that cannot
    // be fsync'd stands in for a disk error).
    t.journal
        .swap_file(std::fs::File::open("/dev/null").unwrap());
    assert!(!t.sync_and_ack());
    assert!(t.broken.is_some());
    // The outcome is applied but reported, and named if the final save fails too.
    assert!(ra.blocking_recv().unwrap().is_err());
    assert_eq!(t.store.results().get(&key("a")).unwrap().token_id, 10);
    assert_eq!(t.unjournaled, [key("a")]);
    // The intent is refused (never sent), its room released.
    assert!(rb.blocking_recv().unwrap().is_err());
    assert!(t.journal.in_flight() == 0);
    assert_eq!(t.journal.held(), 0);
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
    assert_eq!(
        store.unwrap().results().get(&key("a")).unwrap().token_id,
        10
    );
}

#[test]
fn a_failed_journal_write_refuses_its_intents_and_releases_their_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    let held = t.journal.held();
    // The room is held already; the write itself fails (a read-only handle).
    t.journal
        .swap_file(std::fs::File::open(&t.store.paths().journal).unwrap());
    let (m, r) = intent_msg(&key("b"));
    let (_, ok) = step(&mut t, vec![m]);
    assert!(!ok);
    assert!(r.blocking_recv().unwrap().is_err());
    assert_eq!(t.journal.held(), held);
    assert_eq!(t.journal.in_flight(), 1);
    assert!(t.broken.is_some());
    // Once broken, no intent is journaled, and an outcome is applied but reported.
    let (m, r) = outcome_msg(1, &key("a"), created(10, "sek"));
    let (_, ok) = step(&mut t, vec![m]);
    assert!(!ok);
    assert!(r.blocking_recv().unwrap().is_err());
    assert_eq!(t.store.results().get(&key("a")).unwrap().token_id, 10);
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
    assert_eq!(t.store.results().resolved_names["acme"], 6);
    t.dirty = false;
    let rate = Some(crate::state::LearnedRate {
        per_second: Some(10.0),
        in_flight: None,
        kind: crate::state::LimitKind::Rate,
        endpoint: "http://127.0.0.1:1".into(),
        at: NOW.into(),
    });
    step(&mut t, vec![Msg::LearnedRate(rate.clone())]);
    assert!(t.dirty);
    assert_eq!(t.store.results().learned_rate, rate);
    t.dirty = false;
    step(&mut t, vec![Msg::LearnedRate(rate)]);
    assert!(!t.dirty);
    step(&mut t, vec![Msg::LearnedRate(None)]);
    assert!(t.dirty);
    assert_eq!(t.store.results().learned_rate, None);
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
    let results = t.store.paths().results.clone();
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
    // Bound to the run's endpoint from its first line (invariant 3).
    let text = std::fs::read_to_string(&t.store.paths().journal).unwrap();
    let first: JournalRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        matches!(&first, JournalRecord::Begin { endpoint, .. } if endpoint == "http://127.0.0.1:1"),
        "{first:?}"
    );
    // The fresh journal holds exactly the room for b's outcome, plus the room taken
    // ahead (64 KiB, `room::AHEAD`).
    assert_eq!(
        t.journal.spare(),
        t.journal.held() + 64 * 1024,
        "{}",
        t.journal.spare()
    );
    assert!(t.saves.next > Instant::now());
}

#[test]
fn a_checkpoint_that_cannot_replace_the_journal_fails_unless_the_disk_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    // Something sits where the next journal is made (not a file: it cannot be removed).
    let mut next = t.store.paths().journal.as_os_str().to_owned();
    next.push(".next");
    std::fs::create_dir(std::path::PathBuf::from(next)).unwrap();
    let err = t.checkpoint().unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    assert_eq!(journal_lines(&t).len(), 1);
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
        per_second: Some(10.0),
        in_flight: None,
        kind: crate::state::LimitKind::Rate,
        endpoint: "http://127.0.0.1:1".into(),
        at: NOW.into(),
    });
    h.learned_rate(rate.clone());
    drop(h);
    let (store, res) = rec.finish().await;
    res.unwrap();
    let store = store.unwrap();
    let results = store.results();
    assert_eq!(results.failures.len(), 1);
    assert_eq!(results.failures[0].token_name, "x");
    assert_eq!(results.resolved_names["acme"], 42);
    assert_eq!(results.learned_rate, rate);
}

#[test]
fn a_sub_account_intent_takes_the_next_seq_and_its_outcome_settles_it() {
    use crate::state::accounts::AccountOutcome;
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    let (ack, r) = oneshot::channel();
    let m = Msg::Account {
        record: AccountMsg::Intent {
            name: "pay".into(),
            attempt: 1,
            known: vec![],
        },
        ack,
    };
    let (seqs, ok) = step(&mut t, vec![m]);
    assert!(ok);
    assert_eq!(seqs, [2]);
    assert_eq!(r.blocking_recv().unwrap().unwrap(), 2);
    assert_eq!(t.journal.in_flight(), 2);
    assert!(
        matches!(journal_lines(&t).last(), Some(JournalRecord::AccountIntent { seq: 2, name, .. }) if name == "pay"),
        "{:?}",
        journal_lines(&t)
    );
    let (ack, r) = oneshot::channel();
    let m = Msg::Account {
        record: AccountMsg::Outcome {
            seq: 2,
            name: "pay".into(),
            outcome: AccountOutcome::Created {
                account_id: 77,
                created_at: NOW.into(),
            },
        },
        ack,
    };
    let (_, ok) = step(&mut t, vec![m]);
    assert!(ok);
    r.blocking_recv().unwrap().unwrap();
    assert_eq!(t.journal.in_flight(), 1);
    assert!(
        matches!(
            journal_lines(&t).last(),
            Some(JournalRecord::AccountOutcome { seq: 2, .. })
        ),
        "{:?}",
        journal_lines(&t)
    );
}

#[test]
fn a_failed_write_names_the_records_made_durable_just_before_it_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    // A batch made durable long ago is forgotten when the next one is noted.
    t.recent
        .push_back((Instant::now() - 2 * SUSPECT_WINDOW, vec![key("old")]));
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    assert_eq!(t.recent.len(), 1);
    // The write after it fails: what was just made durable is suspect (a filesystem turned
    // read-only may drop it), what is older is not.
    t.journal
        .swap_file(std::fs::File::open(&t.store.paths().journal).unwrap());
    let (m, _r) = intent_msg(&key("b"));
    step(&mut t, vec![m]);
    assert!(t.broken.is_some());
    assert_eq!(t.suspects, [key("a")]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_made_durable_exactly_at_the_windows_edge_is_still_suspect() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    // The clock is paused: the batch is exactly SUSPECT_WINDOW old when the next ones come.
    t.recent
        .push_back((Instant::now() - SUSPECT_WINDOW, vec![key("edge")]));
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    t.journal
        .swap_file(std::fs::File::open(&t.store.paths().journal).unwrap());
    let (m, _r) = intent_msg(&key("b"));
    step(&mut t, vec![m]);
    assert_eq!(t.suspects, [key("edge"), key("a")]);
}

fn account_intent_msg(name: &str) -> (Msg, oneshot::Receiver<Result<u64, StateError>>) {
    let (ack, rx) = oneshot::channel();
    let m = Msg::Account {
        record: AccountMsg::Intent {
            name: name.into(),
            attempt: 1,
            known: vec![],
        },
        ack,
    };
    (m, rx)
}

fn account_outcome_msg(seq: u64, name: &str) -> (Msg, oneshot::Receiver<Result<u64, StateError>>) {
    let (ack, rx) = oneshot::channel();
    let m = Msg::Account {
        record: AccountMsg::Outcome {
            seq,
            name: name.into(),
            outcome: crate::state::accounts::AccountOutcome::Created {
                account_id: 77,
                created_at: NOW.into(),
            },
        },
        ack,
    };
    (m, rx)
}

#[test]
fn once_broken_a_sub_account_intent_is_refused_and_its_outcome_kept_while_the_journal_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, r) = account_intent_msg("pay");
    step(&mut t, vec![m]);
    assert_eq!(r.blocking_recv().unwrap().unwrap(), 1);
    t.broken = Some("a save failed".into());
    // No new create starts.
    let (m, r) = account_intent_msg("ops");
    step(&mut t, vec![m]);
    assert!(r.blocking_recv().unwrap().is_err());
    assert_eq!(t.journal.in_flight(), 1);
    // The answer of the one in flight is journaled, so it is acknowledged.
    let (m, r) = account_outcome_msg(1, "pay");
    step(&mut t, vec![m]);
    assert_eq!(r.blocking_recv().unwrap().unwrap(), 1);
    assert!(t.store.results().accounts_created.contains_key("pay"));
}

#[test]
fn a_sub_account_outcome_the_journal_cannot_take_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = account_intent_msg("pay");
    step(&mut t, vec![m]);
    t.journal
        .swap_file(std::fs::File::open(&t.store.paths().journal).unwrap());
    let (m, r) = account_outcome_msg(1, "pay");
    let (_, ok) = step(&mut t, vec![m]);
    assert!(!ok);
    assert!(r.blocking_recv().unwrap().is_err());
    assert!(!t.store.results().accounts_created.contains_key("pay"));
}

#[test]
fn no_room_for_more_requests_says_how_much_was_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    let held = t.journal.held();
    // A name longer than the room taken ahead: the journal must hold more, and cannot (a
    // read-only handle stands in for a full disk).
    let big = key(&"n".repeat(80_000));
    t.journal
        .swap_file(std::fs::File::open(&t.store.paths().journal).unwrap());
    let (m, r) = intent_msg(&big);
    step(&mut t, vec![m]);
    assert!(r.blocking_recv().unwrap().is_err());
    let line = JournalRecord::Intent {
        seq: 2,
        create: CreateKind::Token,
        account_id: big.account_id,
        token_name: big.token_name.clone(),
        attempt: 1,
        at: NOW.into(),
    }
    .to_line();
    let need = line.len() as u64 + t.room_for(&big) + held;
    let why = t.broken.clone().unwrap();
    assert!(
        why.contains(&format!("cannot hold {} KiB", need.div_ceil(1024))),
        "{why}"
    );
    assert!(
        why.contains("for the 1 requests in flight and the 1 about to be sent"),
        "{why}"
    );
}

#[test]
fn when_the_final_save_fails_the_requests_in_flight_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path());
    let (m, _r) = intent_msg(&key("a"));
    step(&mut t, vec![m]);
    // Something the save cannot replace sits where the results file goes.
    let results = t.store.paths().results.clone();
    std::fs::create_dir(&results).unwrap();
    std::fs::write(results.join("x"), b"x").unwrap();
    let (store, res) = t.finish();
    assert!(res.is_err());
    assert_eq!(store.unsaved(), [key("a")]);
}
