//! Collateral from a PCCS: a stand-in HTTPS PCCS on 127.0.0.1 serves the sample collateral.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cella_attest::dcap::DcapVerifier;
use cella_attest::pccs::{MAX_PCCS_RESPONSE_LEN, PccsClient, PccsConfig, PccsError};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use crate::common::{sample_collateral, sample_dcap, sample_quote, sample_time, testdata};

/// What the stand-in PCCS answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    NotFound,
    Oversized,
}

struct Pccs {
    url: String,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pccs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Percent-encode everything but unreserved characters, as a PCCS encodes issuer chains.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert.pem())
}

fn respond(mode: Mode, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let raw: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(&testdata("sgx_quote_collateral.json")).unwrap();
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let ok = |header: Option<(&str, &str)>, body: Vec<u8>| {
        let mut builder = Response::builder().status(StatusCode::OK);
        if let Some((name, chain)) = header {
            builder = builder.header(name, percent_encode(chain));
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    };
    match mode {
        Mode::NotFound => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        Mode::Oversized => return ok(None, vec![b'x'; MAX_PCCS_RESPONSE_LEN + 1]),
        Mode::Normal => {}
    }
    match (path, query) {
        ("/sgx/certification/v4/pckcrl", "ca=processor&encoding=der") => ok(
            Some(("SGX-PCK-CRL-Issuer-Chain", &raw.pck_crl_issuer_chain)),
            raw.pck_crl.clone(),
        ),
        ("/sgx/certification/v4/tcb", "fmspc=00A067110000&update=standard") => ok(
            Some(("TCB-Info-Issuer-Chain", &raw.tcb_info_issuer_chain)),
            format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                raw.tcb_info,
                hex::encode(&raw.tcb_info_signature)
            )
            .into_bytes(),
        ),
        ("/sgx/certification/v4/qe/identity", "update=standard") => ok(
            Some((
                "SGX-Enclave-Identity-Issuer-Chain",
                &raw.qe_identity_issuer_chain,
            )),
            format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                raw.qe_identity,
                hex::encode(&raw.qe_identity_signature)
            )
            .into_bytes(),
        ),
        // A PCCS serves the root CA CRL hex-encoded.
        ("/sgx/certification/v4/rootcacrl", "") => {
            ok(None, hex::encode(&raw.root_ca_crl).into_bytes())
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

async fn start_pccs(mode: Mode) -> Pccs {
    let (issuer, ca_pem) = ca("test PCCS CA");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pccs");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(respond(mode, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Pccs {
        url: format!("https://127.0.0.1:{port}/sgx/certification/v4/"),
        ca_pem,
        requests,
        task,
    }
}

fn client(pccs: &Pccs) -> PccsClient {
    PccsClient::new(PccsConfig::new(&pccs.url, pccs.ca_pem.as_bytes())).unwrap()
}

#[tokio::test]
async fn pccs_collateral_verifies_like_the_file_and_is_cached() {
    let pccs = start_pccs(Mode::Normal).await;
    let client = client(&pccs);
    let quote = sample_quote();

    let collateral = client
        .collateral_for_quote(&quote, sample_time())
        .await
        .unwrap();
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);
    assert_eq!(collateral.validity(), sample_collateral().validity());
    let fetched = DcapVerifier::new()
        .with_collateral(collateral)
        .verify(&quote, sample_time())
        .unwrap();
    let from_file = sample_dcap().verify(&quote, sample_time()).unwrap();
    assert_eq!(fetched, from_file);
    assert_eq!(
        fetched.mr_enclave.to_string(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );

    // Within the validity window: from the cache, no request.
    let (_, until) = sample_collateral().validity();
    let later = UnixTime::since_unix_epoch(Duration::from_secs(until - 1));
    client.collateral_for_quote(&quote, later).await.unwrap();
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);

    // Past the earliest nextUpdate: fetched again.
    let after = UnixTime::since_unix_epoch(Duration::from_secs(until));
    client.collateral_for_quote(&quote, after).await.unwrap();
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn pccs_not_found_and_oversized_are_distinct_errors_naming_the_url() {
    let pccs = start_pccs(Mode::NotFound).await;
    let err = client(&pccs)
        .collateral_for_quote(&sample_quote(), sample_time())
        .await
        .unwrap_err();
    let expected_url = format!("{}pckcrl?ca=processor&encoding=der", pccs.url);
    assert!(
        matches!(&err, PccsError::Status { url, status: 404 } if *url == expected_url),
        "{err:?}"
    );
    assert!(err.to_string().contains(&expected_url), "{err}");

    let pccs = start_pccs(Mode::Oversized).await;
    let err = client(&pccs)
        .collateral_for_quote(&sample_quote(), sample_time())
        .await
        .unwrap_err();
    let expected_url = format!("{}pckcrl?ca=processor&encoding=der", pccs.url);
    assert!(
        matches!(&err, PccsError::TooLarge { url } if *url == expected_url),
        "{err:?}"
    );
    assert!(err.to_string().contains(&expected_url), "{err}");
}

#[tokio::test]
async fn untrusted_pccs_certificate_is_refused() {
    let pccs = start_pccs(Mode::Normal).await;
    let (_, other_ca) = ca("some other CA");
    let client = PccsClient::new(PccsConfig::new(&pccs.url, other_ca.as_bytes())).unwrap();
    let err = client
        .collateral_for_quote(&sample_quote(), sample_time())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PccsError::Connect { url, .. } if url.starts_with(&pccs.url)),
        "{err:?}"
    );
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn plain_http_only_to_loopback_when_asked() {
    let mut config = PccsConfig::new("http://127.0.0.1:8081/", Vec::new());
    assert!(matches!(
        PccsClient::new(config.clone()),
        Err(PccsError::InvalidUrl { .. })
    ));
    config.allow_insecure_loopback = true;
    assert!(PccsClient::new(config.clone()).is_ok());
    config.url = "http://pccs.example:8081/".into();
    assert!(matches!(
        PccsClient::new(config),
        Err(PccsError::InvalidUrl { .. })
    ));
}
