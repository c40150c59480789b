//! Simulation evidence as carried in a peer's certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = cella_attest::sim::SimEvidence::parse(data) {
        // No key is trusted: verification must refuse, never panic.
        assert!(evidence.verify(&[]).is_err());
        // Against its own key: a valid or an invalid signature, never a panic.
        let _ = evidence.verify(&[evidence.signer]);
    }
});
