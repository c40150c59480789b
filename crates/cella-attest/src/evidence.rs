//! Evidence and the platforms that produce it.
//!
//! An [`EvidenceSource`] turns 64 bytes of `report_data` chosen by the caller into
//! [`Evidence`] that binds those bytes to a measurement the caller could not choose:
//! a hardware quote for `sgx-dcap`, a statement signed by the node's simulation key for
//! `sim`. Who measures is never the instance itself (see "Who measures" in
//! `docs/attestation.md`).

use std::fmt;
use std::path::PathBuf;

/// Length of the user data bound into evidence (SGX `REPORTDATA`).
pub const REPORT_DATA_LEN: usize = 64;

/// The 64 bytes of user data bound into evidence.
pub type ReportData = [u8; REPORT_DATA_LEN];

/// Largest quote accepted from a device or a peer. An SGX DCAP v3 quote with its PCK
/// certificate chain is about 4.6 KiB and a TDX v4 quote about 5 KiB; 32 KiB leaves room for
/// longer chains while bounding what a peer can make us parse.
pub const MAX_QUOTE_LEN: usize = 32 * 1024;

/// The kind of platform that produced evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Platform {
    /// Software evidence signed by a node-local simulation key. Not hardware-backed.
    #[serde(rename = "sim")]
    Sim,
    /// An Intel SGX DCAP (ECDSA) quote.
    #[serde(rename = "sgx-dcap")]
    SgxDcap,
}

impl Platform {
    /// The platform's name as written in configuration and output: `sim` or `sgx-dcap`.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Sim => "sim",
            Platform::SgxDcap => "sgx-dcap",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Evidence as produced by a platform: opaque bytes tagged with their platform.
#[derive(Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Simulation evidence, encoded as in [`crate::sim`].
    Sim(Vec<u8>),
    /// An SGX DCAP quote (`sgx_quote_3_t`).
    SgxDcapQuote(Vec<u8>),
}

impl Evidence {
    /// The platform that produced this evidence.
    pub fn platform(&self) -> Platform {
        match self {
            Evidence::Sim(_) => Platform::Sim,
            Evidence::SgxDcapQuote(_) => Platform::SgxDcap,
        }
    }

    /// The evidence's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Evidence::Sim(b) | Evidence::SgxDcapQuote(b) => b,
        }
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Evidence({}, {} bytes)",
            self.platform(),
            self.bytes().len()
        )
    }
}

/// A platform that produces evidence binding caller-chosen `report_data`.
pub trait EvidenceSource: Send + Sync + fmt::Debug {
    /// The platform this source produces evidence for.
    fn platform(&self) -> Platform;

    /// Produce evidence whose `report_data` is exactly `report_data`.
    ///
    /// # Errors
    ///
    /// [`EvidenceError`] when the platform cannot produce evidence (missing or misbehaving
    /// attestation device). Never falls back to another platform.
    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError>;
}

/// Producing evidence failed. These are local failures (our platform or configuration), never
/// a peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Reading or writing a file of the attestation device failed.
    #[error("attestation device file {path}")]
    Device {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The attestation device is not in DCAP mode.
    #[error("attestation device {path} reports attestation type {found:?}, expected \"dcap\"")]
    WrongAttestationType {
        /// The `attestation_type` file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// The device returned a quote larger than [`MAX_QUOTE_LEN`].
    #[error("quote from {path} is larger than the limit of {MAX_QUOTE_LEN} bytes")]
    QuoteTooLarge {
        /// The quote file.
        path: PathBuf,
    },
    /// The device returned something that is not an SGX quote.
    #[error("quote from {path} is not an SGX quote: {reason}")]
    MalformedQuote {
        /// The quote file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The device returned a quote over other report_data than the one written.
    #[error("quote from {path} does not carry the report_data that was written")]
    ReportDataMismatch {
        /// The quote file.
        path: PathBuf,
    },
    /// Hashing the binary to measure failed.
    #[error("measuring {path}")]
    Measure {
        /// The file measured.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
