//! What the process backends (`cella-sandbox`, `cella-gramine`) share for an
//! [`Instance`](crate::Instance) that is a child process leading its own process group:
//! turning its wait status into an [`InstanceExit`], signalling its group, and reading
//! its standard error with a bound per line for the node's log, removing its launch
//! directory and ending its background tasks when it is gone ([`RemoveDirOnDrop`],
//! [`AbortOnDrop`]); and [`descendants`],
//! the processes still below this one, for benchmarks and containment tests.
//!
//! The group signal, the line reader and [`descendants`] live in `cella_preload::process` (the pre-load
//! module runs its workload the same way, and it is the lower crate); they are
//! re-exported here so that backends need only this module.

pub use cella_preload::process::{
    BoundedLines, Descendant, LongLines, Signal, descendants, signal_group,
};

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

/// Aborts a background task of an instance (its evidence service) when dropped, or at
/// [`Self::abort`]: the task ends with the instance, however the instance goes.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts the task now.
    pub fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A directory removed with everything in it when dropped (or at [`Self::remove`]): an
/// instance's launch or run directory, which goes with the instance.
#[derive(Debug)]
pub struct RemoveDirOnDrop {
    path: Option<std::path::PathBuf>,
    what: &'static str,
}

impl RemoveDirOnDrop {
    /// Removes `path` when dropped; `what` names it in a warning if that fails (e.g. "a
    /// sandbox run dir").
    pub fn new(path: std::path::PathBuf, what: &'static str) -> Self {
        Self {
            path: Some(path),
            what,
        }
    }

    /// Removes the directory now (once; later calls and the drop do nothing). A directory
    /// already gone is fine; any other failure is logged as a warning.
    pub fn remove(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = std::fs::remove_dir_all(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "removing {}", self.what);
        }
    }
}

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        self.remove();
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

    #[test]
    fn a_dir_goes_when_dropped_or_removed() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("run");
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        drop(RemoveDirOnDrop::new(dir.clone(), "a test dir"));
        assert!(!dir.exists());
        std::fs::create_dir(&dir).unwrap();
        let mut guard = RemoveDirOnDrop::new(dir.clone(), "a test dir");
        guard.remove();
        assert!(!dir.exists());
        // Recreated after an explicit remove: the drop leaves it alone.
        std::fs::create_dir(&dir).unwrap();
        drop(guard);
        assert!(dir.exists());
    }
}
