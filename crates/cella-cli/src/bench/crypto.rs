//! The sealed file format's throughput for `cella bench`: how fast this machine seals and
//! unseals with the default chunk size, on one thread, with the data in memory.

use std::io::{self, Write};
use std::time::Instant;

use cella_crypto::keys::FileKey;
use cella_crypto::stream::{DEFAULT_CHUNK_SIZE, seal, sealed_len, unseal};

/// Seals `bytes` bytes from memory into memory, then unseals them into a sink that
/// compares them with the original, with [`DEFAULT_CHUNK_SIZE`], and returns
/// `(seal_gbps, unseal_gbps)` in 10^9 plaintext bytes per second.
///
/// Both figures include the SHA-256 of the ciphertext that sealing and unsealing always
/// compute (a file's identity), so they are bounded by AES-GCM and SHA-256 run one after
/// the other. The output buffer is touched before timing, so page faults are not
/// counted. Needs about twice `bytes` of memory.
///
/// # Panics
///
/// If the sealed data does not unseal to what was sealed, which would be a bug in
/// `cella-crypto` (sealing and unsealing in memory cannot otherwise fail).
pub(crate) fn seal_throughput(bytes: usize) -> (f64, f64) {
    let key = FileKey::generate();
    let data: Vec<u8> = (0..bytes).map(|i| i.to_le_bytes()[0]).collect();
    let sealed_len = u64::try_from(bytes)
        .ok()
        .and_then(|len| sealed_len(len, DEFAULT_CHUNK_SIZE))
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(bytes);
    let mut sealed = vec![0xff; sealed_len];
    sealed.clear();

    let started = Instant::now();
    let sealed_ok = seal(&data[..], &mut sealed, &key, DEFAULT_CHUNK_SIZE);
    let seal_secs = started.elapsed().as_secs_f64();

    let mut check = Compare {
        expected: &data,
        equal: true,
    };
    let started = Instant::now();
    let unsealed_ok = unseal(&sealed[..], &mut check, &key);
    let unseal_secs = started.elapsed().as_secs_f64();

    match (sealed_ok, unsealed_ok) {
        (Ok(_), Ok(_)) if check.equal && check.expected.is_empty() => {}
        other => panic!("sealing benchmark did not round-trip: {other:?}"),
    }
    (gbps(bytes, seal_secs), gbps(bytes, unseal_secs))
}

/// A writer that checks what it is given against `expected`, at memory speed.
struct Compare<'a> {
    expected: &'a [u8],
    equal: bool,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.expected.len());
        self.equal &= n == buf.len() && buf == &self.expected[..n];
        self.expected = &self.expected[n..];
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e9
}

#[cfg(test)]
mod tests {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    use super::*;

    #[test]
    fn reports_positive_finite_rates() {
        for bytes in [0, 1, 256 * 1024 + 3] {
            let (seal, unseal) = seal_throughput(bytes);
            assert!(seal.is_finite() && seal >= 0.0, "{seal}");
            assert!(unseal.is_finite() && unseal >= 0.0, "{unseal}");
        }
    }

    #[test]
    fn compare_sink_detects_differences() {
        let mut check = Compare {
            expected: b"abc",
            equal: true,
        };
        check.write_all(b"ab").unwrap();
        assert!(check.equal);
        check.write_all(b"x").unwrap();
        assert!(!check.equal);
    }

    /// Release-build figures for the record, with the two primitives alone for context:
    /// `cargo test -p cella-cli --release -- --ignored --nocapture print_throughput`.
    #[test]
    #[ignore = "benchmark: run in release with --ignored --nocapture"]
    fn print_throughput() {
        const SIZE: usize = 256 << 20;
        let mut best = (0f64, 0f64);
        for _ in 0..5 {
            let (seal, unseal) = seal_throughput(SIZE);
            best = (best.0.max(seal), best.1.max(unseal));
        }
        println!(
            "seal_throughput(256 MiB), best of 5: seal {:.2} GB/s, unseal {:.2} GB/s",
            best.0, best.1
        );

        let chunk = DEFAULT_CHUNK_SIZE as usize;
        let mut buf = vec![7u8; SIZE];
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1; 32]).unwrap());
        let mut tags_xor = 0u8;
        let started = Instant::now();
        for (i, piece) in buf.chunks_mut(chunk).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&i.to_le_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    piece,
                )
                .unwrap();
            tags_xor ^= tag.as_ref()[0];
        }
        println!(
            "ring AES-256-GCM alone, 64 KiB messages: {:.2} GB/s (tags {tags_xor:02x})",
            gbps(SIZE, started.elapsed().as_secs_f64())
        );
        let started = Instant::now();
        let digest = cella_types::Digest::of(&buf);
        println!(
            "SHA-256 alone: {:.2} GB/s ({})",
            gbps(SIZE, started.elapsed().as_secs_f64()),
            &digest.to_hex()[..8]
        );
    }
}
