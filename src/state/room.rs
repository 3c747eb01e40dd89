//! Journal room held ahead: the disk blocks an outcome will be written to belong to the journal
//! before its request is sent.
//!
//! A full disk must not cost a received secret. The recorder writes an intent, the executor
//! sends the request, and the answer (with a secret the API never shows again) must then reach
//! the journal: if the disk filled in between, that write would fail and the secret be lost. So
//! the journal's file owns, beyond its end, enough blocks for the outcome of every request in
//! flight, taken with `fallocate(FALLOC_FL_KEEP_SIZE)` (the file's size does not change, so the
//! journal's format does not either; tmpfs, ext4, XFS and btrfs support it). A request is sent
//! only once its room is held; when the filesystem cannot give more, no new request is sent,
//! and the answers still on their way land in room already held.
//!
//! On a filesystem without `fallocate` (some network and FUSE filesystems) the journal is
//! written as before, without room held ahead; a warning says so once.

use std::fs::File;
use std::io;

use rustix::fs::{FallocateFlags, fallocate};
use rustix::io::Errno;

/// How much more than needed is taken at once, so that `fallocate` runs once per this many
/// bytes of records and not once per batch.
const AHEAD: u64 = 64 * 1024;

/// The room a journal file holds beyond the records written to it.
#[derive(Debug)]
pub(crate) struct Room {
    /// Bytes of records written.
    written: u64,
    /// The file owns blocks up to this offset.
    held_to: u64,
    /// `fallocate` is not supported here: nothing is held ahead.
    unsupported: bool,
}

impl Room {
    /// The room of a file holding `written` bytes of records and nothing held beyond them.
    pub(crate) fn new(written: u64) -> Room {
        Room {
            written,
            held_to: written,
            unsupported: false,
        }
    }

    /// Makes `file` own the blocks for `need` more bytes after its records: at once when it
    /// already does, otherwise by taking `need` plus [`AHEAD`] (or just `need`, when the disk
    /// has less left). Fails (`ENOSPC`, `EDQUOT`, `EROFS`, ...) when the filesystem cannot give
    /// `need`; what was held before stays held.
    pub(crate) fn hold(&mut self, file: &File, need: u64) -> io::Result<()> {
        let upto = self.written.saturating_add(need);
        if self.unsupported || upto <= self.held_to {
            return Ok(());
        }
        let from = self.held_to.min(self.written);
        for to in [upto.saturating_add(AHEAD), upto] {
            match fallocate(file, FallocateFlags::KEEP_SIZE, from, to - from) {
                Ok(()) => {
                    self.held_to = to;
                    return Ok(());
                }
                Err(Errno::NOSPC | Errno::DQUOT) if to != upto => {}
                Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                    self.unsupported = true;
                    tracing::warn!(
                        "this filesystem cannot reserve journal space ahead (no fallocate): if it fills up during the run, the answers to requests in flight may be lost and listed as possible orphans"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Notes `n` more bytes of records written.
    pub(crate) fn wrote(&mut self, n: u64) {
        self.written = self.written.saturating_add(n);
    }

    /// Bytes held beyond the records.
    #[cfg(test)]
    pub(crate) fn spare(&self) -> u64 {
        if self.unsupported {
            u64::MAX
        } else {
            self.held_to.saturating_sub(self.written)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn room_is_held_beyond_the_end_without_changing_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        let mut room = Room::new(0);
        room.hold(&f, 1000).unwrap();
        assert!(room.spare() >= 1000);
        let meta = f.metadata().unwrap();
        assert_eq!(meta.len(), 0, "the file's size is its records only");
        if !room.unsupported {
            assert!(meta.blocks() * 512 >= 1000, "blocks are held: {meta:?}");
        }
        f.write_all(b"record\n").unwrap();
        room.wrote(7);
        let spare = room.spare();
        // Already held: no new allocation, the spare room shrinks by what was written.
        room.hold(&f, 500).unwrap();
        assert_eq!(room.spare(), spare);
        assert_eq!(std::fs::read(&p).unwrap(), b"record\n");
    }

    #[test]
    fn room_is_taken_ahead_from_the_end_of_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        let records = 1024 * 1024;
        f.write_all(&vec![b'x'; records]).unwrap();
        f.sync_all().unwrap();
        let mut room = Room::new(records as u64);
        room.hold(&f, 1000).unwrap();
        if room.unsupported {
            return;
        }
        // Taken ahead: the next few batches need no new allocation.
        assert!(room.spare() >= 1000 + 60 * 1024, "{room:?}");
        let allocated = f.metadata().unwrap().blocks() * 512;
        assert!(
            allocated >= records as u64 + room.spare(),
            "{allocated} for {room:?}"
        );
        assert!(allocated < 2 * records as u64, "{allocated} for {room:?}");
        // What is written comes out of the room held.
        let spare = room.spare();
        room.wrote(100);
        assert_eq!(room.spare(), spare - 100);
    }
}
