//! The attestation policy, the auditors' trust root and signature files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cella_attest::Policy::from_toml_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cella_attest::auditors::TrustRoot::from_toml_str(text);
        let _ = cella_attest::auditors::PolicySignatures::from_toml_str(text);
    }
});
