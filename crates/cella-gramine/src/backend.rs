//! [`GramineBackend`]: LibOS instances as Gramine processes (`gramine-sgx`, or
//! `gramine-direct` when simulation is allowed).
//!
//! At start-up, for each runtime image: generate its manifest ([`crate::manifest`]), sign
//! it and read `MRENCLAVE` ([`crate::sign`]), which the executor then expects in every
//! instance's quote. A missing Gramine installation, tool, key or collateral is a
//! configuration error here, not at the first task.
//!
//! Per launch: a fresh directory (the loader's working directory, backing the encrypted
//! `/cella` mount), `gramine-sgx <manifest>` started in its own process group with an
//! empty environment but for the launch parameters, the pre-load module connecting back
//! over TCP on 127.0.0.1 (Gramine cannot reach a Unix socket of the host).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cella_attest::Measurement;
use cella_attest::dcap::{Collateral, DcapVerifier};
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_libos::backend::{
    ConnectBack, Instance, InstanceEvidence, InstanceExit, LaunchSpec, LibosBackend, SgxAppraisal,
    instance_measurement,
};
use cella_libos::process::{
    AbortOnDrop, BoundedLines, LongLines, RemoveDirOnDrop, Signal, instance_exit, signal_group,
};
use cella_libos::{BackendError, RuntimeImage};
use cella_preload::Endpoint;

use crate::config::{GramineConfig, Mode, find_on_path};
use crate::evidence::{EvidenceListener, SOCKET_PREFIX};
use crate::manifest::{self, HostFile, Library, ManifestInput};
use crate::sign::{SignTools, Signed};

/// Largest DCAP collateral file read.
const MAX_COLLATERAL_LEN: u64 = 1 << 20;
/// Longest line of an instance's standard error forwarded to the node's log.
const MAX_LOG_LINE: usize = 4096;
/// The environment variable naming the evidence endpoint (simulation only).
const EVIDENCE_ENV: &str = "CELLA_PRELOAD_EVIDENCE";

/// Setting the backend up failed: the node's configuration, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A tool of Gramine is missing.
    #[error(
        "Gramine is not installed or not configured: {tool} was not found (install Gramine, \
         or set [gramine] {key} to its path)"
    )]
    MissingTool {
        /// The tool.
        tool: &'static str,
        /// The configuration key naming it.
        key: &'static str,
    },
    /// A file the backend needs cannot be used.
    #[error("{what} {path}: {message}")]
    File {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A manifest could not be generated.
    #[error("runtime image {image:?}: {source}")]
    Manifest {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: manifest::ManifestError,
    },
    /// Signing failed.
    #[error("runtime image {image:?}: signing the enclave: {source}")]
    Sign {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: crate::sign::SignError,
    },
}

/// A runtime image to offer, with its files on the host.
#[derive(Debug, Clone)]
pub struct ImageOnDisk {
    /// The image.
    pub image: RuntimeImage,
    /// Its rootfs: each file at `<rootfs>/<path>`.
    pub rootfs: PathBuf,
}

/// What the backend is built from, besides its configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Where the backend writes manifests, signatures and launch directories (the node
    /// uses `<data_dir>/libos/gramine`).
    pub work_dir: PathBuf,
    /// The images.
    pub images: Vec<ImageOnDisk>,
    /// The policy the instances check their executor with
    /// (`ExecutorAttestation::preload_config().executor_policy`).
    pub executor_policy: String,
    /// The pre-load module's shared libraries, as the instance's dynamic loader finds
    /// them (`cella_image::shared_libraries` of the pre-load module).
    pub preload_libraries: Vec<PathBuf>,
    /// The node's simulation key, which signs instances' evidence with `mode = "direct"`.
    pub hardware: Arc<SimSigner>,
}

#[derive(Debug, Clone)]
struct Prepared {
    image: RuntimeImage,
    /// What the loader is given: the manifest's path without `.manifest[.sgx]`.
    app: PathBuf,
    measurement: Measurement,
}

/// The Gramine backend.
#[derive(Debug)]
pub struct GramineBackend {
    config: GramineConfig,
    loader: PathBuf,
    work_dir: PathBuf,
    images: BTreeMap<String, Prepared>,
    hardware: Arc<SimSigner>,
    evidence: InstanceEvidence,
    connect_back: ConnectBack,
}

fn tool(
    configured: Option<&Path>,
    name: &'static str,
    key: &'static str,
) -> Result<PathBuf, SetupError> {
    match configured {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(_) => Err(SetupError::MissingTool { tool: name, key }),
        None => find_on_path(name).ok_or(SetupError::MissingTool { tool: name, key }),
    }
}

/// The pre-load module to mount: configured, or `cella-preload` next to this binary, or
/// this binary (multi-call: it runs the pre-load module under that name).
pub(crate) fn preload_path(config: &GramineConfig) -> Result<PathBuf, SetupError> {
    if let Some(p) = &config.preload {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| SetupError::File {
        what: "this binary",
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    let sibling = exe.with_file_name("cella-preload");
    Ok(if sibling.is_file() { sibling } else { exe })
}

fn canonical(what: &'static str, path: &Path) -> Result<PathBuf, SetupError> {
    std::fs::canonicalize(path).map_err(|e| SetupError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn measure(what: &'static str, path: &Path) -> Result<HostFile, SetupError> {
    HostFile::measure(path).map_err(|e| SetupError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_file(what: &'static str, path: &Path, bytes: &[u8]) -> Result<(), SetupError> {
    std::fs::write(path, bytes).map_err(|e| SetupError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn create_dir(path: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| SetupError::File {
            what: "directory",
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

impl GramineBackend {
    /// Checks the installation and configuration, generates every image's manifest, and
    /// (with `mode = "sgx"`) signs each and reads its `MRENCLAVE`.
    ///
    /// # Errors
    ///
    /// [`SetupError`] naming what is missing or wrong.
    pub fn new(config: GramineConfig, setup: Setup) -> Result<Self, SetupError> {
        config.validate()?;
        let loader = match config.mode {
            Mode::Sgx => tool(config.gramine_sgx.as_deref(), "gramine-sgx", "gramine_sgx")?,
            Mode::Direct => tool(
                config.gramine_direct.as_deref(),
                "gramine-direct",
                "gramine_direct",
            )?,
        };
        let (sign, evidence) = match config.mode {
            Mode::Direct => (None, InstanceEvidence::Simulated),
            Mode::Sgx => {
                let tools = SignTools {
                    sign: tool(config.sgx_sign.as_deref(), "gramine-sgx-sign", "sgx_sign")?,
                    sigstruct_view: tool(
                        config.sigstruct_view.as_deref(),
                        "gramine-sgx-sigstruct-view",
                        "sigstruct_view",
                    )?,
                    key: canonical(
                        "signing key",
                        config.signing_key.as_deref().unwrap_or(Path::new("")),
                    )?,
                };
                let collateral_path = config.collateral.clone().unwrap_or_default();
                let collateral = read_collateral(&collateral_path)?;
                let appraisal = SgxAppraisal {
                    dcap: DcapVerifier::new().with_collateral(collateral),
                    accepted_tcb_statuses: config.accepted_tcb_statuses.clone(),
                    accepted_advisory_ids: config.accepted_advisory_ids.clone(),
                    allow_debug: config.debug,
                    clock: None,
                };
                (Some(tools), InstanceEvidence::SgxDcap(appraisal))
            }
        };
        let libos = config.libos().to_path_buf();
        let libos_sha256 = match config.mode {
            // gramine-sgx-sign hashes it too; hashing it here makes a missing LibOS a
            // start-up error.
            Mode::Sgx => Some(measure("Gramine LibOS (libsysdb.so)", &libos)?.sha256),
            Mode::Direct => HostFile::measure(&libos).ok().map(|f| f.sha256),
        };

        create_dir(&setup.work_dir)?;
        let work_dir = canonical("work directory", &setup.work_dir)?;
        let preload_host = canonical("pre-load module", &preload_path(&config)?)?;
        let preload = measure("pre-load module", &preload_host)?;
        let mut libraries = Vec::new();
        for inside in &setup.preload_libraries {
            let host = canonical("pre-load module library", inside)?;
            libraries.push(Library {
                inside: inside.clone(),
                file: measure("pre-load module library", &host)?,
            });
        }
        let policy_path = work_dir.join("executor-policy.toml");
        write_file(
            "executor policy",
            &policy_path,
            setup.executor_policy.as_bytes(),
        )?;
        let policy = measure("executor policy", &policy_path)?;

        let mut images = BTreeMap::new();
        for on_disk in setup.images {
            let name = on_disk.image.name.clone();
            let dir = work_dir.join("images").join(&name);
            create_dir(&dir)?;
            let rootfs = canonical("image rootfs", &on_disk.rootfs)?;
            let text = manifest::generate(
                &ManifestInput {
                    image: &on_disk.image,
                    rootfs: &rootfs,
                    preload: &preload,
                    libraries: &libraries,
                    executor_policy: &policy,
                    libos: &libos,
                    libos_sha256: libos_sha256.as_deref(),
                },
                &config,
            )
            .map_err(|source| SetupError::Manifest {
                image: name.clone(),
                source,
            })?;
            let app = dir.join("instance");
            let manifest_path = dir.join("instance.manifest");
            write_file("manifest", &manifest_path, text.as_bytes())?;
            let measurement = match &sign {
                Some(tools) => {
                    let Signed { sigstruct, .. } =
                        tools
                            .sign(&manifest_path)
                            .map_err(|source| SetupError::Sign {
                                image: name.clone(),
                                source,
                            })?;
                    if sigstruct.debug != config.debug {
                        return Err(SetupError::Sign {
                            image: name,
                            source: crate::sign::SignError::DebugMismatch {
                                signed: sigstruct.debug,
                                configured: config.debug,
                            },
                        });
                    }
                    sigstruct.mr_enclave
                }
                None => instance_measurement(
                    &hex_digest(&preload.sha256),
                    &on_disk.image,
                    &cella_preload::receipt::sha256(text.as_bytes()),
                ),
            };
            tracing::info!(image = %name, mode = ?config.mode, %measurement, "Gramine enclave prepared");
            images.insert(
                name,
                Prepared {
                    image: on_disk.image,
                    app,
                    measurement,
                },
            );
        }
        // Launch directories left by a previous run of the node belong to instances that
        // are gone: start from an empty one.
        let launch = work_dir.join("launch");
        match std::fs::remove_dir_all(&launch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SetupError::File {
                    what: "launch directory",
                    path: launch,
                    message: e.to_string(),
                });
            }
        }
        create_dir(&launch)?;
        Ok(Self {
            config,
            loader,
            work_dir,
            images,
            hardware: setup.hardware,
            evidence,
            connect_back: ConnectBack::Tcp,
        })
    }

    /// Instances connect back over a Unix socket instead of TCP: only for stand-ins of
    /// `gramine-direct` that run the pre-load module in a jail without a network (tests).
    /// Real Gramine cannot reach a Unix socket of the host.
    #[must_use]
    pub fn with_unix_connect_back(mut self) -> Self {
        self.connect_back = ConnectBack::Unix;
        self
    }

    /// Replaces the appraisal of SGX quotes (tests: a clock inside the sample collateral's
    /// validity).
    #[must_use]
    pub fn with_sgx_appraisal(mut self, appraisal: SgxAppraisal) -> Self {
        if self.config.mode == Mode::Sgx {
            self.evidence = InstanceEvidence::SgxDcap(appraisal);
        }
        self
    }

    /// The manifest written for `image` (`<work>/images/<name>/instance.manifest`).
    pub fn manifest_path(&self, image: &str) -> Option<PathBuf> {
        self.images
            .get(image)
            .map(|p| p.app.with_file_name("instance.manifest"))
    }

    /// The images the backend prepared, sorted by name.
    pub fn images(&self) -> Vec<RuntimeImage> {
        self.images.values().map(|p| p.image.clone()).collect()
    }

    /// The measurement of `image`'s instances (`MRENCLAVE` with `mode = "sgx"`).
    pub fn measurement(&self, image: &str) -> Option<Measurement> {
        self.images.get(image).map(|p| p.measurement)
    }

    /// The configuration.
    pub fn config(&self) -> &GramineConfig {
        &self.config
    }

    fn fail(&self, message: impl Into<String>) -> BackendError {
        BackendError {
            backend: "gramine".into(),
            message: message.into(),
        }
    }

    fn prepared(&self, image: &RuntimeImage) -> Result<&Prepared, BackendError> {
        match self.images.get(&image.name) {
            Some(p) if p.image == *image => Ok(p),
            Some(_) => Err(self.fail(format!(
                "runtime image {:?} differs from the one its enclave was built from",
                image.name
            ))),
            None => Err(self.fail(format!(
                "runtime image {:?} has no Gramine enclave (it was not given at start-up)",
                image.name
            ))),
        }
    }
}

fn hex_digest(hex_text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(bytes) = hex::decode(hex_text) {
        let n = bytes.len().min(32);
        out[..n].copy_from_slice(&bytes[..n]);
    }
    out
}

fn read_collateral(path: &Path) -> Result<Collateral, SetupError> {
    use std::io::Read;
    let err = |message: String| SetupError::File {
        what: "DCAP collateral",
        path: path.to_path_buf(),
        message,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_COLLATERAL_LEN + 1).read_to_end(&mut bytes))
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_COLLATERAL_LEN {
        return Err(err(format!("larger than {MAX_COLLATERAL_LEN} bytes")));
    }
    Collateral::from_json(&bytes).map_err(|e| err(e.to_string()))
}

#[async_trait::async_trait]
impl LibosBackend for GramineBackend {
    fn name(&self) -> &str {
        "gramine"
    }

    fn measure(&self, image: &RuntimeImage) -> Result<Measurement, BackendError> {
        self.prepared(image).map(|p| p.measurement)
    }

    fn connect_back(&self) -> ConnectBack {
        self.connect_back
    }

    fn instance_evidence(&self) -> InstanceEvidence {
        self.evidence.clone()
    }

    async fn launch(&self, spec: LaunchSpec<'_>) -> Result<Box<dyn Instance>, BackendError> {
        let prepared = self.prepared(spec.image)?;
        let dir = self
            .work_dir
            .join("launch")
            .join(hex::encode(&spec.nonce[..8]));
        create_dir(&dir.join(manifest::WORK_DIR_HOST)).map_err(|e| self.fail(e.to_string()))?;
        let cleanup = RemoveDirOnDrop::new(dir.clone(), "a Gramine launch directory");

        let mut command = tokio::process::Command::new(&self.loader);
        command
            .arg(&prepared.app)
            .current_dir(&dir)
            .env_clear()
            .env("CELLA_PRELOAD_SOCKET", spec.socket.to_string())
            .env("CELLA_PRELOAD_NONCE", hex::encode(spec.nonce))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let mut evidence_task = None;
        if self.config.mode == Mode::Direct {
            // gramine-direct has no quotes: the node plays the hardware, as for the
            // sandbox backend, answering one request for this launch's measurement.
            let source = SimEvidenceSource::new(Arc::clone(&self.hardware), prepared.measurement);
            let (value, task) = serve_evidence(&dir, &spec.socket, source)
                .await
                .map_err(|e| self.fail(e))?;
            command.env(EVIDENCE_ENV, value);
            evidence_task = Some(AbortOnDrop(task));
        }
        let mut child = command
            .spawn()
            .map_err(|e| self.fail(format!("starting {}: {e}", self.loader.display())))?;
        let pid = child.id();
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(stderr, spec.image.name.clone()));
        }
        Ok(Box::new(GramineInstance {
            child,
            pid,
            exit: None,
            terminated: false,
            _dir: cleanup,
            evidence_task,
        }))
    }
}

/// Forwards the loader's standard error to the node's log, line by line, each cut at
/// [`MAX_LOG_LINE`] bytes (the rest of a longer line is skipped, never buffered).
async fn forward_stderr(stderr: tokio::process::ChildStderr, image: String) {
    let mut lines = BoundedLines::new(stderr, MAX_LOG_LINE, LongLines::Skip);
    while let Some(text) = lines.next_line().await {
        tracing::info!(target: "cella_gramine::instance", %image, "{text}");
    }
}

/// Serves one evidence request for a `gramine-direct` launch next to the executor's
/// endpoint: a Unix socket in the launch directory when the executor's endpoint is a
/// Unix socket, TCP on 127.0.0.1 otherwise. Returns the value of
/// `CELLA_PRELOAD_EVIDENCE` and the serving task.
async fn serve_evidence(
    dir: &Path,
    executor: &Endpoint,
    source: SimEvidenceSource,
) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let (listener, value) = match executor {
        Endpoint::Unix(_) => {
            let path = dir.join("evidence.sock");
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(|e| format!("evidence socket {}: {e}", path.display()))?;
            let value = format!("{SOCKET_PREFIX}{}", path.display());
            (EvidenceListener::Unix(listener), value)
        }
        Endpoint::Tcp(_) => {
            let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| format!("evidence port: {e}"))?;
            let addr = listener
                .local_addr()
                .map_err(|e| format!("evidence port: {e}"))?;
            (EvidenceListener::Tcp(listener), format!("tcp:{addr}"))
        }
    };
    let task = tokio::spawn(async move {
        if let Err(e) = listener.serve_one(&source).await {
            tracing::warn!(error = %e, "serving simulation evidence to a gramine-direct instance");
        }
    });
    Ok((value, task))
}

/// A running Gramine loader and everything it started (its process group).
#[derive(Debug)]
struct GramineInstance {
    child: tokio::process::Child,
    pid: Option<u32>,
    exit: Option<InstanceExit>,
    terminated: bool,
    _dir: RemoveDirOnDrop,
    /// Ends with the instance, whether it was waited for or dropped.
    evidence_task: Option<AbortOnDrop>,
}

impl Drop for GramineInstance {
    fn drop(&mut self) {
        // The child's kill-on-drop ends only the loader; what it started goes too.
        if self.exit.is_none() {
            self.signal_group(Signal::KILL);
        }
    }
}

impl GramineInstance {
    fn signal_group(&self, signal: Signal) {
        signal_group(self.pid, signal, "a Gramine instance");
    }
}

#[async_trait::async_trait]
impl Instance for GramineInstance {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn wait(&mut self) -> InstanceExit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let exit = instance_exit(self.child.wait().await, "the Gramine loader");
        // Whatever the loader left behind (the program's enclave) goes with it.
        self.signal_group(Signal::KILL);
        self.evidence_task = None;
        self._dir.remove();
        self.exit = Some(exit.clone());
        exit
    }

    fn kill(&mut self) {
        if self.exit.is_none() {
            let _already_gone = self.child.start_kill();
        }
    }

    fn terminate(&mut self) {
        // Gramine injects one SIGTERM into the enclave (sys.enable_sigterm_injection)
        // and ignores later ones: send it once.
        if self.exit.is_none() && !self.terminated {
            self.terminated = true;
            self.signal_group(Signal::TERM);
        }
    }

    fn kill_group(&mut self) {
        if self.exit.is_none() {
            self.signal_group(Signal::KILL);
        }
    }
}
