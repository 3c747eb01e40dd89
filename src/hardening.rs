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
