//! The LibOS executor's receipt as stored with a task result: a self-contained
//! [`LibosReceipt`] {instance certificate with its evidence, receipt body, signature}, and
//! its offline verification, evidence → key → receipt → digests.
//!
//! [`verify_bundle`] needs nothing but the bundle (and, to appraise the evidence against
//! an attestation policy, the policy): the certificate's evidence binds its key, the key
//! signs the body, the body states the measurement the evidence vouches for. What the body
//! says is then compared with what the verifier knows ([`Expected`]): the task, the
//! function's payload digest, the output slots, and the digests of outputs it decrypted.
//!
//! The certificate's own fields beyond its key and evidence (validity, serial, its
//! self-signature) are not part of the chain: the evidence binds the key, not the
//! certificate around it.

use std::collections::BTreeMap;

/// The attestation policy a receipt's evidence can be appraised against
/// (`attestation-policy.toml`, role `libos-instance`).
pub use cella_attest::Policy;
use cella_attest::clock::FixedClock;
use cella_attest::ed25519::Ed25519PublicKey;
use cella_attest::policy::roles;
use cella_attest::ratls::RaTlsCert;
use cella_attest::sim::SimEvidence;
use cella_attest::{Evidence, Measurement, Platform, Verifier};
pub use cella_preload::receipt::{Entry, ReceiptBody};
use cella_preload::receipt::{RECEIPT_FORMAT, verify_signature};
use prost::Message;

use crate::image::PROGRAM_FILE;

use cella_executor::receipt::{BUNDLE_FORMAT, LibosReceipt};

/// Offset of `MRENCLAVE` in an SGX quote.
const SGX_MRENCLAVE_OFFSET: usize = 48 + 64;

/// A receipt failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt bundle of this format.
    #[error("not a LibOS receipt: {0}")]
    Malformed(String),
    /// The certificate is malformed, or its evidence does not bind its key.
    #[error("instance certificate: {0}")]
    Certificate(String),
    /// The evidence itself does not verify.
    #[error("instance evidence: {0}")]
    Evidence(String),
    /// The signature does not verify with the attested key.
    #[error("the receipt's signature does not verify with the instance's attested key")]
    Signature,
    /// The body says something other than the evidence or what the verifier expects.
    #[error("the receipt's {0}")]
    Mismatch(String),
}

/// A receipt whose chain holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReceipt {
    /// The body.
    pub body: ReceiptBody,
    /// The instance measurement, as the evidence states it.
    pub measurement: Measurement,
    /// The evidence's platform.
    pub platform: Platform,
    /// The simulation key that signed the evidence (simulation only). Trust in it is the
    /// policy's business: without a policy, only its signature is checked.
    pub sim_signer: Option<Ed25519PublicKey>,
    /// Whether the evidence was appraised against an attestation policy.
    pub appraised: bool,
}

/// Verifies a bundle: the evidence binds the certificate's key; the evidence's own
/// signature holds (simulation) or, with `policy`, the evidence satisfies its
/// `libos-instance` role as of the time the receipt was signed; the key signed the body;
/// the body's measurement and nonce are the evidence's.
///
/// # Errors
///
/// [`ReceiptError`] naming the first link of the chain that does not hold.
pub fn verify_bundle(
    bytes: &[u8],
    policy: Option<&Policy>,
) -> Result<VerifiedReceipt, ReceiptError> {
    verify_bundle_with(bytes, policy, &cella_attest::dcap::DcapVerifier::new())
}

/// [`verify_bundle`] with `dcap` verifying SGX quotes (its collateral); without
/// collateral for the quote's platform, SGX evidence is refused with a "no collateral"
/// error.
///
/// # Errors
///
/// [`ReceiptError`] naming the first link of the chain that does not hold.
pub fn verify_bundle_with(
    bytes: &[u8],
    policy: Option<&Policy>,
    dcap: &cella_attest::dcap::DcapVerifier,
) -> Result<VerifiedReceipt, ReceiptError> {
    let bundle = LibosReceipt::decode(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if bundle.format != BUNDLE_FORMAT {
        return Err(ReceiptError::Malformed(format!(
            "format {:?}, expected {BUNDLE_FORMAT:?}",
            bundle.format
        )));
    }
    let cert = RaTlsCert::parse(&bundle.instance_cert)
        .map_err(|e| ReceiptError::Certificate(e.to_string()))?;
    let bound = cert
        .bound_evidence()
        .map_err(|e| ReceiptError::Certificate(e.to_string()))?;
    if !verify_signature(&cert.spki_der, &bundle.body, &bundle.signature) {
        return Err(ReceiptError::Signature);
    }
    let body = ReceiptBody::decode(&bundle.body[..])
        .map_err(|e| ReceiptError::Malformed(format!("body: {e}")))?;
    if body.format != RECEIPT_FORMAT {
        return Err(ReceiptError::Mismatch(format!("format {:?}", body.format)));
    }
    let (measurement, sim_signer) = match &bound.evidence {
        Evidence::Sim(raw) => {
            let sim = SimEvidence::parse(raw).map_err(|e| ReceiptError::Evidence(e.to_string()))?;
            sim.verify(&[sim.signer])
                .map_err(|e| ReceiptError::Evidence(e.to_string()))?;
            (sim.statement.measurement, Some(sim.signer))
        }
        Evidence::SgxDcapQuote(q) => {
            let m: [u8; 32] = q
                .get(SGX_MRENCLAVE_OFFSET..SGX_MRENCLAVE_OFFSET + 32)
                .and_then(|m| m.try_into().ok())
                .ok_or_else(|| ReceiptError::Evidence("short SGX quote".into()))?;
            if policy.is_none() {
                return Err(ReceiptError::Evidence(
                    "SGX evidence can only be checked against an attestation policy".into(),
                ));
            }
            (Measurement(m), None)
        }
    };
    if body.measurement != measurement.as_bytes() {
        return Err(ReceiptError::Mismatch(
            "measurement differs from the evidence's".into(),
        ));
    }
    if bound.nonce.as_deref() != Some(&body.nonce[..]) {
        return Err(ReceiptError::Mismatch(
            "nonce differs from the evidence's".into(),
        ));
    }
    if let Some(policy) = policy {
        let verifier = Verifier::new(policy.clone())
            .with_dcap(dcap.clone())
            .with_clock(std::sync::Arc::new(FixedClock::at_unix_secs(
                body.signed_at_unix_secs,
            )));
        verifier
            .verify_certificate(
                roles::LIBOS_INSTANCE,
                &bundle.instance_cert,
                Some(&body.nonce),
            )
            .map_err(|e| ReceiptError::Evidence(e.to_string()))?;
    }
    Ok(VerifiedReceipt {
        body,
        measurement,
        platform: bound.evidence.platform(),
        sim_signer,
        appraised: policy.is_some(),
    })
}

/// What the verifier knows independently of the receipt.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The task's id.
    pub task_id: Option<String>,
    /// The function's id.
    pub function_id: Option<String>,
    /// The function's payload digest: the workload's `program` file.
    pub payload_sha256: Option<[u8; 32]>,
    /// The task result's output slots.
    pub output_slots: Option<Vec<String>>,
    /// Plaintext digests of outputs the verifier decrypted, by slot.
    pub outputs: BTreeMap<String, [u8; 32]>,
}

/// Compares a verified receipt with what the verifier knows.
///
/// # Errors
///
/// [`ReceiptError::Mismatch`] naming the field.
pub fn check_expected(receipt: &VerifiedReceipt, expected: &Expected) -> Result<(), ReceiptError> {
    let body = &receipt.body;
    let mismatch = |what: String| Err(ReceiptError::Mismatch(what));
    if let Some(t) = &expected.task_id
        && &body.task_id != t
    {
        return mismatch(format!("task id {:?} is not {t:?}", body.task_id));
    }
    if let Some(f) = &expected.function_id
        && &body.function_id != f
    {
        return mismatch(format!("function id {:?} is not {f:?}", body.function_id));
    }
    if let Some(p) = &expected.payload_sha256 {
        let program = body.workload.iter().find(|e| e.name == PROGRAM_FILE);
        if program.is_none_or(|e| e.sha256 != p) {
            return mismatch("workload program is not the function's payload".into());
        }
    }
    if let Some(slots) = &expected.output_slots {
        let mut mine: Vec<&str> = body.outputs.iter().map(|e| e.name.as_str()).collect();
        let mut theirs: Vec<&str> = slots.iter().map(String::as_str).collect();
        mine.sort_unstable();
        theirs.sort_unstable();
        if mine != theirs {
            return mismatch(format!(
                "output slots {mine:?} are not the task's {theirs:?}"
            ));
        }
    }
    for (slot, digest) in &expected.outputs {
        match body.outputs.iter().find(|e| &e.name == slot) {
            Some(e) if e.sha256 == digest => {}
            Some(_) => {
                return mismatch(format!("digest of output {slot:?} does not match the file"));
            }
            None => return mismatch(format!("outputs do not include {slot:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cella_preload::protocol::{EnvVar, ExitStatus};
    use cella_preload::receipt::{command_digest, sha256};

    use super::*;

    /// A receipt body with every field set to a fixed value.
    fn fixed_body() -> ReceiptBody {
        ReceiptBody {
            format: RECEIPT_FORMAT.into(),
            task_id: "task-1".into(),
            function_id: "function-2".into(),
            measurement: vec![0xaa; 32],
            nonce: vec![0xbb; 4],
            workload: vec![Entry::new("program", sha256(b"p"))],
            inputs: vec![Entry::new("in", sha256(b"data"))],
            outputs: vec![Entry::new("out", sha256(b"hi"))],
            exit: Some(ExitStatus {
                code: Some(0),
                signal: None,
            }),
            return_value_sha256: sha256(b"").to_vec(),
            command_sha256: command_digest(
                &["./program".into()],
                &[EnvVar {
                    name: "CELLA_ARG_message".into(),
                    value: "hi".into(),
                }],
            )
            .to_vec(),
            signed_at_unix_secs: 1_700_000_000,
            run_index: 1,
        }
    }

    /// The bundle as a task result stores it, of fixed parts.
    fn fixed_bundle_bytes(body: Vec<u8>) -> Vec<u8> {
        LibosReceipt::new(vec![0x30, 0x03, 1, 2, 3], body, vec![0x30, 0x02, 9, 9]).encode_to_vec()
    }

    /// The LibOS receipt's body and bundle, pinned byte for byte: stored task results
    /// and `cella task receipt --verify` read them, so they must never drift.
    #[test]
    fn golden_bytes() {
        let body = fixed_body().encode_to_vec();
        assert_eq!(hex::encode(&body), GOLDEN_BODY);
        let bundle = fixed_bundle_bytes(body);
        assert_eq!(hex::encode(&bundle), GOLDEN_BUNDLE);
        assert_eq!(hex::encode(sha256(&bundle)), GOLDEN_BUNDLE_SHA256);
    }

    const GOLDEN_BODY: &str = concat!(
        "0a1663656c6c612d6c69626f732d726563656970742d763112067461736b2d311a0a66756e637469",
        "6f6e2d322220aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2a04",
        "bbbbbbbb322b0a0770726f6772616d1220148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e",
        "12fa29ac7ddfca99403a260a02696e12203a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261",
        "a9a923d3bb23adc8b742270a036f757412208f434346648f6b96df89dda901c5176b10a6d83961dd",
        "3c1ac88b59b2dc327aa44a0208005220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c",
        "a495991b7852b8555a20c1ff8888d5b96571d24af503a8c94c712c896d6a441b341ff675c7d2f609",
        "dc326080e2cfaa066801",
    );
    const GOLDEN_BUNDLE: &str = concat!(
        "0a1d63656c6c612d6c69626f732d726563656970742d62756e646c652d7631120530030102031aa2",
        "020a1663656c6c612d6c69626f732d726563656970742d763112067461736b2d311a0a66756e6374",
        "696f6e2d322220aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2a",
        "04bbbbbbbb322b0a0770726f6772616d1220148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f",
        "6e12fa29ac7ddfca99403a260a02696e12203a6eb0790f39ac87c94f3856b2dd2c5d110e68116022",
        "61a9a923d3bb23adc8b742270a036f757412208f434346648f6b96df89dda901c5176b10a6d83961",
        "dd3c1ac88b59b2dc327aa44a0208005220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b93",
        "4ca495991b7852b8555a20c1ff8888d5b96571d24af503a8c94c712c896d6a441b341ff675c7d2f6",
        "09dc326080e2cfaa066801220430020909",
    );
    const GOLDEN_BUNDLE_SHA256: &str =
        "f07bbaf52585afeb16a554cb3241ef69f3e902d71289a8efe8ed72b3ddc4e49b";
}
