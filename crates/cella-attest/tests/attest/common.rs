//! Shared test helpers: test vectors, policies, identities and an in-memory TLS pair.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::clock::FixedClock;
use cella_attest::dcap::{Collateral, DcapVerifier};
use cella_attest::ed25519::Ed25519PublicKey;
use cella_attest::renew::{CertResolver, Issuer};
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_attest::tls::{self, AttestedClientVerifier, AttestedServerVerifier};
use cella_attest::{Clock, Measurement, Policy, Verifier};
use rustls::pki_types::{ServerName, UnixTime};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub(crate) fn testdata(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn sample_quote() -> Vec<u8> {
    testdata("sgx_quote")
}

pub(crate) fn sample_collateral() -> Collateral {
    Collateral::from_json(&testdata("sgx_quote_collateral.json")).unwrap()
}

/// A time inside the sample collateral's validity window.
pub(crate) fn sample_time() -> UnixTime {
    let (from, until) = sample_collateral().validity();
    assert!(from < until, "collateral window {from}..{until}");
    UnixTime::since_unix_epoch(Duration::from_secs(from + (until - from) / 2))
}

pub(crate) fn sample_dcap() -> DcapVerifier {
    DcapVerifier::new().with_collateral(sample_collateral())
}

/// The DER of a PEM certificate in the test data.
pub(crate) fn pem_cert(name: &str) -> Vec<u8> {
    let pem = testdata(name);
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

pub(crate) fn now_secs() -> u64 {
    UnixTime::now().as_secs()
}

/// A clock fixed `secs` seconds before now.
pub(crate) fn clock_ago(secs: u64) -> Arc<dyn Clock> {
    Arc::new(FixedClock::at_unix_secs(now_secs() - secs))
}

/// A node: its simulation signer and the measurement it vouches for.
pub(crate) struct SimNode {
    pub(crate) signer: Arc<SimSigner>,
    pub(crate) measurement: Measurement,
}

impl SimNode {
    pub(crate) fn new() -> Self {
        Self {
            signer: Arc::new(SimSigner::generate().unwrap()),
            measurement: Measurement::sha256(b"cella node build 1"),
        }
    }

    pub(crate) fn key(&self) -> Ed25519PublicKey {
        self.signer.public_key()
    }

    pub(crate) fn source(&self) -> SimEvidenceSource {
        SimEvidenceSource::new(self.signer.clone(), self.measurement)
    }

    pub(crate) fn identity(&self) -> Arc<CertResolver> {
        identity_from(Issuer::new(Arc::new(self.source())))
    }
}

pub(crate) fn identity_from(issuer: Issuer) -> Arc<CertResolver> {
    Arc::new(CertResolver::issue(&issuer).unwrap())
}

/// A policy whose role `role` accepts `measurement` signed by `key` in simulation.
pub(crate) fn sim_policy(
    role: &str,
    key: Ed25519PublicKey,
    measurement: Measurement,
    extra: &str,
) -> Policy {
    Policy::from_toml_str(&sim_policy_text(role, key, measurement, extra)).unwrap()
}

pub(crate) fn sim_policy_text(
    role: &str,
    key: Ed25519PublicKey,
    measurement: Measurement,
    extra: &str,
) -> String {
    format!(
        "version = 1\n\n[roles.{role}]\nmax_evidence_age_secs = 3600\nallow_simulation = true\n\
         trusted_sim_keys = [\"{key}\"]\nsim_measurements = [\"{measurement}\"]\n{extra}"
    )
}

pub(crate) fn verifier(policy: Policy) -> Arc<Verifier> {
    Arc::new(Verifier::new(policy))
}

/// What each end of a handshake saw.
pub(crate) struct Outcome {
    pub(crate) client: Result<(), String>,
    pub(crate) server: Result<(), String>,
    /// The client's view of the server's certificate chain, if connected.
    pub(crate) server_certs: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

/// Run both ends of a TLS 1.3 handshake over an in-memory duplex pipe, then exchange one
/// byte each way so that a server refusing the client's certificate is seen by both ends.
pub(crate) async fn make_pair(
    server_identity: Arc<CertResolver>,
    client_verifier: Arc<AttestedServerVerifier>,
    client_identity: Option<Arc<CertResolver>>,
    server_client_verifier: Option<Arc<AttestedClientVerifier>>,
) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let client_config = tls::client_config(client_verifier, client_identity).unwrap();
    let server_config = tls::server_config(server_identity, server_client_verifier).unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);

    let client = async move {
        let connector = TlsConnector::from(Arc::new(client_config));
        let name = ServerName::try_from("node.cella.invalid").unwrap();
        let mut stream = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        let certs = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>());
        stream.write_all(b"?").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(certs)
    };
    let server = async move {
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let mut stream = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(b"!").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let (client, server) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(client, server)
    })
    .await
    .expect("handshake hung");
    Outcome {
        server_certs: client.as_ref().ok().cloned().flatten(),
        client: client.map(|_| ()),
        server,
    }
}

/// Handshake with a client that attests the server as `role` under `policy`.
pub(crate) async fn connect(server: Arc<CertResolver>, policy: Policy, role: &str) -> Outcome {
    let verifier = Arc::new(AttestedServerVerifier::new(verifier(policy), role));
    make_pair(server, verifier, None, None).await
}

/// Assert the client refused with a message containing `needle`.
pub(crate) fn assert_refused(outcome: &Outcome, needle: &str) {
    let err = outcome
        .client
        .as_ref()
        .expect_err("the client should have refused the server");
    assert!(
        err.contains(needle),
        "client error {err:?} does not contain {needle:?}"
    );
}
