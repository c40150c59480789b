//! [`SandboxBackend`]: the `sandbox` backend of the LibOS executor. Each instance is the
//! pre-load module started by the jailer ([`crate::jail`]) in fresh namespaces, on a
//! read-only root made of the runtime image's files.
//!
//! ```text
//! <data_dir>/libos/preload              the pre-load binary, copied once at start, 0555, measured
//! <data_dir>/libos/executor-policy.toml what instances trust as their executor, written at start, 0444
//! <data_dir>/libos/run/<id>/            one per live instance, removed when it is reaped
//!     evidence.sock                      answers one evidence request, then closes
//! ```
//!
//! Inside the instance (see `docs/sandbox.md`):
//!
//! ```text
//! /run/cella/cella-preload              the pre-load binary (argv[0] `cella-preload`)
//! /run/cella/executor.sock              the executor's per-launch socket
//! /run/cella/evidence.sock              the node's evidence service for this launch
//! /run/cella/executor-policy.toml       the executor policy
//! /run/cella-sandbox/denials.json       seccomp denial counts (the supervisor writes it)
//! /cella, /cella/outputs, /cella/scratch, /tmp   size-capped tmpfs
//! ```
//!
//! The measurement of an instance is
//! `instance_measurement(sha256(pre-load binary), image, sha256(backend configuration))`
//! where the backend configuration covers the jail's settings and limits, the seccomp
//! allowlist's text, the pre-load module's configuration (the executor policy) and the
//! SHA-256 of every shared library the pre-load binary loads.

mod instance;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cella_attest::Measurement;
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_libos::backend::{
    BackendError, Instance, LaunchSpec, LibosBackend, instance_measurement,
};
use cella_libos::config::SandboxSection;
use cella_libos::{ExecutorAttestation, RuntimeImage};
use cella_preload::PreloadConfig;
use cella_preload::receipt::sha256;
use serde::Serialize;

use crate::jail::{
    Bind, CGROUP_REQUIRED, CGROUP_SKIPPED, CgroupLimits, HostIds, JailSpec, Limits, Tmpfs,
};

/// How `SandboxBackend::isolation_warnings` says that the limits are per process only.
pub const PER_PROCESS_ONLY: &str = "sandbox limits per process only: no cgroup bounds an instance's total memory or processes, and memfd_create is denied";

pub use instance::SandboxInstance;

/// The seccomp allowlist the jailer applies: measured as part of the backend configuration.
const ALLOWLIST: &str = include_str!("../../seccomp/allowlist.toml");

/// Where things are inside an instance.
pub mod inside {
    /// The directory of the launch's files (read-only binds).
    pub const RUN_DIR: &str = "/run/cella";
    /// The pre-load binary; its file name selects the pre-load entrypoint of the
    /// multi-call `cella` binary.
    pub const PRELOAD: &str = "/run/cella/cella-preload";
    /// The executor's socket.
    pub const EXECUTOR_SOCKET: &str = "/run/cella/executor.sock";
    /// The node's evidence service.
    pub const EVIDENCE_SOCKET: &str = "/run/cella/evidence.sock";
    /// The executor policy the pre-load module checks the executor against.
    pub const POLICY: &str = "/run/cella/executor-policy.toml";
    /// The seccomp denial counts.
    pub const DENIALS: &str = "/run/cella-sandbox/denials.json";
    /// The instance's cgroup `memory.oom_control`, bound by the jailer next to the
    /// denials (`crate::jail::OOM_CONTROL_FILE`) when the cgroup applies.
    pub const OOM_CONTROL: &str = "/run/cella-sandbox/memory.oom_control";
    /// The pre-load module's work dir (tmpfs).
    pub const WORK: &str = "/cella";
    /// The outputs (tmpfs of their own).
    pub const OUTPUTS: &str = "/cella/outputs";
    /// Scratch, `HOME` (tmpfs of its own).
    pub const SCRATCH: &str = "/cella/scratch";
    /// `/tmp` (tmpfs).
    pub const TMP: &str = "/tmp";
}

/// The directory under the data dir holding the pre-load copy and the run dirs.
pub(crate) const LIBOS_DIR: &str = "libos";
/// The pre-load copy's file name under [`LIBOS_DIR`].
pub(crate) const PRELOAD_FILE: &str = "preload";
/// The executor policy's file name under [`LIBOS_DIR`].
pub(crate) const POLICY_FILE: &str = "executor-policy.toml";
/// The run dirs' parent under [`LIBOS_DIR`].
pub(crate) const RUN_DIR: &str = "run";

/// How the sandbox backend is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The node's data dir: the pre-load copy and the run dirs live under `libos/`.
    pub data_dir: PathBuf,
    /// The jailer binary (`cella-jail`, or the multi-call `cella`).
    pub jailer: PathBuf,
    /// The pre-load binary to copy and measure (`cella-preload`, or the multi-call
    /// `cella`).
    pub preload: PathBuf,
    /// Limits and tmpfs sizes.
    pub limits: SandboxSection,
}

impl SandboxConfig {
    /// The node's configuration: jailer and pre-load module from `section` or, by
    /// default, the running executable (the `cella` binary is multi-call).
    ///
    /// # Errors
    ///
    /// [`BackendError`] if the running executable cannot be located.
    pub fn from_section(data_dir: &Path, section: SandboxSection) -> Result<Self, BackendError> {
        let exe = || {
            std::env::current_exe()
                .map_err(|e| fail(format!("locating the running executable: {e}")))
        };
        let jailer = match &section.jailer {
            Some(p) => p.clone(),
            None => exe()?,
        };
        let preload = match &section.preload {
            Some(p) => p.clone(),
            None => exe()?,
        };
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            jailer,
            preload,
            limits: section,
        })
    }
}

fn fail(message: impl Into<String>) -> BackendError {
    BackendError {
        backend: "sandbox".into(),
        message: message.into(),
    }
}

/// A runtime image with its files on disk.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    /// The image.
    pub image: RuntimeImage,
    /// The host directory holding its files at their in-instance paths (the read-only
    /// root of its instances).
    pub rootfs: PathBuf,
}

impl From<cella_image::LoadedImage> for ImageRoot {
    fn from(l: cella_image::LoadedImage) -> Self {
        Self {
            image: l.image,
            rootfs: l.rootfs,
        }
    }
}

/// What the backend configuration digest covers, serialised as JSON (field order fixed by
/// the struct) and hashed.
#[derive(Serialize)]
struct MeasuredConfig<'a> {
    format: &'static str,
    limits: &'a SandboxSectionMeasured,
    seccomp_allowlist_sha256: String,
    preload_config_sha256: String,
    preload_libraries: &'a BTreeMap<String, String>,
    inside: [&'static str; 11],
}

/// The limits as measured (the jailer and pre-load paths are not: what they are is).
#[derive(Debug, Clone, Serialize)]
struct SandboxSectionMeasured {
    memory_bytes: u64,
    processes: u64,
    open_files: u64,
    file_size_bytes: u64,
    cpu_seconds: u64,
    work_bytes: u64,
    outputs_bytes: u64,
    scratch_bytes: u64,
    tmp_bytes: u64,
    accept_per_process_limits: bool,
    instance_uid: u32,
    instance_gid: u32,
}

impl From<&SandboxSection> for SandboxSectionMeasured {
    fn from(s: &SandboxSection) -> Self {
        Self {
            memory_bytes: s.memory_bytes,
            processes: s.processes,
            open_files: s.open_files,
            file_size_bytes: s.file_size_bytes,
            cpu_seconds: s.cpu_seconds,
            work_bytes: s.work_bytes,
            outputs_bytes: s.outputs_bytes,
            scratch_bytes: s.scratch_bytes,
            tmp_bytes: s.tmp_bytes,
            accept_per_process_limits: s.accept_per_process_limits,
            instance_uid: s.instance_uid,
            instance_gid: s.instance_gid,
        }
    }
}

/// The sandbox backend.
#[derive(Debug)]
pub struct SandboxBackend {
    jailer: PathBuf,
    preload_copy: PathBuf,
    preload_sha256: [u8; 32],
    /// The same libraries: the path the loader opens, and the file it is on the host
    /// (links resolved, so that the jailer binds the file itself).
    library_files: BTreeMap<String, PathBuf>,
    limits: SandboxSection,
    preload_config: PreloadConfig,
    config_digest: [u8; 32],
    hardware: Arc<SimSigner>,
    images: BTreeMap<String, ImageRoot>,
    /// Each image's instance measurement, computed once at start.
    measurements: BTreeMap<String, Measurement>,
    /// The executor policy the pre-load module checks, written once at start and bound
    /// read-only into every instance.
    policy_file: PathBuf,
    run_root: PathBuf,
    live: Arc<AtomicUsize>,
    launched: AtomicU64,
    /// Set by the probe when instances run without cgroups (the operator accepted it).
    per_process_only: std::sync::OnceLock<String>,
}

fn sha256_file(path: &Path) -> Result<[u8; 32], BackendError> {
    cella_attest::sim::measure_file(path)
        .map(|m| *m.as_bytes())
        .map_err(|e| fail(format!("hashing {}: {e}", path.display())))
}

/// Copies `from` to `to` through a temporary file in the same directory, mode 0555, so
/// that `to` is never seen half-written.
/// Writes `bytes` to `to`, read-only (0444), replacing it atomically.
fn install_bytes(bytes: &[u8], to: &Path) -> Result<(), BackendError> {
    install(to, "the executor policy", |dst| dst.write_all(bytes), 0o444)
}

/// Copies `from` to `to`, read-only and executable (0555), replacing it atomically.
fn install_copy(from: &Path, to: &Path) -> Result<(), BackendError> {
    let what = format!("the pre-load module {}", from.display());
    install(
        to,
        &what,
        |dst| std::io::copy(&mut std::fs::File::open(from)?, dst).map(drop),
        0o555,
    )
}

/// Writes `to` through a temporary file beside it (filled by `fill`, synced, given
/// `mode`, renamed into place), so that a reader never sees a partial file.
fn install(
    to: &Path,
    what: &str,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    mode: u32,
) -> Result<(), BackendError> {
    let dir = to
        .parent()
        .ok_or_else(|| fail(format!("{} has no parent directory", to.display())))?;
    let name = to
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _removed = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fill(&mut dst)?;
        dst.sync_all()?;
        dst.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, to)
    };
    write().map_err(|e| {
        let _removed = std::fs::remove_file(&tmp);
        fail(format!("writing {what} to {}: {e}", to.display()))
    })
}

impl SandboxBackend {
    /// A sandbox backend offering `images`, whose instances trust the executor of
    /// `attestation` and whose evidence the node signs with its simulation key.
    ///
    /// Copies the pre-load binary into `<data_dir>/libos/preload` and hashes it there
    /// (what runs is what was measured), and hashes its shared libraries. Does not check
    /// that the machine can run sandboxes: [`SandboxBackend::probe`] does.
    ///
    /// # Errors
    ///
    /// [`BackendError`] naming the file or setting at fault.
    pub fn new(
        config: SandboxConfig,
        attestation: &ExecutorAttestation,
        images: Vec<ImageRoot>,
    ) -> Result<Self, BackendError> {
        config.limits.validate().map_err(fail)?;
        // Everything below is bound into jails, whose specs take absolute paths only: a
        // relative data dir, image root, jailer or pre-load path is resolved here, once,
        // against the working directory.
        let absolute = |what: &str, p: &Path| {
            std::path::absolute(p).map_err(|e| fail(format!("{what} {}: {e}", p.display())))
        };
        let data_dir = absolute("the data dir", &config.data_dir)?;
        let mut config = config;
        config.jailer = absolute("the jailer", &config.jailer)?;
        config.preload = absolute("the pre-load module", &config.preload)?;
        let images = images
            .into_iter()
            .map(|mut root| {
                root.rootfs = absolute("the image root", &root.rootfs)?;
                Ok(root)
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let libos = data_dir.join(LIBOS_DIR);
        let run_root = libos.join(RUN_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run_root)
            .map_err(|e| fail(format!("creating {}: {e}", run_root.display())))?;
        sweep_run_dirs(&run_root)?;
        if !config.jailer.is_file() {
            return Err(fail(format!(
                "the jailer {} is not a file",
                config.jailer.display()
            )));
        }
        let preload_copy = libos.join(PRELOAD_FILE);
        install_copy(&config.preload, &preload_copy)?;
        let preload_sha256 = sha256_file(&preload_copy)?;
        let mut libraries = BTreeMap::new();
        let mut library_files = BTreeMap::new();
        let libs = cella_image::shared_libraries(&preload_copy).map_err(|e| {
            fail(format!(
                "the shared libraries of the pre-load module {}: {e}",
                config.preload.display()
            ))
        })?;
        for lib in libs {
            let digest = hex::encode(sha256_file(&lib)?);
            let path = lib
                .to_str()
                .ok_or_else(|| fail(format!("library path {} is not UTF-8", lib.display())))?
                .to_owned();
            let file = std::fs::canonicalize(&lib)
                .map_err(|e| fail(format!("resolving {}: {e}", lib.display())))?;
            libraries.insert(path.clone(), digest);
            library_files.insert(path, file);
        }
        let preload_config = attestation.preload_config();
        let policy_file = libos.join(POLICY_FILE);
        install_bytes(preload_config.executor_policy.as_bytes(), &policy_file)?;
        let measured_limits = SandboxSectionMeasured::from(&config.limits);
        let described = MeasuredConfig {
            format: "cella-sandbox-backend-v1",
            limits: &measured_limits,
            seccomp_allowlist_sha256: hex::encode(sha256(ALLOWLIST.as_bytes())),
            preload_config_sha256: hex::encode(preload_config.digest()),
            preload_libraries: &libraries,
            inside: [
                inside::PRELOAD,
                inside::EXECUTOR_SOCKET,
                inside::EVIDENCE_SOCKET,
                inside::POLICY,
                inside::DENIALS,
                inside::OOM_CONTROL,
                inside::WORK,
                inside::OUTPUTS,
                inside::SCRATCH,
                inside::TMP,
                inside::RUN_DIR,
            ],
        };
        let json = serde_json::to_vec(&described)
            .map_err(|e| fail(format!("describing the configuration: {e}")))?;
        let config_digest = sha256(&json);
        let mut by_name = BTreeMap::new();
        let mut measurements = BTreeMap::new();
        for root in images {
            measurements.insert(
                root.image.name.clone(),
                instance_measurement(&preload_sha256, &root.image, &config_digest),
            );
            if !root.rootfs.is_dir() {
                return Err(fail(format!(
                    "image {:?}: its root {} is not a directory",
                    root.image.name,
                    root.rootfs.display()
                )));
            }
            if by_name.insert(root.image.name.clone(), root).is_some() {
                return Err(fail("an image is given twice"));
            }
        }
        Ok(Self {
            jailer: config.jailer,
            preload_copy,
            preload_sha256,
            library_files,
            limits: config.limits,
            preload_config,
            config_digest,
            hardware: Arc::clone(attestation.hardware()),
            images: by_name,
            measurements,
            policy_file,
            run_root,
            live: Arc::new(AtomicUsize::new(0)),
            launched: AtomicU64::new(0),
            per_process_only: std::sync::OnceLock::new(),
        })
    }

    /// The runtime images offered.
    pub fn images(&self) -> Vec<RuntimeImage> {
        self.images.values().map(|r| r.image.clone()).collect()
    }

    /// Instances launched and not reaped yet: the leak counter.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Instances launched so far.
    pub fn launched(&self) -> u64 {
        self.launched.load(Ordering::Acquire)
    }

    /// SHA-256 of the pre-load binary that instances run.
    pub fn preload_sha256(&self) -> [u8; 32] {
        self.preload_sha256
    }

    /// SHA-256 of the backend configuration, the third input of the measurement.
    pub fn config_digest(&self) -> [u8; 32] {
        self.config_digest
    }

    /// The read-only binds every instance of `image` gets: the pre-load binary, and its
    /// shared libraries the image does not hold itself.
    fn preload_binds(&self, image: &RuntimeImage) -> Vec<Bind> {
        let mut binds = vec![Bind {
            host: self.preload_copy.clone(),
            inside: inside::PRELOAD.into(),
            writable: false,
        }];
        for (lib, host) in &self.library_files {
            if image.files.iter().any(|f| f.path == *lib) {
                continue;
            }
            binds.push(Bind {
                host: host.clone(),
                inside: lib.into(),
                writable: false,
            });
        }
        binds
    }

    /// The jail of one instance.
    fn jail_spec(
        &self,
        rootfs: &Path,
        image: &RuntimeImage,
        run_dir: &Path,
        executor_socket: &Path,
        env: BTreeMap<String, String>,
        argv: Vec<String>,
    ) -> JailSpec {
        let l = &self.limits;
        let mut binds = self.preload_binds(image);
        binds.extend([
            Bind {
                host: executor_socket.to_path_buf(),
                inside: inside::EXECUTOR_SOCKET.into(),
                writable: false,
            },
            Bind {
                host: run_dir.join("evidence.sock"),
                inside: inside::EVIDENCE_SOCKET.into(),
                writable: false,
            },
            Bind {
                host: self.policy_file.clone(),
                inside: inside::POLICY.into(),
                writable: false,
            },
        ]);
        JailSpec {
            rootfs: rootfs.to_path_buf(),
            binds,
            tmpfs: vec![
                Tmpfs {
                    inside: inside::WORK.into(),
                    size_bytes: l.work_bytes,
                },
                Tmpfs {
                    inside: inside::OUTPUTS.into(),
                    size_bytes: l.outputs_bytes,
                },
                Tmpfs {
                    inside: inside::SCRATCH.into(),
                    size_bytes: l.scratch_bytes,
                },
                Tmpfs {
                    inside: inside::TMP.into(),
                    size_bytes: l.tmp_bytes,
                },
            ],
            limits: Limits::from(l),
            cgroup: Some(CgroupLimits {
                memory_bytes: l.memory_bytes,
                pids: l.processes,
                required: !l.accept_per_process_limits,
            }),
            landlock_writable: vec![inside::WORK.into(), inside::TMP.into()],
            denials_file: inside::DENIALS.into(),
            hostname: "cella".into(),
            cwd: inside::WORK.into(),
            argv,
            env,
            host_ids: HostIds {
                uid: l.instance_uid,
                gid: l.instance_gid,
            },
        }
    }

    /// Starts the jailer `cmd` (from [`crate::jail::command`]) with `stdout` as its
    /// standard output and its standard error piped, killed if the child is dropped.
    /// Nothing of the node's environment reaches the jail (the supervisor's
    /// /proc/1/environ is readable inside).
    fn spawn_jailer(
        &self,
        mut cmd: tokio::process::Command,
        stdout: std::process::Stdio,
    ) -> Result<tokio::process::Child, BackendError> {
        cmd.env_clear()
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().map_err(|e| {
            fail(format!(
                "starting the jailer {}: {e}",
                self.jailer.display()
            ))
        })
    }

    /// Checks that this machine can run sandboxes (user, mount, pid and network
    /// namespaces, seccomp user notification, Landlock, and cgroups unless the operator
    /// accepted per-process limits): runs the pre-load binary's confining wrapper in a
    /// jail on an empty root, which confines itself and runs `cella-preload probe`; then
    /// the same in the root of every image offered. Meant for node start-up: a sandbox that cannot work is an
    /// error then, never a silent fallback.
    ///
    /// # Errors
    ///
    /// [`BackendError`] with the jailer's own explanation.
    pub async fn probe(&self) -> Result<(), BackendError> {
        let root = tempfile::Builder::new()
            .prefix("cella-sandbox-probe-")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .map_err(|e| fail(format!("probe root: {e}")))?;
        let empty = RuntimeImage {
            name: "probe".into(),
            argv: vec!["probe".into()],
            files: Vec::new(),
        };
        self.probe_in(root.path(), &empty).await?;
        // Then in every image's own root, with the binds an instance of it gets: an image
        // whose instances cannot start stops the node now, not its tasks one by one.
        for root in self.images.values() {
            self.probe_in(&root.rootfs, &root.image)
                .await
                .map_err(|e| fail(format!("image {:?}: {}", root.image.name, e.message)))?;
        }
        Ok(())
    }

    /// One probe: the confining wrapper and `cella-preload probe` in a jail on `rootfs`
    /// with the binds of an instance of `image` (but its sockets and policy).
    async fn probe_in(&self, rootfs: &Path, image: &RuntimeImage) -> Result<(), BackendError> {
        let scratch = tempfile::Builder::new()
            .prefix("cella-sandbox-probe-run-")
            .tempdir()
            .map_err(|e| fail(format!("probe run dir: {e}")))?;
        let argv: Vec<String> = vec![
            inside::PRELOAD.into(),
            cella_preload::confine::EXEC_PROGRAM.into(),
            "--write".into(),
            inside::TMP.into(),
            "--".into(),
            inside::PRELOAD.into(),
            cella_preload::entry::PROBE.into(),
        ];
        let mut spec = self.jail_spec(
            rootfs,
            image,
            scratch.path(),
            scratch.path(),
            BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
            argv,
        );
        // Only the pre-load binary and its libraries: no sockets for a probe.
        spec.binds.retain(|b| {
            b.inside.as_path() != Path::new(inside::EXECUTOR_SOCKET)
                && b.inside.as_path() != Path::new(inside::EVIDENCE_SOCKET)
                && b.inside.as_path() != Path::new(inside::POLICY)
        });
        let cmd =
            crate::jail::command(&self.jailer, &spec).map_err(|e| fail(format!("probe: {e}")))?;
        let child = self.spawn_jailer(cmd, std::process::Stdio::piped())?;
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .map_err(|_| fail("the sandbox probe did not finish within 30 s"))?
                .map_err(|e| fail(format!("waiting for the sandbox probe: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout.contains(cella_preload::entry::PROBE_OK) {
            let per_process = stderr.lines().find(|l| l.starts_with(CGROUP_SKIPPED));
            if let Some(why) = per_process {
                // Only reached with the operator's consent: the jailer refuses otherwise.
                let warning = format!(
                    "{PER_PROCESS_ONLY} ([sandbox] accept_per_process_limits = true): {}",
                    why.trim_start_matches(CGROUP_SKIPPED)
                        .trim_start_matches(": ")
                );
                tracing::warn!("sandbox backend: {warning}");
                let _set = self.per_process_only.set(warning);
            }
            return Ok(());
        }
        if stderr.contains(CGROUP_REQUIRED) {
            return Err(fail(format!(
                "no cgroup can bound a sandbox instance's memory and processes here ({}); \
                 run the node as root with the cgroup v1 memory and pids controllers \
                 writable, or set accept_per_process_limits = true in the [sandbox] section \
                 of the LibOS configuration to accept per-process limits only",
                stderr
                    .lines()
                    .find(|l| l.contains(CGROUP_REQUIRED))
                    .unwrap_or("")
                    .trim()
            )));
        }
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(fail(format!(
            "this machine cannot run sandboxes ({}): {}",
            out.status,
            if tail.is_empty() {
                "the jailer said nothing".to_owned()
            } else {
                tail.join(" | ")
            }
        )))
    }
}

#[async_trait::async_trait]
impl LibosBackend for SandboxBackend {
    fn name(&self) -> &str {
        "sandbox"
    }

    /// What the node's operator accepted that weakens the isolation, found by
    /// [`SandboxBackend::probe`]: the limits hold per process only where no cgroup can
    /// bound an instance. Empty when every layer is in place.
    fn isolation_warnings(&self) -> Vec<String> {
        self.per_process_only.get().cloned().into_iter().collect()
    }

    fn measure(&self, image: &RuntimeImage) -> Result<Measurement, BackendError> {
        match self.images.get(&image.name) {
            Some(root) if root.image == *image => Ok(self.measurements[&image.name]),
            _ => Ok(instance_measurement(
                &self.preload_sha256,
                image,
                &self.config_digest,
            )),
        }
    }

    async fn launch(&self, spec: LaunchSpec<'_>) -> Result<Box<dyn Instance>, BackendError> {
        let root = self.images.get(&spec.image.name).ok_or_else(|| {
            fail(format!(
                "runtime image {:?} is not loaded by the sandbox backend",
                spec.image.name
            ))
        })?;
        if root.image != *spec.image {
            return Err(fail(format!(
                "runtime image {:?} differs from the one loaded from disk",
                spec.image.name
            )));
        }
        let executor_socket = spec
            .socket
            .unix_path()
            .ok_or_else(|| fail("the sandbox backend needs a Unix socket to the executor"))?
            .to_path_buf();
        let measurement = self.measurements[&spec.image.name];
        let id = hex::encode(&spec.nonce[..8]);
        let run_dir = self.run_root.join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&run_dir)
            .map_err(|e| fail(format!("creating {}: {e}", run_dir.display())))?;
        let cleanup =
            cella_libos::process::RemoveDirOnDrop::new(run_dir.clone(), "a sandbox run dir");
        let evidence_path = run_dir.join("evidence.sock");
        let listener = tokio::net::UnixListener::bind(&evidence_path)
            .map_err(|e| fail(format!("binding {}: {e}", evidence_path.display())))?;
        // The instance's root may be another host user than the node's (an unprivileged
        // one when the node is root) and connecting takes write permission. The sockets'
        // directories (0700) keep every other host user out.
        for socket in [&evidence_path, &executor_socket] {
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| fail(format!("opening {} to the instance: {e}", socket.display())))?;
        }
        let source = SimEvidenceSource::new(Arc::clone(&self.hardware), measurement);
        let evidence = tokio::spawn(async move {
            if let Err(e) = cella_preload::evidence::serve_one(&listener, &source).await {
                tracing::warn!(error = %e, "sandbox instance evidence");
            }
            drop(listener);
            let _removed = std::fs::remove_file(&evidence_path);
        });
        let env = BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            (
                "CELLA_PRELOAD_SOCKET".to_owned(),
                inside::EXECUTOR_SOCKET.to_owned(),
            ),
            ("CELLA_PRELOAD_NONCE".to_owned(), hex::encode(spec.nonce)),
            ("CELLA_PRELOAD_WORK_DIR".to_owned(), inside::WORK.to_owned()),
            ("CELLA_PRELOAD_POLICY".to_owned(), inside::POLICY.to_owned()),
            (
                "CELLA_PRELOAD_ROLE".to_owned(),
                self.preload_config.executor_role.clone(),
            ),
            (
                cella_preload::entry::EVIDENCE_ENV.to_owned(),
                format!(
                    "{}{}",
                    cella_preload::evidence::SOCKET_PREFIX,
                    inside::EVIDENCE_SOCKET
                ),
            ),
            (
                cella_preload::runner::CONFINE_ENV.to_owned(),
                "1".to_owned(),
            ),
            (
                cella_preload::runner::DENIALS_ENV.to_owned(),
                inside::DENIALS.to_owned(),
            ),
            (
                cella_preload::runner::MEMORY_ENV.to_owned(),
                format!("{}:{}", inside::OOM_CONTROL, self.limits.memory_bytes),
            ),
            // /tmp is the instance's own tmpfs: emptied at Reset, like the run's files.
            (
                cella_preload::runner::PRIVATE_DIRS_ENV.to_owned(),
                inside::TMP.to_owned(),
            ),
        ]);
        // Until the instance owns it, the evidence service ends with any failure below.
        let evidence = cella_libos::process::AbortOnDrop(evidence);
        let jail = self.jail_spec(
            &root.rootfs,
            spec.image,
            &run_dir,
            &executor_socket,
            env,
            vec![inside::PRELOAD.to_owned()],
        );
        let cmd = crate::jail::command(&self.jailer, &jail).map_err(|e| fail(e.to_string()))?;
        let child = self.spawn_jailer(cmd, std::process::Stdio::null())?;
        self.launched.fetch_add(1, Ordering::AcqRel);
        let instance = SandboxInstance::new(
            child,
            cleanup,
            evidence,
            instance::Live::new(Arc::clone(&self.live)),
            id,
        );
        Ok(Box::new(instance))
    }
}

/// Removes what earlier processes of this node left in the run root (one directory per
/// instance, `<data_dir>/libos/run/<id>/`, removed when the instance is reaped): after a
/// crash they belong to instances that are gone. They hold the instance's evidence
/// socket, never plaintext (an instance's inputs and outputs live in its own tmpfs,
/// which ends with it), but nothing of a dead run should outlive it. The data dir is
/// this node's alone and nothing has launched yet, so everything in it is stale.
fn sweep_run_dirs(run_root: &Path) -> Result<(), BackendError> {
    let entries = std::fs::read_dir(run_root)
        .map_err(|e| fail(format!("reading {}: {e}", run_root.display())))?;
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let path = entry.path();
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            cella_executor::scratch::remove_abandoned(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(|e| {
            fail(format!(
                "removing the stale run dir {}: {e}",
                path.display()
            ))
        })?;
        removed += 1;
    }
    if removed > 0 {
        tracing::warn!(dir = %run_root.display(), count = removed, "removed sandbox run dirs left by an earlier process");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attestation() -> ExecutorAttestation {
        ExecutorAttestation::simulated(
            Arc::new(SimSigner::generate().unwrap()),
            Measurement::sha256(b"executor"),
        )
    }

    fn backend(data: &Path, limits: SandboxSection, a: &ExecutorAttestation) -> SandboxBackend {
        let config = SandboxConfig {
            data_dir: data.to_path_buf(),
            jailer: "/bin/true".into(),
            preload: "/bin/true".into(),
            limits,
        };
        let root = data.join("root");
        std::fs::create_dir_all(&root).unwrap();
        SandboxBackend::new(
            config,
            a,
            vec![ImageRoot {
                image: RuntimeImage::native(),
                rootfs: root,
            }],
        )
        .unwrap()
    }

    #[test]
    fn run_dirs_left_by_an_earlier_process_are_swept_when_the_backend_starts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LIBOS_DIR).join(RUN_DIR);
        std::fs::create_dir_all(root.join("0123abcd")).unwrap();
        std::fs::write(root.join("0123abcd").join("evidence.sock"), b"").unwrap();
        std::fs::write(root.join("stray"), b"").unwrap();
        let a = attestation();
        let _b = backend(dir.path(), SandboxSection::default(), &a);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        // What is not a run dir stays: the pre-load copy and the policy beside the root.
        assert!(dir.path().join(LIBOS_DIR).join(PRELOAD_FILE).is_file());
    }

    #[test]
    fn the_preload_copy_is_read_only_and_measured() {
        let dir = tempfile::tempdir().unwrap();
        let a = attestation();
        let b = backend(dir.path(), SandboxSection::default(), &a);
        let copy = dir.path().join(LIBOS_DIR).join(PRELOAD_FILE);
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o555);
        assert_eq!(
            b.preload_sha256(),
            sha256(&std::fs::read("/bin/true").unwrap())
        );
        // Its libraries are bound at the paths the loader opens, from the files themselves.
        let binds = b.preload_binds(&RuntimeImage::native());
        assert_eq!(binds[0].inside, Path::new(inside::PRELOAD));
        assert!(binds.len() > 1, "/bin/true loads libc: {binds:?}");
        for bind in &binds[1..] {
            assert!(!bind.writable);
            let meta = std::fs::symlink_metadata(&bind.host).unwrap();
            assert!(meta.is_file(), "{} is not a file", bind.host.display());
        }
    }

    #[test]
    fn a_relative_data_dir_gives_absolute_binds_and_the_policy_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        // The same directory, named relative to the working directory.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let relative = PathBuf::from(up).join(dir.path().strip_prefix("/").unwrap());
        assert!(relative.is_relative() && relative.is_dir());
        let a = attestation();
        let b = backend(&relative, SandboxSection::default(), &a);
        let spec = b.jail_spec(
            &dir.path().join("root"),
            &RuntimeImage::native(),
            &dir.path().join("run"),
            Path::new("/executor.sock"),
            BTreeMap::new(),
            vec![inside::PRELOAD.to_owned()],
        );
        for bind in &spec.binds {
            assert!(bind.host.is_absolute(), "{}", bind.host.display());
        }
        // The image's root, given relative to the working directory too, is absolute.
        let root = &b.images["native"].rootfs;
        assert!(root.is_absolute(), "{}", root.display());
        assert!(b.jailer.is_absolute());
        // The policy every instance checks its executor against: one read-only file.
        let policy = dir.path().join(LIBOS_DIR).join(POLICY_FILE);
        assert_eq!(
            std::fs::read_to_string(&policy).unwrap(),
            a.preload_config().executor_policy
        );
        let mode = std::fs::metadata(&policy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        let policy = std::fs::canonicalize(&policy).unwrap();
        assert!(
            spec.binds
                .iter()
                .any(|b| std::fs::canonicalize(&b.host).is_ok_and(|h| h == policy))
        );
        // A measurement computed at start serves launches; other images are computed.
        let image = RuntimeImage::native();
        assert_eq!(
            b.measure(&image).unwrap(),
            instance_measurement(&b.preload_sha256, &image, &b.config_digest)
        );
        let mut other = image.clone();
        other.argv.push("x".into());
        assert_ne!(b.measure(&other).unwrap(), b.measure(&image).unwrap());
    }

    #[test]
    fn every_input_of_the_configuration_changes_the_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let a = attestation();
        let image = RuntimeImage::native();
        let base = backend(&dir.path().join("1"), SandboxSection::default(), &a);
        let same = backend(&dir.path().join("2"), SandboxSection::default(), &a);
        assert_eq!(base.measure(&image).unwrap(), same.measure(&image).unwrap());
        let tighter = SandboxSection {
            processes: 8,
            ..SandboxSection::default()
        };
        let other_limits = backend(&dir.path().join("3"), tighter, &a);
        assert_ne!(
            base.measure(&image).unwrap(),
            other_limits.measure(&image).unwrap()
        );
        let other_executor = backend(
            &dir.path().join("4"),
            SandboxSection::default(),
            &attestation(),
        );
        assert_ne!(
            base.measure(&image).unwrap(),
            other_executor.measure(&image).unwrap()
        );
        let mut other_image = image.clone();
        other_image.argv.push("x".into());
        assert_ne!(
            base.measure(&image).unwrap(),
            base.measure(&other_image).unwrap()
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = attestation();
        let config = |jailer: &str, limits: SandboxSection| SandboxConfig {
            data_dir: dir.path().to_path_buf(),
            jailer: jailer.into(),
            preload: "/bin/true".into(),
            limits,
        };
        let e = SandboxBackend::new(
            config("/nonexistent/jail", SandboxSection::default()),
            &a,
            vec![],
        )
        .unwrap_err();
        assert!(e.message.contains("/nonexistent/jail"), "{e}");
        let zero = SandboxSection {
            tmp_bytes: 0,
            ..SandboxSection::default()
        };
        let e = SandboxBackend::new(config("/bin/true", zero), &a, vec![]).unwrap_err();
        assert!(e.message.contains("tmp_bytes"), "{e}");
        let missing_root = ImageRoot {
            image: RuntimeImage::native(),
            rootfs: dir.path().join("no-such-root"),
        };
        let e = SandboxBackend::new(
            config("/bin/true", SandboxSection::default()),
            &a,
            vec![missing_root],
        )
        .unwrap_err();
        assert!(e.message.contains("no-such-root"), "{e}");
    }

    #[tokio::test]
    async fn an_unknown_or_altered_image_is_not_launched() {
        let dir = tempfile::tempdir().unwrap();
        let a = attestation();
        let b = backend(dir.path(), SandboxSection::default(), &a);
        let mut altered = RuntimeImage::native();
        altered.argv = vec!["./other".into()];
        let mut unknown = RuntimeImage::native();
        unknown.name = "unknown".into();
        for (image, expected) in [(&altered, "differs"), (&unknown, "not loaded")] {
            let spec = LaunchSpec {
                nonce: [1; cella_libos::backend::NONCE_LEN],
                socket: PathBuf::from("/nonexistent.sock").into(),
                image,
                limits: cella_libos::backend::InstanceLimits::default(),
            };
            let e = b.launch(spec).await.unwrap_err();
            assert!(e.message.contains(expected), "{e}");
        }
        assert_eq!(b.live_instances(), 0);
    }
}
