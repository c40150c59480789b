//! The Gramine backend: see `docs/gramine.md`.
