//! RA-TLS certificates: the real Gramine and Intel SGX SDK certificates, and ours.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::claims::{Claims, HashAlg, report_data_for};
use cella_attest::dcap::CollateralError;
use cella_attest::evidence::Evidence;
use cella_attest::ratls::{
    BindingError, CertError, EvidenceExtension, RaTlsCert, TAG_CELLA_SIM, issue_certificate,
    parse_tagged_evidence,
};
use cella_attest::verify::{ConfigProblem, Refusal, VerifyError};
use cella_attest::{Platform, Verifier};
use rcgen::PublicKeyData;
use rustls::pki_types::UnixTime;

use crate::common::{SimNode, pem_cert, sample_dcap, sample_time};

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn report_data(evidence: &Evidence) -> Vec<u8> {
    evidence.bytes()[368..432].to_vec()
}

#[test]
fn gramine_certificate_parses_through_both_extensions() {
    let der = pem_cert("gramine-cert.pem");
    let cert = RaTlsCert::parse(&der).unwrap();
    // P-384 SubjectPublicKeyInfo.
    assert_eq!(cert.spki_der.len(), 120);

    // TCG DICE tagged evidence, CBOR tag 60000 over [quote, claims].
    let tagged = cert.tagged.as_ref().expect("tagged evidence");
    assert!(matches!(tagged.evidence, Evidence::SgxDcapQuote(_)));
    // The claims buffer is a CBOR map {"pubkey-hash": h'<CBOR [1, h'<sha256>']>'}: the
    // value is a byte string that holds the encoded array, with IANA id 1 (SHA-256).
    let buf = &tagged.claims_buffer;
    assert_eq!(&buf[..13], b"\xa1\x6bpubkey-hash");
    assert_eq!(&buf[13..19], &[0x58, 0x24, 0x82, 0x01, 0x58, 0x20]);
    assert_eq!(tagged.claims.pubkey_hash.alg, HashAlg::Sha256);
    assert_eq!(tagged.claims.nonce, None);
    // pubkey-hash is SHA-256 of the certificate's SubjectPublicKeyInfo DER...
    assert_eq!(tagged.claims.pubkey_hash.value, sha256(&cert.spki_der));
    // ...and report_data is SHA-256 of the claims buffer, then zeros.
    let rd = report_data(&tagged.evidence);
    assert_eq!(&rd[..32], sha256(buf).as_slice());
    assert_eq!(&rd[32..], &[0u8; 32]);
    let bound = cert.check_tagged_binding().unwrap();
    assert_eq!(bound.extension, EvidenceExtension::Tagged);

    // Legacy extension (Gramine writes the OID with its tag and length inside):
    // a raw quote whose report_data is SHA-256 of the SubjectPublicKeyInfo DER.
    let legacy = cert.legacy_quote.as_ref().expect("legacy quote");
    assert_eq!(&legacy[368..400], sha256(&cert.spki_der).as_slice());
    let bound = cert.check_legacy_binding().unwrap();
    assert_eq!(bound.extension, EvidenceExtension::GramineLegacy);

    // The tagged evidence wins when both are present.
    assert_eq!(
        cert.bound_evidence().unwrap().extension,
        EvidenceExtension::Tagged
    );
}

/// The Gramine certificate with its public key replaced by another P-384 key.
fn gramine_with_swapped_key() -> Vec<u8> {
    let der = pem_cert("gramine-cert.pem");
    let original = RaTlsCert::parse(&der).unwrap().spki_der;
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .subject_public_key_info();
    assert_eq!(other.len(), original.len());
    let at = der
        .windows(original.len())
        .position(|w| w == original.as_slice())
        .unwrap();
    let mut swapped = der.clone();
    swapped[at..at + other.len()].copy_from_slice(&other);
    swapped
}

#[test]
fn gramine_certificate_with_swapped_key_is_rejected() {
    let cert = RaTlsCert::parse(&gramine_with_swapped_key()).unwrap();
    assert_eq!(cert.check_tagged_binding(), Err(BindingError::PubkeyHash));
    assert_eq!(
        cert.check_legacy_binding(),
        Err(BindingError::ReportData("certificate's public key"))
    );

    // Through the verifier, the binding is refused before the quote is even looked at.
    let policy = cella_attest::Policy::from_toml_str(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 3600\n\
         mr_enclave = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n\
         accepted_tcb_statuses = [\"UpToDate\"]\n",
    )
    .unwrap();
    let err = Verifier::new(policy)
        .verify_certificate("node", &gramine_with_swapped_key(), None)
        .unwrap_err();
    assert!(
        matches!(
            err.refusal(),
            Some(Refusal::Binding(BindingError::PubkeyHash))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("pubkey-hash"), "{err}");
}

#[test]
fn gramine_quote_without_collateral_is_our_configuration_problem() {
    // The Gramine certificate's quote comes from another platform than the sample
    // collateral; the verifier says it lacks collateral rather than blaming the peer.
    let policy = cella_attest::Policy::from_toml_str(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 366000\n\
         mr_enclave = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n\
         accepted_tcb_statuses = [\"UpToDate\"]\n",
    )
    .unwrap();
    let verifier = Verifier::new(policy)
        .with_dcap(sample_dcap())
        .with_clock(Arc::new(cella_attest::clock::FixedClock::at_unix_secs(
            sample_time().as_secs(),
        )));
    let appraisal = verifier.appraise_certificate("node", &pem_cert("gramine-cert.pem"), None);
    let err = appraisal.verdict.unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Config {
                problem: ConfigProblem::Collateral(CollateralError::Missing { fmspc }),
                ..
            } if fmspc == "00606A000000"
        ),
        "{err}"
    );
    assert!(err.is_local());
    // Its claims are still shown.
    let claimed = appraisal.claimed.unwrap();
    assert_eq!(claimed.platform, Platform::SgxDcap);
    assert!(!claimed.authenticated);
}

#[test]
fn intel_sgx_sdk_certificate_parses_through_tagged_evidence() {
    let der = pem_cert("intel-sgxsdk-cert.pem");
    let cert = RaTlsCert::parse(&der).unwrap();
    // No Gramine legacy extension; the SDK's own 1.2.840.113741.1.13.1 carries the same
    // quote as the tagged evidence (whose report_data hashes the claims).
    assert!(cert.legacy_quote.is_none());
    let tagged = cert.tagged.as_ref().unwrap();
    assert_eq!(
        cert.intel_sdk_quote.as_deref(),
        Some(tagged.evidence.bytes())
    );
    let bound = cert.check_tagged_binding().unwrap();
    assert_eq!(bound.extension, EvidenceExtension::Tagged);
    assert_eq!(tagged.claims.pubkey_hash.value, sha256(&cert.spki_der));
}

#[test]
fn our_certificates_round_trip() {
    let node = SimNode::new();
    let now = UnixTime::now();
    let issued = issue_certificate(
        &node.source(),
        Some(vec![7; 32]),
        now,
        Duration::from_secs(60),
    )
    .unwrap();
    let cert = RaTlsCert::parse(&issued.cert_der).unwrap();
    assert_eq!(cert.not_before, now.as_secs());
    assert_eq!(cert.not_after, now.as_secs() + 60);
    assert!(cert.legacy_quote.is_none());
    let tagged = cert.tagged.as_ref().unwrap();
    assert_eq!(tagged.evidence.platform(), Platform::Sim);
    assert_eq!(tagged.claims, issued.claims);
    assert_eq!(tagged.claims.nonce.as_deref(), Some(&[7u8; 32][..]));
    assert_eq!(
        tagged.claims,
        Claims::for_public_key(&cert.spki_der, Some(vec![7; 32]))
    );
    let bound = cert.check_tagged_binding().unwrap();
    assert_eq!(bound.report_data, report_data_for(&tagged.claims_buffer));

    // The extension value starts with CBOR tag 0x6365_6c6c ("cell").
    let ext = cella_attest::ratls::encode_tagged_evidence(&tagged.evidence, &tagged.claims_buffer);
    assert_eq!(&ext[..5], &[0xda, 0x63, 0x65, 0x6c, 0x6c]);
    assert_eq!(TAG_CELLA_SIM, 0x6365_6c6c);
    assert_eq!(parse_tagged_evidence(&ext).unwrap(), *tagged);
}

#[test]
fn malformed_certificates_are_refused() {
    assert!(matches!(RaTlsCert::parse(b"nope"), Err(CertError::X509(_))));
    // A certificate without evidence.
    let plain = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    assert_eq!(
        RaTlsCert::parse(plain.cert.der()),
        Err(CertError::NoEvidence)
    );
    // Unknown tag.
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0xd9, 0xea, 0x61, 0x82, 0x40, 0x40]);
    assert_eq!(
        parse_tagged_evidence(&ext),
        Err(CertError::UnknownTag(60001))
    );
    // Not an array of two byte strings.
    assert!(matches!(
        parse_tagged_evidence(&[0xd9, 0xea, 0x60, 0x81, 0x40]),
        Err(CertError::TaggedShape(_))
    ));
}
