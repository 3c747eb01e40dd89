//! Reading input the tool does not control, without hanging or running out of memory: regular
//! files only (a FIFO would block forever, `/dev/zero` never ends), opened without blocking,
//! and read up to a size cap. What is read may be a secret, so it is zeroed when dropped.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

/// The largest state file (results, secrets) read: far above any real one (20,000 tokens make
/// about 2 MB), far below what would exhaust memory.
pub const MAX_STATE_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// The largest journal read; one left by an interrupted run of a very large manifest fits.
pub const MAX_JOURNAL_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest token or secret read from a file or stdin (a token is a 36-character UUID).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Whether a symbolic link at the path itself may be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow it (a token file mounted by Kubernetes is a symlink).
    Follow,
    /// Refuse it (files the tool writes secrets to, and their journal).
    Refuse,
}

/// Opens `path` for reading if it is a regular file. The open itself never blocks (a FIFO is
/// opened non-blocking, then refused).
pub fn open_regular(path: &Path, symlinks: Symlinks) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if symlinks == Symlinks::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symbolic link, which is not followed for this file",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file (a directory, FIFO, socket or device)",
        ));
    }
    Ok(file)
}

/// Reads all of a regular file, refusing one larger than `limit` bytes.
pub fn read_regular(path: &Path, limit: u64, symlinks: Symlinks) -> io::Result<Zeroizing<Vec<u8>>> {
    read_capped(open_regular(path, symlinks)?, limit)
}

/// Reads all of `r`, refusing more than `limit` bytes.
pub fn read_capped(r: impl Read, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// Reads the first line of `r` (without its line ending), refusing a line longer than `limit`
/// bytes and text that is not UTF-8; reads nothing past that line's end.
pub fn read_first_line(r: impl BufRead, limit: u64) -> io::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(limit.saturating_add(1))
        .read_until(b'\n', &mut bytes)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        )),
    }
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than {limit} bytes, more than any legitimate one"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fifos_devices_directories_and_symlinks_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Nobody writes to it: a blocking open or read would hang the test.
            let err = read_regular(&fifo, 10, Symlinks::Follow).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let err = read_regular(Path::new("/dev/zero"), 10, Symlinks::Follow).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = read_regular(dir.path(), 10, Symlinks::Follow).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_regular(&link, 10, Symlinks::Refuse).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = read_regular(&link, 10, Symlinks::Follow).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn sizes_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(
            &**read_regular(&p, 10, Symlinks::Refuse).unwrap(),
            b"0123456789"
        );
        let err = read_regular(&p, 9, Symlinks::Refuse).unwrap_err();
        assert!(err.to_string().contains("larger than 9 bytes"), "{err}");
        // An endless stream stops at the cap.
        let err = read_capped(io::repeat(b'x'), 1000).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn first_line_is_bounded() {
        assert_eq!(&*read_first_line(&b"tok\r\nrest"[..], 10).unwrap(), "tok");
        assert_eq!(&*read_first_line(&b"tok"[..], 10).unwrap(), "tok");
        assert_eq!(
            &*read_first_line(&b"0123456789\n"[..], 10).unwrap(),
            "0123456789"
        );
        let endless = io::BufReader::new(io::repeat(b'x'));
        assert!(read_first_line(endless, 1000).is_err());
        assert!(read_first_line(&b"\xff\xfe\n"[..], 10).is_err());
    }
}
