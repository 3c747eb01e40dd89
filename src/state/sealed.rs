//! Sealed secrets: secrets encrypted to public age (X25519) recipients, so that the machine a
//! run happens on needs no private key and a secret outlives that machine's disk.
//!
//! The format is age-encryption.org/v1, ASCII-armored, so every sealed file decrypts with the
//! reference `age` CLI. A sealed file's plaintext is the same JSON document as the secrets
//! file. Each run writes one new file, `<UTC time>-<run id>.age`, and never rewrites it: the
//! directory only grows, so concurrent branches merge in git without conflicts. While a run is
//! under way, each received secret is sealed on its own inside its journal record; recovery
//! after a crash writes those records out as sealed files without decrypting them.

use super::StateFile;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::x25519;

use super::{SecretsFile, StateError};
use crate::fs::{FileType, Fs, FsFile, OpenHow, RealFs};
pub use crate::recipient::{RecipientError, parse_recipient, parse_recipients_file};

/// The age recipients the secrets of a run are sealed to. These are public keys: printing
/// them is harmless.
#[derive(Clone)]
pub struct Recipients(Vec<x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

/// Errors sealing or unsealing.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Encryption failed (never expected with X25519 recipients).
    #[error("cannot seal a secret: {0}")]
    Encrypt(String),
    /// A sealed file could not be decrypted with the identities given.
    #[error(
        "cannot decrypt sealed file {path}: {detail}\n  = help: pass the age identity (private key) file whose public key is one of the manifest's recipients, with --identity or LOGZIO_TOKENS_IDENTITY_FILE"
    )]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The identity file cannot be used.
    #[error("cannot use identity file {path}: {detail}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What went wrong (never the key).
        detail: String,
    },
    /// A decrypted document is not a secrets document.
    #[error("sealed file {path} decrypted, but does not hold a secrets document: {detail}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Recipients {
    /// Recipients from parsed keys; `None` when there are none (plaintext mode).
    pub fn new(keys: Vec<x25519::Recipient>) -> Option<Recipients> {
        let mut keys = keys;
        keys.dedup_by(|a, b| a.to_string() == b.to_string());
        (!keys.is_empty()).then_some(Recipients(keys))
    }

    /// How many recipients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty set is `None`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Encrypts `plaintext` to every recipient, ASCII-armored. The plaintext is a secrets
    /// document, so this is one of the places a secret is written (into the ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let enc = age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 512);
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut w = enc
            .wrap_output(armor)
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        w.write_all(plaintext)
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        w.finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        Ok(out)
    }

    /// Seals a secrets document.
    pub fn seal_secrets(&self, doc: &SecretsFile) -> Result<Vec<u8>, SealError> {
        let plain = zeroize::Zeroizing::new(doc.to_bytes());
        self.seal(&plain)
    }
}

/// The age identities (private keys) that open sealed files, for `export --identity`.
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities([{} redacted])", self.0.len())
    }
}

/// The largest identity file read.
const MAX_IDENTITY_FILE: u64 = 64 * 1024;
/// The largest sealed file read.
const MAX_SEALED_FILE: u64 = 256 * 1024 * 1024;

impl Identities {
    /// Reads the identity file a user names (`--identity`, `LOGZIO_TOKENS_IDENTITY_FILE`) with
    /// ssh's rule for private keys: a file of this user that its group or others may read is
    /// refused (`chmod 600` fixes it; `age-keygen -o` writes 0600). A symlink is followed (a
    /// Kubernetes secret volume is made of them) and the file it leads to is checked; only a
    /// regular file is read (a FIFO or a device is refused before any byte is read), bounded.
    pub fn load_key_file(path: &Path) -> Result<Identities, SealError> {
        Identities::load_key_file_in(&RealFs, path)
    }

    /// [`Identities::load_key_file`] on the filesystem `fs`.
    pub fn load_key_file_in<F: Fs>(fs: &F, path: &Path) -> Result<Identities, SealError> {
        let ierr = |detail: String| SealError::Identity {
            path: path.to_path_buf(),
            detail,
        };
        let file = fs
            .open(path, &OpenHow::read(true))
            .map_err(|e| ierr(e.to_string()))?;
        let meta = file.metadata().map_err(|e| ierr(e.to_string()))?;
        if !meta.is_file() {
            return Err(ierr(
                "it is not a regular file (a directory, FIFO, socket or device)".into(),
            ));
        }
        let mode = meta.mode & 0o7777;
        if meta.uid == crate::fs::trust::euid() && mode & 0o077 != 0 {
            return Err(ierr(format!(
                "its mode is {mode:04o}, so other users can read this private key; run `chmod 600 {}` (if someone else could read it, make a new key pair and seal to its public key from now on)",
                path.display()
            )));
        }
        let bytes = crate::bounded::read_capped(file, MAX_IDENTITY_FILE)
            .map_err(|e| ierr(e.to_string()))?;
        Identities::parse(path, &bytes)
    }

    /// Reads an identity file as `age-keygen` writes it, whatever its mode (see
    /// [`Identities::load_key_file`] for a file a user names). A symlink is not followed.
    pub fn load(path: &Path) -> Result<Identities, SealError> {
        let ierr = |detail: String| SealError::Identity {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = read_bounded(&RealFs, path, MAX_IDENTITY_FILE).map_err(|e| match e {
            SealError::Read { source, .. } => ierr(source.to_string()),
            other => other,
        })?;
        Identities::parse(path, &bytes)
    }

    /// The identities of an identity file's bytes (read from `path`, named in errors).
    fn parse(path: &Path, bytes: &[u8]) -> Result<Identities, SealError> {
        let ierr = |detail: String| SealError::Identity {
            path: path.to_path_buf(),
            detail,
        };
        let file = age::IdentityFile::from_buffer(bytes).map_err(|_| {
            ierr("not an age identity file (as `age-keygen -o FILE` writes it)".into())
        })?;
        let ids = file
            .into_identities()
            .map_err(|_| ierr("it holds an identity this tool cannot use".into()))?;
        if ids.is_empty() {
            return Err(ierr("it holds no identity".into()));
        }
        Ok(Identities(ids))
    }

    /// Decrypts a sealed file into the secrets document it holds.
    pub fn open(&self, path: &Path) -> Result<SecretsFile, SealError> {
        self.open_in(&RealFs, path)
    }

    /// [`Identities::open`] on the filesystem `fs`.
    pub fn open_in<F: Fs>(&self, fs: &F, path: &Path) -> Result<SecretsFile, SealError> {
        let bytes = read_bounded(fs, path, MAX_SEALED_FILE)?;
        self.open_bytes(path, &bytes)
    }

    /// Decrypts sealed `bytes` (read from `path`, named in errors).
    pub fn open_bytes(&self, path: &Path, bytes: &[u8]) -> Result<SecretsFile, SealError> {
        let derr = |detail: String| SealError::Decrypt {
            path: path.to_path_buf(),
            detail,
        };
        let reader = age::armor::ArmoredReader::new(bytes);
        let dec = age::Decryptor::new(reader).map_err(|e| derr(e.to_string()))?;
        let mut r = dec
            .decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| derr(e.to_string()))?;
        let mut plain = zeroize::Zeroizing::new(Vec::new());
        r.read_to_end(&mut plain).map_err(|e| derr(e.to_string()))?;
        let doc: SecretsFile = serde_json::from_slice(&plain).map_err(|e| SealError::Content {
            path: path.to_path_buf(),
            detail: super::json::json_error_kind(&e).to_owned(),
        })?;
        Ok(doc)
    }
}

fn read_bounded<F: Fs>(fs: &F, path: &Path, limit: u64) -> Result<Vec<u8>, SealError> {
    let rerr = |source| SealError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs.open(path, &OpenHow::read(false)).map_err(rerr)?;
    let meta = file.metadata().map_err(rerr)?;
    if !meta.is_file() {
        return Err(rerr(std::io::Error::other("not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(rerr)?;
    if bytes.len() as u64 > limit {
        return Err(rerr(std::io::Error::other(format!(
            "larger than {limit} bytes"
        ))));
    }
    Ok(bytes)
}

/// The bytes of a sealed file (a regular file, not through a symlink, of a bounded size).
pub fn read_in<F: Fs>(fs: &F, path: &Path) -> Result<Vec<u8>, SealError> {
    read_bounded(fs, path, MAX_SEALED_FILE)
}

/// A new run id: 8 hex digits, from `rng`.
pub fn new_run_id(rng: &mut impl rand::Rng) -> String {
    format!("{:08x}", rng.random::<u32>())
}

/// The name of a run's sealed file: `20261129T210306Z-1a2b3c4d.age`.
pub fn file_name(at: time::OffsetDateTime, run_id: &str) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = at
        .format(&fmt)
        .unwrap_or_else(|_| at.unix_timestamp().to_string());
    format!("{stamp}-{run_id}.age")
}

/// Writes a new sealed file `dir/name`, never over an existing one, atomically and durably:
/// a temp file in the directory, fsync'd, then renamed to its name without replacing anything,
/// and the directory fsync'd. A disk that fills or a process killed part way leaves at most a
/// temp file (removed by the next run), never a truncated file under the final name. The
/// directory is created (0700) when missing.
pub fn write_new(dir: &Path, name: &str, armored: &[u8]) -> Result<PathBuf, StateError> {
    write_new_in(&RealFs, dir, name, armored)
}

/// [`write_new`] on the filesystem `fs`.
pub fn write_new_in<F: Fs>(
    fs: &F,
    dir: &Path,
    name: &str,
    armored: &[u8],
) -> Result<PathBuf, StateError> {
    let path = dir.join(name);
    fs.create_dir_all(dir).map_err(|source| StateError::Write {
        kind: StateFile::Sealed,
        path: dir.to_path_buf(),
        source,
    })?;
    check_dir_in(fs, dir)?;
    if crate::reintroduced::on(crate::reintroduced::Bug::SealedInPlace) {
        use std::io::Write;
        let werr = |source| StateError::Write {
            kind: StateFile::Sealed,
            path: path.clone(),
            source,
        };
        let how = crate::fs::OpenHow::create_new(crate::fs::FileKind::Public.mode());
        let mut f = fs.open(&path, &how).map_err(werr)?;
        f.write_all(armored).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        return Ok(path);
    }
    crate::fs::atomic::write_atomic_in(
        fs,
        &path,
        armored,
        crate::fs::FileKind::Public,
        StateFile::Sealed.word(),
        false,
    )?;
    Ok(path)
}

/// The sealed directory is the only copy of the secrets on a CI runner's way to git: like
/// the state directory, it must be a real directory (not a symlink), belong to this user, and
/// not be writable by others (who could delete or swap the sealed files). A missing one is
/// fine: it is created when the first sealed file is written.
pub fn check_dir(dir: &Path) -> Result<(), StateError> {
    check_dir_in(&RealFs, dir)
}

/// [`check_dir`] on the filesystem `fs`.
pub fn check_dir_in<F: Fs>(fs: &F, dir: &Path) -> Result<(), StateError> {
    let untrusted = |reason: String| StateError::Untrusted {
        kind: StateFile::SealedDirectory,
        path: dir.to_path_buf(),
        reason,
    };
    let meta = match fs.symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StateError::Read {
                kind: StateFile::SealedDirectory,
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    if meta.is_symlink() {
        return Err(untrusted(
            "it is a symbolic link; point --sealed-dir at the real directory".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(untrusted("it is not a directory".into()));
    }
    // Its owner and mode, and its ancestors', as for the state directory: another user who
    // can write it could delete the only copy of the secrets, or swap a file.
    // The trust check names what it walks by real path: a relative --sealed-dir, or one under
    // a linked directory, is still the sealed directory's own fault, named as the user gave it.
    let own = |path: &Path| path == dir || fs.canonicalize(dir).is_ok_and(|real| real == path);
    crate::fs::trust::check_state_place(fs, &[&dir.join(".probe")]).map_err(|e| {
        match StateError::from(e) {
            StateError::Untrusted { path, reason, .. } if own(&path) => untrusted(reason),
            other => other,
        }
    })
}

/// The lower-case hex SHA-256 of a sealed file's bytes (`sealed_files` in the results file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sealed files of a directory sorted into those this tool wrote (listed in the results
/// file with the SHA-256 of their bytes, which still match) and the others, each with why it
/// is not used. A listed file that is missing is among the others too.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Listed files whose digest matches, with their bytes, in the order listed.
    pub trusted: Vec<(PathBuf, Vec<u8>)>,
    /// Every other `.age` file found, and every listed file missing or changed: not used.
    pub ignored: Vec<(PathBuf, String)>,
}

/// Sorts the sealed files of `dir` against the `listed` ones ([`Sorted`]).
pub fn sort_listed(dir: &Path, listed: &[super::SealedFile]) -> Result<Sorted, SealError> {
    sort_listed_in(&RealFs, dir, listed)
}

/// [`sort_listed`] on the filesystem `fs`.
pub fn sort_listed_in<F: Fs>(
    fs: &F,
    dir: &Path,
    listed: &[super::SealedFile],
) -> Result<Sorted, SealError> {
    let found = list_in(fs, dir)?;
    let mut out = Sorted::default();
    for l in listed {
        let path = dir.join(&l.file);
        // A listed name is a plain file name in the directory, nothing else.
        let plain_name = Path::new(&l.file)
            .file_name()
            .is_some_and(|n| n == l.file.as_str());
        if !plain_name {
            out.ignored
                .push((path, "its listed name is not a file name".into()));
            continue;
        }
        match read_bounded(fs, &path, MAX_SEALED_FILE) {
            Ok(bytes) => match super::invariants::promises::sealed_file_trusted(l, &bytes) {
                Ok(()) => out.trusted.push((path, bytes)),
                Err(v) => out.ignored.push((path, v.to_string())),
            },
            Err(e) => out
                .ignored
                .push((path, format!("listed in the results file, but {e}"))),
        }
    }
    for path in found {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if !listed.iter().any(|l| Some(&l.file) == name.as_ref()) {
            if crate::reintroduced::on(crate::reintroduced::Bug::TrustUnlisted)
                && let Ok(bytes) = read_bounded(fs, &path, MAX_SEALED_FILE)
            {
                out.trusted.push((path, bytes));
                continue;
            }
            out.ignored.push((
                path,
                "not listed in the results file's sealed_files: this tool did not write it (anyone can seal a file to a public recipient)".into(),
            ));
        }
    }
    if crate::reintroduced::on(crate::reintroduced::Bug::TrustUnlisted) {
        // As before the list existed: every file, oldest name first.
        out.trusted.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(out)
}

/// The sealed files of a directory, oldest first (by name: names start with the UTC time).
/// A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, SealError> {
    list_in(&RealFs, dir)
}

/// [`list`] on the filesystem `fs`.
pub fn list_in<F: Fs>(fs: &F, dir: &Path) -> Result<Vec<PathBuf>, SealError> {
    let entries = match fs.read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SealError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        if entry.path.extension().is_some_and(|e| e == "age") && entry.file_type == FileType::File {
            out.push(entry.path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::TokenKey;
    use crate::secret::Secret;
    use age::secrecy::ExposeSecret;
    use std::fs;

    fn doc(name: &str, id: i64, secret: &str) -> SecretsFile {
        let mut d = SecretsFile::default();
        d.insert(
            &TokenKey {
                account_id: 7,
                token_name: name.into(),
            },
            id,
            Secret::new(secret),
        );
        d
    }

    #[test]
    fn sealed_documents_round_trip_and_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let key = x25519::Identity::generate();
        let recipients = Recipients::new(vec![key.to_public()]).unwrap();
        let armored = recipients
            .seal_secrets(&doc("ci", 5, "very-secret-value"))
            .unwrap();
        let text = String::from_utf8(armored.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!text.contains("very-secret-value"));
        let path = write_new(
            dir.path(),
            &file_name(time::OffsetDateTime::now_utc(), "ab12cd34"),
            &armored,
        )
        .unwrap();
        // Never over an existing file.
        assert!(
            write_new(
                dir.path(),
                path.file_name().unwrap().to_str().unwrap(),
                b"x"
            )
            .is_err()
        );
        let idfile = dir.path().join("key.txt");
        fs::write(
            &idfile,
            format!("# created: now\n{}\n", key.to_string().expose_secret()),
        )
        .unwrap();
        let ids = Identities::load(&idfile).unwrap();
        let back = ids.open(&path).unwrap();
        let k = TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        };
        assert_eq!(back.get(&k).unwrap().token.expose(), "very-secret-value");
        assert_eq!(list(dir.path()).unwrap(), vec![path.clone()]);

        // A wrong identity names the file.
        let other = dir.path().join("other.txt");
        fs::write(
            &other,
            format!(
                "{}\n",
                x25519::Identity::generate().to_string().expose_secret()
            ),
        )
        .unwrap();
        let err = Identities::load(&other)
            .unwrap()
            .open(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!format!("{ids:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn file_names_sort_by_time() {
        let t = time::macros::datetime!(2026-11-29 21:03:06 UTC);
        assert_eq!(file_name(t, "1a2b3c4d"), "20261129T210306Z-1a2b3c4d.age");
        assert_eq!(new_run_id(&mut rand::rng()).len(), 8);
    }

    fn identity_file(dir: &Path, key: &x25519::Identity, size: usize) -> std::path::PathBuf {
        let line = format!("{}\n", key.to_string().expose_secret());
        let mut text = String::from("# ");
        text.push_str(&"p".repeat(size.saturating_sub(line.len() + 3)));
        text.push('\n');
        text.push_str(&line);
        let path = dir.join(format!("key-{size}.txt"));
        fs::write(&path, &text).unwrap();
        path
    }

    #[test]
    fn identity_files_are_read_up_to_their_limit_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let key = x25519::Identity::generate();
        let at_limit = identity_file(dir.path(), &key, MAX_IDENTITY_FILE as usize);
        assert_eq!(fs::metadata(&at_limit).unwrap().len(), MAX_IDENTITY_FILE);
        let ids = Identities::load(&at_limit).unwrap();
        assert_eq!(format!("{ids:?}"), "Identities([1 redacted])");
        let over = identity_file(dir.path(), &key, MAX_IDENTITY_FILE as usize + 1);
        let err = Identities::load(&over).unwrap_err().to_string();
        assert!(err.contains("larger than 65536 bytes"), "{err}");
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&at_limit, &link).unwrap();
        assert!(Identities::load(&link).is_err());
        let err = Identities::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// ssh's rule for private keys: one of this user's that others may read is refused, saying
    /// what to run; a symlink (a Kubernetes secret volume) is followed and its target checked.
    #[test]
    fn a_key_file_others_can_read_is_refused_and_a_link_to_a_good_one_is_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = x25519::Identity::generate();
        let file = identity_file(dir.path(), &key, 200);
        let set = |mode| fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            set(mode);
            let err = Identities::load_key_file(&file).unwrap_err().to_string();
            assert!(
                err.contains(&format!("its mode is {mode:04o}")) && err.contains("chmod 600"),
                "{err}"
            );
            assert!(!err.contains("AGE-SECRET"), "{err}");
        }
        set(0o600);
        assert!(Identities::load_key_file(&file).is_ok());
        set(0o400);
        assert!(Identities::load_key_file(&file).is_ok());
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(Identities::load_key_file(&link).is_ok());
        set(0o644);
        let err = Identities::load_key_file(&link).unwrap_err().to_string();
        assert!(err.contains("its mode is 0644"), "{err}");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = Identities::load_key_file(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn recipients_are_listed_once_each_and_printed_as_public_keys() {
        let a = x25519::Identity::generate().to_public();
        let b = x25519::Identity::generate().to_public();
        assert!(Recipients::new(Vec::new()).is_none());
        let one = Recipients::new(vec![a.clone(), a.clone()]).unwrap();
        assert_eq!(one.len(), 1);
        assert!(!one.is_empty());
        let two = Recipients::new(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(format!("{two:?}"), format!("[\"{a}\", \"{b}\"]"));
    }

    #[test]
    fn a_sealed_file_of_a_large_run_is_read_whole() {
        // (Its bytes only: sealing a megabyte in a debug build would slow every test run.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.age");
        fs::write(&path, vec![b'a'; 2 * 1024 * 1024]).unwrap();
        assert_eq!(
            read_bounded(&RealFs, &path, MAX_SEALED_FILE).unwrap().len(),
            2 * 1024 * 1024
        );
    }

    #[test]
    fn only_sealed_files_are_listed_and_a_missing_directory_has_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        fs::write(dir.path().join("b.age"), b"x").unwrap();
        fs::write(dir.path().join("a.age"), b"x").unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::create_dir(dir.path().join("c.age")).unwrap();
        assert_eq!(
            list(dir.path()).unwrap(),
            vec![dir.path().join("a.age"), dir.path().join("b.age")]
        );
        // A "directory" that is a file is an error, not an empty list.
        assert!(list(&dir.path().join("notes.txt")).is_err());
    }

    /// Checked like the state directory (another user who can write it could delete the only
    /// copy of the secrets), and named as the sealed directory where the fault is its own.
    #[test]
    fn the_sealed_directory_is_a_real_directory_only_this_user_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        };
        let untrusted = |dir: &Path| match check_dir(dir) {
            Err(StateError::Untrusted { kind, path, reason }) => (kind, path, reason),
            other => panic!("{}: {other:?}", dir.display()),
        };
        let tmp = tempfile::tempdir().unwrap();
        // Canonical: the trust check names the directories it walks by their real paths.
        let base = fs::canonicalize(tmp.path()).unwrap();
        set(&base, 0o700);
        // Missing: made when the first sealed file is written.
        check_dir(&base.join("missing")).unwrap();
        let dir = base.join("sealed");
        fs::create_dir(&dir).unwrap();
        set(&dir, 0o700);
        check_dir(&dir).unwrap();

        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let (kind, path, reason) = untrusted(&link);
        assert_eq!((kind, path), (StateFile::SealedDirectory, link));
        assert!(reason.contains("symbolic link"), "{reason}");

        let file = base.join("file");
        fs::write(&file, b"x").unwrap();
        let (kind, path, reason) = untrusted(&file);
        assert_eq!((kind, path), (StateFile::SealedDirectory, file.clone()));
        assert_eq!(reason, "it is not a directory");
        // A path that cannot be looked at (ENOTDIR) is an error, not a missing directory.
        let below = file.join("sealed");
        match check_dir(&below) {
            Err(StateError::Read { kind, path, .. }) => {
                assert_eq!((kind, path), (StateFile::SealedDirectory, below));
            }
            other => panic!("{other:?}"),
        }

        // Writable by every user: the sealed directory's own fault.
        set(&dir, 0o777);
        let (kind, path, reason) = untrusted(&dir);
        assert_eq!((kind, path), (StateFile::SealedDirectory, dir.clone()));
        assert!(reason.contains("every user can write it"), "{reason}");
        // The same, reached through a linked directory: still its own fault, named as given.
        let alias = base.join("alias");
        std::os::unix::fs::symlink(&base, &alias).unwrap();
        let (kind, path, _) = untrusted(&alias.join("sealed"));
        assert_eq!(
            (kind, path),
            (StateFile::SealedDirectory, alias.join("sealed"))
        );
        // Its parent writable by every user: the parent is named, as a state directory.
        set(&dir, 0o700);
        set(&base, 0o777);
        let found = untrusted(&dir);
        set(&base, 0o700);
        let (kind, path, reason) = found;
        assert_eq!((kind, path), (StateFile::StateDirectory, base));
        assert!(reason.contains("every user can write it"), "{reason}");
    }

    #[test]
    fn listed_files_whose_bytes_match_are_trusted_and_every_other_is_named_with_why() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let listed = |file: &str, bytes: &[u8]| crate::state::SealedFile {
            file: file.into(),
            sha256: sha256_hex(bytes),
            run_id: "1a2b3c4d".into(),
        };
        fs::write(dir.join("a.age"), b"sealed a").unwrap();
        fs::write(dir.join("b.age"), b"changed b").unwrap();
        fs::write(dir.join("d.age"), b"sealed by someone").unwrap();
        let sorted = sort_listed(
            dir,
            &[
                listed("b.age", b"sealed b"),
                listed("a.age", b"sealed a"),
                listed("c.age", b"gone"),
                listed("../a.age", b"sealed a"),
            ],
        )
        .unwrap();
        assert_eq!(sorted.trusted, [(dir.join("a.age"), b"sealed a".to_vec())]);
        let ignored: Vec<_> = sorted
            .ignored
            .iter()
            .map(|(p, why)| (p.strip_prefix(dir).unwrap().to_str().unwrap(), why.as_str()))
            .collect();
        let [b, c, up, d] = ignored.as_slice() else {
            panic!("{ignored:?}");
        };
        assert!(
            b.0 == "b.age" && b.1.contains(&sha256_hex(b"changed b")),
            "{b:?}"
        );
        assert!(
            c.0 == "c.age"
                && c.1
                    .starts_with("listed in the results file, but cannot read"),
            "{c:?}"
        );
        assert_eq!(up, &("../a.age", "its listed name is not a file name"));
        assert!(
            d.0 == "d.age" && d.1.starts_with("not listed in the results file"),
            "{d:?}"
        );
    }
}
