//! Cella's storage: the metadata store and the blob store.
//!
//! - [`meta`] keeps records (users, functions, files, tasks, and whatever other crates add)
//!   in an embedded redb database (the default) or in PostgreSQL, every value sealed under
//!   the node's sealing key.
//! - [`blob`] keeps large immutable byte strings (uploaded ciphertexts, function payloads,
//!   outputs) as files in a directory or objects in an S3-compatible bucket, written
//!   atomically and hashed on the way in.
//!
//! `docs/store.md` describes the on-disk layout, the durability rules and what a crash
//! leaves behind.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod blob;
pub mod meta;
mod overlay;
mod pg;
#[cfg(any(test, feature = "pg-test-cluster"))]
pub mod pg_cluster;
mod records;

pub use blob::{BlobError, BlobLocation, BlobName, BlobReader, BlobStore, BlobWriter, S3Config};
pub use meta::{
    MetaStore, ReadTx, Record, SEQ_KEY_WIDTH, StoreError, WriteTx, error_chain, seq_key,
};
