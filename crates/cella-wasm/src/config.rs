//! [`WasmConfig`]: the limits and places of the WebAssembly executor, each default a
//! named constant with the reason for its value.
//!
//! Limits that belong to the task (its deadline, the output size cap) are not here: they
//! come with every run in [`cella_executor::StagedTask::deadline`] and
//! [`cella_executor::TaskIo::limits`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cella_crypto::SealingKey;

/// Default cap on a module's linear memory: 256 MiB. Enough for real programs (an
/// interpreter, a few tables of data) while a handful of concurrent runs cannot exhaust
/// a node; raise it per node for heavier workloads.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 << 20;
/// Default cap on the elements of any one table: 20,000, wasmtime's pooling default.
/// Function tables of compiled C, C++ and Rust programs hold a few thousand entries.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u32 = 20_000;
/// Most tables a module may define. Tables are small (a pointer per element), but each
/// one takes a slot of the pooling allocator; MVP toolchains use one.
pub const MAX_TABLES_PER_MODULE: u32 = 4;
/// Most memories a module may define: one, so that the memory cap is the module's total.
pub const MAX_MEMORIES_PER_MODULE: u32 = 1;
/// Most instances per run: the module itself. WASI is provided by host functions, which
/// are not instances, so a module has no way to create a second one.
pub const MAX_INSTANCES_PER_RUN: usize = 1;
/// Default number of runs that may hold an instance at once: the size of the pooling
/// allocator. Well above the node's default worker count (4); a run that finds the
/// pool full fails as a node fault and is retried by the platform.
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 32;
/// Default interval of the epoch ticker. It bounds how late a deadline is noticed and
/// how often the output directory is checked, and costs one wake-up per interval.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);
/// Default number of compiled modules kept in memory. Each entry pins its machine code
/// and the copy-on-write image of its data segments.
pub const DEFAULT_MEMORY_CACHE_ENTRIES: usize = 32;
/// Default cap on the payload bytes of the compiled modules kept in memory (1 GiB): the
/// entry count alone would let 32 modules of 64 MiB pin 2 GiB and more.
pub const DEFAULT_MEMORY_CACHE_BYTES: u64 = 1 << 30;

/// Where compiled modules are kept across restarts, and the key that authenticates them.
#[derive(Clone)]
pub struct DiskCache {
    /// The cache directory (created 0700 if missing), e.g. `<data_dir>/wasm-cache`.
    pub dir: PathBuf,
    /// Seals every cache file; a file that does not unseal under it is never loaded.
    pub key: Arc<SealingKey>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a [`crate::WasmExecutor`] runs modules.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Cap on a module's linear memory, in bytes.
    pub memory_limit_bytes: u64,
    /// Cap on the elements of any one table.
    pub max_table_elements: u32,
    /// Runs that may hold an instance at once (the pooling allocator's size).
    pub max_concurrent_runs: u32,
    /// Interval of the epoch ticker.
    pub epoch_tick: Duration,
    /// Compiled modules kept in memory, at most.
    pub memory_cache_entries: usize,
    /// Payload bytes of the compiled modules kept in memory, at most.
    pub memory_cache_bytes: u64,
    /// The on-disk cache; `None` keeps compiled modules in memory only.
    pub disk_cache: Option<DiskCache>,
    /// Where per-run directories are made; `None` picks `/dev/shm` when it is a
    /// writable directory with room for the inputs, else the system temp dir.
    pub scratch_dir: Option<PathBuf>,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            epoch_tick: DEFAULT_EPOCH_TICK,
            memory_cache_entries: DEFAULT_MEMORY_CACHE_ENTRIES,
            memory_cache_bytes: DEFAULT_MEMORY_CACHE_BYTES,
            disk_cache: None,
            scratch_dir: None,
        }
    }
}

impl WasmConfig {
    /// The defaults, with compiled modules also kept in `dir`, sealed under `key`.
    pub fn with_disk_cache(dir: impl Into<PathBuf>, key: Arc<SealingKey>) -> Self {
        Self {
            disk_cache: Some(DiskCache {
                dir: dir.into(),
                key,
            }),
            ..Self::default()
        }
    }
}
