//! Ed25519 public keys as they appear in policy, trust-root and signature files: 64 hex
//! digits for a key, 128 for a signature. Used by the simulation signer ([`crate::sim`]) and
//! by policy auditors ([`crate::auditors`]).

use std::fmt;
use std::str::FromStr;

use ring::signature::{ED25519, UnparsedPublicKey};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ed25519PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl Ed25519PublicKey {
    /// Whether `signature` is this key's valid signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({self})")
    }
}

/// A key or signature string is not the right number of hex digits.
#[derive(Debug, thiserror::Error)]
#[error("expected {expected} hex digits, got {got:?}")]
pub struct ParseHexError {
    /// How many hex digits were expected.
    pub expected: usize,
    /// The refused text (truncated to 140 characters).
    pub got: String,
}

/// Decode exactly `N` bytes of hex.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseHexError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseHexError {
        expected: N * 2,
        got: s.chars().take(140).collect(),
    })?;
    Ok(out)
}

impl FromStr for Ed25519PublicKey {
    type Err = ParseHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex(s).map(Self)
    }
}

impl serde::Serialize for Ed25519PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ed25519PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
