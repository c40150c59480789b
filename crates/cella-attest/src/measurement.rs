//! 32-byte measurements: a simulation measurement (SHA-256 of what was launched), an SGX
//! `MRENCLAVE` or an SGX `MRSIGNER`.
//!
//! Written as 64 lowercase hex digits in policy files and in output; parsing accepts upper
//! case too and nothing else (no prefix, no separators).

use std::fmt;
use std::str::FromStr;

/// Length of a measurement in bytes.
pub const MEASUREMENT_LEN: usize = 32;

/// A 32-byte measurement.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Measurement(pub [u8; MEASUREMENT_LEN]);

impl Measurement {
    /// The measurement's bytes.
    pub fn as_bytes(&self) -> &[u8; MEASUREMENT_LEN] {
        &self.0
    }

    /// SHA-256 of `data`, as a measurement.
    pub fn sha256(data: &[u8]) -> Self {
        Self(sha256(data))
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

/// A measurement string is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a measurement is 64 hex digits (32 bytes), got {got:?}")]
pub struct ParseMeasurementError {
    /// The refused text (truncated to 80 characters).
    pub got: String,
}

impl FromStr for Measurement {
    type Err = ParseMeasurementError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; MEASUREMENT_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseMeasurementError {
            got: s.chars().take(80).collect(),
        })?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Measurement {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SHA-256 with ring, as a fixed-size array.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let m = Measurement::sha256(b"abc");
        assert_eq!(
            m.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(m.to_string().parse::<Measurement>().unwrap(), m);
        assert_eq!(
            m.to_string().to_uppercase().parse::<Measurement>().unwrap(),
            m
        );
        assert!("ba78".parse::<Measurement>().is_err());
        assert!(format!("0x{m}").parse::<Measurement>().is_err());
    }
}
