//! Cella's pre-load module: the entrypoint inside every LibOS instance, and the sidecar
//! protocol it speaks with the LibOS executor (`cella-libos`).
//!
//! An instance is launched with a socket path, a fresh launch nonce and an empty working
//! directory. The pre-load module then ([`run`]):
//!
//! 1. creates a key and gets evidence over {key, nonce} from the platform it runs on
//!    ([`attest::Identity::issue`]; it asks for evidence, it cannot choose its
//!    measurement);
//! 2. connects back to the executor over TLS 1.3 with RA-TLS certificates on both ends,
//!    checking the executor against the policy in its measured [`PreloadConfig`]
//!    ([`attest::connect`]);
//! 3. receives `Deploy`, lays the workload out, verifies every digest, runs the workload,
//!    streams its log, collects its outputs and signs the [`receipt`]
//!    ([`instance::serve`]).
//!
//! The protocol lives here rather than in `cella-libos` because the instance is the lower
//! of the two crates: the executor depends on this crate (its mock backend runs this
//! very code in-process), never the other way round.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod attest;
pub mod confine;
pub mod endpoint;
pub mod entry;
pub mod evidence;
pub mod gramine;
pub mod instance;
pub mod layout;
pub mod process;
pub mod protocol;
pub mod receipt;
pub mod runner;
pub mod task;

use std::path::PathBuf;

use cella_attest::EvidenceSource;

pub use attest::{Identity, PreloadConfig};
pub use endpoint::Endpoint;
pub use instance::{Served, serve};
pub use protocol::ErrorCode;
pub use runner::{Denials, ProcessRunner, Runner};

/// Why an instance's session ended without `Finished` or a cancel.
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    /// Creating the key, evidence or certificate failed.
    #[error("attested identity: {0}")]
    Identity(String),
    /// The instance's configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The executor's socket could not be reached.
    #[error("connecting to the executor: {0}")]
    Connect(String),
    /// The TLS handshake failed (either side's evidence refused, or the transport).
    #[error("TLS handshake with the executor: {0}")]
    Tls(String),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] protocol::FrameError),
    /// The instance gave up and told the executor why.
    #[error("gave up ({code:?}): {message}")]
    GaveUp {
        /// The code sent.
        code: ErrorCode,
        /// The message sent.
        message: String,
    },
    /// The executor gave up or went away.
    #[error("the executor ended the session: {0}")]
    ExecutorGaveUp(String),
}

/// Where and how an instance was launched.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executor's endpoint: a Unix socket, or a loopback TCP port.
    pub socket: Endpoint,
    /// The launch nonce, to be carried in the certificate's claims.
    pub nonce: Vec<u8>,
    /// An empty directory for the workload's files.
    pub work_dir: PathBuf,
}

/// Runs an instance's whole life: identity, attested connection, one session.
///
/// # Errors
///
/// [`PreloadError`] saying which step failed.
pub async fn run(
    launch: &Launch,
    config: &PreloadConfig,
    evidence: &dyn EvidenceSource,
    runner: &dyn Runner,
) -> Result<Served, PreloadError> {
    let identity = Identity::issue(evidence, &launch.nonce)?;
    let stream = attest::connect(&launch.socket, &identity, config).await?;
    instance::serve(stream, &identity, &launch.work_dir, runner).await
}
