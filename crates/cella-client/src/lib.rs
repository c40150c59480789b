//! A typed client for a Cella node: the Rust SDK.
//!
//! [`Client`] speaks the public gRPC API (`proto/cella/v1`) over TLS 1.3. The node is
//! authenticated either by its attestation evidence ([`ServerTrust::Attested`]: its
//! RA-TLS certificate checked against an attestation policy before anything is sent) or by
//! a pinned certificate ([`ServerTrust::Pinned`]: the node's `<data_dir>/tls/cert.pem`,
//! which changes at every start of the node).
//!
//! ```no_run
//! # async fn example() -> cella_client::Result<()> {
//! let pem = std::fs::read("node/tls/cert.pem").expect("read the node certificate");
//! let mut client = cella_client::Client::connect("localhost:7443", &pem).await?;
//! client.login("alice", "secret").await?;
//! for task in client.list_tasks().await? {
//!     println!("{} {:?}", task.task_id, cella_client::task_status(task.status));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Calls return the generated API types ([`proto`]) unchanged; errors are
//! [`ClientError`]s that tell connection and trust failures from the node's refusals
//! and from bad local input.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod address;
mod audit;
mod client;
mod error;
mod files;
mod functions;
mod pages;
pub mod receipt;
mod tasks;
mod tls;

/// The generated API types (`cella.v1`).
pub use cella_proto::code_name;
pub use cella_proto::v1 as proto;

pub use client::{Client, LoginInfo, MAX_RESPONSE_MESSAGE_SIZE};
pub use error::{ClientError, Result, chain_message};
pub use files::{DownloadSummary, Progress, UPLOAD_CHUNK_SIZE, UploadSource};
pub use tasks::{TaskWatch, compute_task_digest, is_terminal, task_status};
pub use tls::{ServerTrust, appraise_node};
/// gRPC status codes, as returned by [`ClientError::code`].
pub use tonic::Code;

/// The file schema name of Cella's sealed stream format, for [`proto::FileCrypto`].
pub const SCHEMA_CELLA_SEALED_V1: &str = cella_types::FileSchema::CellaSealedV1.as_str();
