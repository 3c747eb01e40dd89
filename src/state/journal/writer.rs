//! The journal's one writer: the file, the room it holds ahead of its records, the sequence
//! numbers, the intents still waiting for their outcomes (with the room held for those), what
//! was written since the last fsync, and the journal's replacement by a fresh one at a
//! checkpoint. The recorder task decides what to write and when to fsync; every filesystem call
//! of the journal during a run, and all of its bookkeeping, is here.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::JournalRecord;
use super::room::Room;
use crate::fs::atomic::parent_dir;
use crate::fs::errno::is_out_of_space;
use crate::fs::trust::open_secret_new;
use crate::fs::{Fs, FsFile};

/// An open journal, appended to at the end of its records.
#[derive(Debug)]
pub(crate) struct JournalWriter<F: Fs> {
    fs: F,
    path: PathBuf,
    /// Where a replacement is written before it is renamed over `path`.
    next: PathBuf,
    file: F::File,
    room: Room,
    /// The last sequence number given to an intent.
    seq: u64,
    /// Intents without an outcome yet, by sequence number (re-written into each fresh
    /// journal), with the journal room held for their outcomes.
    pending: BTreeMap<u64, (JournalRecord, u64)>,
    /// The sum of the room held for the outcomes of `pending`.
    held: u64,
    /// The intents made pending since the last write: a failed write releases them.
    unwritten: Vec<u64>,
    /// The intents written since the last fsync: a failed fsync releases them.
    unsynced: Vec<u64>,
    /// Whether the journal holds bytes written since its last fsync.
    dirty: bool,
}

/// What a checkpoint's replacement of the journal did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// The fresh journal replaced the old one.
    Yes,
    /// The disk had no room for a fresh journal; the current one (and its room) stays.
    NoRoom,
}

impl<F: Fs> JournalWriter<F> {
    /// Creates a fresh journal at `path` (0600, never over an existing file, never through a
    /// symlink) and makes its name durable. A failure of that is an error (and the file is
    /// removed): a file's fsync does not make its name durable, so a journal whose directory
    /// was not fsync'd can vanish in a power loss with every intent and outcome in it.
    pub(crate) fn create(fs: F, path: &Path, next: PathBuf) -> io::Result<JournalWriter<F>> {
        let file = open_secret_new(&fs, path)?;
        if let Err(e) = fs.sync_dir(parent_dir(path)) {
            let _ = fs.remove_file(path);
            return Err(e);
        }
        let written = file.metadata().map_or(0, |m| m.len);
        let room = Room::new(&file, written);
        Ok(JournalWriter {
            fs,
            path: path.to_path_buf(),
            next,
            file,
            room,
            seq: 0,
            pending: BTreeMap::new(),
            held: 0,
            unwritten: Vec::new(),
            unsynced: Vec::new(),
            dirty: false,
        })
    }

    /// The sequence number the next intent made pending gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Makes `intent` (whose seq is [`next_seq`](Self::next_seq)) pending until its outcome
    /// comes, with `room` bytes held for that outcome, and returns its seq. It is re-written
    /// into each fresh journal while pending. The room must already be held
    /// ([`hold_ahead`](Self::hold_ahead)); until the next [`write`](Self::write) holds, the
    /// intent is released if that write fails, and until the next [`sync`](Self::sync)
    /// holds, if that fsync fails.
    pub(crate) fn pend(&mut self, intent: JournalRecord, room: u64) -> u64 {
        self.seq += 1;
        self.pending.insert(self.seq, (intent, room));
        self.held += room;
        self.unwritten.push(self.seq);
        self.seq
    }

    /// The outcome of intent `seq` came (or its request is never sent): it is no longer
    /// pending, and the room held for its outcome is free for others.
    pub(crate) fn settle(&mut self, seq: u64) {
        if let Some((_, room)) = self.pending.remove(&seq) {
            self.held -= room;
        }
    }

    /// The intents waiting for their outcomes, in order.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &JournalRecord> {
        self.pending.values().map(|(rec, _)| rec)
    }

    /// The room held for the outcomes of the pending intents.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// How many intents wait for their outcomes.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Makes the journal hold room for `more` bytes after its records, beyond the room held
    /// for the outcomes of the pending intents (see [`Room::hold`]).
    pub(crate) fn hold_ahead(&mut self, more: u64) -> io::Result<()> {
        self.room.hold(&self.file, more + self.held)
    }

    /// Writes `records` after the records already written (see [`Room::write`]). When the
    /// write fails, the intents made pending since the last write are released: their
    /// requests are never sent.
    pub(crate) fn write(&mut self, records: &[u8]) -> io::Result<()> {
        let written = self.room.write(&self.file, records);
        let intents = std::mem::take(&mut self.unwritten);
        match written {
            Ok(()) => {
                self.dirty = true;
                self.unsynced.extend(intents);
            }
            Err(_) => intents.into_iter().for_each(|s| self.settle(s)),
        }
        written
    }

    /// Releases the intents made pending since the last write (the batch they came in cannot
    /// be journaled whole): their requests are never sent.
    pub(crate) fn release_unwritten(&mut self) {
        for s in std::mem::take(&mut self.unwritten) {
            self.settle(s);
        }
    }

    /// Whether bytes were written since the last fsync (tests).
    #[cfg(test)]
    pub(crate) fn dirty(&self) -> bool {
        self.dirty
    }

    /// Makes what was written durable (`fdatasync`), when anything was written since the
    /// last time. When the fsync fails, the intents written since the last one are released
    /// (their requests are never sent), and the next call tries again.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.unsynced.clear();
                Ok(())
            }
            Err(e) => {
                for s in std::mem::take(&mut self.unsynced) {
                    self.settle(s);
                }
                Err(e)
            }
        }
    }

    /// Replaces the journal with a fresh one holding `first` (its begin record) and the
    /// pending intents, with the room for their outcomes. The replacement is atomic (a new
    /// 0600 file, fsync'd, renamed over the old one), so a crash at any instant leaves either
    /// the old journal or the new one, never an empty one. The new journal holds its room
    /// before it replaces the old one; when the disk cannot give it, the old journal (and its
    /// room) stays.
    pub(crate) fn checkpoint(&mut self, first: &[u8]) -> io::Result<Replaced> {
        // Intents hold no secret, but the begin record is followed by nothing that does.
        let mut records = zeroize::Zeroizing::new(first.to_vec());
        for rec in self.pending() {
            records.extend(rec.to_line());
        }
        self.replace(&records, self.held)
    }

    /// Replaces the journal with a fresh one holding only `records`, with room for `held`
    /// more bytes (see [`checkpoint`](Self::checkpoint)).
    fn replace(&mut self, records: &[u8], held: u64) -> io::Result<Replaced> {
        let fs = &self.fs;
        let _ = fs.remove_file(&self.next);
        let replaced = (|| {
            let next = open_secret_new(fs, &self.next)?;
            let mut room = Room::new(&next, 0);
            room.hold(&next, records.len() as u64 + held)?;
            room.write(&next, records)?;
            next.sync_data()?;
            fs.rename(&self.next, &self.path)?;
            Ok((next, room))
        })();
        match replaced {
            Ok((next, room)) => {
                // Renamed: the fresh file is the journal from here on, whatever the fsync of
                // its directory answers (records written to the old file would go where no
                // name reaches). That fsync failing, on a full disk too, is an error: the
                // rename may not survive a power loss.
                self.file = next;
                self.room = room;
                fs.sync_dir(parent_dir(&self.path))?;
                Ok(Replaced::Yes)
            }
            Err(e) if is_out_of_space(&e) => {
                let _ = fs.remove_file(&self.next);
                tracing::debug!(error = %e, "no room for a fresh journal; the current one stays");
                Ok(Replaced::NoRoom)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the journal (the state files hold everything it held).
    pub(crate) fn remove(&self) -> io::Result<()> {
        self.fs.remove_file(&self.path)?;
        let _ = self.fs.sync_dir(parent_dir(&self.path));
        Ok(())
    }

    /// Puts `file` in place of the journal's file (tests: a handle that fails).
    #[cfg(test)]
    pub(crate) fn swap_file(&mut self, file: F::File) {
        self.file = file;
    }

    /// The room held beyond the records (tests).
    #[cfg(test)]
    pub(crate) fn spare(&self) -> u64 {
        self.room.spare()
    }

    /// The pending intent `seq` (tests).
    #[cfg(test)]
    pub(crate) fn pending_intent(&self, seq: u64) -> Option<&JournalRecord> {
        self.pending.get(&seq).map(|(rec, _)| rec)
    }

    /// The last sequence number given (tests).
    #[cfg(test)]
    pub(crate) fn last_seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fs::RealFs;

    /// The room taken ahead of what is needed (`room::AHEAD`).
    const AHEAD: u64 = 64 * 1024;

    fn writer(dir: &Path) -> JournalWriter<RealFs> {
        let path = dir.join("j.journal");
        JournalWriter::create(RealFs, &path, dir.join("j.journal.next")).unwrap()
    }

    fn intent(seq: u64, name: &str) -> JournalRecord {
        JournalRecord::Intent {
            seq,
            create: crate::key::CreateKind::Token,
            account_id: 1,
            token_name: name.into(),
            attempt: 1,
            at: "2026-12-07T00:00:00Z".into(),
        }
    }

    fn lines(w: &JournalWriter<RealFs>) -> Vec<JournalRecord> {
        let bytes = std::fs::read(&w.path).unwrap();
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l.iter().any(|b| *b != 0))
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// Pends an intent as the recorder does: its room held first, then its record.
    fn pend(w: &mut JournalWriter<RealFs>, name: &str, room: u64) -> u64 {
        let rec = intent(w.next_seq(), name);
        let line = rec.to_line();
        w.hold_ahead(line.len() as u64 + room).unwrap();
        let seq = w.pend(rec, room);
        w.write(&line).unwrap();
        seq
    }

    #[test]
    fn intents_get_consecutive_seqs_and_their_outcomes_release_their_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        assert_eq!(w.next_seq(), 1);
        assert_eq!(pend(&mut w, "a", 100), 1);
        assert_eq!(pend(&mut w, "b", 30), 2);
        assert_eq!(w.next_seq(), 3);
        assert_eq!(w.last_seq(), 2);
        assert_eq!((w.in_flight(), w.held()), (2, 130));
        assert_eq!(w.pending_intent(2), Some(&intent(2, "b")));
        // An unknown seq (a shipping token's 0, or one settled already) changes nothing.
        w.settle(0);
        w.settle(7);
        assert_eq!((w.in_flight(), w.held()), (2, 130));
        w.settle(1);
        assert_eq!((w.in_flight(), w.held()), (1, 30));
        assert_eq!(w.pending().collect::<Vec<_>>(), [&intent(2, "b")]);
        // Seqs are never given twice, even after their intents settled.
        w.settle(2);
        assert_eq!((w.in_flight(), w.held()), (0, 0));
        assert_eq!(pend(&mut w, "c", 0), 3);
    }

    #[test]
    fn the_room_held_ahead_counts_the_room_of_the_outcomes_to_come() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        w.hold_ahead(100).unwrap();
        assert_eq!(w.spare(), 100 + AHEAD);
        let room = 3 * AHEAD;
        pend(&mut w, "a", room);
        let spare = w.spare();
        assert!(spare >= room, "{spare}");
        // Nothing more is needed beyond the held room: nothing more is taken.
        w.hold_ahead(0).unwrap();
        assert_eq!(w.spare(), spare);
        // More on top of it: held beyond the outcome's room.
        w.hold_ahead(spare - room + 1).unwrap();
        assert_eq!(w.spare(), spare + 1 + AHEAD);
    }

    #[test]
    fn a_failed_write_releases_only_the_intents_it_was_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        pend(&mut w, "a", 10);
        let rec = intent(w.next_seq(), "b");
        let line = rec.to_line();
        w.hold_ahead(line.len() as u64 + 20).unwrap();
        w.pend(rec, 20);
        // A read-only handle: the write fails.
        let file = w.file.try_clone().unwrap();
        w.swap_file(std::fs::File::open(&w.path).unwrap());
        assert!(w.write(&line).is_err());
        assert_eq!((w.in_flight(), w.held()), (1, 10));
        assert!(w.pending_intent(1).is_some());
        // The next write starts afresh.
        w.swap_file(file);
        pend(&mut w, "c", 5);
        assert_eq!((w.in_flight(), w.held()), (2, 15));
    }

    #[test]
    fn intents_left_unwritten_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        pend(&mut w, "a", 10);
        w.pend(intent(2, "b"), 20);
        w.release_unwritten();
        assert_eq!((w.in_flight(), w.held()), (1, 10));
        // A later write or failed fsync does not touch what is already settled.
        w.write(b"").unwrap();
        assert_eq!((w.in_flight(), w.held()), (1, 10));
    }

    #[test]
    fn a_failed_fsync_releases_the_intents_written_since_the_last_one_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        pend(&mut w, "a", 10);
        assert!(w.dirty());
        w.sync().unwrap();
        assert!(!w.dirty());
        // Nothing written since: no fsync (a handle that cannot be fsync'd shows it).
        let file = w.file.try_clone().unwrap();
        w.swap_file(std::fs::File::open("/dev/null").unwrap());
        w.sync().unwrap();
        w.swap_file(file);
        pend(&mut w, "b", 20);
        pend(&mut w, "c", 40);
        assert_eq!(w.held(), 70);
        w.swap_file(std::fs::File::open("/dev/null").unwrap());
        assert!(w.sync().is_err());
        assert_eq!((w.in_flight(), w.held()), (1, 10));
        assert!(w.pending_intent(1).is_some());
        // What was written is still not durable: the next call tries again.
        assert!(w.dirty());
        assert!(w.sync().is_err());
        assert_eq!((w.in_flight(), w.held()), (1, 10));
    }

    /// The real filesystem, whose renames fail with `errno` when it is not 0.
    #[derive(Debug, Clone, Default)]
    struct FailingRename(std::sync::Arc<std::sync::atomic::AtomicI32>);

    impl Fs for FailingRename {
        type File = std::fs::File;
        fn open(&self, path: &Path, how: &crate::fs::OpenHow) -> io::Result<Self::File> {
            RealFs.open(path, how)
        }
        fn create_temp(
            &self,
            dir: &Path,
            prefix: &str,
            suffix: &str,
            mode: u32,
        ) -> io::Result<(PathBuf, Self::File)> {
            RealFs.create_temp(dir, prefix, suffix, mode)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            match self.0.load(std::sync::atomic::Ordering::Relaxed) {
                0 => RealFs.rename(from, to),
                errno => Err(io::Error::from_raw_os_error(errno)),
            }
        }
        fn rename_noclobber(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealFs.rename_noclobber(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            RealFs.remove_file(path)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            RealFs.create_dir_all(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            RealFs.sync_dir(dir)
        }
        fn read_dir(&self, dir: &Path) -> io::Result<Vec<crate::fs::DirEntry>> {
            RealFs.read_dir(dir)
        }
        fn symlink_metadata(&self, path: &Path) -> io::Result<crate::fs::Meta> {
            RealFs.symlink_metadata(path)
        }
        fn metadata(&self, path: &Path) -> io::Result<crate::fs::Meta> {
            RealFs.metadata(path)
        }
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            RealFs.canonicalize(path)
        }
        fn free_space(&self, dir: &Path) -> io::Result<u64> {
            RealFs.free_space(dir)
        }
    }

    #[test]
    fn a_checkpoint_without_room_keeps_the_journal_and_any_other_failure_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FailingRename::default();
        let path = dir.path().join("j.journal");
        let next = dir.path().join("j.journal.next");
        let mut w = JournalWriter::create(fs.clone(), &path, next.clone()).unwrap();
        let rec = intent(w.next_seq(), "a");
        let line = rec.to_line();
        w.hold_ahead(line.len() as u64 + 100).unwrap();
        w.pend(rec, 100);
        w.write(&line).unwrap();
        let before = std::fs::read(&path).unwrap();
        // The disk is full: the current journal (and its room) stays, and the run goes on.
        fs.0.store(libc::ENOSPC, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(w.checkpoint(b"").unwrap(), Replaced::NoRoom);
        assert!(!next.exists());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Any other failure is the run's error.
        fs.0.store(libc::EIO, std::sync::atomic::Ordering::Relaxed);
        assert!(w.checkpoint(b"").is_err());
        // And once the rename works, the fresh journal holds the intent in flight.
        fs.0.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(w.checkpoint(b"").unwrap(), Replaced::Yes);
        assert!(!next.exists());
        assert_eq!(std::fs::read(&path).unwrap()[..line.len()], line[..]);
    }

    #[test]
    fn a_checkpoint_keeps_the_first_record_and_the_intents_in_flight_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        let begin = JournalRecord::Begin {
            endpoint: "http://127.0.0.1:1".into(),
            at: "2026-12-07T00:00:00Z".into(),
        };
        for name in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"] {
            pend(&mut w, name, 100);
        }
        w.settle(2);
        w.settle(5);
        w.sync().unwrap();
        assert_eq!(w.checkpoint(&begin.to_line()).unwrap(), Replaced::Yes);
        let got = lines(&w);
        assert_eq!(got[0], begin);
        let seqs: Vec<u64> = got[1..]
            .iter()
            .map(|r| match r {
                JournalRecord::Intent { seq, .. } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [1, 3, 4, 6, 7, 8, 9, 10, 11, 12]);
        // Exactly the room for their outcomes, and the room taken ahead.
        assert_eq!(w.spare(), 10 * 100 + AHEAD);
        assert!(!dir.path().join("j.journal.next").exists());
        // Appends go after the kept records.
        pend(&mut w, "m", 0);
        assert!(matches!(
            lines(&w).last(),
            Some(JournalRecord::Intent { seq: 13, .. })
        ));
        w.remove().unwrap();
        assert!(!w.path.exists());
    }
}
