//! Cella's shared vocabulary: ids, the domain model, the task state machine and the
//! errors that go with them. This crate does no I/O.
#![deny(missing_docs)]

pub mod digest;

pub use digest::{DIGEST_LEN, Digest, Hasher};
