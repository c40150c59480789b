//! The TCG DICE tagged-evidence extension value (CBOR tag over [evidence, claims]) and the
//! claims buffer inside it: bytes chosen by any TLS peer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tagged) = cella_attest::ratls::parse_tagged_evidence(data) {
        // What parses must re-encode to an extension that parses to the same value.
        let again =
            cella_attest::ratls::encode_tagged_evidence(&tagged.evidence, &tagged.claims_buffer);
        assert_eq!(
            cella_attest::ratls::parse_tagged_evidence(&again).ok(),
            Some(tagged)
        );
    }
    let _ = cella_attest::claims::Claims::decode(data);
});
