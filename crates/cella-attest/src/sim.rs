//! Simulation evidence: software evidence signed by a node-local Ed25519 key.
//!
//! In simulation the node plays the hardware's part: whatever launches an instance measures
//! it and asks the node's [`SimSigner`] to sign {measurement, the instance's report_data,
//! issued-at, debug flag}. The instance never chooses its measurement; a
//! [`SimEvidenceSource`] is created by the launcher with the measurement it computed.
//!
//! Simulation evidence is *not hardware-backed*: anyone holding the simulation key can sign
//! any measurement. Verifiers accept it only under a policy role with
//! `allow_simulation = true` that lists the signing key (see [`crate::policy`]).
//!
//! # Encoding (version 1, [`SIM_EVIDENCE_LEN`] = 210 bytes, all integers big-endian)
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 8 | magic `CELLASIM` |
//! | 8 | 1 | version, `1` |
//! | 9 | 1 | flags: bit 0 = debug; bits 1–7 must be zero |
//! | 10 | 32 | measurement |
//! | 42 | 64 | report_data |
//! | 106 | 8 | issued-at, seconds since the Unix epoch |
//! | 114 | 32 | signer's Ed25519 public key |
//! | 146 | 64 | Ed25519 signature over [`SIGNING_CONTEXT`] ‖ bytes 0..146 |

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls_pki_types::UnixTime;
use zeroize::Zeroizing;

use crate::ReportData;
use crate::clock::{Clock, SystemClock};
use crate::ed25519::{Ed25519PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::evidence::{Evidence, EvidenceError, EvidenceSource, Platform, REPORT_DATA_LEN};
use crate::measurement::{MEASUREMENT_LEN, Measurement};

/// First bytes of every simulation evidence.
pub const SIM_MAGIC: &[u8; 8] = b"CELLASIM";
/// The only version of the encoding.
pub const SIM_VERSION: u8 = 1;
/// Flag bit: the launcher started the instance in a debuggable configuration.
pub const FLAG_DEBUG: u8 = 0x01;
/// Domain separation for the signature, so that the simulation key's signatures cannot be
/// replayed as anything else.
pub const SIGNING_CONTEXT: &[u8] = b"cella sim evidence v1\0";

const OFF_VERSION: usize = SIM_MAGIC.len();
const OFF_FLAGS: usize = OFF_VERSION + 1;
const OFF_MEASUREMENT: usize = OFF_FLAGS + 1;
const OFF_REPORT_DATA: usize = OFF_MEASUREMENT + MEASUREMENT_LEN;
const OFF_ISSUED_AT: usize = OFF_REPORT_DATA + REPORT_DATA_LEN;
const OFF_SIGNER: usize = OFF_ISSUED_AT + 8;
const OFF_SIGNATURE: usize = OFF_SIGNER + PUBLIC_KEY_LEN;
/// Exact length of simulation evidence.
pub const SIM_EVIDENCE_LEN: usize = OFF_SIGNATURE + SIGNATURE_LEN;

/// Read buffer for measuring a binary: large enough to keep the hashing fast, small enough
/// to stay on any stack-frugal thread.
const MEASURE_CHUNK: usize = 64 * 1024;

/// The node-local simulation signing key.
pub struct SimSigner {
    key_pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSigner")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A simulation key could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SimKeyError {
    /// The system random number generator failed.
    #[error("generating a simulation key: the random number generator failed")]
    Generate,
    /// The bytes are not a PKCS#8 Ed25519 key.
    #[error("the simulation key is not a valid PKCS#8 Ed25519 key: {0}")]
    Rejected(String),
}

impl SimSigner {
    /// A fresh random key.
    ///
    /// # Errors
    ///
    /// [`SimKeyError::Generate`] if the system RNG fails.
    pub fn generate() -> Result<Self, SimKeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SimKeyError::Generate)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// Load a key from its PKCS#8 v2 encoding (as returned by [`SimSigner::pkcs8`]).
    ///
    /// # Errors
    ///
    /// [`SimKeyError::Rejected`] if the bytes are not an Ed25519 PKCS#8 document.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SimKeyError> {
        let key_pair =
            Ed25519KeyPair::from_pkcs8(der).map_err(|e| SimKeyError::Rejected(e.to_string()))?;
        Ok(Self {
            key_pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// The private key's PKCS#8 encoding, for the caller to seal and store. Secret.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key that verifiers list in `trusted_sim_keys`.
    pub fn public_key(&self) -> Ed25519PublicKey {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.key_pair.public_key().as_ref());
        Ed25519PublicKey(out)
    }

    /// Sign a statement, producing encoded simulation evidence.
    pub fn sign(&self, statement: &SimStatement) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIM_EVIDENCE_LEN);
        out.extend_from_slice(SIM_MAGIC);
        out.push(SIM_VERSION);
        out.push(if statement.debug { FLAG_DEBUG } else { 0 });
        out.extend_from_slice(statement.measurement.as_bytes());
        out.extend_from_slice(&statement.report_data);
        out.extend_from_slice(&statement.issued_at.as_secs().to_be_bytes());
        out.extend_from_slice(&self.public_key().0);
        let signature = self.key_pair.sign(&signed_message(&out));
        out.extend_from_slice(signature.as_ref());
        out
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}

/// What the simulation signer vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStatement {
    /// The measurement computed by the launcher.
    pub measurement: Measurement,
    /// The instance's report_data.
    pub report_data: ReportData,
    /// When the evidence was produced (whole seconds are encoded).
    pub issued_at: UnixTime,
    /// Whether the instance runs in a debuggable configuration.
    pub debug: bool,
}

/// Parsed simulation evidence. Parsing checks the encoding only; [`SimEvidence::verify`]
/// checks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvidence {
    /// The signed statement.
    pub statement: SimStatement,
    /// The key that signed it (not yet known to be trusted).
    pub signer: Ed25519PublicKey,
    raw: Vec<u8>,
}

/// Simulation evidence is malformed (the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SimParseError {
    /// Wrong length.
    #[error("simulation evidence is {got} bytes, expected {SIM_EVIDENCE_LEN}")]
    Length {
        /// The length received.
        got: usize,
    },
    /// Wrong magic.
    #[error("simulation evidence does not start with \"CELLASIM\"")]
    Magic,
    /// Unknown version.
    #[error("simulation evidence version {0} is not supported (expected {SIM_VERSION})")]
    Version(u8),
    /// Reserved flag bits set.
    #[error("simulation evidence sets reserved flag bits {0:#04x}")]
    Flags(u8),
}

/// Simulation evidence is not signed by a trusted key (the peer's fault, or a policy that
/// lists no key).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SimVerifyError {
    /// The policy lists no trusted simulation key.
    #[error("no trusted simulation key is configured, so simulation evidence is refused")]
    NoTrustedKeys,
    /// The signer is not among the trusted keys.
    #[error("simulation evidence is signed by {signer}, which is not a trusted simulation key")]
    UntrustedSigner {
        /// The signer.
        signer: Ed25519PublicKey,
    },
    /// The signature does not verify.
    #[error("simulation evidence signature by {signer} is invalid")]
    BadSignature {
        /// The claimed signer.
        signer: Ed25519PublicKey,
    },
}

fn array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

impl SimEvidence {
    /// Parse encoded simulation evidence.
    ///
    /// # Errors
    ///
    /// [`SimParseError`] when the bytes are not version-1 simulation evidence.
    pub fn parse(bytes: &[u8]) -> Result<Self, SimParseError> {
        if bytes.len() != SIM_EVIDENCE_LEN {
            return Err(SimParseError::Length { got: bytes.len() });
        }
        // The length check above makes every fixed-offset slice below in bounds.
        if &bytes[..OFF_VERSION] != SIM_MAGIC {
            return Err(SimParseError::Magic);
        }
        if bytes[OFF_VERSION] != SIM_VERSION {
            return Err(SimParseError::Version(bytes[OFF_VERSION]));
        }
        let flags = bytes[OFF_FLAGS];
        if flags & !FLAG_DEBUG != 0 {
            return Err(SimParseError::Flags(flags));
        }
        let issued_at = u64::from_be_bytes(array(bytes, OFF_ISSUED_AT));
        Ok(Self {
            statement: SimStatement {
                measurement: Measurement(array(bytes, OFF_MEASUREMENT)),
                report_data: array(bytes, OFF_REPORT_DATA),
                issued_at: UnixTime::since_unix_epoch(Duration::from_secs(issued_at)),
                debug: flags & FLAG_DEBUG != 0,
            },
            signer: Ed25519PublicKey(array(bytes, OFF_SIGNER)),
            raw: bytes.to_vec(),
        })
    }

    /// Check that the evidence is signed by one of `trusted`.
    ///
    /// # Errors
    ///
    /// [`SimVerifyError`] when `trusted` is empty, the signer is not in it, or the signature
    /// does not verify.
    pub fn verify(&self, trusted: &[Ed25519PublicKey]) -> Result<(), SimVerifyError> {
        if trusted.is_empty() {
            return Err(SimVerifyError::NoTrustedKeys);
        }
        if !trusted.contains(&self.signer) {
            return Err(SimVerifyError::UntrustedSigner {
                signer: self.signer,
            });
        }
        let message = signed_message(&self.raw[..OFF_SIGNATURE]);
        if !self.signer.verifies(&message, &self.raw[OFF_SIGNATURE..]) {
            return Err(SimVerifyError::BadSignature {
                signer: self.signer,
            });
        }
        Ok(())
    }
}

/// SHA-256 of a file, read in chunks (constant memory).
///
/// # Errors
///
/// The I/O error if the file cannot be read.
pub fn measure_file(path: &Path) -> std::io::Result<Measurement> {
    let mut file = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; MEASURE_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; MEASUREMENT_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(Measurement(out))
}

/// Simulation evidence for one measured thing (this node's binary, or an instance the node
/// launched).
#[derive(Debug, Clone)]
pub struct SimEvidenceSource {
    signer: Arc<SimSigner>,
    measurement: Measurement,
    debug: bool,
    clock: Arc<dyn Clock>,
}

impl SimEvidenceSource {
    /// Evidence for `measurement`, as computed by the launcher.
    pub fn new(signer: Arc<SimSigner>, measurement: Measurement) -> Self {
        Self {
            signer,
            measurement,
            debug: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Evidence for the running binary: the measurement is the SHA-256 of
    /// [`std::env::current_exe`], so a policy can pin a build.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Measure`] if the binary cannot be located or read.
    pub fn for_current_exe(signer: Arc<SimSigner>) -> Result<Self, EvidenceError> {
        let path = std::env::current_exe().map_err(|source| EvidenceError::Measure {
            path: "<current executable>".into(),
            source,
        })?;
        let measurement =
            measure_file(&path).map_err(|source| EvidenceError::Measure { path, source })?;
        Ok(Self::new(signer, measurement))
    }

    /// Mark the evidence as coming from a debuggable instance.
    #[must_use]
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// Use `clock` for the issued-at time (tests, or a node with a trusted time source).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The measurement this source vouches for.
    pub fn measurement(&self) -> Measurement {
        self.measurement
    }
}

impl EvidenceSource for SimEvidenceSource {
    fn platform(&self) -> Platform {
        Platform::Sim
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        Ok(Evidence::Sim(self.signer.sign(&SimStatement {
            measurement: self.measurement,
            report_data: *report_data,
            issued_at: self.clock.now(),
            debug: self.debug,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> SimStatement {
        SimStatement {
            measurement: Measurement([7; 32]),
            report_data: [9; 64],
            issued_at: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            debug: true,
        }
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let signer = SimSigner::generate().unwrap();
        let bytes = signer.sign(&statement());
        assert_eq!(bytes.len(), SIM_EVIDENCE_LEN);
        assert_eq!(&bytes[..8], b"CELLASIM");
        let parsed = SimEvidence::parse(&bytes).unwrap();
        assert_eq!(parsed.statement, statement());
        assert_eq!(parsed.signer, signer.public_key());
        parsed.verify(&[signer.public_key()]).unwrap();
    }

    #[test]
    fn key_survives_pkcs8_round_trip() {
        let signer = SimSigner::generate().unwrap();
        let again = SimSigner::from_pkcs8(signer.pkcs8()).unwrap();
        assert_eq!(signer.public_key(), again.public_key());
        assert!(SimSigner::from_pkcs8(b"not a key").is_err());
    }

    #[test]
    fn refuses_malformed_and_untrusted() {
        let signer = SimSigner::generate().unwrap();
        let other = SimSigner::generate().unwrap();
        let bytes = signer.sign(&statement());

        assert_eq!(
            SimEvidence::parse(&bytes[1..]),
            Err(SimParseError::Length { got: 209 })
        );
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(SimEvidence::parse(&b), Err(SimParseError::Magic));
        let mut b = bytes.clone();
        b[8] = 2;
        assert_eq!(SimEvidence::parse(&b), Err(SimParseError::Version(2)));
        let mut b = bytes.clone();
        b[9] = 0x81;
        assert_eq!(SimEvidence::parse(&b), Err(SimParseError::Flags(0x81)));

        let parsed = SimEvidence::parse(&bytes).unwrap();
        assert_eq!(parsed.verify(&[]), Err(SimVerifyError::NoTrustedKeys));
        assert!(matches!(
            parsed.verify(&[other.public_key()]),
            Err(SimVerifyError::UntrustedSigner { .. })
        ));

        // A flipped measurement byte breaks the signature.
        let mut b = bytes.clone();
        b[OFF_MEASUREMENT] ^= 1;
        let tampered = SimEvidence::parse(&b).unwrap();
        assert!(matches!(
            tampered.verify(&[signer.public_key()]),
            Err(SimVerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn source_signs_launcher_measurement() {
        let signer = Arc::new(SimSigner::generate().unwrap());
        let source = SimEvidenceSource::new(signer.clone(), Measurement([3; 32]));
        let evidence = source.evidence(&[5; 64]).unwrap();
        assert_eq!(evidence.platform(), Platform::Sim);
        let parsed = SimEvidence::parse(evidence.bytes()).unwrap();
        assert_eq!(parsed.statement.measurement, Measurement([3; 32]));
        assert_eq!(parsed.statement.report_data, [5; 64]);
        assert!(!parsed.statement.debug);
    }

    #[test]
    fn current_exe_is_measured() {
        let signer = Arc::new(SimSigner::generate().unwrap());
        let source = SimEvidenceSource::for_current_exe(signer).unwrap();
        let exe = std::env::current_exe().unwrap();
        let expected = Measurement::sha256(&std::fs::read(exe).unwrap());
        assert_eq!(source.measurement(), expected);
    }
}
