//! The client's errors. Variants separate "could not reach or trust the node" (connect,
//! TLS, pinned certificate) from "the node refused" (a gRPC status) from "the caller gave
//! bad input" and local I/O, so callers can react to each.

use std::io;

/// What [`ClientError`] results carry.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node address is not `host:port` or `https://host:port`.
    #[error("invalid node address {addr:?}: {reason}")]
    InvalidAddress {
        /// The rejected address, cut to 200 characters.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The pinned certificate given to [`crate::Client::connect`] is not usable.
    #[error("invalid pinned certificate: {reason}")]
    InvalidCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS configuration could not be built (our configuration, not the peer's).
    #[error("cannot build the TLS client configuration")]
    TlsConfig(#[source] rustls::Error),
    /// The node presented a certificate other than the pinned one.
    #[error(
        "server certificate does not match the pinned certificate for {addr}: the node's \
         certificate changed or this is not the node you pinned (check the --cert file)"
    )]
    CertificateMismatch {
        /// The address connected to.
        addr: String,
    },
    /// The node's attestation evidence was refused under the client's policy.
    #[error("attestation of node {addr} refused: {reason}")]
    AttestationRefused {
        /// The address connected to.
        addr: String,
        /// Why, in full (from the attestation verifier).
        reason: String,
    },
    /// The TLS handshake with the node failed for another reason.
    #[error("TLS handshake with {addr} failed: {message}")]
    Tls {
        /// The address connected to.
        addr: String,
        /// What failed, with its causes.
        message: String,
    },
    /// The node could not be reached (TCP connect, timeout, HTTP/2 setup).
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The address connected to.
        addr: String,
        /// What failed, with its causes.
        message: String,
    },
    /// The node answered a call with an error status.
    #[error("{op} failed: {message} ({code:?})")]
    Status {
        /// The RPC that failed, such as `GetTask`.
        op: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The node's message.
        message: String,
    },
    /// An authenticated call was made without a session token: log in first.
    #[error("not logged in: call login or with_token first")]
    NotLoggedIn,
    /// Bad input from the caller, caught before anything was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The node's answer broke the protocol (a missing field, a stream that ended early).
    #[error("protocol error in {op}: {message}")]
    Protocol {
        /// The RPC concerned.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Local I/O failed while streaming a file.
    #[error("{what}")]
    Io {
        /// What was being done, such as `reading /tmp/x.sealed`.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// The gRPC status code, when the node refused the call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Builds a [`ClientError::Status`] from a status returned by call `op`.
    pub(crate) fn status(op: &'static str, status: tonic::Status) -> Self {
        ClientError::Status {
            op,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Renders an error and its chain of causes as one line, `a: b: c`, skipping causes
/// whose text is already contained in the previous one.
pub fn chain_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
