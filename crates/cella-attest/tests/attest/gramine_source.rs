//! The sgx-dcap evidence source against a fake `/dev/attestation` directory.

use std::sync::Arc;
use std::time::Duration;

use cella_attest::evidence::{EvidenceError, EvidenceSource};
use cella_attest::gramine::GramineDcapSource;
use cella_attest::ratls::{IssueError, issue_certificate};
use cella_attest::{Evidence, Platform};
use rustls::pki_types::UnixTime;

use crate::common::{sample_dcap, sample_quote, sample_time};

/// A directory laid out like Gramine's `/dev/attestation`, serving the sample quote.
fn fake_device(attestation_type: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user_report_data"), [0u8; 64]).unwrap();
    std::fs::write(dir.path().join("quote"), sample_quote()).unwrap();
    if let Some(t) = attestation_type {
        std::fs::write(dir.path().join("attestation_type"), t).unwrap();
    }
    dir
}

fn hello_report_data() -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..13].copy_from_slice(b"Hello, world!");
    rd
}

#[test]
fn reads_the_quote_after_writing_report_data() {
    let dir = fake_device(Some("dcap\n"));
    let source = GramineDcapSource::new(dir.path());
    assert_eq!(source.platform(), Platform::SgxDcap);
    let evidence = source.evidence(&hello_report_data()).unwrap();
    assert_eq!(evidence, Evidence::SgxDcapQuote(sample_quote()));
    // The report_data was written to the device.
    assert_eq!(
        std::fs::read(dir.path().join("user_report_data")).unwrap(),
        hello_report_data()
    );
    // And the quote verifies.
    let report = sample_dcap()
        .verify(evidence.bytes(), sample_time())
        .unwrap();
    assert_eq!(report.report_data, hello_report_data());
}

#[test]
fn a_quote_over_other_report_data_is_refused() {
    // The fake device always serves the sample quote: asking for a certificate (whose
    // report_data hashes fresh claims) must fail loudly, not produce a certificate whose
    // quote does not bind its key.
    let dir = fake_device(None);
    let source = GramineDcapSource::new(dir.path());
    let err =
        issue_certificate(&source, None, UnixTime::now(), Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(
            err,
            IssueError::Evidence(EvidenceError::ReportDataMismatch { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn device_problems_are_reported_not_papered_over() {
    let dir = fake_device(Some("epid"));
    let err = GramineDcapSource::new(dir.path())
        .evidence(&hello_report_data())
        .unwrap_err();
    assert!(
        matches!(err, EvidenceError::WrongAttestationType { ref found, .. } if found == "epid")
    );

    let empty = tempfile::tempdir().unwrap();
    let err = GramineDcapSource::new(empty.path())
        .evidence(&hello_report_data())
        .unwrap_err();
    assert!(matches!(err, EvidenceError::Device { .. }), "{err:?}");
    // The source never creates the device's files.
    assert!(!empty.path().join("user_report_data").exists());

    let dir = fake_device(None);
    std::fs::write(dir.path().join("quote"), b"short").unwrap();
    let err = GramineDcapSource::new(dir.path())
        .evidence(&hello_report_data())
        .unwrap_err();
    assert!(
        matches!(err, EvidenceError::MalformedQuote { .. }),
        "{err:?}"
    );

    let dir = fake_device(None);
    std::fs::write(dir.path().join("quote"), vec![0u8; 40_000]).unwrap();
    let err = GramineDcapSource::new(dir.path())
        .evidence(&hello_report_data())
        .unwrap_err();
    assert!(
        matches!(err, EvidenceError::QuoteTooLarge { .. }),
        "{err:?}"
    );
}

#[test]
fn concurrent_requests_do_not_interleave() {
    let dir = fake_device(None);
    let source = Arc::new(GramineDcapSource::new(dir.path()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let source = source.clone();
            std::thread::spawn(move || source.evidence(&hello_report_data()).is_ok())
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
}
