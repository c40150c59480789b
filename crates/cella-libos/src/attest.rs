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
//! SGX backends ([`InstanceEvidence::SgxDcap`]) are appraised instead by an `mr_enclave`
//! policy: DCAP quotes whose `MRENCLAVE` is the measurement the backend computed (the one
//! `gramine-sgx-sigstruct-view` reads from the signed enclave), with accepted TCB statuses.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::policy::RolePolicy;
use cella_attest::policy::roles;
use cella_attest::ratls::issue_certificate;
use cella_attest::renew::CertResolver;
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_attest::tls::{AttestedClientVerifier, server_config};
use cella_attest::{Measurement, Policy, Verifier};
use cella_preload::PreloadConfig;

use crate::backend::{InstanceEvidence, SgxAppraisal};

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

/// The `libos-instance` role accepting SGX quotes of `mr_enclave`.
fn sgx_role(sgx: &SgxAppraisal, mr_enclave: Vec<Measurement>, max_age: u64) -> RolePolicy {
    RolePolicy {
        max_evidence_age_secs: max_age,
        allow_debug: sgx.allow_debug,
        allow_simulation: false,
        trusted_sim_keys: Vec::new(),
        sim_measurements: Vec::new(),
        mr_enclave,
        mr_signer: Vec::new(),
        accepted_tcb_statuses: sgx.accepted_tcb_statuses.clone(),
        accepted_advisory_ids: sgx.accepted_advisory_ids.clone(),
    }
}

/// A policy file with one role, `libos-instance`, serialised (never templated).
fn policy_toml(role: RolePolicy) -> String {
    #[derive(serde::Serialize)]
    struct File {
        version: u32,
        roles: std::collections::BTreeMap<&'static str, RolePolicy>,
    }
    let file = File {
        version: cella_attest::policy::POLICY_VERSION,
        roles: [(roles::LIBOS_INSTANCE, role)].into_iter().collect(),
    };
    // Serialising plain strings, numbers and lists cannot fail; an empty policy would be
    // refused by whoever parses it.
    toml::to_string(&file).unwrap_or_default()
}

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

    /// An attestation policy (TOML) whose role `libos-instance` accepts instances with any
    /// of `measurements` presenting `evidence`: [`ExecutorAttestation::receipt_policy`] for
    /// simulated evidence, an `mr_enclave` policy for SGX quotes (evidence up to
    /// [`RECEIPT_EVIDENCE_AGE_SECS`] old when the receipt was signed).
    pub fn receipt_policy_for(
        &self,
        measurements: impl IntoIterator<Item = Measurement>,
        evidence: &InstanceEvidence,
    ) -> String {
        match evidence {
            InstanceEvidence::Simulated => self.receipt_policy(measurements),
            InstanceEvidence::SgxDcap(sgx) => {
                let role = sgx_role(
                    sgx,
                    measurements.into_iter().collect(),
                    RECEIPT_EVIDENCE_AGE_SECS,
                );
                format!(
                    "# Written by the cella node: accepts the SGX DCAP quotes of its LibOS\n\
                     # instances (gramine-sgx), by MRENCLAVE.\n{}",
                    policy_toml(role)
                )
            }
        }
    }

    /// The verifier of instances whose measurement must be `expected`, presenting
    /// `evidence`: [`ExecutorAttestation::instance_verifier`] for simulated evidence; for
    /// SGX quotes, a verifier whose role `libos-instance` accepts exactly `expected` as
    /// `MRENCLAVE`, with the appraisal's TCB statuses, collateral and clock.
    ///
    /// # Errors
    ///
    /// [`AttestSetupError`] if the generated policy does not parse (no TCB status
    /// accepted, for example).
    pub fn instance_verifier_for(
        &self,
        expected: Measurement,
        evidence: &InstanceEvidence,
    ) -> Result<Arc<Verifier>, AttestSetupError> {
        match evidence {
            InstanceEvidence::Simulated => self.instance_verifier(expected),
            InstanceEvidence::SgxDcap(sgx) => {
                let role = sgx_role(sgx, vec![expected], MAX_EVIDENCE_AGE_SECS);
                let policy = Policy::from_toml_str(&policy_toml(role))
                    .map_err(|e| AttestSetupError(format!("SGX instance policy: {e}")))?;
                let mut verifier = Verifier::new(policy).with_dcap(sgx.dcap.clone());
                if let Some(clock) = &sgx.clock {
                    verifier = verifier.with_clock(Arc::clone(clock));
                }
                Ok(Arc::new(verifier))
            }
        }
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
