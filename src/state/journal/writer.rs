//! The journal's one writer of bytes: the file, the room it holds ahead of its records, and
//! its replacement by a fresh journal at a checkpoint. The recorder task decides what to
//! write and when to fsync; every filesystem call of the journal during a run is made here.

use std::io;
use std::path::{Path, PathBuf};

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
        })
    }

    /// Writes `records` after the records already written (see [`Room::write`]).
    pub(crate) fn write(&mut self, records: &[u8]) -> io::Result<()> {
        self.room.write(&self.file, records)
    }

    /// Makes the journal hold room for `need` more bytes after its records.
    pub(crate) fn hold(&mut self, need: u64) -> io::Result<()> {
        self.room.hold(&self.file, need)
    }

    /// Makes what was written durable (`fdatasync`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Replaces the journal with a fresh one holding only `records`, with room for `held`
    /// more bytes. The replacement is atomic (a new 0600 file, fsync'd, renamed over the old
    /// one), so a crash at any instant leaves either the old journal or the new one, never an
    /// empty one. The new journal holds its room before it replaces the old one; when the disk
    /// cannot give it, the old journal (and its room) stays.
    pub(crate) fn replace(&mut self, records: &[u8], held: u64) -> io::Result<Replaced> {
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
}
