//! Integration tests of cella-attest, in one binary (one link).

mod common;
mod dcap;
mod gramine_source;
mod handshake;
mod pccs;
mod policy_signing;
mod ratls_vectors;
