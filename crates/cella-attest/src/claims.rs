//! The custom claims of interoperable RA-TLS evidence, and the tiny CBOR subset used to
//! encode them.
//!
//! The claims buffer is a CBOR map with text keys and byte-string values:
//!
//! ```text
//! { "pubkey-hash": h'<CBOR [hash-alg-id, h'<hash of the certificate's SPKI DER>']>',
//!   ? "nonce": h'<nonce>' }
//! ```
//!
//! Note that the value of `pubkey-hash` is a byte string *holding* the CBOR array, not the
//! array itself (checked against a real Gramine certificate in the tests). `hash-alg-id`
//! is from IANA's Named Information Hash Algorithm registry: 1 = SHA-256, 7 = SHA-384,
//! 8 = SHA-512. The evidence's `report_data` is SHA-256 of the claims buffer bytes exactly
//! as carried, followed by 32 zero bytes (the verifier ignores those 32 bytes).
//!
//! Unknown claims (other producers, such as rats-tls, add their own) are ignored but counted
//! against [`MAX_CLAIMS`].

use ciborium::value::Value;

use crate::evidence::{REPORT_DATA_LEN, ReportData};
use crate::measurement::sha256;

/// Name of the claim binding the certificate's public key.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// Name of the optional freshness claim.
pub const CLAIM_NONCE: &str = "nonce";

/// Largest claims buffer accepted. Ours are under 200 bytes; 4 KiB leaves room for a few
/// custom claims of other producers while bounding what a peer can make us decode.
pub const MAX_CLAIMS_LEN: usize = 4096;
/// Most claims accepted in one buffer (including ignored ones).
pub const MAX_CLAIMS: usize = 16;
/// Longest nonce accepted. Launch nonces are 32 bytes; 256 bounds a peer's nonce claim.
pub const MAX_NONCE_LEN: usize = 256;
/// Nesting depth allowed while decoding CBOR: claims are at most three levels deep
/// (tag, array, map); anything deeper is hostile.
pub(crate) const CBOR_RECURSION_LIMIT: usize = 8;

/// Hash algorithms for `pubkey-hash` (IANA Named Information Hash Algorithm ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256, id 1.
    Sha256,
    /// SHA-384, id 7.
    Sha384,
    /// SHA-512, id 8.
    Sha512,
}

impl HashAlg {
    /// The IANA id.
    pub fn id(self) -> u8 {
        match self {
            HashAlg::Sha256 => 1,
            HashAlg::Sha384 => 7,
            HashAlg::Sha512 => 8,
        }
    }

    fn from_id(id: i128) -> Option<Self> {
        match id {
            1 => Some(HashAlg::Sha256),
            7 => Some(HashAlg::Sha384),
            8 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha384 => &ring::digest::SHA384,
            HashAlg::Sha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(alg, data).as_ref().to_vec()
    }
}

/// A CoSWID `hash-entry`: `[hash-alg-id, hash-value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashEntry {
    /// The algorithm.
    pub alg: HashAlg,
    /// The hash.
    pub value: Vec<u8>,
}

impl HashEntry {
    /// The hash of `data` with `alg`.
    pub fn of(alg: HashAlg, data: &[u8]) -> Self {
        Self {
            alg,
            value: alg.digest(data),
        }
    }

    /// Whether this entry is the hash of `data`.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.alg.digest(data) == self.value
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.value.len());
        cbor_head(&mut out, MAJOR_ARRAY, 2);
        cbor_head(&mut out, MAJOR_UNSIGNED, u64::from(self.alg.id()));
        cbor_bytes(&mut out, &self.value);
        out
    }
}

/// The claims carried next to a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Hash of the certificate's SubjectPublicKeyInfo DER.
    pub pubkey_hash: HashEntry,
    /// Freshness nonce chosen by the relying party, if any.
    pub nonce: Option<Vec<u8>>,
}

/// A claims buffer is malformed (the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    /// Too long.
    #[error("claims buffer is {len} bytes, more than the limit of {MAX_CLAIMS_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not CBOR, or trailing bytes.
    #[error("claims buffer is not one well-formed CBOR item: {0}")]
    Cbor(String),
    /// Not a map of text keys to byte strings.
    #[error("claims buffer is not a map of text keys to byte strings")]
    Shape,
    /// More than [`MAX_CLAIMS`] entries.
    #[error("claims buffer has more than {MAX_CLAIMS} claims")]
    TooMany,
    /// A claim name appears twice.
    #[error("claim {0:?} appears more than once")]
    Duplicate(String),
    /// No `pubkey-hash` claim.
    #[error("claims lack the required \"pubkey-hash\" claim")]
    MissingPubkeyHash,
    /// `pubkey-hash` does not hold `[alg, bytes]`.
    #[error("\"pubkey-hash\" does not hold a CBOR [hash-alg-id, hash] array")]
    PubkeyHashShape,
    /// Unsupported hash algorithm.
    #[error(
        "\"pubkey-hash\" uses hash algorithm id {0}, supported: 1 (sha-256), 7 (sha-384), 8 (sha-512)"
    )]
    HashAlg(i128),
    /// The hash has the wrong length for its algorithm.
    #[error("\"pubkey-hash\" value has the wrong length for its algorithm")]
    HashLength,
    /// The nonce is too long.
    #[error("\"nonce\" is longer than {MAX_NONCE_LEN} bytes")]
    NonceTooLong,
}

impl Claims {
    /// Claims for a certificate whose SubjectPublicKeyInfo DER is `spki_der` (SHA-256).
    pub fn for_public_key(spki_der: &[u8], nonce: Option<Vec<u8>>) -> Self {
        Self {
            pubkey_hash: HashEntry::of(HashAlg::Sha256, spki_der),
            nonce,
        }
    }

    /// The claims buffer: `pubkey-hash` first, then `nonce` if present.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        cbor_head(
            &mut out,
            MAJOR_MAP,
            if self.nonce.is_some() { 2 } else { 1 },
        );
        cbor_text(&mut out, CLAIM_PUBKEY_HASH);
        cbor_bytes(&mut out, &self.pubkey_hash.encode());
        if let Some(nonce) = &self.nonce {
            cbor_text(&mut out, CLAIM_NONCE);
            cbor_bytes(&mut out, nonce);
        }
        out
    }

    /// Decode a claims buffer.
    ///
    /// # Errors
    ///
    /// [`ClaimsError`] if the buffer is not a well-formed claims map.
    pub fn decode(buffer: &[u8]) -> Result<Self, ClaimsError> {
        if buffer.len() > MAX_CLAIMS_LEN {
            return Err(ClaimsError::TooLong { len: buffer.len() });
        }
        let Value::Map(entries) = decode_one(buffer).map_err(ClaimsError::Cbor)? else {
            return Err(ClaimsError::Shape);
        };
        if entries.len() > MAX_CLAIMS {
            return Err(ClaimsError::TooMany);
        }
        let mut seen: Vec<&str> = Vec::with_capacity(entries.len());
        let mut pubkey_hash = None;
        let mut nonce = None;
        for (key, value) in &entries {
            let (Value::Text(name), Value::Bytes(bytes)) = (key, value) else {
                return Err(ClaimsError::Shape);
            };
            if seen.contains(&name.as_str()) {
                return Err(ClaimsError::Duplicate(name.clone()));
            }
            seen.push(name);
            match name.as_str() {
                CLAIM_PUBKEY_HASH => pubkey_hash = Some(decode_hash_entry(bytes)?),
                CLAIM_NONCE => {
                    if bytes.len() > MAX_NONCE_LEN {
                        return Err(ClaimsError::NonceTooLong);
                    }
                    nonce = Some(bytes.clone());
                }
                _ => {}
            }
        }
        Ok(Self {
            pubkey_hash: pubkey_hash.ok_or(ClaimsError::MissingPubkeyHash)?,
            nonce,
        })
    }
}

fn decode_hash_entry(bytes: &[u8]) -> Result<HashEntry, ClaimsError> {
    let Ok(Value::Array(items)) = decode_one(bytes) else {
        return Err(ClaimsError::PubkeyHashShape);
    };
    let [Value::Integer(id), Value::Bytes(value)] = items.as_slice() else {
        return Err(ClaimsError::PubkeyHashShape);
    };
    let id = i128::from(*id);
    let alg = HashAlg::from_id(id).ok_or(ClaimsError::HashAlg(id))?;
    if value.len() != alg.digest(b"").len() {
        return Err(ClaimsError::HashLength);
    }
    Ok(HashEntry {
        alg,
        value: value.clone(),
    })
}

/// `report_data` for a claims buffer: SHA-256 of the buffer, then 32 zero bytes.
pub fn report_data_for(claims_buffer: &[u8]) -> ReportData {
    let mut out = [0u8; REPORT_DATA_LEN];
    out[..32].copy_from_slice(&sha256(claims_buffer));
    out
}

/// Decode exactly one CBOR item from `bytes` (no trailing bytes, bounded nesting).
pub(crate) fn decode_one(bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    let value: Value =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, CBOR_RECURSION_LIMIT)
            .map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(value)
}

pub(crate) const MAJOR_UNSIGNED: u8 = 0;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
pub(crate) const MAJOR_TAG: u8 = 6;

/// Write a CBOR head with the shortest argument encoding (RFC 8949 §3, deterministic).
pub(crate) fn cbor_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if let Ok(a @ 0..24) = u8::try_from(arg) {
        out.push(m | a);
    } else if let Ok(a) = u8::try_from(arg) {
        out.extend_from_slice(&[m | 24, a]);
    } else if let Ok(a) = u16::try_from(arg) {
        out.push(m | 25);
        out.extend_from_slice(&a.to_be_bytes());
    } else if let Ok(a) = u32::try_from(arg) {
        out.push(m | 26);
        out.extend_from_slice(&a.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

pub(crate) fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor_head(out, MAJOR_BYTES, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, MAJOR_TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_the_interoperable_shape() {
        let claims = Claims::for_public_key(b"spki", None);
        let buf = claims.encode();
        // a1 6b "pubkey-hash" 58 24 (82 01 58 20 <32 bytes>)
        assert_eq!(buf[0], 0xa1);
        assert_eq!(&buf[1..13], b"\x6bpubkey-hash");
        assert_eq!(&buf[13..15], &[0x58, 0x24]);
        assert_eq!(&buf[15..19], &[0x82, 0x01, 0x58, 0x20]);
        assert_eq!(&buf[19..], &sha256(b"spki"));
        assert_eq!(Claims::decode(&buf).unwrap(), claims);

        let with_nonce = Claims::for_public_key(b"spki", Some(vec![1, 2, 3]));
        let buf = with_nonce.encode();
        assert_eq!(buf[0], 0xa2);
        assert_eq!(Claims::decode(&buf).unwrap(), with_nonce);
    }

    #[test]
    fn refuses_malformed_claims() {
        let good = Claims::for_public_key(b"k", None).encode();
        // Trailing byte.
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(Claims::decode(&b), Err(ClaimsError::Cbor(_))));
        // Not a map.
        assert_eq!(Claims::decode(&[0x80]), Err(ClaimsError::Shape));
        // Missing pubkey-hash.
        let mut b = Vec::new();
        cbor_head(&mut b, MAJOR_MAP, 1);
        cbor_text(&mut b, "nonce");
        cbor_bytes(&mut b, &[1]);
        assert_eq!(Claims::decode(&b), Err(ClaimsError::MissingPubkeyHash));
        // Duplicate claim.
        let mut b = Vec::new();
        cbor_head(&mut b, MAJOR_MAP, 2);
        for _ in 0..2 {
            cbor_text(&mut b, "nonce");
            cbor_bytes(&mut b, &[1]);
        }
        assert_eq!(
            Claims::decode(&b),
            Err(ClaimsError::Duplicate("nonce".into()))
        );
        // Unsupported algorithm id.
        let mut entry = Vec::new();
        cbor_head(&mut entry, MAJOR_ARRAY, 2);
        cbor_head(&mut entry, MAJOR_UNSIGNED, 2);
        cbor_bytes(&mut entry, &[0; 32]);
        let mut b = Vec::new();
        cbor_head(&mut b, MAJOR_MAP, 1);
        cbor_text(&mut b, CLAIM_PUBKEY_HASH);
        cbor_bytes(&mut b, &entry);
        assert_eq!(Claims::decode(&b), Err(ClaimsError::HashAlg(2)));
        // Deep nesting is refused, not recursed into.
        let deep = [vec![0x81; 10_000], vec![0x00]].concat();
        assert!(Claims::decode(&deep[..MAX_CLAIMS_LEN]).is_err());
    }

    #[test]
    fn cbor_heads_are_shortest() {
        let mut b = Vec::new();
        cbor_head(&mut b, MAJOR_TAG, 60000);
        assert_eq!(b, [0xd9, 0xea, 0x60]);
        let mut b = Vec::new();
        cbor_head(&mut b, MAJOR_BYTES, 23);
        cbor_head(&mut b, MAJOR_BYTES, 24);
        cbor_head(&mut b, MAJOR_BYTES, 4734);
        assert_eq!(b, [0x57, 0x58, 24, 0x59, 0x12, 0x7e]);
    }
}
