//! Journal room held ahead: the disk blocks an outcome will be written to belong to the journal
//! before its request is sent.
//!
//! A full disk must not cost a received secret. The recorder writes an intent, the executor
//! sends the request, and the answer (with a secret the API never shows again) must then reach
//! the journal: if the disk filled in between, that write would fail and the secret be lost. So
//! the journal's file owns, beyond its records, enough blocks for the outcome of every request
//! in flight. A request is sent only once its room is held; when the filesystem cannot give
//! more, no new request is sent, and the answers still on their way land in room already held.
//!
//! How the room is held depends on the filesystem:
//! - ext4, XFS and tmpfs overwrite a file's blocks in place: the room is zero bytes written
//!   ahead of the records (the journal's tail is zeros up to its size, which replay skips).
//!   A record then lands in blocks the file already owns, within its size, so the fsync that
//!   follows each batch has no size or block allocation to record, as it has after an append
//!   (the size changed) or a write into `fallocate`d blocks (an extent changed state). On this
//!   project's ext4 test machine that is about a third of an fsync's CPU (a 200-byte record
//!   and `fdatasync`: 81 µs against 129 µs appended, 119 µs into `fallocate`d blocks).
//!   (On XFS a reflink copy of the journal taken during the run, such as `cp` makes by
//!   default from coreutils 9, shares its blocks: the overwrites then need new ones, and a
//!   full disk can refuse an answer's record, which the run then names as unsaved. Copy the
//!   state directory between runs.)
//! - elsewhere (btrfs and other copy-on-write filesystems, where an overwrite needs new
//!   blocks; overlayfs, whose lower filesystem is unknown) with
//!   `fallocate(FALLOC_FL_KEEP_SIZE)`: the blocks are owned beyond the file's size, which
//!   stays that of its records;
//! - on a filesystem without `fallocate` (some network and FUSE filesystems) nothing is held
//!   ahead; a warning says so once.
//!
//! That choice is Linux's (`fallocate` and the `statfs` magic numbers are Linux-only). On other
//! systems (macOS) the journal takes the portable way: zeros written ahead, on any filesystem,
//! with no detection. The same guarantee holds where the filesystem overwrites a file's blocks
//! in place; on a copy-on-write one (APFS) an overwrite may need new blocks, and if a full disk
//! refuses one, the run names the request as unsaved, as it does on Linux when a write fails.
//! `build.rs` sets `journal_room_by_filesystem` for Linux, unless
//! `LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM=1`, which runs the portable way here (CI runs the unit
//! tests so).

use std::io;

use crate::fs::FsFile;

/// How much more than needed is taken at once, so that the room grows once per this many
/// bytes of records and not once per batch.
const AHEAD: u64 = 64 * 1024;

/// Filesystem magic numbers (Linux's `statfs(2)`) of the filesystems that overwrite in place.
#[cfg(journal_room_by_filesystem)]
const EXT4_SUPER_MAGIC: u64 = 0xEF53;
#[cfg(journal_room_by_filesystem)]
const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
#[cfg(journal_room_by_filesystem)]
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// How a journal file holds its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Zero bytes written ahead of the records, within the file's size.
    Zeros,
    /// Blocks allocated beyond the file's size (`FALLOC_FL_KEEP_SIZE`). Linux only: the
    /// portable way never takes it.
    #[cfg_attr(not(journal_room_by_filesystem), allow(dead_code))]
    Reserve,
    /// Nothing can be held ahead (no `fallocate` here).
    Nothing,
}

impl Hold {
    /// The way for a file on this filesystem (see the module's documentation).
    #[cfg(journal_room_by_filesystem)]
    pub(crate) fn for_file(file: &impl FsFile) -> Hold {
        // Debug builds only: lets the disk-full tests (on a tmpfs) cover the `fallocate` way.
        #[cfg(debug_assertions)]
        if std::env::var_os("LOGZIO_TOKENS_TEST_JOURNAL_ROOM").is_some_and(|v| v == "reserve") {
            return Hold::Reserve;
        }
        match file.filesystem_magic() {
            Ok(EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC | TMPFS_MAGIC) => Hold::Zeros,
            _ => Hold::Reserve,
        }
    }

    /// The portable way (see the module's documentation): zeros, whatever the filesystem.
    #[cfg(not(journal_room_by_filesystem))]
    pub(crate) fn for_file(_file: &impl FsFile) -> Hold {
        Hold::Zeros
    }
}

/// Where a journal's records are written: its file (a test can make one that fails part way).
pub(crate) trait WriteAt {
    /// Writes some of `buf` at `offset`, as `pwrite(2)`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
}

impl<T: FsFile> WriteAt for T {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FsFile::write_at(self, buf, offset)
    }
}

/// Writes all of `bytes` at `offset`; returns how many reached the file, also when the write
/// failed part way.
fn write_all_at(file: &impl WriteAt, bytes: &[u8], offset: u64) -> (u64, io::Result<()>) {
    let mut wrote = 0;
    while wrote < bytes.len() {
        match file.write_at(&bytes[wrote..], offset + wrote as u64) {
            Ok(0) => return (wrote as u64, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => wrote += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (wrote as u64, Err(e)),
        }
    }
    (wrote as u64, Ok(()))
}

/// The room a journal file holds beyond the records written to it, and where the next
/// record goes.
#[derive(Debug)]
pub(crate) struct Room {
    /// Bytes of records written: the next record is written at this offset.
    written: u64,
    /// The file owns blocks up to this offset (with [`Hold::Zeros`], its size).
    held_to: u64,
    how: Hold,
    /// The last write stopped part way through a record.
    torn: bool,
}

impl Room {
    /// The room of a file holding `written` bytes of records and nothing beyond them.
    pub(crate) fn new(file: &impl FsFile, written: u64) -> Room {
        Room::with(Hold::for_file(file), written)
    }

    /// As [`Room::new`], holding the room the way given.
    pub(crate) fn with(how: Hold, written: u64) -> Room {
        Room {
            written,
            held_to: written,
            how,
            torn: false,
        }
    }

    /// Makes `file` own the blocks for `need` more bytes after its records: at once when it
    /// already does, otherwise by taking `need` plus [`AHEAD`] (or just `need`, when the disk
    /// has less left). Fails (`ENOSPC`, `EDQUOT`, `EROFS`, ...) when the filesystem cannot give
    /// `need`; what was held before stays held.
    pub(crate) fn hold(&mut self, file: &impl FsFile, need: u64) -> io::Result<()> {
        let upto = self.written.saturating_add(need);
        if self.how == Hold::Nothing || upto <= self.held_to {
            return Ok(());
        }
        for to in [upto.saturating_add(AHEAD), upto] {
            let taken = match self.how {
                Hold::Zeros => self.write_zeros(file, to),
                _ => self.reserve(file, to),
            };
            match taken {
                Ok(()) => return Ok(()),
                Err(e)
                    if to != upto
                        && matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes zeros from the end of the room to `to`; the room grows by what was written,
    /// even when the disk fills on the way.
    fn write_zeros(&mut self, file: &impl FsFile, to: u64) -> io::Result<()> {
        const ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];
        while self.held_to < to {
            let n = (to - self.held_to).min(ZEROS.len() as u64) as usize;
            let (wrote, done) = write_all_at(file, &ZEROS[..n], self.held_to);
            self.held_to += wrote;
            done?;
        }
        Ok(())
    }

    /// Allocates the blocks up to `to` beyond the file's size.
    #[cfg(journal_room_by_filesystem)]
    fn reserve(&mut self, file: &impl FsFile, to: u64) -> io::Result<()> {
        let from = self.held_to.min(self.written);
        match file.allocate(from, to - from) {
            Ok(()) => {
                self.held_to = to;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                self.how = Hold::Nothing;
                tracing::warn!(
                    "this filesystem cannot reserve journal space ahead (no fallocate): if it fills up during the run, the answers to requests in flight may be lost and listed as possible orphans"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// No `fallocate` here: [`Hold::for_file`] never takes this way, and a room made with it
    /// holds zeros instead.
    #[cfg(not(journal_room_by_filesystem))]
    fn reserve(&mut self, file: &impl FsFile, to: u64) -> io::Result<()> {
        self.how = Hold::Zeros;
        self.write_zeros(file, to)
    }

    /// Writes `records` after the records already written. The records written grow by what
    /// reached the file, even when the write fails part way; the next write then starts with
    /// a zero byte and a line break, so that the cut-short record stays a line of its own
    /// (which replay reports as a gap) instead of running into the next record.
    pub(crate) fn write(&mut self, file: &impl WriteAt, records: &[u8]) -> io::Result<()> {
        if self.torn {
            self.write_at_end(file, b"\0\n")?;
            self.torn = false;
        }
        self.write_at_end(file, records)
    }

    fn write_at_end(&mut self, file: &impl WriteAt, bytes: &[u8]) -> io::Result<()> {
        let (wrote, done) = write_all_at(file, bytes, self.written);
        self.written += wrote;
        self.held_to = self.held_to.max(self.written);
        self.torn |= done.is_err() && wrote > 0;
        done
    }

    /// Bytes held beyond the records.
    #[cfg(test)]
    pub(crate) fn spare(&self) -> u64 {
        if self.how == Hold::Nothing {
            u64::MAX
        } else {
            self.held_to.saturating_sub(self.written)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;

    fn new_file(dir: &std::path::Path) -> (std::path::PathBuf, File) {
        let p = dir.join("j");
        let f = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        (p, f)
    }

    #[test]
    fn zeros_are_the_room_within_the_files_size_and_records_overwrite_them() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = new_file(dir.path());
        let mut room = Room::with(Hold::Zeros, 0);
        room.hold(&f, 1000).unwrap();
        assert!(room.spare() >= 1000 + AHEAD, "{room:?}");
        let size = f.metadata().unwrap().len();
        assert_eq!(size, 1000 + AHEAD, "the room is zeros written ahead");
        room.write(&f, b"record\n").unwrap();
        room.write(&f, b"next\n").unwrap();
        assert_eq!(room.spare(), size - 12);
        // Already held: nothing more is written, and the records do not move the file's end.
        room.hold(&f, 500).unwrap();
        assert_eq!(f.metadata().unwrap().len(), size);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..12], b"record\nnext\n");
        assert!(bytes[12..].iter().all(|b| *b == 0));
    }

    #[test]
    fn records_past_the_zeros_extend_the_file_and_the_room_grows_from_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = new_file(dir.path());
        let mut room = Room::with(Hold::Zeros, 0);
        room.hold(&f, 10).unwrap();
        let big = vec![b'x'; (AHEAD + 100) as usize];
        room.write(&f, &big).unwrap();
        assert_eq!(room.spare(), 0);
        assert_eq!(std::fs::read(&p).unwrap(), big);
        room.hold(&f, 1).unwrap();
        assert_eq!(room.spare(), 1 + AHEAD);
        room.write(&f, b"y").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, big.len() as u64 + 1 + AHEAD);
        assert_eq!(bytes[big.len()], b'y');
    }

    #[test]
    fn after_a_write_cut_short_the_next_one_starts_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = new_file(dir.path());
        let mut room = Room::with(Hold::Zeros, 0);
        room.hold(&f, 100).unwrap();
        room.write(&f, b"{\"kind\":\"intent\"}\n{\"kind\":\"out")
            .unwrap();
        // As if the disk had refused the rest of that record.
        room.torn = true;
        room.write(&f, b"{\"next\":1}\n").unwrap();
        room.write(&f, b"{\"next\":2}\n").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let text = b"{\"kind\":\"intent\"}\n{\"kind\":\"out\0\n{\"next\":1}\n{\"next\":2}\n";
        assert_eq!(&bytes[..text.len()], text);
        assert!(bytes[text.len()..].iter().all(|b| *b == 0));
    }

    /// A file that takes `room` more bytes, then fails with ENOSPC.
    struct Filling {
        room: std::cell::Cell<usize>,
        bytes: std::cell::RefCell<Vec<u8>>,
    }

    impl WriteAt for Filling {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let n = buf.len().min(self.room.get());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room.set(self.room.get() - n);
            let mut bytes = self.bytes.borrow_mut();
            let at = offset as usize;
            if bytes.len() < at + n {
                bytes.resize(at + n, 0);
            }
            bytes[at..at + n].copy_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    /// How a [`Disk`] answers `fallocate` (which the portable way never calls).
    #[derive(Debug, Clone, Copy)]
    #[cfg_attr(not(journal_room_by_filesystem), allow(dead_code))]
    enum Fallocate {
        /// Allocates up to the disk's capacity; past it, fails as a full disk.
        Works,
        /// The filesystem has none (`EOPNOTSUPP`, which the real file gives as `Unsupported`).
        Unsupported,
        /// Fails with this errno.
        Fails(i32),
    }

    /// A file alone on a disk with room for `capacity` bytes of it: a write past that writes
    /// what fits and then fails with `full` (ENOSPC, or EDQUOT for a quota), and an allocation
    /// past it fails the same way, allocating nothing.
    #[derive(Debug)]
    struct Disk {
        bytes: std::sync::Mutex<Vec<u8>>,
        /// The end of the blocks allocated (beyond the file's size, as `FALLOC_FL_KEEP_SIZE`).
        allocated: std::sync::Mutex<u64>,
        /// The `fallocate` calls made.
        allocations: std::sync::atomic::AtomicUsize,
        capacity: u64,
        full: i32,
        fallocate: Fallocate,
        magic: Option<u64>,
    }

    impl Disk {
        fn new(capacity: u64, full: i32, fallocate: Fallocate) -> Disk {
            Disk {
                bytes: Vec::new().into(),
                allocated: 0.into(),
                allocations: 0.into(),
                capacity,
                full,
                fallocate,
                magic: None,
            }
        }
        #[cfg_attr(not(journal_room_by_filesystem), allow(dead_code))]
        fn on(magic: Option<u64>) -> Disk {
            Disk {
                magic,
                ..Disk::new(0, libc::ENOSPC, Fallocate::Works)
            }
        }
        fn bytes(&self) -> Vec<u8> {
            self.bytes.lock().unwrap().clone()
        }
        #[cfg_attr(not(journal_room_by_filesystem), allow(dead_code))]
        fn allocations(&self) -> usize {
            self.allocations.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn full(&self) -> io::Error {
            io::Error::from_raw_os_error(self.full)
        }
    }

    /// The room writes only with `write_at`: the stream calls are not for it.
    impl io::Read for Disk {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }
    impl io::Write for Disk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl io::Seek for Disk {
        fn seek(&mut self, _: io::SeekFrom) -> io::Result<u64> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    impl FsFile for Disk {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let end = offset.saturating_add(buf.len() as u64).min(self.capacity);
            if end <= offset {
                return Err(self.full());
            }
            let mut bytes = self.bytes.lock().unwrap();
            if (bytes.len() as u64) < end {
                bytes.resize(end as usize, 0);
            }
            let n = (end - offset) as usize;
            bytes[offset as usize..end as usize].copy_from_slice(&buf[..n]);
            Ok(n)
        }
        fn sync_all(&self) -> io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn metadata(&self) -> io::Result<crate::fs::Meta> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn set_len(&self, _: u64) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
            self.allocations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.fallocate {
                Fallocate::Unsupported => Err(io::ErrorKind::Unsupported.into()),
                Fallocate::Fails(errno) => Err(io::Error::from_raw_os_error(errno)),
                Fallocate::Works if offset.saturating_add(len) > self.capacity => Err(self.full()),
                Fallocate::Works => {
                    let mut allocated = self.allocated.lock().unwrap();
                    *allocated = (*allocated).max(offset + len);
                    Ok(())
                }
            }
        }
        fn filesystem_magic(&self) -> io::Result<u64> {
            self.magic.ok_or_else(|| io::ErrorKind::Unsupported.into())
        }
        fn try_lock(&self) -> Result<(), crate::fs::TryLock> {
            Ok(())
        }
        fn unlock(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_disk_with_room_for_what_is_needed_but_not_the_room_ahead_holds_what_is_needed() {
        for full in [libc::ENOSPC, libc::EDQUOT] {
            // Room for the 1000 bytes needed, not for the 64 KiB more taken ahead.
            let capacity = 1000 + AHEAD / 2;
            let disk = Disk::new(capacity, full, Fallocate::Works);
            let mut room = Room::with(Hold::Zeros, 0);
            room.hold(&disk, 1000).unwrap();
            // The zeros written before the disk filled are held too.
            assert_eq!(room.spare(), capacity, "{full}: {room:?}");
            let bytes = disk.bytes();
            assert_eq!(bytes.len() as u64, capacity);
            assert!(bytes.iter().all(|b| *b == 0));
            room.write(&disk, &[b'x'; 1000]).unwrap();
            assert_eq!(room.spare(), capacity - 1000);
            // More than the disk has: the error, and the room held stays held.
            let e = room.hold(&disk, capacity).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(full), "{e}");
            assert_eq!(room.spare(), capacity - 1000);
        }
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn a_disk_with_room_for_what_is_needed_but_not_the_room_ahead_reserves_what_is_needed() {
        for full in [libc::ENOSPC, libc::EDQUOT] {
            let disk = Disk::new(1000 + AHEAD / 2, full, Fallocate::Works);
            let mut room = Room::with(Hold::Reserve, 0);
            room.hold(&disk, 1000).unwrap();
            assert_eq!(room.spare(), 1000, "{full}: {room:?}");
            assert_eq!(*disk.allocated.lock().unwrap(), 1000);
            assert_eq!(
                disk.allocations(),
                2,
                "the room ahead, then the room needed"
            );
            assert!(disk.bytes().is_empty(), "nothing is written");
            // More than the disk has: the error, and the room held stays held.
            let e = room.hold(&disk, AHEAD).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(full), "{e}");
            assert_eq!(room.spare(), 1000);
            assert_eq!(room.how, Hold::Reserve);
        }
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn without_fallocate_nothing_is_held_ahead_and_the_journal_goes_on() {
        let disk = Disk::new(u64::MAX, libc::ENOSPC, Fallocate::Unsupported);
        let mut room = Room::with(Hold::Reserve, 0);
        room.hold(&disk, 100).unwrap();
        assert_eq!(room.how, Hold::Nothing);
        assert_eq!(room.spare(), u64::MAX, "nothing to wait for");
        // Not asked again.
        room.hold(&disk, 100_000).unwrap();
        assert_eq!(disk.allocations(), 1);
        room.write(&disk, b"record\n").unwrap();
        assert_eq!(disk.bytes(), b"record\n");
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn a_failed_fallocate_is_an_error_and_the_journal_keeps_asking_for_room() {
        // An I/O error: not retried, nothing held, and the next hold asks again.
        let disk = Disk::new(u64::MAX, libc::ENOSPC, Fallocate::Fails(libc::EIO));
        let mut room = Room::with(Hold::Reserve, 0);
        let e = room.hold(&disk, 100).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        assert_eq!(disk.allocations(), 1);
        assert_eq!((room.how, room.spare()), (Hold::Reserve, 0));
        assert!(room.hold(&disk, 100).is_err());
        assert_eq!(disk.allocations(), 2);
        // A full disk: the room ahead, then the room needed, and neither is there.
        let disk = Disk::new(50, libc::ENOSPC, Fallocate::Works);
        let e = room.hold(&disk, 100).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert_eq!(disk.allocations(), 2);
        assert_eq!((room.how, room.spare()), (Hold::Reserve, 0));
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn the_filesystems_that_overwrite_in_place_hold_zeros_and_the_others_reserve() {
        for magic in [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, TMPFS_MAGIC] {
            assert_eq!(Hold::for_file(&Disk::on(Some(magic))), Hold::Zeros);
        }
        // btrfs, overlayfs, and a filesystem that cannot be asked.
        for magic in [Some(0x9123_683E), Some(0x794C_7630), None] {
            assert_eq!(Hold::for_file(&Disk::on(magic)), Hold::Reserve, "{magic:?}");
        }
    }

    /// The debug builds' switch (`LOGZIO_TOKENS_TEST_JOURNAL_ROOM`), which the disk-full
    /// integration tests set. Run with the switch by
    /// `the_test_switch_takes_the_fallocate_way_only_when_set_to_reserve` (a test cannot set
    /// a variable in its own process: `set_var` needs `unsafe`); without it, it checks that a
    /// file on a tmpfs holds zeros.
    #[test]
    #[cfg(all(journal_room_by_filesystem, debug_assertions))]
    fn the_way_under_the_test_switch() {
        let expected = match std::env::var_os("LOGZIO_TOKENS_TEST_JOURNAL_ROOM") {
            Some(v) if v == "reserve" => Hold::Reserve,
            _ => Hold::Zeros,
        };
        assert_eq!(Hold::for_file(&Disk::on(Some(TMPFS_MAGIC))), expected);
    }

    #[test]
    #[cfg(all(journal_room_by_filesystem, debug_assertions))]
    fn the_test_switch_takes_the_fallocate_way_only_when_set_to_reserve() {
        let test = concat!(module_path!(), "::the_way_under_the_test_switch");
        let (_, test) = test.split_once("::").unwrap(); // without the crate's name
        for value in ["reserve", "zeros", ""] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--test-threads=1"])
                .env("LOGZIO_TOKENS_TEST_JOURNAL_ROOM", value)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{value:?}: {stdout}{stderr}");
            assert!(stdout.contains("1 passed"), "{value:?}: {stdout}");
        }
    }

    #[test]
    fn a_record_cut_short_by_a_full_disk_stays_on_its_own_line() {
        let file = Filling {
            room: 4.into(),
            bytes: Vec::new().into(),
        };
        let mut room = Room::with(Hold::Zeros, 0);
        let e = room.write(&file, b"{\"kind\":1}\n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(room.written, 4, "the bytes that reached the file count");
        assert!(room.torn);
        // Space comes back: the next record starts after a zero byte and a line break.
        file.room.set(100);
        room.write(&file, b"{\"next\":2}\n").unwrap();
        assert_eq!(&*file.bytes.borrow(), b"{\"ki\0\n{\"next\":2}\n");
        assert!(!room.torn);
    }

    #[test]
    fn a_write_that_fails_part_way_marks_the_record_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let (_, f) = new_file(dir.path());
        let read_only = std::fs::File::open(dir.path().join("j")).unwrap();
        let mut room = Room::with(Hold::Zeros, 0);
        // Nothing reached the file: nothing is cut short.
        assert!(room.write(&read_only, b"record\n").is_err());
        assert!(!room.torn);
        assert_eq!(room.written, 0);
        room.write(&f, b"record\n").unwrap();
        assert_eq!(room.written, 7);
    }

    #[test]
    #[cfg(target_os = "linux")] // /dev/full
    fn a_disk_that_cannot_give_the_room_is_an_error_and_holds_nothing_more() {
        // /dev/full answers every write with ENOSPC: neither the room ahead nor the room
        // needed can be had.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut room = Room::with(Hold::Zeros, 0);
        let e = room.hold(&full, 100).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert_eq!(room.spare(), 0);
        // Any other failure is an error too, not retried (a file opened read-only: EBADF).
        let dir = tempfile::tempdir().unwrap();
        new_file(dir.path());
        let read_only = std::fs::File::open(dir.path().join("j")).unwrap();
        let e = room.hold(&read_only, 100).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        assert_eq!(room.spare(), 0);
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn reserved_room_is_beyond_the_end_without_changing_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = new_file(dir.path());
        let mut room = Room::with(Hold::Reserve, 0);
        room.hold(&f, 1000).unwrap();
        assert!(room.spare() >= 1000);
        let meta = f.metadata().unwrap();
        assert_eq!(meta.len(), 0, "the file's size is its records only");
        if room.how != Hold::Nothing {
            assert!(meta.blocks() * 512 >= 1000, "blocks are held: {meta:?}");
        }
        room.write(&f, b"record\n").unwrap();
        let spare = room.spare();
        // Already held: no new allocation, the spare room shrinks by what was written.
        room.hold(&f, 500).unwrap();
        assert_eq!(room.spare(), spare);
        assert_eq!(std::fs::read(&p).unwrap(), b"record\n");
    }

    #[test]
    fn room_is_taken_ahead_from_the_end_of_the_records() {
        // Without fallocate a room made to reserve holds zeros, which this checks the same way.
        for how in [Hold::Zeros, Hold::Reserve] {
            let dir = tempfile::tempdir().unwrap();
            let (_, f) = new_file(dir.path());
            let records = 1024 * 1024;
            let mut room = Room::with(how, 0);
            room.write(&f, &vec![b'x'; records]).unwrap();
            f.sync_all().unwrap();
            room.hold(&f, 1000).unwrap();
            if room.how == Hold::Nothing {
                continue;
            }
            // Taken ahead: the next few batches need no new allocation.
            assert_eq!(room.spare(), 1000 + AHEAD, "{room:?}");
            let allocated = f.metadata().unwrap().blocks() * 512;
            assert!(
                allocated >= records as u64 + room.spare(),
                "{how:?}: {allocated} for {room:?}"
            );
            assert!(allocated < 2 * records as u64, "{allocated} for {room:?}");
            // What is written comes out of the room held.
            let spare = room.spare();
            room.write(&f, &[b'y'; 100]).unwrap();
            assert_eq!(room.spare(), spare - 100);
        }
    }

    #[test]
    #[cfg(journal_room_by_filesystem)]
    fn a_file_on_a_filesystem_that_overwrites_in_place_holds_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (_, f) = new_file(dir.path());
        let st = rustix::fs::fstatfs(&f).unwrap();
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as u64;
        let expected = if [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, TMPFS_MAGIC].contains(&magic) {
            Hold::Zeros
        } else {
            Hold::Reserve
        };
        assert_eq!(Hold::for_file(&f), expected, "filesystem magic {magic:#x}");
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() && rustix::fs::statfs(shm).is_ok_and(|s| s.f_type as u64 == TMPFS_MAGIC) {
            let dir = tempfile::tempdir_in(shm).unwrap();
            assert_eq!(Hold::for_file(&new_file(dir.path()).1), Hold::Zeros);
        }
    }

    /// The portable way (macOS, or Linux with LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM=1): zeros on
    /// whatever filesystem the file is, without asking which, and a room made to reserve
    /// (which needs `fallocate`) holds zeros too.
    #[test]
    #[cfg(not(journal_room_by_filesystem))]
    fn the_portable_way_holds_zeros_on_any_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = new_file(dir.path());
        assert_eq!(Hold::for_file(&f), Hold::Zeros);
        let mut room = Room::with(Hold::Reserve, 0);
        room.hold(&f, 100).unwrap();
        assert_eq!(room.how, Hold::Zeros);
        assert_eq!(f.metadata().unwrap().len(), 100 + AHEAD);
        room.write(&f, b"record\n").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..7], b"record\n");
        assert!(bytes[7..].iter().all(|b| *b == 0));
    }

    /// On Linux the journal asks the filesystem (the portable way is the build's choice, not
    /// the filesystem's): this build took the way it says it takes.
    #[test]
    fn the_build_takes_the_way_its_platform_calls_for() {
        let forced =
            std::env::var_os("LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM").is_some_and(|v| v == "1");
        let by_filesystem = cfg!(journal_room_by_filesystem);
        if cfg!(target_os = "linux") && !forced {
            assert!(by_filesystem, "Linux detects the filesystem");
        } else {
            assert!(!by_filesystem, "the portable way");
        }
    }
}
