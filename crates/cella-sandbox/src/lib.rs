//! The sandbox backend: see `docs/sandbox.md`.
