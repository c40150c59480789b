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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cella_executor::IoLimits;
    use cella_types::ExecutorKind;

    use super::*;

    /// The receipt of a fixed run, pinned byte for byte: verifiers of stored task
    /// results read this format, so it must never drift.
    #[test]
    fn golden_bytes() {
        let mut task = StagedTask::new(
            "echo",
            ExecutorKind::Wasm,
            &b"(module)"[..],
            Duration::from_secs(1),
        )
        .with_arguments([("message", "hi")]);
        task.task_id = "task-00000000-0000-4000-8000-000000000001".parse().unwrap();
        task.function_id = "function-00000000-0000-4000-8000-000000000002"
            .parse()
            .unwrap();
        let mut io = TaskIo::new(
            BTreeMap::from([("in".to_owned(), b"data".to_vec())]),
            ["out".to_owned(), "unset".to_owned()],
            IoLimits::default(),
        );
        io.write_output("out", b"hi".to_vec()).unwrap();
        let bytes = WasmReceipt::new(&task, &io, b"").to_bytes().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), GOLDEN);
        assert_eq!(
            Digest::of(&bytes).to_hex(),
            "607bea9ef75fe0f188eb47d3e4202fb371bdd983b05f081628bf0acca3df555f"
        );
    }

    const GOLDEN: &str = concat!(
        r#"{"format":"cella-wasm-receipt-v1","engine":"wasmtime 48.0.8 (WASI preview 1)","t"#,
        r#"ask_id":"task-00000000-0000-4000-8000-000000000001","function_id":"function-0000"#,
        r#"0000-0000-4000-8000-000000000002","payload_digest":"1885772b94ca41b360d9bd075355"#,
        r#"47f4c8ef16cbe7e49d2c8e9780247e26c4de","arguments_digest":"adbd982b8fe0bbd8477f09"#,
        r#"262028d3ac264001dc36e3c7579905e72c0b718755","inputs":{"in":"3a6eb0790f39ac87c94f"#,
        r#"3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"},"outputs":{"out":"8f434346648f6b9"#,
        r#"6df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4","unset":"e3b0c44298fc1c149afb"#,
        r#"f4c8996fb92427ae41e4649b934ca495991b7852b855"},"return_value":"e3b0c44298fc1c149"#,
        r#"afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
    );
}
