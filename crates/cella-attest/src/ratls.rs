//! RA-TLS certificates: self-signed X.509 certificates that carry evidence binding their own
//! public key.
//!
//! Generation writes one extension, TCG DICE tagged evidence (OID 2.23.133.5.4.9), whose
//! value is a CBOR tag over `[evidence, claims-buffer]`:
//!
//! - tag [`TAG_SGX_QUOTE`] (60000, as Gramine and the Intel SGX SDK write it) for an SGX
//!   DCAP quote;
//! - tag [`TAG_CELLA_SIM`] (`0x6365_6c6c`, "cell" in ASCII) for Cella simulation evidence. A
//!   Gramine verifier does not know this tag and refuses it, as it must.
//!
//! The evidence's `report_data` is SHA-256 of the claims buffer ([`crate::claims`]), whose
//! `pubkey-hash` is the hash of the certificate's SubjectPublicKeyInfo DER.
//!
//! Parsing also reads the legacy Gramine extension 1.2.840.113741.1337.6 (a raw quote whose
//! `report_data[0..32]` is SHA-256 of the SubjectPublicKeyInfo DER). Gramine writes that OID
//! with its DER tag and length bytes inside the OID value (so other tools print it as
//! `0.6.9.42.840.113741.1337.6`); both that and the correct encoding are recognised. The
//! Intel SGX SDK's extension 1.2.840.113741.1.13.1 (the same quote as its tagged evidence) is
//! recorded but not needed. When both a tagged and a legacy extension are present, the
//! tagged one is used.
//!
//! The certificate's own signature is not checked: it proves nothing the TLS handshake
//! signature does not (possession of the key), and the certificate is self-signed anyway.

use std::time::Duration;

use ciborium::value::Value;
use rcgen::PublicKeyData;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::claims::{
    Claims, ClaimsError, MAJOR_ARRAY, MAJOR_TAG, MAX_CLAIMS_LEN, cbor_bytes, cbor_head, decode_one,
    report_data_for,
};
use crate::evidence::{Evidence, EvidenceError, EvidenceSource, MAX_QUOTE_LEN, ReportData};
use crate::measurement::sha256;
use crate::sim::{SIM_EVIDENCE_LEN, SimEvidence, SimParseError};

/// CBOR tag of an Intel SGX/TDX ECDSA quote in tagged evidence (Gramine's value).
pub const TAG_SGX_QUOTE: u64 = 60000;
/// CBOR tag of Cella simulation evidence in tagged evidence: "cell" in ASCII, in the
/// first-come-first-served range, unregistered. Deliberately unknown to other verifiers.
pub const TAG_CELLA_SIM: u64 = 0x6365_6c6c;

/// OID components of TCG DICE tagged evidence, 2.23.133.5.4.9.
pub const OID_TCG_DICE_TAGGED_EVIDENCE: &[u64] = &[2, 23, 133, 5, 4, 9];
/// DER content octets of 2.23.133.5.4.9.
const OID_TAGGED_DER: &[u8] = &[0x67, 0x81, 0x05, 0x05, 0x04, 0x09];
/// DER content octets of 1.2.840.113741.1337.6 (Gramine's legacy quote extension).
const OID_GRAMINE_LEGACY_DER: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x8a, 0x39, 0x06];
/// The same OID as Gramine actually writes it: its tag and length inside the value.
const OID_GRAMINE_LEGACY_AS_WRITTEN: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x8a, 0x39, 0x06,
];
/// DER content octets of 1.2.840.113741.1.13.1 (Intel SGX SDK quote extension).
const OID_INTEL_SDK_QUOTE_DER: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];

/// Largest certificate parsed. Ours are about 5 KiB with a quote; Gramine's, with two
/// quotes, 10 KiB.
pub const MAX_CERT_LEN: usize = 64 * 1024;
/// Largest tagged-evidence extension value: a quote, a claims buffer and CBOR framing.
pub const MAX_TAGGED_EVIDENCE_LEN: usize = MAX_QUOTE_LEN + MAX_CLAIMS_LEN + 64;

/// Subject and issuer common name of the certificates generated here.
pub const CERT_COMMON_NAME: &str = "cella RA-TLS";

/// The tagged-evidence extension value for `evidence` and a claims buffer.
pub fn encode_tagged_evidence(evidence: &Evidence, claims_buffer: &[u8]) -> Vec<u8> {
    let tag = match evidence {
        Evidence::Sim(_) => TAG_CELLA_SIM,
        Evidence::SgxDcapQuote(_) => TAG_SGX_QUOTE,
    };
    let mut out = Vec::with_capacity(evidence.bytes().len() + claims_buffer.len() + 16);
    cbor_head(&mut out, MAJOR_TAG, tag);
    cbor_head(&mut out, MAJOR_ARRAY, 2);
    cbor_bytes(&mut out, evidence.bytes());
    cbor_bytes(&mut out, claims_buffer);
    out
}

/// Evidence and claims from a tagged-evidence extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedEvidence {
    /// The evidence.
    pub evidence: Evidence,
    /// The claims buffer, byte for byte as carried (its hash is in the evidence).
    pub claims_buffer: Vec<u8>,
    /// The decoded claims.
    pub claims: Claims,
}

/// The certificate is not a well-formed RA-TLS certificate (the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// Too large.
    #[error("certificate is {len} bytes, more than the limit of {MAX_CERT_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not X.509.
    #[error("certificate is not valid X.509 DER: {0}")]
    X509(String),
    /// No evidence extension.
    #[error(
        "certificate carries no attestation evidence (no extension 2.23.133.5.4.9 or \
         1.2.840.113741.1337.6)"
    )]
    NoEvidence,
    /// An evidence extension appears twice.
    #[error("certificate carries evidence extension {0} more than once")]
    DuplicateExtension(&'static str),
    /// The tagged-evidence extension is too large.
    #[error("tagged evidence is {len} bytes, more than the limit of {MAX_TAGGED_EVIDENCE_LEN}")]
    TaggedTooLarge {
        /// Its length.
        len: usize,
    },
    /// The tagged-evidence extension is not `tag([bytes, bytes])`.
    #[error("tagged evidence is not CBOR tag([evidence, claims]): {0}")]
    TaggedShape(String),
    /// Unknown CBOR tag.
    #[error(
        "tagged evidence has unknown CBOR tag {0} (known: 60000 sgx quote, {TAG_CELLA_SIM} cella sim)"
    )]
    UnknownTag(u64),
    /// A quote larger than [`MAX_QUOTE_LEN`].
    #[error("quote in certificate is {len} bytes, more than the limit of {MAX_QUOTE_LEN}")]
    QuoteTooLarge {
        /// Its length.
        len: usize,
    },
    /// The claims are malformed.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// The simulation evidence is malformed.
    #[error(transparent)]
    Sim(#[from] SimParseError),
}

/// Parse a tagged-evidence extension value.
///
/// # Errors
///
/// [`CertError`] if the value is not a known tag over `[evidence, claims-buffer]`.
pub fn parse_tagged_evidence(value: &[u8]) -> Result<TaggedEvidence, CertError> {
    if value.len() > MAX_TAGGED_EVIDENCE_LEN {
        return Err(CertError::TaggedTooLarge { len: value.len() });
    }
    let Value::Tag(tag, inner) = decode_one(value).map_err(CertError::TaggedShape)? else {
        return Err(CertError::TaggedShape("not a CBOR tag".into()));
    };
    let Value::Array(items) = *inner else {
        return Err(CertError::TaggedShape("tag content is not an array".into()));
    };
    let Ok([Value::Bytes(evidence), Value::Bytes(claims_buffer)]) = <[Value; 2]>::try_from(items)
    else {
        return Err(CertError::TaggedShape(
            "tag content is not [bytes, bytes]".into(),
        ));
    };
    let evidence = match tag {
        TAG_SGX_QUOTE => {
            if evidence.len() > MAX_QUOTE_LEN {
                return Err(CertError::QuoteTooLarge {
                    len: evidence.len(),
                });
            }
            Evidence::SgxDcapQuote(evidence)
        }
        TAG_CELLA_SIM => {
            if evidence.len() != SIM_EVIDENCE_LEN {
                return Err(SimParseError::Length {
                    got: evidence.len(),
                }
                .into());
            }
            Evidence::Sim(evidence)
        }
        other => return Err(CertError::UnknownTag(other)),
    };
    let claims = Claims::decode(&claims_buffer)?;
    Ok(TaggedEvidence {
        evidence,
        claims_buffer,
        claims,
    })
}

/// Which extension the bound evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceExtension {
    /// TCG DICE tagged evidence, 2.23.133.5.4.9.
    Tagged,
    /// Gramine's legacy quote extension, 1.2.840.113741.1337.6.
    GramineLegacy,
}

/// A parsed RA-TLS certificate. Nothing in it is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaTlsCert {
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// `notBefore`, seconds since the epoch (0 if before 1970).
    pub not_before: u64,
    /// `notAfter`, seconds since the epoch.
    pub not_after: u64,
    /// The tagged-evidence extension, if present.
    pub tagged: Option<TaggedEvidence>,
    /// The quote of Gramine's legacy extension, if present.
    pub legacy_quote: Option<Vec<u8>>,
    /// The quote of the Intel SGX SDK's extension 1.2.840.113741.1.13.1, if present.
    pub intel_sdk_quote: Option<Vec<u8>>,
}

/// The evidence does not bind the certificate's key (the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    /// `pubkey-hash` is not the hash of the certificate's key.
    #[error("the evidence's pubkey-hash claim is not the hash of the certificate's public key")]
    PubkeyHash,
    /// `report_data` is not the hash of the claims (tagged) or of the key (legacy).
    #[error("the evidence's report_data does not bind the {0}")]
    ReportData(&'static str),
    /// The quote is too short to hold report_data.
    #[error("the quote is too short to hold report_data")]
    ShortQuote,
    /// The simulation evidence is malformed.
    #[error(transparent)]
    Sim(#[from] SimParseError),
    /// No evidence extension at all.
    #[error("certificate carries no attestation evidence")]
    NoEvidence,
}

/// Evidence whose binding to the certificate's key has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundEvidence {
    /// The evidence.
    pub evidence: Evidence,
    /// The nonce claim, if any (legacy evidence has none).
    pub nonce: Option<Vec<u8>>,
    /// The extension it came from.
    pub extension: EvidenceExtension,
    /// The evidence's report_data (unverified until the evidence itself is).
    pub report_data: ReportData,
}

fn evidence_report_data(evidence: &Evidence) -> Result<ReportData, BindingError> {
    match evidence {
        Evidence::Sim(bytes) => Ok(SimEvidence::parse(bytes)?.statement.report_data),
        Evidence::SgxDcapQuote(quote) => {
            crate::dcap::unverified_report_data(quote).ok_or(BindingError::ShortQuote)
        }
    }
}

fn asn1_secs(t: x509_parser::time::ASN1Time) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

impl RaTlsCert {
    /// Parse a DER certificate and its evidence extensions.
    ///
    /// # Errors
    ///
    /// [`CertError`] if the certificate or an evidence extension is malformed, or there is
    /// no evidence extension.
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CERT_LEN {
            return Err(CertError::TooLarge { len: der.len() });
        }
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::X509(e.to_string()))?;
        let mut tagged = None;
        let mut legacy_quote = None;
        let mut intel_sdk_quote = None;
        for ext in cert.extensions() {
            let oid = ext.oid.as_bytes();
            if oid == OID_TAGGED_DER {
                if tagged.is_some() {
                    return Err(CertError::DuplicateExtension("2.23.133.5.4.9"));
                }
                tagged = Some(parse_tagged_evidence(ext.value)?);
            } else if oid == OID_GRAMINE_LEGACY_DER || oid == OID_GRAMINE_LEGACY_AS_WRITTEN {
                if legacy_quote.is_some() {
                    return Err(CertError::DuplicateExtension("1.2.840.113741.1337.6"));
                }
                if ext.value.len() > MAX_QUOTE_LEN {
                    return Err(CertError::QuoteTooLarge {
                        len: ext.value.len(),
                    });
                }
                legacy_quote = Some(ext.value.to_vec());
            } else if oid == OID_INTEL_SDK_QUOTE_DER {
                if intel_sdk_quote.is_some() {
                    return Err(CertError::DuplicateExtension("1.2.840.113741.1.13.1"));
                }
                if ext.value.len() > MAX_QUOTE_LEN {
                    return Err(CertError::QuoteTooLarge {
                        len: ext.value.len(),
                    });
                }
                intel_sdk_quote = Some(ext.value.to_vec());
            }
        }
        if tagged.is_none() && legacy_quote.is_none() {
            return Err(CertError::NoEvidence);
        }
        let validity = cert.validity();
        Ok(Self {
            spki_der: cert.public_key().raw.to_vec(),
            not_before: asn1_secs(validity.not_before),
            not_after: asn1_secs(validity.not_after),
            tagged,
            legacy_quote,
            intel_sdk_quote,
        })
    }

    /// Check the tagged evidence's binding: `pubkey-hash` is the hash of this certificate's
    /// SubjectPublicKeyInfo, and `report_data[0..32]` is SHA-256 of the claims buffer.
    ///
    /// # Errors
    ///
    /// [`BindingError`] on any mismatch, or if there is no tagged evidence.
    pub fn check_tagged_binding(&self) -> Result<BoundEvidence, BindingError> {
        let tagged = self.tagged.as_ref().ok_or(BindingError::NoEvidence)?;
        if !tagged.claims.pubkey_hash.matches(&self.spki_der) {
            return Err(BindingError::PubkeyHash);
        }
        let report_data = evidence_report_data(&tagged.evidence)?;
        if report_data[..32] != sha256(&tagged.claims_buffer) {
            return Err(BindingError::ReportData("claims (and so the key)"));
        }
        Ok(BoundEvidence {
            evidence: tagged.evidence.clone(),
            nonce: tagged.claims.nonce.clone(),
            extension: EvidenceExtension::Tagged,
            report_data,
        })
    }

    /// Check the legacy evidence's binding: `report_data[0..32]` is SHA-256 of this
    /// certificate's SubjectPublicKeyInfo DER.
    ///
    /// # Errors
    ///
    /// [`BindingError`] on a mismatch, or if there is no legacy quote.
    pub fn check_legacy_binding(&self) -> Result<BoundEvidence, BindingError> {
        let quote = self.legacy_quote.as_ref().ok_or(BindingError::NoEvidence)?;
        let report_data =
            crate::dcap::unverified_report_data(quote).ok_or(BindingError::ShortQuote)?;
        if report_data[..32] != sha256(&self.spki_der) {
            return Err(BindingError::ReportData("certificate's public key"));
        }
        Ok(BoundEvidence {
            evidence: Evidence::SgxDcapQuote(quote.clone()),
            nonce: None,
            extension: EvidenceExtension::GramineLegacy,
            report_data,
        })
    }

    /// The evidence to verify: the tagged evidence if present, else the legacy quote, with
    /// its binding checked.
    ///
    /// # Errors
    ///
    /// [`BindingError`] if the chosen evidence does not bind the key.
    pub fn bound_evidence(&self) -> Result<BoundEvidence, BindingError> {
        if self.tagged.is_some() {
            self.check_tagged_binding()
        } else {
            self.check_legacy_binding()
        }
    }
}

/// Generating an RA-TLS certificate failed (a local failure).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The platform produced no evidence.
    #[error("producing evidence")]
    Evidence(#[from] EvidenceError),
    /// rcgen failed to generate the key or the certificate.
    #[error("generating the RA-TLS key or certificate")]
    Certificate(#[from] rcgen::Error),
    /// The nonce is longer than [`crate::claims::MAX_NONCE_LEN`].
    #[error("nonce is longer than {} bytes", crate::claims::MAX_NONCE_LEN)]
    NonceTooLong,
    /// The time is not representable in a certificate.
    #[error("time {0} (unix) is not representable in a certificate")]
    Time(u64),
    /// The system random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// A fresh key with an RA-TLS certificate over it.
pub struct IssuedCert {
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key, PKCS#8 DER. Secret; keep it in memory.
    pub key_pkcs8: PrivatePkcs8KeyDer<'static>,
    /// The evidence in the certificate.
    pub evidence: Evidence,
    /// The claims in the certificate.
    pub claims: Claims,
    /// When it was issued (`notBefore`).
    pub issued_at: UnixTime,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("evidence", &self.evidence)
            .field("issued_at", &self.issued_at.as_secs())
            .finish_non_exhaustive()
    }
}

fn offset_time(secs: u64) -> Result<OffsetDateTime, IssueError> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(IssueError::Time(secs))
}

/// Generate a fresh P-256 key, ask `source` for evidence over claims binding it (and
/// `nonce`, if given), and self-sign a certificate valid from `now` for `validity`.
///
/// # Errors
///
/// [`IssueError`] if the evidence source fails or the certificate cannot be generated.
pub fn issue_certificate(
    source: &dyn EvidenceSource,
    nonce: Option<Vec<u8>>,
    now: UnixTime,
    validity: Duration,
) -> Result<IssuedCert, IssueError> {
    issue_certificate_for(source, nonce, now, validity, Vec::new())
}

/// As [`issue_certificate`], with `names` (host names and IP addresses) in the
/// certificate's subjectAltName, so that TLS clients that check the server's name, as
/// standard gRPC clients do, accept the certificate for those names once they trust it.
/// The evidence is the same either way: it binds the key, not the names.
///
/// # Errors
///
/// As for [`issue_certificate`].
pub fn issue_certificate_for(
    source: &dyn EvidenceSource,
    nonce: Option<Vec<u8>>,
    now: UnixTime,
    validity: Duration,
    names: Vec<rcgen::SanType>,
) -> Result<IssuedCert, IssueError> {
    if nonce
        .as_ref()
        .is_some_and(|n| n.len() > crate::claims::MAX_NONCE_LEN)
    {
        return Err(IssueError::NonceTooLong);
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let claims = Claims::for_public_key(&key.subject_public_key_info(), nonce);
    let claims_buffer = claims.encode();
    let evidence = source.evidence(&report_data_for(&claims_buffer))?;
    let extension = encode_tagged_evidence(&evidence, &claims_buffer);
    let cert_der = self_signed(&key, extension, now, validity, names)?;
    Ok(IssuedCert {
        cert_der,
        key_pkcs8: PrivatePkcs8KeyDer::from(key.serialize_der()),
        evidence,
        claims,
        issued_at: now,
    })
}

/// Self-sign a certificate for `key` carrying `tagged_evidence` as its 2.23.133.5.4.9
/// extension. The building block of [`issue_certificate`], public so that tests can build
/// certificates whose evidence does not match their key.
///
/// # Errors
///
/// [`IssueError`] if rcgen fails or the times are not representable.
pub fn self_signed_with_extension(
    key: &KeyPair,
    tagged_evidence: Vec<u8>,
    now: UnixTime,
    validity: Duration,
) -> Result<CertificateDer<'static>, IssueError> {
    self_signed(key, tagged_evidence, now, validity, Vec::new())
}

fn self_signed(
    key: &KeyPair,
    tagged_evidence: Vec<u8>,
    now: UnixTime,
    validity: Duration,
    names: Vec<rcgen::SanType>,
) -> Result<CertificateDer<'static>, IssueError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CERT_COMMON_NAME);
    params.distinguished_name = dn;
    params.not_before = offset_time(now.as_secs())?;
    params.not_after = offset_time(now.as_secs().saturating_add(validity.as_secs()))?;
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| IssueError::Random)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        OID_TCG_DICE_TAGGED_EVIDENCE,
        tagged_evidence,
    )];
    Ok(params.self_signed(key)?.der().clone())
}
