//! SGX DCAP evidence through Gramine's `/dev/attestation` pseudo-filesystem.
//!
//! Inside a Gramine-SGX enclave, writing 64 bytes to `/dev/attestation/user_report_data` and
//! then reading `/dev/attestation/quote` yields a DCAP quote over those bytes, produced by the
//! CPU and the quoting enclave: the enclave cannot choose its measurement. The directory is
//! configurable so that tests can point it at a fake one.
//!
//! The device is process-global state (write, then read), so the source serialises its
//! callers with a mutex: two concurrent requests must not read each other's quote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::evidence::{
    Evidence, EvidenceError, EvidenceSource, MAX_QUOTE_LEN, Platform, REPORT_DATA_LEN, ReportData,
};

/// Where Gramine mounts the attestation interface.
pub const DEFAULT_ATTESTATION_DIR: &str = "/dev/attestation";

/// Offset of `report_data` in an SGX quote v3: the 48-byte header, then `report_data` at
/// offset 320 of the 384-byte enclave report body.
pub(crate) const QUOTE_REPORT_DATA_OFFSET: usize = 48 + 320;

/// Largest `attestation_type` file read: the values are short words such as `dcap`.
const MAX_ATTESTATION_TYPE_LEN: u64 = 64;

/// Quotes from Gramine's `/dev/attestation` (or a directory laid out like it).
#[derive(Debug)]
pub struct GramineDcapSource {
    dir: PathBuf,
    device: Mutex<()>,
}

impl GramineDcapSource {
    /// A source reading the interface under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            device: Mutex::new(()),
        }
    }

    /// A source reading [`DEFAULT_ATTESTATION_DIR`].
    pub fn default_device() -> Self {
        Self::new(DEFAULT_ATTESTATION_DIR)
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_attestation_type(&self) -> Result<(), EvidenceError> {
        let path = self.dir.join("attestation_type");
        let mut found = String::new();
        match std::fs::File::open(&path) {
            // Older Gramine versions have no such file; the quote read below fails if the
            // enclave cannot produce DCAP quotes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(EvidenceError::Device { path, source }),
            Ok(f) => f
                .take(MAX_ATTESTATION_TYPE_LEN)
                .read_to_string(&mut found)
                .map_err(|source| EvidenceError::Device {
                    path: path.clone(),
                    source,
                })?,
        };
        let found = found.trim();
        if found != "dcap" {
            return Err(EvidenceError::WrongAttestationType {
                path,
                found: found.to_owned(),
            });
        }
        Ok(())
    }
}

impl EvidenceSource for GramineDcapSource {
    fn platform(&self) -> Platform {
        Platform::SgxDcap
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        // A poisoned lock only means another request panicked; the device itself holds no
        // state we rely on beyond the write-then-read below.
        let _device = self
            .device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check_attestation_type()?;

        let path = self.dir.join("user_report_data");
        // Never create the file: a missing device must fail, not silently produce nothing.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(report_data))
            .map_err(|source| EvidenceError::Device { path, source })?;

        let path = self.dir.join("quote");
        let mut quote = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_QUOTE_LEN as u64 + 1).read_to_end(&mut quote))
            .map_err(|source| EvidenceError::Device {
                path: path.clone(),
                source,
            })?;
        if quote.len() > MAX_QUOTE_LEN {
            return Err(EvidenceError::QuoteTooLarge { path });
        }
        let Some(got) =
            quote.get(QUOTE_REPORT_DATA_OFFSET..QUOTE_REPORT_DATA_OFFSET + REPORT_DATA_LEN)
        else {
            return Err(EvidenceError::MalformedQuote {
                path,
                reason: format!("only {} bytes", quote.len()),
            });
        };
        if got != report_data {
            return Err(EvidenceError::ReportDataMismatch { path });
        }
        Ok(Evidence::SgxDcapQuote(quote))
    }
}
