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
    /// symlink) and makes its name durable (best effort: a failure shows at the first fsync).
    pub(crate) fn create(fs: F, path: &Path, next: PathBuf) -> io::Result<JournalWriter<F>> {
        let file = open_secret_new(&fs, path)?;
        let _ = fs.sync_dir(parent_dir(path));
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
            fs.sync_dir(parent_dir(&self.path))?;
            Ok((next, room))
        })();
        match replaced {
            Ok((next, room)) => {
                self.file = next;
                self.room = room;
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
