//! Checking a task's receipt: the one code path `cella task receipt --verify` and the
//! Python SDK's `verify_receipt` run.
//!
//! A LibOS task's receipt is verified offline, evidence → attested key → signed receipt
//! → digests (`cella_libos::receipt`), and then compared with what the caller knows
//! independently of the receipt: the task and function it names, the function's payload
//! digest, the task's output slots and, when the caller decrypted outputs, their
//! plaintext digests. Only LibOS receipts are signed; a builtin or wasm task's receipt
//! is refused as "not a LibOS receipt" rather than reported as verified.

use std::collections::BTreeMap;

use cella_attest::dcap::DcapVerifier;
use cella_attest::policy::roles;
pub use cella_libos::receipt::{Entry, Expected, Policy, ReceiptError, VerifiedReceipt};
use cella_libos::receipt::{check_expected, verify_bundle_with};
use cella_types::Digest;

use crate::{Client, ClientError, proto};

/// Where the policy that appraises a receipt's evidence comes from.
#[derive(Debug, Clone)]
pub enum ReceiptPolicy {
    /// None: the receipt's signatures and digests are checked, its evidence not appraised.
    None,
    /// A policy the caller holds; `from` names it in errors (e.g. its path).
    Given {
        /// The policy.
        policy: Box<Policy>,
        /// Where it came from.
        from: String,
    },
    /// The instance policy the node publishes over its attested channel.
    Node,
}

/// A receipt check failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptCheckError {
    /// The task has no receipt (it is not Finished).
    #[error("{task_id} has no receipt: receipts exist once a task is Finished")]
    NoReceipt {
        /// The task.
        task_id: String,
    },
    /// A call to the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// [`ReceiptPolicy::Node`], but the node publishes none.
    #[error("the node publishes no instance policy: it has no LibOS executor")]
    NoInstancePolicy,
    /// The node's instance policy does not parse.
    #[error("the node's instance policy")]
    NodePolicy(#[source] cella_attest::policy::PolicyError),
    /// The policy cannot appraise a LibOS instance.
    #[error(
        "{from} has no role \"{role}\", so it cannot appraise a LibOS instance (a node's TLS \
         policy has role \"node\" only); use the instance policy the node publishes",
        role = roles::LIBOS_INSTANCE
    )]
    NoInstanceRole {
        /// Where the policy came from.
        from: String,
    },
    /// The node shows a payload digest that is not a SHA-256.
    #[error("the function's payload digest {value:?} is not a SHA-256")]
    BadPayloadDigest {
        /// What the node showed.
        value: String,
    },
    /// The receipt's chain does not hold.
    #[error("the receipt of {task_id} does not verify")]
    Verify {
        /// The task.
        task_id: String,
        /// The link that failed.
        #[source]
        source: ReceiptError,
    },
    /// The receipt holds, but says something other than the task.
    #[error("the receipt of {task_id} does not match the task")]
    Mismatch {
        /// The task.
        task_id: String,
        /// What differs.
        #[source]
        source: ReceiptError,
    },
}

/// A task whose receipt verified and matched.
#[derive(Debug, Clone)]
pub struct CheckedReceipt {
    /// The task as the node showed it.
    pub task: proto::TaskInfo,
    /// The verified receipt.
    pub verified: VerifiedReceipt,
    /// What it was compared with.
    pub expected: Expected,
}

/// The receipt bytes of a task, if it has one.
#[must_use]
pub fn receipt_bytes(task: &proto::TaskInfo) -> Option<&[u8]> {
    task.result
        .as_ref()
        .map(|r| r.receipt.as_slice())
        .filter(|r| !r.is_empty())
}

/// The policy `source` names, checked to have the role receipts are appraised under.
async fn load_policy(
    client: &Client,
    source: ReceiptPolicy,
) -> Result<Option<Policy>, ReceiptCheckError> {
    let (policy, from) = match source {
        ReceiptPolicy::None => return Ok(None),
        ReceiptPolicy::Given { policy, from } => (*policy, from),
        ReceiptPolicy::Node => {
            let text = client.policies().await?.instance_policy;
            if text.is_empty() {
                return Err(ReceiptCheckError::NoInstancePolicy);
            }
            let policy = Policy::from_toml_str(&text).map_err(ReceiptCheckError::NodePolicy)?;
            (policy, "the node's instance policy".to_owned())
        }
    };
    if policy.role(roles::LIBOS_INSTANCE).is_none() {
        return Err(ReceiptCheckError::NoInstanceRole { from });
    }
    Ok(Some(policy))
}

/// Fetches task `task_id`, verifies its receipt (appraising the evidence under `policy`;
/// `dcap` verifies SGX quotes) and compares it with the task and with `outputs`, the
/// plaintext digests of outputs the caller decrypted, by slot.
///
/// # Errors
///
/// [`ReceiptCheckError`] naming what failed; nothing is reported verified unless every
/// link and every comparison holds.
pub async fn verify_task_receipt(
    client: &Client,
    task_id: &str,
    policy: ReceiptPolicy,
    outputs: BTreeMap<String, Digest>,
    dcap: &DcapVerifier,
) -> Result<CheckedReceipt, ReceiptCheckError> {
    let task = client.get_task(task_id).await?;
    let Some(bytes) = receipt_bytes(&task) else {
        return Err(ReceiptCheckError::NoReceipt {
            task_id: task_id.to_owned(),
        });
    };
    let policy = load_policy(client, policy).await?;
    let verified = verify_bundle_with(bytes, policy.as_ref(), dcap).map_err(|source| {
        ReceiptCheckError::Verify {
            task_id: task_id.to_owned(),
            source,
        }
    })?;
    let payload_sha256 = if task.function_payload_digest.is_empty() {
        None
    } else {
        let d: Digest = task.function_payload_digest.parse().map_err(|_| {
            ReceiptCheckError::BadPayloadDigest {
                value: task.function_payload_digest.clone(),
            }
        })?;
        Some(*d.as_bytes())
    };
    let expected = Expected {
        task_id: Some(task.task_id.clone()),
        function_id: Some(task.function_id.clone()),
        payload_sha256,
        output_slots: Some(
            task.result
                .iter()
                .flat_map(|r| &r.outputs)
                .map(|o| o.slot.clone())
                .collect(),
        ),
        outputs: outputs
            .into_iter()
            .map(|(slot, d)| (slot, *d.as_bytes()))
            .collect(),
    };
    check_expected(&verified, &expected).map_err(|source| ReceiptCheckError::Mismatch {
        task_id: task_id.to_owned(),
        source,
    })?;
    Ok(CheckedReceipt {
        task,
        verified,
        expected,
    })
}
