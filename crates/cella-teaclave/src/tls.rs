//! The certificate Teaclave's SDK expects from its services in SGX simulation mode, and
//! the TLS configuration that presents it.
//!
//! Teaclave's services present a self-signed X.509 v3 certificate (serial 1, ECDSA
//! P-256, ecdsa-with-SHA256, issuer CN `Teaclave`, subject CN the literal `CN=Teaclave`,
//! 90 days) with exactly one non-critical extension, OID 2.16.840.1.113730.1.13, whose
//! value is the JSON of an attestation report. A simulation build carries the empty
//! report `{"report":[],"signature":[],"certs":[]}`, and the SDK under `SGX_MODE=SW`
//! checks nothing but that a certificate is there. Cella presents the same shape, and
//! only when the node runs on simulation evidence: it has no Intel attestation report
//! to put there, and inventing one would be a downgrade a hardware-mode client could not
//! see (docs/teaclave.md, "TLS").

use std::sync::Arc;

use rcgen::{
    CertificateParams, CustomExtension, DnType, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// OID of the Netscape comment extension, where Teaclave puts its attestation report.
pub const REPORT_EXTENSION_OID: [u64; 7] = [2, 16, 840, 1, 113_730, 1, 13];
/// The extension's value in a simulation build: an empty report.
pub const SIMULATION_REPORT: &str = r#"{"report":[],"signature":[],"certs":[]}"#;
/// How long the certificate is valid, as Teaclave's: 90 days.
const VALIDITY: time::Duration = time::Duration::days(90);

/// The certificate or TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the key or signing the certificate failed.
    #[error("making the Teaclave-shaped certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the certificate or its key.
    #[error("setting up TLS for the Teaclave listeners")]
    Config(#[source] rustls::Error),
}

/// A fresh key and the simulation-mode certificate over it. The key lives only in
/// memory: a node makes a new one at every start, as Teaclave's services do.
///
/// # Errors
///
/// [`TlsError::Certificate`] when key generation or signing fails.
pub fn simulation_certificate()
-> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Certificate)?;
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from(1u64));
    params.not_before = now;
    params.not_after = now + VALIDITY;
    // Teaclave's subject is the string "CN=Teaclave" set as the CN itself.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "CN=Teaclave");
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &REPORT_EXTENSION_OID,
        SIMULATION_REPORT.as_bytes().to_vec(),
    )];
    let mut issuer_params = CertificateParams::default();
    issuer_params.distinguished_name = rcgen::DistinguishedName::new();
    issuer_params
        .distinguished_name
        .push(DnType::CommonName, "Teaclave");
    let issuer = Issuer::new(issuer_params, &key);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(TlsError::Certificate)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key_der))
}

/// A TLS server configuration presenting a fresh [`simulation_certificate`], ALPN `h2`
/// only, no client certificate (Teaclave's public endpoints ask none).
///
/// # Errors
///
/// [`TlsError`] when the certificate cannot be made or rustls refuses it.
pub fn server_config() -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = simulation_certificate()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::*;

    use super::*;

    #[test]
    fn the_certificate_has_teaclaves_shape_and_one_extension() {
        let (der, _) = simulation_certificate().unwrap();
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        assert_eq!(cert.version(), X509Version::V3);
        assert_eq!(cert.raw_serial(), [1]);
        let cn = |n: &X509Name<'_>| {
            n.iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(cn(cert.subject()).as_deref(), Some("CN=Teaclave"));
        assert_eq!(cn(cert.issuer()).as_deref(), Some("Teaclave"));
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 90);
        // Self-signed: the signature verifies with the certificate's own key.
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            cert.public_key().subject_public_key.data.as_ref(),
        );
        key.verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .unwrap();
        let exts = cert.extensions();
        assert_eq!(exts.len(), 1, "{exts:?}");
        assert_eq!(exts[0].oid.to_id_string(), "2.16.840.1.113730.1.13");
        assert!(!exts[0].critical);
        // The SDK reads the extension's raw value as JSON.
        let report: serde_json::Value = serde_json::from_slice(exts[0].value).unwrap();
        assert_eq!(
            report,
            serde_json::json!({"report": [], "signature": [], "certs": []})
        );
        // A fresh key each time.
        let (again, _) = simulation_certificate().unwrap();
        assert_ne!(again, der);
    }
}
