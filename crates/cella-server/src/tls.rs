//! The node's TLS identity: an RA-TLS certificate (see `docs/attestation.md`) whose
//! evidence binds a fresh TLS key, issued at every start and renewed on a timer.
//!
//! Until the node runs inside an enclave, the evidence is **simulation** evidence: signed
//! by the node's simulation key (kept sealed under the node's sealing key in
//! `<dir>/sim-key.sealed`, its public half in `<dir>/sim-key.pub`), over the SHA-256 of the
//! running binary. One warning line says so at startup. Clients verify it under an
//! attestation policy; the node writes one that accepts exactly this node in simulation
//! to `<dir>/attestation-policy.sim.toml` (its key, its binary's measurement).
//!
//! The current certificate is also written to `<dir>/cert.pem` for clients that pin it.
//! The TLS key is never written to disk: a restarted node has a new key and certificate,
//! which attested clients accept and pinned clients refuse (with a clear error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cella_attest::renew::{self as renewal, CertResolver, Issuer, RenewError};
use cella_attest::sim::{SimEvidenceSource, SimKeyError, SimSigner};
use cella_attest::{EvidenceSource, Measurement};
use cella_crypto::SealingKey;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

/// Additional data binding the sealed simulation key to its purpose.
const SIM_KEY_AAD: &[u8] = b"cella/sim-key/v1";

/// The line logged when the node attests in simulation.
pub const SIMULATION_WARNING: &str =
    "running in simulation mode: evidence is software-signed, not hardware-backed";

/// Lifetime of a node certificate: a day, so that a renewal that fails once (see
/// [`RENEWAL_INTERVAL`]) leaves time to notice before clients refuse the node.
const CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// How often the key, evidence and certificate are renewed while the node runs.
pub const RENEWAL_INTERVAL: Duration = Duration::from_secs(3600);
/// `max_evidence_age_secs` of the policy the node writes for its clients: twice the
/// renewal interval, so a client always accepts the current certificate.
const POLICY_MAX_AGE_SECS: u64 = 2 * 3600;

/// The node's TLS identity failed to load, be created, or be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file of the identity.
    #[error("TLS identity file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the certificate or its evidence.
    #[error("generating the RA-TLS certificate")]
    Generate(#[source] RenewError),
    /// Measuring the running binary.
    #[error("measuring the node binary for its evidence")]
    Measure(#[source] cella_attest::evidence::EvidenceError),
    /// The sealed simulation key does not unseal under this node's sealing key.
    #[error("the sealed simulation key {path} does not unseal with this node's sealing key")]
    Unseal {
        /// The file.
        path: PathBuf,
    },
    /// The simulation key is invalid.
    #[error("the simulation key {path} is invalid")]
    SimKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: SimKeyError,
    },
    /// rustls refused the configuration.
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The node's RA-TLS identity.
pub struct NodeIdentity {
    dir: PathBuf,
    cert_pem: String,
    resolver: Arc<CertResolver>,
    issuer: Arc<Issuer>,
    sim_key: cella_attest::ed25519::Ed25519PublicKey,
    measurement: Measurement,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("dir", &self.dir)
            .field("sim_key", &self.sim_key)
            .field("measurement", &self.measurement)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Replace a public file atomically (write a sibling, then rename over).
fn write_public(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Load the node's simulation key from `dir`, creating it on first start.
fn load_or_create_sim_key(dir: &Path, sealing: &SealingKey) -> Result<SimSigner, TlsError> {
    let key_path = dir.join("sim-key.sealed");
    if !key_path.exists() {
        let signer = SimSigner::generate().map_err(|source| TlsError::SimKey {
            path: key_path.clone(),
            source,
        })?;
        write_private(&key_path, &sealing.seal(SIM_KEY_AAD, signer.pkcs8()))?;
    }
    let sealed = std::fs::read(&key_path).map_err(io(&key_path))?;
    let pkcs8 = zeroize::Zeroizing::new(sealing.unseal(SIM_KEY_AAD, &sealed).map_err(|_| {
        TlsError::Unseal {
            path: key_path.clone(),
        }
    })?);
    SimSigner::from_pkcs8(&pkcs8).map_err(|source| TlsError::SimKey {
        path: key_path,
        source,
    })
}

impl NodeIdentity {
    /// Loads the node's simulation key from `dir` (creating it on first start), issues a
    /// fresh RA-TLS certificate over the running binary's measurement, and writes
    /// `cert.pem`, `sim-key.pub` and `attestation-policy.sim.toml` there. `names` are
    /// kept for compatibility: an attested peer is identified by its evidence, not by a
    /// host name.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file or step that failed.
    pub fn load_or_create(
        dir: &Path,
        sealing: &SealingKey,
        _names: &[String],
    ) -> Result<Self, TlsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let signer = Arc::new(load_or_create_sim_key(dir, sealing)?);
        let source =
            SimEvidenceSource::for_current_exe(signer.clone()).map_err(TlsError::Measure)?;
        Self::with_source(dir, signer, source)
    }

    fn with_source(
        dir: &Path,
        signer: Arc<SimSigner>,
        source: SimEvidenceSource,
    ) -> Result<Self, TlsError> {
        tracing::warn!("{SIMULATION_WARNING}");
        let measurement = source.measurement();
        let sim_key = signer.public_key();
        let source: Arc<dyn EvidenceSource> = Arc::new(source);
        let issuer = Arc::new(Issuer::new(source).with_validity(CERT_VALIDITY));
        let resolver = Arc::new(CertResolver::issue(&issuer).map_err(TlsError::Generate)?);
        let cert_pem = pem(&resolver.certificate());
        write_public(&dir.join("cert.pem"), cert_pem.as_bytes())?;
        write_public(&dir.join("sim-key.pub"), format!("{sim_key}\n").as_bytes())?;
        let identity = Self {
            dir: dir.to_owned(),
            cert_pem,
            resolver,
            issuer,
            sim_key,
            measurement,
        };
        write_public(
            &dir.join("attestation-policy.sim.toml"),
            identity.simulation_policy().as_bytes(),
        )?;
        Ok(identity)
    }

    /// The current certificate in PEM, for clients that pin it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The measurement in the node's evidence (SHA-256 of its binary).
    pub fn measurement(&self) -> Measurement {
        self.measurement
    }

    /// The public half of the node's simulation key.
    pub fn sim_key(&self) -> cella_attest::ed25519::Ed25519PublicKey {
        self.sim_key
    }

    /// An attestation policy (TOML) that accepts exactly this node, in simulation, as role
    /// `node`.
    pub fn simulation_policy(&self) -> String {
        format!(
            "# Written by the cella node at startup. It accepts this node's SIMULATION\n\
             # evidence: software-signed by the node's own key, not hardware-backed.\n\
             version = 1\n\n\
             [roles.node]\n\
             max_evidence_age_secs = {POLICY_MAX_AGE_SECS}\n\
             allow_debug = false\n\
             allow_simulation = true\n\
             trusted_sim_keys = [\"{}\"]\n\
             sim_measurements = [\"{}\"]\n",
            self.sim_key, self.measurement
        )
    }

    /// A TLS 1.3-only server configuration offering HTTP/2 and presenting the current
    /// RA-TLS certificate. Inside a tokio runtime, it also starts renewing the key,
    /// evidence and certificate every [`RENEWAL_INTERVAL`] (rewriting `cert.pem`), for as
    /// long as the configuration lives.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] when rustls refuses the configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = cella_attest::tls::server_config(self.resolver.clone(), None)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        if tokio::runtime::Handle::try_current().is_ok() {
            let cert_path = self.dir.join("cert.pem");
            // The task ends once the configuration (holding the resolver) is dropped.
            drop(renewal::spawn_renewal(
                &self.resolver,
                self.issuer.clone(),
                RENEWAL_INTERVAL,
                move |cert| {
                    if let Err(e) = write_public(&cert_path, pem(cert).as_bytes()) {
                        tracing::warn!(error = %e, "writing the renewed certificate failed");
                    }
                },
            ));
        }
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cella_attest::policy::roles;
    use cella_attest::{Policy, Verifier};

    #[test]
    fn sim_key_persists_sealed_and_tls_key_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = SealingKey::generate();
        let a = NodeIdentity::load_or_create(dir.path(), &sealing, &[]).unwrap();
        let b = NodeIdentity::load_or_create(dir.path(), &sealing, &[]).unwrap();
        // Same simulation key and measurement, new TLS key and certificate.
        assert_eq!(a.sim_key(), b.sim_key());
        assert_eq!(a.measurement(), b.measurement());
        assert_ne!(a.cert_pem(), b.cert_pem());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cert.pem")).unwrap(),
            b.cert_pem()
        );
        assert!(a.server_config().is_ok());

        // The simulation key is sealed on disk.
        let on_disk = std::fs::read(dir.path().join("sim-key.sealed")).unwrap();
        let signer = load_or_create_sim_key(dir.path(), &sealing).unwrap();
        let der = signer.pkcs8();
        assert!(!on_disk.windows(der.len()).any(|w| w == der));
        let other = SealingKey::generate();
        assert!(matches!(
            NodeIdentity::load_or_create(dir.path(), &other, &[]),
            Err(TlsError::Unseal { .. })
        ));
    }

    #[test]
    fn written_policy_accepts_this_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = SealingKey::generate();
        let node = NodeIdentity::load_or_create(dir.path(), &sealing, &[]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("attestation-policy.sim.toml")).unwrap();
        let verifier = Verifier::new(Policy::from_toml_str(&text).unwrap());
        let cert = node.resolver.certificate();
        let verified = verifier
            .verify_certificate(roles::NODE, &cert, None)
            .unwrap();
        assert_eq!(verified.measurement(), node.measurement());

        // Another node's policy does not accept it.
        let other_dir = tempfile::tempdir().unwrap();
        let other = NodeIdentity::load_or_create(other_dir.path(), &sealing, &[]).unwrap();
        let verifier = Verifier::new(Policy::from_toml_str(&other.simulation_policy()).unwrap());
        let err = verifier
            .verify_certificate(roles::NODE, &cert, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("not a trusted simulation key"),
            "{err}"
        );
    }
}
