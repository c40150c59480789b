//! Cella's LibOS executor: unmodified Linux programs run inside LibOS instances, attested
//! sidecars that the executor drives over a mutually attested channel.
//!
//! ```text
//! LibosExecutor ── Pool (per runtime image) ── LibosBackend::launch ──► instance
//!      │  1. nonce, private Unix socket          2. cella-preload: key, evidence over
//!      │                                            {key, nonce}, connects back
//!      │◄── 3. TLS 1.3, RA-TLS both ends (cella-attest), Hello ── session: ExpectAttested
//!      │  4. Deploy + chunks (program, inputs)        ──► ExpectStarted ──► Running
//!      │◄── 5. Started, Log…, output chunks, Finished{exit, receipt} ──► Done
//!      │  Cancel ─► grace ─► kill the process group
//! ```
//!
//! - [`backend`]: the [`LibosBackend`] and [`Instance`] traits, and what a backend must
//!   guarantee; [`mock`]: the in-process backend with scriptable faults.
//! - [`session`]: the executor's side of the protocol as typed states.
//! - [`LibosExecutor`]: the `Executor` of `ExecutorKind::Libos`.
//! - [`receipt`]: the self-contained receipt bundle and its offline verification.
//! - [`config`]: the node's LibOS configuration file.
//!
//! The wire protocol is `cella_preload::protocol`, specified in `docs/libos-protocol.md`;
//! the design and its decisions are in `docs/libos.md`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod attest;
pub mod backend;
pub mod config;
mod executor;
pub mod image;
mod launch;
pub mod mock;
mod pool;
pub mod process;
pub mod receipt;
mod run;
pub mod session;

#[cfg(test)]
mod tests;

pub use attest::ExecutorAttestation;
pub use backend::{
    BackendError, ConnectBack, Instance, InstanceEvidence, InstanceExit, LaunchSpec, LibosBackend,
    SgxAppraisal,
};
pub use config::LibosConfig;
pub use executor::{ExecutorConfig, LibosExecutor, SetupError, UnpooledInstance};
pub use image::RuntimeImage;
pub use launch::{LaunchError, Timeouts};
pub use pool::{PoolConfig, PoolStats};
pub use run::ARG_ENV_PREFIX;
