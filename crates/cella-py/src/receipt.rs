//! `client.verify_receipt(task_id, …)`: a task's receipt checked by
//! `cella_client::receipt::verify_task_receipt`, the code `cella task receipt --verify`
//! runs, and what it proved as a [`Receipt`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use cella_client::receipt::{
    CheckedReceipt, Entry, Policy, ReceiptCheckError, ReceiptPolicy, verify_task_receipt,
};
use cella_types::Digest;
use pyo3::prelude::*;

use crate::error::{InvalidInputError, ProtocolError, ReceiptError, chain, to_py};

/// A receipt that verified (evidence → attested key → signed receipt → digests) and
/// matched the task: what it proves.
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct Receipt {
    /// The task.
    task_id: String,
    /// The instance measurement the evidence states (hex).
    measurement: String,
    /// The evidence's platform (`sim`, `sgx-dcap`).
    platform: String,
    /// The simulation key that signed the evidence (simulation only).
    sim_signer: Option<String>,
    /// Whether the evidence was appraised against an attestation policy (otherwise only
    /// its signature was checked).
    appraised: bool,
    /// The workload's files, name → SHA-256 (hex); `program` is the function's payload.
    workload: HashMap<String, String>,
    /// The plaintext inputs, slot → SHA-256 (hex).
    inputs: HashMap<String, String>,
    /// The plaintext outputs, slot → SHA-256 (hex).
    outputs: HashMap<String, String>,
    /// The output slots whose decrypted plaintext (given in `outputs=`) matched.
    outputs_checked: Vec<String>,
    /// How the program ended (`exit 0`, …).
    exit: Option<String>,
}

/// The entries as name → hex digest.
fn entries(e: &[Entry]) -> HashMap<String, String> {
    e.iter()
        .map(|e| {
            let hex = e.sha256.iter().map(|b| format!("{b:02x}")).collect();
            (e.name.clone(), hex)
        })
        .collect()
}

impl From<&CheckedReceipt> for Receipt {
    fn from(c: &CheckedReceipt) -> Self {
        let v = &c.verified;
        Receipt {
            task_id: c.task.task_id.clone(),
            measurement: v.measurement.to_string(),
            platform: v.platform.name().to_owned(),
            sim_signer: v.sim_signer.as_ref().map(ToString::to_string),
            appraised: v.appraised,
            workload: entries(&v.body.workload),
            inputs: entries(&v.body.inputs),
            outputs: entries(&v.body.outputs),
            outputs_checked: c.expected.outputs.keys().cloned().collect(),
            exit: v.body.exit.map(|e| e.to_string()),
        }
    }
}

#[pymethods]
impl Receipt {
    fn __repr__(&self) -> String {
        format!(
            "Receipt(task_id={:?}, measurement={:?}, platform={:?}, appraised={})",
            self.task_id, self.measurement, self.platform, self.appraised
        )
    }
}

/// The Python exception for a failed receipt check.
fn check_error(e: ReceiptCheckError) -> PyErr {
    let text = chain(&e);
    match e {
        ReceiptCheckError::Client(e) => to_py(e),
        ReceiptCheckError::Verify { .. } | ReceiptCheckError::Mismatch { .. } => {
            ReceiptError::new_err(text)
        }
        ReceiptCheckError::NodePolicy(_) | ReceiptCheckError::BadPayloadDigest { .. } => {
            ProtocolError::new_err(text)
        }
        ReceiptCheckError::NoReceipt { .. }
        | ReceiptCheckError::NoInstancePolicy
        | ReceiptCheckError::NoInstanceRole { .. } => InvalidInputError::new_err(text),
    }
}

/// The policy source from `verify_receipt`'s keywords.
fn policy_source(policy: Option<PathBuf>, node_policy: bool) -> PyResult<ReceiptPolicy> {
    match (policy, node_policy) {
        (None, false) => Ok(ReceiptPolicy::None),
        (None, true) => Ok(ReceiptPolicy::Node),
        (Some(p), false) => {
            let policy = Policy::load(&p).map_err(|e| {
                InvalidInputError::new_err(format!(
                    "attestation policy {}: {}",
                    p.display(),
                    chain(&e)
                ))
            })?;
            Ok(ReceiptPolicy::Given {
                policy: Box::new(policy),
                from: p.display().to_string(),
            })
        }
        (Some(_), true) => Err(InvalidInputError::new_err(
            "give policy= (a file) or node_policy=True, not both",
        )),
    }
}

/// Verifies the receipt of `task_id`: see `Client.verify_receipt`.
pub(crate) async fn verify(
    client: cella_client::Client,
    task_id: String,
    policy: Option<PathBuf>,
    node_policy: bool,
    outputs: HashMap<String, Vec<u8>>,
    collateral: Vec<PathBuf>,
) -> PyResult<Receipt> {
    let source = policy_source(policy, node_policy)?;
    let mut dcap = cella_attest::dcap::DcapVerifier::new();
    for path in &collateral {
        let c = cella_attest::dcap::load_collateral(path).map_err(|e| {
            InvalidInputError::new_err(format!("collateral {}: {}", path.display(), chain(&e)))
        })?;
        dcap = dcap.with_collateral(c);
    }
    let digests: BTreeMap<String, Digest> = outputs
        .into_iter()
        .map(|(slot, plain)| (slot, Digest::of(&plain)))
        .collect();
    let checked = verify_task_receipt(&client, &task_id, source, digests, &dcap)
        .await
        .map_err(check_error)?;
    Ok(Receipt::from(&checked))
}
