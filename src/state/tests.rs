//! The state runs on the filesystem, clock and random source it is given: a filesystem that
//! records every call (and can fail fsyncs) stands in for the simulated one, a fixed clock for
//! the simulated one.
#![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
#![allow(clippy::unwrap_used)]

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::clock::{Clock, SharedClock};
use crate::fs::{DirEntry, Fs, FsFile, Meta, OpenHow, RealFs, TryLock};
use crate::key::TokenKey;
use crate::secret::Secret;

/// The real filesystem, with every call written down and fsyncs that fail on demand.
#[derive(Debug, Clone, Default)]
struct Recording {
    calls: Arc<Mutex<Vec<String>>>,
    fail_syncs: Arc<AtomicBool>,
}

impl Recording {
    fn note(&self, what: &str, path: &Path) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        self.calls
            .lock()
            .unwrap()
            .push(format!("{what} {}", name.unwrap_or_default()));
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct RecFile {
    file: std::fs::File,
    name: PathBuf,
    fs: Recording,
}

impl Read for RecFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}
impl Write for RecFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fs.note("write", &self.name);
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
impl Seek for RecFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl FsFile for RecFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.fs.note("write_at", &self.name);
        FsFile::write_at(&self.file, buf, offset)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.note("fsync", &self.name);
        if self.fs.fail_syncs.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        FsFile::sync_data(&self.file)
    }
    fn metadata(&self) -> io::Result<Meta> {
        FsFile::metadata(&self.file)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        FsFile::set_len(&self.file, len)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.file.allocate(offset, len)
    }
    fn filesystem_magic(&self) -> io::Result<u64> {
        self.file.filesystem_magic()
    }
    fn try_lock(&self) -> Result<(), TryLock> {
        self.fs.note("lock", &self.name);
        FsFile::try_lock(&self.file)
    }
    fn unlock(&self) -> io::Result<()> {
        FsFile::unlock(&self.file)
    }
}

impl Fs for Recording {
    type File = RecFile;

    fn open(&self, path: &Path, how: &OpenHow) -> io::Result<RecFile> {
        self.note(if how.create_new { "create" } else { "open" }, path);
        Ok(RecFile {
            file: RealFs.open(path, how)?,
            name: path.to_path_buf(),
            fs: self.clone(),
        })
    }
    fn create_temp(
        &self,
        dir: &Path,
        prefix: &str,
        suffix: &str,
        mode: u32,
    ) -> io::Result<(PathBuf, RecFile)> {
        let (path, file) = RealFs.create_temp(dir, prefix, suffix, mode)?;
        self.note("create_temp", &path);
        let name = path.clone();
        Ok((
            path,
            RecFile {
                file,
                name,
                fs: self.clone(),
            },
        ))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.note("rename_to", to);
        RealFs.rename(from, to)
    }
    fn rename_noclobber(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.note("rename_noclobber_to", to);
        RealFs.rename_noclobber(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.note("remove", path);
        RealFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(dir)
    }
    fn symlink_metadata(&self, path: &Path) -> io::Result<Meta> {
        RealFs.symlink_metadata(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        RealFs.metadata(path)
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        RealFs.canonicalize(path)
    }
    fn free_space(&self, dir: &Path) -> io::Result<u64> {
        RealFs.free_space(dir)
    }
}

/// A wall clock stopped at one instant; the monotonic time is tokio's.
#[derive(Debug)]
struct Stopped;

impl Clock for Stopped {
    fn now_utc(&self) -> time::OffsetDateTime {
        time::macros::datetime!(2031-01-02 03:04:05.678 UTC)
    }
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

fn key(n: &str) -> TokenKey {
    TokenKey {
        account_id: 7,
        token_name: n.into(),
    }
}

fn open(fs: &Recording, dir: &Path) -> Store<Recording> {
    let paths = StatePaths::for_manifest(&dir.join("m.yaml"), None, None);
    let clock: SharedClock = Arc::new(Stopped);
    Store::open_in(
        fs.clone(),
        clock,
        crate::random::seeded(1),
        paths,
        Some("http://127.0.0.1:1"),
    )
    .unwrap()
}

#[tokio::test]
async fn a_run_touches_files_only_through_its_filesystem_and_dates_them_by_its_clock() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Recording::default();
    let store = open(&fs, dir.path());
    let rec = Recorder::start(store).unwrap();
    let h = rec.handle();
    let seq = h.intent(&key("a"), 1).await.unwrap();
    let outcome = Outcome::Created {
        token_id: 11,
        secret: HeldSecret::plain(Secret::new("sek-a")),
        created_at: "2031-01-01T00:00:00Z".into(),
    };
    assert_eq!(
        h.outcome(seq, &key("a"), outcome).await.unwrap(),
        Applied::Recorded
    );
    drop(h);
    let (store, res) = rec.finish().await;
    res.unwrap();
    let store = store.unwrap();
    let calls = fs.calls();
    for want in [
        "lock m.results.lock",
        "create m.results.journal",
        "write_at m.results.journal",
        "fsync m.results.journal",
        "rename_to m.secrets.json",
        "rename_to m.results.json",
        "remove m.results.journal",
    ] {
        assert!(calls.iter().any(|c| c == want), "{want} not in {calls:?}");
    }
    // The journal is written and fsync'd before the outcome is acknowledged, and removed
    // only after both files were renamed into place.
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(at("fsync m.results.journal") < at("rename_to m.results.json"));
    assert!(at("rename_to m.results.json") < at("remove m.results.journal"));
    // Every timestamp the state wrote is the clock's.
    let results = ResultsFile::load(&store.paths().results).unwrap().unwrap();
    assert_eq!(results.updated_at, "2031-01-02T03:04:05.678Z");
    assert_eq!(
        SecretsFile::load(&store.paths().secrets)
            .unwrap()
            .unwrap()
            .get(&key("a"))
            .unwrap()
            .token
            .expose(),
        "sek-a"
    );
}

#[tokio::test]
async fn a_failing_fsync_of_the_filesystem_given_refuses_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Recording::default();
    let rec = Recorder::start(open(&fs, dir.path())).unwrap();
    let h = rec.handle();
    fs.fail_syncs.store(true, Ordering::Relaxed);
    // An intent not durable means the request must not be sent.
    let err = h.intent(&key("a"), 1).await.unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    drop(h);
    let (_, res) = rec.finish().await;
    assert!(res.is_err());
}

#[tokio::test]
async fn a_sub_account_create_goes_through_the_handle_into_the_journal_and_the_state() {
    use crate::state::accounts::{AccountOutcome, Settled};
    let dir = tempfile::tempdir().unwrap();
    let fs = Recording::default();
    let rec = Recorder::start(open(&fs, dir.path())).unwrap();
    let h = rec.handle();
    let first = h
        .intent(crate::key::CreateKey::Account("acme".into()), 1)
        .await
        .unwrap();
    let second = h
        .intent(crate::key::CreateKey::Account("beta".into()), 1)
        .await
        .unwrap();
    assert_eq!(second, first + 1);
    assert!(second >= 2, "seqs count from 1: {first}, {second}");
    let created = AccountOutcome::Created {
        account_id: 55,
        created_at: "2031-01-01T00:00:00Z".into(),
    };
    assert_eq!(
        h.settle(first, Settled::Account("acme".into(), created))
            .await
            .unwrap(),
        Applied::Recorded
    );
    drop(h);
    let (store, res) = rec.finish().await;
    res.unwrap();
    let store = store.unwrap();
    assert_eq!(store.results().accounts_created["acme"].account_id, 55);
    assert_eq!(store.results().resolved_names["acme"], 55);
}
