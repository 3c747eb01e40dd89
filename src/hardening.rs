//! Process-level exposure: a core dump of this process would hold the owner token and every
//! secret received so far, in a file anyone who can read the dump directory may read. Dumps
//! are turned off at start, before any secret is read.

/// Sets the core-file size limit to 0 and marks the process not dumpable (which also keeps
/// other processes of the same user from attaching to it with ptrace or reading its memory
/// through `/proc`). Errors are returned for the caller to log; neither call needs privileges.
pub fn disable_core_dumps() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // The integration test `adversarial::no_core_file_can_be_written_by_a_running_command`
    // checks the limit of the real binary; this checks the flag, which /proc does not show.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_is_no_longer_dumpable() {
        disable_core_dumps().unwrap();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
    }
}
