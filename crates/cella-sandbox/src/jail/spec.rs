//! What the jailer is asked to run: [`JailSpec`], passed to `cella-jail` as JSON.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use cella_libos::config::SandboxSection;
use serde::{Deserialize, Serialize};

use super::JailError;

/// Everything the jailer needs to start one instance (see `docs/sandbox.md`).
///
/// Host paths are read by the outer jailer before it enters the namespaces; inside paths
/// are absolute paths in the instance's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailSpec {
    /// Host directory whose contents become the instance's read-only root (the image).
    pub rootfs: PathBuf,
    /// Host files or directories bound into the instance.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Size-capped tmpfs mounts inside the instance.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// Resource limits (rlimits) of the program and everything it starts.
    pub limits: Limits,
    /// cgroup v1 limits, applied when the controllers are writable (otherwise a warning).
    #[serde(default)]
    pub cgroup: Option<CgroupLimits>,
    /// Inside paths below which the program may write (Landlock); everything else is
    /// read-only to it whatever the mounts say.
    #[serde(default)]
    pub landlock_writable: Vec<PathBuf>,
    /// Inside path of the denials file that the supervisor keeps up to date; the jailer
    /// mounts a small tmpfs on its directory, which the program cannot write.
    pub denials_file: PathBuf,
    /// Host name inside the instance (its own UTS namespace).
    pub hostname: String,
    /// Working directory of the program, inside the instance.
    pub cwd: PathBuf,
    /// The program and its arguments; `argv[0]` without a `/` is looked up in `PATH` of
    /// [`JailSpec::env`] (default `/usr/bin:/bin`) inside the instance.
    pub argv: Vec<String>,
    /// The program's whole environment (nothing is inherited from the jailer's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Who the instance's root (uid and gid 0 inside) is on the host when the jailer runs
    /// as host root. An unprivileged jailer can map only its own ids, and does.
    #[serde(default)]
    pub host_ids: HostIds,
}

/// A host user and group, never root's: the instance's root on the host when the jailer
/// runs as root, so that files only host root may read stay unreadable inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostIds {
    /// The host uid.
    pub uid: u32,
    /// The host gid.
    pub gid: u32,
}

impl Default for HostIds {
    /// 65534 and 65534 (`nobody`, `nogroup`), as [`SandboxSection::default`] has them.
    fn default() -> Self {
        let s = SandboxSection::default();
        Self {
            uid: s.instance_uid,
            gid: s.instance_gid,
        }
    }
}

/// A host path bound into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// Host path (file, directory, socket or device).
    pub host: PathBuf,
    /// Inside path where it appears.
    pub inside: PathBuf,
    /// Whether the mount is writable; read-only otherwise. Writes also need Landlock's
    /// consent ([`JailSpec::landlock_writable`]).
    #[serde(default)]
    pub writable: bool,
}

/// A size-capped tmpfs inside the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// Inside path of the mount.
    pub inside: PathBuf,
    /// Most bytes it can hold; a write past it fails with `ENOSPC`.
    pub size_bytes: u64,
}

/// rlimits set on the program before it starts (inherited by its children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `RLIMIT_AS`: most bytes of address space per process.
    pub memory_bytes: u64,
    /// `RLIMIT_NPROC`: most processes (threads count) of the instance's user, counted in
    /// the instance's own user namespace (each instance apart, though they may share a
    /// host uid). [`CgroupLimits::pids`] bounds the instance as a whole.
    pub processes: u64,
    /// `RLIMIT_NOFILE`: most open file descriptors per process.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`: largest file a process may write.
    pub file_size_bytes: u64,
    /// `RLIMIT_CPU`: CPU seconds per process (`SIGXCPU`, then `SIGKILL` a second later).
    pub cpu_seconds: u64,
}

impl Default for Limits {
    /// The node configuration's defaults ([`SandboxSection::default`]).
    fn default() -> Self {
        Self::from(&SandboxSection::default())
    }
}

impl From<&SandboxSection> for Limits {
    /// The rlimits of the node's `[libos.sandbox]` section.
    fn from(l: &SandboxSection) -> Self {
        Self {
            memory_bytes: l.memory_bytes,
            processes: l.processes,
            open_files: l.open_files,
            file_size_bytes: l.file_size_bytes,
            cpu_seconds: l.cpu_seconds,
        }
    }
}

/// cgroup v1 limits of the whole instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupLimits {
    /// `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` where it exists).
    pub memory_bytes: u64,
    /// `pids.max`: most tasks (processes and threads) in the instance.
    pub pids: u64,
    /// Whether the instance may not run without them: the jailer fails (exit status
    /// 125) where the controllers are not writable, instead of warning and running under
    /// the per-process rlimits only.
    #[serde(default)]
    pub required: bool,
}

/// Inside paths the jailer itself mounts; a spec may not mount over them.
pub(crate) const RESERVED: &[&str] = &["/proc", "/dev"];

impl JailSpec {
    /// Checks what can be checked before anything is mounted: absolute, normal paths, a
    /// non-empty argv, sane sizes, no mount over the jailer's own, a denials file outside
    /// every writable path.
    pub fn validate(&self) -> Result<(), JailError> {
        let bad = |what: String| Err(JailError::Spec(what));
        if !self.rootfs.is_absolute() {
            return bad(format!(
                "rootfs {} is not an absolute path",
                self.rootfs.display()
            ));
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return bad("argv is empty".into());
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return bad("an argument contains a NUL byte".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!("invalid environment variable name or value: {k:?}"));
            }
        }
        if self.hostname.is_empty()
            || self.hostname.len() > 64
            || !self
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return bad(format!(
                "hostname {:?} is not 1 to 64 letters, digits, '-' or '.'",
                self.hostname
            ));
        }
        inside_path("cwd", &self.cwd)?;
        inside_path("denials_file", &self.denials_file)?;
        let denials_dir = self
            .denials_file
            .parent()
            .filter(|p| *p != Path::new("/"))
            .ok_or_else(|| {
                JailError::Spec(format!(
                    "denials_file {} must be in a directory below /, which the jailer mounts",
                    self.denials_file.display()
                ))
            })?;
        for b in &self.binds {
            if !b.host.is_absolute() {
                return bad(format!("bind source {} is not absolute", b.host.display()));
            }
            inside_path("bind target", &b.inside)?;
        }
        for t in &self.tmpfs {
            inside_path("tmpfs", &t.inside)?;
            if t.size_bytes == 0 {
                return bad(format!("tmpfs {} has size 0", t.inside.display()));
            }
        }
        for w in &self.landlock_writable {
            inside_path("landlock_writable", w)?;
            if self.denials_file.starts_with(w) {
                return bad(format!(
                    "denials_file {} is below the writable path {}: the program could forge it",
                    self.denials_file.display(),
                    w.display()
                ));
            }
        }
        let targets: Vec<&Path> = self
            .binds
            .iter()
            .map(|b| b.inside.as_path())
            .chain(self.tmpfs.iter().map(|t| t.inside.as_path()))
            .collect();
        for t in &targets {
            if t.parent().is_none() {
                return bad("a mount over / is not allowed (the root is the image)".into());
            }
            for r in RESERVED {
                if t.starts_with(r) {
                    return bad(format!("{} is mounted by the jailer itself", t.display()));
                }
            }
            if t.starts_with(denials_dir) || denials_dir.starts_with(t) {
                return bad(format!(
                    "mount {} overlaps the denials directory {}",
                    t.display(),
                    denials_dir.display()
                ));
            }
        }
        for r in RESERVED {
            if denials_dir.starts_with(r) {
                return bad(format!(
                    "denials_file {} is below {r}",
                    self.denials_file.display()
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &targets {
            if !seen.insert(*t) {
                return bad(format!("{} is mounted twice", t.display()));
            }
        }
        for (what, v) in [
            ("memory_bytes", self.limits.memory_bytes),
            ("processes", self.limits.processes),
            ("open_files", self.limits.open_files),
            ("file_size_bytes", self.limits.file_size_bytes),
            ("cpu_seconds", self.limits.cpu_seconds),
        ] {
            if v == 0 {
                return bad(format!("limit {what} is 0"));
            }
        }
        if self.host_ids.uid == 0 || self.host_ids.gid == 0 {
            return bad(format!(
                "host_ids {}:{} would make the instance's root host root",
                self.host_ids.uid, self.host_ids.gid
            ));
        }
        if let Some(c) = &self.cgroup
            && (c.memory_bytes == 0 || c.pids == 0)
        {
            return bad("a cgroup limit is 0".into());
        }
        Ok(())
    }
}

/// An inside path must be absolute and made of normal components only (no `..`, `.`).
fn inside_path(what: &str, p: &Path) -> Result<(), JailError> {
    let mut comps = p.components();
    if comps.next() != Some(Component::RootDir) || !comps.all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(JailError::Spec(format!(
            "{what} {} is not an absolute path without '.' or '..'",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JailSpec {
        JailSpec {
            rootfs: "/images/x/rootfs".into(),
            binds: vec![Bind {
                host: "/data/in".into(),
                inside: "/cella/inputs/a".into(),
                writable: false,
            }],
            tmpfs: vec![Tmpfs {
                inside: "/cella".into(),
                size_bytes: 1 << 20,
            }],
            limits: Limits::default(),
            cgroup: None,
            landlock_writable: vec!["/cella".into()],
            denials_file: "/run/cella/denials.json".into(),
            hostname: "cella".into(),
            cwd: "/cella".into(),
            argv: vec!["/bin/sh".into()],
            env: BTreeMap::new(),
            host_ids: HostIds::default(),
        }
    }

    #[test]
    fn a_good_spec_passes_and_round_trips_as_json() {
        let s = spec();
        s.validate().unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<JailSpec>(&json).unwrap(), s);
    }

    #[test]
    fn bad_specs_are_refused_naming_the_problem() {
        type Change = Box<dyn Fn(&mut JailSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.argv.clear()), "argv is empty"),
            (Box::new(|s| s.rootfs = "rel".into()), "rootfs"),
            (Box::new(|s| s.cwd = "/a/../b".into()), "cwd"),
            (
                Box::new(|s| s.denials_file = "/cella/denials.json".into()),
                "forge",
            ),
            (
                Box::new(|s| s.denials_file = "/d.json".into()),
                "directory below /",
            ),
            (
                Box::new(|s| s.tmpfs[0].inside = "/proc/x".into()),
                "mounted by the jailer",
            ),
            (Box::new(|s| s.tmpfs[0].size_bytes = 0), "size 0"),
            (Box::new(|s| s.limits.processes = 0), "processes"),
            (Box::new(|s| s.hostname = "a b".into()), "hostname"),
            (
                Box::new(|s| s.binds[0].inside = "/cella".into()),
                "mounted twice",
            ),
            (
                Box::new(|s| s.tmpfs[0].inside = "/run".into()),
                "overlaps the denials directory",
            ),
        ];
        for (change, expected) in cases {
            let mut s = spec();
            change(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["network"] = true.into();
        assert!(serde_json::from_value::<JailSpec>(v).is_err());
    }
}
