//! The recorded state of one manifest.
//!
//! [`Store::open`] takes the lock, reads the results and secrets files, replays any journal a
//! previous run left (recovering every secret it received), and writes the merged files. During
//! `apply` the store is owned by the recorder task (`super::recorder`), its single writer.

use std::path::PathBuf;

use super::journal::{self, Outcome};
use super::ledger::{Applied, Ledger, invariants};
use super::sealed::{self, Identities, Recipients, SealError};
use super::{ResultsFile, SecretsFile, StateError, StateFile, StateLock, StatePaths};
use crate::clock::{SharedClock, SystemClock};
use crate::fs::atomic::{FileKind, parent_dir, remove_stale_temps, write_atomic_checked};
use crate::fs::trust::check_secret_target;
use crate::fs::{Fs, Meta, RealFs};
use crate::key::TokenKey;
use crate::random::{self, Random};

/// What a start-of-run replay of an earlier journal found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Tokens whose secrets were in the journal but not yet in the files.
    pub recovered_tokens: usize,
    /// Requests that were in flight when the earlier run stopped (now possible orphans).
    pub interrupted: usize,
    /// Whether a journal record was cut short (ignored).
    pub truncated_tail: bool,
    /// Zeros between the journal's records: a write that failed or was lost.
    pub gap: Option<super::journal::Gap>,
}

/// The recorded state of a manifest, locked for this process.
///
/// Every file it touches goes through `fs` ([`RealFs`] unless a test gives another), every
/// timestamp it writes comes from `clock`, and its run ids from `rng`.
#[derive(Debug)]
pub struct Store<F: Fs = RealFs> {
    /// Where the files are.
    paths: StatePaths,
    /// The results and secrets, and the operations that change them.
    ledger: Ledger,
    /// What the replay of an earlier journal recovered.
    recovery: Recovery,
    /// Set by a run whose final save failed: the tokens whose outcome is on no disk (answered
    /// after the journal could not be written) or whose request was still in flight (its
    /// intent in a journal the filesystem may not have kept). Each may have created a token
    /// recorded nowhere, so the run names them.
    unsaved: Vec<TokenKey>,
    /// Set when this run seals its secrets instead of writing them in plaintext (the
    /// secrets received are then held by the ledger, and written as one sealed file at the
    /// end).
    sealing: Option<Sealing>,
    /// Sealed secrets replayed from an earlier run's journal (armored age files).
    recovered_sealed: Vec<String>,
    lock: Option<StateLock<F>>,
    /// The results and secrets files as this process last read or wrote them: a file that
    /// differs at the next save was changed by another program and is not overwritten.
    seen: [Option<Stamp>; 2],
    /// The filesystem.
    fs: F,
    /// The wall clock (timestamps) and the monotonic one (the recorder's intervals).
    clock: SharedClock,
    /// Where run ids come from.
    rng: Random,
}

/// What identifies the version of a file this process read or wrote: another program that
/// replaces it (a new inode) or edits it (size, modification time) changes its stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    /// The file's stamp, or `None` when there is no file.
    fn of<F: Fs>(fs: &F, path: &std::path::Path) -> Option<Stamp> {
        fs.symlink_metadata(path).ok().map(|m| Stamp::from(&m))
    }
}

impl From<&Meta> for Stamp {
    fn from(m: &Meta) -> Stamp {
        Stamp {
            dev: m.dev,
            ino: m.ino,
            len: m.len,
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
        }
    }
}

/// Where and to whom a run seals its secrets.
#[derive(Debug, Clone)]
pub struct Sealing {
    /// The recipients.
    pub recipients: Recipients,
    /// This run's id, in its sealed file's name.
    pub run_id: String,
}

impl Store {
    /// Locks the state, reads it, replays any journal into it and, if the journal held anything,
    /// saves the merged files and removes the journal. `api_url` is checked against the one the
    /// results were made with.
    pub fn open(paths: StatePaths, api_url: Option<&str>) -> Result<Store, StateError> {
        Store::open_in(
            RealFs,
            SystemClock::shared(),
            random::from_os(),
            paths,
            api_url,
        )
    }

    /// Reads the state and replays any journal in memory, without locking or writing (for
    /// `plan`, which must see what an interrupted run received).
    pub fn read(paths: StatePaths, api_url: Option<&str>) -> Result<Store, StateError> {
        Store::read_in(
            RealFs,
            SystemClock::shared(),
            random::from_os(),
            paths,
            api_url,
        )
    }
}

impl<F: Fs> Store<F> {
    /// [`Store::open`] on the filesystem `fs`, with the clock `clock` and run ids from `rng`.
    pub fn open_in(
        fs: F,
        clock: SharedClock,
        rng: Random,
        paths: StatePaths,
        api_url: Option<&str>,
    ) -> Result<Store<F>, StateError> {
        crate::fs::trust::check_state_place(
            &fs,
            &[&paths.results, &paths.secrets, &paths.journal, &paths.lock],
        )?;
        let lock = StateLock::acquire_in(&fs, &paths.lock, &clock.now_rfc3339())?;
        // Refuse an unsafe secrets path now, before any request is sent. (A journal left by an
        // earlier run is only read, then replaced by a fresh 0600 one.)
        check_secret_target(&fs, &paths.secrets)?;
        // Temp files a killed save left behind (a secrets temp file is a full copy of the
        // secrets), and a journal replacement a killed checkpoint left behind.
        for target in [&paths.secrets, &paths.results] {
            remove_stale_temps(&fs, target).map_err(|source| StateError::Write {
                kind: StateFile::State,
                path: target.clone(),
                source,
            })?;
        }
        let _ = fs.remove_file(&paths.next_journal());
        // The sealed directory may hold the only copy of the secrets: checked like the state
        // directory (a 0777 one let another user delete them).
        sealed::check_dir_in(&fs, &paths.sealed)?;
        let mut store = Store::read_in(fs, clock, rng, paths, api_url)?;
        store.lock = Some(lock);
        store.adopt_unlisted_sealed()?;
        if store.fs.symlink_metadata(&store.paths.journal).is_ok() {
            store.write_recovered_sealed()?;
            store.save()?;
            store
                .fs
                .remove_file(&store.paths.journal)
                .map_err(|source| StateError::Write {
                    kind: StateFile::Journal,
                    path: store.paths.journal.clone(),
                    source,
                })?;
            let _ = store.fs.sync_dir(parent_dir(&store.paths.journal));
        }
        Ok(store)
    }

    /// [`Store::read`] on the filesystem `fs`, with the clock `clock` and run ids from `rng`.
    pub fn read_in(
        fs: F,
        clock: SharedClock,
        rng: Random,
        paths: StatePaths,
        api_url: Option<&str>,
    ) -> Result<Store<F>, StateError> {
        let seen = [
            Stamp::of(&fs, &paths.results),
            Stamp::of(&fs, &paths.secrets),
        ];
        let results = ResultsFile::load_in(&fs, &paths.results)?;
        if let (Some(r), Some(current)) = (&results, api_url)
            && let Some(recorded) = &r.api_url
            && recorded.trim_end_matches('/') != current.trim_end_matches('/')
        {
            return Err(StateError::OtherEndpoint {
                path: paths.results.clone(),
                recorded: recorded.clone(),
                current: current.to_owned(),
            });
        }
        let mut results = results.unwrap_or_else(|| {
            ResultsFile::new_at(api_url.map(str::to_owned), clock.now_rfc3339())
        });
        if results.api_url.is_none() {
            results.api_url = api_url.map(str::to_owned);
        }
        let secrets = SecretsFile::load_in(&fs, &paths.secrets)?.unwrap_or_default();
        let replayed = journal::replay(&fs, &paths.journal)?;
        // Invariant 3: a journal is replayed only into the state of its own endpoint (the
        // results file's, or this run's when there is no results file yet).
        let bound = replayed
            .endpoint
            .as_ref()
            .filter(|_| !crate::reintroduced::on(crate::reintroduced::Bug::JournalAnyEndpoint));
        if let Some(bound) = bound {
            let what = format!("journal file {}", paths.journal.display());
            for current in [results.api_url.as_deref(), api_url].into_iter().flatten() {
                super::invariants::promises::same_endpoint(&what, Some(bound), current).map_err(
                    |violation| StateError::Broken {
                        path: paths.results.clone(),
                        violation,
                    },
                )?;
            }
            if results.api_url.is_none() {
                results.api_url = Some(bound.clone());
            }
        }
        let ledger = Ledger::new(results, secrets);
        invariants::check(&ledger).map_err(|v| StateError::Corrupt {
            kind: StateFile::Results,
            path: paths.results.clone(),
            detail: v.to_string(),
        })?;
        let mut store = Store {
            paths,
            ledger,
            recovery: Recovery::default(),
            unsaved: Vec::new(),
            sealing: None,
            recovered_sealed: Vec::new(),
            lock: None,
            seen,
            fs,
            clock,
            rng,
        };
        for file in replayed.sealed_files {
            store.adopt_journaled_sealed(file);
        }
        store.recovery.truncated_tail = replayed.truncated_tail;
        store.recovery.gap = replayed.gap.clone();
        if replayed.records > 0 {
            tracing::debug!(
                journal = %store.paths.journal.display(),
                records = replayed.records,
                outcomes = replayed.outcomes.len(),
                in_flight = replayed.interrupted.len(),
                truncated_tail = replayed.truncated_tail,
                "replaying the journal of an earlier run"
            );
        }
        // Sub-account records first: a created account's tokens may follow in the journal.
        for record in replayed.accounts {
            store.apply_account(record, "recovered");
        }
        for (key, outcome, at) in replayed.outcomes {
            if let Applied::Recorded = store.apply(&key, outcome, &at) {
                store.recovery.recovered_tokens += 1;
            }
        }
        for (key, at) in replayed.interrupted {
            store.ledger.note_orphan(
                &key,
                "the run stopped while this request was in flight; a token may have been created",
                &at,
            );
            store.recovery.interrupted += 1;
        }
        Ok(store)
    }

    /// Writes the secrets file, then the results file, each atomically. A run that seals its
    /// secrets writes no plaintext secrets file: its secrets go to [`Store::seal_run`].
    pub fn save(&mut self) -> Result<(), StateError> {
        // An empty secrets file is not created: a state whose secrets are all sealed has none.
        let secrets = self.ledger.secrets();
        let wanted = !secrets.accounts.is_empty()
            || !secrets.superseded.is_empty()
            || !secrets.forgotten.is_empty()
            || !secrets.shipping.is_empty()
            || self.fs.metadata(&self.paths.secrets).is_ok();
        let plain = zeroize::Zeroizing::new(if self.sealing.is_none() && wanted {
            secrets.to_bytes()
        } else {
            Vec::new()
        });
        invariants::check(&self.ledger).map_err(|v| StateError::Invariant {
            path: self.paths.results.clone(),
            violation: v.to_string(),
        })?;
        let bytes = self.ledger.results_bytes(&self.clock.now_rfc3339());
        let sizes = [("secrets", plain.len()), ("results", bytes.len())];
        // Checked first, so that nothing is written for a state another program changed, and
        // again right before each rename, so that a change made while this save writes (the
        // secrets file, then the results file's temp file) is not overwritten either.
        self.check_unchanged(0, StateFile::Results)?;
        if !plain.is_empty() {
            self.check_unchanged(1, StateFile::Secrets)?;
            let written = write_atomic_checked(
                &self.fs,
                &self.paths.secrets,
                &plain,
                FileKind::Secret,
                StateFile::Secrets.word(),
                true,
                || self.check_unchanged(1, StateFile::Secrets),
            )
            .map_err(|e| room_needed(&self.fs, e, &sizes))?;
            // The stamp of the file written, not of whatever the path holds by now: a file
            // another program renames over it right after must not pass for this one.
            self.seen[1] = Some(Stamp::from(&written));
        }
        let written = write_atomic_checked(
            &self.fs,
            &self.paths.results,
            &bytes,
            FileKind::Public,
            StateFile::Results.word(),
            true,
            || {
                if crate::reintroduced::on(crate::reintroduced::Bug::SaveWindow) {
                    return Ok(());
                }
                self.check_unchanged(0, StateFile::Results)
            },
        )
        .map_err(|e| room_needed(&self.fs, e, &sizes))?;
        self.seen[0] = if crate::reintroduced::on(crate::reintroduced::Bug::StampAfterRename) {
            Stamp::of(&self.fs, &self.paths.results)
        } else {
            Some(Stamp::from(&written))
        };
        self.ledger.saved();
        Ok(())
    }

    /// Refuses to overwrite the results (`which` 0) or secrets (1) file when it is not the
    /// version this process last read or wrote: another program replaced or edited it, and
    /// overwriting would throw its change away. Nothing is lost by refusing: the journal keeps
    /// what this run recorded, and the next run merges it into the file as it is then.
    fn check_unchanged(&self, which: usize, kind: StateFile) -> Result<(), StateError> {
        let path = if which == 0 {
            &self.paths.results
        } else {
            &self.paths.secrets
        };
        if Stamp::of(&self.fs, path) == self.seen[which] {
            return Ok(());
        }
        Err(StateError::ChangedUnderfoot {
            kind,
            path: path.clone(),
            journal: self.paths.journal.clone(),
        })
    }

    /// From now on, secrets received are sealed to `recipients` and never written in
    /// plaintext. Call before the recorder starts.
    pub fn seal_to(&mut self, recipients: Recipients) {
        self.ledger.hold_for_sealing();
        self.sealing = Some(Sealing {
            recipients,
            run_id: sealed::new_run_id(&mut self.rng),
        });
    }

    /// Invariant 2: a state whose secrets are sealed is not continued in plaintext unless the
    /// user said so (`--allow-plaintext`). `run_seals`: whether this run has recipients.
    pub fn check_protection(
        &self,
        run_seals: bool,
        allow_plaintext: bool,
    ) -> Result<(), StateError> {
        if crate::reintroduced::on(crate::reintroduced::Bug::ProtectionDropped) {
            return Ok(());
        }
        let found = sealed::list_in(&self.fs, &self.paths.sealed).map_or(0, |l| l.len());
        super::invariants::promises::protection_kept(
            super::invariants::promises::state_is_sealed(self.ledger.results(), found),
            run_seals,
            allow_plaintext,
            &self.paths.sealed,
        )
        .map_err(|violation| StateError::Broken {
            path: self.paths.results.clone(),
            violation,
        })
    }

    /// The recipients this run seals to, if it does.
    pub fn sealing(&self) -> Option<&Sealing> {
        self.sealing.as_ref()
    }

    /// Writes the secrets this run received since the last call as one new sealed file (none
    /// when there are none, or the run does not seal), lists it in the results file (saved
    /// next) and returns its path. `before` is called with the file's name and digest before
    /// the file is written (the recorder journals them, so a run killed between this write
    /// and the next save still lists the file). Each call writes a new file and then forgets
    /// what it wrote, so nothing is written twice.
    pub fn seal_run(
        &mut self,
        before: impl FnOnce(&super::SealedFile) -> Result<(), StateError>,
    ) -> Result<Option<PathBuf>, StateError> {
        let Some(sealing) = &self.sealing else {
            return Ok(None);
        };
        let Some(held) = self.ledger.run_secrets() else {
            return Ok(None);
        };
        if held.accounts.is_empty() && held.superseded.is_empty() && held.shipping.is_empty() {
            return Ok(None);
        }
        let armored = sealing
            .recipients
            .seal_secrets(held)
            .map_err(|e| sealed_write_error(&self.paths.sealed, e))?;
        let run_id = sealing.run_id.clone();
        let path = self.write_sealed(&armored, &run_id, &[], before)?;
        // Their secrets count as durable from now on.
        self.ledger.take_run_secrets();
        Ok(Some(path))
    }

    /// Keeps the secrets `import` took (for the caller to save next): with `recipients`,
    /// sealed into a new sealed file of their own (never in plaintext on disk), listed in the
    /// results file, whose path is returned; without, in the secrets file. An empty `doc`
    /// changes nothing.
    pub fn keep_imported(
        &mut self,
        recipients: Option<&Recipients>,
        doc: SecretsFile,
    ) -> Result<Option<PathBuf>, StateError> {
        if doc.accounts.is_empty() && doc.superseded.is_empty() {
            return Ok(None);
        }
        let Some(r) = recipients else {
            self.ledger.keep_secrets(doc);
            return Ok(None);
        };
        self.seal_document(r, &doc).map(Some)
    }

    /// Seals `doc` to `recipients` into a new sealed file of its own (for `import`), listed in
    /// the results file (saved next).
    fn seal_document(
        &mut self,
        recipients: &Recipients,
        doc: &SecretsFile,
    ) -> Result<PathBuf, StateError> {
        let armored = recipients
            .seal_secrets(doc)
            .map_err(|e| sealed_write_error(&self.paths.sealed, e))?;
        let run_id = sealed::new_run_id(&mut self.rng);
        self.write_sealed(&armored, &run_id, &doc_ids(doc), |_| Ok(()))
    }

    /// Writes a new sealed file holding the secrets of token ids `ids`, lists it and counts
    /// those secrets as durable.
    fn write_sealed(
        &mut self,
        armored: &[u8],
        run_id: &str,
        ids: &[i64],
        before: impl FnOnce(&super::SealedFile) -> Result<(), StateError>,
    ) -> Result<PathBuf, StateError> {
        let now = self.clock.now_utc();
        // A name not taken yet: two files of one run may fall in the same second.
        let mut name = sealed::file_name(now, run_id);
        let mut n = 1;
        while self
            .fs
            .symlink_metadata(&self.paths.sealed.join(&name))
            .is_ok()
        {
            n += 1;
            name = sealed::file_name(now, &format!("{run_id}-{n}"));
        }
        let entry = super::SealedFile {
            file: name.clone(),
            sha256: sealed::sha256_hex(armored),
            run_id: run_id.to_owned(),
        };
        before(&entry)?;
        let path = sealed::write_new_in(&self.fs, &self.paths.sealed, &name, armored)
            .map_err(|e| room_needed(&self.fs, e, &[("sealed", armored.len())]))?;
        self.ledger.list_sealed(entry);
        self.ledger.sealed_durable(ids.iter().copied());
        Ok(path)
    }

    /// A results file written before `sealed_files` existed lists none, though its sealed
    /// directory holds this tool's files: they are listed now, once, with their digests (from
    /// then on, a file that appears unlisted is not used). Nothing is listed when the results
    /// file lists any file already.
    fn adopt_unlisted_sealed(&mut self) -> Result<(), StateError> {
        if !self.ledger.results().sealed_files.is_empty() {
            return Ok(());
        }
        let found =
            sealed::list_in(&self.fs, &self.paths.sealed).map_err(|e| StateError::Read {
                kind: StateFile::SealedDirectory,
                path: self.paths.sealed.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        for path in found {
            let Ok(bytes) = sealed::read_in(&self.fs, &path) else {
                continue;
            };
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let run_id = name
                .strip_suffix(".age")
                .and_then(|n| n.split_once('-'))
                .map_or_else(String::new, |(_, id)| id.to_owned());
            tracing::info!(file = %path.display(), "listing a sealed file written before the results file listed them");
            self.ledger.list_sealed(super::SealedFile {
                file: name,
                sha256: sealed::sha256_hex(&bytes),
                run_id,
            });
        }
        Ok(())
    }

    /// Lists a sealed file an interrupted run journaled before writing it, if it holds what
    /// was journaled (the run may have died before or while writing it).
    pub(super) fn adopt_journaled_sealed(&mut self, entry: super::SealedFile) {
        if self
            .ledger
            .results()
            .sealed_files
            .iter()
            .any(|f| f.file == entry.file)
        {
            return;
        }
        let path = self.paths.sealed.join(&entry.file);
        if let Ok(bytes) = sealed::read_in(&self.fs, &path)
            && super::invariants::promises::sealed_file_trusted(&entry, &bytes).is_ok()
        {
            self.ledger.list_sealed(entry);
        }
    }

    /// Every secret recorded for this state, and the sealed files not used (each with why):
    /// the plaintext secrets file, then every sealed file this tool wrote (listed in the
    /// results file with a digest that still matches; any other `.age` file is named, never
    /// used), oldest first, and any sealed record of an interrupted run's journal, opened with
    /// `identities`. A listed file that cannot be opened (cut short, corrupt) is skipped and
    /// named. A state whose results file lists no sealed file (written before the list
    /// existed) uses every sealed file found, each named as unlisted.
    ///
    /// The results file says which token is current: a secret of another id under a recorded
    /// name goes to `superseded`, and the recorded id's secret, where held, is the current one.
    /// Sealed secrets without `identities` are an error naming the file.
    pub fn all_secrets_named(
        &self,
        identities: Option<&Identities>,
    ) -> Result<(SecretsFile, Vec<(PathBuf, String)>), SealError> {
        let mut all = self.ledger.secrets().clone();
        let legacy = self.ledger.results().sealed_files.is_empty();
        let (files, mut skipped) = if legacy {
            let found = sealed::list_in(&self.fs, &self.paths.sealed)?;
            let skipped = found
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        "used, though the results file lists no sealed file (written before the list existed); the next apply or import lists it".to_owned(),
                    )
                })
                .collect();
            (found, skipped)
        } else {
            let sorted = sealed::sort_listed_in(
                &self.fs,
                &self.paths.sealed,
                &self.ledger.results().sealed_files,
            )?;
            (
                sorted.trusted.into_iter().map(|(p, _)| p).collect(),
                sorted.ignored,
            )
        };
        if (!files.is_empty() || !self.recovered_sealed.is_empty()) && identities.is_none() {
            let path = files
                .first()
                .cloned()
                .unwrap_or_else(|| self.paths.journal.clone());
            return Err(SealError::Decrypt {
                path,
                detail: "the secrets are sealed and no identity was given".into(),
            });
        }
        let mut docs = Vec::with_capacity(files.len() + self.recovered_sealed.len());
        if let Some(ids) = identities {
            let mut opened = 0usize;
            let mut first_err = None;
            for path in &files {
                match ids.open_in(&self.fs, path) {
                    Ok(doc) => {
                        opened += 1;
                        docs.push(doc);
                    }
                    // A file cut short or otherwise unreadable does not hide the others.
                    Err(
                        e @ (SealError::Decrypt { .. }
                        | SealError::Content { .. }
                        | SealError::Read { .. }),
                    ) => {
                        skipped.push((path.clone(), format!("skipped: {e}")));
                        first_err.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            // Not one file opens: most likely the wrong identity, said as such.
            if opened == 0
                && let Some(e) = first_err
            {
                return Err(e);
            }
            for blob in &self.recovered_sealed {
                docs.push(ids.open_bytes(&self.paths.journal, blob.as_bytes())?);
            }
        }
        for doc in docs {
            all.merge(doc);
        }
        all.follow_results(|key| self.ledger.results().get(key).map(|r| r.token_id));
        Ok((all, skipped))
    }

    /// [`Store::all_secrets_named`] without the names of the files not used (logged).
    pub fn all_secrets(&self, identities: Option<&Identities>) -> Result<SecretsFile, SealError> {
        let (all, skipped) = self.all_secrets_named(identities)?;
        for (path, why) in skipped {
            tracing::warn!(file = %path.display(), "sealed file not used: {why}");
        }
        Ok(all)
    }

    /// Writes the sealed secrets replayed from an earlier run's journal, each as its own new
    /// sealed file (they cannot be merged without the private key), listed in the results file.
    fn write_recovered_sealed(&mut self) -> Result<(), StateError> {
        let run_id = format!("{}-recovered", sealed::new_run_id(&mut self.rng));
        for blob in std::mem::take(&mut self.recovered_sealed) {
            self.write_sealed(blob.as_bytes(), &run_id, &[], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Applies a sub-account record of this run or of a replayed journal (see
    /// [`crate::state::accounts`]).
    pub fn apply_account(&mut self, record: crate::state::accounts::AccountRecord, run_id: &str) {
        self.ledger
            .apply_account(record, run_id, &mut self.recovered_sealed);
    }

    /// A new run id from the store's random source (for the sub accounts a run creates).
    pub(super) fn new_run_id(&mut self) -> String {
        sealed::new_run_id(&mut self.rng)
    }

    /// Where the files are.
    pub fn paths(&self) -> &StatePaths {
        &self.paths
    }

    /// The recorded results and secrets.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The recorded results and secrets, to change through the ledger's operations.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The results (no secrets).
    pub fn results(&self) -> &ResultsFile {
        self.ledger.results()
    }

    /// The plaintext secrets.
    pub fn secrets(&self) -> &SecretsFile {
        self.ledger.secrets()
    }

    /// What the replay of an earlier journal recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Set by a run whose final save failed: the tokens no disk may hold (see the field).
    pub fn unsaved(&self) -> &[TokenKey] {
        &self.unsaved
    }

    /// Notes the tokens no disk may hold after a failed final save.
    pub(crate) fn set_unsaved(&mut self, unsaved: Vec<TokenKey>) {
        self.unsaved = unsaved;
    }

    /// The filesystem the state is on.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// The clock the state's timestamps come from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Applies one outcome of a request (see [`Ledger::apply`]).
    pub(super) fn apply(&mut self, key: &TokenKey, outcome: Outcome, at: &str) -> Applied {
        self.ledger
            .apply(key, outcome, at, &mut self.recovered_sealed)
    }
}

/// Every token id whose secret a secrets document holds.
fn doc_ids(doc: &SecretsFile) -> Vec<i64> {
    doc.accounts
        .values()
        .flat_map(|m| m.values().map(|r| r.token_id))
        .chain(doc.superseded.iter().map(|s| s.token_id))
        .collect()
}

/// A save that failed for want of room says how much it needs (each file is written whole
/// beside the one it replaces) and how much the filesystem has left.
fn room_needed<F: Fs>(fs: &F, e: StateError, sizes: &[(&str, usize)]) -> StateError {
    let StateError::Write { kind, path, source } = e else {
        return e;
    };
    let source = super::explain_read_only(source);
    if !crate::fs::errno::is_out_of_space(&source) {
        return StateError::Write { kind, path, source };
    }
    let kib = |n: u64| n.div_ceil(1024);
    let total: usize = sizes.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = sizes
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {} KiB", kib(*n as u64)))
        .collect();
    let free = fs
        .free_space(parent_dir(&path))
        .map(|free| format!("{} KiB are free", kib(free)))
        .unwrap_or_else(|_| "the free space is unknown".into());
    let detail = format!(
        "{source}; the save needs about {} KiB free ({}), {free} on that filesystem",
        kib(total as u64),
        parts.join(" + ")
    );
    StateError::Write {
        kind,
        path,
        source: std::io::Error::new(source.kind(), detail),
    }
}

fn sealed_write_error(dir: &std::path::Path, e: sealed::SealError) -> StateError {
    StateError::Write {
        kind: StateFile::Sealed,
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::CreateKind;
    use crate::state::HeldSecret;

    #[test]
    fn another_endpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let mut s = Store::open(paths.clone(), Some("https://api-eu.logz.io")).unwrap();
        s.save().unwrap();
        drop(s);
        let err = Store::open(paths, Some("https://api.logz.io")).unwrap_err();
        assert!(err.to_string().contains("api-eu"), "{err}");
    }

    use crate::secret::Secret;

    const URL: &str = "http://127.0.0.1:1";
    const AT: &str = "2026-11-30T01:00:00.000Z";

    fn key(n: &str) -> TokenKey {
        TokenKey {
            account_id: 42,
            token_name: n.into(),
        }
    }

    fn created(id: i64, secret: &str) -> Outcome {
        Outcome::Created {
            token_id: id,
            secret: HeldSecret::plain(Secret::new(secret)),
            created_at: "2021-05-24T12:11:51Z".into(),
        }
    }

    fn open(dir: &std::path::Path) -> (StatePaths, Store) {
        let paths = StatePaths::for_manifest(&dir.join("m.yaml"), None, None);
        let store = Store::open(paths.clone(), Some(URL)).unwrap();
        (paths, store)
    }

    fn apply(store: &mut Store, k: &TokenKey, outcome: Outcome) -> Applied {
        store.apply(k, outcome, AT)
    }

    #[test]
    fn the_same_endpoint_with_a_trailing_slash_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        s.save().unwrap();
        drop(s);
        let again = Store::open(paths, Some("http://127.0.0.1:1/")).unwrap();
        assert_eq!(again.results().api_url.as_deref(), Some(URL));
    }

    #[test]
    fn outcomes_are_recorded_once_and_an_id_given_twice_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut s) = open(dir.path());
        assert_eq!(
            apply(&mut s, &key("a"), created(10, "sek-a")),
            Applied::Recorded
        );
        let rec = s.results().get(&key("a")).unwrap();
        assert_eq!(
            (rec.token_id, rec.created_at.as_str(), rec.source),
            (10, "2021-05-24T12:11:51Z", None)
        );
        assert_eq!(s.secrets().get(&key("a")).unwrap().token.expose(), "sek-a");
        // A replay of the same answer.
        assert_eq!(
            apply(&mut s, &key("a"), created(10, "sek-a")),
            Applied::AlreadyKnown
        );
        // The API hands out a's id again, for b: never recorded as b's, secret kept aside.
        assert_eq!(
            apply(&mut s, &key("b"), created(10, "sek-b")),
            Applied::DuplicateId(key("a"))
        );
        assert!(s.results().get(&key("b")).is_none());
        assert_eq!(s.results().possible_orphans[0].token_name, "b");
        assert_eq!(s.secrets().superseded.len(), 1);
        assert_eq!(s.secrets().get(&key("a")).unwrap().token.expose(), "sek-a");
        assert_eq!(s.ledger().token_count(), 1);
    }

    #[test]
    fn a_replayed_journal_counts_what_it_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let lines = [
            Line::intent(1, "a"),
            Line::intent(2, "b"),
            Line::intent(3, "c"),
            Line::created(1, "a", 10),
            Line::created(3, "c", 11),
        ]
        .concat();
        std::fs::write(&paths.journal, lines).unwrap();
        std::fs::set_permissions(
            &paths.journal,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let s = Store::read(paths.clone(), Some(URL)).unwrap();
        assert_eq!(s.recovery().recovered_tokens, 2);
        assert_eq!(s.recovery().interrupted, 1);
        assert!(!s.recovery().truncated_tail);
    }

    /// Journal lines as a run writes them.
    struct Line;
    impl Line {
        fn intent(seq: u64, name: &str) -> Vec<u8> {
            super::journal::JournalRecord::Intent {
                seq,
                create: CreateKind::Token,
                account_id: 42,
                token_name: name.into(),
                attempt: 1,
                at: AT.into(),
            }
            .to_line()
        }
        fn created(seq: u64, name: &str, id: i64) -> Vec<u8> {
            super::journal::JournalRecord::Outcome {
                seq,
                create: CreateKind::Token,
                account_id: 42,
                token_name: name.into(),
                outcome: created(id, &format!("sek-{name}")),
                at: AT.into(),
            }
            .to_line()
        }
    }

    #[test]
    fn a_secrets_file_is_written_only_when_there_is_something_to_keep() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        s.save().unwrap();
        assert!(paths.results.exists());
        assert!(!paths.secrets.exists(), "no secrets, no secrets file");
        // A secret kept aside alone is worth a file.
        s.ledger_mut().secrets_mut().quarantine(
            &key("a"),
            7,
            Secret::new("sek-kept"),
            "odd".into(),
        );
        s.save().unwrap();
        assert!(paths.secrets.exists());
        // Once there is a file, it is kept up to date even when it empties.
        s.ledger_mut().secrets_mut().superseded.clear();
        s.save().unwrap();
        let text = std::fs::read_to_string(&paths.secrets).unwrap();
        assert!(!text.contains("sek-kept"), "{text}");
    }

    fn recipients(dir: &std::path::Path) -> (Recipients, Identities) {
        use age::secrecy::ExposeSecret;
        let key = age::x25519::Identity::generate();
        let file = dir.join("key.txt");
        std::fs::write(&file, format!("{}\n", key.to_string().expose_secret())).unwrap();
        (
            Recipients::new(vec![key.to_public()]).unwrap(),
            Identities::load(&file).unwrap(),
        )
    }

    #[test]
    fn a_sealing_run_writes_no_plaintext_and_seals_each_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, ids) = recipients(keys.path());
        let (paths, mut s) = open(dir.path());
        assert!(s.sealing().is_none());
        // Plaintext and nothing sealed: every secret without an identity.
        assert!(s.all_secrets(None).unwrap().accounts.is_empty());
        s.seal_to(r);
        assert!(s.sealing().is_some());
        assert_eq!(
            s.seal_run(|_| Ok(())).unwrap(),
            None,
            "nothing received yet"
        );
        assert_eq!(
            apply(&mut s, &key("a"), created(10, "sek-a")),
            Applied::Recorded
        );
        assert!(
            s.secrets().get(&key("a")).is_none(),
            "not in the plaintext file"
        );
        // Invariant 1: the results file may not name the token before its secret is sealed.
        assert!(matches!(
            s.save().unwrap_err(),
            StateError::Invariant { .. }
        ));
        let mut journaled = None;
        let path = s
            .seal_run(|f| {
                journaled = Some(f.clone());
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert!(path.starts_with(&paths.sealed));
        // Listed in the results file, with the digest of its bytes, as journaled before.
        let listed = s.results().sealed_files.last().unwrap().clone();
        assert_eq!(Some(&listed), journaled.as_ref());
        assert_eq!(
            listed.sha256,
            crate::state::sealed::sha256_hex(&std::fs::read(&path).unwrap())
        );
        s.save().unwrap();
        assert!(!paths.secrets.exists());
        assert_eq!(s.seal_run(|_| Ok(())).unwrap(), None, "written once");
        let doc = ids.open(&path).unwrap();
        assert_eq!(doc.get(&key("a")).unwrap().token.expose(), "sek-a");
        assert!(s.all_secrets(None).is_err());
        let all = s.all_secrets(Some(&ids)).unwrap();
        assert_eq!(all.get(&key("a")).unwrap().token.expose(), "sek-a");
    }

    #[test]
    fn a_file_changed_by_another_program_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        apply(&mut s, &key("a"), created(10, "sek-a"));
        s.save().unwrap();
        s.save().unwrap();
        // The secrets file edited behind the store's back.
        std::fs::write(&paths.secrets, b"{}").unwrap();
        std::fs::set_permissions(
            &paths.secrets,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        match s.save().unwrap_err() {
            StateError::ChangedUnderfoot { kind, path, .. } => {
                assert_eq!(kind, StateFile::Secrets);
                assert_eq!(path, paths.secrets);
            }
            other => panic!("{other}"),
        }
        assert_eq!(std::fs::read(&paths.secrets).unwrap(), b"{}");
        // And the results file.
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        s.save().unwrap();
        std::fs::write(&paths.results, b"{}").unwrap();
        match s.save().unwrap_err() {
            StateError::ChangedUnderfoot { kind, .. } => assert_eq!(kind, StateFile::Results),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_save_without_room_says_how_much_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let write = |raw| StateError::Write {
            kind: StateFile::Results,
            path: dir.path().join("r.json"),
            source: std::io::Error::from_raw_os_error(raw),
        };
        let full = room_needed(
            &RealFs,
            write(libc::ENOSPC),
            &[("secrets", 0), ("results", 2048)],
        );
        let msg = full.to_string();
        assert!(
            msg.contains("the save needs about 2 KiB free (results 2 KiB)"),
            "{msg}"
        );
        assert!(msg.contains("KiB are free"), "{msg}");
        let other = room_needed(&RealFs, write(libc::EIO), &[("results", 2048)]);
        assert!(!other.to_string().contains("needs about"), "{other}");
    }

    /// A wall clock stopped at one second; the monotonic time is tokio's.
    #[derive(Debug)]
    struct Stopped;

    impl crate::clock::Clock for Stopped {
        fn now_utc(&self) -> time::OffsetDateTime {
            time::macros::datetime!(2031-01-02 03:04:05.678 UTC)
        }
        fn now(&self) -> tokio::time::Instant {
            tokio::time::Instant::now()
        }
    }

    fn open_stopped(dir: &std::path::Path) -> (StatePaths, Store) {
        let paths = StatePaths::for_manifest(&dir.join("m.yaml"), None, None);
        let store = Store::open_in(
            RealFs,
            std::sync::Arc::new(Stopped),
            random::seeded(7),
            paths.clone(),
            Some(URL),
        )
        .unwrap();
        (paths, store)
    }

    fn file_name_of(p: &std::path::Path) -> String {
        p.file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn sealed_files_written_in_one_second_each_get_a_name_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, ids) = recipients(keys.path());
        let (_, mut s) = open_stopped(dir.path());
        s.seal_to(r);
        let run = s.sealing().unwrap().run_id.clone();
        let mut names = Vec::new();
        for (n, id) in [("a", 10), ("b", 11), ("c", 12)] {
            apply(&mut s, &key(n), created(id, &format!("sek-{n}")));
            let path = s.seal_run(|_| Ok(())).unwrap().unwrap();
            names.push(file_name_of(&path));
        }
        assert_eq!(
            names,
            [
                format!("20310102T030405Z-{run}.age"),
                format!("20310102T030405Z-{run}-2.age"),
                format!("20310102T030405Z-{run}-3.age"),
            ]
        );
        s.save().unwrap();
        let all = s.all_secrets(Some(&ids)).unwrap();
        assert_eq!(all.get(&key("c")).unwrap().token.expose(), "sek-c");
    }

    #[test]
    fn a_document_sealed_on_its_own_makes_its_secrets_durable() {
        // Secrets given by the user (an import) sealed into a file of their own: the tokens
        // they belong to may be saved, as their secrets are in a listed sealed file.
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, ids) = recipients(keys.path());
        let (paths, mut s) = open_stopped(dir.path());
        s.seal_to(r.clone());
        apply(&mut s, &key("a"), created(10, "sek-a"));
        assert!(matches!(
            s.save().unwrap_err(),
            StateError::Invariant { .. }
        ));
        let mut doc = SecretsFile::default();
        doc.insert(&key("a"), 10, Secret::new("sek-a"));
        let path = s.seal_document(&r, &doc).unwrap();
        assert!(path.starts_with(&paths.sealed));
        let listed = s.results().sealed_files.last().unwrap();
        assert_eq!(listed.file, file_name_of(&path));
        assert_eq!(
            listed.sha256,
            sealed::sha256_hex(&std::fs::read(&path).unwrap())
        );
        s.save().unwrap();
        assert_eq!(
            ids.open(&path)
                .unwrap()
                .get(&key("a"))
                .unwrap()
                .token
                .expose(),
            "sek-a"
        );
    }

    #[test]
    fn sealed_files_a_results_file_does_not_list_yet_are_listed_once() {
        // A state written before `sealed_files` existed: its sealed directory holds this
        // tool's files, its results file lists none. Opening it lists them, with their
        // digests and the run named in the file name.
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, _) = recipients(keys.path());
        let (paths, mut s) = open_stopped(dir.path());
        s.save().unwrap();
        drop(s);
        let mut doc = SecretsFile::default();
        doc.insert(&key("a"), 10, Secret::new("sek-a"));
        let armored = r.seal_secrets(&doc).unwrap();
        let name = "20261129T210306Z-1a2b3c4d.age";
        sealed::write_new(&paths.sealed, name, &armored).unwrap();
        let (_, mut s) = open_stopped(dir.path());
        assert_eq!(
            s.results().sealed_files,
            [crate::state::SealedFile {
                file: name.into(),
                sha256: sealed::sha256_hex(&armored),
                run_id: "1a2b3c4d".into(),
            }]
        );
        s.save().unwrap();
        drop(s);
        let (_, s) = open_stopped(dir.path());
        assert_eq!(s.results().sealed_files.len(), 1, "listed once");
    }

    #[test]
    fn a_sealed_file_a_killed_run_journaled_is_listed_only_if_it_holds_what_was_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, _) = recipients(keys.path());
        let (paths, mut s) = open_stopped(dir.path());
        s.save().unwrap();
        drop(s);
        let mut doc = SecretsFile::default();
        doc.insert(&key("a"), 10, Secret::new("sek-a"));
        let armored = r.seal_secrets(&doc).unwrap();
        let entry = |name: &str, bytes: &[u8]| crate::state::SealedFile {
            file: name.into(),
            sha256: sealed::sha256_hex(bytes),
            run_id: "1a2b3c4d".into(),
        };
        // Two written whole, one journaled but never written, one whose bytes differ.
        sealed::write_new(&paths.sealed, "1.age", &armored).unwrap();
        sealed::write_new(&paths.sealed, "3.age", b"other bytes").unwrap();
        sealed::write_new(&paths.sealed, "4.age", &armored).unwrap();
        let lines: Vec<u8> = [
            entry("1.age", &armored),
            entry("2.age", &armored),
            entry("3.age", &armored),
            entry("1.age", &armored),
            entry("4.age", &armored),
        ]
        .into_iter()
        .flat_map(|file| {
            super::journal::JournalRecord::Sealed {
                file,
                at: AT.into(),
            }
            .to_line()
        })
        .collect();
        std::fs::write(&paths.journal, lines).unwrap();
        std::fs::set_permissions(
            &paths.journal,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let s = Store::read(paths.clone(), Some(URL)).unwrap();
        assert_eq!(
            s.results().sealed_files,
            [entry("1.age", &armored), entry("4.age", &armored)]
        );
    }

    #[test]
    fn the_first_save_of_a_secret_writes_the_secrets_file() {
        // A token's secret, or a new sub account's shipping token alone: either is worth a
        // secrets file at the first save.
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        apply(&mut s, &key("a"), created(10, "sek-a"));
        s.save().unwrap();
        let text = std::fs::read_to_string(&paths.secrets).unwrap();
        assert!(text.contains("sek-a"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open(dir.path());
        s.ledger_mut().secrets_mut().shipping.insert(
            5,
            crate::state::ShippingSecret {
                account_name: "acme".into(),
                token: Secret::new("sek-ship"),
            },
        );
        s.save().unwrap();
        let text = std::fs::read_to_string(&paths.secrets).unwrap();
        assert!(text.contains("sek-ship"), "{text}");
    }

    #[test]
    fn a_journal_of_another_endpoint_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let mut lines = super::journal::JournalRecord::Begin {
            endpoint: "https://api-eu.logz.io".into(),
            at: AT.into(),
        }
        .to_line();
        lines.extend(Line::created(1, "a", 10));
        std::fs::write(&paths.journal, lines).unwrap();
        std::fs::set_permissions(
            &paths.journal,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let err = Store::read(paths.clone(), Some(URL)).unwrap_err();
        assert!(matches!(err, StateError::Broken { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("api-eu") && msg.contains(URL), "{msg}");
        // Its own endpoint's state takes it.
        let s = Store::read(paths, Some("https://api-eu.logz.io")).unwrap();
        assert_eq!(s.recovery().recovered_tokens, 1);
    }

    #[test]
    fn a_sealed_state_is_not_continued_in_plaintext_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, _) = recipients(keys.path());
        let (paths, mut s) = open_stopped(dir.path());
        // Plaintext so far: a run with or without recipients may go on.
        s.check_protection(false, false).unwrap();
        s.seal_to(r);
        apply(&mut s, &key("a"), created(10, "sek-a"));
        s.seal_run(|_| Ok(())).unwrap().unwrap();
        s.save().unwrap();
        drop(s);
        let (_, s) = open_stopped(dir.path());
        let err = s.check_protection(false, false).unwrap_err();
        assert!(matches!(err, StateError::Broken { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&paths.sealed.display().to_string()),
            "{err}"
        );
        s.check_protection(true, false).unwrap();
        s.check_protection(false, true).unwrap();
    }

    #[test]
    fn a_listed_sealed_file_that_cannot_be_opened_is_skipped_unless_none_can() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (r, ids) = recipients(keys.path());
        let (paths, mut s) = open_stopped(dir.path());
        s.seal_to(r);
        apply(&mut s, &key("a"), created(10, "sek-a"));
        s.seal_run(|_| Ok(())).unwrap().unwrap();
        // A listed file whose digest matches, but which is no age file (cut short, say).
        let bad = b"not an age file";
        sealed::write_new(&paths.sealed, "20300101T000000Z-bad.age", bad).unwrap();
        s.ledger_mut().list_sealed(crate::state::SealedFile {
            file: "20300101T000000Z-bad.age".into(),
            sha256: sealed::sha256_hex(bad),
            run_id: "bad".into(),
        });
        let (all, skipped) = s.all_secrets_named(Some(&ids)).unwrap();
        assert_eq!(all.get(&key("a")).unwrap().token.expose(), "sek-a");
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].0.ends_with("20300101T000000Z-bad.age"));
        assert!(skipped[0].1.starts_with("skipped: "), "{}", skipped[0].1);

        // Only the bad one listed: not one file opens, which is an error.
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut s) = open_stopped(dir.path());
        sealed::write_new(&paths.sealed, "20300101T000000Z-bad.age", bad).unwrap();
        s.ledger_mut().list_sealed(crate::state::SealedFile {
            file: "20300101T000000Z-bad.age".into(),
            sha256: sealed::sha256_hex(bad),
            run_id: "bad".into(),
        });
        assert!(s.all_secrets_named(Some(&ids)).is_err());
    }

    #[test]
    fn run_ids_are_eight_hex_digits_from_the_stores_random_source() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut s) = open_stopped(dir.path());
        let (a, b) = (s.new_run_id(), s.new_run_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(
                id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }
}
