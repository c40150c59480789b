//! cgroup v1 memory and pids limits of a whole instance.
//!
//! The outer jailer creates `/sys/fs/cgroup/{memory,pids}/cella/jail-<pid>`, writes the
//! limits, moves the instance's PID 1 in before it starts anything, and removes the
//! directories when the instance is gone. Where the controllers are not writable (an
//! unprivileged caller, a read-only `/sys/fs/cgroup`) the limits are skipped with a
//! warning on stderr: the rlimits still hold. Directories of jailers that were killed
//! (their pid no longer exists) are removed by the next jailer that starts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::spec::CgroupLimits;

/// The cgroup v1 mount points the jailer uses.
const ROOT: &str = "/sys/fs/cgroup";
/// The jailer's own directory under each controller.
const PARENT: &str = "cella";

/// A limit file: name, value, whether the controller must have it.
type LimitFile = (&'static str, u64, bool);

/// An instance's cgroups, open for attaching its PID 1.
///
/// The directories are removed through descriptors of their parents opened before the
/// jailer entered its namespaces: from inside them, the paths are no longer found.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dirs: Vec<(File, String, PathBuf)>,
    procs: Vec<File>,
}

impl Cgroup {
    /// Creates the instance's cgroups and writes the limits; `Err` is the warning to
    /// print (nothing is left behind then).
    pub(crate) fn create(limits: &CgroupLimits) -> Result<Self, String> {
        Self::create_under(Path::new(ROOT), limits)
    }

    fn create_under(root: &Path, limits: &CgroupLimits) -> Result<Self, String> {
        let name = format!("jail-{}", std::process::id());
        let mut cg = Cgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        let files: [(&str, Vec<LimitFile>); 2] = [
            (
                "memory",
                vec![
                    ("memory.limit_in_bytes", limits.memory_bytes, true),
                    ("memory.memsw.limit_in_bytes", limits.memory_bytes, false),
                ],
            ),
            ("pids", vec![("pids.max", limits.pids, true)]),
        ];
        for (controller, values) in files {
            let parent = root.join(controller).join(PARENT);
            let step = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
            let result = (|| {
                if !parent.is_dir() {
                    match fs::create_dir(&parent) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(step("creating", &parent, e)),
                    }
                }
                sweep(&parent);
                let dir = parent.join(&name);
                let parent_fd = File::open(&parent).map_err(|e| step("opening", &parent, e))?;
                fs::create_dir(&dir).map_err(|e| step("creating", &dir, e))?;
                cg.dirs.push((parent_fd, name.clone(), dir.clone()));
                for (file, value, required) in &values {
                    let path = dir.join(file);
                    if !required && !path.exists() {
                        continue;
                    }
                    fs::write(&path, value.to_string()).map_err(|e| step("writing", &path, e))?;
                }
                let procs = dir.join("cgroup.procs");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&procs)
                    .map_err(|e| step("opening", &procs, e))?;
                cg.procs.push(f);
                Ok(())
            })();
            if let Err(w) = result {
                cg.remove();
                return Err(w);
            }
        }
        Ok(cg)
    }

    /// The host path of the memory controller's `memory.oom_control`, whose `oom_kill`
    /// line counts the processes the kernel killed at the instance's memory limit.
    pub(crate) fn oom_control(&self) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, _, dir)| dir.join("memory.oom_control"))
            .find(|p| p.is_file())
    }

    /// Moves process `pid` (host pid) into every cgroup of the instance.
    pub(crate) fn attach(&mut self, pid: i32) -> io::Result<()> {
        for f in &mut self.procs {
            f.write_all(pid.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Removes the cgroups; their processes must be gone (a few retries cover the
    /// kernel's lag in releasing exited tasks).
    pub(crate) fn remove(&mut self) {
        self.procs.clear();
        for (parent, name, dir) in self.dirs.drain(..) {
            for attempt in 0..50 {
                match unlinkat(&parent, name.as_str(), UnlinkatFlags::RemoveDir) {
                    Ok(()) => break,
                    Err(Errno::ENOENT) => break,
                    Err(e) if attempt == 49 => {
                        eprintln!(
                            "cella-jail: warning: cgroup {} not removed: {e}",
                            dir.display()
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
    }
}

/// Removes the directories of jailers that no longer run (killed before cleaning up).
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("jail-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            // Fails harmlessly (EBUSY) if processes are still inside.
            let _ = fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_hierarchy_is_a_warning_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // No controllers below this root: creating the parent fails.
        let warning = Cgroup::create_under(
            &dir.path().join("missing"),
            &CgroupLimits {
                memory_bytes: 1 << 20,
                pids: 10,
                required: false,
            },
        )
        .unwrap_err();
        assert!(warning.contains("missing/memory/cella"), "{warning}");
    }
}
