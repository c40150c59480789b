//! Cella's WebAssembly executor: runs WASI preview 1 command modules on wasmtime.
//!
//! A function's payload is a core WebAssembly module exporting `_start` and importing
//! only from `wasi_snapshot_preview1`. [`WasmExecutor`] compiles it when the function is
//! registered and keeps it in a compiled-module cache keyed by payload digest (in memory
//! and, sealed with the node's key, on disk), so a task instantiates ready code through
//! an `InstancePre` and the pooling allocator. The module sees only its inputs
//! (`/cella/inputs`, read-only), its outputs (`/cella/outputs`), its arguments (argv
//! and `/cella/task.json`) and a log (stdout and stderr); no network, no host
//! environment. A deadline (epoch interruption), a memory cap, table and instance caps
//! and output size caps stop it, each with a message naming the limit.
//!
//! The contract for function owners, the limits and their defaults, and the cache's
//! trust argument are in `docs/wasm.md`.
//!
//! `unsafe` is denied in this crate and allowed in one function, `cache::disk`'s
//! `deserialize_authenticated`, whose SAFETY comment states the invariant.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod cache;
mod capture;
mod check;
mod config;
mod engine;
mod error;
mod executor;
mod poll;
mod receipt;
mod run;
mod rundir;

pub use cache::CacheStats;
pub use config::{
    DEFAULT_EPOCH_TICK, DEFAULT_MAX_CONCURRENT_RUNS, DEFAULT_MAX_TABLE_ELEMENTS,
    DEFAULT_MEMORY_CACHE_BYTES, DEFAULT_MEMORY_CACHE_ENTRIES, DEFAULT_MEMORY_LIMIT_BYTES,
    DiskCache, MAX_INSTANCES_PER_RUN, MAX_MEMORIES_PER_MODULE, MAX_TABLES_PER_MODULE, WasmConfig,
};
pub use error::{LimitExceeded, PayloadError, SetupError, WASI_P1_MODULE};
pub use executor::{CachedModule, IdleInstance, WasmExecutor};
pub use receipt::ENGINE;

#[cfg(test)]
mod tests;
