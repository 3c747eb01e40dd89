//! Loading a manifest: read the file, refuse what cannot be a manifest before parsing (too large,
//! not UTF-8, empty), parse it into a located tree, and validate it.

use std::io::Read as _;
use std::path::Path;

use super::diagnostic::ManifestError;
use super::node::{self, NodeValue};
use super::{MAX_MANIFEST_BYTES, Manifest, validate};

/// Loads and validates the manifest at `path`, expanding `${VAR}` from the process environment.
///
/// # Errors
///
/// [`ManifestError`] when the file cannot be read, is too large, is not UTF-8, is empty, or has
/// any problem (all of them are listed).
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let bytes = read(path)?;
    load_bytes(path, &bytes, &|name| std::env::var(name).ok())
}

/// Reads a manifest file's bytes, refusing more than [`MAX_MANIFEST_BYTES`] (also from a pipe or
/// an endless stream, which are read once and never past the limit).
///
/// # Errors
///
/// [`ManifestError::Io`] or [`ManifestError::TooLarge`].
pub fn read(path: &Path) -> Result<Vec<u8>, ManifestError> {
    let io = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(path, size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // Read one byte past the limit so a file that grew since `metadata` is still refused.
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_MANIFEST_BYTES {
        return Err(too_large(path, read));
    }
    Ok(bytes)
}

/// Loads and validates a manifest from bytes; `path` is only used in messages and as
/// [`Manifest::path`].
///
/// # Errors
///
/// As [`load`], except for reading.
pub fn load_bytes(
    path: &Path,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Manifest, ManifestError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(path, size));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(path, text, env),
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let line = valid.matches('\n').count() + 1;
            let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
            let column = valid[line_start..].chars().count() + 1;
            Err(ManifestError::NotUtf8 {
                path: path.to_path_buf(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            })
        }
    }
}

/// Loads and validates a manifest from text; `path` is only used in messages and as
/// [`Manifest::path`]. `env` looks up variables for `${VAR}` expansion.
///
/// # Errors
///
/// As [`load`], except for reading and decoding.
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Manifest, ManifestError> {
    let size = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(path, size));
    }
    let empty = || ManifestError::Empty {
        path: path.to_path_buf(),
    };
    if is_blank(text) {
        return Err(empty());
    }
    let invalid = |diagnostics| ManifestError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
        text: text.to_owned(),
    };
    let root = node::parse(text).map_err(|d| invalid(vec![d]))?;
    if root.value == NodeValue::Null {
        // `---`, `~` or `null` alone: as empty as a file of comments.
        return Err(empty());
    }
    validate::validate(path, text, &root, env).map_err(invalid)
}

fn too_large(path: &Path, size: u64) -> ManifestError {
    ManifestError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_MANIFEST_BYTES,
    }
}

/// Only whitespace and comment lines (and a byte-order mark)?
fn is_blank(text: &str) -> bool {
    text.trim_start_matches('\u{FEFF}').lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn blank_texts() {
        assert!(is_blank(""));
        assert!(is_blank(" \n\t\n"));
        assert!(is_blank("\u{FEFF}# a\n  # b\r\n"));
        assert!(!is_blank("a: 1 # c"));
    }

    #[test]
    fn non_utf8_reports_the_first_bad_byte() {
        let err = load_bytes(
            Path::new("m.yaml"),
            b"version: 1\nn\xC3\xA9: \xFF\n",
            &no_env,
        )
        .unwrap_err();
        match err {
            ManifestError::NotUtf8 { line, column, .. } => assert_eq!((line, column), (2, 5)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn crlf_line_endings_load_and_locate() {
        let text = "version: 1\r\naccounts:\r\n  - id: 0\r\n    tokens: [a]\r\n";
        let err = load_str(Path::new("m.yaml"), text, &no_env).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!((d.line, d.column, d.length), (3, 9, 1));
        assert!(err.to_string().contains("\n 3 |   - id: 0\n"), "{err}");
        let ok = text.replace("id: 0", "id: 7");
        assert_eq!(
            load_str(Path::new("m.yaml"), &ok, &no_env)
                .unwrap()
                .token_count(),
            1
        );
    }

    #[test]
    fn null_documents_are_empty() {
        for text in ["---\n", "~\n", "null", "--- # nothing\n..."] {
            let err = load_str(Path::new("m.yaml"), text, &no_env).unwrap_err();
            assert!(matches!(err, ManifestError::Empty { .. }), "{text}: {err}");
        }
    }

    #[test]
    fn load_reads_files_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "version: 1\naccounts:\n  - id: 1\n    tokens: [a]\n").unwrap();
        let m = load(&path).unwrap();
        assert_eq!(m.path, path);
        assert_eq!(m.token_count(), 1);
        let missing = dir.path().join("nope.yaml");
        let err = load(&missing).unwrap_err();
        assert!(matches!(err, ManifestError::Io { .. }));
        assert!(err.to_string().contains("nope.yaml"), "{err}");
        assert_eq!(err.path(), missing);
    }
}
