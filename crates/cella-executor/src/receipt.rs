//! The receipt family: what each executor attests about one successful run, as one
//! [`Receipt`] enum with a variant per executor family, encoded by [`Receipt::to_bytes`]
//! into [`crate::ExecutionOutcome::receipt`].
//!
//! - [`BuiltinReceipt`] and [`WasmReceipt`]: compact JSON documents binding the task,
//!   function, payload, arguments, plaintext inputs, outputs and return value by digest;
//!   both carry the same [`RunDigests`], computed in one place ([`RunDigests::of`]).
//! - [`LibosReceipt`]: the self-contained bundle {instance certificate, receipt body,
//!   signature} a LibOS instance produced; its body stays the exact bytes the instance
//!   signed (`cella_preload::receipt::ReceiptBody` encoded), and it is verified offline
//!   by `cella_libos::receipt::verify_bundle`.
//!
//! Invariants: receipts hold digests, never data; the JSON receipts are deterministic
//! (sorted maps, no timestamps, no usage figures), so the same task run on the same
//! inputs gives byte-identical receipts. The JSON receipts are not signed yet; later an
//! attested key will sign them. Every encoding is pinned by a golden test.

use std::collections::BTreeMap;

use cella_types::{Digest, FunctionId, TaskId};
use serde::{Deserialize, Serialize};

use crate::error::ExecutionError;
use crate::io::TaskIo;
use crate::task::StagedTask;

/// The value of [`BuiltinReceipt::format`] for this version of the receipt.
pub const RECEIPT_FORMAT: &str = "cella-builtin-receipt-v1";

/// The value of [`WasmReceipt::format`] for this version of the receipt.
pub const WASM_RECEIPT_FORMAT: &str = "cella-wasm-receipt-v1";

/// The value of [`LibosReceipt::format`].
pub const BUNDLE_FORMAT: &str = "cella-libos-receipt-bundle-v1";

/// A run's receipt, by executor family.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// Of a builtin function.
    Builtin(BuiltinReceipt),
    /// Of a WebAssembly module.
    Wasm(WasmReceipt),
    /// Of a program run in a LibOS instance.
    Libos(LibosReceipt),
}

impl Receipt {
    /// The receipt's stored encoding: compact JSON for builtin and wasm, the protobuf
    /// bundle for LibOS.
    ///
    /// # Errors
    ///
    /// [`ExecutionError::Internal`] if JSON serialisation fails (it cannot for these
    /// types).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExecutionError> {
        let json = match self {
            Self::Builtin(r) => serde_json::to_vec(r),
            Self::Wasm(r) => serde_json::to_vec(r),
            Self::Libos(r) => return Ok(prost::Message::encode_to_vec(r)),
        };
        json.map_err(|e| ExecutionError::internal(format!("cannot serialise receipt: {e}")))
    }
}

/// The digests every JSON receipt binds, in this order after its own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDigests {
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

impl RunDigests {
    /// The digests of a run of `task` that left `io` and returned `return_value`.
    pub fn of(task: &StagedTask, io: &TaskIo, return_value: &[u8]) -> Self {
        let digest_of = |slot: &str, data: Option<&[u8]>| {
            (slot.to_owned(), Digest::of(data.unwrap_or_default()))
        };
        Self {
            payload_digest: task.payload_digest,
            arguments_digest: arguments_digest(&task.arguments),
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
}

/// What the builtin executor attests about one successful run.
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
    /// What the run bound by digest.
    #[serde(flatten)]
    pub run: RunDigests,
}

impl BuiltinReceipt {
    /// The receipt for a run of `builtin` for `task` that left `io` and returned
    /// `return_value`.
    pub(crate) fn new(task: &StagedTask, builtin: &str, io: &TaskIo, return_value: &[u8]) -> Self {
        Self {
            format: RECEIPT_FORMAT.to_owned(),
            task_id: task.task_id,
            function_id: task.function_id,
            builtin: builtin.to_owned(),
            run: RunDigests::of(task, io, return_value),
        }
    }
}

/// What the WebAssembly executor attests about one successful run, naming the engine
/// that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmReceipt {
    /// Always [`WASM_RECEIPT_FORMAT`].
    pub format: String,
    /// The engine (`cella_wasm::ENGINE`).
    pub engine: String,
    /// The task run.
    pub task_id: TaskId,
    /// The function run.
    pub function_id: FunctionId,
    /// What the run bound by digest.
    #[serde(flatten)]
    pub run: RunDigests,
}

impl WasmReceipt {
    /// The receipt of a run of `task` on `engine` that left `io` and returned
    /// `return_value`.
    pub fn new(task: &StagedTask, engine: &str, io: &TaskIo, return_value: &[u8]) -> Self {
        Self {
            format: WASM_RECEIPT_FORMAT.to_owned(),
            engine: engine.to_owned(),
            task_id: task.task_id,
            function_id: task.function_id,
            run: RunDigests::of(task, io, return_value),
        }
    }
}

/// What a LibOS task's receipt is: the instance's RA-TLS certificate, whose evidence
/// binds the signing key, the receipt body and the signature over it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LibosReceipt {
    /// Always [`BUNDLE_FORMAT`].
    #[prost(string, tag = "1")]
    pub format: String,
    /// The instance's RA-TLS certificate, DER: its evidence binds the signing key.
    #[prost(bytes = "vec", tag = "2")]
    pub instance_cert: Vec<u8>,
    /// The receipt body, a `cella_preload::receipt::ReceiptBody` encoded: kept as the
    /// bytes signed, since a re-encoding need not be byte-identical.
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
    /// The signature over the body (see `cella_preload::receipt`).
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
}

impl LibosReceipt {
    /// A bundle of these parts.
    pub fn new(instance_cert: Vec<u8>, body: Vec<u8>, signature: Vec<u8>) -> Self {
        Self {
            format: BUNDLE_FORMAT.into(),
            instance_cert,
            body,
            signature,
        }
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
        let a = Receipt::Builtin(BuiltinReceipt::new(&task, "echo", &io, b"hi"))
            .to_bytes()
            .unwrap();
        let b = Receipt::Builtin(BuiltinReceipt::new(&task, "echo", &io, b"hi"))
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

    /// The receipt of a fixed run, pinned byte for byte: the builtin receipt's format
    /// is what verifiers of stored task results read, so it must never drift.
    #[test]
    fn golden_bytes() {
        let mut task = crate::builtin::test_support::task("echo", &[("message", "hi")]);
        task.task_id = "task-00000000-0000-4000-8000-000000000001".parse().unwrap();
        task.function_id = "function-00000000-0000-4000-8000-000000000002"
            .parse()
            .unwrap();
        let mut io = crate::builtin::test_support::io(&[("in", b"data")], &["out", "unset"]);
        io.write_output("out", b"hi".to_vec()).unwrap();
        let bytes = Receipt::Builtin(BuiltinReceipt::new(&task, "echo", &io, b"hi"))
            .to_bytes()
            .unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), GOLDEN);
        assert_eq!(
            Digest::of(&bytes).to_hex(),
            "415751d7fcbcae8da863b03dc44737bb552e00d6e21a5ebd666cb5a64873fa3e"
        );
    }

    const GOLDEN: &str = concat!(
        r#"{"format":"cella-builtin-receipt-v1","task_id":"task-00000000-0000-4000-8000-000"#,
        r#"000000001","function_id":"function-00000000-0000-4000-8000-000000000002","builti"#,
        r#"n":"echo","payload_digest":"092c79e8f80e559e404bcf660c48f3522b67aba9ff1484b0367e"#,
        r#"1a4ddef7431d","arguments_digest":"adbd982b8fe0bbd8477f09262028d3ac264001dc36e3c7"#,
        r#"579905e72c0b718755","inputs":{"in":"3a6eb0790f39ac87c94f3856b2dd2c5d110e68116022"#,
        r#"61a9a923d3bb23adc8b7"},"outputs":{"out":"8f434346648f6b96df89dda901c5176b10a6d83"#,
        r#"961dd3c1ac88b59b2dc327aa4","unset":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"#,
        r#"934ca495991b7852b855"},"return_value":"8f434346648f6b96df89dda901c5176b10a6d8396"#,
        r#"1dd3c1ac88b59b2dc327aa4"}"#,
    );
}
