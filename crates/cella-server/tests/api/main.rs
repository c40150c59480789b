//! End-to-end tests of the `cella.v1` API against a real node over loopback gRPC and
//! TLS, in one test binary to keep link time down.

mod bad_ids;
mod docs;
mod flow;
mod hardening;
mod libos;
mod lifecycle;
mod pages;
mod python;
mod refusals;
mod s3;
mod support;
mod wasm;
