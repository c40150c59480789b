//! The receipt: what an instance signs, with its attested key, about one run.
//!
//! The instance's measurement covers the pre-load module, the runtime image and the
//! backend configuration, never the function; the receipt is what binds the function
//! (its workload files by digest), the task, the inputs, the outputs and the exit status
//! to that measurement. Anyone holding the instance's RA-TLS certificate can check it:
//! the certificate's evidence binds the key, the key signs the receipt.
//!
//! The body is a protobuf [`ReceiptBody`] (field numbers in `docs/libos-protocol.md`); the
//! signature is ECDSA P-256 with SHA-256, ASN.1 DER, over [`SIGNING_CONTEXT`] ‖ body.

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

use crate::protocol::ExitStatus;

/// The value of [`ReceiptBody::format`] for this version.
pub const RECEIPT_FORMAT: &str = "cella-libos-receipt-v1";

/// Domain separation: the attested key's receipt signatures cannot be taken for anything
/// else it signs (TLS handshakes sign other contexts).
pub const SIGNING_CONTEXT: &[u8] = b"cella libos receipt v1\0";

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 66-byte
/// BIT STRING holding an uncompressed point), which is what RA-TLS certificates carry.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Length of an uncompressed P-256 point.
const P256_POINT_LEN: usize = 65;

/// A name and a SHA-256.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    /// A file name or slot.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its SHA-256, 32 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub sha256: Vec<u8>,
}

impl Entry {
    /// An entry.
    pub fn new(name: impl Into<String>, sha256: [u8; 32]) -> Self {
        Self {
            name: name.into(),
            sha256: sha256.to_vec(),
        }
    }
}

/// What the instance vouches for about one run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReceiptBody {
    /// Always [`RECEIPT_FORMAT`].
    #[prost(string, tag = "1")]
    pub format: String,
    /// The task, as the executor named it in `Deploy`.
    #[prost(string, tag = "2")]
    pub task_id: String,
    /// The function, as the executor named it in `Deploy`.
    #[prost(string, tag = "3")]
    pub function_id: String,
    /// The instance's measurement, as its own evidence states it.
    #[prost(bytes = "vec", tag = "4")]
    pub measurement: Vec<u8>,
    /// The launch nonce the instance was started with (also in its certificate's claims).
    #[prost(bytes = "vec", tag = "5")]
    pub nonce: Vec<u8>,
    /// The workload files, in `Deploy` order, with the digests the instance verified.
    #[prost(message, repeated, tag = "6")]
    pub workload: Vec<Entry>,
    /// The inputs by slot, in `Deploy` order, with the digests the instance verified.
    #[prost(message, repeated, tag = "7")]
    pub inputs: Vec<Entry>,
    /// The outputs by slot, in `Deploy` order, as the instance collected them.
    #[prost(message, repeated, tag = "8")]
    pub outputs: Vec<Entry>,
    /// How the program ended.
    #[prost(message, optional, tag = "9")]
    pub exit: Option<ExitStatus>,
    /// SHA-256 of the return value.
    #[prost(bytes = "vec", tag = "10")]
    pub return_value_sha256: Vec<u8>,
    /// SHA-256 of the command line and environment, as [`command_digest`] computes it.
    #[prost(bytes = "vec", tag = "11")]
    pub command_sha256: Vec<u8>,
    /// When the instance signed, seconds since the Unix epoch, by the instance's clock.
    #[prost(uint64, tag = "12")]
    pub signed_at_unix_secs: u64,
    /// Which run of the instance this was: 1 for its first task; more only for a
    /// function registered with `reuse = same-function`.
    #[prost(uint32, tag = "13")]
    pub run_index: u32,
}

/// The command line and environment, as hashed into [`ReceiptBody::command_sha256`].
#[derive(Clone, PartialEq, prost::Message)]
struct Command {
    #[prost(string, repeated, tag = "1")]
    argv: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    env: Vec<crate::protocol::EnvVar>,
}

/// SHA-256 of the protobuf encoding of `{1: argv, 2: env}` (env as `EnvVar`s in order).
pub fn command_digest(argv: &[String], env: &[crate::protocol::EnvVar]) -> [u8; 32] {
    use prost::Message;
    sha256(
        &Command {
            argv: argv.to_vec(),
            env: env.to_vec(),
        }
        .encode_to_vec(),
    )
}

/// SHA-256 with ring.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(body);
    m
}

/// Signs receipts with the instance's attested key.
pub struct ReceiptSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptSigner")
    }
}

/// The attested key could not be loaded or used for signing.
#[derive(Debug, thiserror::Error)]
#[error("receipt signing key: {0}")]
pub struct SignError(String);

impl ReceiptSigner {
    /// A signer for the P-256 key in `pkcs8` (the RA-TLS certificate's key).
    ///
    /// # Errors
    ///
    /// [`SignError`] if the key is not a P-256 PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|e| SignError(e.to_string()))?;
        Ok(Self { key, rng })
    }

    /// The signature over [`SIGNING_CONTEXT`] ‖ `body`.
    ///
    /// # Errors
    ///
    /// [`SignError`] if the random number generator fails.
    pub fn sign(&self, body: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key
            .sign(&self.rng, &signed_message(body))
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignError("the random number generator failed".into()))
    }
}

/// Whether `signature` is the signature over [`SIGNING_CONTEXT`] ‖ `body` by the P-256 key
/// whose SubjectPublicKeyInfo DER is `spki_der`. Any other key type is refused.
pub fn verify_signature(spki_der: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let Some(point) = spki_der.strip_prefix(P256_SPKI_PREFIX) else {
        return false;
    };
    if point.len() != P256_POINT_LEN {
        return false;
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed_message(body), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen_free::key_and_spki;

    /// A P-256 key made with ring, and its SubjectPublicKeyInfo.
    mod rcgen_free {
        use super::*;
        use ring::signature::KeyPair;

        pub(super) fn key_and_spki() -> (Vec<u8>, Vec<u8>) {
            let rng = SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
                .unwrap();
            let mut spki = P256_SPKI_PREFIX.to_vec();
            spki.extend_from_slice(key.public_key().as_ref());
            (doc.as_ref().to_vec(), spki)
        }
    }

    #[test]
    fn sign_and_verify_and_refuse_tampering() {
        let (pkcs8, spki) = key_and_spki();
        let signer = ReceiptSigner::from_pkcs8(&pkcs8).unwrap();
        let body = b"body".to_vec();
        let sig = signer.sign(&body).unwrap();
        assert!(verify_signature(&spki, &body, &sig));
        assert!(!verify_signature(&spki, b"bodY", &sig));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!verify_signature(&spki, &body, &bad));
        let (_, other) = key_and_spki();
        assert!(!verify_signature(&other, &body, &sig));
        assert!(!verify_signature(&spki[1..], &body, &sig));
        assert!(!verify_signature(&spki[..spki.len() - 1], &body, &sig));
        // Without the context the signature does not verify as a plain signature.
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &spki[P256_SPKI_PREFIX.len()..])
                .verify(&body, &sig)
                .is_err()
        );
    }

    #[test]
    fn command_digest_separates_fields() {
        let a = command_digest(&["ab".into()], &[]);
        let b = command_digest(&["a".into(), "b".into()], &[]);
        assert_ne!(a, b);
    }
}
