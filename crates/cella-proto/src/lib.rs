//! Generated gRPC messages, clients and servers for Cella's public API, compiled from
//! `proto/cella/v1/*.proto` (the single source of truth for clients).
#![forbid(unsafe_code)]

/// Version 1 of the API (`package cella.v1`).
#[allow(missing_docs, unreachable_pub, reason = "generated code")]
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
pub mod v1 {
    tonic::include_proto!("cella.v1");
}
