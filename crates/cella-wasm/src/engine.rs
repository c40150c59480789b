//! The wasmtime [`Engine`] of an executor, its WASI linker, and its epoch ticker.
//!
//! One engine per executor: Cranelift, epoch interruption on, the pooling allocator
//! sized by [`WasmConfig`]. A ticker thread increments the engine's epoch every
//! [`WasmConfig::epoch_tick`]; every running store asks to be called back at the next
//! tick (`crate::run`), which is where deadlines and output sizes are checked.
//!
//! Why epochs and not fuel: an epoch check is a load and a compare at function entries
//! and loop heads, while fuel keeps a count of executed instructions up to date, which
//! costs more on compute-heavy code; and a task's deadline is wall-clock time, which is
//! what an epoch ticker measures and fuel does not (a guest blocked in a host call burns
//! no fuel).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, OptLevel, PoolingAllocationConfig,
};

use crate::config::{MAX_MEMORIES_PER_MODULE, MAX_TABLES_PER_MODULE, WasmConfig};
use crate::error::SetupError;
use crate::run::RunState;

/// The engine for `config`.
pub(crate) fn engine(config: &WasmConfig) -> Result<Engine, SetupError> {
    let engine_err = |reason: String| SetupError::Engine { reason };
    let max_memory = usize::try_from(config.memory_limit_bytes)
        .map_err(|_| engine_err("the memory limit does not fit this platform".into()))?;
    let table_elements = usize::try_from(config.max_table_elements)
        .map_err(|_| engine_err("the table limit does not fit this platform".into()))?;
    let runs = config.max_concurrent_runs.max(1);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(runs)
        .total_memories(runs.saturating_mul(MAX_MEMORIES_PER_MODULE))
        .total_tables(runs.saturating_mul(MAX_TABLES_PER_MODULE))
        .max_memories_per_module(MAX_MEMORIES_PER_MODULE)
        .max_tables_per_module(MAX_TABLES_PER_MODULE)
        .max_memory_size(max_memory)
        .table_elements(table_elements)
        // No component instances: only core modules run here.
        .total_component_instances(0);

    let mut c = Config::new();
    c.epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Modules are WASI preview 1 core modules, not components. (Threads are off:
        // the `threads` feature is not compiled in.)
        .wasm_component_model(false);
    Engine::new(&c).map_err(|e| engine_err(format!("{e:#}")))
}

/// A linker with WASI preview 1 (synchronous) and nothing else, its `poll_oneoff`
/// interruptible by the run's deadline and cancellation ([`crate::poll`]).
pub(crate) fn linker(engine: &Engine) -> Result<Linker<RunState>, SetupError> {
    let mut linker = Linker::new(engine);
    let linker_err = |e: wasmtime::Error| SetupError::Linker {
        reason: format!("{e:#}"),
    };
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, RunState::wasi).map_err(linker_err)?;
    crate::poll::add_to_linker(&mut linker).map_err(linker_err)?;
    Ok(linker)
}

/// Increments an engine's epoch every tick until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<Self, SetupError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let engine = engine.weak();
        let flag = Arc::clone(&stop);
        let tick = tick.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("cella-wasm-epoch".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stopped {
                    let (guard, timeout) = wake
                        .wait_timeout(stopped, tick)
                        .unwrap_or_else(PoisonError::into_inner);
                    stopped = guard;
                    if timeout.timed_out() {
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .map_err(SetupError::Ticker)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the wasm epoch ticker thread panicked");
        }
    }
}

impl std::fmt::Debug for EpochTicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochTicker").finish_non_exhaustive()
    }
}
