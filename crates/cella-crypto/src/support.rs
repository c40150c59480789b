//! Small helpers shared by the modules of this crate: the OS random source, AES-256-GCM
//! key construction and "read until full or end of stream".
//!
//! The two panics here are deliberate and documented: each guards a condition that
//! cannot arise for the inputs this crate passes, or that leaves no safe way to continue.

use std::io::{self, Read};

use ring::aead::{self, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Fills `out` from the operating system's random source.
///
/// # Panics
///
/// If the OS random source fails (on Linux: `getrandom(2)` is missing or broken). Keys
/// and nonces cannot be made safely without it, and carrying on with predictable bytes
/// would reuse nonces, so the process stops instead.
pub(crate) fn fill_random(out: &mut [u8]) {
    if SystemRandom::new().fill(out).is_err() {
        panic!("the operating system's random source failed; refusing to make keys or nonces");
    }
}

/// `N` fresh random bytes (for public values such as nonces; secrets go through
/// [`fill_random`] straight into their zeroizing home).
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// Builds an AES-256-GCM key from 32 key bytes.
///
/// # Panics
///
/// Never: `ring` rejects a key only when its length is not the algorithm's key length,
/// and the type fixes it at 32.
pub(crate) fn aes_256_gcm_key(bytes: &[u8; 32]) -> LessSafeKey {
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(key) => LessSafeKey::new(key),
        Err(_) => unreachable!("AES-256-GCM takes exactly 32 key bytes"),
    }
}

/// Encrypts `in_out` in place and returns the tag.
///
/// # Panics
///
/// If `in_out` is longer than AES-GCM's per-message limit (about 64 GiB). Stream chunks
/// are at most 16 MiB; a sealed value that large is a caller bug.
pub(crate) fn seal_in_place(
    key: &LessSafeKey,
    nonce: [u8; aead::NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> aead::Tag {
    match key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        in_out,
    ) {
        Ok(tag) => tag,
        Err(_) => panic!(
            "AES-GCM refused to seal {} bytes: over the per-message limit",
            in_out.len()
        ),
    }
}

/// Reads into `buf` until it is full or the reader reports end of stream, retrying on
/// `Interrupted`. Returns how many bytes were read: less than `buf.len()` means the
/// stream ended.
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
