//! The filesystem seam: every file the state touches goes through an [`Fs`], so that a test
//! can put a simulated filesystem under the real code (a durable image beside pending writes,
//! lost or torn on a crash; ENOSPC, EIO, EROFS, short writes; a filesystem turned read-only).
//! [`RealFs`](super::RealFs) is the default and the only one in the tool.
//!
//! The calls are the ones the state makes, at the level it makes them: an open with its
//! flags (mode, `O_EXCL`, `O_NOFOLLOW`), positioned writes, fsync of a file and of a
//! directory, rename (replacing or not), remove, `lstat`/`stat` for the trust checks, the room
//! a journal holds ahead (`fallocate`), and the lock (`flock`).

use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

/// How to open a file: `open(2)`'s flags, as the state uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenHow {
    /// For reading.
    pub read: bool,
    /// For writing.
    pub write: bool,
    /// Create it when missing (`O_CREAT`).
    pub create: bool,
    /// Create it, failing with `AlreadyExists` when it exists (`O_CREAT | O_EXCL`).
    pub create_new: bool,
    /// The mode of a file created (before the umask).
    pub mode: u32,
    /// Follow a symbolic link at the path itself (without it, `O_NOFOLLOW`: a link fails with
    /// `ELOOP`).
    pub follow: bool,
    /// Open without blocking (`O_NONBLOCK`: a FIFO opens, and is then refused).
    pub nonblock: bool,
}

impl OpenHow {
    /// Reading a file that must be a regular file, never blocking.
    pub const fn read(follow: bool) -> OpenHow {
        OpenHow {
            read: true,
            write: false,
            create: false,
            create_new: false,
            mode: 0,
            follow,
            nonblock: true,
        }
    }

    /// Creating a new file with `mode`, for reading and positioned writes, never through a
    /// symlink and never over an existing file.
    pub const fn create_new(mode: u32) -> OpenHow {
        OpenHow {
            read: true,
            write: true,
            create: false,
            create_new: true,
            mode,
            follow: false,
            nonblock: false,
        }
    }
}

/// What kind of file a path names (without following a symlink, for `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// What the state reads of a file's metadata (`stat(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub file_type: FileType,
    /// Its size in bytes.
    pub len: u64,
    /// Its mode bits (permissions, sticky), as `st_mode & 0o7777`.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its names (hard links).
    pub nlink: u64,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its modification time, seconds.
    pub mtime: i64,
    /// Its modification time, the nanoseconds.
    pub mtime_nsec: i64,
}

impl Meta {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::File
    }
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Dir
    }
    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }
}

/// An entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: OsString,
    /// Its path (the directory joined with the name).
    pub path: PathBuf,
    /// What it is (not following a symlink).
    pub file_type: FileType,
}

/// Why a lock could not be taken at once.
#[derive(Debug)]
pub enum TryLock {
    /// Another holds it.
    WouldBlock,
    /// The call failed.
    Error(io::Error),
}

/// An open file.
pub trait FsFile: io::Read + io::Write + io::Seek + Send + Sync + Debug + 'static {
    /// Writes some of `buf` at `offset`, as `pwrite(2)`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fsync(2)`.
    fn sync_all(&self) -> io::Result<()>;
    /// `fdatasync(2)`.
    fn sync_data(&self) -> io::Result<()>;
    /// `fstat(2)`.
    fn metadata(&self) -> io::Result<Meta>;
    /// `ftruncate(2)`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file own the blocks of `len` bytes from `offset` without changing its size
    /// (`fallocate(2)` with `FALLOC_FL_KEEP_SIZE`); `Unsupported` where the filesystem cannot.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// The magic number of the filesystem holding the file (`fstatfs(2)`'s `f_type`).
    fn filesystem_magic(&self) -> io::Result<u64>;
    /// Takes the file's exclusive lock without waiting (`flock(2)`).
    fn try_lock(&self) -> Result<(), TryLock>;
    /// Releases the lock.
    fn unlock(&self) -> io::Result<()>;
}

/// A filesystem. Cheap to clone (a handle).
pub trait Fs: Clone + Send + Sync + Debug + 'static {
    /// An open file of this filesystem.
    type File: FsFile;

    /// Opens `path` as `how` says.
    fn open(&self, path: &Path, how: &OpenHow) -> io::Result<Self::File>;
    /// Creates a new file in `dir` named `<prefix><something unique><suffix>` with `mode`,
    /// never over an existing one; returns its path and the file, open for writing.
    fn create_temp(
        &self,
        dir: &Path,
        prefix: &str,
        suffix: &str,
        mode: u32,
    ) -> io::Result<(PathBuf, Self::File)>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, failing with `AlreadyExists` when `to` exists (checked by the
    /// rename itself).
    fn rename_noclobber(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The entries of `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// `lstat(2)`: a symlink's own metadata.
    fn symlink_metadata(&self, path: &Path) -> io::Result<Meta>;
    /// `stat(2)`: through symlinks.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// The absolute path without symlinks.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// The bytes free for this user on the filesystem holding `dir`.
    fn free_space(&self, dir: &Path) -> io::Result<u64>;
}
