//! Freshness on our side: the key, the evidence and the certificate are renewed on a timer.
//!
//! A [`CertResolver`] holds the current identity and hands it to rustls for every handshake
//! (as server or as client); [`spawn_renewal`] replaces it every interval with a fresh key
//! and fresh evidence from an [`Issuer`]. Handshakes in flight keep the identity they
//! started with. If renewal fails, the old identity stays and the failure is logged: peers
//! will refuse it once it is older than their `max_evidence_age_secs`, which is the
//! intended, visible failure.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::clock::{Clock, SystemClock};
use crate::evidence::EvidenceSource;
use crate::ratls::{IssueError, IssuedCert, issue_certificate_for};

/// Default lifetime of a certificate: twice the default renewal interval, so a peer never
/// sees an expired certificate between renewals.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(2 * 3600);
/// Default renewal interval. An hour keeps evidence well inside typical
/// `max_evidence_age_secs` values (a day) while costing one quote an hour.
pub const DEFAULT_RENEWAL_INTERVAL: Duration = Duration::from_secs(3600);

/// Installing an identity failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// Issuing a certificate failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// rustls refused the key.
    #[error("loading the RA-TLS key into rustls")]
    Key(#[source] rustls::Error),
}

/// Issues fresh RA-TLS identities from an evidence source.
#[derive(Debug, Clone)]
pub struct Issuer {
    source: Arc<dyn EvidenceSource>,
    clock: Arc<dyn Clock>,
    validity: Duration,
    nonce: Option<Vec<u8>>,
    names: Vec<rcgen::SanType>,
}

impl Issuer {
    /// Issue from `source`, certificates valid for [`DEFAULT_CERT_VALIDITY`].
    pub fn new(source: Arc<dyn EvidenceSource>) -> Self {
        Self {
            source,
            clock: Arc::new(SystemClock),
            validity: DEFAULT_CERT_VALIDITY,
            nonce: None,
            names: Vec::new(),
        }
    }

    /// Use `validity` for the certificates.
    #[must_use]
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Use `clock` for issue times.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Put `nonce` in the claims (a LibOS instance's launch nonce).
    #[must_use]
    pub fn with_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Put `names` in the certificates' subjectAltName (see
    /// [`crate::ratls::issue_certificate_for`]).
    #[must_use]
    pub fn with_names(mut self, names: Vec<rcgen::SanType>) -> Self {
        self.names = names;
        self
    }

    /// The evidence source.
    pub fn source(&self) -> &Arc<dyn EvidenceSource> {
        &self.source
    }

    /// A fresh key, evidence and certificate.
    ///
    /// # Errors
    ///
    /// [`IssueError`] if the evidence source or certificate generation fails.
    pub fn issue(&self) -> Result<IssuedCert, IssueError> {
        issue_certificate_for(
            self.source.as_ref(),
            self.nonce.clone(),
            self.clock.now(),
            self.validity,
            self.names.clone(),
        )
    }
}

/// An identity as rustls uses it, and its certificate.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) cert: CertificateDer<'static>,
}

fn certified_key(cert: IssuedCert) -> Result<Current, RenewError> {
    let key = CertifiedKey::from_der(
        vec![cert.cert_der.clone()],
        PrivateKeyDer::Pkcs8(cert.key_pkcs8),
        &crate::tls::provider(),
    )
    .map_err(RenewError::Key)?;
    Ok(Current {
        key: Arc::new(key),
        cert: cert.cert_der,
    })
}

/// The current RA-TLS identity, for rustls servers and clients.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Current>,
}

impl CertResolver {
    /// A resolver presenting `cert`.
    ///
    /// # Errors
    ///
    /// [`RenewError::Key`] if rustls does not accept the key.
    pub fn new(cert: IssuedCert) -> Result<Self, RenewError> {
        Ok(Self {
            current: RwLock::new(certified_key(cert)?),
        })
    }

    /// A resolver presenting a certificate freshly issued by `issuer`.
    ///
    /// # Errors
    ///
    /// [`RenewError`] if issuing fails.
    pub fn issue(issuer: &Issuer) -> Result<Self, RenewError> {
        Self::new(issuer.issue()?)
    }

    /// Present `cert` from now on.
    ///
    /// # Errors
    ///
    /// [`RenewError::Key`] if rustls does not accept the key; the old identity stays.
    pub fn install(&self, cert: IssuedCert) -> Result<(), RenewError> {
        let key = certified_key(cert)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    /// The certificate presented now.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.read().cert.clone()
    }

    /// The key and certificate presented now, together (a renewal between reading one
    /// and the other would pair a key with another key's certificate).
    pub(crate) fn certified(&self) -> Current {
        self.read().clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.read().key.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Renew `resolver`'s identity from `issuer` every `interval`, on the current tokio
/// runtime. Issuing runs on the blocking pool (reading `/dev/attestation` blocks); after
/// each successful renewal `on_renewed` gets the new certificate (e.g. to publish it).
///
/// The task holds the resolver weakly and ends at the first tick after the last strong
/// reference (the TLS configuration using it) is dropped, or when the handle is aborted.
pub fn spawn_renewal(
    resolver: &Arc<CertResolver>,
    issuer: Arc<Issuer>,
    interval: Duration,
    mut on_renewed: impl FnMut(&CertificateDer<'static>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let resolver = Arc::downgrade(resolver);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            let issuer = issuer.clone();
            let issued = tokio::task::spawn_blocking(move || issuer.issue()).await;
            let result = match issued {
                Ok(Ok(cert)) => resolver.install(cert),
                Ok(Err(e)) => Err(e.into()),
                Err(join) => {
                    tracing::error!(error = %join, "RA-TLS renewal task failed");
                    continue;
                }
            };
            match result {
                Ok(()) => {
                    tracing::debug!("RA-TLS identity renewed");
                    on_renewed(&resolver.certificate());
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "RA-TLS identity renewal failed; keeping the previous certificate"
                ),
            }
        }
    })
}
