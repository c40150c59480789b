//! Verification of SGX DCAP quotes with `dcap-qvl`, against collateral, at an explicit time.
//!
//! Collateral (PCK CRL, root CA CRL, TCB info, QE identity and their issuer chains) is loaded
//! from JSON files in the format `dcap-qvl` and PCCS clients write
//! (`sgx_quote_collateral.json`), one per platform family (FMSPC), or fetched from a PCCS
//! with [`crate::pccs::PccsClient`] (which caches it until its earliest `nextUpdate`).
//!
//! Errors separate the peer's fault ([`QuoteError`]: a quote that does not verify) from ours
//! ([`CollateralError`]: missing, malformed or expired collateral).

use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Quote;
use dcap_qvl::verify::QuoteVerifier;
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::evidence::{MAX_QUOTE_LEN, REPORT_DATA_LEN, ReportData};
use crate::measurement::Measurement;

/// Largest collateral JSON file accepted. The sample is 14 KiB; TCB info for platforms
/// with many TCB levels grows, but stays far below 1 MiB.
pub const MAX_COLLATERAL_JSON_LEN: usize = 1024 * 1024;

/// Length of an FMSPC (family-model-stepping-platform-custom SKU).
pub const FMSPC_LEN: usize = 6;

/// SGX `ATTRIBUTES.FLAGS` bit 1: the enclave was launched in debug mode, so its memory can
/// be read by the host. Debug enclaves prove nothing about confidentiality.
const SGX_FLAGS_DEBUG: u8 = 0x02;

/// The TCB status of a platform, as Intel's TCB info reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TcbStatus {
    /// The platform is fully patched.
    UpToDate,
    /// Patched, but software mitigations (hardening) are needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The platform's TCB is out of date.
    OutOfDate,
    /// Out of date, and the configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// The platform's keys are revoked (dcap-qvl refuses such quotes itself).
    Revoked,
}

impl TcbStatus {
    /// Intel's name for the status.
    pub fn name(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            TcbStatus::UpToDate,
            TcbStatus::SWHardeningNeeded,
            TcbStatus::ConfigurationNeeded,
            TcbStatus::ConfigurationAndSWHardeningNeeded,
            TcbStatus::OutOfDate,
            TcbStatus::OutOfDateConfigurationNeeded,
            TcbStatus::Revoked,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Collateral is missing, malformed or outside its validity (our configuration's fault).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollateralError {
    /// The JSON is too large.
    #[error("collateral JSON is larger than {MAX_COLLATERAL_JSON_LEN} bytes")]
    TooLarge,
    /// The JSON does not parse as collateral.
    #[error("collateral is malformed: {0}")]
    Malformed(String),
    /// No collateral is configured for the quote's platform family.
    #[error("no collateral is configured for FMSPC {fmspc}")]
    Missing {
        /// The quote's FMSPC, in hex.
        fmspc: String,
    },
    /// The collateral has expired at the verification time.
    #[error(
        "collateral for FMSPC {fmspc} expired: {item} is valid until {valid_until} (unix), \
         verification time is {now} (unix); refresh the collateral"
    )]
    Expired {
        /// The quote's FMSPC, in hex.
        fmspc: String,
        /// Which item expired first (`tcb_info`, `qe_identity`, `pck_crl`, `root_ca_crl`).
        item: &'static str,
        /// Its `nextUpdate`, in seconds since the epoch.
        valid_until: u64,
        /// The verification time.
        now: u64,
    },
    /// The collateral is not yet valid at the verification time.
    #[error(
        "collateral for FMSPC {fmspc} is not yet valid: {item} was issued at {issued} (unix), \
         verification time is {now} (unix)"
    )]
    NotYetValid {
        /// The quote's FMSPC, in hex.
        fmspc: String,
        /// Which item was issued last.
        item: &'static str,
        /// Its issue date, in seconds since the epoch.
        issued: u64,
        /// The verification time.
        now: u64,
    },
}

/// A quote does not verify (the peer's fault).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QuoteError {
    /// The quote is larger than [`MAX_QUOTE_LEN`].
    #[error("quote is {len} bytes, larger than the limit of {MAX_QUOTE_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The quote does not parse.
    #[error("quote is malformed: {0}")]
    Malformed(String),
    /// The quote is not an SGX enclave quote (e.g. TDX, not supported yet).
    #[error("quote is not an SGX enclave quote")]
    NotSgx,
    /// dcap-qvl refused the quote: bad signature, broken certificate chain, revoked or
    /// unknown platform, mismatched QE report...
    #[error("quote failed DCAP verification: {0}")]
    Rejected(String),
    /// dcap-qvl reported a TCB status this crate does not know.
    #[error("quote has an unknown TCB status {0:?}")]
    UnknownTcbStatus(String),
}

/// DCAP verification failed.
#[derive(Debug, thiserror::Error)]
pub enum DcapError {
    /// The peer's quote is bad.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// Our collateral is missing or stale.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
}

/// One collateral set, for one FMSPC, with its validity window.
#[derive(Debug, Clone)]
pub struct Collateral {
    inner: QuoteCollateralV3,
    fmspc: [u8; FMSPC_LEN],
    /// Latest issue date among the items, and which item.
    valid_from: (u64, &'static str),
    /// Earliest next-update among the items, and which item.
    valid_until: (u64, &'static str),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedItemDates {
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
}

fn rfc3339_secs(s: &str, item: &str) -> Result<u64, CollateralError> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| CollateralError::Malformed(format!("{item} date {s:?}: {e}")))?;
    u64::try_from(t.unix_timestamp())
        .map_err(|_| CollateralError::Malformed(format!("{item} date {s:?} is before 1970")))
}

impl Collateral {
    /// Parse collateral JSON (the format of `sgx_quote_collateral.json`).
    ///
    /// # Errors
    ///
    /// [`CollateralError::TooLarge`] or [`CollateralError::Malformed`].
    pub fn from_json(json: &[u8]) -> Result<Self, CollateralError> {
        if json.len() > MAX_COLLATERAL_JSON_LEN {
            return Err(CollateralError::TooLarge);
        }
        let inner: QuoteCollateralV3 =
            serde_json::from_slice(json).map_err(|e| CollateralError::Malformed(e.to_string()))?;
        Self::from_dcap_qvl(inner)
    }

    /// Check and wrap collateral assembled elsewhere (e.g. fetched from a PCCS): reads the
    /// FMSPC and the validity window from its TCB info, QE identity and CRLs.
    ///
    /// # Errors
    ///
    /// [`CollateralError::Malformed`].
    pub fn from_dcap_qvl(inner: QuoteCollateralV3) -> Result<Self, CollateralError> {
        let tcb: SignedItemDates = serde_json::from_str(&inner.tcb_info)
            .map_err(|e| CollateralError::Malformed(format!("tcb_info: {e}")))?;
        let qe: SignedItemDates = serde_json::from_str(&inner.qe_identity)
            .map_err(|e| CollateralError::Malformed(format!("qe_identity: {e}")))?;
        let fmspc_hex = tcb
            .fmspc
            .as_deref()
            .ok_or_else(|| CollateralError::Malformed("tcb_info has no fmspc".into()))?;
        let mut fmspc = [0u8; FMSPC_LEN];
        hex::decode_to_slice(fmspc_hex, &mut fmspc)
            .map_err(|_| CollateralError::Malformed(format!("tcb_info fmspc {fmspc_hex:?}")))?;

        let mut from = Vec::new();
        let mut until = Vec::new();
        for (item, dates) in [("tcb_info", &tcb), ("qe_identity", &qe)] {
            from.push((rfc3339_secs(&dates.issue_date, item)?, item));
            until.push((rfc3339_secs(&dates.next_update, item)?, item));
        }
        for (item, der) in [
            ("pck_crl", &inner.pck_crl),
            ("root_ca_crl", &inner.root_ca_crl),
        ] {
            let (_, crl) = CertificateRevocationList::from_der(der)
                .map_err(|e| CollateralError::Malformed(format!("{item}: {e}")))?;
            let secs = |t: i64| {
                u64::try_from(t)
                    .map_err(|_| CollateralError::Malformed(format!("{item} date before 1970")))
            };
            from.push((secs(crl.last_update().timestamp())?, item));
            if let Some(next) = crl.next_update() {
                until.push((secs(next.timestamp())?, item));
            }
        }
        // Both lists hold at least the two JSON items pushed above.
        let valid_from = from.into_iter().max().unwrap_or((0, "tcb_info"));
        let valid_until = until.into_iter().min().unwrap_or((0, "tcb_info"));
        Ok(Self {
            inner,
            fmspc,
            valid_from,
            valid_until,
        })
    }

    /// The FMSPC this collateral is for.
    pub fn fmspc(&self) -> [u8; FMSPC_LEN] {
        self.fmspc
    }

    /// The window in which all of its items are valid, in seconds since the epoch.
    pub fn validity(&self) -> (u64, u64) {
        (self.valid_from.0, self.valid_until.0)
    }

    fn check_time(&self, now: u64) -> Result<(), CollateralError> {
        let fmspc = hex::encode_upper(self.fmspc);
        if now < self.valid_from.0 {
            return Err(CollateralError::NotYetValid {
                fmspc,
                item: self.valid_from.1,
                issued: self.valid_from.0,
                now,
            });
        }
        if now >= self.valid_until.0 {
            return Err(CollateralError::Expired {
                fmspc,
                item: self.valid_until.1,
                valid_until: self.valid_until.0,
                now,
            });
        }
        Ok(())
    }
}

/// What a verified SGX quote says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcapReport {
    /// `MRENCLAVE`: the hash of the enclave's initial contents.
    pub mr_enclave: Measurement,
    /// `MRSIGNER`: the hash of the enclave signer's public key.
    pub mr_signer: Measurement,
    /// `ISVPRODID`.
    pub isv_prod_id: u16,
    /// `ISVSVN`.
    pub isv_svn: u16,
    /// The `ATTRIBUTES` field (flags, then XFRM).
    pub attributes: [u8; 16],
    /// Whether the enclave runs in debug mode.
    pub debug: bool,
    /// The platform's TCB status.
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply to the platform.
    pub advisory_ids: Vec<String>,
    /// The 64 bytes of user data in the quote.
    pub report_data: ReportData,
    /// The platform family.
    pub fmspc: [u8; FMSPC_LEN],
}

/// Verifies SGX DCAP quotes against configured collateral.
#[derive(Debug, Clone, Default)]
pub struct DcapVerifier {
    collateral: Vec<Collateral>,
    root_ca_der: Option<Vec<u8>>,
}

impl DcapVerifier {
    /// A verifier trusting Intel's SGX root CA, with no collateral yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add collateral; a later set for the same FMSPC replaces an earlier one.
    #[must_use]
    pub fn with_collateral(mut self, collateral: Collateral) -> Self {
        self.collateral.retain(|c| c.fmspc != collateral.fmspc);
        self.collateral.push(collateral);
        self
    }

    /// Trust `root_ca_der` instead of Intel's production SGX root CA (test PKIs).
    #[must_use]
    pub fn with_root_ca(mut self, root_ca_der: Vec<u8>) -> Self {
        self.root_ca_der = Some(root_ca_der);
        self
    }

    /// Verify `quote` at time `now`.
    ///
    /// Debug enclaves are *not* refused here: the policy decides (`allow_debug`), with its
    /// own error.
    ///
    /// # Errors
    ///
    /// [`DcapError::Quote`] if the quote is malformed or does not verify;
    /// [`DcapError::Collateral`] if no collateral matches its FMSPC or the collateral is not
    /// valid at `now`.
    pub fn verify(&self, quote: &[u8], now: UnixTime) -> Result<DcapReport, DcapError> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::TooLarge { len: quote.len() }.into());
        }
        let parsed = Quote::parse(quote).map_err(|e| QuoteError::Malformed(format!("{e:#}")))?;
        if parsed.report.as_sgx().is_none() {
            return Err(QuoteError::NotSgx.into());
        }
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| QuoteError::Malformed(format!("PCK certificate: {e:#}")))?;
        let collateral = self
            .collateral
            .iter()
            .find(|c| c.fmspc == fmspc)
            .ok_or_else(|| CollateralError::Missing {
                fmspc: hex::encode_upper(fmspc),
            })?;
        let now_secs = now.as_secs();
        collateral.check_time(now_secs)?;

        let verifier = match &self.root_ca_der {
            Some(root) => QuoteVerifier::new(root.clone()),
            None => QuoteVerifier::new_prod(),
        }
        .allow_debug(true);
        let verified = verifier
            .verify(quote, &collateral.inner, now_secs)
            .map_err(|e| QuoteError::Rejected(format!("{e:#}")))?;
        let report = verified.report.as_sgx().ok_or(QuoteError::NotSgx)?;
        let tcb_status = TcbStatus::from_name(&verified.status)
            .ok_or_else(|| QuoteError::UnknownTcbStatus(verified.status.clone()))?;
        Ok(DcapReport {
            mr_enclave: Measurement(report.mr_enclave),
            mr_signer: Measurement(report.mr_signer),
            isv_prod_id: report.isv_prod_id,
            isv_svn: report.isv_svn,
            attributes: report.attributes,
            debug: report.attributes[0] & SGX_FLAGS_DEBUG != 0,
            tcb_status,
            advisory_ids: verified.advisory_ids.clone(),
            report_data: report.report_data,
            fmspc,
        })
    }
}

/// `MRENCLAVE` of an SGX quote, read without verifying the quote: for an enclave naming
/// its own measurement (read from a quote it just obtained), never for trusting a peer.
///
/// # Errors
///
/// [`QuoteError::Malformed`] or [`QuoteError::NotSgx`] when `quote` is not an SGX quote.
pub fn unverified_mr_enclave(quote: &[u8]) -> Result<Measurement, QuoteError> {
    if quote.len() > MAX_QUOTE_LEN {
        return Err(QuoteError::TooLarge { len: quote.len() });
    }
    let parsed = Quote::parse(quote).map_err(|e| QuoteError::Malformed(format!("{e:#}")))?;
    let report = parsed.report.as_sgx().ok_or(QuoteError::NotSgx)?;
    Ok(Measurement(report.mr_enclave))
}

/// Loading a collateral JSON file failed.
#[derive(Debug, thiserror::Error)]
pub enum CollateralFileError {
    /// The file cannot be read.
    #[error("cannot read collateral file {path}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not collateral.
    #[error("collateral file {path} is not DCAP collateral JSON")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: CollateralError,
    },
}

/// Load one collateral JSON file (the format of `sgx_quote_collateral.json`, as written by
/// `dcap-qvl` and PCCS clients), reading at most [`MAX_COLLATERAL_JSON_LEN`] bytes.
///
/// # Errors
///
/// [`CollateralFileError`] naming the file.
pub fn load_collateral(path: &std::path::Path) -> Result<Collateral, CollateralFileError> {
    use std::io::Read;
    let io = |source| CollateralFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut json = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_COLLATERAL_JSON_LEN as u64 + 1)
        .read_to_end(&mut json)
        .map_err(io)?;
    Collateral::from_json(&json).map_err(|source| CollateralFileError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// `report_data` of an SGX quote v3 without verifying it (for binding checks and display
/// before verification).
pub(crate) fn unverified_report_data(quote: &[u8]) -> Option<ReportData> {
    let offset = crate::gramine::QUOTE_REPORT_DATA_OFFSET;
    let bytes = quote.get(offset..offset + REPORT_DATA_LEN)?;
    let mut out = [0u8; REPORT_DATA_LEN];
    out.copy_from_slice(bytes);
    Some(out)
}

/// Seconds as a [`UnixTime`].
pub(crate) fn unix(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}
