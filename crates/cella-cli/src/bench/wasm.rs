//! Benchmarks of the WebAssembly executor that return measured samples and print
//! nothing, for `cella bench` and for the ignored performance test below.
//!
//! - [`instantiate_latency`]: a fresh store (with an empty WASI context) and an
//!   instance of a cached module through its `InstancePre` and the pooling allocator,
//!   which is what every task pays before `_start`; target p50 ≤ 50 µs.
//! - `echo_task_latency` (in the tests): `Executor::execute` of the echo example with one
//!   argument, one input and one output: run directory, store, instance, `_start`,
//!   outputs read back, directory removed, receipt; target p50 ≤ 5 ms. No gRPC.

use std::time::{Duration, Instant};

use cella_wasm::{WasmConfig, WasmExecutor};

/// The echo example (`examples/wasm/echo.wat`), as WAT text (payloads may be WAT or
/// binary): prints its arguments.
pub(crate) const ECHO_WASM: &[u8] = include_bytes!("../../../../examples/wasm/echo.wat");

/// A benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("wasm benchmark failed: {0}")]
pub(crate) struct BenchError(String);

fn bench_err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

/// Instantiates [`ECHO_WASM`] (compiled once beforehand) `samples` times; the time of
/// each store-plus-instance.
///
/// # Errors
///
/// [`BenchError`] if the executor cannot be set up or an instantiation fails.
pub(crate) fn instantiate_latency(samples: usize) -> Result<Vec<Duration>, BenchError> {
    let executor = WasmExecutor::new(WasmConfig::default()).map_err(bench_err)?;
    let module = executor.cached_module(ECHO_WASM).map_err(BenchError)?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let instance = module.instantiate_idle().map_err(bench_err)?;
        out.push(started.elapsed());
        // Dropping it returns the instance's slot to the pool (not timed).
        drop(instance);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cella_executor::{Executor, IoLimits, StagedTask, TaskIo};
    use cella_types::ExecutorKind;

    use super::*;
    use crate::bench::percentile;

    /// Runs the echo example as a task `samples` times through
    /// [`WasmExecutor::execute`](Executor::execute); the time of each run. Call it on a
    /// tokio runtime (the run uses the blocking pool).
    ///
    /// # Errors
    ///
    /// [`BenchError`] if the executor cannot be set up or a run fails.
    async fn echo_task_latency(samples: usize) -> Result<Vec<Duration>, BenchError> {
        let executor = WasmExecutor::new(WasmConfig::default()).map_err(bench_err)?;
        executor.validate_payload(ECHO_WASM).map_err(BenchError)?;
        let task = StagedTask::new(
            "echo",
            ExecutorKind::Wasm,
            ECHO_WASM,
            Duration::from_secs(10),
        )
        .with_arguments([("message", "hello")]);
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            let mut io = TaskIo::new(
                BTreeMap::from([("input".to_owned(), b"data".to_vec())]),
                ["output".to_owned()],
                IoLimits::default(),
            );
            let started = Instant::now();
            executor.execute(&task, &mut io).await.map_err(bench_err)?;
            out.push(started.elapsed());
        }
        Ok(out)
    }

    #[test]
    fn instantiation_and_echo_run() {
        assert_eq!(instantiate_latency(3).unwrap().len(), 3);
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(rt.block_on(echo_task_latency(2)).unwrap().len(), 2);
    }

    /// Release figures for `docs/wasm.md`:
    /// `cargo test -p cella-cli --release -- --ignored --nocapture bench_report`.
    #[test]
    #[ignore = "a measurement, run in release"]
    fn bench_report() {
        let mut inst = instantiate_latency(2000).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut echo = rt.block_on(echo_task_latency(500)).unwrap();
        for (name, s) in [("instantiate", &mut inst), ("echo task", &mut echo)] {
            s.sort();
            println!(
                "{name}: n={} p50={:.4} ms p99={:.4} ms",
                s.len(),
                percentile(s, 0.5),
                percentile(s, 0.99)
            );
        }
    }
}
