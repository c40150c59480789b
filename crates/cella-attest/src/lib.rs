//! Cella's attestation: who is on the other end of a channel, proven by evidence.
//!
//! The crate covers the whole path from evidence to an opened channel:
//!
//! - [`evidence`]: the [`EvidenceSource`] trait and the two platforms behind it,
//!   [`sim`] (software evidence signed by a node-local Ed25519 key, for development) and
//!   [`gramine`] (SGX DCAP quotes read through Gramine's `/dev/attestation`);
//! - [`dcap`]: verification of SGX DCAP quotes with `dcap-qvl` against collateral, at an
//!   explicit time; [`pccs`]: that collateral fetched from a PCCS over HTTPS and cached
//!   until its `nextUpdate`;
//! - [`claims`] and [`ratls`]: RA-TLS certificates in Gramine's interoperable format (TCG
//!   DICE tagged evidence, CBOR tag 60000) and the legacy Gramine extension, generation and
//!   parsing, and the binding between the evidence and the certificate's key;
//! - [`policy`] and [`auditors`]: `attestation-policy.toml`, per role, optionally signed by
//!   k of n auditors;
//! - [`verify`]: the [`Verifier`], the only way to obtain a [`VerifiedEvidence`];
//! - [`tls`]: rustls server and client certificate verifiers built on the verifier;
//! - [`renew`]: a certificate resolver whose key, evidence and certificate are renewed on a
//!   timer.
//!
//! Every byte of the formats is specified in `docs/attestation.md`.
//!
//! # Invariants
//!
//! - Fail closed: evidence is accepted only if a policy role accepts it explicitly. There is
//!   no fallback from one platform to another; simulation evidence is refused unless the
//!   role sets `allow_simulation = true` *and* lists the simulation key that signed it.
//! - `ring` is the only cryptographic provider (rustls, rcgen and dcap-qvl all use it).
//! - I/O is confined to the evidence sources (reading `/dev/attestation`, hashing the running
//!   binary) and to the explicit file-loading helpers; verification itself does no I/O.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auditors;
pub mod claims;
pub mod clock;
pub mod dcap;
pub mod ed25519;
pub mod evidence;
pub mod gramine;
pub mod measurement;
pub mod pccs;
pub mod policy;
pub mod ratls;
pub mod renew;
pub mod signed;
pub mod sim;
pub mod tls;
pub mod verify;

pub use clock::{Clock, SystemClock};
pub use evidence::{Evidence, EvidenceSource, Platform, REPORT_DATA_LEN, ReportData};
pub use measurement::Measurement;
pub use policy::Policy;
pub use verify::{Appraisal, VerifiedEvidence, Verifier};
