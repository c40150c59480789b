//! The Python exception classes, and the one place a [`ClientError`] (or a local
//! failure of the SDK) becomes one.
//!
//! Every class derives from `cella.CellaError`. A refusal by the node is a
//! `cella.StatusError` subclass per gRPC code, carrying `code` (such as `"NOT_FOUND"`),
//! `op` (the RPC, such as `"GetTask"`) and `message` (the node's own words); trust
//! failures are `cella.AttestationError` and `cella.ConnectError`; local checks that
//! refuse (a digest that does not match, a sealed file that does not open) have classes
//! of their own so a caller can tell "the node said no" from "we said no".

use cella_client::{ClientError, Code};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{PyErr, create_exception};

create_exception!(
    cella,
    CellaError,
    PyException,
    "Base class of every Cella SDK error."
);
create_exception!(
    cella,
    ConnectError,
    CellaError,
    "The node could not be reached, or TLS with it failed."
);
create_exception!(
    cella,
    AttestationError,
    ConnectError,
    "The node's attestation evidence (or pinned certificate) was refused: nothing was sent."
);
create_exception!(
    cella,
    NotLoggedInError,
    CellaError,
    "An authenticated call without a session: call login first."
);
create_exception!(
    cella,
    InvalidInputError,
    CellaError,
    "Bad input from the caller, caught before anything was sent."
);
create_exception!(
    cella,
    ProtocolError,
    CellaError,
    "The node's answer broke the protocol (a missing or malformed field)."
);
create_exception!(
    cella,
    SealError,
    CellaError,
    "A sealed file could not be written or opened (wrong key, tampered or truncated)."
);
create_exception!(
    cella,
    DigestMismatchError,
    CellaError,
    "approve refused: the task's digest is not the one recomputed or reviewed locally."
);
create_exception!(
    cella,
    TaskFailedError,
    CellaError,
    "The task ended Failed or Canceled, so it has no results."
);
create_exception!(
    cella,
    ReceiptError,
    CellaError,
    "A task's receipt does not verify (evidence, key, signature) or does not match the task."
);
create_exception!(
    cella,
    StatusError,
    CellaError,
    "The node refused a call; `code`, `op` and `message` say how."
);
create_exception!(
    cella,
    NotFoundError,
    StatusError,
    "NOT_FOUND from the node."
);
create_exception!(
    cella,
    PermissionDeniedError,
    StatusError,
    "PERMISSION_DENIED from the node."
);
create_exception!(
    cella,
    UnauthenticatedError,
    StatusError,
    "UNAUTHENTICATED from the node (wrong password, expired or revoked session)."
);
create_exception!(
    cella,
    InvalidArgumentError,
    StatusError,
    "INVALID_ARGUMENT from the node."
);
create_exception!(
    cella,
    FailedPreconditionError,
    StatusError,
    "FAILED_PRECONDITION from the node (e.g. a task not in a state that allows the call)."
);
create_exception!(
    cella,
    AlreadyExistsError,
    StatusError,
    "ALREADY_EXISTS from the node."
);
create_exception!(
    cella,
    ResourceExhaustedError,
    StatusError,
    "RESOURCE_EXHAUSTED from the node (quota, size limit, full disk)."
);
create_exception!(
    cella,
    UnavailableError,
    StatusError,
    "UNAVAILABLE from the node (or the connection broke)."
);

create_exception!(
    cella,
    CancelledError,
    StatusError,
    "CANCELLED from the node (the call was canceled)."
);
create_exception!(cella, UnknownError, StatusError, "UNKNOWN from the node.");
create_exception!(
    cella,
    DeadlineExceededError,
    StatusError,
    "DEADLINE_EXCEEDED from the node (the call took too long)."
);
create_exception!(
    cella,
    AbortedError,
    StatusError,
    "ABORTED from the node (a conflict with a concurrent change; retry)."
);
create_exception!(
    cella,
    OutOfRangeError,
    StatusError,
    "OUT_OF_RANGE from the node."
);
create_exception!(
    cella,
    UnimplementedError,
    StatusError,
    "UNIMPLEMENTED from the node (it does not offer this call)."
);
create_exception!(
    cella,
    InternalError,
    StatusError,
    "INTERNAL from the node (its own fault, not the caller's)."
);
create_exception!(
    cella,
    DataLossError,
    StatusError,
    "DATA_LOSS from the node."
);

/// Registers every exception class on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CellaError", py.get_type::<CellaError>())?;
    m.add("ConnectError", py.get_type::<ConnectError>())?;
    m.add("AttestationError", py.get_type::<AttestationError>())?;
    m.add("NotLoggedInError", py.get_type::<NotLoggedInError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("SealError", py.get_type::<SealError>())?;
    m.add("DigestMismatchError", py.get_type::<DigestMismatchError>())?;
    m.add("TaskFailedError", py.get_type::<TaskFailedError>())?;
    m.add("ReceiptError", py.get_type::<ReceiptError>())?;
    m.add("StatusError", py.get_type::<StatusError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add(
        "PermissionDeniedError",
        py.get_type::<PermissionDeniedError>(),
    )?;
    m.add(
        "UnauthenticatedError",
        py.get_type::<UnauthenticatedError>(),
    )?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add(
        "FailedPreconditionError",
        py.get_type::<FailedPreconditionError>(),
    )?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add(
        "ResourceExhaustedError",
        py.get_type::<ResourceExhaustedError>(),
    )?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("UnknownError", py.get_type::<UnknownError>())?;
    m.add(
        "DeadlineExceededError",
        py.get_type::<DeadlineExceededError>(),
    )?;
    m.add("AbortedError", py.get_type::<AbortedError>())?;
    m.add("OutOfRangeError", py.get_type::<OutOfRangeError>())?;
    m.add("UnimplementedError", py.get_type::<UnimplementedError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("DataLossError", py.get_type::<DataLossError>())?;
    Ok(())
}

/// The exception for a node's refusal with `code`.
fn status_error(code: Code, text: String) -> PyErr {
    match code {
        Code::NotFound => NotFoundError::new_err(text),
        Code::PermissionDenied => PermissionDeniedError::new_err(text),
        Code::Unauthenticated => UnauthenticatedError::new_err(text),
        Code::InvalidArgument => InvalidArgumentError::new_err(text),
        Code::FailedPrecondition => FailedPreconditionError::new_err(text),
        Code::AlreadyExists => AlreadyExistsError::new_err(text),
        Code::ResourceExhausted => ResourceExhaustedError::new_err(text),
        Code::Unavailable => UnavailableError::new_err(text),
        Code::Cancelled => CancelledError::new_err(text),
        Code::Unknown => UnknownError::new_err(text),
        Code::DeadlineExceeded => DeadlineExceededError::new_err(text),
        Code::Aborted => AbortedError::new_err(text),
        Code::OutOfRange => OutOfRangeError::new_err(text),
        Code::Unimplemented => UnimplementedError::new_err(text),
        Code::Internal => InternalError::new_err(text),
        Code::DataLoss => DataLossError::new_err(text),
        // A refusal always carries an error code; OK here would be the node misbehaving.
        Code::Ok => StatusError::new_err(text),
    }
}

/// Turns a client error into its Python exception. The text is the client's own
/// message (it names the operation and, for a refusal, carries the node's message).
pub(crate) fn to_py(err: ClientError) -> PyErr {
    let text = err.to_string();
    match err {
        ClientError::Status { op, code, message } => {
            let exc = status_error(code, text);
            Python::attach(|py| {
                let value = exc.value(py);
                // Setting attributes on a fresh exception instance cannot fail short of
                // memory exhaustion; the exception is still raised without them then.
                value.setattr("code", cella_client::code_name(code)).ok();
                value.setattr("op", op).ok();
                value.setattr("message", message).ok();
            });
            exc
        }
        ClientError::AttestationRefused { .. } | ClientError::CertificateMismatch { .. } => {
            AttestationError::new_err(text)
        }
        ClientError::InvalidAddress { .. }
        | ClientError::InvalidCertificate { .. }
        | ClientError::InvalidInput(_) => InvalidInputError::new_err(text),
        ClientError::Tls { .. } | ClientError::Connect { .. } | ClientError::TlsConfig(_) => {
            ConnectError::new_err(text)
        }
        ClientError::NotLoggedIn => NotLoggedInError::new_err(text),
        ClientError::Protocol { .. } => ProtocolError::new_err(text),
        ClientError::Io { ref source, .. } => {
            let text = format!("{text}: {source}");
            pyo3::exceptions::PyOSError::new_err(text)
        }
    }
}

/// Renders an error with its chain of causes, `a: b: c`, as the Rust client does.
pub(crate) use cella_client::chain_message as chain;
