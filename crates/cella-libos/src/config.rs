//! The node's LibOS configuration file (`--libos-config`, TOML): the backend, the pool
//! sizes, the runtime images the node offers, and the sandbox's limits.
//!
//! ```toml
//! backend = "sandbox"         # "mock" (tests, development), "sandbox" or "gramine"
//! images = ["python3"]        # images built with `cella image build`, in <data_dir>/images
//!
//! [pool]                      # optional
//! warm = 2                    # idle attested instances kept per runtime image
//! max = 8                     # most instances per runtime image
//!
//! [sandbox]                   # optional, backend = "sandbox" only; these are the defaults
//! memory_bytes = 2147483648   # address space per process (RLIMIT_AS) and the cgroup's memory
//! processes = 256             # processes and threads (RLIMIT_NPROC, cgroup pids.max)
//! open_files = 1024           # RLIMIT_NOFILE
//! file_size_bytes = 1073741824 # largest file written (RLIMIT_FSIZE)
//! cpu_seconds = 600           # CPU time per process (RLIMIT_CPU)
//! work_bytes = 1073741824     # tmpfs /cella: the workload and its inputs
//! outputs_bytes = 1073741824  # tmpfs /cella/outputs
//! scratch_bytes = 1073741824  # tmpfs /cella/scratch
//! tmp_bytes = 67108864        # tmpfs /tmp
//! accept_per_process_limits = false # true: run where no cgroup is writable (see below)
//! instance_uid = 65534        # a node run as root: the host uid of an instance's root
//! instance_gid = 65534        # ... and its host gid (neither may be 0)
//!
//! [[runtime]]                 # inline images: a description only (no files on disk)
//! name = "native"
//! argv = ["./program"]        # run in the workload directory, where the payload is `program`
//! files = []                  # [{ path = "...", sha256 = "<64 hex>" }], measured
//! ```
//!
//! `cella-libos` builds the `mock` backend itself ([`LibosConfig::build_with`]); the node
//! (`cella-server`) builds the others, which live in crates of their own
//! (`cella-sandbox`, `cella-gramine`: its `[gramine]` section is in `docs/gramine.md`),
//! from [`LibosConfig::executor_config`] and the sections here.

use std::path::Path;

use serde::Deserialize;

use crate::attest::ExecutorAttestation;
use crate::executor::{ExecutorConfig, LibosExecutor, SetupError};
use crate::image::RuntimeImage;
use crate::pool::PoolConfig;

/// Largest configuration file read: a runtime image lists its files, and a Python
/// standard library is a few thousand of them; 4 MiB is plenty.
const MAX_CONFIG_LEN: u64 = 4 << 20;

/// Which backend launches instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// In-process instances running script workloads: development and tests only. It
    /// isolates nothing and runs no real program.
    Mock,
    /// Linux isolation (namespaces, seccomp, Landlock, rlimits, cgroups): the
    /// `cella-sandbox` crate, built by the node.
    Sandbox,
    /// Gramine (`gramine-sgx`, or `gramine-direct` with simulation allowed): the
    /// `cella-gramine` crate, built by the node from the `[gramine]` section.
    Gramine,
}

impl BackendKind {
    /// The backend's name, as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Mock => "mock",
            BackendKind::Sandbox => "sandbox",
            BackendKind::Gramine => "gramine",
        }
    }
}

/// The `[sandbox]` section: limits of each sandbox instance, and where the jailer and
/// the pre-load module come from. Every field is optional; see [`SandboxSection::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Address space of each process (`RLIMIT_AS`), and the instance's cgroup memory limit.
    pub memory_bytes: u64,
    /// Processes and threads of the instance (`RLIMIT_NPROC`, cgroup `pids.max`).
    pub processes: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file a process may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// CPU seconds per process (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Size of the `/cella` tmpfs: the workload and its inputs.
    pub work_bytes: u64,
    /// Size of the `/cella/outputs` tmpfs.
    pub outputs_bytes: u64,
    /// Size of the `/cella/scratch` tmpfs.
    pub scratch_bytes: u64,
    /// Size of the `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Where no cgroup can bound a whole instance (an unprivileged node, a read-only
    /// `/sys/fs/cgroup`), the node refuses to start its sandbox unless this is `true`:
    /// the operator accepts that the limits then hold per process only (`RLIMIT_AS` per
    /// process, not per instance; `memfd_create` is denied). Logged at start and shown
    /// by `cella node health`. See `docs/sandbox.md`.
    pub accept_per_process_limits: bool,
    /// The host uid that an instance's root (uid 0 inside) is when the node runs as root,
    /// so that host files only root may read (`/proc/slabinfo`, `/proc/kpagecount`…) stay
    /// unreadable inside; never 0. Every file an instance reads must be readable by it
    /// (the node's own files are bound by descriptor). An unprivileged node's instances
    /// are the node's user, whatever this says. See `docs/sandbox.md`.
    pub instance_uid: u32,
    /// The host gid of an instance's root group when the node runs as root; never 0.
    pub instance_gid: u32,
    /// The jailer binary; default: the running `cella` executable (multi-call).
    pub jailer: Option<std::path::PathBuf>,
    /// The pre-load binary copied into the data dir and measured; default: the running
    /// `cella` executable (multi-call).
    pub preload: Option<std::path::PathBuf>,
}

impl Default for SandboxSection {
    /// 2 GiB of memory, 256 processes, 1024 open files, 1 GiB files, 10 CPU minutes;
    /// 1 GiB for the workload, the outputs and scratch each, 64 MiB of `/tmp`.
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            processes: 256,
            open_files: 1024,
            file_size_bytes: 1 << 30,
            cpu_seconds: 600,
            work_bytes: 1 << 30,
            outputs_bytes: 1 << 30,
            scratch_bytes: 1 << 30,
            tmp_bytes: 64 << 20,
            accept_per_process_limits: false,
            instance_uid: 65534,
            instance_gid: 65534,
            jailer: None,
            preload: None,
        }
    }
}

impl SandboxSection {
    /// Checks that no limit is zero, and that an instance's root is not host root.
    ///
    /// # Errors
    ///
    /// The name of the first zero limit or id.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("memory_bytes", self.memory_bytes),
            ("processes", self.processes),
            ("open_files", self.open_files),
            ("file_size_bytes", self.file_size_bytes),
            ("cpu_seconds", self.cpu_seconds),
            ("work_bytes", self.work_bytes),
            ("outputs_bytes", self.outputs_bytes),
            ("scratch_bytes", self.scratch_bytes),
            ("tmp_bytes", self.tmp_bytes),
            ("instance_uid", u64::from(self.instance_uid)),
            ("instance_gid", u64::from(self.instance_gid)),
        ] {
            if v == 0 {
                return Err(format!("[sandbox] {name} must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Pool sizes as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Idle attested instances kept per runtime image.
    pub warm: usize,
    /// Most instances per runtime image.
    pub max: usize,
}

/// The node's LibOS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibosConfig {
    /// The backend.
    pub backend: BackendKind,
    /// Pool sizes; [`PoolConfig::default`] if absent.
    #[serde(default)]
    pub pool: Option<PoolSection>,
    /// The runtime images offered, described inline.
    #[serde(default, rename = "runtime")]
    pub runtimes: Vec<RuntimeImage>,
    /// Runtime images built into the node's data dir (`cella image build`), by name,
    /// loaded and verified by the node at start.
    #[serde(default)]
    pub images: Vec<String>,
    /// The sandbox backend's limits (`backend = "sandbox"` only).
    #[serde(default)]
    pub sandbox: Option<SandboxSection>,
    /// The Gramine backend's section (`backend = "gramine"` only), parsed and checked by
    /// `cella-gramine` (`GramineConfig::from_table`), which owns its keys.
    #[serde(default)]
    pub gramine: Option<GramineSection>,
}

/// The `[gramine]` section as written; its keys belong to `cella-gramine`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct GramineSection(pub toml::Table);

// A configuration holds no floating-point value that could be NaN; comparing sections is
// comparing what was written.
impl Eq for GramineSection {}

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading LibOS configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("LibOS configuration {path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The content is invalid.
    #[error("LibOS configuration: {0}")]
    Invalid(String),
}

impl LibosConfig {
    /// Parses a configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the problem.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if config.runtimes.is_empty() && config.images.is_empty() {
            return Err(ConfigError::Invalid(
                "no runtime image: declare images = [\"python3\", …] or a [[runtime]]".into(),
            ));
        }
        for image in &config.runtimes {
            image.validate().map_err(ConfigError::Invalid)?;
        }
        for name in &config.images {
            if !cella_preload::protocol::valid_name(name) {
                return Err(ConfigError::Invalid(format!(
                    "images: {name:?} is not a valid image name"
                )));
            }
        }
        if let Some(sandbox) = &config.sandbox {
            if config.backend != BackendKind::Sandbox {
                return Err(ConfigError::Invalid(format!(
                    "a [sandbox] section needs backend = \"sandbox\", not {:?}",
                    config.backend.name()
                )));
            }
            sandbox.validate().map_err(ConfigError::Invalid)?;
        }
        if config.gramine.is_some() != (config.backend == BackendKind::Gramine) {
            return Err(ConfigError::Invalid(
                "backend = \"gramine\" needs a [gramine] section, and a [gramine] section \
                 needs backend = \"gramine\""
                    .into(),
            ));
        }
        Ok(config)
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|source| ConfigError::Io {
                path: shown.clone(),
                source,
            })?
            .len();
        if len > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: shown,
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The executor this configuration describes, with a fresh simulation key of its
    /// own (lost when the process ends; a node passes its persistent key to
    /// [`LibosConfig::build_with`]).
    ///
    /// # Errors
    ///
    /// [`SetupError`] if it cannot be set up.
    pub fn build(&self) -> Result<LibosExecutor, SetupError> {
        let hardware =
            cella_attest::sim::SimSigner::generate().map_err(|e| SetupError(e.to_string()))?;
        self.build_with(ExecutorAttestation::simulated(
            std::sync::Arc::new(hardware),
            cella_attest::Measurement::sha256(b"cella-libos executor (unmeasured)"),
        ))
    }

    /// The executor this configuration describes, attesting with `attestation`.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if it cannot be set up.
    ///
    /// Only the `mock` backend with inline `[[runtime]]`s is built here: the other backends
    /// and images from the data dir are built by the node, which knows their crates.
    pub fn build_with(
        &self,
        attestation: ExecutorAttestation,
    ) -> Result<LibosExecutor, SetupError> {
        if !self.images.is_empty() {
            return Err(SetupError(
                "images from the data dir are loaded by the node, not by cella-libos".into(),
            ));
        }
        match self.backend {
            BackendKind::Mock => crate::mock::executor_with(
                self.runtimes.clone(),
                self.executor_config(),
                attestation,
            )
            .map(|(e, _)| e),
            other => Err(SetupError(format!(
                "the {} backend is built by the node (cella-server), not by cella-libos",
                other.name()
            ))),
        }
    }

    /// The executor's settings from this file: the pool sizes, default timeouts, and the
    /// sandbox's memory and process limits as the instances' limits.
    pub fn executor_config(&self) -> ExecutorConfig {
        let pool = self.pool.map_or_else(PoolConfig::default, |p| PoolConfig {
            warm: p.warm,
            max: p.max,
        });
        let mut config = ExecutorConfig {
            pool,
            ..ExecutorConfig::default()
        };
        if let Some(s) = &self.sandbox {
            config.limits.memory_bytes = s.memory_bytes;
            config.limits.max_processes = u32::try_from(s.processes).unwrap_or(u32::MAX);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = LibosConfig::from_toml_str(
            "backend = \"mock\"\n[pool]\nwarm = 1\nmax = 3\n[[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
        )
        .unwrap();
        assert_eq!(c.backend, BackendKind::Mock);
        assert_eq!(c.pool, Some(PoolSection { warm: 1, max: 3 }));
        assert_eq!(c.runtimes, vec![RuntimeImage::native()]);
        let s = LibosConfig::from_toml_str(
            "backend = \"sandbox\"\nimages = [\"python3\"]\n[sandbox]\nprocesses = 32\n",
        )
        .unwrap();
        assert_eq!(s.backend, BackendKind::Sandbox);
        assert_eq!(s.images, vec!["python3".to_owned()]);
        let section = s.sandbox.clone().unwrap();
        assert_eq!(section.processes, 32);
        assert_eq!(section.memory_bytes, SandboxSection::default().memory_bytes);
        assert_eq!(s.executor_config().limits.max_processes, 32);
        assert!(s.build().unwrap_err().0.contains("by the node"));
        for bad in [
            "backend = \"gramine\"\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
            "backend = \"mock\"\n[gramine]\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
            "backend = \"sandbox\"\nimages = [\"../x\"]\n",
            "backend = \"sandbox\"\nimages = [\"p\"]\n[sandbox]\ncpu_seconds = 0\n",
            "backend = \"sandbox\"\nimages = [\"p\"]\n[sandbox]\nswap = 1\n",
            "backend = \"mock\"\nimages = [\"p\"]\n[sandbox]\n",
            "backend = \"mock\"\n",
            "backend = \"mock\"\n[[runtime]]\nname = \"../n\"\nargv = [\"x\"]\n",
            "backend = \"mock\"\nextra = 1\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
        ] {
            assert!(LibosConfig::from_toml_str(bad).is_err(), "{bad}");
        }
    }
}
