//! Integration tests of the Gramine backend: golden manifests and their structural checks,
//! signing with stand-ins of Gramine's tools, launches through a stand-in of
//! `gramine-direct`, and the quote path with a fake `/dev/attestation`.

mod common;
mod golden;
mod launch;
mod node;
mod quote;
mod signing;
