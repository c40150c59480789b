//! The node's TLS identity: a self-signed certificate that clients pin, and its private
//! key, kept sealed under the node's sealing key (never in plaintext on disk).
//!
//! Attested RA-TLS certificates replace this identity later; the API does not change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cella_crypto::SealingKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Additional data binding the sealed TLS key to its purpose.
const KEY_AAD: &[u8] = b"cella/tls-key/v1";

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
    /// Generating the certificate.
    #[error("generating the TLS certificate")]
    Generate(#[source] rcgen::Error),
    /// The sealed key does not unseal under this node's sealing key.
    #[error("the sealed TLS key {path} does not unseal with this node's sealing key")]
    Unseal {
        /// The file.
        path: PathBuf,
    },
    /// The certificate file holds no certificate.
    #[error("{path} holds no PEM certificate")]
    BadCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// A certificate and its private key.
pub struct NodeIdentity {
    cert_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity").finish_non_exhaustive()
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

impl NodeIdentity {
    /// Loads the identity from `dir` (`cert.pem`, `key.sealed`), creating it on first
    /// start for the given host names and addresses.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file that failed.
    pub fn load_or_create(
        dir: &Path,
        sealing: &SealingKey,
        names: &[String],
    ) -> Result<Self, TlsError> {
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.sealed");
        if !cert_path.exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let mut params =
                rcgen::CertificateParams::new(names.to_vec()).map_err(TlsError::Generate)?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "cella node");
            let key = rcgen::KeyPair::generate().map_err(TlsError::Generate)?;
            let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
            write_private(&key_path, &sealing.seal(KEY_AAD, &key.serialize_der()))?;
            write_private(&cert_path, cert.pem().as_bytes())?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let cert = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).map_err(
            |_| TlsError::BadCertificate {
                path: cert_path.clone(),
            },
        )?;
        let sealed = std::fs::read(&key_path).map_err(io(&key_path))?;
        let key = sealing
            .unseal(KEY_AAD, &sealed)
            .map_err(|_| TlsError::Unseal { path: key_path })?;
        Ok(Self {
            cert_pem,
            cert,
            key: PrivatePkcs8KeyDer::from(key),
        })
    }

    /// The certificate in PEM, for clients to pin.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS 1.3-only server configuration offering HTTP/2.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] when rustls refuses the key.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_key_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = SealingKey::generate();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = NodeIdentity::load_or_create(dir.path(), &sealing, &names).unwrap();
        let b = NodeIdentity::load_or_create(dir.path(), &sealing, &names).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert!(a.server_config().is_ok());
        let on_disk = std::fs::read(dir.path().join("key.sealed")).unwrap();
        let der = a.key.secret_pkcs8_der();
        assert!(!on_disk.windows(der.len()).any(|w| w == der));
        let other = SealingKey::generate();
        assert!(matches!(
            NodeIdentity::load_or_create(dir.path(), &other, &names),
            Err(TlsError::Unseal { .. })
        ));
    }
}
