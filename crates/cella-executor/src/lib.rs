//! Cella's executors: the [`Executor`] trait every executor family implements, the
//! [`TaskIo`] through which a function sees its inputs and writes its outputs, the
//! bounded [`LogBuffer`], the [`Executors`] registry, the [`builtin`] functions, and
//! the claiming and sweeping of host run directories ([`scratch`]).
//!
//! Executors know nothing of gRPC, storage or encryption: the platform decrypts a task's
//! inputs before calling [`Executor::execute`] and encrypts its outputs afterwards. A
//! function never reaches the network or host files through this crate: [`TaskIo`] is
//! the whole of its world.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod builtin;
mod error;
mod executor;
mod io;
mod log;
pub mod receipt;
pub mod scratch;
mod task;

pub use error::ExecutionError;
pub use executor::{ExecutionOutcome, Executor, Executors, NoExecutorError};
pub use io::{
    DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_TOTAL_OUTPUT_BYTES, IoError, IoLimits, OutputCap, TaskIo,
};
pub use log::{LogBuffer, MAX_LOG_BYTES, MAX_LOG_LINE_BYTES, MAX_LOG_LINES};
pub use task::StagedTask;
