//! rustls certificate verifiers that attest the peer, and configurations that use them.
//!
//! [`AttestedServerVerifier`] (for clients) and [`AttestedClientVerifier`] (for servers that
//! require attested clients, i.e. mutual attestation) parse the peer's RA-TLS certificate,
//! check its evidence, key binding, freshness and optional nonce against the policy for a
//! role ([`crate::Verifier`]), and verify the handshake signature with the ring provider.
//! Server names are not checked: an attested peer is identified by what it runs, not by a
//! DNS name.
//!
//! A refusal reaches the user as `rustls::Error::InvalidCertificate(CertificateError::Other)`
//! wrapping an [`AttestationFailure`] whose text is the full reason; [`attestation_failure`]
//! gets it back from a rustls error.
//!
//! The configurations built here use TLS 1.3 only and ring only.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};

use crate::renew::CertResolver;
use crate::verify::{Appraisal, VerifiedEvidence, Verifier, VerifyError};

/// A verification failure, as carried inside a rustls error. Its `Display` and `Debug`
/// both print the whole reason.
pub struct AttestationFailure(pub VerifyError);

impl std::fmt::Display for AttestationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for AttestationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for AttestationFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn to_rustls(error: VerifyError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        AttestationFailure(error),
    ))))
}

/// The attestation failure inside a rustls error, if it is one.
pub fn attestation_failure(error: &rustls::Error) -> Option<&VerifyError> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => inner
            .downcast_ref::<AttestationFailure>()
            .map(|failure| &failure.0),
        _ => None,
    }
}

/// The ring crypto provider used by every configuration here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Shared between the two verifiers.
#[derive(Debug)]
struct Attester {
    verifier: Arc<Verifier>,
    role: String,
    nonce: Option<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    last: Mutex<Option<Appraisal>>,
}

impl Attester {
    fn new(verifier: Arc<Verifier>, role: String) -> Self {
        Self {
            verifier,
            role,
            nonce: None,
            provider: provider(),
            last: Mutex::new(None),
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let appraisal =
            self.verifier
                .appraise_certificate(&self.role, end_entity, self.nonce.as_deref());
        let result = match &appraisal.verdict {
            Ok(_) => Ok(()),
            Err(e) => Err(to_rustls(e.clone())),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(appraisal);
        result
    }

    fn take_last(&self) -> Option<Appraisal> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client's verifier of an attested server.
#[derive(Debug)]
pub struct AttestedServerVerifier(Attester);

impl AttestedServerVerifier {
    /// Attest servers as `role` (usually [`crate::policy::roles::NODE`]) with `verifier`.
    pub fn new(verifier: Arc<Verifier>, role: impl Into<String>) -> Self {
        Self(Attester::new(verifier, role.into()))
    }

    /// Require the server's claims to carry exactly `nonce` (a fresh launch nonce).
    #[must_use]
    pub fn expect_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.0.nonce = Some(nonce);
        self
    }

    /// The appraisal of the last certificate checked, success or failure, taken out. Meant
    /// for one-shot tools (`cella attest`) that use one verifier per connection.
    pub fn take_last_appraisal(&self) -> Option<Appraisal> {
        self.0.take_last()
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// A server's verifier of attested clients (mutual attestation). Client certificates are
/// mandatory.
#[derive(Debug)]
pub struct AttestedClientVerifier(Attester);

impl AttestedClientVerifier {
    /// Attest clients as `role` with `verifier`.
    pub fn new(verifier: Arc<Verifier>, role: impl Into<String>) -> Self {
        Self(Attester::new(verifier, role.into()))
    }

    /// Require the client's claims to carry exactly `nonce`.
    #[must_use]
    pub fn expect_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.0.nonce = Some(nonce);
        self
    }

    /// The appraisal of the last certificate checked, taken out.
    pub fn take_last_appraisal(&self) -> Option<Appraisal> {
        self.0.take_last()
    }
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// A TLS 1.3 client configuration that attests the server with `server_verifier`, and
/// presents `identity` as its own RA-TLS certificate if given (mutual attestation).
///
/// # Errors
///
/// A rustls error if the provider does not support TLS 1.3 (it does).
pub fn client_config(
    server_verifier: Arc<AttestedServerVerifier>,
    identity: Option<Arc<CertResolver>>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier);
    Ok(match identity {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    })
}

/// A TLS 1.3 server configuration presenting `identity`, and attesting clients with
/// `client_verifier` if given.
///
/// # Errors
///
/// A rustls error if the provider does not support TLS 1.3 (it does).
pub fn server_config(
    identity: Arc<CertResolver>,
    client_verifier: Option<Arc<AttestedClientVerifier>>,
) -> Result<ServerConfig, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(identity))
}

/// Verify the peer of an established connection again, to obtain its
/// [`VerifiedEvidence`] (the rustls verifier can only say yes or no).
///
/// # Errors
///
/// [`VerifyError`] if the peer presented no certificate or it does not verify now.
pub fn verified_peer(
    verifier: &Verifier,
    role: &str,
    peer_certificates: Option<&[CertificateDer<'_>]>,
    expected_nonce: Option<&[u8]>,
) -> Result<VerifiedEvidence, VerifyError> {
    let cert = peer_certificates
        .and_then(|certs| certs.first())
        .ok_or_else(|| VerifyError::Refused {
            role: role.to_owned(),
            reason: crate::ratls::CertError::NoEvidence.into(),
        })?;
    verifier.verify_certificate(role, cert, expected_nonce)
}
