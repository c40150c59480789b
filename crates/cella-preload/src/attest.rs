//! The instance's side of mutual attestation: a fresh key whose certificate carries
//! evidence over {key, launch nonce}, the executor checked against a policy that is part
//! of the instance's measured configuration, and the TLS 1.3 connection back to the
//! executor's endpoint (a Unix socket, or a loopback TCP port under Gramine).

use std::sync::Arc;
use std::time::Duration;

use cella_attest::renew::CertResolver;
use cella_attest::sim::SimEvidence;
use cella_attest::tls::{AttestedServerVerifier, client_config};
use cella_attest::{Evidence, EvidenceSource, Policy, SystemClock, Verifier};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::PreloadError;
use crate::endpoint::{Endpoint, Stream};
use crate::receipt::{ReceiptSigner, sha256};

/// Lifetime of the instance's certificate. An instance serves one task; a day bounds it
/// without ever cutting a long task short (the executor checks the evidence when the
/// channel opens, not later).
pub const INSTANCE_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The server name the instance asks for. Not checked by anyone: the executor is
/// identified by its evidence, not by a name.
const EXECUTOR_NAME: &str = "cella-libos-executor";

/// Offset of `MRENCLAVE` in an SGX quote (48-byte header, then the report body, where it
/// sits at offset 64).
const SGX_MRENCLAVE_OFFSET: usize = 48 + 64;

/// What the instance trusts as its executor: part of the backend configuration, so part
/// of the instance's measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadConfig {
    /// The attestation policy (TOML, as `attestation-policy.toml`) the executor's
    /// certificate must satisfy.
    pub executor_policy: String,
    /// The policy role the executor is checked as.
    pub executor_role: String,
}

impl PreloadConfig {
    /// SHA-256 of the configuration as it is measured: the role, a zero byte, the policy.
    pub fn digest(&self) -> [u8; 32] {
        let mut bytes = self.executor_role.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(self.executor_policy.as_bytes());
        sha256(&bytes)
    }
}

/// The instance's attested identity for one launch.
pub struct Identity {
    resolver: Arc<CertResolver>,
    signer: ReceiptSigner,
    cert_der: Vec<u8>,
    measurement: [u8; 32],
    nonce: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

/// The measurement stated by our own evidence (who measures is the launcher; we only
/// read what it vouched for, to put it in receipts).
fn own_measurement(evidence: &Evidence) -> Option<[u8; 32]> {
    match evidence {
        Evidence::Sim(bytes) => SimEvidence::parse(bytes)
            .ok()
            .map(|e| *e.statement.measurement.as_bytes()),
        Evidence::SgxDcapQuote(q) => q
            .get(SGX_MRENCLAVE_OFFSET..SGX_MRENCLAVE_OFFSET + 32)
            .and_then(|m| m.try_into().ok()),
    }
}

impl Identity {
    /// A fresh P-256 key, evidence from `source` over claims binding it and `nonce`, a
    /// self-signed RA-TLS certificate, and the receipt signer for the same key.
    ///
    /// # Errors
    ///
    /// [`PreloadError::Identity`] if the evidence source or certificate generation fails.
    pub fn issue(source: &dyn EvidenceSource, nonce: &[u8]) -> Result<Self, PreloadError> {
        let issued = cella_attest::ratls::issue_certificate(
            source,
            Some(nonce.to_vec()),
            rustls::pki_types::UnixTime::now(),
            INSTANCE_CERT_VALIDITY,
        )
        .map_err(|e| PreloadError::Identity(e.to_string()))?;
        let signer = ReceiptSigner::from_pkcs8(issued.key_pkcs8.secret_pkcs8_der())
            .map_err(|e| PreloadError::Identity(e.to_string()))?;
        let measurement = own_measurement(&issued.evidence).ok_or_else(|| {
            PreloadError::Identity("our own evidence states no measurement".into())
        })?;
        let cert_der = issued.cert_der.to_vec();
        let resolver =
            CertResolver::new(issued).map_err(|e| PreloadError::Identity(e.to_string()))?;
        Ok(Self {
            resolver: Arc::new(resolver),
            signer,
            cert_der,
            measurement,
            nonce: nonce.to_vec(),
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The measurement our evidence states.
    pub fn measurement(&self) -> [u8; 32] {
        self.measurement
    }

    /// The launch nonce in our claims.
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// The receipt signer (same key as the certificate).
    pub fn signer(&self) -> &ReceiptSigner {
        &self.signer
    }
}

/// Connects to the executor's endpoint and completes mutual attestation: TLS 1.3, our
/// certificate as client certificate, the executor's checked against `config`.
///
/// # Errors
///
/// [`PreloadError::Config`] for an unusable policy, [`PreloadError::Connect`] if the
/// endpoint cannot be reached, [`PreloadError::Tls`] if the handshake fails (including the
/// executor's evidence being refused, or ours).
pub async fn connect(
    endpoint: &Endpoint,
    identity: &Identity,
    config: &PreloadConfig,
) -> Result<TlsStream<Stream>, PreloadError> {
    let policy = Policy::from_toml_str(&config.executor_policy)
        .map_err(|e| PreloadError::Config(format!("executor policy: {e}")))?;
    let verifier = Arc::new(Verifier::new(policy).with_clock(Arc::new(SystemClock)));
    let server = Arc::new(AttestedServerVerifier::new(
        verifier,
        config.executor_role.clone(),
    ));
    let tls = client_config(server, Some(Arc::clone(&identity.resolver)))
        .map_err(|e| PreloadError::Config(format!("TLS configuration: {e}")))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| PreloadError::Connect(format!("{endpoint}: {e}")))?;
    let name =
        ServerName::try_from(EXECUTOR_NAME).map_err(|e| PreloadError::Config(e.to_string()))?;
    TlsConnector::from(Arc::new(tls))
        .connect(name, channel)
        .await
        .map_err(|e| PreloadError::Tls(e.to_string()))
}
