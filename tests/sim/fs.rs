//! The simulated filesystem under the real state code (its `Fs` seam): a durable image and the
//! pending operations kept apart, as on ext4 with `data=ordered` (the models: FoundationDB's
//! `AsyncFileNonDurable`, TigerBeetle's `testing/storage.zig`).
//!
//! - A file's bytes are durable once the file is fsync'd. On a power loss, the bytes written
//!   since are lost (half the time) or torn: from the first byte that differs from the durable
//!   image, a seeded number of the new bytes survive and the old ones after them (appends keep
//!   a seeded prefix; an overwrite is cut part-way).
//! - A directory entry (create, rename, remove) is durable once its directory is fsync'd; the
//!   entries since are journaled in order, so a crash keeps a seeded prefix of them, never a
//!   later one without an earlier one. A rename that survives over a file whose data was never
//!   fsync'd names a torn or empty file: what fsync-before-rename prevents.
//! - Any call can be made to fail with ENOSPC, EIO, EROFS or a short write; the filesystem can
//!   turn read-only; a capacity makes writes fail with ENOSPC.
//! - A crash at the N-th call: that call and every later one fail and change nothing (the
//!   process is dead from there on); [`SimFs::reboot`] then drops what was not durable.
//!
//! Not modelled: directories are created durable at once; symlinks, hard links and other
//! users do not exist here (the hostile suites cover those on the real filesystem).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use logzio_tokens::fs::{DirEntry, FileType, Fs, FsFile, Meta, OpenHow, TryLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

/// An inode number.
type Ino = u64;

/// An error the model injects, as the OS would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// ENOSPC.
    NoSpace,
    /// EIO.
    Io,
    /// EROFS.
    ReadOnly,
}

fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        os(match e {
            Errno::NoSpace => libc::ENOSPC,
            Errno::Io => libc::EIO,
            Errno::ReadOnly => libc::EROFS,
        })
    }
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

#[derive(Debug, Clone)]
struct Node {
    dir: bool,
    /// What a read sees now.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    mode: u32,
    mtime: i64,
    /// The handle holding its lock.
    locked_by: Option<u64>,
}

/// A namespace operation waiting for its directory's fsync.
#[derive(Debug, Clone)]
enum Entry {
    Link(PathBuf, Ino),
    Unlink(PathBuf),
}

impl Entry {
    fn dir(&self) -> Option<&Path> {
        match self {
            Entry::Link(p, _) | Entry::Unlink(p) => p.parent(),
        }
    }
}

#[derive(Debug)]
struct Model {
    nodes: BTreeMap<Ino, Node>,
    names: BTreeMap<PathBuf, Ino>,
    durable_names: BTreeMap<PathBuf, Ino>,
    pending: Vec<Entry>,
    next_ino: Ino,
    next_handle: u64,
    tick: i64,
    calls: u64,
    crash_at: Option<u64>,
    crashed: bool,
    faults: BTreeMap<u64, Fault>,
    read_only: bool,
    capacity: Option<u64>,
    /// One line per call, for the trace.
    log: Vec<String>,
    /// Another program's writes, by call index: before that call, the file at the path is
    /// replaced (atomically and durably) by what the function makes of its bytes.
    plants: BTreeMap<u64, (PathBuf, Plant)>,
    /// How many plants happened.
    planted: u64,
    /// The call each plant came just before.
    plant_before: Vec<String>,
    /// A plant of the first path that comes right after the k-th rename onto the second path
    /// from now (0-based).
    plant_after_rename: Option<(PathBuf, PathBuf, u64, Plant)>,
    /// The last call, as `what name`.
    last_call: String,
    /// An aimed crash: after the k-th write to a journal that holds only intents (0-based,
    /// from now), the process crashes this many calls later (1: at the next call).
    crash_after_intents: Option<(u64, u64)>,
}

/// What another program makes of a file's bytes (None: it leaves the file alone).
pub type Plant = fn(&[u8]) -> Option<Vec<u8>>;

/// The simulated filesystem: a cheap handle on one shared model.
#[derive(Debug, Clone)]
pub struct SimFs {
    model: Arc<Mutex<Model>>,
    /// Woken when the filesystem crashes.
    pub crashed: Arc<Notify>,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs {
            model: Arc::new(Mutex::new(Model {
                nodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending: Vec::new(),
                next_ino: 1,
                next_handle: 1,
                tick: 1_700_000_000,
                calls: 0,
                crash_at: None,
                crashed: false,
                faults: BTreeMap::new(),
                read_only: false,
                capacity: None,
                log: Vec::new(),
                plants: BTreeMap::new(),
                planted: 0,
                plant_before: Vec::new(),
                plant_after_rename: None,
                last_call: String::new(),
                crash_after_intents: None,
            })),
            crashed: Arc::new(Notify::new()),
        }
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl Model {
    /// Counts a call; fails it when the filesystem crashed (at this call or before) or a fault
    /// is planned for it; returns a planned short write.
    fn call(&mut self, what: &str, path: &Path, writes: bool, notify: &Notify) -> io::Result<bool> {
        if self.crashed {
            return Err(os(libc::EIO));
        }
        self.calls += 1;
        self.log
            .push(format!("fs {} {what} {}", self.calls, name_of(path)));
        let this_call = format!("{what} {}", name_of(path));
        let last_call = std::mem::replace(&mut self.last_call, this_call);
        if let Some((target, trigger, left, plant)) = self.plant_after_rename.take() {
            if last_call == format!("rename {}", name_of(&trigger)) {
                if left == 0 {
                    self.plant(&target, plant);
                    self.plant_before
                        .push(format!("after `{last_call}`, before `{}`", self.last_call));
                } else {
                    self.plant_after_rename = Some((target, trigger, left - 1, plant));
                }
            } else {
                self.plant_after_rename = Some((target, trigger, left, plant));
            }
        }
        if let Some((planted, plant)) = self.plants.remove(&self.calls) {
            self.plant(&planted, plant);
            self.plant_before
                .push(format!("after `{last_call}`, before `{}`", self.last_call));
        }
        if self.crash_at == Some(self.calls) {
            self.crashed = true;
            self.log.push(format!("CRASH at fs {}", self.calls));
            notify.notify_one();
            return Err(os(libc::EIO));
        }
        match self.faults.remove(&self.calls) {
            Some(Fault::Fail(e)) => return Err(e.into()),
            Some(Fault::RemountReadOnly) => {
                self.read_only = true;
                return Err(Errno::Io.into());
            }
            Some(Fault::ShortWrite) => return Ok(true),
            None => {}
        }
        if writes && self.read_only {
            return Err(Errno::ReadOnly.into());
        }
        Ok(false)
    }

    /// Another program replaces `path` with a new file, durably.
    fn plant(&mut self, path: &Path, plant: Plant) {
        let Some(bytes) = self
            .names
            .get(path)
            .and_then(|i| plant(&self.nodes[i].data))
        else {
            return;
        };
        let mode = self.nodes[&self.names[path]].mode;
        let ino = self.new_node(false, mode);
        let node = self.nodes.get_mut(&ino).expect("just made");
        node.data.clone_from(&bytes);
        node.durable = bytes;
        // The other program fsyncs its directory: the journal commits every entry made
        // before its rename too, in order.
        self.link(path, ino);
        for e in std::mem::take(&mut self.pending) {
            apply(&mut self.durable_names, e);
        }
        self.planted += 1;
        self.log.push(format!("PLANT {}", name_of(path)));
    }

    /// Counts a write of `buf` to `path` for an aimed crash (see `crash_after_intents`).
    fn wrote(&mut self, path: &Path, buf: &[u8]) {
        const INTENT: &[u8] = b"\"kind\":\"intent\"";
        let Some((k, then)) = self.crash_after_intents else {
            return;
        };
        let journal = path.extension().is_some_and(|e| e == "journal");
        let lines: Vec<&[u8]> = buf
            .split(|&b| b == b'\n')
            .filter(|l| l.iter().any(|&b| b != 0))
            .collect();
        let intents_only = !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.windows(INTENT.len()).any(|w| w == INTENT));
        if !(journal && intents_only) {
            return;
        }
        if k == 0 {
            self.crash_after_intents = None;
            self.crash_at = Some(self.calls + then);
            self.log
                .push(format!("AIM crash at fs {}", self.calls + then));
        } else {
            self.crash_after_intents = Some((k - 1, then));
        }
    }

    fn used(&self) -> u64 {
        self.nodes.values().map(|n| n.data.len() as u64).sum()
    }

    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| os(libc::ENOENT))
    }

    fn meta(&self, ino: Ino) -> Meta {
        let n = &self.nodes[&ino];
        Meta {
            file_type: if n.dir { FileType::Dir } else { FileType::File },
            len: n.data.len() as u64,
            mode: n.mode,
            uid: euid(),
            gid: rustix::process::getegid().as_raw(),
            nlink: 1,
            dev: 77,
            ino,
            mtime: n.mtime,
            mtime_nsec: 0,
        }
    }

    fn new_node(&mut self, dir: bool, mode: u32) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.tick += 1;
        self.nodes.insert(
            ino,
            Node {
                dir,
                data: Vec::new(),
                durable: Vec::new(),
                mode,
                mtime: self.tick,
                locked_by: None,
            },
        );
        ino
    }

    fn link(&mut self, path: &Path, ino: Ino) {
        self.names.insert(path.to_owned(), ino);
        self.pending.push(Entry::Link(path.to_owned(), ino));
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.names.get(p).is_some_and(|i| self.nodes[i].dir) => Ok(()),
            _ => Err(os(libc::ENOENT)),
        }
    }

    fn write_at(&mut self, ino: Ino, buf: &[u8], offset: u64, short: bool) -> io::Result<usize> {
        let mut n = if short { buf.len() / 2 } else { buf.len() };
        let len = self.nodes[&ino].data.len() as u64;
        let end = offset + n as u64;
        if let Some(cap) = self.capacity
            && end > len
        {
            let room = cap.saturating_sub(self.used());
            if room == 0 && n > 0 {
                return Err(Errno::NoSpace.into());
            }
            n = n.min(usize::try_from(room + len - offset.min(len)).unwrap_or(usize::MAX));
        }
        self.tick += 1;
        let tick = self.tick;
        let node = self.nodes.get_mut(&ino).ok_or_else(|| os(libc::EBADF))?;
        let offset = usize::try_from(offset).map_err(|_| os(libc::EFBIG))?;
        if node.data.len() < offset + n {
            node.data.resize(offset + n, 0);
        }
        node.data[offset..offset + n].copy_from_slice(&buf[..n]);
        node.mtime = tick;
        Ok(n)
    }
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl SimFs {
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Crashes the process at its `n`-th filesystem call from now (1-based), or never.
    pub fn crash_at(&self, n: Option<u64>) {
        let mut m = self.lock();
        m.crash_at = n.map(|n| m.calls + n);
    }

    /// Plans a fault for the `n`-th call from now (1-based).
    pub fn fault_at(&self, n: u64, fault: Fault) {
        let mut m = self.lock();
        let at = m.calls + n;
        m.faults.insert(at, fault);
    }

    /// Cancels every crash, fault and other program's write planned and not yet come (what
    /// an operation armed and did not reach must not strike the next one).
    pub fn disarm(&self) {
        let mut m = self.lock();
        m.crash_at = None;
        m.faults.clear();
        m.plants.clear();
        m.plant_after_rename = None;
        m.crash_after_intents = None;
    }

    /// Crashes the process `then` calls after its `k`-th write (0-based, from now) to a journal
    /// that holds only intents: the moment an intent not yet fsync'd matters.
    pub fn crash_after_intents(&self, k: u64, then: u64) {
        self.lock().crash_after_intents = Some((k, then));
    }

    /// Another program replaces `path` before the `n`-th call from now (1-based).
    pub fn plant_at(&self, n: u64, path: &Path, plant: Plant) {
        let mut m = self.lock();
        let at = m.calls + n;
        m.plants.insert(at, (path.to_owned(), plant));
    }

    /// Another program replaces `path` right after the tool's `k`-th rename onto `trigger`
    /// from now (0-based): the window between a rename and whatever the tool does next.
    pub fn plant_after_rename(&self, k: u64, trigger: &Path, path: &Path, plant: Plant) {
        self.lock().plant_after_rename = Some((path.to_owned(), trigger.to_owned(), k, plant));
    }

    /// How many plants happened so far.
    pub fn planted(&self) -> u64 {
        self.lock().planted
    }

    /// Where each plant came: "after `rename m.results.json`, before `fsync-dir state`".
    pub fn plants_before(&self) -> Vec<String> {
        self.lock().plant_before.clone()
    }

    /// The process died (not by a filesystem call): no later call has any effect.
    pub fn kill(&self) {
        self.lock().crashed = true;
    }

    /// Sets the disk's capacity (None: unbounded), and whether it is read-only.
    pub fn set_space(&self, capacity: Option<u64>, read_only: bool) {
        let mut m = self.lock();
        m.capacity = capacity;
        m.read_only = read_only;
    }

    /// Bytes the files hold now.
    pub fn used(&self) -> u64 {
        self.lock().used()
    }

    /// Whether the process crashed.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Takes the log of calls.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().log)
    }

    /// The power went (or the process died, with `lose_cache`: only a power loss loses what
    /// was not fsync'd): what was not durable is lost or torn as `seed` decides; every lock,
    /// fault and the read-only state are gone.
    pub fn reboot(&self, seed: u64, lose_cache: bool) {
        let mut m = self.lock();
        let m = &mut *m;
        if lose_cache {
            let mut rng = StdRng::seed_from_u64(seed);
            let keep = rng.random_range(0..=m.pending.len());
            for e in m.pending.drain(..).take(keep) {
                apply(&mut m.durable_names, e);
            }
            for node in m.nodes.values_mut() {
                let d = node
                    .data
                    .iter()
                    .zip(&node.durable)
                    .position(|(a, b)| a != b)
                    .unwrap_or(node.data.len().min(node.durable.len()));
                // The cut falls among the bytes written since the fsync, not in an unchanged
                // tail after them (room held ahead of a journal's records is such a tail): a
                // record written there survives or not with even odds, whatever follows it.
                let e = node
                    .data
                    .iter()
                    .enumerate()
                    .rposition(|(i, b)| node.durable.get(i).copied().unwrap_or(0) != *b)
                    .map_or(d, |i| i + 1);
                // Half the time nothing written since the fsync reached the disk (a power
                // loss within the kernel's writeback delay, the common case for a run's last
                // milliseconds); otherwise a seeded prefix of it did.
                let cut = if rng.random_bool(0.5) {
                    d
                } else {
                    rng.random_range(d..=e.max(d))
                };
                let mut torn = node.data[..cut.min(node.data.len())].to_vec();
                if node.durable.len() > cut {
                    torn.extend_from_slice(&node.durable[cut..]);
                }
                node.data = torn.clone();
                node.durable = torn;
            }
            m.names = m.durable_names.clone();
            let live: std::collections::BTreeSet<Ino> = m.names.values().copied().collect();
            m.nodes.retain(|ino, _| live.contains(ino));
        } else {
            // A process crash: the kernel keeps everything written.
            let pending: Vec<Entry> = m.pending.drain(..).collect();
            for e in pending {
                apply(&mut m.durable_names, e);
            }
        }
        for node in m.nodes.values_mut() {
            node.locked_by = None;
        }
        m.faults.clear();
        m.plants.clear();
        m.plant_after_rename = None;
        m.crash_after_intents = None;
        m.read_only = false;
        m.crashed = false;
        m.crash_at = None;
    }

    /// What a read of `path` returns now.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let m = self.lock();
        let ino = m.names.get(path)?;
        Some(m.nodes[ino].data.clone())
    }

    /// Every file (not directory) under `dir`, with its bytes, sorted.
    pub fn files_under(&self, dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let m = self.lock();
        m.names
            .iter()
            .filter(|(p, i)| p.starts_with(dir) && !m.nodes[i].dir)
            .map(|(p, i)| (p.clone(), m.nodes[i].data.clone()))
            .collect()
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

/// An open file of the simulated filesystem.
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    ino: Ino,
    path: PathBuf,
    pos: u64,
    handle: u64,
    write: bool,
}

impl Drop for SimFile {
    fn drop(&mut self) {
        // Closing the last descriptor releases a flock.
        let mut m = self.fs.lock();
        if let Some(n) = m.nodes.get_mut(&self.ino)
            && n.locked_by == Some(self.handle)
        {
            n.locked_by = None;
        }
    }
}

impl SimFile {
    fn with<T>(
        &self,
        what: &str,
        writes: bool,
        f: impl FnOnce(&mut Model, bool) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut m = self.fs.lock();
        let short = m.call(what, &self.path, writes, &self.fs.crashed)?;
        f(&mut m, short)
    }
}

impl Read for SimFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pos = self.pos;
        let n = self.with("read", false, |m, _| {
            let data = &m.nodes.get(&self.ino).ok_or_else(|| os(libc::EBADF))?.data;
            let start = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.write {
            return Err(os(libc::EBADF));
        }
        let (ino, pos) = (self.ino, self.pos);
        let path = &self.path;
        let n = self.with("write", true, |m, short| {
            let n = m.write_at(ino, buf, pos, short)?;
            m.wrote(path, &buf[..n]);
            Ok(n)
        })?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SimFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self
            .fs
            .lock()
            .nodes
            .get(&self.ino)
            .map_or(0, |n| n.data.len()) as u64;
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

impl FsFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !self.write {
            return Err(os(libc::EBADF));
        }
        let ino = self.ino;
        let path = &self.path;
        self.with("pwrite", true, |m, short| {
            let n = m.write_at(ino, buf, offset, short)?;
            m.wrote(path, &buf[..n]);
            Ok(n)
        })
    }
    fn sync_all(&self) -> io::Result<()> {
        self.with("fsync", false, |m, _| {
            let n = m.nodes.get_mut(&self.ino).ok_or_else(|| os(libc::EBADF))?;
            n.durable = n.data.clone();
            Ok(())
        })
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sync_all()
    }
    fn metadata(&self) -> io::Result<Meta> {
        let m = self.fs.lock();
        Ok(m.meta(self.ino))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with("ftruncate", true, |m, _| {
            let n = m.nodes.get_mut(&self.ino).ok_or_else(|| os(libc::EBADF))?;
            n.data.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
            Ok(())
        })
    }
    fn allocate(&self, _offset: u64, len: u64) -> io::Result<()> {
        self.with("fallocate", true, |m, _| match m.capacity {
            Some(cap) if m.used() + len > cap => Err(Errno::NoSpace.into()),
            _ => Ok(()),
        })
    }
    fn filesystem_magic(&self) -> io::Result<u64> {
        // ext4's.
        Ok(0xEF53)
    }
    fn try_lock(&self) -> Result<(), TryLock> {
        let mut m = self.fs.lock();
        let n = m
            .nodes
            .get_mut(&self.ino)
            .ok_or(TryLock::Error(os(libc::EBADF)))?;
        match n.locked_by {
            Some(h) if h != self.handle => Err(TryLock::WouldBlock),
            _ => {
                n.locked_by = Some(self.handle);
                Ok(())
            }
        }
    }
    fn unlock(&self) -> io::Result<()> {
        let mut m = self.fs.lock();
        if let Some(n) = m.nodes.get_mut(&self.ino)
            && n.locked_by == Some(self.handle)
        {
            n.locked_by = None;
        }
        Ok(())
    }
}

impl SimFs {
    fn file(&self, m: &mut Model, ino: Ino, path: &Path, write: bool) -> SimFile {
        let handle = m.next_handle;
        m.next_handle += 1;
        SimFile {
            fs: self.clone(),
            ino,
            path: path.to_owned(),
            pos: 0,
            handle,
            write,
        }
    }
}

impl Fs for SimFs {
    type File = SimFile;

    fn open(&self, path: &Path, how: &OpenHow) -> io::Result<SimFile> {
        let mut m = self.lock();
        let creates = how.create || how.create_new;
        m.call("open", path, creates, &self.crashed)?;
        let ino = match m.names.get(path).copied() {
            Some(_) if how.create_new => return Err(io::ErrorKind::AlreadyExists.into()),
            Some(ino) => ino,
            None if creates => {
                m.parent_exists(path)?;
                let ino = m.new_node(false, how.mode & 0o7777 & !0o022);
                m.link(path, ino);
                ino
            }
            None => return Err(os(libc::ENOENT)),
        };
        if m.nodes[&ino].dir && how.write {
            return Err(os(libc::EISDIR));
        }
        Ok(self.file(&mut m, ino, path, how.write))
    }

    fn create_temp(
        &self,
        dir: &Path,
        prefix: &str,
        suffix: &str,
        mode: u32,
    ) -> io::Result<(PathBuf, SimFile)> {
        let mut m = self.lock();
        let path = dir.join(format!("{prefix}{:06}{suffix}", m.next_ino));
        m.call("create", &path, true, &self.crashed)?;
        m.parent_exists(&path)?;
        let ino = m.new_node(false, mode & 0o7777);
        m.link(&path, ino);
        let f = self.file(&mut m, ino, &path, true);
        Ok((path, f))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut m = self.lock();
        m.call("rename", to, true, &self.crashed)?;
        let ino = m.lookup(from)?;
        m.parent_exists(to)?;
        m.names.remove(from);
        m.pending.push(Entry::Unlink(from.to_owned()));
        m.link(to, ino);
        Ok(())
    }

    fn rename_noclobber(&self, from: &Path, to: &Path) -> io::Result<()> {
        {
            let m = self.lock();
            if m.names.contains_key(to) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
        }
        self.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock();
        m.call("unlink", path, true, &self.crashed)?;
        let ino = m.lookup(path)?;
        if m.nodes[&ino].dir {
            return Err(os(libc::EISDIR));
        }
        m.names.remove(path);
        m.pending.push(Entry::Unlink(path.to_owned()));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock();
        m.call("mkdir", path, true, &self.crashed)?;
        let mut missing = Vec::new();
        let mut p = Some(path);
        while let Some(d) = p {
            if d.as_os_str().is_empty() || m.names.contains_key(d) {
                break;
            }
            missing.push(d.to_owned());
            p = d.parent();
        }
        for d in missing.into_iter().rev() {
            let ino = m.new_node(true, 0o700);
            // Directories are made durable at once (see the module's note).
            m.names.insert(d.clone(), ino);
            m.durable_names.insert(d, ino);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut m = self.lock();
        m.call("fsync-dir", dir, false, &self.crashed)?;
        if let Some(last) = m.pending.iter().rposition(|e| e.dir() == Some(dir)) {
            let done: Vec<Entry> = m.pending.drain(..=last).collect();
            for e in done {
                apply(&mut m.durable_names, e);
            }
        }
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut m = self.lock();
        m.call("readdir", dir, false, &self.crashed)?;
        if !m.names.get(dir).is_some_and(|i| m.nodes[i].dir) {
            return Err(os(libc::ENOENT));
        }
        Ok(m.names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| DirEntry {
                name: p.file_name().map(OsString::from).unwrap_or_default(),
                path: p.clone(),
                file_type: if m.nodes[i].dir {
                    FileType::Dir
                } else {
                    FileType::File
                },
            })
            .collect())
    }

    fn symlink_metadata(&self, path: &Path) -> io::Result<Meta> {
        let mut m = self.lock();
        m.call("lstat", path, false, &self.crashed)?;
        let ino = m.lookup(path)?;
        Ok(m.meta(ino))
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.symlink_metadata(path)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let m = self.lock();
        m.lookup(path)?;
        Ok(path.to_owned())
    }

    fn free_space(&self, _dir: &Path) -> io::Result<u64> {
        let m = self.lock();
        Ok(m.capacity
            .map_or(u64::MAX / 4, |c| c.saturating_sub(m.used())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn fs() -> SimFs {
        let fs = SimFs::default();
        fs.create_dir_all(&p("/d")).unwrap();
        fs
    }

    /// Writes `bytes` to `path` as an atomic write does; `sync` says whether it fsyncs the
    /// file before the rename.
    fn atomic_write(fs: &SimFs, path: &str, bytes: &[u8], sync: bool) {
        let (tmp, f) = fs.create_temp(&p("/d"), ".t", "", 0o600).unwrap();
        f.write_at(bytes, 0).unwrap();
        if sync {
            f.sync_all().unwrap();
        }
        fs.rename(&tmp, &p(path)).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
    }

    #[test]
    fn what_was_fsyncd_with_its_directory_survives_every_crash() {
        for seed in 0..50 {
            let fs = fs();
            atomic_write(&fs, "/d/r.json", b"{\"v\":1}", true);
            fs.reboot(seed, true);
            assert_eq!(fs.read(&p("/d/r.json")).unwrap(), b"{\"v\":1}");
        }
    }

    #[test]
    fn a_rename_of_unsynced_data_can_leave_an_empty_file() {
        let torn = (0..50).any(|seed| {
            let fs = fs();
            atomic_write(&fs, "/d/r.json", b"{\"v\":1}", false);
            fs.reboot(seed, true);
            fs.read(&p("/d/r.json")).unwrap() != b"{\"v\":1}"
        });
        assert!(torn);
    }

    #[test]
    fn entries_without_a_directory_fsync_are_lost_in_order_and_writes_torn() {
        let mut outcomes = std::collections::BTreeSet::new();
        let how = OpenHow::create_new(0o600);
        for seed in 0..100 {
            let fs = fs();
            let a = fs.open(&p("/d/a"), &how).unwrap();
            a.write_at(b"0123", 0).unwrap();
            a.sync_all().unwrap();
            fs.sync_dir(&p("/d")).unwrap();
            a.write_at(b"4567", 4).unwrap();
            fs.open(&p("/d/b"), &how).unwrap();
            fs.open(&p("/d/c"), &how).unwrap();
            fs.reboot(seed, true);
            let a = fs.read(&p("/d/a")).unwrap();
            assert!(a.starts_with(b"0123") && b"01234567".starts_with(&a));
            let (b, c) = (fs.read(&p("/d/b")).is_some(), fs.read(&p("/d/c")).is_some());
            assert!(b || !c, "a later entry survived an earlier one");
            outcomes.insert((a.len(), b, c));
        }
        assert!(outcomes.len() > 3, "{outcomes:?}");
        // A process crash keeps everything.
        let fs = fs();
        let a = fs.open(&p("/d/a"), &how).unwrap();
        a.write_at(b"0123", 0).unwrap();
        fs.reboot(1, false);
        assert_eq!(fs.read(&p("/d/a")).unwrap(), b"0123");
    }

    #[test]
    fn faults_fail_their_call_read_only_sticks_and_a_crash_stops_every_later_call() {
        let fs = fs();
        let how = OpenHow::create_new(0o600);
        fs.fault_at(2, Fault::ShortWrite);
        fs.fault_at(3, Fault::RemountReadOnly);
        let a = fs.open(&p("/d/a"), &how).unwrap();
        assert_eq!(a.write_at(b"0123", 0).unwrap(), 2);
        assert_eq!(a.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(
            a.write_at(b"x", 2).unwrap_err().raw_os_error(),
            Some(libc::EROFS)
        );
        fs.reboot(0, false);
        fs.set_space(Some(3), false);
        let b = fs.open(&p("/d/b"), &how).unwrap();
        assert_eq!(b.write_at(b"0123", 0).unwrap(), 1);
        assert_eq!(
            b.write_at(b"4", 1).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        fs.set_space(None, false);
        fs.crash_at(Some(2));
        b.write_at(b"x", 1).unwrap();
        assert!(b.write_at(b"y", 2).is_err());
        assert!(fs.has_crashed());
        assert!(b.sync_all().is_err());
        assert_eq!(fs.read(&p("/d/b")).unwrap(), b"0x");
        assert!(b.try_lock().is_ok());
        let other = fs.open(&p("/d/b"), &OpenHow::read(false));
        assert!(other.is_err(), "no call after a crash");
        fs.reboot(0, false);
        b.try_lock().unwrap();
        let other = fs.open(&p("/d/b"), &OpenHow::read(false)).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLock::WouldBlock)));
        drop(b);
        assert!(other.try_lock().is_ok());
    }
}
