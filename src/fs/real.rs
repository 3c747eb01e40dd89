//! The real filesystem: [`Fs`] over `std::fs`, `rustix` and `tempfile`. The only place in
//! the state's reach that calls them directly (see `clippy.toml`).
#![allow(clippy::disallowed_methods)] // the injected default: the real calls live here

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
use rustix::fs::{FallocateFlags, fallocate};
#[cfg(target_os = "linux")]
use rustix::io::Errno;

use super::seam::{DirEntry, FileType, Fs, FsFile, Meta, OpenHow, TryLock};

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealFs;

fn meta(m: &fs::Metadata) -> Meta {
    let t = m.file_type();
    Meta {
        file_type: if t.is_symlink() {
            FileType::Symlink
        } else if t.is_file() {
            FileType::File
        } else if t.is_dir() {
            FileType::Dir
        } else {
            FileType::Other
        },
        len: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    }
}

impl FsFile for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn metadata(&self) -> io::Result<Meta> {
        File::metadata(self).map(|m| meta(&m))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    #[cfg(target_os = "linux")]
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        match fallocate(self, FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => Err(io::ErrorKind::Unsupported.into()),
            Err(e) => Err(e.into()),
        }
    }
    /// No `fallocate` outside Linux (macOS has none): the journal's room is zeros there.
    #[cfg(not(target_os = "linux"))]
    fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    #[cfg(target_os = "linux")]
    fn filesystem_magic(&self) -> io::Result<u64> {
        #[allow(clippy::unnecessary_cast)] // the field's type differs between targets
        rustix::fs::fstatfs(self)
            .map(|st| st.f_type as u64)
            .map_err(Into::into)
    }
    /// The magic numbers are Linux's; elsewhere the journal does no filesystem detection.
    #[cfg(not(target_os = "linux"))]
    fn filesystem_magic(&self) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn try_lock(&self) -> Result<(), TryLock> {
        match File::try_lock(self) {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => Err(TryLock::WouldBlock),
            Err(fs::TryLockError::Error(e)) => Err(TryLock::Error(e)),
        }
    }
    fn unlock(&self) -> io::Result<()> {
        File::unlock(self)
    }
}

impl Fs for RealFs {
    type File = File;

    fn open(&self, path: &Path, how: &OpenHow) -> io::Result<File> {
        let mut flags = libc::O_CLOEXEC;
        if !how.follow {
            flags |= libc::O_NOFOLLOW;
        }
        if how.nonblock {
            flags |= libc::O_NONBLOCK;
        }
        let mut o = OpenOptions::new();
        o.read(how.read)
            .write(how.write)
            .create(how.create)
            .create_new(how.create_new)
            .custom_flags(flags);
        if how.create {
            o.truncate(false);
        }
        if how.create || how.create_new {
            o.mode(how.mode);
        }
        o.open(path)
    }

    fn create_temp(
        &self,
        dir: &Path,
        prefix: &str,
        suffix: &str,
        mode: u32,
    ) -> io::Result<(PathBuf, File)> {
        // `tempfile` creates the file with O_EXCL and the mode at creation, so a secret file
        // is never readable by others, not even for an instant.
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(suffix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        let (file, path) = tmp.keep().map_err(|e| e.error)?;
        Ok((path, file))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn rename_noclobber(&self, from: &Path, to: &Path) -> io::Result<()> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            // No renameat2 here: a hard link fails when the target exists, just the same.
            Err(Errno::INVAL | Errno::NOSYS) => {
                fs::hard_link(from, to)?;
                fs::remove_file(from)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let t = entry.file_type()?;
            out.push(DirEntry {
                name: entry.file_name(),
                path: entry.path(),
                file_type: if t.is_symlink() {
                    FileType::Symlink
                } else if t.is_file() {
                    FileType::File
                } else if t.is_dir() {
                    FileType::Dir
                } else {
                    FileType::Other
                },
            });
        }
        Ok(out)
    }

    fn symlink_metadata(&self, path: &Path) -> io::Result<Meta> {
        fs::symlink_metadata(path).map(|m| meta(&m))
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        fs::metadata(path).map(|m| meta(&m))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        fs::canonicalize(path)
    }

    fn free_space(&self, dir: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `flock`'s lock belongs to the open file: unlocked, it can be taken through another open
    /// of the same file while the first stays open (closing it would release it anyway).
    #[test]
    fn an_unlocked_file_can_be_locked_through_another_open_while_it_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let how = OpenHow {
            read: true,
            write: true,
            create: true,
            create_new: false,
            mode: 0o600,
            follow: false,
            nonblock: true,
        };
        let first = RealFs.open(&path, &how).unwrap();
        let second = RealFs.open(&path, &how).unwrap();
        FsFile::try_lock(&first).unwrap();
        assert!(matches!(
            FsFile::try_lock(&second),
            Err(TryLock::WouldBlock)
        ));
        FsFile::unlock(&first).unwrap();
        FsFile::try_lock(&second).unwrap();
        assert!(matches!(FsFile::try_lock(&first), Err(TryLock::WouldBlock)));
    }

    /// The room left to this user, in bytes (the figure a full disk's message gives): the
    /// disk the tests run on has at least a block of it.
    #[test]
    fn free_space_is_the_room_left_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let free = RealFs.free_space(dir.path()).unwrap();
        let st = rustix::fs::statvfs(dir.path()).unwrap();
        assert!(free >= st.f_frsize, "{free} bytes");
        assert_eq!(
            free % st.f_frsize,
            0,
            "{free} bytes, blocks of {}",
            st.f_frsize
        );
        assert!(RealFs.free_space(&dir.path().join("missing")).is_err());
    }
}
