//! Cella's Gramine backend of the LibOS executor (`backend = "gramine"`): every LibOS
//! instance is a Gramine process, in an SGX enclave with `gramine-sgx`.
//!
//! - [`manifest`]: a runtime image's Gramine manifest (TOML, Gramine v1.8+ syntax):
//!   the pre-load module as entrypoint, fixed argv, an environment allowlist, the image's
//!   files as trusted files with their SHA-256, an encrypted `/cella`;
//! - [`schema`]: structural checks of a manifest against Gramine's documented syntax and
//!   Cella's rules (no `sgx.allowed_files`, no `insecure__` option, every file hashed);
//! - [`sign`]: `gramine-sgx-sign` and `gramine-sgx-sigstruct-view`: the enclave's
//!   `MRENCLAVE`, which the executor then expects in every quote;
//! - [`GramineBackend`]: the [`cella_libos::LibosBackend`] that starts `gramine-sgx` (or
//!   `gramine-direct`, only with simulation allowed), SIGTERM once, then kills the
//!   process group;
//! - [`config`]: the `[gramine]` section of the node's LibOS configuration;
//! - [`node::build_executor`]: the node's `libos` executor on this backend.
//!
//! The design, its costs and the threat model are in `docs/gramine.md`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod evidence;
pub mod manifest;
pub mod node;
pub mod schema;
pub mod sign;

pub use backend::{GramineBackend, ImageOnDisk, Setup, SetupError};
pub use config::{GramineConfig, Mode};
