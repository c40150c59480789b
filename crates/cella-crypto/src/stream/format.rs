//! The bytes of format version 1: header fields and their checks, the key check, chunk
//! nonces, and per-chunk AES-256-GCM with the header as associated data.
//!
//! Pure computation over bytes; reading and writing streams is in `seal` and `unseal`.
//! Offsets here are the ones in the table of `docs/formats/sealed-file.md`.

use ring::aead::{self, Aad, LessSafeKey, Nonce};
use ring::hmac;

use super::unseal::UnsealError;
use super::{
    ALGORITHM_AES_256_GCM, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
    NONCE_PREFIX_LEN,
};
use crate::keys::FileKey;
use crate::support;

const VERSION_AT: usize = 8;
const ALGORITHM_AT: usize = 9;
const CHUNK_SIZE_AT: usize = 10;
const NONCE_PREFIX_AT: usize = 14;
const KEY_CHECK_AT: usize = NONCE_PREFIX_AT + NONCE_PREFIX_LEN;

/// Domain separation for the key check: no other HMAC computed with a file key can
/// produce the same input.
const KEY_CHECK_LABEL: &[u8] = b"cella-sealed-file-v1 key check";
const KEY_CHECK_MSG_LEN: usize = KEY_CHECK_LABEL.len() + KEY_CHECK_AT;

/// The last-flag byte of a chunk nonce.
const FINAL_CHUNK: u8 = 1;
const NOT_FINAL_CHUNK: u8 = 0;

/// A complete version-1 header.
pub(super) type HeaderBytes = [u8; HEADER_LEN];

/// Builds the header, key check included.
pub(super) fn encode_header(
    key: &FileKey,
    chunk_size: u32,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
) -> HeaderBytes {
    let mut header = [0u8; HEADER_LEN];
    header[..VERSION_AT].copy_from_slice(&MAGIC);
    header[VERSION_AT] = FORMAT_VERSION;
    header[ALGORITHM_AT] = ALGORITHM_AES_256_GCM;
    header[CHUNK_SIZE_AT..NONCE_PREFIX_AT].copy_from_slice(&chunk_size.to_le_bytes());
    header[NONCE_PREFIX_AT..KEY_CHECK_AT].copy_from_slice(&nonce_prefix);
    let tag = hmac::sign(&hmac_key(key), &key_check_message(&header));
    header[KEY_CHECK_AT..].copy_from_slice(tag.as_ref());
    header
}

/// Checks the fields of a header that may have been cut short, in file order, so that
/// the first wrong field is the one reported: magic, version, algorithm, chunk size,
/// then completeness. Returns the chunk size. The key check is separate
/// ([`verify_key_check`]).
pub(super) fn parse_header(header: &[u8]) -> Result<u32, UnsealError> {
    let magic_seen = header.len().min(MAGIC.len());
    if header[..magic_seen] != MAGIC[..magic_seen] {
        return Err(UnsealError::NotSealedFile);
    }
    let truncated = || UnsealError::TruncatedHeader { len: header.len() };
    let version = *header.get(VERSION_AT).ok_or_else(truncated)?;
    if version != FORMAT_VERSION {
        return Err(UnsealError::UnsupportedVersion { version });
    }
    let algorithm = *header.get(ALGORITHM_AT).ok_or_else(truncated)?;
    if algorithm != ALGORITHM_AES_256_GCM {
        return Err(UnsealError::UnsupportedAlgorithm { algorithm });
    }
    let chunk_size = header
        .get(CHUNK_SIZE_AT..NONCE_PREFIX_AT)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(truncated)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(UnsealError::InvalidChunkSize { chunk_size });
    }
    if header.len() < HEADER_LEN {
        return Err(truncated());
    }
    Ok(chunk_size)
}

/// Verifies the header's key check against `key`, in constant time.
pub(super) fn verify_key_check(key: &FileKey, header: &HeaderBytes) -> Result<(), UnsealError> {
    hmac::verify(
        &hmac_key(key),
        &key_check_message(header),
        &header[KEY_CHECK_AT..],
    )
    .map_err(|_| UnsealError::WrongKey)
}

fn hmac_key(key: &FileKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes())
}

/// `KEY_CHECK_LABEL ‖ header[0..21]`: what the key check authenticates.
fn key_check_message(header: &HeaderBytes) -> [u8; KEY_CHECK_MSG_LEN] {
    let mut msg = [0u8; KEY_CHECK_MSG_LEN];
    msg[..KEY_CHECK_LABEL.len()].copy_from_slice(KEY_CHECK_LABEL);
    msg[KEY_CHECK_LABEL.len()..].copy_from_slice(&header[..KEY_CHECK_AT]);
    msg
}

/// The 96-bit nonce of chunk `index`: `prefix (7) ‖ index (u32 BE) ‖ last flag (0 or 1)`.
pub(super) fn chunk_nonce(
    prefix: &[u8; NONCE_PREFIX_LEN],
    index: u32,
    last: bool,
) -> [u8; aead::NONCE_LEN] {
    let mut nonce = [0u8; aead::NONCE_LEN];
    nonce[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    nonce[NONCE_PREFIX_LEN + 4] = if last { FINAL_CHUNK } else { NOT_FINAL_CHUNK };
    nonce
}

/// AES-256-GCM over the chunks of one stream: the file key, built once, and the header,
/// which is every chunk's associated data and holds the nonce prefix.
pub(super) struct ChunkCipher {
    key: LessSafeKey,
    header: HeaderBytes,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl ChunkCipher {
    pub(super) fn new(key: &FileKey, header: HeaderBytes) -> Self {
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&header[NONCE_PREFIX_AT..KEY_CHECK_AT]);
        Self {
            key: support::aes_256_gcm_key(key.as_bytes()),
            header,
            nonce_prefix,
        }
    }

    /// Encrypts chunk `index`'s plaintext in place and returns its tag.
    pub(super) fn seal(&self, index: u32, last: bool, plaintext: &mut [u8]) -> aead::Tag {
        let nonce = chunk_nonce(&self.nonce_prefix, index, last);
        support::seal_in_place(&self.key, nonce, &self.header, plaintext)
    }

    /// Verifies and decrypts chunk `index` (`ciphertext ‖ tag`) in place, returning the
    /// plaintext, or `None` if the tag does not verify (then `ring` has zeroed the
    /// ciphertext part of `chunk`).
    pub(super) fn open<'a>(
        &self,
        index: u32,
        last: bool,
        chunk: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        let nonce = Nonce::assume_unique_for_key(chunk_nonce(&self.nonce_prefix, index, last));
        self.key
            .open_in_place(nonce, Aad::from(&self.header), chunk)
            .ok()
    }
}
