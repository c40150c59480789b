//! Sealing: plaintext in, sealed stream out, one chunk of memory.
//!
//! [`SealWriter`] buffers plaintext until it holds more than one chunk's worth; only then
//! is the buffered chunk known not to be the last, and it is sealed with the final flag
//! clear. [`SealWriter::finish`] seals what remains (possibly nothing) as the final
//! chunk. So a file ends with an empty chunk only when the whole plaintext is empty, and
//! a writer dropped without `finish` leaves a stream that unsealing reports as truncated.

use std::io::{self, Read, Write};

use cella_types::Hasher;
use zeroize::Zeroizing;

use super::format::{self, ChunkCipher};
use super::{
    MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, NONCE_PREFIX_LEN, SealSummary, StreamSummary, TAG_LEN,
};
use crate::keys::FileKey;
use crate::support;

/// Sealing a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The requested chunk size is outside `MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE` (caller misuse).
    #[error(
        "invalid chunk size {chunk_size}: must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
    )]
    InvalidChunkSize {
        /// The rejected chunk size.
        chunk_size: u32,
    },
    /// The plaintext needs more than 2^32 chunks, the limit of the 32-bit chunk counter.
    #[error("plaintext too long: more than 2^32 chunks (the chunk counter would overflow)")]
    CounterOverflow,
    /// Reading the plaintext failed.
    #[error("reading the plaintext to seal failed")]
    Read(#[source] io::Error),
    /// Writing the sealed stream failed; what was written so far is not a valid file.
    #[error("writing the sealed stream failed")]
    Write(#[source] io::Error),
    /// An earlier call on this writer failed, so the stream it wrote is already broken.
    #[error("the sealed stream already failed; nothing more can be written to it")]
    AlreadyFailed,
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Read(e) | SealError::Write(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// Seals everything `reader` yields into `writer` as one sealed file, with
/// `chunk_size` plaintext bytes per chunk ([`super::DEFAULT_CHUNK_SIZE`] unless there is
/// a reason to differ). Memory use is one chunk, whatever the length.
///
/// # Errors
///
/// [`SealError::InvalidChunkSize`] before anything is written; [`SealError::Read`],
/// [`SealError::Write`] or [`SealError::CounterOverflow`] part way, in which case the
/// output is not a valid sealed file (it lacks a final chunk).
pub fn seal<R: Read, W: Write>(
    mut reader: R,
    writer: W,
    key: &FileKey,
    chunk_size: u32,
) -> Result<SealSummary, SealError> {
    let mut sealer = SealWriter::new(writer, key, chunk_size)?;
    loop {
        // Read straight into the chunk buffer; reading past a full chunk is what shows
        // that the chunk is not the last.
        let n = match reader.read(&mut sealer.buf[sealer.filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SealError::Read(e)),
        };
        sealer.accept(n)?;
    }
    sealer.finish()
}

/// A [`Write`] adapter that seals what is written to it into a sealed file.
///
/// Call [`finish`](Self::finish) at the end: it writes the final chunk. `flush` passes
/// through to the inner writer but cannot emit the buffered partial chunk.
pub struct SealWriter<W: Write> {
    writer: W,
    cipher: ChunkCipher,
    chunk_size: usize,
    /// `chunk_size + TAG_LEN` bytes: a chunk, plus room to read up to a tag's worth past
    /// it (which proves the chunk is not the last).
    buf: Zeroizing<Vec<u8>>,
    /// Plaintext bytes in `buf`.
    filled: usize,
    /// Index of the next chunk to seal.
    index: u32,
    hasher: Hasher,
    plaintext_len: u64,
    ciphertext_len: u64,
    failed: bool,
}

impl<W: Write> SealWriter<W> {
    /// Starts a sealed file on `writer` with a fresh random nonce prefix, writing its
    /// header at once.
    ///
    /// # Errors
    ///
    /// [`SealError::InvalidChunkSize`], or [`SealError::Write`] if the header cannot be
    /// written.
    pub fn new(writer: W, key: &FileKey, chunk_size: u32) -> Result<Self, SealError> {
        Self::with_nonce_prefix(writer, key, chunk_size, support::random_array())
    }

    /// [`new`](Self::new) with a given nonce prefix. Reusing a prefix with the same key
    /// destroys confidentiality, so only `new` and the test vectors call this.
    pub(super) fn with_nonce_prefix(
        mut writer: W,
        key: &FileKey,
        chunk_size: u32,
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Self, SealError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(SealError::InvalidChunkSize { chunk_size });
        }
        let chunk_len =
            usize::try_from(chunk_size).map_err(|_| SealError::InvalidChunkSize { chunk_size })?;
        let header = format::encode_header(key, chunk_size, nonce_prefix);
        writer.write_all(&header).map_err(SealError::Write)?;
        let mut hasher = Hasher::new();
        hasher.update(&header);
        Ok(Self {
            writer,
            cipher: ChunkCipher::new(key, header),
            chunk_size: chunk_len,
            buf: Zeroizing::new(vec![0; chunk_len + TAG_LEN]),
            filled: 0,
            index: 0,
            hasher,
            plaintext_len: 0,
            ciphertext_len: header.len() as u64,
            failed: false,
        })
    }

    /// Seals the buffered plaintext as the final chunk, flushes, and returns the summary.
    ///
    /// # Errors
    ///
    /// [`SealError::Write`], or [`SealError::AlreadyFailed`] after an earlier error.
    pub fn finish(mut self) -> Result<SealSummary, SealError> {
        if self.failed {
            return Err(SealError::AlreadyFailed);
        }
        self.emit(self.filled, true)?;
        self.writer.flush().map_err(SealError::Write)?;
        Ok(StreamSummary {
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            ciphertext_digest: std::mem::take(&mut self.hasher).finish(),
        })
    }

    /// Takes note of `n` plaintext bytes just placed at `buf[filled..]`, and seals the
    /// buffered chunk if it has become known not to be the last.
    fn accept(&mut self, n: usize) -> Result<(), SealError> {
        self.filled += n;
        self.plaintext_len += n as u64;
        if self.filled > self.chunk_size {
            if let Err(e) = self.emit(self.chunk_size, false) {
                self.failed = true;
                return Err(e);
            }
            // Carry the (at most TAG_LEN) bytes read past the chunk to the next one.
            self.buf.copy_within(self.chunk_size..self.filled, 0);
            self.filled -= self.chunk_size;
        }
        Ok(())
    }

    /// Seals `buf[..len]` as chunk `index` and writes `ciphertext ‖ tag`.
    fn emit(&mut self, len: usize, last: bool) -> Result<(), SealError> {
        // A non-final chunk needs a successor, whose index must exist.
        let next = match (last, self.index.checked_add(1)) {
            (false, None) => return Err(SealError::CounterOverflow),
            (_, next) => next,
        };
        let chunk = &mut self.buf[..len];
        let tag = self.cipher.seal(self.index, last, chunk);
        self.hasher.update(chunk);
        self.hasher.update(tag.as_ref());
        self.writer.write_all(chunk).map_err(SealError::Write)?;
        self.writer
            .write_all(tag.as_ref())
            .map_err(SealError::Write)?;
        self.ciphertext_len += (len + TAG_LEN) as u64;
        if let Some(next) = next {
            self.index = next;
        }
        Ok(())
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(SealError::AlreadyFailed.into());
        }
        let n = data.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.accept(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{HEADER_LEN, MIN_CHUNK_SIZE};

    const C: usize = MIN_CHUNK_SIZE as usize;

    #[test]
    fn a_non_final_chunk_at_the_last_counter_value_overflows() {
        let key = FileKey::generate();
        let mut out = Vec::new();
        let mut writer = SealWriter::new(&mut out, &key, MIN_CHUNK_SIZE).unwrap();
        writer.index = u32::MAX;
        let err = writer.write_all(&vec![0; C + 1]).unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<SealError>());
        assert!(matches!(inner, Some(SealError::CounterOverflow)), "{err:?}");
        assert!(matches!(
            writer
                .write(b"x")
                .unwrap_err()
                .get_ref()
                .and_then(|e| e.downcast_ref::<SealError>()),
            Some(SealError::AlreadyFailed)
        ));
        assert!(matches!(writer.finish(), Err(SealError::AlreadyFailed)));
        assert_eq!(out.len(), HEADER_LEN, "no chunk was written");
    }

    #[test]
    fn the_final_chunk_may_use_the_last_counter_value() {
        let key = FileKey::generate();
        let mut out = Vec::new();
        let mut writer = SealWriter::new(&mut out, &key, MIN_CHUNK_SIZE).unwrap();
        writer.index = u32::MAX - 1;
        writer.write_all(&vec![9; C + 1]).unwrap();
        writer.finish().unwrap();
        assert_eq!(out.len(), HEADER_LEN + C + 1 + 2 * TAG_LEN);
        let header: format::HeaderBytes = out[..HEADER_LEN].try_into().unwrap();
        let cipher = ChunkCipher::new(&key, header);
        let (first, last) = out[HEADER_LEN..].split_at_mut(C + TAG_LEN);
        assert_eq!(
            cipher.open(u32::MAX - 1, false, first).unwrap(),
            &vec![9; C][..]
        );
        assert_eq!(cipher.open(u32::MAX, true, last).unwrap(), &[9]);
    }
}
