//! The sandbox backend: see `docs/sandbox.md`.

pub mod jail;
