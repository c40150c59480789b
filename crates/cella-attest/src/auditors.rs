//! Auditor signatures over the attestation policy: k of n named auditors must sign it.
//!
//! Three files:
//!
//! - the policy, `attestation-policy.toml`, signed byte for byte as it is on disk (its
//!   canonical form *is* its bytes: what the auditor read is what is enforced);
//! - the detached signatures, `attestation-policy.toml.sig`:
//!   ```toml
//!   [[signatures]]
//!   auditor = "<Ed25519 public key, 64 hex>"
//!   signature = "<Ed25519 signature, 128 hex>"
//!   ```
//! - the trust root, naming the auditors and the threshold k:
//!   ```toml
//!   threshold = 2
//!   [[auditors]]
//!   name = "alice"
//!   public_key = "<64 hex>"
//!   ```
//!
//! Each signature is Ed25519 over [`POLICY_SIGNING_CONTEXT`] ‖ the policy bytes. Signatures
//! are checked before the policy is parsed. A signature by a listed auditor that does not
//! verify refuses the policy outright (it was altered after signing, or the signature file
//! is corrupt); signatures by keys outside the trust root are ignored; each auditor counts
//! once.

use std::path::Path;

use ring::signature::Ed25519KeyPair;

use crate::ed25519::{Ed25519PublicKey, SIGNATURE_LEN, decode_hex};
use crate::policy::{MAX_POLICY_LEN, Policy, PolicyError, Provenance, read_bounded};

/// Domain separation for policy signatures.
pub const POLICY_SIGNING_CONTEXT: &[u8] = b"cella attestation policy v1\0";
/// Most auditors in a trust root, and most signatures in a signature file: audit boards
/// are small; the bound keeps verification cheap.
pub const MAX_AUDITORS: usize = 64;
/// Largest trust-root or signature file: [`MAX_AUDITORS`] entries are under 16 KiB.
pub const MAX_AUDIT_FILE_LEN: usize = 64 * 1024;

/// A named auditor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auditor {
    /// Human-readable name, for messages.
    pub name: String,
    /// The auditor's Ed25519 key.
    pub public_key: Ed25519PublicKey,
}

/// The auditors whose signatures count and how many are required.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// k: valid signatures required.
    pub threshold: usize,
    /// n: the auditors.
    pub auditors: Vec<Auditor>,
}

/// One detached signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signer's key.
    pub auditor: Ed25519PublicKey,
    /// The signature, 128 hex digits.
    pub signature: String,
}

/// The detached signature file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySignatures {
    /// The signatures.
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
}

/// The policy's signatures are missing, invalid or too few, or the audit files are invalid.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The trust root is malformed or inconsistent.
    #[error("policy trust root is invalid: {0}")]
    TrustRoot(String),
    /// The signature file is malformed.
    #[error("policy signature file is invalid: {0}")]
    SignatureFile(String),
    /// Reading a file failed.
    #[error(transparent)]
    Read(PolicyError),
    /// No signatures at all, though the trust root requires them.
    #[error("the policy carries no auditor signatures; {threshold} of {auditors} required")]
    SignaturesMissing {
        /// k.
        threshold: usize,
        /// n.
        auditors: usize,
    },
    /// A listed auditor's signature does not verify.
    #[error("auditor {auditor:?}'s signature over the policy is invalid")]
    InvalidSignature {
        /// The auditor's name.
        auditor: String,
    },
    /// Fewer valid signatures than the threshold.
    #[error(
        "the policy is signed by {valid} auditor(s) of the trust root ({signed_by:?}); \
         {threshold} required"
    )]
    BelowThreshold {
        /// Valid signatures from distinct listed auditors.
        valid: usize,
        /// Their names.
        signed_by: Vec<String>,
        /// k.
        threshold: usize,
    },
    /// The signatures are fine but the policy itself is invalid.
    #[error(transparent)]
    Policy(PolicyError),
}

impl TrustRoot {
    /// Parse and validate a trust root.
    ///
    /// # Errors
    ///
    /// [`AuditError::TrustRoot`] if it does not parse, `threshold` is not in 1..=n, or an
    /// auditor name or key repeats.
    pub fn from_toml_str(text: &str) -> Result<Self, AuditError> {
        if text.len() > MAX_AUDIT_FILE_LEN {
            return Err(AuditError::TrustRoot("file too large".into()));
        }
        let root: TrustRoot =
            toml::from_str(text).map_err(|e| AuditError::TrustRoot(e.to_string()))?;
        let n = root.auditors.len();
        if n > MAX_AUDITORS {
            return Err(AuditError::TrustRoot(format!(
                "more than {MAX_AUDITORS} auditors"
            )));
        }
        if root.threshold == 0 || root.threshold > n {
            return Err(AuditError::TrustRoot(format!(
                "threshold {} must be between 1 and the number of auditors ({n})",
                root.threshold
            )));
        }
        for (i, a) in root.auditors.iter().enumerate() {
            if root.auditors[..i]
                .iter()
                .any(|b| b.name == a.name || b.public_key == a.public_key)
            {
                return Err(AuditError::TrustRoot(format!(
                    "auditor {:?} or its key is listed twice",
                    a.name
                )));
            }
        }
        Ok(root)
    }

    /// Read a trust-root file.
    ///
    /// # Errors
    ///
    /// As [`TrustRoot::from_toml_str`], or [`AuditError::Read`].
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        Self::from_toml_str(&read_text(path)?)
    }
}

impl PolicySignatures {
    /// Parse a signature file.
    ///
    /// # Errors
    ///
    /// [`AuditError::SignatureFile`] if it does not parse or lists too many signatures.
    pub fn from_toml_str(text: &str) -> Result<Self, AuditError> {
        if text.len() > MAX_AUDIT_FILE_LEN {
            return Err(AuditError::SignatureFile("file too large".into()));
        }
        let sigs: PolicySignatures =
            toml::from_str(text).map_err(|e| AuditError::SignatureFile(e.to_string()))?;
        if sigs.signatures.len() > MAX_AUDITORS {
            return Err(AuditError::SignatureFile(format!(
                "more than {MAX_AUDITORS} signatures"
            )));
        }
        Ok(sigs)
    }

    /// The file's TOML text.
    ///
    /// # Errors
    ///
    /// [`AuditError::SignatureFile`] if serialisation fails.
    pub fn to_toml_string(&self) -> Result<String, AuditError> {
        toml::to_string(self).map_err(|e| AuditError::SignatureFile(e.to_string()))
    }
}

/// Sign policy bytes as an auditor.
pub fn sign_policy(policy_bytes: &[u8], auditor_key: &Ed25519KeyPair) -> SignatureEntry {
    use ring::signature::KeyPair;
    let mut public = [0u8; 32];
    public.copy_from_slice(auditor_key.public_key().as_ref());
    SignatureEntry {
        auditor: Ed25519PublicKey(public),
        signature: hex::encode(auditor_key.sign(&signed_message(policy_bytes)).as_ref()),
    }
}

fn signed_message(policy_bytes: &[u8]) -> Vec<u8> {
    [POLICY_SIGNING_CONTEXT, policy_bytes].concat()
}

/// Check the auditors' signatures over `policy_bytes`, then parse the policy.
///
/// # Errors
///
/// [`AuditError::SignaturesMissing`] if `signatures` is `None` or empty,
/// [`AuditError::InvalidSignature`] if a listed auditor's signature does not verify,
/// [`AuditError::BelowThreshold`] if fewer than k distinct listed auditors signed, and
/// [`AuditError::Policy`] if the signed policy is invalid.
pub fn verify_signed_policy(
    policy_bytes: &[u8],
    signatures: Option<&PolicySignatures>,
    root: &TrustRoot,
) -> Result<Policy, AuditError> {
    let entries = signatures.map(|s| s.signatures.as_slice()).unwrap_or(&[]);
    if entries.is_empty() {
        return Err(AuditError::SignaturesMissing {
            threshold: root.threshold,
            auditors: root.auditors.len(),
        });
    }
    let message = signed_message(policy_bytes);
    let mut signed_by: Vec<String> = Vec::new();
    for entry in entries {
        let Some(auditor) = root.auditors.iter().find(|a| a.public_key == entry.auditor) else {
            continue;
        };
        let valid = decode_hex::<SIGNATURE_LEN>(&entry.signature)
            .is_ok_and(|sig| auditor.public_key.verifies(&message, &sig));
        if !valid {
            return Err(AuditError::InvalidSignature {
                auditor: auditor.name.clone(),
            });
        }
        if !signed_by.contains(&auditor.name) {
            signed_by.push(auditor.name.clone());
        }
    }
    if signed_by.len() < root.threshold {
        return Err(AuditError::BelowThreshold {
            valid: signed_by.len(),
            signed_by,
            threshold: root.threshold,
        });
    }
    let policy = Policy::from_toml_bytes(policy_bytes).map_err(AuditError::Policy)?;
    Ok(policy.with_provenance(Provenance::Signed {
        auditors: signed_by,
        threshold: root.threshold,
    }))
}

/// Load a signed policy: the policy file, its signature file (missing means no
/// signatures) and the trust root.
///
/// # Errors
///
/// As [`verify_signed_policy`], plus [`AuditError::Read`] for unreadable files.
pub fn load_signed_policy(
    policy_path: &Path,
    signatures_path: &Path,
    trust_root_path: &Path,
) -> Result<Policy, AuditError> {
    let root = TrustRoot::load(trust_root_path)?;
    let policy_bytes = read_bounded(policy_path, MAX_POLICY_LEN).map_err(AuditError::Read)?;
    let signatures = match std::fs::metadata(signatures_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(PolicySignatures::from_toml_str(&read_text(
            signatures_path,
        )?)?),
    };
    verify_signed_policy(&policy_bytes, signatures.as_ref(), &root)
}

fn read_text(path: &Path) -> Result<String, AuditError> {
    let bytes = read_bounded(path, MAX_AUDIT_FILE_LEN).map_err(AuditError::Read)?;
    String::from_utf8(bytes).map_err(|_| AuditError::Read(PolicyError::NotUtf8))
}
