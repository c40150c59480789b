//! The WebAssembly executor's receipt: a [`WasmReceipt`] of the executor's receipt
//! family (`cella_executor::receipt`), naming the engine that ran the module.

#[cfg(test)]
use cella_executor::receipt::WasmReceipt;

/// The engine named in receipts: the wasmtime version this crate pins.
pub const ENGINE: &str = "wasmtime 48.0.8 (WASI preview 1)";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cella_executor::IoLimits;
    use cella_types::ExecutorKind;

    use std::collections::BTreeMap;

    use cella_executor::receipt::Receipt;
    use cella_executor::{StagedTask, TaskIo};
    use cella_types::Digest;

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
        let bytes = Receipt::Wasm(WasmReceipt::new(&task, ENGINE, &io, b""))
            .to_bytes()
            .unwrap();
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
