//! Negative (and positive) suite over real TLS 1.3 handshakes, both ends in memory.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::claims::{Claims, report_data_for};
use cella_attest::evidence::EvidenceSource;
use cella_attest::policy::roles;
use cella_attest::ratls::{IssuedCert, encode_tagged_evidence, self_signed_with_extension};
use cella_attest::renew::{CertResolver, Issuer, spawn_renewal};
use cella_attest::tls::{AttestedClientVerifier, AttestedServerVerifier, verified_peer};
use cella_attest::{Evidence, Measurement, Platform};
use rcgen::PublicKeyData;
use rustls::pki_types::{PrivatePkcs8KeyDer, UnixTime};

use crate::common::*;

#[tokio::test]
async fn accepted_node_yields_verified_evidence() {
    let node = SimNode::new();
    let policy = sim_policy(roles::NODE, node.key(), node.measurement, "");
    let verifier = verifier(policy);
    let server_verifier = Arc::new(AttestedServerVerifier::new(verifier.clone(), roles::NODE));
    let outcome = make_pair(node.identity(), server_verifier.clone(), None, None).await;
    outcome.client.as_ref().unwrap();
    outcome.server.as_ref().unwrap();

    let appraisal = server_verifier.take_last_appraisal().unwrap();
    let verified = appraisal.verdict.unwrap();
    assert_eq!(verified.platform(), Platform::Sim);
    assert_eq!(verified.measurement(), node.measurement);
    assert_eq!(verified.sim_signer(), Some(node.key()));
    assert!(verified.age() < Duration::from_secs(60));

    // The established connection's peer, verified again into a value.
    let certs = outcome.server_certs.unwrap();
    let peer = verified_peer(&verifier, roles::NODE, Some(&certs), None).unwrap();
    assert_eq!(peer.measurement(), node.measurement);
}

#[tokio::test]
async fn wrong_measurement_is_refused() {
    let node = SimNode::new();
    let policy = sim_policy(roles::NODE, node.key(), Measurement([0xaa; 32]), "");
    let outcome = connect(node.identity(), policy, roles::NODE).await;
    assert_refused(
        &outcome,
        &format!(
            "simulation measurement {} is not in sim_measurements",
            node.measurement
        ),
    );
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn evidence_older_than_max_age_is_refused() {
    let node = SimNode::new();
    let old = Issuer::new(Arc::new(node.source().with_clock(clock_ago(7200))))
        .with_clock(clock_ago(7200))
        .with_validity(Duration::from_secs(24 * 3600));
    let policy = sim_policy(roles::NODE, node.key(), node.measurement, "");
    let outcome = connect(identity_from(old), policy, roles::NODE).await;
    assert_refused(&outcome, "old, older than max_evidence_age_secs = 3600");
}

/// A certificate for a fresh key whose evidence (from `source`) binds `claims` instead.
fn mismatched_identity(
    source: &dyn EvidenceSource,
    claims_for: impl Fn(&[u8]) -> Claims,
) -> Arc<CertResolver> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let claims = claims_for(&key.subject_public_key_info());
    let buffer = claims.encode();
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // Evidence over the claims of *another* key.
    let evidence_claims = Claims::for_public_key(&other_key.subject_public_key_info(), None);
    let evidence = source
        .evidence(&report_data_for(&evidence_claims.encode()))
        .unwrap();
    let now = UnixTime::now();
    let cert_der = self_signed_with_extension(
        &key,
        encode_tagged_evidence(&evidence, &buffer),
        now,
        Duration::from_secs(600),
    )
    .unwrap();
    Arc::new(
        CertResolver::new(IssuedCert {
            cert_der,
            key_pkcs8: PrivatePkcs8KeyDer::from(key.serialize_der()),
            evidence,
            claims,
            issued_at: now,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn report_data_not_binding_the_tls_key_is_refused() {
    let node = SimNode::new();
    let policy = || sim_policy(roles::NODE, node.key(), node.measurement, "");

    // Claims name the TLS key, but the evidence's report_data hashes other claims.
    let server = mismatched_identity(&node.source(), |spki| Claims::for_public_key(spki, None));
    let outcome = connect(server, policy(), roles::NODE).await;
    assert_refused(&outcome, "report_data does not bind the claims");

    // Claims (and evidence) name another key than the TLS key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_spki = other.subject_public_key_info();
    let server = mismatched_identity(&node.source(), |_| {
        Claims::for_public_key(&other_spki, None)
    });
    let outcome = connect(server, policy(), roles::NODE).await;
    assert_refused(
        &outcome,
        "pubkey-hash claim is not the hash of the certificate's public key",
    );
}

#[tokio::test]
async fn sgx_quote_not_binding_the_tls_key_is_refused() {
    // A certificate carrying the real sample quote (report_data "Hello, world!") for a TLS
    // key it does not bind.
    #[derive(Debug)]
    struct SampleQuote;
    impl EvidenceSource for SampleQuote {
        fn platform(&self) -> Platform {
            Platform::SgxDcap
        }
        fn evidence(
            &self,
            _: &cella_attest::ReportData,
        ) -> Result<Evidence, cella_attest::evidence::EvidenceError> {
            Ok(Evidence::SgxDcapQuote(sample_quote()))
        }
    }
    let server = identity_from(Issuer::new(Arc::new(SampleQuote)));
    let policy = cella_attest::Policy::from_toml_str(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 3600\n\
         mr_enclave = [\"33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb\"]\n\
         accepted_tcb_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\n\
         accepted_advisory_ids = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n",
    )
    .unwrap();
    let verifier = Arc::new(cella_attest::Verifier::new(policy).with_dcap(sample_dcap()));
    let client = Arc::new(AttestedServerVerifier::new(verifier, roles::NODE));
    let outcome = make_pair(server, client, None, None).await;
    assert_refused(&outcome, "report_data does not bind the claims");
}

#[tokio::test]
async fn debug_instance_is_refused_unless_allowed() {
    let node = SimNode::new();
    let debug = Issuer::new(Arc::new(node.source().with_debug(true)));
    let server = identity_from(debug);
    let refused = connect(
        server.clone(),
        sim_policy(roles::NODE, node.key(), node.measurement, ""),
        roles::NODE,
    )
    .await;
    assert_refused(
        &refused,
        "debug enclave or instance is not allowed (allow_debug = false)",
    );

    let allowed = connect(
        server,
        sim_policy(
            roles::NODE,
            node.key(),
            node.measurement,
            "allow_debug = true\n",
        ),
        roles::NODE,
    )
    .await;
    allowed.client.unwrap();
}

#[tokio::test]
async fn simulation_is_refused_unless_allowed_with_a_trusted_key() {
    let node = SimNode::new();
    let no_sim = cella_attest::Policy::from_toml_str(&format!(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 3600\nallow_simulation = false\n\
         trusted_sim_keys = [\"{}\"]\nsim_measurements = [\"{}\"]\n\
         mr_enclave = [\"{}\"]\naccepted_tcb_statuses = [\"UpToDate\"]\n",
        node.key(),
        node.measurement,
        node.measurement
    ))
    .unwrap();
    let outcome = connect(node.identity(), no_sim, roles::NODE).await;
    assert_refused(
        &outcome,
        "simulation evidence is not allowed (allow_simulation = false)",
    );

    // Allowed, but the node's key is not the trusted one.
    let stranger = SimNode::new();
    let outcome = connect(
        node.identity(),
        sim_policy(roles::NODE, stranger.key(), node.measurement, ""),
        roles::NODE,
    )
    .await;
    assert_refused(&outcome, "which is not a trusted simulation key");

    // Allowed with no key at all.
    let no_keys = cella_attest::Policy::from_toml_str(&format!(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 3600\nallow_simulation = true\n\
         sim_measurements = [\"{}\"]\n",
        node.measurement
    ))
    .unwrap();
    let outcome = connect(node.identity(), no_keys, roles::NODE).await;
    assert_refused(&outcome, "no trusted simulation key is configured");
}

#[tokio::test]
async fn unknown_role_is_a_configuration_error() {
    let node = SimNode::new();
    let policy = sim_policy(roles::LIBOS_INSTANCE, node.key(), node.measurement, "");
    let outcome = connect(node.identity(), policy, roles::NODE).await;
    assert_refused(&outcome, "role is not defined in the attestation policy");
}

#[tokio::test]
async fn launch_nonce_is_enforced() {
    let node = SimNode::new();
    let nonce = vec![0x42; 32];
    let with_nonce = identity_from(Issuer::new(Arc::new(node.source())).with_nonce(nonce.clone()));
    let policy = || sim_policy(roles::LIBOS_INSTANCE, node.key(), node.measurement, "");
    let expecting = |n: Vec<u8>| {
        Arc::new(
            AttestedServerVerifier::new(verifier(policy()), roles::LIBOS_INSTANCE).expect_nonce(n),
        )
    };

    let ok = make_pair(with_nonce.clone(), expecting(nonce.clone()), None, None).await;
    ok.client.unwrap();

    let replayed = make_pair(with_nonce, expecting(vec![0x43; 32]), None, None).await;
    assert_refused(&replayed, "different nonce");

    let without = make_pair(node.identity(), expecting(nonce), None, None).await;
    assert_refused(&without, "carries no nonce");
}

#[tokio::test]
async fn mutual_attestation() {
    let worker = SimNode::new();
    let instance = SimNode::new();
    // Each side trusts the other's simulation key and measurement.
    let instance_policy = sim_policy(roles::CLIENT, worker.key(), worker.measurement, "");
    let worker_policy = sim_policy(
        roles::LIBOS_INSTANCE,
        instance.key(),
        instance.measurement,
        "",
    );
    let client_verifier = || {
        Arc::new(AttestedServerVerifier::new(
            verifier(worker_policy.clone()),
            roles::LIBOS_INSTANCE,
        ))
    };
    let server_verifier = Arc::new(AttestedClientVerifier::new(
        verifier(instance_policy.clone()),
        roles::CLIENT,
    ));

    let ok = make_pair(
        instance.identity(),
        client_verifier(),
        Some(worker.identity()),
        Some(server_verifier.clone()),
    )
    .await;
    ok.client.unwrap();
    ok.server.unwrap();
    let seen = server_verifier
        .take_last_appraisal()
        .unwrap()
        .verdict
        .unwrap();
    assert_eq!(seen.measurement(), worker.measurement);

    // A client without a certificate.
    let anonymous = make_pair(
        instance.identity(),
        client_verifier(),
        None,
        Some(server_verifier.clone()),
    )
    .await;
    let err = anonymous.server.unwrap_err();
    assert!(err.contains("peer sent no certificates"), "{err}");

    // A client whose simulation key the instance does not trust.
    let impostor = SimNode::new();
    let refused = make_pair(
        instance.identity(),
        client_verifier(),
        Some(impostor.identity()),
        Some(server_verifier),
    )
    .await;
    let err = refused.server.unwrap_err();
    assert!(
        err.contains("which is not a trusted simulation key"),
        "{err}"
    );
    assert!(refused.client.is_err());
}

#[tokio::test]
async fn renewed_identity_is_still_accepted() {
    let node = SimNode::new();
    let issuer = Arc::new(Issuer::new(Arc::new(node.source())));
    let resolver = Arc::new(CertResolver::issue(&issuer).unwrap());
    let first = resolver.certificate();
    let (renewed_tx, mut renewed_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = spawn_renewal(
        &resolver,
        issuer.clone(),
        Duration::from_millis(50),
        move |cert| {
            let _ = renewed_tx.send(cert.clone());
        },
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), renewed_rx.recv())
        .await
        .expect("not renewed")
        .unwrap();
    task.abort();
    assert_ne!(seen, first);
    assert_ne!(resolver.certificate(), first);
    let policy = sim_policy(roles::NODE, node.key(), node.measurement, "");
    let outcome = connect(resolver, policy, roles::NODE).await;
    outcome.client.unwrap();

    // The task ends by itself once nobody holds the resolver any more.
    let resolver = Arc::new(CertResolver::issue(&issuer).unwrap());
    let task = spawn_renewal(&resolver, issuer, Duration::from_millis(10), |_| {});
    drop(resolver);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("renewal task outlived its resolver")
        .unwrap();
}
