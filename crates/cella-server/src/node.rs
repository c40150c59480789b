//! A running node: the platform, its workers, and the gRPC server over TLS.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::sync::Arc;

use cella_attest::sim::SimSigner;
use cella_executor::Executors;
use cella_executor::builtin::BuiltinExecutor;
use cella_libos::config::BackendKind;
use cella_libos::{ExecutorAttestation, LibosConfig, LibosExecutor};
use cella_platform::scheduler::Workers;
use cella_platform::{NodeConfig, Platform, PlatformError};
use cella_proto::v1::audit_service_server::AuditServiceServer;
use cella_proto::v1::auth_service_server::AuthServiceServer;
use cella_proto::v1::file_service_server::FileServiceServer;
use cella_proto::v1::function_service_server::FunctionServiceServer;
use cella_proto::v1::node_service_server::NodeServiceServer;
use cella_proto::v1::task_service_server::TaskServiceServer;
use cella_sandbox::backend::{ImageRoot, SandboxBackend, SandboxConfig};
use cella_types::ExecutorKind;
use cella_wasm::{WasmConfig, WasmExecutor};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::ops::Ops;
use crate::services::{Api, AuditApi, AuthApi, FileApi, FunctionApi, NodeApi, TaskApi};
use crate::tls::{NodeEvidence, NodeIdentity, TlsError};

/// How long [`RunningNode::shutdown`] waits for in-flight work to let go of the platform.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// TLS handshakes waiting to be served: bounds the memory a flood of connections takes.
const ACCEPT_QUEUE: usize = 128;
/// Largest request message: a function payload at its limit plus its spec.
const MAX_MESSAGE_BYTES: usize = cella_platform::config::MAX_PAYLOAD_BYTES + (1 << 20);

/// A node failed to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration asks for something the node cannot do.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// The platform could not open its state.
    #[error("opening the node state")]
    Platform(#[source] PlatformError),
    /// The TLS identity could not be loaded or created.
    #[error("TLS identity")]
    Tls(#[source] TlsError),
    /// An executor could not be set up.
    #[error("cannot set up the {kind} executor: {message}")]
    Executor {
        /// The executor's kind.
        kind: ExecutorKind,
        /// What failed.
        message: String,
    },
    /// The Teaclave listeners could not start.
    #[error("the Teaclave API")]
    Teaclave(#[source] cella_teaclave::StartError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a node needs to start serving.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The platform's configuration.
    pub node: NodeConfig,
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Names and addresses the certificate is made for on first start.
    pub tls_names: Vec<String>,
    /// Where the node's RA-TLS evidence comes from: simulation by default, or SGX DCAP
    /// quotes from Gramine's attestation interface (never a fallback from one to the
    /// other).
    pub evidence: NodeEvidence,
    /// The LibOS instance policy the node publishes (`GetPolicies`), for embedders that
    /// register a LibOS executor of their own. `None`: the one [`libos_executor`] wrote
    /// into the data dir, when the node has a `libos_config`.
    pub instance_policy: Option<String>,
    /// The operations listener's state (`/metrics`, `/readyz`): the node reports to its
    /// metrics and readiness once it runs. `None`: nothing is measured.
    pub ops: Option<Arc<Ops>>,
    /// The LibOS executor registered with the node's executors, for its pool metrics.
    pub libos: Option<Arc<LibosExecutor>>,
    /// Serve Teaclave's public API on its own listeners too (`--teaclave-api`); only
    /// with simulation evidence (docs/teaclave.md).
    pub teaclave: Option<cella_teaclave::TeaclaveConfig>,
    /// How often the node signs an audit checkpoint while it serves (it always signs one
    /// on shutdown); `None` or zero: only on shutdown.
    pub audit_checkpoint_interval: Option<std::time::Duration>,
}

impl ServerConfig {
    /// Listens on `listen` with a certificate for `localhost` and the loopback
    /// addresses.
    pub fn new(node: NodeConfig, listen: SocketAddr) -> Self {
        Self {
            node,
            listen,
            tls_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            evidence: NodeEvidence::Simulation,
            instance_policy: None,
            ops: None,
            libos: None,
            teaclave: None,
            audit_checkpoint_interval: Some(crate::checkpoints::DEFAULT_INTERVAL),
        }
    }
}

/// Where, under the data dir, the WebAssembly executor keeps compiled modules.
pub const WASM_CACHE_DIR: &str = "wasm-cache";

/// The executors compiled into this build: builtin functions, WebAssembly
/// ([`wasm_executor`]), and LibOS when the node has a LibOS configuration
/// ([`libos_executor`]).
///
/// # Errors
///
/// [`StartError::Executor`] when the WebAssembly or LibOS executor cannot be set up.
pub fn default_executors(config: &NodeConfig) -> Result<Executors, StartError> {
    node_executors(config).map(|(e, _)| e)
}

/// [`default_executors`], and the LibOS executor among them, if any, for its pool
/// metrics ([`ServerConfig::libos`]).
///
/// # Errors
///
/// As [`default_executors`].
pub fn node_executors(
    config: &NodeConfig,
) -> Result<(Executors, Option<Arc<LibosExecutor>>), StartError> {
    let mut e = Executors::new();
    e.register(Arc::new(BuiltinExecutor::new()));
    e.register(Arc::new(wasm_executor(config)?));
    let libos = libos_executor(config)?.map(Arc::new);
    if let Some(libos) = &libos {
        e.register(Arc::clone(libos) as Arc<dyn cella_executor::Executor>);
    }
    Ok((e, libos))
}

/// Where, under the data dir, the LibOS executor keeps its simulation key (sealed) and
/// the attestation policy that verifies its receipts.
pub const LIBOS_DIR: &str = "libos";
/// The policy file under [`LIBOS_DIR`], for `cella task receipt --verify --policy`.
pub const LIBOS_POLICY_FILE: &str = "attestation-policy.libos.toml";
/// Domain separation for the sealed LibOS simulation key.
const LIBOS_SIM_KEY_AAD: &[u8] = b"cella/libos-sim-key/v1";

/// The LibOS executor described by the node's `libos_config` file, if it has one. In
/// simulation the node plays the instances' hardware with a key of its own, kept sealed
/// in `<data_dir>/libos/sim-key.sealed`, so receipts stay verifiable across restarts; the
/// policy accepting its instances is written to `<data_dir>/libos/`[`LIBOS_POLICY_FILE`].
///
/// # Errors
///
/// [`StartError::Executor`] naming the file and what is wrong with it.
pub fn libos_executor(config: &NodeConfig) -> Result<Option<LibosExecutor>, StartError> {
    let Some(path) = &config.libos_config else {
        return Ok(None);
    };
    let fail = |message: String| StartError::Executor {
        kind: ExecutorKind::Libos,
        message,
    };
    let libos = LibosConfig::load(path).map_err(|e| fail(e.to_string()))?;
    let dir = config.data_dir.join(LIBOS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let sealing = cella_crypto::SealingKey::load_or_create(&config.sealing_key_path())
        .map_err(|e| fail(format!("sealing key: {e}")))?;
    let key_path = dir.join("sim-key.sealed");
    if !key_path.exists() {
        let key = SimSigner::generate().map_err(|e| fail(e.to_string()))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, &sealing.seal(LIBOS_SIM_KEY_AAD, key.pkcs8()))
                    .and_then(|()| f.sync_all())
            })
            .map_err(|e| fail(format!("writing {}: {e}", key_path.display())))?;
    }
    let sealed = std::fs::read(&key_path)
        .map_err(|e| fail(format!("reading {}: {e}", key_path.display())))?;
    let pkcs8 = zeroize::Zeroizing::new(
        sealing
            .unseal(LIBOS_SIM_KEY_AAD, &sealed)
            .map_err(|_| fail(format!("cannot unseal {}", key_path.display())))?,
    );
    let hardware = SimSigner::from_pkcs8(&pkcs8).map_err(|e| fail(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| fail(format!("locating this binary: {e}")))?;
    let measurement = cella_attest::sim::measure_file(&exe)
        .map_err(|e| fail(format!("measuring {}: {e}", exe.display())))?;
    let attestation = ExecutorAttestation::simulated(Arc::new(hardware), measurement);
    let executor = build_libos(config, &libos, attestation).map_err(fail)?;
    let policy = dir.join(LIBOS_POLICY_FILE);
    std::fs::write(&policy, executor.instance_policy())
        .map_err(|e| fail(format!("writing {}: {e}", policy.display())))?;
    Ok(Some(executor))
}

/// The LibOS executor of `libos` on its backend: the `mock` backend is built by
/// `cella-libos` itself; the `sandbox` backend here, from the images in the data dir
/// (`images = [...]`, loaded and verified file by file) and inline `[[runtime]]`s without
/// files, after a probe that the machine can run sandboxes at all.
fn build_libos(
    config: &NodeConfig,
    libos: &LibosConfig,
    attestation: ExecutorAttestation,
) -> Result<LibosExecutor, String> {
    let store = cella_image::ImageStore::new(&config.data_dir);
    let mut loaded = Vec::with_capacity(libos.images.len());
    for name in &libos.images {
        loaded.push(
            store
                .load(name)
                .map_err(|e| format!("{e} (images are built with `cella image build`)"))?,
        );
    }
    match libos.backend {
        BackendKind::Mock => {
            let mut images = libos.runtimes.clone();
            images.extend(loaded.into_iter().map(|l| l.image));
            cella_libos::mock::executor_with(images, libos.executor_config(), attestation)
                .map(|(e, _)| e)
                .map_err(|e| e.to_string())
        }
        BackendKind::Sandbox => {
            let mut roots: Vec<ImageRoot> = loaded.into_iter().map(ImageRoot::from).collect();
            let empty_root = config.data_dir.join("libos").join("empty-root");
            for image in &libos.runtimes {
                if !image.files.is_empty() {
                    return Err(format!(
                        "runtime {:?}: the sandbox backend runs images built into the data dir \
                         (images = [\"{}\"] after `cella image build`); an inline [[runtime]] \
                         may not list files",
                        image.name, image.name
                    ));
                }
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&empty_root)
                    .map_err(|e| format!("creating {}: {e}", empty_root.display()))?;
                roots.push(ImageRoot {
                    image: image.clone(),
                    rootfs: empty_root.clone(),
                });
            }
            let section = libos.sandbox.clone().unwrap_or_default();
            let sandbox = SandboxConfig::from_section(&config.data_dir, section)
                .map_err(|e| e.to_string())?;
            let backend =
                SandboxBackend::new(sandbox, &attestation, roots).map_err(|e| e.to_string())?;
            probe_blocking(&backend)?;
            let images = backend.images();
            LibosExecutor::new(
                Arc::new(backend),
                images,
                attestation,
                libos.executor_config(),
            )
            .map_err(|e| e.to_string())
        }
        BackendKind::Gramine => {
            let section = libos.gramine.clone().unwrap_or_default();
            cella_gramine::node::build_executor(
                &config.data_dir,
                &section.0,
                loaded.into_iter().map(Into::into).collect(),
                &libos.runtimes,
                attestation,
                libos.executor_config(),
            )
        }
    }
}

/// What `GetPolicies` answers: the policy the node wrote for its clients, and the
/// instance policy of its LibOS executor (none without one).
fn published_policies(
    config: &ServerConfig,
    identity: &NodeIdentity,
) -> Result<cella_proto::v1::GetPoliciesResponse, StartError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| {
            StartError::Tls(TlsError::Io {
                path: path.to_owned(),
                source,
            })
        })
    };
    let node_policy = read(&identity.policy_file())?;
    let instance = config.node.data_dir.join(LIBOS_DIR).join(LIBOS_POLICY_FILE);
    let instance_policy = match &config.instance_policy {
        Some(text) => text.clone(),
        None if config.node.libos_config.is_some() => read(&instance)?,
        None => String::new(),
    };
    Ok(cella_proto::v1::GetPoliciesResponse {
        node_policy,
        instance_policy,
    })
}

/// Runs [`SandboxBackend::probe`] to completion from synchronous code, inside a tokio
/// runtime or not (on a thread of its own with a runtime of its own).
fn probe_blocking(backend: &SandboxBackend) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("probe runtime: {e}"))?
                .block_on(backend.probe())
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the sandbox probe panicked".into()))
    })
}

/// The WebAssembly executor of a node: default limits, compiled modules cached in
/// `<data_dir>/wasm-cache` and sealed with the node's sealing key (created, with the
/// data dir, if this is the node's first start).
///
/// # Errors
///
/// [`StartError::Executor`] naming what failed: the data dir, the sealing key, or the
/// executor's engine, ticker or cache directory.
pub fn wasm_executor(config: &NodeConfig) -> Result<WasmExecutor, StartError> {
    let fail = |message: String| StartError::Executor {
        kind: ExecutorKind::Wasm,
        message,
    };
    // As `Platform::open` does: the sealing key lives in the data dir.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|e| {
            fail(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
    let key = cella_crypto::SealingKey::load_or_create(&config.sealing_key_path())
        .map_err(|e| fail(format!("sealing key: {e}")))?;
    let wasm = WasmConfig::with_disk_cache(config.data_dir.join(WASM_CACHE_DIR), Arc::new(key));
    WasmExecutor::new(wasm).map_err(|e| fail(e.to_string()))
}

/// A serving node.
#[derive(Debug)]
pub struct RunningNode {
    addr: SocketAddr,
    cert_pem: String,
    policy_file: std::path::PathBuf,
    platform: Arc<Platform>,
    workers: Workers,
    stop: oneshot::Sender<()>,
    closing: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    ops: Option<Arc<Ops>>,
    teaclave: Option<cella_teaclave::Listeners>,
    /// The interval checkpoint writer, ended by `closing`.
    checkpoints: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Opens the node state, starts the workers and serves the API.
    ///
    /// # Errors
    ///
    /// [`StartError`] saying which part failed.
    pub async fn start(config: ServerConfig, executors: Executors) -> Result<Self, StartError> {
        if config.node.workers == 0 {
            // Tasks would be queued and never run, while health reported 0 workers.
            return Err(StartError::Config(
                "workers = 0: a node needs at least 1 execution worker".into(),
            ));
        }
        let platform =
            Platform::open(config.node.clone(), executors).map_err(StartError::Platform)?;
        let sealing = cella_crypto::SealingKey::load_or_create(&config.node.sealing_key_path())
            .map_err(|e| StartError::Platform(PlatformError::node_because("sealing key", e)))?;
        let identity = NodeIdentity::start(
            &config.node.data_dir.join("tls"),
            &sealing,
            &config.tls_names,
            &config.evidence,
        )
        .map_err(StartError::Tls)?;
        platform.set_audit_signer(identity.resolver());
        let policies = Arc::new(published_policies(&config, &identity)?);
        let acceptor = TlsAcceptor::from(identity.server_config().map_err(StartError::Tls)?);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        if let Some(ops) = &config.ops {
            platform
                .observe(Arc::clone(ops.metrics()) as Arc<dyn cella_platform::observe::Observer>);
            ops.attach(
                Arc::clone(&platform),
                identity.resolver(),
                config.libos.clone(),
            );
        }
        let teaclave = match &config.teaclave {
            Some(t) => Some(
                cella_teaclave::Listeners::start(
                    Arc::clone(&platform),
                    t,
                    config.evidence == NodeEvidence::Simulation,
                )
                .await
                .map_err(StartError::Teaclave)?,
            ),
            None => None,
        };
        let workers = platform.start_workers();

        let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                // Small request/response messages: do not let Nagle hold them back.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "set_nodelay failed");
                }
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            let _closed = conn_tx.send(Ok::<_, std::io::Error>(tls)).await;
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    }
                });
            }
        });

        let closing = CancellationToken::new();
        let checkpoints =
            crate::checkpoints::spawn(&platform, config.audit_checkpoint_interval, closing.clone());
        let api = Api::new(Arc::clone(&platform), closing.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        // Outermost first: the count sees the code that refine_status settled on.
        let layers = tower::ServiceBuilder::new()
            .layer(crate::api_metrics::CountLayer(
                config.ops.as_ref().map(|o| Arc::clone(o.metrics())),
            ))
            .layer(tower::util::MapResponseLayer::new(
                crate::codes::refine_status::<tonic::body::Body>,
            ));
        let router = tonic::transport::Server::builder()
            .layer(layers)
            .add_service(AuthServiceServer::new(AuthApi(api.clone())))
            .add_service(
                FunctionServiceServer::new(FunctionApi(api.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(FileServiceServer::new(FileApi(api.clone())))
            .add_service(TaskServiceServer::new(TaskApi(api.clone())))
            .add_service(AuditServiceServer::new(AuditApi(api.clone())))
            .add_service(NodeServiceServer::new(NodeApi { api, policies }));
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
            let served = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            accept.abort();
            if let Err(e) = served {
                tracing::error!(error = %e, "the gRPC server stopped with an error");
            }
        });
        tracing::info!(%addr, "serving cella.v1 over TLS");
        Ok(Self {
            addr,
            cert_pem: identity.cert_pem().to_owned(),
            policy_file: identity.policy_file(),
            platform,
            workers,
            stop,
            closing,
            server,
            ops: config.ops.clone(),
            teaclave,
            checkpoints,
        })
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's certificate in PEM, for clients to pin.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The attestation policy the node wrote for its clients:
    /// `<data_dir>/tls/attestation-policy.sim.toml` in simulation,
    /// `<data_dir>/tls/attestation-policy.sgx.toml` under Gramine.
    pub fn policy_file(&self) -> &std::path::Path {
        &self.policy_file
    }

    /// The Teaclave listeners' addresses (authentication, frontend), when served.
    pub fn teaclave_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.teaclave
            .as_ref()
            .map(|t| (t.auth_addr(), t.frontend_addr()))
    }

    /// The platform behind the API.
    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// [`RunningNode::shutdown_within`] without a grace period: running tasks are cut
    /// off at once.
    pub async fn shutdown(self) {
        self.shutdown_within(std::time::Duration::ZERO).await;
    }

    /// Stops serving (readiness turns false, the API takes no new call and ends its
    /// watches), lets running tasks finish for up to `grace`, cuts off the rest (queued
    /// again for their retry, or Failed: see [`Workers::shutdown`]), signs a last audit
    /// checkpoint over everything that happened, and waits until
    /// nothing uses the platform any more, so its store is closed when this returns (or
    /// after [`SHUTDOWN_WAIT`], with a warning).
    pub async fn shutdown_within(self, grace: std::time::Duration) {
        if let Some(ops) = &self.ops {
            ops.stopping();
        }
        let _ = self.stop.send(());
        self.closing.cancel();
        if let Some(teaclave) = self.teaclave {
            teaclave.shutdown().await;
        }
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "server task ended abnormally");
        }
        self.workers.shutdown(grace).await;
        if let Some(writer) = self.checkpoints
            && let Err(e) = writer.await
        {
            tracing::warn!(error = %e, "the audit checkpoint timer ended abnormally");
        }
        crate::checkpoints::write(&self.platform, "shutdown").await;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        // Aborted executions and closing connections drop their handles on their next
        // poll; wait for them rather than leave the store open behind our back.
        while Arc::strong_count(&self.platform) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&self.platform) > 1 {
            tracing::warn!("the platform is still in use after shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with(libos_toml: &str) -> (tempfile::TempDir, NodeConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libos.toml");
        std::fs::write(&path, libos_toml).unwrap();
        let mut config = NodeConfig::new(dir.path().join("node"));
        config.libos_config = Some(path);
        (dir, config)
    }

    fn start_error(libos_toml: &str) -> String {
        let (_dir, config) = node_with(libos_toml);
        match libos_executor(&config) {
            Ok(_) => panic!("the node started with {libos_toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_sandbox_that_cannot_run_stops_the_node_at_start() {
        // A jailer that does nothing: the probe finds no sandbox, and says so.
        let e = start_error(
            "backend = \"sandbox\"\n[sandbox]\njailer = \"/bin/false\"\npreload = \"/bin/true\"\n\
             [[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
        );
        assert!(e.contains("cannot run sandboxes"), "{e}");
    }

    #[test]
    fn missing_images_and_inline_files_are_start_errors() {
        let e = start_error("backend = \"sandbox\"\nimages = [\"python3\"]\n");
        assert!(
            e.contains("python3") && e.contains("cella image build"),
            "{e}"
        );
        let e = start_error(
            "backend = \"sandbox\"\n[[runtime]]\nname = \"py\"\nargv = [\"x\"]\n\
             files = [{ path = \"/usr/bin/python3\", sha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\" }]\n",
        );
        assert!(e.contains("may not list files"), "{e}");
    }
}
