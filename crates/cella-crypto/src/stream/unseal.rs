//! Unsealing: a sealed stream in, verified plaintext out, chunk by chunk.
//!
//! [`UnsealReader`] checks the header and the key check when it is built, then decrypts
//! one chunk at a time into its own buffer and releases a chunk's plaintext only after
//! the chunk's tag verified. The final chunk is the one the stream ends in; which chunk
//! that is has to be worked out from how many bytes follow, which is what the
//! look-ahead of [`TAG_LEN`] bytes is for (the rules are in [`UnsealReader`]).

use std::io::{self, Read, Write};
use std::ops::Range;

use cella_types::Hasher;
use zeroize::Zeroizing;

use super::format::{self, ChunkCipher, HeaderBytes};
use super::{HEADER_LEN, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, StreamSummary, TAG_LEN, UnsealSummary};
use crate::keys::FileKey;
use crate::support::read_full;

/// Unsealing a stream failed. The variants separate "this is not (a complete) sealed
/// file", "wrong key" and "the bytes were altered", so callers and tests can tell them
/// apart; `docs/formats/sealed-file.md` lists which damage yields which variant.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The input does not start with the sealed-file magic.
    #[error("not a Cella sealed file (bad magic)")]
    NotSealedFile,
    /// A sealed file of a format version this build does not read.
    #[error("unsupported sealed file format version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A sealed file using an algorithm this build does not know.
    #[error("unsupported sealed file algorithm id {algorithm}")]
    UnsupportedAlgorithm {
        /// The algorithm byte found.
        algorithm: u8,
    },
    /// The header's chunk size is outside the allowed range.
    #[error(
        "invalid chunk size {chunk_size} in header: must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
    )]
    InvalidChunkSize {
        /// The chunk size found.
        chunk_size: u32,
    },
    /// The input ended inside the header.
    #[error("truncated sealed file: the input ends inside the header after {len} bytes")]
    TruncatedHeader {
        /// Bytes present.
        len: usize,
    },
    /// The header's key check does not match the key: the file was sealed with another
    /// key, or the header's chunk size, nonce prefix or key check bytes were altered.
    #[error("wrong key for this sealed file (or its header was altered)")]
    WrongKey,
    /// The stream ended without a chunk carrying the final flag.
    #[error("truncated sealed file: the stream ends after {chunks} chunks without a final chunk")]
    TruncatedStream {
        /// Chunks that verified (as non-final) before the end.
        chunks: u64,
    },
    /// Chunk `chunk` (counting from 0) does not verify: its bytes were altered, chunks
    /// were reordered, removed or spliced in from another file, or the stream was cut or
    /// extended in a way that leaves the bytes at that position not a valid chunk.
    #[error("sealed file chunk {chunk} failed authentication (corrupted, reordered or cut)")]
    ChunkAuthFailed {
        /// Index of the chunk that failed.
        chunk: u32,
    },
    /// The final chunk verified but more bytes follow it.
    #[error("sealed file has trailing data after its final chunk {final_chunk}")]
    TrailingData {
        /// Index of the final chunk.
        final_chunk: u32,
    },
    /// A chunk that is not the final one has index 2^32 - 1, so no final chunk can follow.
    #[error("sealed file has more than 2^32 chunks (the chunk counter would overflow)")]
    CounterOverflow,
    /// Reading the sealed stream failed.
    #[error("reading the sealed stream failed")]
    Read(#[source] io::Error),
    /// Writing the plaintext failed.
    #[error("writing the unsealed plaintext failed")]
    Write(#[source] io::Error),
    /// An earlier call on this reader failed; the stream cannot be read further.
    #[error("the sealed stream already failed; it cannot be read further")]
    AlreadyFailed,
}

impl From<UnsealError> for io::Error {
    /// I/O errors pass through unchanged; truncation becomes `UnexpectedEof` and every
    /// other failure `InvalidData`, with the [`UnsealError`] inside for `downcast`.
    fn from(e: UnsealError) -> Self {
        let kind = match e {
            UnsealError::Read(e) | UnsealError::Write(e) => return e,
            UnsealError::TruncatedHeader { .. } | UnsealError::TruncatedStream { .. } => {
                io::ErrorKind::UnexpectedEof
            }
            UnsealError::AlreadyFailed => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Unseals the sealed file `reader` yields into `writer`, verifying each chunk before
/// writing its plaintext. Memory use is bounded by the file's chunk size.
///
/// # Errors
///
/// Any [`UnsealError`]. Chunks before the failing one have already been written:
/// on error, discard everything written to `writer`.
pub fn unseal<R: Read, W: Write>(
    reader: R,
    mut writer: W,
    key: &FileKey,
) -> Result<UnsealSummary, UnsealError> {
    let mut unsealer = UnsealReader::new(reader, key)?;
    while let Some(plaintext) = unsealer.next_chunk()? {
        writer.write_all(plaintext).map_err(UnsealError::Write)?;
    }
    writer.flush().map_err(UnsealError::Write)?;
    unsealer.summary().ok_or(UnsealError::AlreadyFailed)
}

/// Where an [`UnsealReader`] stands.
enum State {
    Open,
    Finished(StreamSummary),
    Failed,
}

/// Decrypts a sealed stream chunk by chunk, as a [`Read`] or through
/// [`next_chunk`](Self::next_chunk), without holding the file.
///
/// Which chunk is final follows from the bytes after it (`n` = bytes left after a
/// full-size chunk, known up to [`TAG_LEN`]):
/// - `n >= TAG_LEN`: not final (any chunk after it is at least a tag long);
/// - a chunk shorter than full size: final;
/// - `n < TAG_LEN` after a full-size chunk: final, and if it does not verify as final
///   but does as non-final, the stream was cut ([`UnsealError::TruncatedStream`]);
///   if it verifies as final and `n > 0`, [`UnsealError::TrailingData`].
pub struct UnsealReader<R> {
    reader: R,
    cipher: ChunkCipher,
    /// Plaintext bytes of a full chunk.
    chunk_size: usize,
    /// A full chunk (`chunk_size + TAG_LEN`) plus `TAG_LEN` bytes of look-ahead.
    buf: Zeroizing<Vec<u8>>,
    /// Bytes of `buf` read from the stream.
    filled: usize,
    /// Bytes at the start of `buf` that belong to the chunk handed out last.
    consumed: usize,
    /// Verified plaintext in `buf` not yet handed out.
    plain: Range<usize>,
    /// Copy of the last full-size chunk, to try it both as final and as non-final.
    spare: Zeroizing<Vec<u8>>,
    /// Index of the next chunk.
    index: u32,
    hasher: Hasher,
    plaintext_len: u64,
    ciphertext_len: u64,
    state: State,
}

impl<R: Read> UnsealReader<R> {
    /// Reads and checks the header and verifies the key check, before any chunk is read
    /// or the chunk buffer is allocated.
    ///
    /// # Errors
    ///
    /// [`UnsealError::NotSealedFile`], [`UnsealError::UnsupportedVersion`],
    /// [`UnsealError::UnsupportedAlgorithm`], [`UnsealError::InvalidChunkSize`],
    /// [`UnsealError::TruncatedHeader`], [`UnsealError::WrongKey`] or
    /// [`UnsealError::Read`].
    pub fn new(mut reader: R, key: &FileKey) -> Result<Self, UnsealError> {
        let mut header: HeaderBytes = [0; HEADER_LEN];
        let got = read_full(&mut reader, &mut header).map_err(UnsealError::Read)?;
        let chunk_size = format::parse_header(&header[..got])?;
        format::verify_key_check(key, &header)?;
        let chunk_size = usize::try_from(chunk_size)
            .map_err(|_| UnsealError::InvalidChunkSize { chunk_size })?;
        let mut hasher = Hasher::new();
        hasher.update(&header);
        Ok(Self {
            reader,
            cipher: ChunkCipher::new(key, header),
            chunk_size,
            buf: Zeroizing::new(vec![0; chunk_size + 2 * TAG_LEN]),
            filled: 0,
            consumed: 0,
            plain: 0..0,
            spare: Zeroizing::new(Vec::new()),
            index: 0,
            hasher,
            plaintext_len: 0,
            ciphertext_len: HEADER_LEN as u64,
            state: State::Open,
        })
    }

    /// The verified plaintext of the next chunk (empty for an empty final chunk; after a
    /// partial [`Read::read`], the rest of the current chunk), or `None` once the final
    /// chunk has been returned and the stream verified to end there.
    ///
    /// # Errors
    ///
    /// [`UnsealError::ChunkAuthFailed`], [`UnsealError::TruncatedStream`],
    /// [`UnsealError::TrailingData`], [`UnsealError::CounterOverflow`] or
    /// [`UnsealError::Read`]; afterwards every call fails with
    /// [`UnsealError::AlreadyFailed`].
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, UnsealError> {
        if self.plain.is_empty() {
            match self.advance()? {
                Some(plain) => self.plain = plain,
                None => return Ok(None),
            }
        }
        let plain = std::mem::replace(&mut self.plain, 0..0);
        Ok(Some(&self.buf[plain]))
    }

    /// The summary of the stream, once it has been read to its verified end.
    pub fn summary(&self) -> Option<UnsealSummary> {
        match self.state {
            State::Finished(summary) => Some(summary),
            State::Open | State::Failed => None,
        }
    }

    /// Reads, verifies and decrypts the next chunk; `None` after the final one.
    fn advance(&mut self) -> Result<Option<Range<usize>>, UnsealError> {
        match self.state {
            State::Open => {}
            State::Finished(_) => return Ok(None),
            State::Failed => return Err(UnsealError::AlreadyFailed),
        }
        match self.read_chunk() {
            Ok(plain) => Ok(Some(plain)),
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn read_chunk(&mut self) -> Result<Range<usize>, UnsealError> {
        // Drop the chunk handed out last; its look-ahead bytes start the next one.
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        let start = self.filled;
        self.filled +=
            read_full(&mut self.reader, &mut self.buf[start..]).map_err(UnsealError::Read)?;
        // Hash the ciphertext before it is decrypted in place.
        self.hasher.update(&self.buf[start..self.filled]);
        self.ciphertext_len += (self.filled - start) as u64;

        let index = self.index;
        let full = self.chunk_size + TAG_LEN;
        let auth_failed = UnsealError::ChunkAuthFailed { chunk: index };
        if self.filled == self.buf.len() {
            // At least TAG_LEN bytes follow: this chunk is not the final one.
            let plain = self
                .cipher
                .open(index, false, &mut self.buf[..full])
                .ok_or(auth_failed)?
                .len();
            self.index = index.checked_add(1).ok_or(UnsealError::CounterOverflow)?;
            self.consumed = full;
            self.plaintext_len += plain as u64;
            return Ok(0..plain);
        }
        // The stream ended within buf: the final chunk starts here.
        if self.filled < TAG_LEN {
            return Err(UnsealError::TruncatedStream {
                chunks: u64::from(index),
            });
        }
        if self.filled < full {
            let plain = self
                .cipher
                .open(index, true, &mut self.buf[..self.filled])
                .ok_or(auth_failed)?
                .len();
            self.finish(self.filled, plain);
            return Ok(0..plain);
        }
        // A full-size chunk and fewer than TAG_LEN bytes after it: final, or the stream
        // was cut after (or a few bytes into the chunk after) a non-final chunk. Keep a
        // copy, since a failed open zeroes the ciphertext.
        self.spare.clear();
        self.spare.extend_from_slice(&self.buf[..full]);
        if let Some(plain) = self.cipher.open(index, true, &mut self.buf[..full]) {
            let plain = plain.len();
            if self.filled > full {
                return Err(UnsealError::TrailingData { final_chunk: index });
            }
            self.finish(full, plain);
            return Ok(0..plain);
        }
        if self.cipher.open(index, false, &mut self.spare).is_some() {
            return Err(UnsealError::TruncatedStream {
                chunks: u64::from(index) + 1,
            });
        }
        Err(auth_failed)
    }

    /// Marks the stream verified to its end, the final chunk being `buf[..len]` with
    /// `plain` bytes of plaintext.
    fn finish(&mut self, len: usize, plain: usize) {
        self.consumed = len;
        self.plaintext_len += plain as u64;
        self.state = State::Finished(StreamSummary {
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            ciphertext_digest: std::mem::take(&mut self.hasher).finish(),
        });
    }
}

impl<R: Read> Read for UnsealReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.plain.is_empty() {
            match self.advance()? {
                Some(plain) => self.plain = plain,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.plain.len());
        out[..n].copy_from_slice(&self.buf[self.plain.start..self.plain.start + n]);
        self.plain.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::MIN_CHUNK_SIZE;

    const C: usize = MIN_CHUNK_SIZE as usize;

    /// A stream whose chunks are sealed at the given indices and flags.
    fn crafted(key: &FileKey, chunks: &[(u32, bool, usize)]) -> Vec<u8> {
        let header = format::encode_header(key, MIN_CHUNK_SIZE, [3; 7]);
        let cipher = ChunkCipher::new(key, header);
        let mut out = header.to_vec();
        for &(index, last, len) in chunks {
            let mut chunk = vec![5u8; len];
            let tag = cipher.seal(index, last, &mut chunk);
            out.extend_from_slice(&chunk);
            out.extend_from_slice(tag.as_ref());
        }
        out
    }

    #[test]
    fn a_non_final_chunk_at_the_last_counter_value_overflows() {
        let key = FileKey::generate();
        let stream = crafted(&key, &[(u32::MAX, false, C), (0, true, 1)]);
        let mut reader = UnsealReader::new(&stream[..], &key).unwrap();
        reader.index = u32::MAX;
        assert!(matches!(
            reader.next_chunk().unwrap_err(),
            UnsealError::CounterOverflow
        ));
    }

    #[test]
    fn a_final_chunk_at_the_last_counter_value_is_accepted() {
        let key = FileKey::generate();
        let stream = crafted(&key, &[(u32::MAX - 1, false, C), (u32::MAX, true, 1)]);
        let mut reader = UnsealReader::new(&stream[..], &key).unwrap();
        reader.index = u32::MAX - 1;
        assert_eq!(reader.next_chunk().unwrap().unwrap().len(), C);
        assert_eq!(reader.next_chunk().unwrap().unwrap(), &[5]);
        assert!(reader.next_chunk().unwrap().is_none());
        assert_eq!(reader.summary().unwrap().plaintext_len, C as u64 + 1);
    }

    #[test]
    fn memory_is_bounded_by_the_chunk_size() {
        let key = FileKey::generate();
        let stream = crafted(&key, &[(0, false, C), (1, false, C), (2, true, C)]);
        let mut reader = UnsealReader::new(&stream[..], &key).unwrap();
        while reader.next_chunk().unwrap().is_some() {
            assert_eq!(reader.buf.len(), C + 2 * TAG_LEN);
            assert!(reader.spare.capacity() <= C + TAG_LEN);
        }
    }
}
