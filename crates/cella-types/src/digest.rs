//! SHA-256 digests: the identity of payloads, ciphertexts and tasks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length in bytes of a SHA-256 digest.
pub const DIGEST_LEN: usize = 32;

/// A SHA-256 digest, shown and serialized as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; DIGEST_LEN]);

impl Digest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut hasher = Hasher::new();
        hasher.update(data);
        hasher.finish()
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A string that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SHA-256 digest {input:?}: expected 64 hex characters")]
pub struct ParseDigestError {
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDigestError {
            input: s.chars().take(80).collect(),
        };
        let bytes = hex::decode(s).map_err(|_| err())?;
        let bytes: [u8; DIGEST_LEN] = bytes.try_into().map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

impl TryFrom<&[u8]> for Digest {
    type Error = ParseDigestError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let arr: [u8; DIGEST_LEN] = bytes.try_into().map_err(|_| ParseDigestError {
            input: format!("<{} bytes>", bytes.len()),
        })?;
        Ok(Self(arr))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256, for data that arrives in pieces (uploads, streams).
#[derive(Clone)]
pub struct Hasher(ring::digest::Context);

impl Hasher {
    /// Starts an empty SHA-256 computation.
    pub fn new() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Finishes and returns the digest.
    pub fn finish(self) -> Digest {
        let out = self.0.finish();
        let mut bytes = [0u8; DIGEST_LEN];
        bytes.copy_from_slice(out.as_ref());
        Digest(bytes)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_hex_round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Digest>(), Ok(d));
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("zz".parse::<Digest>().is_err());
        assert!("abcd".parse::<Digest>().is_err());
        assert!(Digest::try_from(&[0u8; 31][..]).is_err());
    }
}
