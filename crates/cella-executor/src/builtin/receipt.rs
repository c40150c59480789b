//! The builtin executor's receipt: a JSON document binding a run's task, function,
//! payload, arguments, plaintext inputs, plaintext outputs and return value by digest.
//!
//! Invariants: the receipt holds digests, never data, and is deterministic: the same task
//! run on the same inputs gives byte-identical receipts (maps are sorted, no timestamps,
//! no usage figures). It is not signed yet; later an attested key will sign it.

use std::collections::BTreeMap;

use cella_types::{Digest, FunctionId, TaskId};
use serde::{Deserialize, Serialize};

use crate::error::ExecutionError;
use crate::io::TaskIo;
use crate::task::StagedTask;

/// The value of [`BuiltinReceipt::format`] for this version of the receipt.
pub const RECEIPT_FORMAT: &str = "cella-builtin-receipt-v1";

/// What the builtin executor attests about one successful run, serialised as compact
/// JSON into [`crate::ExecutionOutcome::receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltinReceipt {
    /// Always [`RECEIPT_FORMAT`].
    pub format: String,
    /// The task run.
    pub task_id: TaskId,
    /// The function run.
    pub function_id: FunctionId,
    /// The builtin's name (the payload).
    pub builtin: String,
    /// SHA-256 of the payload.
    pub payload_digest: Digest,
    /// SHA-256 of the resolved arguments as a compact JSON object with sorted keys, e.g.
    /// `{"decimals":"2"}`; `{}` when there are none.
    pub arguments_digest: Digest,
    /// SHA-256 of each plaintext input, by slot.
    pub inputs: BTreeMap<String, Digest>,
    /// SHA-256 of each plaintext output, by slot (of the empty string if never written).
    pub outputs: BTreeMap<String, Digest>,
    /// SHA-256 of the return value.
    pub return_value: Digest,
}

impl BuiltinReceipt {
    /// The receipt for a run of `builtin` for `task` that left `io` and returned
    /// `return_value`.
    pub(crate) fn new(task: &StagedTask, builtin: &str, io: &TaskIo, return_value: &[u8]) -> Self {
        let digests = |slots: Vec<(&str, &[u8])>| {
            slots
                .into_iter()
                .map(|(slot, data)| (slot.to_owned(), Digest::of(data)))
                .collect()
        };
        let inputs = io
            .input_slots()
            .map(|s| (s, io.input(s).unwrap_or_default()))
            .collect();
        let outputs = io
            .output_slots()
            .map(|s| (s, io.output(s).unwrap_or_default()))
            .collect();
        Self {
            format: RECEIPT_FORMAT.to_owned(),
            task_id: task.task_id,
            function_id: task.function_id,
            builtin: builtin.to_owned(),
            payload_digest: task.payload_digest,
            arguments_digest: arguments_digest(&task.arguments),
            inputs: digests(inputs),
            outputs: digests(outputs),
            return_value: Digest::of(return_value),
        }
    }

    /// The receipt as compact JSON.
    ///
    /// # Errors
    ///
    /// [`ExecutionError::Internal`] if serialisation fails (it cannot for these types).
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, ExecutionError> {
        serde_json::to_vec(self)
            .map_err(|e| ExecutionError::internal(format!("cannot serialise receipt: {e}")))
    }
}

/// SHA-256 of the compact JSON encoding of `arguments` (a `BTreeMap`, so keys are sorted).
fn arguments_digest(arguments: &BTreeMap<String, String>) -> Digest {
    // Serialising a map of strings to a Vec cannot fail; an empty encoding would still
    // give a digest that no real argument set has.
    Digest::of(&serde_json::to_vec(arguments).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_digest_is_of_sorted_compact_json() {
        let args = BTreeMap::from([
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "x\"y".to_owned()),
        ]);
        assert_eq!(
            arguments_digest(&args),
            Digest::of(br#"{"a":"x\"y","z":"1"}"#)
        );
        assert_eq!(arguments_digest(&BTreeMap::new()), Digest::of(b"{}"));
    }

    #[test]
    fn receipt_is_deterministic_json() {
        let task = crate::builtin::test_support::task("echo", &[("message", "hi")]);
        let io = crate::builtin::test_support::io(&[("in", b"data")], &["out"]);
        let a = BuiltinReceipt::new(&task, "echo", &io, b"hi")
            .to_bytes()
            .unwrap();
        let b = BuiltinReceipt::new(&task, "echo", &io, b"hi")
            .to_bytes()
            .unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with(r#"{"format":"cella-builtin-receipt-v1","task_id":"task-"#));
        assert!(text.contains(&format!(r#""in":"{}""#, Digest::of(b"data"))));
        assert!(text.contains(&format!(r#""out":"{}""#, Digest::of(b""))));
        assert!(
            !text.contains("data\""),
            "receipt holds digests only: {text}"
        );
    }
}
