//! Cella's gRPC frontend: serves the `cella.v1` API over TLS, authenticates every call,
//! and maps requests onto [`cella_platform::Platform`] and its errors onto gRPC statuses
//! in one place.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod api_metrics;
pub mod checkpoints;
mod codes;
mod convert;
pub mod node;
pub mod ops;
mod services;
mod status;
pub mod tls;

pub use node::{
    LIBOS_DIR, LIBOS_POLICY_FILE, RunningNode, ServerConfig, StartError, default_executors,
    libos_executor, node_executors, wasm_executor,
};
pub use ops::{LibosProbe, NodeMetrics, Ops};
pub use tls::NodeEvidence;
