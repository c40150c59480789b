//! DCAP verification of the dcap-qvl sample quote against its collateral.

use std::time::Duration;

use cella_attest::Measurement;
use cella_attest::dcap::{
    Collateral, CollateralError, DcapError, DcapVerifier, QuoteError, TcbStatus,
};
use cella_attest::policy::{PolicyViolation, RolePolicy};
use rustls::pki_types::UnixTime;

use crate::common::{sample_collateral, sample_dcap, sample_quote, sample_time, testdata};

#[test]
fn sample_quote_verifies_and_agrees_with_dcap_qvl() {
    let quote = sample_quote();
    let report = sample_dcap().verify(&quote, sample_time()).unwrap();

    // dcap-qvl's own API, on the same inputs.
    let raw: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(&testdata("sgx_quote_collateral.json")).unwrap();
    let theirs = dcap_qvl::verify::ring::verify(&quote, &raw, sample_time().as_secs()).unwrap();
    let their_report = theirs.report.as_sgx().unwrap();

    assert_eq!(report.mr_enclave, Measurement(their_report.mr_enclave));
    assert_eq!(report.mr_signer, Measurement(their_report.mr_signer));
    assert_eq!(report.isv_prod_id, their_report.isv_prod_id);
    assert_eq!(report.isv_svn, their_report.isv_svn);
    assert_eq!(report.report_data, their_report.report_data);
    assert_eq!(report.tcb_status.name(), theirs.status);
    assert_eq!(report.advisory_ids, theirs.advisory_ids);

    // And the values the test data's README states.
    assert_eq!(
        report.mr_enclave.to_string(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        report.mr_signer.to_string(),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(
        report.tcb_status,
        TcbStatus::ConfigurationAndSWHardeningNeeded
    );
    assert_eq!(report.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(report.report_data.starts_with(b"Hello, world!"));
    assert!(!report.debug);
}

#[test]
fn flipped_byte_is_rejected_as_a_bad_quote() {
    let mut quote = sample_quote();
    // A byte of MRENCLAVE, inside the part the quoting enclave signs.
    quote[48 + 64] ^= 0x01;
    let err = sample_dcap().verify(&quote, sample_time()).unwrap_err();
    assert!(
        matches!(err, DcapError::Quote(QuoteError::Rejected(_))),
        "{err:?}"
    );
}

#[test]
fn expired_collateral_is_rejected_as_our_problem() {
    let (_, until) = sample_collateral().validity();
    let after = UnixTime::since_unix_epoch(Duration::from_secs(until + 1));
    let err = sample_dcap().verify(&sample_quote(), after).unwrap_err();
    assert!(
        matches!(
            err,
            DcapError::Collateral(CollateralError::Expired { valid_until, .. }) if valid_until == until
        ),
        "{err:?}"
    );
    let (from, _) = sample_collateral().validity();
    let before = UnixTime::since_unix_epoch(Duration::from_secs(from - 1));
    let err = sample_dcap().verify(&sample_quote(), before).unwrap_err();
    assert!(
        matches!(
            err,
            DcapError::Collateral(CollateralError::NotYetValid { .. })
        ),
        "{err:?}"
    );
}

fn role(statuses: &str, advisories: &str) -> RolePolicy {
    toml::from_str(&format!(
        "max_evidence_age_secs = 60\n\
         mr_enclave = [\"33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb\"]\n\
         accepted_tcb_statuses = [{statuses}]\naccepted_advisory_ids = [{advisories}]\n"
    ))
    .unwrap()
}

#[test]
fn tcb_status_and_advisories_outside_the_policy_are_rejected() {
    let report = sample_dcap()
        .verify(&sample_quote(), sample_time())
        .unwrap();

    let accepted = role(
        "\"ConfigurationAndSWHardeningNeeded\"",
        "\"INTEL-SA-00289\", \"INTEL-SA-00615\"",
    );
    accepted.check_sgx(&report).unwrap();

    let up_to_date_only = role("\"UpToDate\"", "\"INTEL-SA-00289\", \"INTEL-SA-00615\"");
    assert_eq!(
        up_to_date_only.check_sgx(&report),
        Err(PolicyViolation::TcbStatus {
            status: TcbStatus::ConfigurationAndSWHardeningNeeded,
            accepted: vec![TcbStatus::UpToDate],
        })
    );

    let one_advisory = role(
        "\"ConfigurationAndSWHardeningNeeded\"",
        "\"INTEL-SA-00289\"",
    );
    assert_eq!(
        one_advisory.check_sgx(&report),
        Err(PolicyViolation::Advisory("INTEL-SA-00615".into()))
    );

    let mut other_enclave = accepted.clone();
    other_enclave.mr_enclave = vec![Measurement([0; 32])];
    assert!(matches!(
        other_enclave.check_sgx(&report),
        Err(PolicyViolation::Enclave { .. })
    ));

    // Accepted by signer, product and minimum SVN instead.
    let mut by_signer: RolePolicy = toml::from_str(
        "max_evidence_age_secs = 60\naccepted_tcb_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\n\
         accepted_advisory_ids = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n\
         [[mr_signer]]\nmr_signer = \"815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6\"\n\
         isv_prod_id = 0\nmin_isv_svn = 0\n",
    )
    .unwrap();
    by_signer.check_sgx(&report).unwrap();
    by_signer.mr_signer[0].min_isv_svn = 1;
    assert!(matches!(
        by_signer.check_sgx(&report),
        Err(PolicyViolation::Enclave { .. })
    ));
}

#[test]
fn missing_collateral_is_a_configuration_error() {
    let err = DcapVerifier::new()
        .verify(&sample_quote(), sample_time())
        .unwrap_err();
    assert!(
        matches!(err, DcapError::Collateral(CollateralError::Missing { ref fmspc }) if fmspc == "00A067110000"),
        "{err:?}"
    );
}

#[test]
fn malformed_inputs_are_refused() {
    let err = sample_dcap()
        .verify(&[0u8; 100], sample_time())
        .unwrap_err();
    assert!(
        matches!(err, DcapError::Quote(QuoteError::Malformed(_))),
        "{err:?}"
    );
    assert!(matches!(
        Collateral::from_json(b"{}"),
        Err(CollateralError::Malformed(_))
    ));
}

#[test]
fn unverified_mr_enclave_reads_the_quote_and_refuses_garbage() {
    assert_eq!(
        cella_attest::dcap::unverified_mr_enclave(&sample_quote())
            .unwrap()
            .to_string(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert!(matches!(
        cella_attest::dcap::unverified_mr_enclave(&[0u8; 100]),
        Err(QuoteError::Malformed(_))
    ));
}

#[test]
fn collateral_files_load_or_name_the_file() {
    use cella_attest::dcap::{CollateralFileError, load_collateral};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join("sgx_quote_collateral.json");
    let loaded = load_collateral(&path).unwrap();
    assert_eq!(loaded.validity(), sample_collateral().validity());

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"pck_crl\": 1}").unwrap();
    let err = load_collateral(&bad).unwrap_err();
    assert!(
        matches!(&err, CollateralFileError::Invalid { path, .. } if path == &bad),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.json"), "{err}");
    let missing = dir.path().join("missing.json");
    let err = load_collateral(&missing).unwrap_err();
    assert!(matches!(err, CollateralFileError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.json"), "{err}");
}
