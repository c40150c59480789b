//! File keys: the 256-bit AES keys that data owners seal their files with.
//!
//! A [`FileKey`] is secret. It is zeroized when dropped, never printed (`Debug` shows
//! `FileKey(<redacted>)`), and has no `Display`. Its text form, for CLI key files and for
//! serde, is 64 lowercase hex characters; [`FileKey::to_hex`] returns it in a buffer that
//! is zeroized in turn. Keys must come from [`FileKey::generate`] or another uniformly
//! random source: the sealed file format assumes a full-entropy key (see
//! `docs/formats/sealed-file.md`), so never use a password directly as a key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::support::fill_random;

/// Length in bytes of a [`FileKey`] (AES-256).
pub const FILE_KEY_LEN: usize = 32;

/// A 256-bit AES-GCM key for one sealed file (or a few: see the nonce-prefix limit in
/// `docs/formats/sealed-file.md`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; FILE_KEY_LEN]);

impl FileKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Panics
    ///
    /// If the OS random source fails; see the crate's `support::fill_random`.
    pub fn generate() -> Self {
        let mut key = Self([0; FILE_KEY_LEN]);
        fill_random(&mut key.0);
        key
    }

    /// Wraps raw key bytes. The caller's copy of `bytes` is not zeroized by this call.
    pub const fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }

    /// The key as 64 lowercase hex characters, in a string that is zeroized when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(2 * FILE_KEY_LEN));
        for byte in self.0 {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

/// The lowercase hex digit for a nibble (0..=15).
fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

/// Bytes or text that are not a file key. The rejected input is never included: it may
/// be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFileKeyError {
    /// Raw key bytes of the wrong length.
    #[error("a file key is {FILE_KEY_LEN} bytes, got {len}")]
    WrongLength {
        /// The length that was given, in bytes.
        len: usize,
    },
    /// Hex text of the wrong length (surrounding whitespace is ignored).
    #[error("a hex file key is {} hex characters, got {chars}", 2 * FILE_KEY_LEN)]
    WrongHexLength {
        /// The number of characters given, after trimming whitespace.
        chars: usize,
    },
    /// Text of the right length with a character that is not a hex digit.
    #[error("a hex file key may contain only the characters 0-9, a-f and A-F")]
    InvalidHex,
}

impl TryFrom<&[u8]> for FileKey {
    type Error = ParseFileKeyError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let mut key = Self([0; FILE_KEY_LEN]);
        if bytes.len() != FILE_KEY_LEN {
            return Err(ParseFileKeyError::WrongLength { len: bytes.len() });
        }
        key.0.copy_from_slice(bytes);
        Ok(key)
    }
}

/// Parses 64 hex characters (either case), ignoring surrounding whitespace so that a key
/// file ending in a newline reads as expected.
impl FromStr for FileKey {
    type Err = ParseFileKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 2 * FILE_KEY_LEN {
            return Err(ParseFileKeyError::WrongHexLength {
                chars: s.chars().count(),
            });
        }
        let mut key = Self([0; FILE_KEY_LEN]);
        hex::decode_to_slice(s, &mut key.0).map_err(|_| ParseFileKeyError::InvalidHex)?;
        Ok(key)
    }
}

impl Serialize for FileKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for FileKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn counting_key() -> FileKey {
        let mut bytes = [0u8; FILE_KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        FileKey::from_bytes(bytes)
    }

    #[test]
    fn generated_keys_differ_and_are_full_length() {
        let a = FileKey::generate();
        let b = FileKey::generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), &[0u8; FILE_KEY_LEN]);
    }

    #[test]
    fn debug_is_redacted() {
        let key = counting_key();
        assert_eq!(format!("{key:?}"), "FileKey(<redacted>)");
        assert_eq!(format!("{key:#?}"), "FileKey(<redacted>)");
    }

    #[test]
    fn hex_round_trip_and_case_and_whitespace() {
        let key = counting_key();
        assert_eq!(key.to_hex().as_str(), HEX);
        let parsed: FileKey = HEX.parse().unwrap();
        assert_eq!(parsed.as_bytes(), key.as_bytes());
        let upper: FileKey = format!("  {}\n", HEX.to_uppercase()).parse().unwrap();
        assert_eq!(upper.as_bytes(), key.as_bytes());
    }

    #[test]
    fn hex_errors_name_the_problem_without_echoing_input() {
        assert_eq!(
            "abcd".parse::<FileKey>().unwrap_err(),
            ParseFileKeyError::WrongHexLength { chars: 4 }
        );
        assert_eq!(
            format!("{HEX}00").parse::<FileKey>().unwrap_err(),
            ParseFileKeyError::WrongHexLength { chars: 66 }
        );
        let bad = format!("{}zz", &HEX[..62]);
        let err = bad.parse::<FileKey>().unwrap_err();
        assert_eq!(err, ParseFileKeyError::InvalidHex);
        assert!(!err.to_string().contains("zz"));
        // 64 bytes of non-ASCII text pass the length check and fail as hex.
        let accented = "é".repeat(32);
        assert_eq!(
            accented.parse::<FileKey>().unwrap_err(),
            ParseFileKeyError::InvalidHex
        );
    }

    #[test]
    fn try_from_slice_checks_length() {
        let key = FileKey::try_from(&[7u8; 32][..]).unwrap();
        assert_eq!(key.as_bytes(), &[7u8; 32]);
        let err = FileKey::try_from(&[7u8; 31][..]).unwrap_err();
        assert_eq!(err, ParseFileKeyError::WrongLength { len: 31 });
        assert_eq!(err.to_string(), "a file key is 32 bytes, got 31");
        assert_eq!(
            FileKey::try_from(&[][..]).unwrap_err(),
            ParseFileKeyError::WrongLength { len: 0 }
        );
    }

    #[test]
    fn serde_is_a_hex_string() {
        let key = counting_key();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{HEX}\""));
        let back: FileKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        let err = serde_json::from_str::<FileKey>("\"00ff\"").unwrap_err();
        assert!(err.to_string().contains("64 hex characters"), "{err}");
        assert!(serde_json::from_str::<FileKey>("[1,2,3]").is_err());
    }

    #[test]
    fn zeroize_clears_the_bytes() {
        let mut key = counting_key();
        key.zeroize();
        assert_eq!(key.as_bytes(), &[0u8; FILE_KEY_LEN]);
    }
}
