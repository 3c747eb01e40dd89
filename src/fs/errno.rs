//! What an OS error means for the tool, by its errno.

use std::io::{Error, ErrorKind};

/// Whether `e` says the filesystem has no room left (for this user).
pub fn is_out_of_space(e: &Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// Whether `e` says the filesystem is read-only (a remount, or the kernel's own after a disk
/// error).
pub fn is_read_only(e: &Error) -> bool {
    e.raw_os_error() == Some(libc::EROFS) || e.kind() == ErrorKind::ReadOnlyFilesystem
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn errnos_are_told_apart() {
        assert!(is_out_of_space(&Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_out_of_space(&Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_out_of_space(&Error::from_raw_os_error(libc::EIO)));
        assert!(is_read_only(&Error::from_raw_os_error(libc::EROFS)));
        assert!(!is_read_only(&Error::from_raw_os_error(libc::ENOSPC)));
    }
}
