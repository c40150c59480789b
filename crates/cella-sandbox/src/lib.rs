//! The sandbox backend: see `docs/sandbox.md`.

pub mod backend;
pub mod jail;
