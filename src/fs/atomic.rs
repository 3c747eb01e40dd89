//! Atomic, durable file replacement: temp file in the same directory, fsync, rename, fsync
//! the directory. A reader sees the old file or the new one, never half of either.

use std::io::Write;
use std::path::Path;

use super::trust::check_secret_target;
use super::{FileError, FileType, Fs, FsFile, Meta, RealFs};

/// What a file holds, which decides its mode and the checks made before replacing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// No secrets (the results file, plan files): 0644.
    Public,
    /// Secrets (the secrets file, exports): 0600 from the first byte, never through a symlink,
    /// never over a file that others can read or write.
    Secret,
}

impl FileKind {
    /// The mode a file of this kind is created with.
    pub fn mode(self) -> u32 {
        match self {
            FileKind::Public => 0o644,
            FileKind::Secret => 0o600,
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably. `what` names the file in errors
/// ("results", "plan").
///
/// Returns the metadata of the file written, taken before it replaced `path`: a program that
/// replaces `path` right after cannot pass its file off as this one.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    what: &'static str,
) -> Result<Meta, FileError> {
    write_atomic_in(&RealFs, path, bytes, kind, what, true)
}

/// Writes `path` atomically and durably, only if it does not exist yet (checked by the rename
/// itself, so nothing that appears meanwhile is replaced).
pub fn write_atomic_new(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    what: &'static str,
) -> Result<Meta, FileError> {
    write_atomic_in(&RealFs, path, bytes, kind, what, false)
}

/// [`write_atomic`] (`replace`) or [`write_atomic_new`] on the filesystem `fs`.
pub fn write_atomic_in<F: Fs>(
    fs: &F,
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    what: &'static str,
    replace: bool,
) -> Result<Meta, FileError> {
    write_atomic_checked(fs, path, bytes, kind, what, replace, || Ok(()))
}

/// [`write_atomic_in`], calling `before_rename` once the new file is durable and right before
/// it replaces `path`: a check that `path` still holds what the caller last saw, made there,
/// leaves no window for another program's replacement but the rename itself. When it fails,
/// the temp file is removed and `path` is left alone.
pub fn write_atomic_checked<F: Fs, E: From<FileError>>(
    fs: &F,
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    what: &'static str,
    replace: bool,
    before_rename: impl FnOnce() -> Result<(), E>,
) -> Result<Meta, E> {
    if !replace && fs.symlink_metadata(path).is_ok() {
        return Err(exists(path, what).into());
    }
    if kind == FileKind::Secret {
        check_secret_target(fs, path)?;
    }
    let dir = parent_dir(path);
    let werr = |source| FileError::Write {
        what,
        path: path.to_path_buf(),
        source,
    };
    // Created with O_EXCL and the mode at creation, so a secret file is never readable by
    // others, not even for an instant.
    let prefix = temp_prefix(path);
    let (tmp, mut file) = fs
        .create_temp(dir, &prefix, TEMP_SUFFIX, kind.mode())
        .map_err(werr)?;
    let written = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        // The rename keeps the inode, size and mtime: this is the written file's identity.
        file.metadata()
    })();
    let written = match written {
        Ok(m) => m,
        Err(e) => {
            let _ = fs.remove_file(&tmp);
            return Err(werr(e).into());
        }
    };
    drop(file);
    if let Err(e) = before_rename() {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    let renamed = if replace {
        fs.rename(&tmp, path)
    } else {
        fs.rename_noclobber(&tmp, path)
    };
    if let Err(e) = renamed {
        let _ = fs.remove_file(&tmp);
        return Err(
            if !replace && e.kind() == std::io::ErrorKind::AlreadyExists {
                exists(path, what)
            } else {
                werr(e)
            }
            .into(),
        );
    }
    fs.sync_dir(dir).map_err(werr)?;
    Ok(written)
}

/// The error for a file that exists where a new one was to be written.
fn exists(path: &Path, what: &'static str) -> FileError {
    FileError::Exists {
        what,
        path: path.to_path_buf(),
    }
}

const TEMP_SUFFIX: &str = ".tmp";

/// Temp files are named after their target (`.NAME.<random>.tmp`), so that the ones a killed
/// write leaves behind can be found and removed.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Removes temp files a killed write of `path` left behind (a secrets temp file is a full copy
/// of the secrets). Call it while holding the state lock.
pub(crate) fn remove_stale_temps<F: Fs>(fs: &F, path: &Path) -> std::io::Result<usize> {
    let dir = parent_dir(path);
    let prefix = temp_prefix(path);
    let mut removed = 0;
    let entries = match fs.read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry.name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(TEMP_SUFFIX)
            && name.len() > prefix.len() + TEMP_SUFFIX.len()
            && entry.file_type == FileType::File
        {
            fs.remove_file(&entry.path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The directory a file is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_write_returns_the_identity_of_the_file_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let first = write_atomic(&p, b"{}", FileKind::Public, "results").unwrap();
        let on_disk = fs::symlink_metadata(&p).unwrap();
        assert_eq!((first.ino, first.len), (on_disk.ino(), 2));
        assert_eq!(
            (first.mtime, first.mtime_nsec),
            (on_disk.mtime(), on_disk.mtime_nsec()),
            "the rename keeps the mtime"
        );
        // Another program renames its own file over it: the identity returned is still the
        // one written, which the path no longer holds.
        let theirs = dir.path().join("theirs");
        fs::write(&theirs, b"{ }").unwrap();
        fs::rename(&theirs, &p).unwrap();
        assert_ne!(fs::symlink_metadata(&p).unwrap().ino(), first.ino);
        let second = write_atomic(&p, b"{\"a\":1}", FileKind::Public, "results").unwrap();
        assert_eq!(second.len, 7);
        assert_eq!(fs::symlink_metadata(&p).unwrap().ino(), second.ino);
    }

    #[test]
    fn secret_files_are_0600_and_public_files_0644() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.json");
        write_atomic(&s, b"{}", FileKind::Secret, "secrets").unwrap();
        assert_eq!(fs::metadata(&s).unwrap().mode() & 0o777, 0o600);
        let p = dir.path().join("p.json");
        write_atomic(&p, b"{}", FileKind::Public, "results").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        // Replacing keeps the content whole and leaves no temp file behind.
        write_atomic(&s, b"{\"a\":1}", FileKind::Secret, "secrets").unwrap();
        assert_eq!(fs::read(&s).unwrap(), b"{\"a\":1}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_new_file_is_never_written_over_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.env");
        write_atomic_new(&p, b"one", FileKind::Secret, "export").unwrap();
        let err = write_atomic_new(&p, b"two", FileKind::Secret, "export").unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_that_appears_before_the_rename_is_kept_and_told_as_existing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.env");
        // Another program creates the file after the check, before the rename: the rename
        // itself refuses, and says the file exists.
        let err = write_atomic_checked(
            &RealFs,
            &p,
            b"ours",
            FileKind::Secret,
            "export",
            false,
            || {
                fs::write(&p, b"theirs").unwrap();
                Ok::<(), FileError>(())
            },
        )
        .unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err:?}");
        assert_eq!(fs::read(&p).unwrap(), b"theirs");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        // Any other failure of the rename is a write error, not "exists".
        let q = dir.path().join("other.env");
        let err = write_atomic_checked(
            &RealFs,
            &q,
            b"ours",
            FileKind::Secret,
            "export",
            false,
            || {
                for e in fs::read_dir(dir.path()).unwrap() {
                    let e = e.unwrap().path();
                    if e != p {
                        fs::remove_file(e).unwrap();
                    }
                }
                Ok::<(), FileError>(())
            },
        )
        .unwrap_err();
        assert!(matches!(err, FileError::Write { .. }), "{err:?}");
        assert!(!q.exists());
    }

    #[test]
    fn stale_temp_files_of_a_target_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.secrets.json");
        fs::write(dir.path().join(".m.secrets.json.abc123.tmp"), b"{}").unwrap();
        fs::write(dir.path().join(".other.json.abc123.tmp"), b"{}").unwrap();
        // Nothing between the prefix and the suffix: not a name a write makes.
        fs::write(dir.path().join(".m.secrets.json..tmp"), b"{}").unwrap();
        fs::write(&target, b"{}").unwrap();
        assert_eq!(remove_stale_temps(&RealFs, &target).unwrap(), 1);
        assert!(!dir.path().join(".m.secrets.json.abc123.tmp").exists());
        assert!(dir.path().join(".other.json.abc123.tmp").exists());
        assert!(dir.path().join(".m.secrets.json..tmp").exists());
        assert!(target.exists());
        assert_eq!(remove_stale_temps(&RealFs, &target).unwrap(), 0);
    }

    #[test]
    fn stale_temps_of_a_missing_directory_are_none_but_other_errors_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere").join("m.secrets.json");
        assert_eq!(remove_stale_temps(&RealFs, &missing).unwrap(), 0);
        // The "directory" is a file: not a missing directory, an error.
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = remove_stale_temps(&RealFs, &file.join("m.secrets.json")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    }

    #[test]
    fn the_parent_of_a_bare_name_is_the_current_directory() {
        assert_eq!(parent_dir(Path::new("m.yaml")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/b/m.yaml")), Path::new("/a/b"));
        assert_eq!(parent_dir(Path::new("/")), Path::new("."));
    }
}
