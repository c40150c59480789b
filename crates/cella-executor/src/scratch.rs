//! Run directories that outlive their run: claiming one, and sweeping those whose
//! owner is gone.
//!
//! An executor that lays a task's plaintext out in a host directory (the WebAssembly
//! executor's `/dev/shm/cella-wasm-*`) removes it when the run ends. A node that
//! crashes, or a run that is abandoned while its thread is stuck, leaves it behind,
//! with decrypted inputs in it. So each such directory holds an [`OWNER_LOCK`] file
//! that its run keeps locked (`flock`, released by the kernel when the process dies),
//! and an executor calls [`sweep_abandoned`] on its scratch places when it starts: a
//! directory whose lock can be taken has no live owner, and is removed.
//!
//! Several nodes may share a scratch place (`/dev/shm`): a live run's lock cannot be
//! taken, so a sweep never removes another live node's run. A directory without a lock
//! file is one being created right now, or one left by an older version; it is swept
//! once it is older than [`UNCLAIMED_GRACE`]. Directories of other users cannot be
//! opened (run directories are 0700) and are left alone.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file at the root of a claimed run directory. Its name starts with a dot
/// and it sits beside, not inside, what the function sees.
pub const OWNER_LOCK: &str = ".owner.lock";
/// Age after which a run directory without a lock file is swept: far longer than the
/// few milliseconds between creating a directory and claiming it.
pub const UNCLAIMED_GRACE: Duration = Duration::from_secs(60);

/// A claimed run directory's lock; the directory is live while this is held.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

/// Claims `dir` for this process: creates its [`OWNER_LOCK`] (0600) and locks it.
///
/// # Errors
///
/// The I/O error creating or locking the file (a lock already held is `WouldBlock`).
pub fn claim(dir: &Path) -> io::Result<OwnerLock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(OWNER_LOCK))?;
    file.try_lock().map_err(lock_error)?;
    Ok(OwnerLock { _file: file })
}

fn lock_error(e: TryLockError) -> io::Error {
    match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => io::ErrorKind::WouldBlock.into(),
    }
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Directories removed.
    pub removed: Vec<PathBuf>,
    /// Directories that had no owner but could not be removed, with the reason.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes every directory in `base` whose name starts with `prefix` and that has no
/// live owner (see the module's documentation). A missing `base` is an empty sweep.
pub fn sweep_abandoned(base: &Path, prefix: &str) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(entries) = fs::read_dir(base) else {
        return sweep;
    };
    for entry in entries.flatten() {
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(prefix));
        // `file_type` does not follow symlinks: a link is never followed into.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !named || !is_dir {
            continue;
        }
        let dir = entry.path();
        if is_abandoned(&dir) {
            match remove_abandoned(&dir) {
                Ok(()) => sweep.removed.push(dir),
                Err(e) => sweep.failed.push((dir, e)),
            }
        }
    }
    sweep
}

/// Whether `dir` has no live owner.
fn is_abandoned(dir: &Path) -> bool {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(OWNER_LOCK))
    {
        // The lock is released with the file when this returns; the directory is
        // removed right after, and no live run takes over a directory it did not make.
        Ok(file) => file.try_lock().is_ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::symlink_metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= UNCLAIMED_GRACE),
        // Another user's directory, or one we cannot read: not ours to judge.
        Err(_) => false,
    }
}

/// Removes an abandoned run directory and everything in it; one already gone is fine.
///
/// # Errors
///
/// The I/O error of the removal.
pub fn remove_abandoned(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_dir_survives_a_sweep_and_a_released_one_does_not() {
        let base = tempfile::tempdir().unwrap();
        let live = base.path().join("run-live");
        let dead = base.path().join("run-dead");
        let other = base.path().join("other-dead");
        for dir in [&live, &dead, &other] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join("input"), b"plaintext").unwrap();
        }
        let _held = claim(&live).unwrap();
        drop(claim(&dead).unwrap());
        drop(claim(&other).unwrap());
        // A second claim of a live directory is refused.
        assert!(claim(&live).is_err());

        let sweep = sweep_abandoned(base.path(), "run-");
        assert_eq!(sweep.removed, std::slice::from_ref(&dead));
        assert!(sweep.failed.is_empty(), "{:?}", sweep.failed);
        assert!(live.join("input").exists());
        assert!(!dead.exists());
        assert!(other.exists(), "a name without the prefix was swept");
    }

    #[test]
    fn an_unclaimed_dir_is_swept_only_once_it_is_old() {
        let base = tempfile::tempdir().unwrap();
        let young = base.path().join("run-young");
        fs::create_dir(&young).unwrap();
        assert!(sweep_abandoned(base.path(), "run-").removed.is_empty());
        assert!(young.exists());

        let old = base.path().join("run-old");
        fs::create_dir(&old).unwrap();
        let long_ago = std::time::SystemTime::now() - UNCLAIMED_GRACE - Duration::from_secs(1);
        File::open(&old).unwrap().set_modified(long_ago).unwrap();
        assert_eq!(sweep_abandoned(base.path(), "run-").removed, [old]);
        assert!(young.exists());
    }

    #[test]
    fn a_symlink_is_never_followed_and_a_missing_base_is_empty() {
        let base = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(target.path(), base.path().join("run-link")).unwrap();
        assert!(sweep_abandoned(base.path(), "run-").removed.is_empty());
        assert!(target.path().join("keep").exists());
        let gone = base.path().join("missing");
        assert!(sweep_abandoned(&gone, "run-").removed.is_empty());
        remove_abandoned(&gone).unwrap();
    }
}
