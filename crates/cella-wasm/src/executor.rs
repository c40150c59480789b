//! [`WasmExecutor`]: the [`Executor`] for [`ExecutorKind::Wasm`].
//!
//! Registration (`validate_payload`) compiles, checks and caches the module, so a task
//! finds it ready. A task's run happens on tokio's blocking pool: the module from the
//! cache, a fresh run directory, a fresh store from the pooling allocator, `_start`,
//! outputs read back, the directory removed. Nothing survives from one run to the next
//! but the compiled code.
//!
//! Instance slots: a run takes a permit of a semaphore as large as the pooling
//! allocator before it starts, and gives it back when its store (and with it its pool
//! slot) is gone, so a task waits for a free slot instead of failing on a full pool.
//! No host call can hold a slot past the run's deadline or cancellation: the module
//! stops at the next epoch tick in wasm code, and within [`crate::poll::WAIT_SLICE`]
//! in its one blocking WASI call, `poll_oneoff`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cella_executor::receipt::Receipt;
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, StagedTask, TaskIo};
use cella_types::{Digest, ExecutorKind, Usage};
use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::{Engine, Linker, Store};

use crate::cache::disk::DiskStore;
use crate::cache::{CacheStats, ModuleCache, PrepareError, Prepared};
use crate::config::WasmConfig;
use crate::engine::{self, EpochTicker};
use crate::error::SetupError;
use cella_executor::receipt::WasmReceipt;

use crate::receipt::ENGINE;
use crate::run::{self, RunSpec, RunState};
use crate::rundir::{self, RunDir};

/// How long past the deadline `execute` waits for a run to stop by itself before it
/// gives up on it. The epoch callback stops wasm within a tick; this covers a guest
/// blocked in a host call (a WASI sleep) and reading outputs back. Shorter than the
/// platform's own grace (2 s), so the executor's error is the one reported.
const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// Runs WASI preview 1 modules. Cheap to share: clone the `Arc` it lives in.
pub struct WasmExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    config: WasmConfig,
    engine: Engine,
    linker: Linker<RunState>,
    cache: ModuleCache,
    /// One permit per instance slot of the pooling allocator.
    slots: Arc<Semaphore>,
    // Dropped last: stops the ticker once nothing else uses the engine.
    _ticker: EpochTicker,
}

impl WasmExecutor {
    /// An executor with its own engine, pooling allocator, epoch ticker and cache.
    ///
    /// # Errors
    ///
    /// [`SetupError`] when wasmtime refuses the configuration, the ticker thread cannot
    /// start, or the disk cache directory cannot be created.
    ///
    /// Run directories that no live run owns (left by a crashed node or an abandoned
    /// run) are removed from the scratch places first.
    pub fn new(config: WasmConfig) -> Result<Self, SetupError> {
        rundir::sweep_abandoned(config.scratch_dir.as_deref());
        let engine = engine::engine(&config)?;
        let linker = engine::linker(&engine)?;
        let disk = match &config.disk_cache {
            Some(cache) => Some(DiskStore::open(cache).map_err(|source| SetupError::Cache {
                dir: cache.dir.clone(),
                source,
            })?),
            None => None,
        };
        let cache = ModuleCache::new(&config, disk);
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        let slots = usize::try_from(config.max_concurrent_runs.max(1)).unwrap_or(usize::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                engine,
                linker,
                cache,
                slots: Arc::new(Semaphore::new(slots)),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this executor runs with.
    pub fn config(&self) -> &WasmConfig {
        &self.inner.config
    }

    /// How many modules this executor has compiled (not loaded from a cache).
    pub fn compile_count(&self) -> u64 {
        self.inner.cache.stats().compiles
    }

    /// The module cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// The ready module for a payload, compiling it if no cache has it.
    pub(crate) fn prepare(
        &self,
        digest: &Digest,
        payload: &[u8],
        payload_verified: bool,
    ) -> Result<Arc<Prepared>, PrepareError> {
        self.inner.prepare(digest, payload, payload_verified)
    }

    /// The ready module for `payload`, compiled, checked and cached first if no cache
    /// holds it (as [`Executor::validate_payload`] does at registration).
    ///
    /// # Errors
    ///
    /// The payload's refusal, worded as [`Executor::validate_payload`] words it.
    pub fn cached_module(&self, payload: &[u8]) -> Result<CachedModule, String> {
        let prepared = self
            .prepare(&Digest::of(payload), payload, true)
            .map_err(|e| e.to_string())?;
        Ok(CachedModule {
            executor: Arc::clone(&self.inner),
            prepared,
        })
    }

    /// The module cache (for tests).
    #[cfg(test)]
    pub(crate) fn cache(&self) -> &ModuleCache {
        &self.inner.cache
    }
}

impl std::fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmExecutor")
            .field("config", &self.inner.config)
            .field("cache", &self.inner.cache.stats())
            .finish_non_exhaustive()
    }
}

/// A compiled module from an executor's cache, ready to instantiate: what every task of
/// a registered function starts from.
pub struct CachedModule {
    executor: Arc<Inner>,
    prepared: Arc<Prepared>,
}

impl std::fmt::Debug for CachedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedModule").finish_non_exhaustive()
    }
}

/// A module instantiated in a store of its own, running nothing. Dropping it returns the
/// instance's slot to the pooling allocator.
pub struct IdleInstance {
    _store: Store<RunState>,
}

impl std::fmt::Debug for IdleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleInstance").finish_non_exhaustive()
    }
}

impl CachedModule {
    /// Instantiates the module in a fresh store (an empty WASI context, the default
    /// caps, no deadline) through its `InstancePre` and the pooling allocator: the fixed
    /// cost every task pays before `_start`, without running any of the module's code
    /// (`cella bench` times it). It takes a slot of the pooling allocator outside the
    /// executor's own count of runs, so hold few at a time.
    ///
    /// # Errors
    ///
    /// wasmtime's error if the instantiation fails (e.g. the pool is full).
    pub fn instantiate_idle(&self) -> Result<IdleInstance, wasmtime::Error> {
        let mut store = Store::new(&self.executor.engine, RunState::empty());
        self.prepared.pre.instantiate(&mut store)?;
        Ok(IdleInstance { _store: store })
    }
}

/// What `/cella/task.json` holds.
#[derive(Serialize)]
struct TaskJson<'a> {
    task_id: String,
    function: &'a str,
    arguments: &'a std::collections::BTreeMap<String, String>,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
}

impl Inner {
    fn prepare(
        &self,
        digest: &Digest,
        payload: &[u8],
        payload_verified: bool,
    ) -> Result<Arc<Prepared>, PrepareError> {
        self.cache.get_or_prepare(
            &self.engine,
            &self.linker,
            &self.config,
            digest,
            payload,
            payload_verified,
        )
    }

    /// Runs `task` to the end, on the calling (blocking) thread.
    fn run_task(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
        started: Instant,
        cancel: Arc<AtomicBool>,
        dir_path: &Mutex<Option<PathBuf>>,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        // A cache hit skips hashing the payload: the entry was made from bytes that
        // hashed to this digest. A miss hashes before compiling.
        let prepared = self
            .prepare(&task.payload_digest, &task.payload, false)
            .map_err(|e| match e {
                PrepareError::Payload(p) => {
                    ExecutionError::function(format!("payload refused: {p}"))
                }
                PrepareError::DigestMismatch { .. } => {
                    ExecutionError::internal(format!("task {}: {e}", task.task_id))
                }
            })?;
        let task_json = serde_json::to_vec(&TaskJson {
            task_id: task.task_id.to_string(),
            function: &task.function_name,
            arguments: &task.arguments,
            inputs: io.input_slots().collect(),
            outputs: io.output_slots().collect(),
        })
        .map_err(|e| ExecutionError::internal(format!("cannot encode task.json: {e}")))?;
        let dir = RunDir::create(
            self.config.scratch_dir.as_deref(),
            io.input_slots()
                .map(|s| (s, io.input(s).unwrap_or_default())),
            io.input_bytes(),
            &task_json,
        )
        .map_err(|e| ExecutionError::internal(format!("cannot create the run directory: {e}")))?;
        *dir_path.lock().unwrap_or_else(PoisonError::into_inner) = Some(dir.path().to_owned());

        let mut argv = Vec::with_capacity(task.arguments.len() + 1);
        argv.push(task.function_name.clone());
        argv.extend(task.arguments.iter().map(|(k, v)| format!("--{k}={v}")));
        let spec = RunSpec {
            argv,
            output_slots: io.output_slots().collect(),
            output_limits: io.limits(),
            started,
            deadline: task.deadline,
            cancel,
            memory_limit_bytes: self.config.memory_limit_bytes,
            max_table_elements: self.config.max_table_elements,
        };
        let result = run::run(&self.engine, &prepared, &dir, &spec);
        drop(spec);
        if let Err(e) = dir.remove() {
            tracing::warn!(task = %task.task_id, error = %e, "cannot remove a wasm run directory");
        }
        let finished = result?;
        for (slot, data) in finished.outputs {
            io.write_output(&slot, data)?;
        }
        let return_value = Vec::new();
        let receipt =
            Receipt::Wasm(WasmReceipt::new(task, ENGINE, io, &return_value)).to_bytes()?;
        Ok(ExecutionOutcome {
            return_value,
            log: finished.log.into_lines(),
            usage: Usage {
                wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                input_bytes: io.input_bytes(),
                output_bytes: io.output_bytes(),
            },
            receipt,
        })
    }
}

impl WasmExecutor {
    /// A permit for one instance slot, waiting at most `deadline` for one to be free.
    async fn acquire_slot(
        &self,
        deadline: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ExecutionError> {
        let waiting = Arc::clone(&self.inner.slots).acquire_owned();
        match tokio::time::timeout(deadline, waiting).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(ExecutionError::internal("the wasm executor is closed")),
            Err(_elapsed) => Err(ExecutionError::internal(format!(
                "no wasm instance slot became free within the task's deadline of {deadline:?} \
                 ({} runs at once)",
                self.inner.config.max_concurrent_runs
            ))),
        }
    }
}

/// Sets the cancellation flag when dropped, so an abandoned run stops at its next tick.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl Executor for WasmExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Wasm
    }

    /// Compiles and checks the module and puts it in the cache. Refuses invalid
    /// WebAssembly, a module without `_start: [] -> []`, imports from anything but
    /// `wasi_snapshot_preview1` (naming the import), unknown WASI functions, and
    /// modules over the memory, table or count limits.
    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        let digest = Digest::of(payload);
        self.prepare(&digest, payload, true)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Runs the module's `_start` on tokio's blocking pool under `task.deadline`.
    ///
    /// # Errors
    ///
    /// [`ExecutionError::DeadlineExceeded`] when the deadline passes (checked every
    /// epoch tick; the time spent waiting for a blocking thread counts);
    /// [`ExecutionError::Function`] for a trap, a non-zero exit status, a memory or
    /// table limit, or a file in `/cella/outputs` that is not a declared slot;
    /// [`ExecutionError::Io`] for an output over its limit; [`ExecutionError::Internal`]
    /// for a task of another kind, a payload that does not match its digest, or a node
    /// failure. After an error `io` may be left empty.
    async fn execute(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        if task.executor != ExecutorKind::Wasm {
            return Err(ExecutionError::internal(format!(
                "task {} is for the {} executor, not wasm",
                task.task_id, task.executor
            )));
        }
        let started = Instant::now();
        let slot = self.acquire_slot(task.deadline).await?;
        let inner = Arc::clone(&self.inner);
        let staged = task.clone();
        let mut owned_io = std::mem::take(io);
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&cancel.0);
        let dir_path = Arc::new(Mutex::new(None));
        let run_dir = Arc::clone(&dir_path);
        let handle = tokio::task::spawn_blocking(move || {
            let result = inner.run_task(&staged, &mut owned_io, started, flag, &run_dir);
            // The store, and with it the instance's pool slot, is gone by now.
            drop(slot);
            (result, owned_io)
        });
        let left = task.deadline.saturating_sub(started.elapsed());
        let waited = tokio::time::timeout(left.saturating_add(ABANDON_GRACE), handle).await;
        drop(cancel);
        match waited {
            Err(_elapsed) => {
                // The run's thread is still busy (reading outputs back, most likely):
                // its plaintext must not wait for it.
                let path = dir_path
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(path) = path
                    && let Err(e) = cella_executor::scratch::remove_abandoned(&path)
                {
                    tracing::error!(task = %task.task_id, error = %e, "cannot remove an abandoned wasm run directory");
                }
                Err(ExecutionError::DeadlineExceeded {
                    limit: task.deadline,
                })
            }
            Ok(Err(join_error)) => Err(ExecutionError::internal(format!(
                "wasm run did not complete: {join_error}"
            ))),
            Ok(Ok((result, returned_io))) => {
                *io = returned_io;
                result
            }
        }
    }
}
