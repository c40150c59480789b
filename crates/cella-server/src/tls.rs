//! The node's TLS identity: an RA-TLS certificate (see `docs/attestation.md`) whose
//! evidence binds a fresh TLS key, issued at every start and renewed on a timer.
//!
//! Where the evidence comes from is the node's [`NodeEvidence`]. Under `gramine-sgx`
//! ([`NodeEvidence::SgxDcap`]) it is a DCAP quote read through Gramine's
//! `/dev/attestation`; the node names its `MRENCLAVE` in one log line and writes
//! `<dir>/attestation-policy.sgx.toml`, accepting exactly that enclave. A missing device,
//! or one whose quote does not carry the node's report data, stops the node at start: it
//! never falls back to simulation.
//!
//! By default ([`NodeEvidence::Simulation`]) the evidence is **simulation** evidence: signed
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

use cella_attest::gramine::{DEFAULT_ATTESTATION_DIR, GramineDcapSource};
use cella_attest::renew::{self as renewal, CertResolver, Issuer, RenewError};
use cella_attest::sim::{SimEvidenceSource, SimKeyError, SimSigner};
use cella_attest::{EvidenceSource, Measurement};
use cella_crypto::SealingKey;
use rcgen::SanType;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

/// Additional data binding the sealed simulation key to its purpose.
const SIM_KEY_AAD: &[u8] = b"cella/sim-key/v1";

/// The line logged when the node attests in simulation.
pub const SIMULATION_WARNING: &str =
    "running in simulation mode: evidence is software-signed, not hardware-backed";

/// The policy file written for clients of a node in simulation.
pub const SIM_POLICY_FILE: &str = "attestation-policy.sim.toml";
/// The policy file written for clients of a node under `gramine-sgx`.
pub const SGX_POLICY_FILE: &str = "attestation-policy.sgx.toml";

/// Where the node's evidence comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NodeEvidence {
    /// Software evidence signed by the node's own simulation key (development; one
    /// warning line at start).
    #[default]
    Simulation,
    /// SGX DCAP quotes from Gramine's attestation interface: the node runs under
    /// `gramine-sgx` with `sgx.remote_attestation = "dcap"`.
    SgxDcap {
        /// The interface's directory, [`DEFAULT_ATTESTATION_DIR`] inside Gramine.
        dir: PathBuf,
    },
}

impl NodeEvidence {
    /// SGX DCAP evidence from Gramine's default `/dev/attestation`.
    pub fn sgx_dcap_default() -> Self {
        NodeEvidence::SgxDcap {
            dir: PathBuf::from(DEFAULT_ATTESTATION_DIR),
        }
    }

    /// The policy file, under the node's TLS directory, that this evidence's node writes
    /// for its clients.
    pub fn policy_file(&self) -> &'static str {
        match self {
            NodeEvidence::Simulation => SIM_POLICY_FILE,
            NodeEvidence::SgxDcap { .. } => SGX_POLICY_FILE,
        }
    }
}

/// Lifetime of a node certificate: a day, so that a renewal that fails once (see
/// [`RENEWAL_INTERVAL`]) leaves time to notice before clients refuse the node.
const CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// How often the key, evidence and certificate are renewed while the node runs.
pub const RENEWAL_INTERVAL: Duration = Duration::from_secs(3600);
/// `max_evidence_age_secs` of the policy the node writes for its clients: twice the
/// renewal interval, so a client always accepts the current certificate.
pub(crate) const POLICY_MAX_AGE_SECS: u64 = 2 * 3600;

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
    /// A name for the certificate's subjectAltName is neither an IP address nor a host
    /// name.
    #[error(
        "TLS name {name:?} is neither an IP address nor a host name (letters, digits, \
         '-' and '.', at most 253 characters)"
    )]
    InvalidName {
        /// The name, cut to 100 characters.
        name: String,
    },
    /// rustls refused the configuration.
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
    /// The SGX attestation interface does not exist.
    #[error(
        "the SGX attestation interface {path} does not exist: the node must run under \
         gramine-sgx with sgx.remote_attestation = \"dcap\" (see docs/gramine.md); \
         it does not fall back to simulation"
    )]
    NoAttestationDevice {
        /// The directory.
        path: PathBuf,
    },
    /// The SGX attestation interface gave no usable quote over the node's report data.
    #[error(
        "the SGX attestation interface {path} gave no quote over this node's report data; \
         it does not fall back to simulation"
    )]
    SgxEvidence {
        /// The directory.
        path: PathBuf,
        /// The cause (naming the device file).
        #[source]
        source: RenewError,
    },
    /// The quote in the node's own certificate is not an SGX quote.
    #[error("the quote from the SGX attestation interface {path} is not an SGX quote")]
    SgxQuote {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: cella_attest::dcap::QuoteError,
    },
}

/// The node's RA-TLS identity.
pub struct NodeIdentity {
    dir: PathBuf,
    cert_pem: String,
    resolver: Arc<CertResolver>,
    issuer: Arc<Issuer>,
    sim_key: Option<cella_attest::ed25519::Ed25519PublicKey>,
    measurement: Measurement,
    policy_file: &'static str,
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

/// The subjectAltName entries for `names`: IP addresses as such, anything else as a
/// DNS name (a leading `*.` wildcard allowed).
///
/// # Errors
///
/// [`TlsError::InvalidName`] for a name that is neither.
pub fn subject_alt_names(names: &[String]) -> Result<Vec<SanType>, TlsError> {
    let mut out: Vec<SanType> = Vec::with_capacity(names.len());
    for name in names {
        let invalid = || TlsError::InvalidName {
            name: name.chars().take(100).collect(),
        };
        let san = if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            SanType::IpAddress(ip)
        } else {
            let host = name.strip_prefix("*.").unwrap_or(name);
            let valid = !host.is_empty()
                && name.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(invalid());
            }
            SanType::DnsName(name.as_str().try_into().map_err(|_| invalid())?)
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
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
    /// The node's identity with evidence from `evidence`: [`NodeIdentity::load_or_create`]
    /// in simulation, [`NodeIdentity::sgx_dcap`] under Gramine.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file, device or step that failed.
    pub fn start(
        dir: &Path,
        sealing: &SealingKey,
        names: &[String],
        evidence: &NodeEvidence,
    ) -> Result<Self, TlsError> {
        match evidence {
            NodeEvidence::Simulation => Self::load_or_create(dir, sealing, names),
            NodeEvidence::SgxDcap { dir: device } => Self::sgx_dcap(dir, device, names),
        }
    }

    /// Issues a fresh RA-TLS certificate over a DCAP quote from the Gramine attestation
    /// interface at `device`, logs the node's `MRENCLAVE` (read from that quote), and
    /// writes `cert.pem` and [`SGX_POLICY_FILE`] in `dir`. No simulation key is used or
    /// written. `names` go in the certificate's subjectAltName.
    ///
    /// # Errors
    ///
    /// [`TlsError::NoAttestationDevice`] when `device` does not exist,
    /// [`TlsError::SgxEvidence`] when it gives no quote over the node's report data (the
    /// cause names the file), [`TlsError::Io`] when a file cannot be written,
    /// [`TlsError::InvalidName`] for a name that is not a host name or IP address.
    pub fn sgx_dcap(dir: &Path, device: &Path, names: &[String]) -> Result<Self, TlsError> {
        let names = subject_alt_names(names)?;
        if !device.is_dir() {
            return Err(TlsError::NoAttestationDevice {
                path: device.to_owned(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let source: Arc<dyn EvidenceSource> = Arc::new(GramineDcapSource::new(device));
        let issuer = Arc::new(
            Issuer::new(source)
                .with_validity(CERT_VALIDITY)
                .with_names(names),
        );
        let sgx_evidence = |source| TlsError::SgxEvidence {
            path: device.to_owned(),
            source,
        };
        let issued = issuer
            .issue()
            .map_err(|e| sgx_evidence(RenewError::Issue(e)))?;
        let evidence = issued.evidence.clone();
        let resolver = Arc::new(CertResolver::new(issued).map_err(sgx_evidence)?);
        let cert = resolver.certificate();
        let quote_error = |source| TlsError::SgxQuote {
            path: device.to_owned(),
            source,
        };
        let measurement =
            cella_attest::dcap::unverified_mr_enclave(evidence.bytes()).map_err(quote_error)?;
        tracing::info!(
            mr_enclave = %measurement,
            "attesting with SGX DCAP quotes from {}: MRENCLAVE {measurement}",
            device.display()
        );
        let cert_pem = pem(&cert);
        write_public(&dir.join("cert.pem"), cert_pem.as_bytes())?;
        write_public(
            &dir.join(SGX_POLICY_FILE),
            sgx_policy(measurement).as_bytes(),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            cert_pem,
            resolver,
            issuer,
            sim_key: None,
            measurement,
            policy_file: SGX_POLICY_FILE,
        })
    }

    /// Loads the node's simulation key from `dir` (creating it on first start), issues a
    /// fresh RA-TLS certificate over the running binary's measurement, and writes
    /// `cert.pem`, `sim-key.pub` and `attestation-policy.sim.toml` there. `names` go in
    /// the certificate's subjectAltName, for clients that check the server's name once
    /// they have verified its evidence (an attested peer is identified by its evidence,
    /// the names only let standard TLS stacks connect; see docs/api.md).
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file or step that failed.
    pub fn load_or_create(
        dir: &Path,
        sealing: &SealingKey,
        names: &[String],
    ) -> Result<Self, TlsError> {
        let names = subject_alt_names(names)?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let signer = Arc::new(load_or_create_sim_key(dir, sealing)?);
        let source =
            SimEvidenceSource::for_current_exe(signer.clone()).map_err(TlsError::Measure)?;
        Self::with_source(dir, signer, source, names)
    }

    fn with_source(
        dir: &Path,
        signer: Arc<SimSigner>,
        source: SimEvidenceSource,
        names: Vec<SanType>,
    ) -> Result<Self, TlsError> {
        tracing::warn!("{SIMULATION_WARNING}");
        let measurement = source.measurement();
        let sim_key = signer.public_key();
        let source: Arc<dyn EvidenceSource> = Arc::new(source);
        let issuer = Arc::new(
            Issuer::new(source)
                .with_validity(CERT_VALIDITY)
                .with_names(names),
        );
        let resolver = Arc::new(CertResolver::issue(&issuer).map_err(TlsError::Generate)?);
        let cert_pem = pem(&resolver.certificate());
        write_public(&dir.join("cert.pem"), cert_pem.as_bytes())?;
        write_public(&dir.join("sim-key.pub"), format!("{sim_key}\n").as_bytes())?;
        let identity = Self {
            dir: dir.to_owned(),
            cert_pem,
            resolver,
            issuer,
            sim_key: Some(sim_key),
            measurement,
            policy_file: SIM_POLICY_FILE,
        };
        write_public(
            &dir.join(SIM_POLICY_FILE),
            simulation_policy(sim_key, measurement).as_bytes(),
        )?;
        Ok(identity)
    }

    /// The resolver presenting the node's current (renewed) certificate.
    pub(crate) fn resolver(&self) -> Arc<CertResolver> {
        Arc::clone(&self.resolver)
    }

    /// The current certificate in PEM, for clients that pin it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The measurement in the node's evidence: SHA-256 of its binary in simulation, its
    /// `MRENCLAVE` under Gramine.
    pub fn measurement(&self) -> Measurement {
        self.measurement
    }

    /// The public half of the node's simulation key (none under Gramine).
    pub fn sim_key(&self) -> Option<cella_attest::ed25519::Ed25519PublicKey> {
        self.sim_key
    }

    /// The policy file, in the identity's directory, written for clients.
    pub fn policy_file(&self) -> PathBuf {
        self.dir.join(self.policy_file)
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

/// An attestation policy (TOML) that accepts exactly the node with simulation key
/// `sim_key` and binary measurement `measurement`, in simulation, as role `node`.
pub fn simulation_policy(
    sim_key: cella_attest::ed25519::Ed25519PublicKey,
    measurement: Measurement,
) -> String {
    format!(
        "# Written by the cella node at startup. It accepts this node's SIMULATION\n\
         # evidence: software-signed by the node's own key, not hardware-backed.\n\
         version = 1\n\n\
         [roles.node]\n\
         max_evidence_age_secs = {POLICY_MAX_AGE_SECS}\n\
         allow_debug = false\n\
         allow_simulation = true\n\
         trusted_sim_keys = [\"{sim_key}\"]\n\
         sim_measurements = [\"{measurement}\"]\n"
    )
}

/// An attestation policy (TOML) that accepts, as role `node`, exactly the SGX enclave
/// `mr_enclave` on a platform whose TCB is `UpToDate`, not in debug mode, and never
/// simulation evidence.
pub fn sgx_policy(mr_enclave: Measurement) -> String {
    format!(
        "# Written by the cella node at startup, running under gramine-sgx. It accepts\n\
         # exactly this enclave, on an UpToDate platform, and no simulation evidence.\n\
         #\n\
         # The MRENCLAVE below was read from the node's own quote, on the node's host:\n\
         # before relying on this file, compare it with the MRENCLAVE that\n\
         #   gramine-sgx-sigstruct-view --output-format json cella-node.sig\n\
         # prints for the signed manifest you built and reviewed yourself. Clients also\n\
         # need the platform's DCAP collateral (cella attest/login --collateral FILE).\n\
         version = 1\n\n\
         [roles.node]\n\
         max_evidence_age_secs = {POLICY_MAX_AGE_SECS}\n\
         allow_debug = false\n\
         allow_simulation = false\n\
         mr_enclave = [\"{mr_enclave}\"]\n\
         accepted_tcb_statuses = [\"UpToDate\"]\n"
    )
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
    fn the_certificate_names_the_node_and_keeps_its_evidence() {
        use x509_parser::extensions::GeneralName;
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = ["localhost", "node.example", "127.0.0.1", "::1", "localhost"]
            .map(String::from)
            .into();
        let node =
            NodeIdentity::load_or_create(dir.path(), &SealingKey::generate(), &names).unwrap();
        let cert = node.resolver.certificate();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap().value;
        let got: Vec<String> = san
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["dns:localhost", "dns:node.example", "ip:4", "ip:16"]);
        // The evidence still verifies under the node's own policy.
        let text = std::fs::read_to_string(dir.path().join(SIM_POLICY_FILE)).unwrap();
        Verifier::new(Policy::from_toml_str(&text).unwrap())
            .verify_certificate(roles::NODE, &cert, None)
            .unwrap();
    }

    #[test]
    fn names_that_are_not_hosts_or_addresses_stop_the_node() {
        for bad in ["", "bad name", "a..b", "-x.example", "ünï.example", "x/y"] {
            let dir = tempfile::tempdir().unwrap();
            let e =
                NodeIdentity::load_or_create(dir.path(), &SealingKey::generate(), &[bad.into()])
                    .unwrap_err();
            assert!(matches!(e, TlsError::InvalidName { .. }), "{bad}: {e}");
            // Refused before anything was written.
            assert!(!dir.path().join("cert.pem").exists(), "{bad}");
        }
        assert!(subject_alt_names(&["*.nodes.example".into()]).is_ok());
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
        let verifier = Verifier::new(
            Policy::from_toml_str(&simulation_policy(
                other.sim_key().unwrap(),
                other.measurement(),
            ))
            .unwrap(),
        );
        let err = verifier
            .verify_certificate(roles::NODE, &cert, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("not a trusted simulation key"),
            "{err}"
        );
    }

    #[test]
    fn sgx_policy_accepts_exactly_its_enclave_up_to_date_and_no_simulation() {
        use cella_attest::dcap::{Collateral, DcapVerifier, TcbStatus};
        use cella_attest::policy::PolicyViolation;

        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cella-attest/testdata");
        let quote = std::fs::read(testdata.join("sgx_quote")).unwrap();
        let collateral = Collateral::from_json(
            &std::fs::read(testdata.join("sgx_quote_collateral.json")).unwrap(),
        )
        .unwrap();
        let (from, until) = collateral.validity();
        let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
            from + (until - from) / 2,
        ));
        let report = DcapVerifier::new()
            .with_collateral(collateral)
            .verify(&quote, at)
            .unwrap();
        let mr_enclave = cella_attest::dcap::unverified_mr_enclave(&quote).unwrap();
        assert_eq!(mr_enclave, report.mr_enclave);

        let text = sgx_policy(mr_enclave);
        assert!(text.contains("gramine-sgx-sigstruct-view"), "{text}");
        let policy = Policy::from_toml_str(&text).unwrap();
        let role = policy.role(roles::NODE).unwrap();
        assert_eq!(role.mr_enclave, [mr_enclave]);
        assert_eq!(role.accepted_tcb_statuses, [TcbStatus::UpToDate]);
        assert!(!role.allow_simulation && !role.allow_debug);
        assert_eq!(role.max_evidence_age_secs, POLICY_MAX_AGE_SECS);

        // The sample platform needs configuration and hardening: refused for that.
        assert!(matches!(
            role.check_sgx(&report),
            Err(PolicyViolation::TcbStatus { .. })
        ));
        // The same enclave on an UpToDate platform without advisories is accepted...
        let mut up_to_date = report.clone();
        up_to_date.tcb_status = TcbStatus::UpToDate;
        up_to_date.advisory_ids.clear();
        role.check_sgx(&up_to_date).unwrap();
        // ...but not another enclave, nor a debug one.
        let mut other = up_to_date.clone();
        other.mr_enclave = Measurement([7; 32]);
        assert!(matches!(
            role.check_sgx(&other),
            Err(PolicyViolation::Enclave { .. })
        ));
        let mut debug = up_to_date;
        debug.debug = true;
        assert!(matches!(
            role.check_sgx(&debug),
            Err(PolicyViolation::Debug)
        ));

        // And simulation evidence, even this node's own, is refused.
        let dir = tempfile::tempdir().unwrap();
        let sim = NodeIdentity::load_or_create(dir.path(), &SealingKey::generate(), &[]).unwrap();
        let err = Verifier::new(policy)
            .verify_certificate(roles::NODE, &sim.resolver.certificate(), None)
            .unwrap_err();
        assert!(err.to_string().contains("simulation"), "{err}");
    }
}
