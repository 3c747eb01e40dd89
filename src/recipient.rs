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

/// Reads a recipients file (age's `-R` format), a regular file of at most 1 MiB.
pub fn read_recipients_file(path: &Path) -> Result<Vec<x25519::Recipient>, RecipientsFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let rerr = |detail: String| RecipientsFileError::Read {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| rerr(e.to_string()))?;
    let meta = file.metadata().map_err(|e| rerr(e.to_string()))?;
    if !meta.is_file() {
        return Err(rerr("not a regular file".into()));
    }
    let mut text = String::new();
    file.take(MAX_RECIPIENTS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| rerr(e.to_string()))?;
    parse_recipients_file(&text).map_err(|(line, error)| RecipientsFileError::Line {
        path: path.to_path_buf(),
        line,
        error,
    })
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
    /// Anything else.
    #[error("{shown:?} is not an age X25519 recipient (age1… as `age-keygen` prints it)")]
    Malformed {
        /// The start of the value, for the message.
        shown: String,
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
            shown: text.chars().take(24).collect(),
        })
}

/// Parses a recipients file in age's `-R` format: one recipient a line, `#` comments and
/// blank lines ignored. Errors carry the 1-based line number.
pub fn parse_recipients_file(
    text: &str,
) -> Result<Vec<x25519::Recipient>, (usize, RecipientError)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_recipient(line).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
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
}
