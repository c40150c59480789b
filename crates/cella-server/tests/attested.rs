//! The node's RA-TLS identity as clients see it: an attested client accepts a node across
//! restarts (new TLS key, same simulation key and binary), and a client still pinned to the
//! certificate of a previous run gets a clear error, not a hang.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cella_attest::policy::roles;
use cella_attest::tls::{AttestedServerVerifier, client_config};
use cella_attest::{Platform, Policy, VerifiedEvidence, Verifier};
use cella_executor::Executors;
use cella_platform::NodeConfig;
use cella_server::{RunningNode, ServerConfig};
use rustls::pki_types::ServerName;

async fn start(data: &Path, listen: SocketAddr) -> RunningNode {
    let mut node = NodeConfig::new(data.to_owned());
    node.workers = 1;
    let config = ServerConfig::new(node, listen);
    // No executor is needed: only the node's TLS identity is exercised.
    RunningNode::start(config, Executors::new()).await.unwrap()
}

/// Connect to `addr` and attest it as a node under `policy`.
async fn attest(addr: SocketAddr, policy: Policy) -> Result<VerifiedEvidence, String> {
    let verifier = Arc::new(AttestedServerVerifier::new(
        Arc::new(Verifier::new(policy)),
        roles::NODE,
    ));
    let mut config = client_config(verifier.clone(), None).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("node.cella.invalid").unwrap();
    tokio::time::timeout(Duration::from_secs(15), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    verifier
        .take_last_appraisal()
        .ok_or("no appraisal")?
        .verdict
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn restarted_node_is_accepted_by_attested_clients_and_refused_by_stale_pins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = start(&data, SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let addr = node.addr();
    // The policy the node writes for its clients: this node, in simulation.
    let policy_path = data.join("tls").join("attestation-policy.sim.toml");
    let policy = Policy::load(&policy_path).unwrap();

    let first = attest(addr, policy.clone()).await.unwrap();
    assert_eq!(first.platform(), Platform::Sim);
    let old_pem = node.cert_pem().to_owned();
    node.shutdown().await;

    let node = start(&data, addr).await;
    assert_ne!(
        node.cert_pem(),
        old_pem,
        "a restart issues a new key and certificate"
    );
    let second = attest(addr, policy).await.unwrap();
    assert_eq!(second.measurement(), first.measurement());
    assert_eq!(second.sim_signer(), first.sim_signer());
    assert_ne!(second.public_key_spki(), first.public_key_spki());

    // A client still pinned to the previous run's certificate: a clear error, quickly.
    let started = Instant::now();
    let err = cella_client::Client::connect(&addr.to_string(), old_pem.as_bytes())
        .await
        .expect_err("a stale pin must be refused");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.to_string()
            .contains("server certificate does not match the pinned certificate"),
        "{err}"
    );

    // A policy that does not allow simulation refuses the node, with the reason.
    let strict = Policy::from_toml_str(&format!(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 3600\n\
         mr_enclave = [\"{}\"]\naccepted_tcb_statuses = [\"UpToDate\"]\n",
        first.measurement()
    ))
    .unwrap();
    let err = attest(addr, strict.clone()).await.unwrap_err();
    assert!(err.contains("simulation evidence is not allowed"), "{err}");

    // The SDK: an attested client works across the restart, and refuses a node its
    // policy does not accept before sending anything.
    let policy = Policy::load(&policy_path).unwrap();
    let client = cella_client::Client::connect_with_trust(
        &addr.to_string(),
        cella_client::ServerTrust::attested(policy.clone()),
    )
    .await
    .unwrap();
    client.health().await.unwrap();
    let err = cella_client::Client::connect_with_trust(
        &addr.to_string(),
        cella_client::ServerTrust::attested(strict.clone()),
    )
    .await
    .expect_err("a node outside the policy must be refused");
    assert!(
        matches!(err, cella_client::ClientError::AttestationRefused { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("simulation evidence is not allowed"),
        "{err}"
    );

    // What `cella attest` prints: the claims, and the verdict either way.
    let verifier = Arc::new(Verifier::new(policy));
    let appraisal = cella_client::appraise_node(&addr.to_string(), verifier)
        .await
        .unwrap();
    assert!(appraisal.verdict.is_ok());
    let claimed = appraisal.claimed.unwrap();
    assert_eq!(claimed.platform, Platform::Sim);
    assert_eq!(claimed.measurement, first.measurement());
    let refused = cella_client::appraise_node(&addr.to_string(), Arc::new(Verifier::new(strict)))
        .await
        .unwrap();
    assert!(refused.verdict.is_err());
    assert!(refused.claimed.is_some());
    node.shutdown().await;
}

/// The error chain of a failed start, as `cella serve` prints it.
fn start_error_chain(err: &cella_server::StartError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn start_sgx(data: &Path, device: &Path) -> Result<RunningNode, cella_server::StartError> {
    let mut node = NodeConfig::new(data.to_owned());
    node.workers = 1;
    let mut config = ServerConfig::new(node, SocketAddr::from(([127, 0, 0, 1], 0)));
    config.evidence = cella_server::NodeEvidence::SgxDcap {
        dir: device.to_owned(),
    };
    RunningNode::start(config, Executors::new()).await
}

/// A directory laid out like Gramine's `/dev/attestation`, serving dcap-qvl's sample quote
/// (whose report data is fixed: it cannot carry the node's).
fn fake_device() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("attestation_type"), "dcap").unwrap();
    std::fs::write(dir.path().join("user_report_data"), [0u8; 64]).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cella-attest/testdata/sgx_quote");
    std::fs::write(dir.path().join("quote"), std::fs::read(sample).unwrap()).unwrap();
    dir
}

#[tokio::test]
async fn sgx_node_refuses_to_start_on_a_quote_without_its_report_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let device = fake_device();
    let err = start_sgx(&data, device.path())
        .await
        .expect_err("the sample quote does not carry the node's report data");
    let text = start_error_chain(&err);
    assert!(
        text.contains(&device.path().display().to_string())
            && text.contains("does not carry the report_data")
            && text.contains(&device.path().join("quote").display().to_string())
            && text.contains("does not fall back to simulation"),
        "{text}"
    );
    // The report data was written to the device, and nothing of simulation was.
    assert_ne!(
        std::fs::read(device.path().join("user_report_data")).unwrap(),
        [0u8; 64]
    );
    let tls = data.join("tls");
    for name in [
        "sim-key.sealed",
        "sim-key.pub",
        "attestation-policy.sim.toml",
        "attestation-policy.sgx.toml",
        "cert.pem",
    ] {
        assert!(!tls.join(name).exists(), "{name} was written");
    }
}

#[tokio::test]
async fn sgx_node_refuses_to_start_without_the_attestation_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let device = dir.path().join("no-such-attestation");
    let err = start_sgx(&data, &device)
        .await
        .expect_err("no device, no node");
    let text = start_error_chain(&err);
    assert!(
        text.contains(&device.display().to_string())
            && text.contains("does not exist")
            && text.contains("gramine-sgx"),
        "{text}"
    );
    assert!(!data.join("tls").join("sim-key.sealed").exists());

    // A device that is not in DCAP mode is refused too, naming its file.
    let device = fake_device();
    std::fs::write(device.path().join("attestation_type"), "none").unwrap();
    let text = start_error_chain(&start_sgx(&data, device.path()).await.unwrap_err());
    assert!(
        text.contains(&device.path().join("attestation_type").display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn the_default_node_is_in_simulation_and_names_its_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = start(&data, SocketAddr::from(([127, 0, 0, 1], 0))).await;
    assert_eq!(
        node.policy_file(),
        data.join("tls").join("attestation-policy.sim.toml")
    );
    assert!(data.join("tls").join("sim-key.sealed").exists());
    node.shutdown().await;
}
