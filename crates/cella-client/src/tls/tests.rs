//! The pinned verifier, alone and in real handshakes against a local TLS server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;

/// A fresh self-signed certificate for `localhost`, as the node makes one.
fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let pem = certified.cert.pem();
    (certified.cert.der().clone(), key, pem)
}

fn verifier_for(cert: &CertificateDer<'static>) -> PinnedVerifier {
    PinnedVerifier::new(cert.clone(), provider().signature_verification_algorithms)
}

fn name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

#[test]
fn verifier_accepts_exactly_the_pinned_certificate() {
    let (pinned, _, _) = self_signed();
    let (other, _, _) = self_signed();
    let v = verifier_for(&pinned);
    let now = UnixTime::now();
    assert!(
        v.verify_server_cert(&pinned, &[], &name(), &[], now)
            .is_ok()
    );

    let err = v
        .verify_server_cert(&other, &[], &name(), &[], now)
        .unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    assert!(err.to_string().contains("PinMismatch"), "{err}");

    // The pinned certificate with an intermediate is not the pinned chain.
    assert!(
        v.verify_server_cert(&pinned, std::slice::from_ref(&other), &name(), &[], now)
            .is_err()
    );
    // The name is ignored: an IP-derived or unrelated name still matches.
    let elsewhere = ServerName::try_from("elsewhere.example").expect("name");
    assert!(
        v.verify_server_cert(&pinned, &[], &elsewhere, &[], now)
            .is_ok()
    );
    // A truncated copy of the pinned DER is not equal.
    let cut = CertificateDer::from(pinned.as_ref()[..pinned.len() - 1].to_vec());
    assert!(v.verify_server_cert(&cut, &[], &name(), &[], now).is_err());
    assert!(!v.supported_verify_schemes().is_empty());
}

#[test]
fn pinned_pem_rejects_non_certificates() {
    let (_, _, pem) = self_signed();
    assert!(ServerTrust::pinned_pem(pem.as_bytes()).is_ok());
    for bad in [
        &b""[..],
        b"not pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        let err = ServerTrust::pinned_pem(bad).unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidCertificate { .. }),
            "{err}"
        );
    }
    let debug = format!("{:?}", ServerTrust::pinned_pem(pem.as_bytes()).unwrap());
    assert!(debug.starts_with("Pinned(<"), "{debug}");
}

/// A TLS 1.3 server with ALPN h2 presenting `cert`; answers each connection's first
/// bytes with "ok" once the handshake is done.
async fn serve_once(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Address {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 4];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        tls.write_all(b"ok").await.ok();
                    }
                }
            });
        }
    });
    Address {
        host: "127.0.0.1".to_owned(),
        port,
    }
}

fn connector_for(cert: &CertificateDer<'static>) -> TlsConnector {
    let config = client_config(&ServerTrust::Pinned(cert.clone())).expect("client config");
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn handshake_succeeds_with_the_pinned_certificate() {
    let (cert, key, _) = self_signed();
    let addr = serve_once(cert.clone(), key).await;
    let mut tls = connect_tls(&addr, connector_for(&cert))
        .await
        .expect("handshake with the pinned certificate");
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    tls.write_all(b"ping").await.expect("write");
    let mut answer = [0u8; 2];
    tls.read_exact(&mut answer).await.expect("read");
    assert_eq!(&answer, b"ok");
}

#[tokio::test]
async fn handshake_with_another_certificate_fails_fast_and_clearly() {
    let (served, key, _) = self_signed();
    let (pinned, _, pinned_pem) = self_signed();
    let addr = serve_once(served, key).await;

    let started = Instant::now();
    let err = connect_tls(&addr, connector_for(&pinned))
        .await
        .expect_err("another certificate must be refused");
    assert!(matches!(err, ConnectFailure::PinMismatch { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Through the public API, the same failure with the address named.
    let err = crate::Client::connect(&addr.to_string(), pinned_pem.as_bytes())
        .await
        .expect_err("another certificate must be refused");
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::CertificateMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains("server certificate does not match the pinned certificate"),
        "{text}"
    );
    assert!(text.contains(&addr.to_string()), "{text}");
}

#[tokio::test]
async fn closed_port_is_a_connect_error_naming_the_address() {
    let (_, _, pem) = self_signed();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let err = crate::Client::connect(&addr, pem.as_bytes())
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    assert!(matches!(err, ClientError::Connect { .. }), "{text}");
    assert!(text.contains(&addr), "{text}");
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_instead_of_hanging() {
    tokio::time::pause();
    let (cert, _, _) = self_signed();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = Address {
        host: "127.0.0.1".to_owned(),
        port: listener.local_addr().expect("addr").port(),
    };
    // Accept the TCP connection and then say nothing.
    let held = tokio::spawn(async move { listener.accept().await });
    let err = connect_tls(&addr, connector_for(&cert))
        .await
        .expect_err("silence must time out");
    assert!(matches!(err, ConnectFailure::Timeout { .. }), "{err}");
    held.abort();
}
