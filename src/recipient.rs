//! age recipients (X25519 public keys, `age1…`): parsing and checking, for the manifest, the
//! command line and the sealing of secrets. A private key given by mistake is named as such
//! and never echoed.

use std::path::{Path, PathBuf};

use age::x25519;

/// The largest recipients file read.
const MAX_RECIPIENTS_FILE: u64 = 1024 * 1024;

/// A recipients file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipientsFileError {
    /// It cannot be read.
    #[error("cannot read recipients file {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A line is not a recipient.
    #[error("recipients file {path}, line {line}: {error}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        error: RecipientError,
    },
}

/// Reads a recipients file (age's `-R` format): a regular file (a symlink to one is followed:
/// the file holds public keys only) of at most 1 MiB, read without blocking (a FIFO or a device
/// is refused before any byte is read). The file may be anything the manifest's author pointed
/// at, an owner-token file or `/proc/self/environ` included, so no error quotes a byte of it:
/// an error names the line and what is wrong with it.
pub fn read_recipients_file(path: &Path) -> Result<Vec<x25519::Recipient>, RecipientsFileError> {
    let bytes =
        crate::bounded::read_regular(path, MAX_RECIPIENTS_FILE, crate::bounded::Symlinks::Follow)
            .map_err(|e| RecipientsFileError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    parse_recipients_bytes(&bytes).map_err(|(line, error)| RecipientsFileError::Line {
        path: path.to_path_buf(),
        line,
        error,
    })
}

/// [`parse_recipients_file`] over bytes: a line that is not UTF-8 is named, not shown.
fn parse_recipients_bytes(bytes: &[u8]) -> Result<Vec<x25519::Recipient>, (usize, RecipientError)> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err((i + 1, RecipientError::NotText));
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_recipient(line).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

/// A recipient string that is not an age X25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    /// It looks like a private key: never echoed.
    #[error(
        "this is an age private key (AGE-SECRET-KEY-…), not a recipient: give the public key (`age-keygen -y KEYFILE` prints it) and keep the private key off this machine"
    )]
    PrivateKey,
    /// An SSH key: not supported.
    #[error(
        "SSH recipients are not supported; use an age X25519 recipient (age1…), made with `age-keygen`"
    )]
    Ssh,
    /// A line of a recipients file that is not UTF-8 text.
    #[error(
        "this is not text (not UTF-8), so not an age recipient (age1… as `age-keygen` prints it)"
    )]
    NotText,
    /// Anything else. The value is never quoted: it may come from any file the manifest names
    /// (an owner-token file, `/proc/self/environ`), so only what is wrong is said.
    #[error("{reason}, so it is not an age X25519 recipient (age1… as `age-keygen` prints it)")]
    Malformed {
        /// What is wrong, in words that quote nothing of the value.
        reason: &'static str,
    },
}

/// Parses one recipient (`age1…`).
pub fn parse_recipient(text: &str) -> Result<x25519::Recipient, RecipientError> {
    let text = text.trim();
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(RecipientError::PrivateKey);
    }
    if text.starts_with("ssh-") || text.starts_with("ecdsa-") {
        return Err(RecipientError::Ssh);
    }
    text.parse::<x25519::Recipient>()
        .map_err(|_| RecipientError::Malformed {
            reason: malformed_reason(text),
        })
}

/// What is wrong with a value that is not a recipient, without quoting any of it.
fn malformed_reason(text: &str) -> &'static str {
    if !text.to_ascii_lowercase().starts_with("age1") {
        "it does not begin with `age1`"
    } else if text.chars().any(char::is_whitespace) {
        "it holds a space"
    } else if text.len() != 62 {
        "it begins with `age1` but is not 62 characters long (cut short, or run into other text?)"
    } else {
        "it begins with `age1` but its checksum does not match (a character is wrong)"
    }
}

/// Parses a recipients file in age's `-R` format: one recipient a line, `#` comments and
/// blank lines ignored. Errors carry the 1-based line number.
pub fn parse_recipients_file(
    text: &str,
) -> Result<Vec<x25519::Recipient>, (usize, RecipientError)> {
    parse_recipients_bytes(text.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn recipients_are_checked_and_a_private_key_is_never_echoed() {
        let key = x25519::Identity::generate();
        assert!(parse_recipient(&key.to_public().to_string()).is_ok());
        let private = key.to_string().expose_secret().to_owned();
        let err = parse_recipient(&private).unwrap_err();
        assert_eq!(err, RecipientError::PrivateKey);
        assert!(!err.to_string().contains(&private[15..]));
        assert!(matches!(
            parse_recipient("age1nope"),
            Err(RecipientError::Malformed { .. })
        ));
        assert_eq!(
            parse_recipient("ssh-ed25519 AAAA"),
            Err(RecipientError::Ssh)
        );
        let file = format!("# team\n\n{}\nbogus\n", key.to_public());
        let (line, _) = parse_recipients_file(&file).unwrap_err();
        assert_eq!(line, 4);
    }

    /// Whatever file the manifest names, no error quotes a byte of it: only the line and what
    /// is wrong with it.
    #[test]
    fn a_recipients_file_is_never_quoted_and_only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = x25519::Identity::generate().to_public().to_string();
        let cases: [(&str, Vec<u8>, usize, &str); 6] = [
            (
                "token",
                b"owner-tok-0f1e2d3c4b5a\n".to_vec(),
                1,
                "does not begin with `age1`",
            ),
            (
                "environ",
                b"LOGZIO_API_TOKEN=owner-tok-0f1e2d3c4b5a\0HOME=/root\0".to_vec(),
                1,
                "does not begin",
            ),
            (
                "binary",
                b"# ok\n\xffowner-tok-0f1e2d3c4b5a\n".to_vec(),
                2,
                "not UTF-8",
            ),
            (
                "cut",
                format!("{key}\n{}\n", &key[..40]).into_bytes(),
                2,
                "not 62 characters",
            ),
            (
                "typo",
                format!("{}x\n", &key[..61]).into_bytes(),
                1,
                "checksum",
            ),
            (
                "space",
                format!("{key} owner-tok-0f1e2d3c4b5a\n").into_bytes(),
                1,
                "holds a space",
            ),
        ];
        for (name, bytes, line, what) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let e = read_recipients_file(&path).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&format!("line {line}:")), "{name}: {msg}");
            assert!(msg.contains(what), "{name}: {msg}");
            assert!(!msg.contains("owner-tok"), "{name}: {msg}");
            assert!(!msg.contains(&key[4..20]), "{name}: {msg}");
        }
        // A symlink to a regular file is followed (the file is public keys).
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{key}\n")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(read_recipients_file(&link).unwrap().len(), 1);
        // A FIFO is refused without blocking; a directory too; a huge file is not read.
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let msg = read_recipients_file(&fifo).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(read_recipients_file(dir.path()).is_err());
        let big = dir.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(2 * MAX_RECIPIENTS_FILE).unwrap();
        let msg = read_recipients_file(&big).unwrap_err().to_string();
        assert!(msg.contains("larger"), "{msg}");
    }
}
