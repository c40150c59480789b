//! rlimits of the program (inherited by everything it starts).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::JailError;
use super::spec::Limits;

/// Sets the spec's rlimits, and no core files. A limit above the jailer's own hard limit
/// is lowered to it (an unprivileged process cannot raise a hard limit).
pub(crate) fn apply(limits: &Limits) -> Result<(), JailError> {
    let set = |res: Resource, name: &str, soft: u64, hard: u64| -> Result<(), JailError> {
        let (_, max) =
            getrlimit(res).map_err(|e| JailError::Setup(format!("getrlimit {name}: {e}")))?;
        let hard = hard.min(max);
        setrlimit(res, soft.min(hard), hard)
            .map_err(|e| JailError::Setup(format!("setrlimit {name} to {soft}: {e}")))
    };
    set(
        Resource::RLIMIT_AS,
        "RLIMIT_AS",
        limits.memory_bytes,
        limits.memory_bytes,
    )?;
    set(
        Resource::RLIMIT_NPROC,
        "RLIMIT_NPROC",
        limits.processes,
        limits.processes,
    )?;
    set(
        Resource::RLIMIT_NOFILE,
        "RLIMIT_NOFILE",
        limits.open_files,
        limits.open_files,
    )?;
    set(
        Resource::RLIMIT_FSIZE,
        "RLIMIT_FSIZE",
        limits.file_size_bytes,
        limits.file_size_bytes,
    )?;
    // SIGXCPU at the soft limit (a program may catch it and stop cleanly), SIGKILL a
    // second later.
    set(
        Resource::RLIMIT_CPU,
        "RLIMIT_CPU",
        limits.cpu_seconds,
        limits.cpu_seconds.saturating_add(1),
    )?;
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0, 0)?;
    Ok(())
}
