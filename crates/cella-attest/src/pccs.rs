//! Fetching SGX DCAP collateral from a PCCS (Intel's Provisioning Certificate Caching
//! Service, or a compatible server), with an in-memory cache.
//!
//! The requests are those of Intel's QCNL and of `dcap-qvl`'s `collateral` module, under
//! `<base>/sgx/certification/v4/`:
//!
//! - `pckcrl?ca=processor|platform&encoding=der`: the PCK CRL (DER), issuer chain in the
//!   `SGX-PCK-CRL-Issuer-Chain` header;
//! - `tcb?fmspc=<FMSPC>&update=standard`: `{"tcbInfo": {..}, "signature": "<hex>"}`, issuer
//!   chain in `TCB-Info-Issuer-Chain` (or `SGX-TCB-Info-Issuer-Chain`);
//! - `qe/identity?update=standard`: `{"enclaveIdentity": {..}, "signature": "<hex>"}`, issuer
//!   chain in `SGX-Enclave-Identity-Issuer-Chain`;
//! - `rootcacrl`: the root CA CRL, hex-encoded DER (PCCS) or raw DER.
//!
//! Issuer-chain headers are percent-encoded PEM. The PCCS is reached over HTTPS, trusting
//! only the configured CA certificates (PCCS deployments use their own CA); plain HTTP is
//! allowed only to a loopback address, and only when asked for explicitly. Nothing fetched
//! is trusted as such: `dcap-qvl` checks every signature and chain up to Intel's root when
//! the quote is verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Quote;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::dcap::{Collateral, CollateralError, FMSPC_LEN, QuoteError};
use crate::evidence::MAX_QUOTE_LEN;

/// Largest PCCS response body accepted. The largest item is the TCB info of a platform
/// family with many TCB levels (tens of KiB); CRLs of the PCK CAs are a few KiB. The same
/// bound as a whole collateral file ([`crate::dcap::MAX_COLLATERAL_JSON_LEN`]), so a
/// misbehaving server cannot make us buffer more than that per request.
pub const MAX_PCCS_RESPONSE_LEN: usize = 1024 * 1024;

/// Default time allowed for one request (connect, TLS handshake, response and body).
pub const DEFAULT_PCCS_TIMEOUT: Duration = Duration::from_secs(30);

/// The API path of PCCS v4 SGX certification endpoints.
const SGX_CERTIFICATION_V4: &str = "sgx/certification/v4";

/// Fetching collateral from a PCCS failed.
#[derive(Debug, thiserror::Error)]
pub enum PccsError {
    /// The configured PCCS URL is not usable.
    #[error("PCCS URL {url:?} is invalid: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The PCCS TLS configuration (trusted CA certificates) is not usable.
    #[error("PCCS TLS configuration: {0}")]
    Tls(String),
    /// The quote does not name its platform (FMSPC, PCK CA).
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// Connecting to the PCCS (TCP or TLS, including an untrusted server certificate)
    /// failed.
    #[error("connecting to PCCS at {url} failed: {reason}")]
    Connect {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP exchange failed after connecting.
    #[error("request to PCCS {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request did not complete in time.
    #[error("request to PCCS {url} timed out after {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The PCCS answered with a non-success status (e.g. 404 for an unknown FMSPC).
    #[error("PCCS {url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The response body is larger than [`MAX_PCCS_RESPONSE_LEN`].
    #[error("PCCS response from {url} is larger than {MAX_PCCS_RESPONSE_LEN} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
    },
    /// The response lacks an expected header (an issuer chain).
    #[error("PCCS response from {url} has no {header} header")]
    MissingHeader {
        /// The URL requested.
        url: String,
        /// The header expected.
        header: &'static str,
    },
    /// The response does not parse.
    #[error("PCCS response from {url} is malformed: {reason}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// The assembled collateral does not parse or has no usable validity window.
    #[error("collateral fetched from PCCS {base}: {source}")]
    Collateral {
        /// The PCCS base URL.
        base: String,
        /// The error.
        #[source]
        source: CollateralError,
    },
}

/// Where the PCCS is and how to trust it.
#[derive(Debug, Clone)]
pub struct PccsConfig {
    /// Base URL, e.g. `https://pccs.example:8081/sgx/certification/v4/` (the
    /// `sgx/certification/v4` suffix is optional).
    pub url: String,
    /// PEM CA certificate(s) trusted for the PCCS's TLS certificate.
    pub ca_pem: Vec<u8>,
    /// Allow `http://` to a loopback address (tests, a PCCS on the same host).
    pub allow_insecure_loopback: bool,
    /// Time allowed for each request.
    pub timeout: Duration,
}

impl PccsConfig {
    /// An HTTPS PCCS at `url`, trusting the CA certificates in `ca_pem`.
    pub fn new(url: impl Into<String>, ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            url: url.into(),
            ca_pem: ca_pem.into(),
            allow_insecure_loopback: false,
            timeout: DEFAULT_PCCS_TIMEOUT,
        }
    }
}

/// PCK CA of a quote's PCK certificate, as the `ca` query parameter names it.
type CaName = &'static str;

/// A PCCS client that caches collateral per (FMSPC, PCK CA) until its earliest
/// `nextUpdate`.
pub struct PccsClient {
    /// Base URL without trailing slash or API path, e.g. `https://pccs.example:8081`.
    base: String,
    /// `host[:port]`, for the `Host` header.
    authority: String,
    host: String,
    port: u16,
    /// `None` for plain HTTP (loopback only).
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    cache: Mutex<HashMap<([u8; FMSPC_LEN], CaName), Collateral>>,
}

impl std::fmt::Debug for PccsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsClient")
            .field("base", &self.base)
            .field("https", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Aborts a spawned task when dropped (e.g. when a request times out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decode a percent-encoded header value (issuer chains are URL-encoded PEM).
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let mut byte = [0u8; 1];
            hex::decode_to_slice(hex, &mut byte).ok()?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The signed body of a TCB info or QE identity response, and its signature.
fn split_signed(
    url: &str,
    body: &[u8],
    field: &'static str,
) -> Result<(String, Vec<u8>), PccsError> {
    let malformed = |reason: String| PccsError::Malformed {
        url: url.to_owned(),
        reason,
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let signature = value
        .get("signature")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("no \"signature\" string".into()))?;
    let signature = hex::decode(signature).map_err(|e| malformed(format!("signature: {e}")))?;
    // dcap-qvl enables serde_json's `preserve_order`: re-serialising keeps the signed text.
    let item = value
        .get_mut(field)
        .map(serde_json::Value::take)
        .ok_or_else(|| malformed(format!("no {field:?} object")))?;
    Ok((item.to_string(), signature))
}

impl PccsClient {
    /// A client for the PCCS `config` describes.
    ///
    /// # Errors
    ///
    /// [`PccsError::InvalidUrl`] for a URL that is not `https://host[:port][/path]` (or
    /// `http://` to loopback with `allow_insecure_loopback`); [`PccsError::Tls`] if
    /// `ca_pem` holds no usable certificate.
    pub fn new(config: PccsConfig) -> Result<Self, PccsError> {
        let invalid = |reason: &str| PccsError::InvalidUrl {
            url: config.url.clone(),
            reason: reason.to_owned(),
        };
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("the scheme must be https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("no host"))?
            .as_str()
            .to_owned();
        if authority.contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not allowed"));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let insecure_ok = config.allow_insecure_loopback && is_loopback(&host);
        if !https && !insecure_ok {
            return Err(invalid(
                "plain http is only allowed to a loopback address, with allow_insecure_loopback",
            ));
        }
        let path = uri.path().trim_end_matches('/');
        let path = path
            .strip_suffix(&format!("/{SGX_CERTIFICATION_V4}"))
            .unwrap_or(path);
        let scheme = if https { "https" } else { "http" };
        let base = format!("{scheme}://{authority}{path}");

        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&config.ca_pem) {
                let cert = cert.map_err(|e| PccsError::Tls(format!("CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| PccsError::Tls(format!("CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(PccsError::Tls("no CA certificate in the PEM".into()));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls_config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| PccsError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| invalid(&format!("host name: {e}")))?
                .to_owned();
            Some((tokio_rustls::TlsConnector::from(Arc::new(tls_config)), name))
        } else {
            None
        };
        Ok(Self {
            base,
            authority,
            host,
            port,
            tls,
            timeout: config.timeout,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The base URL requests are made under (without the API path).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The collateral for `quote`'s platform (FMSPC and PCK CA) valid at `now`: from the
    /// cache if a cached set is still valid (before its earliest `nextUpdate`), otherwise
    /// fetched from the PCCS and cached.
    ///
    /// Pass it to [`crate::dcap::DcapVerifier::with_collateral`] to verify the quote.
    ///
    /// # Errors
    ///
    /// [`PccsError::Quote`] if the quote does not name its platform; the other variants if
    /// fetching fails.
    pub async fn collateral_for_quote(
        &self,
        quote: &[u8],
        now: UnixTime,
    ) -> Result<Collateral, PccsError> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::TooLarge { len: quote.len() }.into());
        }
        let parsed = Quote::parse(quote).map_err(|e| QuoteError::Malformed(format!("{e:#}")))?;
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| QuoteError::Malformed(format!("PCK certificate: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| QuoteError::Malformed(format!("PCK certificate issuer: {e:#}")))?
            .as_id_str();
        let key = (fmspc, ca);
        let now = now.as_secs();
        if let Some(cached) = self.cached(&key, now) {
            return Ok(cached);
        }
        let collateral = self.fetch(&fmspc, ca).await?;
        tracing::debug!(
            pccs = %self.base,
            fmspc = %hex::encode_upper(fmspc),
            ca,
            valid_until = collateral.validity().1,
            "fetched DCAP collateral"
        );
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, collateral.clone());
        }
        Ok(collateral)
    }

    /// A cached set for `key` still valid at `now`.
    fn cached(&self, key: &([u8; FMSPC_LEN], CaName), now: u64) -> Option<Collateral> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|c| {
                let (from, until) = c.validity();
                from <= now && now < until
            })
            .cloned()
    }

    /// Fetch and assemble the collateral for one platform family.
    async fn fetch(&self, fmspc: &[u8; FMSPC_LEN], ca: CaName) -> Result<Collateral, PccsError> {
        let api = format!("{}/{SGX_CERTIFICATION_V4}", self.base);

        let url = format!("{api}/pckcrl?ca={ca}&encoding=der");
        let response = self.get(&url).await?;
        let pck_crl_issuer_chain = header(&url, &response, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let pck_crl = response.body;

        let url = format!(
            "{api}/tcb?fmspc={}&update=standard",
            hex::encode_upper(fmspc)
        );
        let response = self.get(&url).await?;
        let tcb_info_issuer_chain = header(
            &url,
            &response,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let (tcb_info, tcb_info_signature) = split_signed(&url, &response.body, "tcbInfo")?;

        let url = format!("{api}/qe/identity?update=standard");
        let response = self.get(&url).await?;
        let qe_identity_issuer_chain =
            header(&url, &response, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let (qe_identity, qe_identity_signature) =
            split_signed(&url, &response.body, "enclaveIdentity")?;

        let url = format!("{api}/rootcacrl");
        let response = self.get(&url).await?;
        // A PCCS serves the DER hex-encoded; Intel's PCS serves DER (a SEQUENCE, 0x30).
        let root_ca_crl = if response.body.first() == Some(&0x30) {
            response.body
        } else {
            let text = std::str::from_utf8(&response.body).map_err(|_| PccsError::Malformed {
                url: url.clone(),
                reason: "root CA CRL is neither DER nor hex".into(),
            })?;
            hex::decode(text.trim()).map_err(|e| PccsError::Malformed {
                url: url.clone(),
                reason: format!("root CA CRL hex: {e}"),
            })?
        };

        let inner = QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        };
        let collateral =
            Collateral::from_dcap_qvl(inner).map_err(|source| PccsError::Collateral {
                base: self.base.clone(),
                source,
            })?;
        if collateral.fmspc() != *fmspc {
            return Err(PccsError::Malformed {
                url: format!("{api}/tcb?fmspc={}", hex::encode_upper(fmspc)),
                reason: format!(
                    "TCB info is for FMSPC {}",
                    hex::encode_upper(collateral.fmspc())
                ),
            });
        }
        Ok(collateral)
    }

    /// GET `url` (under this client's base), with the timeout, a success status and a
    /// bounded body.
    async fn get(&self, url: &str) -> Result<FetchedResponse, PccsError> {
        match tokio::time::timeout(self.timeout, self.get_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(PccsError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    async fn get_inner(&self, url: &str) -> Result<FetchedResponse, PccsError> {
        let connect = |reason: String| PccsError::Connect {
            url: url.to_owned(),
            reason,
        };
        let http = |reason: String| PccsError::Http {
            url: url.to_owned(),
            reason,
        };
        let path_and_query = url
            .strip_prefix(&self.base)
            .map(|p| format!("{}{p}", base_path(&self.base)))
            .ok_or_else(|| http("URL outside the PCCS base".into()))?;
        let request = Request::get(path_and_query)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "*/*")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| http(e.to_string()))?;

        let tcp = tokio::net::TcpStream::connect((self.host.trim_matches(['[', ']']), self.port))
            .await
            .map_err(|e| connect(e.to_string()))?;
        let response = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| connect(e.to_string()))?;
                send(TokioIo::new(tls), request, url).await?
            }
            None => send(TokioIo::new(tcp), request, url).await?,
        };
        Ok(response)
    }
}

/// The path part of a base URL (`https://host:port/path` → `/path`, or empty).
fn base_path(base: &str) -> &str {
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    after_scheme.find('/').map_or("", |i| &after_scheme[i..])
}

/// A successful response: headers and a bounded body.
struct FetchedResponse {
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// The first of `names` present, percent-decoded.
fn header(
    url: &str,
    response: &FetchedResponse,
    names: &[&'static str],
) -> Result<String, PccsError> {
    let first = names.first().copied().unwrap_or("issuer chain");
    let value = names
        .iter()
        .find_map(|name| response.headers.get(*name))
        .ok_or_else(|| PccsError::MissingHeader {
            url: url.to_owned(),
            header: first,
        })?;
    value
        .to_str()
        .ok()
        .and_then(percent_decode)
        .ok_or_else(|| PccsError::Malformed {
            url: url.to_owned(),
            reason: format!("{first} header is not percent-encoded UTF-8"),
        })
}

/// Send `request` over one HTTP/1.1 connection on `io` and read the bounded response.
async fn send<I>(
    io: I,
    request: Request<http_body_util::Empty<hyper::body::Bytes>>,
    url: &str,
) -> Result<FetchedResponse, PccsError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |reason: String| PccsError::Http {
        url: url.to_owned(),
        reason,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| http(e.to_string()))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PCCS connection ended");
        }
    }));
    let response: Response<Incoming> = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(PccsError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let too_large = || PccsError::TooLarge {
        url: url.to_owned(),
    };
    let declared = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_PCCS_RESPONSE_LEN as u64) {
        return Err(too_large());
    }
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| http(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_PCCS_RESPONSE_LEN {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(FetchedResponse {
        headers: parts.headers,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERT%0A").as_deref(),
            Some("-----BEGIN CERT\n")
        );
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn urls() {
        let c = PccsClient::new(PccsConfig::new(
            "https://pccs.example:8081/sgx/certification/v4/",
            Vec::new(),
        ));
        assert!(matches!(c, Err(PccsError::Tls(_))), "{c:?}");
        for bad in [
            "ftp://pccs.example/",
            "http://pccs.example:8081/",
            "https://user@pccs.example/",
            "https://pccs.example/?a=b",
        ] {
            let c = PccsClient::new(PccsConfig::new(bad, Vec::new()));
            assert!(
                matches!(c, Err(PccsError::InvalidUrl { .. })),
                "{bad}: {c:?}"
            );
        }
        let mut config = PccsConfig::new("http://127.0.0.1:8081/sgx/certification/v4", Vec::new());
        assert!(PccsClient::new(config.clone()).is_err());
        config.allow_insecure_loopback = true;
        let c = PccsClient::new(config).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8081");
        assert_eq!(base_path("https://h:1/a/b"), "/a/b");
        assert_eq!(base_path("https://h:1"), "");
    }
}
