//! `cella serve`: runs every role of a node in one process on an embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cella_platform::NodeConfig;
use cella_server::{NodeEvidence, RunningNode, ServerConfig, default_executors};

/// Where the node's RA-TLS evidence comes from (`--evidence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EvidenceArg {
    /// Software-signed simulation evidence (development; not hardware-backed).
    Sim,
    /// SGX DCAP quotes from Gramine's attestation interface: the node runs under
    /// gramine-sgx (see docs/gramine.md). Never falls back to simulation.
    SgxDcap,
}

/// Arguments of `cella serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Directory for the node's store, blobs, keys and TLS certificate.
    #[arg(long, value_name = "DIR", env = "CELLA_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
    /// Address to listen on for the gRPC API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
    pub(crate) listen: SocketAddr,
    /// Number of execution workers (at least 1).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = at_least_one_worker)]
    pub(crate) workers: usize,
    /// A directory under which data owners may register `file://` inputs and outputs
    /// (repeatable). None by default: the node reads no file a user names.
    #[arg(long, value_name = "DIR")]
    pub(crate) file_url_root: Vec<PathBuf>,
    /// Wall-clock budget of one task run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub(crate) task_deadline: u64,
    /// Cap on all of one task's outputs together, in bytes (plaintext); a task over it
    /// fails, naming the cap.
    #[arg(long, value_name = "BYTES", default_value_t = cella_executor::DEFAULT_MAX_TOTAL_OUTPUT_BYTES)]
    pub(crate) max_task_output_bytes: u64,
    /// Extra host names or IP addresses for the node's certificate's subjectAltName
    /// (repeatable; `localhost`, 127.0.0.1 and ::1 are always there), so that clients
    /// which check the server name can reach the node by that name (docs/api.md).
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_name: Vec<String>,
    /// The LibOS executor's configuration (backend, pool, runtime images; see
    /// docs/libos.md). Without it the node runs no `libos` functions.
    #[arg(long, value_name = "FILE")]
    pub(crate) libos_config: Option<PathBuf>,
    /// Where the node's attestation evidence comes from: `sim` (software-signed) or
    /// `sgx-dcap` (DCAP quotes through Gramine's /dev/attestation, inside gramine-sgx).
    #[arg(long, value_enum, value_name = "KIND", default_value = "sim")]
    pub(crate) evidence: EvidenceArg,
    /// Gramine's attestation interface, with `--evidence sgx-dcap`.
    #[arg(long, value_name = "DIR", default_value = cella_attest::gramine::DEFAULT_ATTESTATION_DIR)]
    pub(crate) attestation_dir: PathBuf,
}

/// `--workers`: a node without workers would queue tasks that never run.
fn at_least_one_worker(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a node needs at least 1 worker to run tasks".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl ServeArgs {
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
}

/// Runs the node until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: ServeArgs, json: bool) -> anyhow::Result<()> {
    let evidence = args.node_evidence()?;
    let evidence_kind = args.evidence;
    let mut node = NodeConfig::new(&args.data_dir);
    node.workers = args.workers;
    node.file_url_roots = args.file_url_root;
    node.task_deadline = Duration::from_secs(args.task_deadline);
    node.max_task_output_bytes = args.max_task_output_bytes;
    node.libos_config = args.libos_config;
    let admin_file = node.admin_password_path();
    let first_start = !node.meta_path().exists();
    let mut config = ServerConfig::new(node, args.listen);
    config.tls_names.extend(args.tls_name);
    config.evidence = evidence;
    let executors = default_executors(&config.node).context("setting up the executors")?;
    let running = RunningNode::start(config, executors)
        .await
        .with_context(|| format!("starting the node in {}", args.data_dir.display()))?;
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
            })
        );
    } else {
        eprintln!("cella node listening on {} (TLS)", running.addr());
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
    eprintln!("stopping…");
    running.shutdown().await;
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
