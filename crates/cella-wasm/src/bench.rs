//! Benchmarks of the WebAssembly executor that return measured samples and print
//! nothing, for `cella bench` and for this crate's own ignored performance test.
//!
//! - [`instantiate_latency`]: a fresh store (with an empty WASI context) and an
//!   instance of a cached module through its `InstancePre` and the pooling allocator,
//!   which is what every task pays before `_start`; target p50 ≤ 50 µs.
//! - [`echo_task_latency`]: [`Executor::execute`] of the echo example with one
//!   argument, one input and one output: run directory, store, instance, `_start`,
//!   outputs read back, directory removed, receipt; target p50 ≤ 5 ms. No gRPC.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cella_executor::{Executor, IoLimits, StagedTask, TaskIo};
use cella_types::{Digest, ExecutorKind};
use wasmtime::Store;

use crate::config::WasmConfig;
use crate::executor::WasmExecutor;

/// The echo example (`examples/wasm/echo.wat`), as WAT text (payloads may be WAT or
/// binary): prints its arguments.
pub const ECHO_WASM: &[u8] = include_bytes!("../../../examples/wasm/echo.wat");

/// A benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("wasm benchmark failed: {0}")]
pub struct BenchError(String);

fn bench_err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

/// Instantiates [`ECHO_WASM`] (compiled once beforehand) `samples` times; the time of
/// each store-plus-instance.
///
/// # Errors
///
/// [`BenchError`] if the executor cannot be set up or an instantiation fails.
pub fn instantiate_latency(samples: usize) -> Result<Vec<Duration>, BenchError> {
    let executor = WasmExecutor::new(WasmConfig::default()).map_err(bench_err)?;
    let prepared = executor
        .prepare(&Digest::of(ECHO_WASM), ECHO_WASM, true)
        .map_err(bench_err)?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let mut store = Store::new(executor.engine(), crate::run::RunState::empty());
        prepared.pre.instantiate(&mut store).map_err(bench_err)?;
        out.push(started.elapsed());
        // Dropping the store returns the instance's slot to the pool.
        drop(store);
    }
    Ok(out)
}

/// Runs the echo example as a task `samples` times through
/// [`WasmExecutor::execute`](Executor::execute); the time of each run. Call it on a
/// tokio runtime (the run uses the blocking pool).
///
/// # Errors
///
/// [`BenchError`] if the executor cannot be set up or a run fails.
pub async fn echo_task_latency(samples: usize) -> Result<Vec<Duration>, BenchError> {
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

/// The `pct`-th percentile (0–100, nearest rank) of `samples`; zero when empty.
pub fn percentile(samples: &[Duration], pct: u32) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let pct = usize::try_from(pct.min(100)).unwrap_or(100);
    sorted[last * pct / 100]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let s: Vec<_> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&s, 50), ms(50));
        assert_eq!(percentile(&s, 99), ms(99));
        assert_eq!(percentile(&s, 100), ms(100));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn instantiation_and_echo_run() {
        assert_eq!(instantiate_latency(3).unwrap().len(), 3);
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(rt.block_on(echo_task_latency(2)).unwrap().len(), 2);
    }

    /// Release figures for `docs/wasm.md`:
    /// `cargo test -p cella-wasm --release -- --ignored --nocapture bench`.
    #[test]
    #[ignore = "a measurement, run in release"]
    fn bench_report() {
        let inst = instantiate_latency(2000).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let echo = rt.block_on(echo_task_latency(500)).unwrap();
        for (name, s) in [("instantiate", &inst), ("echo task", &echo)] {
            println!(
                "{name}: n={} p50={:?} p99={:?}",
                s.len(),
                percentile(s, 50),
                percentile(s, 99)
            );
        }
    }
}
