//! The sealed stream file format: how Cella encrypts a data owner's file.
//!
//! A sealed file is a fixed 53-byte header followed by chunks. Each chunk is the
//! AES-256-GCM encryption of up to `chunk_size` plaintext bytes followed by its 16-byte
//! tag, under a nonce made of a random per-file prefix, the chunk counter and a flag
//! that marks the final chunk (the STREAM construction of Hoang, Reyhanitabar, Rogaway
//! and Vizár). The whole header is the associated data of every chunk, and it carries an
//! HMAC key check so that a wrong key is told apart before any chunk is read. The
//! format is specified byte by byte in `docs/formats/sealed-file.md`.
//!
//! Invariants the code keeps:
//! - memory is bounded by the chunk size, whatever the file size: [`SealWriter`] holds
//!   one chunk, [`UnsealReader`] one chunk plus a tag's worth of look-ahead (and, once, at
//!   the very end, a copy of the last chunk to tell truncation from corruption);
//! - no plaintext of a chunk leaves [`UnsealReader`] before that chunk's tag verified;
//! - a stream that is not closed by a chunk carrying the final flag is an error, and so
//!   are bytes after it (see [`UnsealError`] for exactly which cases are told apart).
//!
//! Plaintext of earlier chunks is released before later chunks are read, so a consumer
//! must treat its output as incomplete until [`unseal`] returns `Ok` or the reader
//! returns end of stream.

mod format;
mod framing;
mod seal;
mod unseal;

#[cfg(test)]
mod tests;

use cella_types::Digest;

pub use framing::FramingCheck;
pub use seal::{SealError, SealWriter, seal};
pub use unseal::{UnsealError, UnsealReader, unseal};

use crate::keys::FileKey;

/// The 8 bytes every sealed file starts with.
pub const MAGIC: [u8; 8] = *b"CELLA-SF";
/// The format version this crate reads and writes (header offset 8).
pub const FORMAT_VERSION: u8 = 1;
/// Algorithm id of AES-256-GCM (header offset 9), the only algorithm of version 1.
pub const ALGORITHM_AES_256_GCM: u8 = 1;
/// Length of the random per-file nonce prefix (header offset 14).
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the key check (header offset 21): a full HMAC-SHA256 output, so that it
/// also commits the header to the key with 128-bit collision resistance.
pub const KEY_CHECK_LEN: usize = 32;
/// Length of the fixed header of format version 1.
pub const HEADER_LEN: usize = 21 + KEY_CHECK_LEN;
/// Length of the AES-GCM tag after each chunk's ciphertext.
pub const TAG_LEN: usize = 16;

/// Default plaintext bytes per chunk: large enough that the 16-byte tag and the
/// per-chunk work are negligible (0.02 % overhead), small enough to stay in L2 cache.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Smallest allowed chunk size: below one page the per-chunk overhead stops being
/// negligible and nothing is gained.
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// Largest allowed chunk size: bounds the memory a reader allocates for a file whose
/// header it has just read (the key check is verified before the buffer is allocated).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// What sealing or unsealing one stream produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// Plaintext bytes sealed or recovered.
    pub plaintext_len: u64,
    /// Bytes of the complete sealed file, header included.
    pub ciphertext_len: u64,
    /// SHA-256 of the complete sealed file, header included: the file's identity in Cella.
    pub ciphertext_digest: Digest,
}

/// What [`seal`] and [`SealWriter::finish`] return.
pub type SealSummary = StreamSummary;
/// What [`unseal`] and [`UnsealReader::summary`] return.
pub type UnsealSummary = StreamSummary;

/// The length of the sealed file for `plaintext_len` bytes at `chunk_size`:
/// `HEADER_LEN + plaintext_len + TAG_LEN * max(1, ceil(plaintext_len / chunk_size))`.
///
/// Returns `None` if `chunk_size` is outside `MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE`, the file
/// would need more than 2^32 chunks, or the length overflows `u64`.
pub fn sealed_len(plaintext_len: u64, chunk_size: u32) -> Option<u64> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return None;
    }
    let chunks = plaintext_len.div_ceil(u64::from(chunk_size)).max(1);
    if chunks > 1 << 32 {
        return None;
    }
    chunks
        .checked_mul(TAG_LEN as u64)?
        .checked_add(HEADER_LEN as u64)?
        .checked_add(plaintext_len)
}

/// Seals `plaintext` held in memory with [`DEFAULT_CHUNK_SIZE`].
///
/// # Errors
///
/// Only [`SealError::CounterOverflow`], for more than 2^32 chunks (256 TiB), which a
/// slice in memory cannot reach; the signature keeps the error rather than hide it.
pub fn seal_to_vec(plaintext: &[u8], key: &FileKey) -> Result<Vec<u8>, SealError> {
    let capacity = u64::try_from(plaintext.len())
        .ok()
        .and_then(|len| sealed_len(len, DEFAULT_CHUNK_SIZE))
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
    seal(plaintext, &mut out, key, DEFAULT_CHUNK_SIZE)?;
    Ok(out)
}

/// Unseals a complete sealed file held in memory.
///
/// # Errors
///
/// Any [`UnsealError`] except the I/O variants. On error no plaintext is returned (the
/// partial output is zeroized).
pub fn unseal_to_vec(sealed: &[u8], key: &FileKey) -> Result<Vec<u8>, UnsealError> {
    let mut out = Vec::with_capacity(sealed.len().saturating_sub(HEADER_LEN + TAG_LEN));
    match unseal(sealed, &mut out, key) {
        Ok(_) => Ok(out),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(e)
        }
    }
}
