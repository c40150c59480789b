//! The client's TLS: how the node is trusted, and the connector that gives tonic a TLS
//! stream.
//!
//! Trust is a seam: [`ServerTrust`] names how the node is authenticated and
//! [`client_config`] turns it into a `rustls::ClientConfig`. Two ways:
//! [`ServerTrust::Attested`] checks the node's RA-TLS certificate against an attestation
//! policy (role `node`, see `docs/attestation.md`) during the handshake, so no request,
//! token or key is sent to a node that is not attested; [`ServerTrust::Pinned`] accepts
//! exactly one certificate (the node's `<data_dir>/tls/cert.pem` of its current run).
//!
//! Invariants:
//! - TLS 1.3 only, ALPN `h2`, `ring` as the only crypto provider;
//! - the pinned verifier accepts exactly one end-entity certificate (byte equality) with
//!   no intermediates, and still checks that the peer holds its key by verifying the
//!   handshake signature; it ignores the server name, because the certificate itself is
//!   what is trusted;
//! - every connect is bounded by [`HANDSHAKE_TIMEOUT`], so a peer that stalls gives an
//!   error, never a hang.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cella_attest::tls::provider;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::address::Address;
use crate::error::{ClientError, chain_message};

/// Longest the TCP connect plus TLS handshake may take: generous for a loaded node on a
/// slow link, short enough that a wrong address or a stalled peer fails visibly.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How the client decides that it is talking to the right node.
#[derive(Clone)]
#[non_exhaustive]
pub enum ServerTrust {
    /// Accept exactly this end-entity certificate (DER), nothing else. The node writes
    /// its certificate to `<data_dir>/tls/cert.pem`; hand that file to the client.
    Pinned(CertificateDer<'static>),
    /// Accept a node whose RA-TLS evidence the verifier accepts for role `node`.
    Attested(Arc<cella_attest::Verifier>),
}

impl PartialEq for ServerTrust {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ServerTrust::Pinned(a), ServerTrust::Pinned(b)) => a == b,
            (ServerTrust::Attested(a), ServerTrust::Attested(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for ServerTrust {}

impl ServerTrust {
    /// Trust the first certificate in `pem` (the node's `tls/cert.pem`).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidCertificate`] when `pem` holds no PEM certificate.
    pub fn pinned_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let cert =
            CertificateDer::from_pem_slice(pem).map_err(|e| ClientError::InvalidCertificate {
                reason: format!("expected a PEM \"CERTIFICATE\" block: {e}"),
            })?;
        Ok(ServerTrust::Pinned(cert))
    }

    /// Trust nodes that `policy` accepts as role `node` (e.g. the node's
    /// `<data_dir>/tls/attestation-policy.sim.toml`, or an audited policy).
    pub fn attested(policy: cella_attest::Policy) -> Self {
        ServerTrust::Attested(Arc::new(cella_attest::Verifier::new(policy)))
    }

    /// Like [`ServerTrust::attested`], verifying SGX DCAP quotes against `collateral`
    /// (one set per platform family, e.g. loaded with
    /// [`cella_attest::dcap::load_collateral`]). Without collateral for the node's
    /// platform, SGX evidence is refused as a configuration problem ("no collateral is
    /// configured for FMSPC …").
    pub fn attested_with_collateral(
        policy: cella_attest::Policy,
        collateral: impl IntoIterator<Item = cella_attest::dcap::Collateral>,
    ) -> Self {
        let dcap = collateral
            .into_iter()
            .fold(cella_attest::dcap::DcapVerifier::new(), |d, c| {
                d.with_collateral(c)
            });
        ServerTrust::Attested(Arc::new(
            cella_attest::Verifier::new(policy).with_dcap(dcap),
        ))
    }
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerTrust::Pinned(cert) => f
                .debug_tuple("Pinned")
                .field(&format_args!("<{} bytes of DER>", cert.len()))
                .finish(),
            ServerTrust::Attested(verifier) => f
                .debug_tuple("Attested")
                .field(&format_args!(
                    "<policy {}>",
                    hex_prefix(&verifier.policy().digest())
                ))
                .finish(),
        }
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Builds the rustls configuration for `trust`: TLS 1.3 only, ALPN `h2`, no client
/// certificate.
///
/// # Errors
///
/// [`ClientError::TlsConfig`] if the provider does not support TLS 1.3 (it does).
pub(crate) fn client_config(trust: &ServerTrust) -> Result<rustls::ClientConfig, ClientError> {
    // The same provider as every attested channel of the project.
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ServerTrust::Pinned(cert) => Arc::new(PinnedVerifier::new(
            cert.clone(),
            provider.signature_verification_algorithms,
        )),
        ServerTrust::Attested(verifier) => {
            Arc::new(cella_attest::tls::AttestedServerVerifier::new(
                verifier.clone(),
                cella_attest::policy::roles::NODE,
            ))
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ClientError::TlsConfig)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The peer presented a certificate chain other than exactly the pinned certificate.
#[derive(Debug, thiserror::Error)]
#[error("server certificate does not match the pinned certificate")]
struct PinMismatch;

/// Accepts exactly one pinned end-entity certificate.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    /// A verifier for `pinned`, checking handshake signatures with `algorithms`.
    pub(crate) fn new(
        pinned: CertificateDer<'static>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self { pinned, algorithms }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    /// Accepts the chain when it is the pinned certificate alone, byte for byte. The
    /// server name, OCSP response and time are ignored: the certificate itself is
    /// trusted, whatever names or validity dates it carries.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.is_empty() && end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why the connector could not give tonic a TLS stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectFailure {
    /// TCP connect failed.
    #[error("TCP connect to {addr} failed")]
    Tcp {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer's certificate is not the pinned one.
    #[error("server certificate of {addr} does not match the pinned certificate")]
    PinMismatch {
        /// The address.
        addr: String,
    },
    /// The node's attestation was refused.
    #[error("attestation of {addr} refused: {reason}")]
    Attestation {
        /// The address.
        addr: String,
        /// Why, in full.
        reason: String,
    },
    /// The TLS handshake failed otherwise.
    #[error("TLS handshake with {addr} failed: {message}")]
    Handshake {
        /// The address.
        addr: String,
        /// The cause, rendered.
        message: String,
    },
    /// The peer negotiated no ALPN or something other than `h2`.
    #[error("{addr} did not negotiate HTTP/2 (ALPN h2); is it a Cella node?")]
    NoH2 {
        /// The address.
        addr: String,
    },
    /// TCP connect plus handshake took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("connecting to {addr} timed out after {HANDSHAKE_TIMEOUT:?}")]
    Timeout {
        /// The address.
        addr: String,
    },
}

impl ConnectFailure {
    /// The matching [`ClientError`].
    pub(crate) fn to_client_error(&self) -> ClientError {
        match self {
            ConnectFailure::PinMismatch { addr } => {
                ClientError::CertificateMismatch { addr: addr.clone() }
            }
            ConnectFailure::Attestation { addr, reason } => ClientError::AttestationRefused {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            ConnectFailure::Handshake { addr, message } => ClientError::Tls {
                addr: addr.clone(),
                message: message.clone(),
            },
            ConnectFailure::NoH2 { addr } => ClientError::Tls {
                addr: addr.clone(),
                message: "the node did not negotiate HTTP/2 (ALPN h2); is it a Cella node?"
                    .to_owned(),
            },
            ConnectFailure::Tcp { addr, source } => ClientError::Connect {
                addr: addr.clone(),
                message: chain_message(source),
            },
            ConnectFailure::Timeout { addr } => ClientError::Connect {
                addr: addr.clone(),
                message: format!("no TLS session within {HANDSHAKE_TIMEOUT:?}"),
            },
        }
    }
}

/// Whether a handshake I/O error carries a rustls certificate error.
fn is_certificate_error(err: &std::io::Error) -> bool {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
}

/// The attestation refusal carried by a handshake I/O error, if any.
fn attestation_refusal(err: &std::io::Error) -> Option<String> {
    let rustls_error = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    cella_attest::tls::attestation_failure(rustls_error).map(ToString::to_string)
}

/// Opens a TCP connection to `addr` and runs the TLS handshake, bounded by
/// [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn connect_tls(
    addr: &Address,
    connector: TlsConnector,
) -> Result<TlsStream<TcpStream>, ConnectFailure> {
    let shown = addr.to_string();
    let server_name =
        ServerName::try_from(addr.server_name()).map_err(|e| ConnectFailure::Handshake {
            addr: shown.clone(),
            message: format!("host is not a valid TLS server name: {e}"),
        })?;
    let attempt = async {
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|source| ConnectFailure::Tcp {
                addr: shown.clone(),
                source,
            })?;
        // Small gRPC messages must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let tls = connector.connect(server_name, tcp).await.map_err(|e| {
            if let Some(reason) = attestation_refusal(&e) {
                ConnectFailure::Attestation {
                    addr: shown.clone(),
                    reason,
                }
            } else if is_certificate_error(&e) {
                ConnectFailure::PinMismatch {
                    addr: shown.clone(),
                }
            } else {
                ConnectFailure::Handshake {
                    addr: shown.clone(),
                    message: chain_message(&e),
                }
            }
        })?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectFailure::NoH2 {
                addr: shown.clone(),
            });
        }
        Ok(tls)
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectFailure::Timeout {
            addr: shown.clone(),
        }),
    }
}

/// Connects to the node at `addr` and appraises its RA-TLS evidence with `verifier` as
/// role `node`, sending nothing else: what the node claims, and whether the policy accepts
/// it. The appraisal is returned whether or not the node is accepted (for `cella attest`).
///
/// # Errors
///
/// [`ClientError::InvalidAddress`], or [`ClientError::Connect`] / [`ClientError::Tls`] when
/// no certificate could be obtained from the node.
pub async fn appraise_node(
    addr: &str,
    verifier: Arc<cella_attest::Verifier>,
) -> Result<cella_attest::Appraisal, ClientError> {
    let address = Address::parse(addr)?;
    let attester = Arc::new(cella_attest::tls::AttestedServerVerifier::new(
        verifier,
        cella_attest::policy::roles::NODE,
    ));
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ClientError::TlsConfig)?
        .dangerous()
        .with_custom_certificate_verifier(attester.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connected = connect_tls(&address, TlsConnector::from(Arc::new(config))).await;
    match (attester.take_last_appraisal(), connected) {
        (Some(appraisal), _) => Ok(appraisal),
        (None, Err(failure)) => Err(failure.to_client_error()),
        (None, Ok(_)) => Err(ClientError::Tls {
            addr: address.to_string(),
            message: "the node presented no certificate".to_owned(),
        }),
    }
}

/// The tower service tonic calls to open a connection: TCP + TLS to the node, whatever
/// URI tonic passes (the endpoint's URI only names the authority).
pub(crate) fn connector(
    addr: Address,
    config: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<TlsStream<TcpStream>>,
    Error = ConnectFailure,
    Future = impl Future<Output = Result<TokioIo<TlsStream<TcpStream>>, ConnectFailure>>
             + Send
             + 'static,
> + Send
+ 'static {
    let addr = Arc::new(addr);
    tower::service_fn(move |_uri: tonic::transport::Uri| {
        let addr = Arc::clone(&addr);
        let tls = TlsConnector::from(Arc::clone(&config));
        async move { connect_tls(&addr, tls).await.map(TokioIo::new) }
    })
}

#[cfg(test)]
mod tests;
