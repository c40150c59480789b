//! The executor's side of mutual attestation with its instances.
//!
//! In simulation the node plays the hardware's part ("Who measures" in DESIGN.md): the
//! node's simulation key signs {measurement the backend computed, the instance's
//! report_data} for each instance, and signs the executor's own evidence too. Two
//! policies follow from it, both fail-closed:
//!
//! - the executor accepts an instance (role `libos-instance`) only with simulation
//!   evidence signed by that key, for exactly the measurement expected for its runtime
//!   image, carrying this launch's nonce;
//! - the instance accepts the executor (role `client`) only with evidence signed by that
//!   key for the executor's measurement. That policy is part of the instance's measured
//!   configuration ([`cella_preload::PreloadConfig`]), so an instance cannot be pointed at
//!   another executor without its measurement changing.
//!
//! SGX backends will add `mr_enclave` entries to the same policies.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::policy::roles;
use cella_attest::ratls::issue_certificate;
use cella_attest::renew::CertResolver;
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_attest::tls::{AttestedClientVerifier, server_config};
use cella_attest::{Measurement, Policy, Verifier};
use cella_preload::PreloadConfig;

/// Oldest evidence either side accepts at the handshake: ten minutes. Both sides make
/// fresh evidence for every launch, so only clock skew and a slow boot count against it.
pub const MAX_EVIDENCE_AGE_SECS: u64 = 600;

/// Oldest an instance's evidence may be when it signs a receipt, in the policy written
/// for verifying receipts: a day, well above an instance's longest idle time in the pool
/// (`Timeouts::max_idle`, 30 minutes by default) plus a task's deadline.
pub const RECEIPT_EVIDENCE_AGE_SECS: u64 = 24 * 3600;

/// Lifetime of the executor's per-launch certificate (an hour: the channel is checked
/// when it opens, and a pooled instance may wait that long for a task).
const EXECUTOR_CERT_VALIDITY: Duration = Duration::from_secs(3600);

/// The keys and measurements of attestation between the executor and its instances.
#[derive(Debug, Clone)]
pub struct ExecutorAttestation {
    hardware: Arc<SimSigner>,
    executor_measurement: Measurement,
}

/// Attestation could not be set up (our configuration, not a peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attestation setup: {0}")]
pub struct AttestSetupError(pub String);

fn role_policy(role: &str, key: &SimSigner, measurement: Measurement) -> String {
    format!(
        "version = 1\n\n[roles.\"{role}\"]\nmax_evidence_age_secs = {MAX_EVIDENCE_AGE_SECS}\n\
         allow_simulation = true\ntrusted_sim_keys = [\"{}\"]\nsim_measurements = [\"{measurement}\"]\n",
        key.public_key()
    )
}

impl ExecutorAttestation {
    /// Simulated attestation: `hardware` is the node's simulation key, which signs every
    /// instance's evidence and the executor's; `executor_measurement` is what the
    /// executor's evidence states (the node binary's SHA-256 in production).
    pub fn simulated(hardware: Arc<SimSigner>, executor_measurement: Measurement) -> Self {
        Self {
            hardware,
            executor_measurement,
        }
    }

    /// The simulation key that plays the hardware.
    pub fn hardware(&self) -> &Arc<SimSigner> {
        &self.hardware
    }

    /// The measurement of the executor's own evidence.
    pub fn executor_measurement(&self) -> Measurement {
        self.executor_measurement
    }

    /// What instances trust as their executor.
    pub fn preload_config(&self) -> PreloadConfig {
        PreloadConfig {
            executor_policy: role_policy(roles::CLIENT, &self.hardware, self.executor_measurement),
            executor_role: roles::CLIENT.into(),
        }
    }

    /// An attestation policy (TOML) for verifying receipts offline: role
    /// `libos-instance` accepts simulation evidence signed by this node's key for any of
    /// `measurements`, up to [`RECEIPT_EVIDENCE_AGE_SECS`] old when the receipt was signed.
    pub fn receipt_policy(&self, measurements: impl IntoIterator<Item = Measurement>) -> String {
        let list = measurements
            .into_iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "# Written by the cella node: accepts the SIMULATION evidence of its LibOS\n\
             # instances (software-signed by the node's key, not hardware-backed).\n\
             version = 1\n\n[roles.\"{}\"]\nmax_evidence_age_secs = {RECEIPT_EVIDENCE_AGE_SECS}\n\
             allow_simulation = true\ntrusted_sim_keys = [\"{}\"]\nsim_measurements = [{list}]\n",
            roles::LIBOS_INSTANCE,
            self.hardware.public_key()
        )
    }

    /// The verifier of instances whose measurement must be `expected`.
    ///
    /// # Errors
    ///
    /// [`AttestSetupError`] if the generated policy does not parse (a bug).
    pub fn instance_verifier(
        &self,
        expected: Measurement,
    ) -> Result<Arc<Verifier>, AttestSetupError> {
        let policy = Policy::from_toml_str(&role_policy(
            roles::LIBOS_INSTANCE,
            &self.hardware,
            expected,
        ))
        .map_err(|e| AttestSetupError(format!("instance policy: {e}")))?;
        Ok(Arc::new(Verifier::new(policy)))
    }

    /// A TLS 1.3 server configuration for one launch: a fresh executor certificate, and
    /// client certificates required, attested by `verifier` as `libos-instance` with
    /// exactly `nonce` in their claims.
    ///
    /// # Errors
    ///
    /// [`AttestSetupError`] if the certificate cannot be issued.
    pub fn server_config(
        &self,
        verifier: Arc<Verifier>,
        nonce: &[u8],
    ) -> Result<Arc<rustls::ServerConfig>, AttestSetupError> {
        let source = SimEvidenceSource::new(Arc::clone(&self.hardware), self.executor_measurement);
        let cert = issue_certificate(
            &source,
            None,
            rustls::pki_types::UnixTime::now(),
            EXECUTOR_CERT_VALIDITY,
        )
        .map_err(|e| AttestSetupError(format!("executor certificate: {e}")))?;
        let resolver =
            CertResolver::new(cert).map_err(|e| AttestSetupError(format!("executor key: {e}")))?;
        let clients = AttestedClientVerifier::new(verifier, roles::LIBOS_INSTANCE)
            .expect_nonce(nonce.to_vec());
        server_config(Arc::new(resolver), Some(Arc::new(clients)))
            .map(Arc::new)
            .map_err(|e| AttestSetupError(format!("TLS configuration: {e}")))
    }
}
