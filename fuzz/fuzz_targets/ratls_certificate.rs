//! A whole peer certificate: X.509 parsing, evidence extensions and the key binding checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = cella_attest::ratls::RaTlsCert::parse(data) {
        let _ = cert.check_tagged_binding();
        let _ = cert.check_legacy_binding();
        let _ = cert.bound_evidence();
    }
});
