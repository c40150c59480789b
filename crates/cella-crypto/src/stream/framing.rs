//! The checks anyone can make on a sealed file without its key: the header's public
//! fields (magic, version, algorithm, chunk size) and the framing of the chunks that
//! follow it (every chunk but the last is `chunk size + 16` bytes; the last one holds at
//! least its 16-byte tag).
//!
//! The node uses it on uploads, which it cannot decrypt: a file that fails here would
//! fail every task that reads it, so it is refused when it arrives rather than at
//! execution. Passing it says nothing about the chunks' authenticity; only the key
//! holder's [`super::UnsealReader`] checks that.

use super::format::parse_header;
use super::unseal::UnsealError;
use super::{HEADER_LEN, TAG_LEN};

/// Incremental keyless check of a sealed file's header and framing, fed the ciphertext
/// as it streams in. Memory: the 53-byte header, whatever the file size.
#[derive(Debug, Default)]
pub struct FramingCheck {
    header: Vec<u8>,
    chunk_size: Option<u32>,
    body_len: u64,
}

impl FramingCheck {
    /// A check that has seen no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the file. The header's fields are checked as soon as
    /// they have arrived, so a file that is not a sealed file is refused at its first
    /// bytes.
    ///
    /// # Errors
    ///
    /// [`UnsealError::NotSealedFile`], [`UnsealError::UnsupportedVersion`],
    /// [`UnsealError::UnsupportedAlgorithm`] or [`UnsealError::InvalidChunkSize`], in
    /// header order, as soon as the bytes that show it are in.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), UnsealError> {
        if self.chunk_size.is_none() {
            let take = bytes.len().min(HEADER_LEN - self.header.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            match parse_header(&self.header) {
                Ok(chunk_size) => self.chunk_size = Some(chunk_size),
                // Not all of it is in yet: the fields present are fine so far.
                Err(UnsealError::TruncatedHeader { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.body_len = self.body_len.saturating_add(bytes.len() as u64);
        Ok(())
    }

    /// Ends the check: the file must hold a whole header and chunks whose lengths fit
    /// its chunk size. Returns the chunk size.
    ///
    /// # Errors
    ///
    /// [`UnsealError::TruncatedHeader`] when the file (an empty one included) ends
    /// inside the header; [`UnsealError::TruncatedStream`] when no final chunk can start
    /// where the bytes end: fewer than 16 bytes after the header, or 1 to 15 bytes after
    /// the last whole chunk (a cut file, or bytes appended to one).
    pub fn finish(self) -> Result<u32, UnsealError> {
        let Some(chunk_size) = self.chunk_size else {
            return Err(UnsealError::TruncatedHeader {
                len: self.header.len(),
            });
        };
        let tag = TAG_LEN as u64;
        let full = u64::from(chunk_size) + tag;
        let (whole, rest) = (self.body_len / full, self.body_len % full);
        // A final chunk is 16 ..= chunk_size + 16 bytes: the body ends on a whole chunk
        // (a full final chunk), or leaves at least a tag after the whole ones.
        if self.body_len < tag || (rest != 0 && rest < tag) {
            return Err(UnsealError::TruncatedStream { chunks: whole });
        }
        Ok(chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileKey;
    use crate::stream::{MIN_CHUNK_SIZE, seal};

    fn sealed(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        seal(
            &vec![7u8; len][..],
            &mut out,
            &FileKey::generate(),
            MIN_CHUNK_SIZE,
        )
        .unwrap();
        out
    }

    fn check(bytes: &[u8], split: usize) -> Result<u32, UnsealError> {
        let mut c = FramingCheck::new();
        let (a, b) = bytes.split_at(split.min(bytes.len()));
        c.update(a)?;
        c.update(b)?;
        c.finish()
    }

    #[test]
    fn sealed_files_of_every_shape_pass_whatever_the_split() {
        let c = MIN_CHUNK_SIZE as usize;
        for len in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 17] {
            let file = sealed(len);
            for split in [0, 1, 8, 52, 53, 54, file.len()] {
                assert_eq!(
                    check(&file, split).unwrap(),
                    MIN_CHUNK_SIZE,
                    "{len}/{split}"
                );
            }
        }
    }

    #[test]
    fn bad_headers_are_named_at_their_first_bytes() {
        let file = sealed(10);
        let mut c = FramingCheck::new();
        assert!(matches!(
            c.update(b"PK\x03\x04"),
            Err(UnsealError::NotSealedFile)
        ));
        let mut v = file.clone();
        v[8] = 2;
        assert!(matches!(
            FramingCheck::new().update(&v[..9]),
            Err(UnsealError::UnsupportedVersion { version: 2 })
        ));
        let mut a = file.clone();
        a[9] = 0;
        assert!(matches!(
            check(&a, 0),
            Err(UnsealError::UnsupportedAlgorithm { algorithm: 0 })
        ));
        let mut s = file;
        s[10..14].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            check(&s, 0),
            Err(UnsealError::InvalidChunkSize { chunk_size: 1 })
        ));
    }

    #[test]
    fn empty_cut_and_extended_files_are_refused() {
        assert!(matches!(
            check(b"", 0),
            Err(UnsealError::TruncatedHeader { len: 0 })
        ));
        let file = sealed(3 * MIN_CHUNK_SIZE as usize + 100);
        assert!(matches!(
            check(&file[..40], 0),
            Err(UnsealError::TruncatedHeader { len: 40 })
        ));
        // The header alone, or with less than a tag after it.
        for cut in [HEADER_LEN, HEADER_LEN + 15] {
            assert!(
                matches!(
                    check(&file[..cut], 0),
                    Err(UnsealError::TruncatedStream { chunks: 0 })
                ),
                "{cut}"
            );
        }
        // 1..15 bytes after whole chunks: cut inside a chunk's tag, or bytes appended.
        let full = MIN_CHUNK_SIZE as usize + TAG_LEN;
        let cut = HEADER_LEN + 2 * full + 5;
        assert!(matches!(
            check(&file[..cut], 0),
            Err(UnsealError::TruncatedStream { chunks: 2 })
        ));
        let whole = sealed(2 * MIN_CHUNK_SIZE as usize);
        let mut extended = whole.clone();
        extended.extend_from_slice(&[0; 3]);
        assert!(check(&extended, 0).is_err());
        assert!(check(&whole, 0).is_ok());
    }
}
