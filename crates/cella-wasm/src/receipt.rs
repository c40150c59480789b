//! The WebAssembly executor's receipt: a JSON document binding a run's task, function,
//! payload, arguments, plaintext inputs and outputs and return value by digest, and
//! naming the engine that ran it.
//!
//! Invariants: digests only, never data; deterministic for the same task and inputs
//! (sorted maps, no timestamps, no usage figures). Not signed yet, like the builtin
//! receipt; an attested key will sign both.

use std::collections::BTreeMap;

use cella_executor::{ExecutionError, StagedTask, TaskIo};
use cella_types::{Digest, FunctionId, TaskId};
use serde::{Deserialize, Serialize};

/// The value of [`WasmReceipt::format`] for this version of the receipt.
pub const RECEIPT_FORMAT: &str = "cella-wasm-receipt-v1";
/// The engine named in receipts: the wasmtime version this crate pins.
pub const ENGINE: &str = "wasmtime 48.0.8 (WASI preview 1)";

/// What the WebAssembly executor attests about one successful run, serialised as
/// compact JSON into [`cella_executor::ExecutionOutcome::receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmReceipt {
    /// Always [`RECEIPT_FORMAT`].
    pub format: String,
    /// The engine, [`ENGINE`].
    pub engine: String,
    /// The task run.
    pub task_id: TaskId,
    /// The function run.
    pub function_id: FunctionId,
    /// SHA-256 of the module.
    pub payload_digest: Digest,
    /// SHA-256 of the resolved arguments as compact JSON with sorted keys (`{}` when
    /// there are none), as in the builtin receipt.
    pub arguments_digest: Digest,
    /// SHA-256 of each plaintext input, by slot.
    pub inputs: BTreeMap<String, Digest>,
    /// SHA-256 of each plaintext output, by slot (of the empty string if not written).
    pub outputs: BTreeMap<String, Digest>,
    /// SHA-256 of the return value.
    pub return_value: Digest,
}

impl WasmReceipt {
    /// The receipt of a run of `task` that left `io` and returned `return_value`.
    pub(crate) fn new(task: &StagedTask, io: &TaskIo, return_value: &[u8]) -> Self {
        let digest_of = |slot: &str, data: Option<&[u8]>| {
            (slot.to_owned(), Digest::of(data.unwrap_or_default()))
        };
        Self {
            format: RECEIPT_FORMAT.to_owned(),
            engine: ENGINE.to_owned(),
            task_id: task.task_id,
            function_id: task.function_id,
            payload_digest: task.payload_digest,
            arguments_digest: Digest::of(&serde_json::to_vec(&task.arguments).unwrap_or_default()),
            inputs: io
                .input_slots()
                .map(|s| digest_of(s, io.input(s)))
                .collect(),
            outputs: io
                .output_slots()
                .map(|s| digest_of(s, io.output(s)))
                .collect(),
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
