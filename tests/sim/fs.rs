//! The simulated filesystem: a durable image and the pending operations kept apart, as on ext4
//! with `data=ordered` (the models: FoundationDB's `AsyncFileNonDurable`, TigerBeetle's
//! `testing/storage.zig`).
//!
//! - A file's bytes are durable once the file is fsync'd; bytes written since are lost or torn
//!   on a crash (an append keeps a seeded prefix of what was appended; an overwrite keeps the
//!   old or the new bytes).
//! - A directory entry (create, rename, unlink) is durable once its directory is fsync'd; the
//!   entries since are journaled in order, so a crash keeps a seeded prefix of them (never a
//!   later one without an earlier one). A rename that survives over a file whose data was never
//!   fsync'd names a torn or empty file: the bug fsync-before-rename exists to prevent.
//! - Any call can fail with ENOSPC, EIO, EROFS or a short write, the filesystem can turn
//!   read-only, and the driver can crash it at its N-th call.
//!
//! The state code reaches the disk through its filesystem trait once that lands on main; until
//! then this model is exercised by its own tests and the driver runs the real store on a real
//! directory, crashing only at network events (see the README's design note).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An inode number.
pub type Ino = u64;

/// The errors the model injects, as the OS would report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// No space left on device.
    NoSpace,
    /// An I/O error.
    Io,
    /// Read-only filesystem.
    ReadOnly,
    /// No such file or directory.
    NotFound,
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(match e {
            Errno::NoSpace => libc::ENOSPC,
            Errno::Io => libc::EIO,
            Errno::ReadOnly => libc::EROFS,
            Errno::NotFound => libc::ENOENT,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What a read sees now.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
}

/// A namespace operation waiting for its directory's fsync.
#[derive(Debug, Clone)]
enum Entry {
    Link(PathBuf, Ino),
    Unlink(PathBuf),
}

/// A fault planned for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this error.
    Fail(Errno),
    /// A write writes only half its bytes.
    ShortWrite,
    /// The call fails with EIO and the filesystem turns read-only (errors=remount-ro).
    RemountReadOnly,
}

/// The simulated filesystem.
#[derive(Debug)]
pub struct SimFs {
    inodes: BTreeMap<Ino, Inode>,
    /// The namespace a lookup sees now.
    names: BTreeMap<PathBuf, Ino>,
    /// The namespace that survives a crash.
    durable_names: BTreeMap<PathBuf, Ino>,
    /// Entries not yet made durable, in order.
    pending: Vec<Entry>,
    next_ino: Ino,
    /// Calls so far (every call counts, failed ones included).
    pub calls: u64,
    /// Faults planned by call index.
    pub faults: BTreeMap<u64, Fault>,
    /// Whether every write fails with EROFS.
    pub read_only: bool,
    /// Bytes the disk holds at most (ENOSPC beyond).
    pub capacity: Option<u64>,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs {
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending: Vec::new(),
            next_ino: 1,
            calls: 0,
            faults: BTreeMap::new(),
            read_only: false,
            capacity: None,
        }
    }
}

impl SimFs {
    fn call(&mut self, writes: bool) -> Result<Option<Fault>, Errno> {
        self.calls += 1;
        let fault = self.faults.remove(&self.calls);
        match fault {
            Some(Fault::Fail(e)) => return Err(e),
            Some(Fault::RemountReadOnly) => {
                self.read_only = true;
                return Err(Errno::Io);
            }
            _ => {}
        }
        if writes && self.read_only {
            return Err(Errno::ReadOnly);
        }
        Ok(fault)
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    /// Creates (or truncates) a file and returns its inode.
    pub fn create(&mut self, path: &Path) -> Result<Ino, Errno> {
        self.call(true)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        self.names.insert(path.to_owned(), ino);
        self.pending.push(Entry::Link(path.to_owned(), ino));
        Ok(ino)
    }

    /// Opens an existing file.
    pub fn open(&mut self, path: &Path) -> Result<Ino, Errno> {
        self.call(false)?;
        self.names.get(path).copied().ok_or(Errno::NotFound)
    }

    /// Appends; returns how many bytes were written (fewer on a short write).
    pub fn append(&mut self, ino: Ino, bytes: &[u8]) -> Result<usize, Errno> {
        let fault = self.call(true)?;
        let mut n = bytes.len();
        if fault == Some(Fault::ShortWrite) {
            n /= 2;
        }
        if let Some(cap) = self.capacity {
            let room = cap.saturating_sub(self.used());
            if room == 0 && n > 0 {
                return Err(Errno::NoSpace);
            }
            n = n.min(usize::try_from(room).unwrap_or(usize::MAX));
        }
        let inode = self.inodes.get_mut(&ino).ok_or(Errno::NotFound)?;
        inode.data.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    /// Makes a file's bytes durable.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        self.call(false)?;
        let inode = self.inodes.get_mut(&ino).ok_or(Errno::NotFound)?;
        inode.durable = inode.data.clone();
        Ok(())
    }

    /// Renames `from` over `to`.
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<(), Errno> {
        self.call(true)?;
        let ino = self.names.remove(from).ok_or(Errno::NotFound)?;
        self.names.insert(to.to_owned(), ino);
        self.pending.push(Entry::Unlink(from.to_owned()));
        self.pending.push(Entry::Link(to.to_owned(), ino));
        Ok(())
    }

    /// Removes a name.
    pub fn unlink(&mut self, path: &Path) -> Result<(), Errno> {
        self.call(true)?;
        self.names.remove(path).ok_or(Errno::NotFound)?;
        self.pending.push(Entry::Unlink(path.to_owned()));
        Ok(())
    }

    /// Makes the entries of directory `dir` durable (with every earlier entry: the journal
    /// commits in order).
    pub fn fsync_dir(&mut self, dir: &Path) -> Result<(), Errno> {
        self.call(false)?;
        if let Some(last) = self.pending.iter().rposition(|e| match e {
            Entry::Link(p, _) | Entry::Unlink(p) => p.parent() == Some(dir),
        }) {
            let done: Vec<Entry> = self.pending.drain(..=last).collect();
            for e in done {
                apply(&mut self.durable_names, e);
            }
        }
        Ok(())
    }

    /// What a read of `path` returns now.
    pub fn read(&self, path: &Path) -> Option<&[u8]> {
        let ino = self.names.get(path)?;
        self.inodes.get(ino).map(|i| i.data.as_slice())
    }

    /// Every name, sorted.
    pub fn list(&self) -> Vec<PathBuf> {
        self.names.keys().cloned().collect()
    }

    /// The power goes: what was not made durable is lost or torn, as `seed` decides. The
    /// filesystem is then what a reboot finds (every fault and the read-only state cleared).
    pub fn crash(&mut self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let keep = rng.random_range(0..=self.pending.len());
        for e in self.pending.drain(..).take(keep) {
            apply(&mut self.durable_names, e);
        }
        for inode in self.inodes.values_mut() {
            let torn = if inode.data.starts_with(&inode.durable) {
                let extra = inode.data.len() - inode.durable.len();
                inode.data[..inode.durable.len() + rng.random_range(0..=extra)].to_vec()
            } else if rng.random_bool(0.5) {
                inode.data.clone()
            } else {
                inode.durable.clone()
            };
            inode.data = torn.clone();
            inode.durable = torn;
        }
        self.names = self.durable_names.clone();
        let live: std::collections::BTreeSet<Ino> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        self.faults.clear();
        self.read_only = false;
    }
}

fn apply(names: &mut BTreeMap<PathBuf, Ino>, e: Entry) {
    match e {
        Entry::Link(p, ino) => {
            names.insert(p, ino);
        }
        Entry::Unlink(p) => {
            names.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// Writes `bytes` to `path` as an atomic write does; `sync` says whether it fsyncs the file
    /// before the rename.
    fn atomic_write(fs: &mut SimFs, path: &str, bytes: &[u8], sync: bool) {
        let tmp = format!("{path}.tmp");
        let ino = fs.create(&p(&tmp)).unwrap();
        fs.append(ino, bytes).unwrap();
        if sync {
            fs.fsync(ino).unwrap();
        }
        fs.rename(&p(&tmp), &p(path)).unwrap();
        fs.fsync_dir(&p("/d")).unwrap();
    }

    #[test]
    fn what_was_fsyncd_with_its_directory_survives_every_crash() {
        for seed in 0..50 {
            let mut fs = SimFs::default();
            atomic_write(&mut fs, "/d/r.json", b"{\"v\":1}", true);
            fs.crash(seed);
            assert_eq!(fs.read(&p("/d/r.json")), Some(&b"{\"v\":1}"[..]));
        }
    }

    #[test]
    fn a_rename_of_unsynced_data_can_leave_an_empty_file() {
        let torn = (0..50).any(|seed| {
            let mut fs = SimFs::default();
            atomic_write(&mut fs, "/d/r.json", b"{\"v\":1}", false);
            fs.crash(seed);
            fs.read(&p("/d/r.json")) != Some(&b"{\"v\":1}"[..])
        });
        assert!(torn);
    }

    #[test]
    fn entries_without_a_directory_fsync_are_lost_in_order_and_appends_torn() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let mut fs = SimFs::default();
            let a = fs.create(&p("/d/a")).unwrap();
            fs.append(a, b"0123").unwrap();
            fs.fsync(a).unwrap();
            fs.fsync_dir(&p("/d")).unwrap();
            fs.append(a, b"4567").unwrap();
            fs.create(&p("/d/b")).unwrap();
            fs.create(&p("/d/c")).unwrap();
            fs.crash(seed);
            let a = fs.read(&p("/d/a")).unwrap().to_vec();
            assert!(a.starts_with(b"0123") && b"01234567".starts_with(&a));
            let (b, c) = (fs.read(&p("/d/b")).is_some(), fs.read(&p("/d/c")).is_some());
            assert!(b || !c, "a later entry survived an earlier one");
            outcomes.insert((a.len(), b, c));
        }
        assert!(outcomes.len() > 3, "{outcomes:?}");
    }

    #[test]
    fn faults_fail_the_planned_call_and_read_only_sticks_until_a_reboot() {
        let mut fs = SimFs::default();
        fs.faults.insert(2, Fault::ShortWrite);
        fs.faults.insert(3, Fault::RemountReadOnly);
        let a = fs.create(&p("/d/a")).unwrap();
        assert_eq!(fs.append(a, b"0123").unwrap(), 2);
        assert_eq!(fs.fsync(a), Err(Errno::Io));
        assert_eq!(fs.append(a, b"x"), Err(Errno::ReadOnly));
        fs.crash(0);
        assert!(!fs.read_only);
        let mut fs = SimFs {
            capacity: Some(3),
            ..SimFs::default()
        };
        let b = fs.create(&p("/d/b")).unwrap();
        assert_eq!(fs.append(b, b"0123").unwrap(), 3);
        assert_eq!(fs.append(b, b"4"), Err(Errno::NoSpace));
        let e: std::io::Error = Errno::NoSpace.into();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn an_unlink_without_a_directory_fsync_can_come_back_and_a_planned_error_fails_its_call() {
        let mut back = false;
        for seed in 0..20 {
            let mut fs = SimFs::default();
            let a = fs.create(&p("/d/j")).unwrap();
            fs.fsync(a).unwrap();
            fs.fsync_dir(&p("/d")).unwrap();
            assert_eq!(fs.open(&p("/d/j")), Ok(a));
            fs.unlink(&p("/d/j")).unwrap();
            assert!(fs.list().is_empty());
            fs.crash(seed);
            back |= fs.list() == vec![p("/d/j")];
        }
        assert!(back);
        let mut fs = SimFs::default();
        fs.faults.insert(1, Fault::Fail(Errno::Io));
        assert_eq!(fs.create(&p("/d/a")), Err(Errno::Io));
        assert_eq!(fs.open(&p("/d/a")), Err(Errno::NotFound));
    }
}
