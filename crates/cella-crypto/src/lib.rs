//! Cella's data-at-rest cryptography: the sealed stream file format that data owners
//! encrypt their files with, the keys that go with it, and the node's sealing key that
//! protects values stored on disk.
//!
//! `ring` is the only cryptographic provider. The byte-level formats are specified in
//! `docs/formats/sealed-file.md`; the tests in this crate check the code against that
//! document.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod keys;
pub mod sealing;
pub mod stream;
mod support;

pub use keys::{FILE_KEY_LEN, FileKey, ParseFileKeyError};
pub use sealing::{LoadSealingKeyError, SealingKey, UnsealValueError};
