//! Atomic, durable file replacement: temp file in the same directory, fsync, rename, fsync
//! the directory. A reader sees the old file or the new one, never half of either.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::StateError;

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
    fn mode(self) -> u32 {
        match self {
            FileKind::Public => 0o644,
            FileKind::Secret => 0o600,
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably. `label` names the file in errors.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    label: &'static str,
) -> Result<(), StateError> {
    if kind == FileKind::Secret {
        check_secret_target(path)?;
    }
    let dir = parent_dir(path);
    let werr = |source| StateError::Write {
        kind: label,
        path: path.to_path_buf(),
        source,
    };
    // `tempfile` creates the file with O_EXCL; the mode is set at creation, so a secret file
    // is never readable by others, not even for an instant.
    let prefix = temp_prefix(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(kind.mode()))
        .tempfile_in(dir)
        .map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    sync_dir(dir).map_err(werr)?;
    Ok(())
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
pub(crate) fn remove_stale_temps(path: &Path) -> std::io::Result<usize> {
    let dir = parent_dir(path);
    let prefix = temp_prefix(path);
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(TEMP_SUFFIX)
            && name.len() > prefix.len() + TEMP_SUFFIX.len()
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            fs::remove_file(entry.path())?;
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

/// Refuses to write secrets through a symlink or over a file others can read or write.
pub(crate) fn check_secret_target(path: &Path) -> Result<(), StateError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                return Err(StateError::Unsafe {
                    path: path.to_path_buf(),
                    reason: "it is a symbolic link; point --secrets at a regular file".into(),
                });
            }
            if !meta.is_file() {
                return Err(StateError::Unsafe {
                    path: path.to_path_buf(),
                    reason: "it is not a regular file".into(),
                });
            }
            if meta.mode() & 0o077 != 0 {
                return Err(StateError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its mode is {:04o}, so other users can read or change it; run `chmod 600 {}` after checking who read it",
                        meta.mode() & 0o7777,
                        path.display()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Write {
            kind: "secrets",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens (creating if needed) an append-only file with mode 0600, refusing symlinks.
pub(crate) fn open_secret_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Makes a rename or a file creation in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn stale_temp_files_of_a_target_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.secrets.json");
        fs::write(dir.path().join(".m.secrets.json.abc123.tmp"), b"{}").unwrap();
        fs::write(dir.path().join(".other.json.abc123.tmp"), b"{}").unwrap();
        fs::write(&target, b"{}").unwrap();
        assert_eq!(remove_stale_temps(&target).unwrap(), 1);
        assert!(dir.path().join(".other.json.abc123.tmp").exists());
        assert!(target.exists());
    }

    #[test]
    fn refuses_symlinks_and_loose_modes_for_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, b"{}", FileKind::Secret, "secrets").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"x");

        let loose = dir.path().join("loose.json");
        fs::write(&loose, b"{}").unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o666)).unwrap();
        let err = write_atomic(&loose, b"{}", FileKind::Secret, "secrets").unwrap_err();
        assert!(err.to_string().contains("0666"), "{err}");
    }
}
