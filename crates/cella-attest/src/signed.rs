//! Statements signed with an attested key: the node's current RA-TLS key signs a
//! message, and anyone holding the attestation policy checks, offline, that the key was
//! attested (the certificate's evidence binds it and satisfies the policy as of the
//! statement's time) and that it signed exactly that message.
//!
//! The signature is a TLS 1.3 signature scheme over the message as given (callers put a
//! domain-separation prefix in the message), so the check reuses rustls's verification
//! of the schemes TLS 1.3 allows.

use std::sync::Arc;

use rustls::SignatureScheme;
use x509_parser::prelude::FromDer;

use crate::clock::FixedClock;
use crate::ratls::RaTlsCert;
use crate::renew::CertResolver;
use crate::verify::{VerifiedEvidence, VerifyError};
use crate::{Policy, Verifier};

/// Schemes the signer may choose, strongest first; all are TLS 1.3 schemes, which the
/// verifier accepts.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
];

/// A signature by an attested key, with the certificate that carries its evidence.
#[derive(Clone, PartialEq, Eq)]
pub struct AttestedSignature {
    /// The signer's RA-TLS certificate, DER.
    pub cert_der: Vec<u8>,
    /// The TLS signature scheme (its IANA code point, e.g. 0x0403 for ECDSA P-256 SHA-256).
    pub scheme: u16,
    /// The signature.
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for AttestedSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedSignature")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// An attested signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    /// The signing key refused to sign.
    #[error("signing with the attested key")]
    Sign(#[source] rustls::Error),
    /// The certificate's evidence does not satisfy the policy at the statement's time.
    #[error("the signer's evidence")]
    Evidence(#[source] VerifyError),
    /// The certificate does not parse.
    #[error("the signer's certificate")]
    Certificate(#[source] crate::ratls::CertError),
    /// The signature does not verify with the certificate's key.
    #[error("the signature does not verify with the attested key")]
    Signature,
}

impl CertResolver {
    /// Signs `message` with the key of the certificate presented now.
    ///
    /// # Errors
    ///
    /// [`SignedError::Sign`] when the key offers none of the schemes or fails.
    pub fn sign(&self, message: &[u8]) -> Result<AttestedSignature, SignedError> {
        let current = self.certified();
        let signer = current
            .key
            .key
            .choose_scheme(SCHEMES)
            .ok_or(SignedError::Sign(rustls::Error::General(
                "the attested key supports no TLS 1.3 signature scheme".into(),
            )))?;
        let scheme = signer.scheme();
        let signature = signer.sign(message).map_err(SignedError::Sign)?;
        Ok(AttestedSignature {
            cert_der: current.cert.to_vec(),
            scheme: u16::from(scheme),
            signature,
        })
    }
}

/// Checks `signature` over `message`: the certificate's evidence satisfies `role` of
/// `policy` as of `at_unix_secs` (the statement's time, so a statement stays verifiable
/// after its evidence has aged), and its key signed the message.
///
/// # Errors
///
/// [`SignedError`] naming the first link that does not hold.
pub fn verify(
    policy: &Policy,
    role: &str,
    at_unix_secs: u64,
    message: &[u8],
    signature: &AttestedSignature,
) -> Result<VerifiedEvidence, SignedError> {
    let verifier =
        Verifier::new(policy.clone()).with_clock(Arc::new(FixedClock::at_unix_secs(at_unix_secs)));
    let evidence = verifier
        .verify_certificate(role, &signature.cert_der, None)
        .map_err(SignedError::Evidence)?;
    let cert = RaTlsCert::parse(&signature.cert_der).map_err(SignedError::Certificate)?;
    let scheme = SignatureScheme::from(signature.scheme);
    if !SCHEMES.contains(&scheme) {
        return Err(SignedError::Signature);
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&cert.spki_der)
        .map_err(|_| SignedError::Signature)?;
    let algorithms = crate::tls::provider().signature_verification_algorithms;
    let verified = algorithms
        .mapping
        .iter()
        .filter(|(s, _)| *s == scheme)
        .flat_map(|(_, algs)| algs.iter())
        .any(|alg| {
            alg.verify_signature(&spki.subject_public_key.data, message, &signature.signature)
                .is_ok()
        });
    if !verified {
        return Err(SignedError::Signature);
    }
    Ok(evidence)
}
