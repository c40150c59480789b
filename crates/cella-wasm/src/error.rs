//! Errors of the WebAssembly executor, by operation: [`PayloadError`] when a module is
//! refused, [`SetupError`] when the executor cannot start, and [`LimitExceeded`], the
//! error a run's own limits raise inside wasmtime to stop the guest.
//!
//! The split follows who is at fault: a refused payload is the function owner's; a
//! setup error is the node's configuration; a limit hit is the function's, and its
//! message names the limit.

use std::time::Duration;

/// The module that carries WASI preview 1, the only import module a payload may use.
pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// A payload refused at registration (or when a task finds it uncompiled).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not a valid WebAssembly module, or one this engine cannot compile.
    #[error("not a valid WebAssembly module: {reason}")]
    Invalid {
        /// wasmtime's explanation, with its cause chain.
        reason: String,
    },
    /// Valid, but this engine cannot load it: most often a memory or table whose
    /// initial size is over the node's limits, which the pooling allocator checks.
    #[error("the module cannot be loaded within this node's limits: {reason}")]
    Unsupported {
        /// wasmtime's explanation.
        reason: String,
    },
    /// No `_start` function exported.
    #[error(
        "the module exports no `_start` function; a WASI command module must export `_start` of type [] -> []"
    )]
    NoStart,
    /// `_start` exists but is not a function of type `[] -> []`.
    #[error("the module's `_start` export is not a function of type [] -> []")]
    BadStart,
    /// An import from a module other than [`WASI_P1_MODULE`].
    #[error("the module imports `{module}::{name}`; only `{WASI_P1_MODULE}` imports are provided")]
    ForeignImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// A WASI import that this node does not provide, or with the wrong type.
    #[error("the module's WASI imports cannot be linked: {reason}")]
    Link {
        /// wasmtime's explanation, naming the import.
        reason: String,
    },
    /// More memories than [`crate::config::MAX_MEMORIES_PER_MODULE`].
    #[error("the module defines {count} memories; at most {max} is allowed")]
    TooManyMemories {
        /// Memories the module needs.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// More tables than [`crate::config::MAX_TABLES_PER_MODULE`].
    #[error("the module defines {count} tables; at most {max} are allowed")]
    TooManyTables {
        /// Tables the module needs.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// A memory whose initial size is already over the memory limit.
    #[error(
        "the module's initial memory of {bytes} bytes is over the memory limit of {limit} bytes"
    )]
    InitialMemoryTooLarge {
        /// Initial size in bytes.
        bytes: u64,
        /// The memory limit.
        limit: u64,
    },
    /// A table whose initial size is already over the table limit.
    #[error(
        "the module's initial table of {elements} elements is over the table limit of {limit} elements"
    )]
    InitialTableTooLarge {
        /// Initial elements.
        elements: u64,
        /// The table limit.
        limit: u32,
    },
}

/// The executor could not be set up: the node's configuration or resources.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime refused the engine configuration (for example, the pooling allocator
    /// could not reserve its address space).
    #[error("cannot create the wasmtime engine: {reason}")]
    Engine {
        /// wasmtime's explanation.
        reason: String,
    },
    /// The WASI host functions could not be added to the linker.
    #[error("cannot set up the WASI linker: {reason}")]
    Linker {
        /// wasmtime's explanation.
        reason: String,
    },
    /// The disk cache directory could not be created.
    #[error("cannot create the wasm cache directory {}", dir.display())]
    Cache {
        /// The directory.
        dir: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
}

/// A limit of a run was hit. Raised inside wasmtime (from the resource limiter or the
/// epoch callback) so that it stops the guest as a trap, and recognised afterwards by
/// downcasting; its message names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The task's wall-clock deadline passed.
    #[error("deadline of {limit:?} exceeded")]
    Deadline {
        /// The deadline.
        limit: Duration,
    },
    /// A memory tried to grow past the memory limit.
    #[error("memory limit of {limit} bytes exceeded (the module asked for {requested} bytes)")]
    Memory {
        /// The limit.
        limit: u64,
        /// The size asked for.
        requested: u64,
    },
    /// A table tried to grow past the table limit.
    #[error("table limit of {limit} elements exceeded (the module asked for {requested})")]
    TableElements {
        /// The limit.
        limit: u32,
        /// The size asked for.
        requested: u64,
    },
    /// A file in `/cella/outputs` grew past the per-slot output limit.
    #[error("output limit of {limit} bytes per slot exceeded: {file:?} holds {size} bytes")]
    Output {
        /// The file's name.
        file: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files in `/cella/outputs` together grew past the task's total output cap.
    #[error("{cap} of {limit} bytes exceeded: /cella/outputs holds {total} bytes in all")]
    TotalOutput {
        /// Whose cap it is.
        cap: cella_executor::OutputCap,
        /// What the outputs hold together.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// Something other than a declared output slot's regular file appeared in
    /// `/cella/outputs`.
    #[error(
        "{file:?} in /cella/outputs is not a regular file named after a declared output slot; declared: [{declared}]"
    )]
    UndeclaredOutput {
        /// The entry's name.
        file: String,
        /// The declared output slots, comma-separated.
        declared: String,
    },
    /// The caller stopped waiting for the run (the task was cancelled).
    #[error("the run was cancelled")]
    Cancelled,
}
