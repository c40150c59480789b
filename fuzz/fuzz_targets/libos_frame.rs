//! The LibOS sidecar protocol's frame parser, as both ends run it on the bytes of the
//! other: frames, then the checks of a `Deploy`.
#![no_main]

use cella_preload::protocol::{Body, check_deploy, decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A stream of frames: decode until more bytes are needed or one is refused.
    while let Ok(Some((envelope, used))) = decode_frame(rest) {
        assert!(used <= rest.len() && used > 4);
        if let Some(Body::Deploy(deploy)) = &envelope.body {
            let _ = check_deploy(deploy);
        }
        // What decodes re-encodes within the frame limit.
        let again = encode_frame(&envelope).expect("a decoded envelope re-encodes");
        assert!(decode_frame(&again).expect("re-decodes").is_some());
        rest = &rest[used..];
    }
});
