//! What the process backends (`cella-sandbox`, `cella-gramine`) share for an
//! [`Instance`](crate::Instance) that is a child process leading its own process group:
//! turning its wait status into an [`InstanceExit`], signalling its group, and reading
//! its standard error with a bound per line for the node's log.
//!
//! The group signal and the line reader live in `cella_preload::process` (the pre-load
//! module runs its workload the same way, and it is the lower crate); they are
//! re-exported here so that backends need only this module.

pub use cella_preload::process::{BoundedLines, LongLines, Signal, signal_group};

use crate::InstanceExit;

/// The [`InstanceExit`] of a child process from what waiting for it gave: its exit code,
/// else the signal that ended it, else the status as text; a failed wait is
/// [`InstanceExit::Other`] naming `what` was waited for (e.g. "the jailer").
pub fn instance_exit(
    waited: std::io::Result<std::process::ExitStatus>,
    what: &str,
) -> InstanceExit {
    use std::os::unix::process::ExitStatusExt as _;
    match waited {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(c), _) => InstanceExit::Exited(c),
            (None, Some(s)) => InstanceExit::Signaled(s),
            (None, None) => InstanceExit::Other(status.to_string()),
        },
        Err(e) => InstanceExit::Other(format!("waiting for {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn codes_signals_and_failed_waits() {
        let exited = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(instance_exit(Ok(exited), "x"), InstanceExit::Exited(3));
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(instance_exit(Ok(killed), "x"), InstanceExit::Signaled(9));
        let failed = instance_exit(Err(std::io::Error::other("gone")), "the jailer");
        assert_eq!(
            failed,
            InstanceExit::Other("waiting for the jailer: gone".into())
        );
    }
}
