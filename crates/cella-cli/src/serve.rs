//! `cella serve`: runs every role of a node in one process on an embedded store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cella_platform::NodeConfig;
use cella_server::{LibosProbe, NodeEvidence, Ops, RunningNode, ServerConfig, node_executors};
use cella_store::{BlobLocation, S3Config};
use tokio_util::sync::CancellationToken;

/// Where the node's RA-TLS evidence comes from (`--evidence`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EvidenceArg {
    /// Software-signed simulation evidence (development; not hardware-backed).
    Sim,
    /// SGX DCAP quotes from Gramine's attestation interface: the node runs under
    /// gramine-sgx (see docs/gramine.md). Never falls back to simulation.
    SgxDcap,
}

/// How the node writes its log on stderr (`--log-format`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LogFormat {
    /// Lines for people (coloured only on a terminal).
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Reads an environment variable (a stand-in in tests).
type EnvLookup = dyn Fn(&str) -> Option<String>;

/// `--blobs` for the data dir's own blob directory.
const LOCAL_BLOBS: &str = "local";
/// Default `--listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
/// Default `--workers`.
const DEFAULT_WORKERS: usize = 2;
/// Default `--task-deadline`, in seconds.
const DEFAULT_TASK_DEADLINE_SECS: u64 = 300;
/// Default `--shutdown-grace`, in seconds: under Kubernetes' default 30 s between
/// SIGTERM and SIGKILL, so the node cuts off what is left and exits 0 before it is killed.
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;

/// The settings of `cella serve`, from the command line or the configuration file
/// (`--config`; each key is the flag's name with `_` for `-`, docs/configuration.md).
/// Every one is optional here so that a flag given overrides the file and a flag not
/// given leaves it; [`ServeArgs::resolve`] fills in the defaults.
#[derive(Debug, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of these settings (flags given here override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (file and flags merged, as TOML) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub(crate) print_config: bool,
    /// Directory for the node's store, blobs, keys and TLS certificate.
    #[arg(long, value_name = "DIR", env = "CELLA_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The metadata store: `postgres://user@host:port/db` keeps it in PostgreSQL (the
    /// password, if any, in `<data-dir>/store-password`; docs/store.md) [default: the
    /// embedded store in the data dir].
    #[arg(long, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// Where the node keeps its blobs: `local` (under the data dir) or
    /// `s3://bucket[/prefix]` in an S3-compatible object store, whose credentials come
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) [default:
    /// local].
    #[arg(long, value_name = "URL", env = "CELLA_BLOBS")]
    pub(crate) blobs: Option<String>,
    /// The object store's endpoint, for S3-compatible servers (with `--blobs s3://…`;
    /// `http://` only for a server on this machine's loopback) [default: AWS's].
    #[arg(long, value_name = "URL", env = "CELLA_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,
    /// The object store's region (with `--blobs s3://…`) [default: us-east-1].
    #[arg(long, value_name = "NAME", env = "CELLA_S3_REGION")]
    pub(crate) s3_region: Option<String>,
    /// Address to listen on for the gRPC API [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Number of execution workers, at least 1 [default: 2].
    #[arg(long, value_name = "N", value_parser = at_least_one_worker)]
    pub(crate) workers: Option<usize>,
    /// A directory under which data owners may register `file://` inputs and outputs
    /// (repeatable). None by default: the node reads no file a user names.
    #[arg(long, value_name = "DIR")]
    pub(crate) file_url_root: Option<Vec<PathBuf>>,
    /// Wall-clock budget of one task run, in seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    pub(crate) task_deadline: Option<u64>,
    /// Cap on all of one task's outputs together, in bytes (plaintext); a task over it
    /// fails, naming the cap [default: 256 MiB].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_task_output_bytes: Option<u64>,
    /// Extra host names or IP addresses for the node's certificate's subjectAltName
    /// (repeatable; `localhost`, 127.0.0.1 and ::1 are always there), so that clients
    /// which check the server name can reach the node by that name (docs/api.md).
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_name: Option<Vec<String>>,
    /// The LibOS executor's configuration (backend, pool, runtime images; see
    /// docs/libos.md). Without it the node runs no `libos` functions.
    #[arg(long, value_name = "FILE")]
    pub(crate) libos_config: Option<PathBuf>,
    /// Where the node's attestation evidence comes from: `sim` (software-signed) or
    /// `sgx-dcap` (DCAP quotes through Gramine's /dev/attestation, inside gramine-sgx)
    /// [default: sim].
    #[arg(long, value_enum, value_name = "KIND")]
    pub(crate) evidence: Option<EvidenceArg>,
    /// Gramine's attestation interface, with `--evidence sgx-dcap` [default:
    /// /dev/attestation].
    #[arg(long, value_name = "DIR")]
    pub(crate) attestation_dir: Option<PathBuf>,
    /// Serve `/metrics`, `/healthz` and `/readyz` over plain HTTP on this address (off
    /// by default; see docs/operations.md).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// On SIGTERM or Ctrl-C, how long running tasks may go on before they are cut off
    /// (queued again for their retry), in seconds [default: 20].
    #[arg(long, value_name = "SECS")]
    pub(crate) shutdown_grace: Option<u64>,
    /// How often the node signs an audit checkpoint over the trail's head, in seconds;
    /// 0: only on shutdown (it always signs one then) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub(crate) audit_checkpoint_interval: Option<u64>,
    /// How the log on stderr is written: `text` or `json` [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    /// Also serve Apache Teaclave's public API (authentication and frontend services)
    /// on their own TLS listeners, for Teaclave's SDK in simulation mode; needs
    /// `--evidence sim` (docs/teaclave.md).
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub(crate) teaclave_api: Option<bool>,
    /// With `--teaclave-api`: the authentication service's address [default:
    /// 127.0.0.1:7776].
    #[arg(long, value_name = "ADDR")]
    pub(crate) teaclave_auth_listen: Option<SocketAddr>,
    /// With `--teaclave-api`: the frontend service's address [default: 127.0.0.1:7777].
    #[arg(long, value_name = "ADDR")]
    pub(crate) teaclave_frontend_listen: Option<SocketAddr>,
}

/// The effective configuration of `cella serve`: every setting with its value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ServeConfig {
    pub(crate) data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<String>,
    pub(crate) blobs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) s3_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) s3_region: Option<String>,
    pub(crate) listen: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) file_url_root: Vec<PathBuf>,
    pub(crate) task_deadline: u64,
    pub(crate) max_task_output_bytes: u64,
    pub(crate) tls_name: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) libos_config: Option<PathBuf>,
    pub(crate) evidence: EvidenceArg,
    pub(crate) attestation_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) shutdown_grace: u64,
    pub(crate) audit_checkpoint_interval: u64,
    pub(crate) log_format: LogFormat,
    pub(crate) teaclave_api: bool,
    // Only with the API on: an address of a listener that does not run is neither
    // printed nor taken back from a printed configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) teaclave_auth_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) teaclave_frontend_listen: Option<SocketAddr>,
}

/// Port `port` on 127.0.0.1: Teaclave listens on every interface by default, Cella
/// only on loopback unless told otherwise, like its own `--listen`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `--workers`: a node without workers would queue tasks that never run.
fn at_least_one_worker(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a node needs at least 1 worker to run tasks".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a configuration file's text; `path` names it in errors.
fn parse_file(path: &Path, text: &str) -> anyhow::Result<ServeArgs> {
    toml::from_str(text).with_context(|| format!("configuration file {}", path.display()))
}

impl ServeArgs {
    /// The flags given, over the configuration file (if `--config`), over the defaults.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed (an unknown key is named), no data dir is set,
    /// `workers = 0`, or `attestation_dir` without `evidence = "sgx-dcap"`.
    pub(crate) fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                parse_file(path, &text)?
            }
            None => ServeArgs::default(),
        };
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?;
        // Asked for in either place, the addresses make sense only with the API on.
        let teaclave_listen_given = [
            self.teaclave_auth_listen,
            self.teaclave_frontend_listen,
            file.teaclave_auth_listen,
            file.teaclave_frontend_listen,
        ]
        .iter()
        .any(Option::is_some);
        let teaclave_api = self.teaclave_api.or(file.teaclave_api).unwrap_or(false);
        let config = ServeConfig {
            data_dir: self.data_dir.or(file.data_dir).context(
                "no data dir: give --data-dir DIR, CELLA_DATA_DIR or data_dir in --config",
            )?,
            store: self.store.or(file.store),
            blobs: self
                .blobs
                .or(file.blobs)
                .unwrap_or_else(|| LOCAL_BLOBS.to_owned()),
            s3_endpoint: self.s3_endpoint.or(file.s3_endpoint),
            s3_region: self.s3_region.or(file.s3_region),
            listen: self.listen.or(file.listen).unwrap_or(default_listen),
            workers: self.workers.or(file.workers).unwrap_or(DEFAULT_WORKERS),
            file_url_root: self
                .file_url_root
                .or(file.file_url_root)
                .unwrap_or_default(),
            task_deadline: self
                .task_deadline
                .or(file.task_deadline)
                .unwrap_or(DEFAULT_TASK_DEADLINE_SECS),
            max_task_output_bytes: self
                .max_task_output_bytes
                .or(file.max_task_output_bytes)
                .unwrap_or(cella_executor::DEFAULT_MAX_TOTAL_OUTPUT_BYTES),
            tls_name: self.tls_name.or(file.tls_name).unwrap_or_default(),
            libos_config: self.libos_config.or(file.libos_config),
            evidence: self.evidence.or(file.evidence).unwrap_or(EvidenceArg::Sim),
            attestation_dir: self
                .attestation_dir
                .or(file.attestation_dir)
                .unwrap_or_else(|| cella_attest::gramine::DEFAULT_ATTESTATION_DIR.into()),
            metrics: self.metrics.or(file.metrics),
            shutdown_grace: self
                .shutdown_grace
                .or(file.shutdown_grace)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
            audit_checkpoint_interval: self
                .audit_checkpoint_interval
                .or(file.audit_checkpoint_interval)
                .unwrap_or(cella_server::checkpoints::DEFAULT_INTERVAL.as_secs()),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            teaclave_api,
            teaclave_auth_listen: teaclave_api.then(|| {
                self.teaclave_auth_listen
                    .or(file.teaclave_auth_listen)
                    .unwrap_or(loopback(cella_teaclave::DEFAULT_AUTH_PORT))
            }),
            teaclave_frontend_listen: teaclave_api.then(|| {
                self.teaclave_frontend_listen
                    .or(file.teaclave_frontend_listen)
                    .unwrap_or(loopback(cella_teaclave::DEFAULT_FRONTEND_PORT))
            }),
        };
        if !config.teaclave_api && teaclave_listen_given {
            anyhow::bail!(
                "--teaclave-auth-listen and --teaclave-frontend-listen (teaclave_auth_listen, \
                 teaclave_frontend_listen in the file) need --teaclave-api (teaclave_api = true)"
            );
        }
        if let Some(url) = &config.store
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            anyhow::bail!(
                "store = {url:?}: the only other store is PostgreSQL, as postgres://user@host:port/db"
            );
        }
        if config.workers == 0 {
            anyhow::bail!("workers = 0: a node needs at least 1 worker to run tasks");
        }
        if config.node_evidence()? != NodeEvidence::Simulation && config.teaclave_api {
            anyhow::bail!("{}", cella_teaclave::StartError::NeedsSimulation);
        }
        config.blob_location(None)?;
        Ok(config)
    }
}

impl ServeConfig {
    /// The node's evidence source. `--attestation-dir` given with `--evidence sim` is an
    /// error rather than silently ignored.
    pub(crate) fn node_evidence(&self) -> anyhow::Result<NodeEvidence> {
        let default_dir = self.attestation_dir
            == std::path::Path::new(cella_attest::gramine::DEFAULT_ATTESTATION_DIR);
        match self.evidence {
            EvidenceArg::Sim if !default_dir => anyhow::bail!(
                "--attestation-dir {} needs --evidence sgx-dcap",
                self.attestation_dir.display()
            ),
            EvidenceArg::Sim => Ok(NodeEvidence::Simulation),
            EvidenceArg::SgxDcap => Ok(NodeEvidence::SgxDcap {
                dir: self.attestation_dir.clone(),
            }),
        }
    }

    /// Where the node keeps its blobs; `env` reads the object store's credentials (`None`:
    /// none, to check the settings only). Credentials come only from the environment, so
    /// that no flag, file or printed configuration holds them.
    pub(crate) fn blob_location(&self, env: Option<&EnvLookup>) -> anyhow::Result<BlobLocation> {
        if self.blobs == LOCAL_BLOBS {
            if self.s3_endpoint.is_some() || self.s3_region.is_some() {
                anyhow::bail!("--s3-endpoint and --s3-region need --blobs s3://bucket[/prefix]");
            }
            return Ok(BlobLocation::Local);
        }
        let mut s3 = S3Config::from_url(&self.blobs).context("--blobs")?;
        if let Some(endpoint) = &self.s3_endpoint {
            let plain = endpoint.starts_with("http://");
            if !(plain || endpoint.starts_with("https://")) || endpoint.contains('@') {
                anyhow::bail!(
                    "--s3-endpoint must be an http(s)://host[:port] URL without credentials"
                );
            }
            // Plain HTTP only because the operator wrote it, and said aloud.
            if plain && env.is_some() {
                tracing::warn!(endpoint, "the object store is reached over plain HTTP");
            }
            s3.allow_http = plain;
            s3.endpoint = Some(endpoint.clone());
        }
        s3.region.clone_from(&self.s3_region);
        if let Some(env) = env {
            s3.access_key_id = env("AWS_ACCESS_KEY_ID");
            s3.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
            s3.session_token = env("AWS_SESSION_TOKEN");
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                anyhow::bail!("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither");
            }
        }
        Ok(BlobLocation::S3(s3))
    }

    /// The configuration as a TOML file `--config` reads back. It holds no secret: no
    /// setting is one (keys and passwords live in the data dir, object store credentials
    /// in the environment, never in flags).
    pub(crate) fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("writing the configuration as TOML")
    }
}

/// Runs the node until Ctrl-C or SIGTERM, then shuts it down gracefully (exit 0), or
/// prints the effective configuration with `--print-config`.
pub(crate) async fn run(args: ServeArgs, json: bool) -> anyhow::Result<()> {
    let print = args.print_config;
    let args = args.resolve()?;
    if print {
        print!("{}", args.to_toml()?);
        return Ok(());
    }
    crate::init_tracing(args.log_format);
    let evidence = args.node_evidence()?;
    let evidence_kind = args.evidence;
    let mut node = NodeConfig::new(&args.data_dir);
    node.blobs = args.blob_location(Some(&|k| std::env::var(k).ok()))?;
    node.workers = args.workers;
    node.file_url_roots = args.file_url_root;
    node.task_deadline = Duration::from_secs(args.task_deadline);
    node.max_task_output_bytes = args.max_task_output_bytes;
    node.libos_config = args.libos_config;
    node.store_url = args.store;
    let admin_file = node.admin_password_path();
    // The first start writes the admin password file (whatever the store).
    let had_admin_file = admin_file.exists();
    // The operations listener comes up first, so that probes see the node start: live,
    // and not ready until the LibOS probe passed and the node serves.
    let ops_stop = CancellationToken::new();
    let _stop_ops = ops_stop.clone().drop_guard();
    let ops = match args.metrics {
        Some(addr) => {
            let ops = Arc::new(Ops::new());
            let bound = ops
                .serve(addr, ops_stop.clone())
                .await
                .with_context(|| format!("cannot listen on {addr} for --metrics"))?;
            if !json {
                eprintln!("metrics, /healthz and /readyz on http://{bound}");
            }
            if node.libos_config.is_some() {
                ops.set_libos_probe(LibosProbe::Pending);
            }
            Some(ops)
        }
        None => None,
    };
    // Building the executors runs the LibOS sandbox probe (it blocks): off the runtime's
    // threads, so the operations listener answers meanwhile.
    let for_executors = node.clone();
    let built = tokio::task::spawn_blocking(move || node_executors(&for_executors))
        .await
        .context("setting up the executors")?;
    let (executors, libos) = match built {
        Ok(built) => built,
        Err(e) => {
            if let Some(ops) = &ops {
                ops.set_libos_probe(LibosProbe::Failed(e.to_string()));
            }
            return Err(e).context("setting up the executors");
        }
    };
    if let Some(ops) = &ops
        && libos.is_some()
    {
        ops.set_libos_probe(LibosProbe::Passed);
    }
    let mut config = ServerConfig::new(node, args.listen);
    config.tls_names.extend(args.tls_name);
    config.evidence = evidence;
    config.ops = ops;
    config.libos = libos;
    config.teaclave = args
        .teaclave_auth_listen
        .zip(args.teaclave_frontend_listen)
        .map(
            |(auth_listen, frontend_listen)| cella_teaclave::TeaclaveConfig {
                auth_listen,
                frontend_listen,
            },
        );
    config.audit_checkpoint_interval = Some(Duration::from_secs(args.audit_checkpoint_interval));
    let running = RunningNode::start(config, executors)
        .await
        .with_context(|| format!("starting the node in {}", args.data_dir.display()))?;
    let first_start = !had_admin_file && admin_file.exists();
    let policy = running.policy_file().to_owned();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "listening": running.addr().to_string(),
                "attestation_policy": policy,
                "evidence": match evidence_kind {
                    EvidenceArg::Sim => "sim",
                    EvidenceArg::SgxDcap => "sgx-dcap",
                },
                "admin_password_file": first_start.then_some(&admin_file),
                "teaclave": running.teaclave_addrs().map(|(auth, frontend)| serde_json::json!({
                    "authentication": auth.to_string(),
                    "frontend": frontend.to_string(),
                })),
            })
        );
    } else {
        eprintln!("cella node listening on {} (TLS)", running.addr());
        if let Some((auth, frontend)) = running.teaclave_addrs() {
            eprintln!(
                "  Teaclave API (simulation-mode certificate): authentication on {auth}, \
                 frontend on {frontend}"
            );
        }
        match &evidence_kind {
            EvidenceArg::Sim => eprintln!(
                "  clients attest it with: cella login --policy {}",
                policy.display()
            ),
            EvidenceArg::SgxDcap => eprintln!(
                "  clients attest it with: cella login --policy {} --collateral FILE\n  \
                 (compare the policy's MRENCLAVE with gramine-sgx-sigstruct-view first)",
                policy.display()
            ),
        }
        if first_start {
            eprintln!(
                "  first start: the admin password is in {}",
                admin_file.display()
            );
        }
    }
    shutdown_signal().await?;
    let grace = Duration::from_secs(args.shutdown_grace);
    tracing::info!(
        grace_secs = args.shutdown_grace,
        "stopping: no new calls, running tasks may finish"
    );
    if !json {
        eprintln!(
            "stopping… (running tasks have {}s to finish)",
            args.shutdown_grace
        );
    }
    running.shutdown_within(grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
