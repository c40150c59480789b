//! The one place where platform errors become gRPC statuses: each variant's code, and
//! the message the client reads. Errors are logged here, once, at the boundary, with
//! their whole cause chain; internal details stay in the node's log.

use cella_platform::PlatformError;
use cella_platform::error::NodeFailure;
use cella_store::error_chain;
use cella_types::TaskError;
use tonic::{Code, Status};

/// The status code of a platform error, `failure` its [`PlatformError::node_failure`].
fn code(e: &PlatformError, failure: Option<&NodeFailure>) -> Code {
    match failure {
        Some(NodeFailure::Unavailable(_)) => return Code::Unavailable,
        Some(NodeFailure::DiskFull) => return Code::ResourceExhausted,
        Some(NodeFailure::Internal(_)) => return Code::Internal,
        None => {}
    }
    match e {
        PlatformError::NoSession(_) => Code::Unauthenticated,
        PlatformError::Refused(_) => Code::PermissionDenied,
        PlatformError::Missing(_) => Code::NotFound,
        PlatformError::BadValue(_)
        | PlatformError::Spec(_)
        | PlatformError::Task(TaskError::NoSuchSlot { .. }) => Code::InvalidArgument,
        PlatformError::Task(_) | PlatformError::WrongState(_) => Code::FailedPrecondition,
        PlatformError::Taken(_) => Code::AlreadyExists,
        PlatformError::QuotaUsed { .. } => Code::ResourceExhausted,
        // Node failures, answered above.
        PlatformError::Busy(_)
        | PlatformError::Store(_)
        | PlatformError::Blob(_)
        | PlatformError::Node { .. } => Code::Internal,
    }
}

/// The client's message: the code in words, then what was wrong. A node failure says
/// where it happened and its immediate cause; a full disk says so and nothing of the
/// store's internals.
fn message(code: Code, e: &PlatformError, failure: Option<NodeFailure>) -> String {
    match failure {
        Some(NodeFailure::Unavailable(reason)) => format!("unavailable: {reason}"),
        Some(NodeFailure::DiskFull) => "resource exhausted: the node's disk is full: the \
             metadata store cannot write; try again later"
            .into(),
        Some(NodeFailure::Internal(reason)) => format!("internal error: {reason}"),
        None if matches!(e, PlatformError::Missing(_)) => e.to_string(),
        None => format!("{}: {e}", code_words(code)),
    }
}

/// A code's name as the words that start a client message.
fn code_words(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission denied",
        Code::InvalidArgument => "invalid argument",
        Code::FailedPrecondition => "failed precondition",
        Code::AlreadyExists => "already exists",
        Code::ResourceExhausted => "resource exhausted",
        Code::Unavailable => "unavailable",
        _ => "internal error",
    }
}

/// Maps a platform error to a status whose message says what was wrong, and logs it
/// with its causes (an error, when the node failed; a debug line for a refusal).
pub(crate) fn to_status(e: PlatformError) -> Status {
    let failure = e.node_failure();
    let code = code(&e, failure.as_ref());
    let node_failed = matches!(
        e,
        PlatformError::Store(_) | PlatformError::Blob(_) | PlatformError::Node { .. }
    );
    if node_failed {
        tracing::error!(error = %error_chain(&e), "request failed inside the node");
    } else {
        tracing::debug!(error = %error_chain(&e), "request refused");
    }
    Status::new(code, message(code, &e, failure))
}

/// A status for a malformed request that never reached the platform.
pub(crate) fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

#[cfg(test)]
mod tests {
    use cella_platform::error::{Object, Refusal};
    use cella_store::{BlobError, BlobName, StoreError};
    use cella_types::{FunctionId, InputFileId, SpecError, TaskId, TaskStatus};

    use super::*;

    fn io(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    fn store(errno: i32) -> StoreError {
        StoreError::Open {
            path: "meta.redb".into(),
            source: io(errno),
        }
    }

    /// Every variant (and each case of one that maps two ways), its code and the client's
    /// exact message.
    #[test]
    fn every_variant_has_its_code_and_message() {
        let task = TaskId::new();
        let input = InputFileId::new();
        let function = FunctionId::new();
        let cases: Vec<(PlatformError, Code, String)> = vec![
            (
                PlatformError::NoSession("session token expired".into()),
                Code::Unauthenticated,
                "unauthenticated: session token expired".into(),
            ),
            (
                PlatformError::Refused(Refusal::NotFileOwner {
                    user: "bob".parse().unwrap(),
                }),
                Code::PermissionDenied,
                "permission denied: bob does not own this file".into(),
            ),
            (
                PlatformError::Missing(Object::Task(task)),
                Code::NotFound,
                format!("task {task} not found"),
            ),
            (
                PlatformError::BadValue("a user needs at least one role".into()),
                Code::InvalidArgument,
                "invalid argument: a user needs at least one role".into(),
            ),
            (
                PlatformError::Spec(SpecError::UnknownExecutor("jvm".into())),
                Code::InvalidArgument,
                "invalid argument: unknown executor \"jvm\": expected builtin, wasm or libos"
                    .into(),
            ),
            (
                PlatformError::Task(TaskError::NoSuchSlot {
                    kind: "input",
                    slot: "x".into(),
                }),
                Code::InvalidArgument,
                "invalid argument: the function has no input slot named \"x\"".into(),
            ),
            (
                PlatformError::Task(TaskError::WrongStatus {
                    operation: "approve",
                    status: TaskStatus::Created,
                    expected: "DataAssigned",
                }),
                Code::FailedPrecondition,
                "failed precondition: task is Created; approve needs it to be DataAssigned".into(),
            ),
            (
                PlatformError::WrongState("function f is disabled".into()),
                Code::FailedPrecondition,
                "failed precondition: function f is disabled".into(),
            ),
            (
                PlatformError::Taken("user bob".into()),
                Code::AlreadyExists,
                "already exists: user bob".into(),
            ),
            (
                PlatformError::QuotaUsed { function, quota: 3 },
                Code::ResourceExhausted,
                format!(
                    "resource exhausted: function {function} has used its quota of 3 invocations"
                ),
            ),
            (
                PlatformError::Busy("too many logins".into()),
                Code::Unavailable,
                "unavailable: too many logins".into(),
            ),
            (
                PlatformError::Store(store(28)),
                Code::ResourceExhausted,
                "resource exhausted: the node's disk is full: the metadata store cannot \
                 write; try again later"
                    .into(),
            ),
            (
                PlatformError::Store(StoreError::Unavailable {
                    store: "postgres://cella@db:5432/cella".into(),
                    source: "connection refused".into(),
                }),
                Code::Unavailable,
                "unavailable: the metadata database postgres://cella@db:5432/cella is \
                 unavailable; try again later"
                    .into(),
            ),
            (
                PlatformError::Blob(BlobError::S3Interrupted {
                    name: BlobName::input(input),
                }),
                Code::Unavailable,
                format!(
                    "unavailable: blob store: the object store request about blob {} was \
                     interrupted; try again later",
                    BlobName::input(input)
                ),
            ),
            (
                PlatformError::Store(store(13)),
                Code::Internal,
                format!("internal error: metadata store: {}", store(13)),
            ),
            (
                PlatformError::Blob(BlobError::NotFound {
                    name: BlobName::input(input),
                }),
                Code::Internal,
                format!(
                    "internal error: blob store: blob {} not found",
                    BlobName::input(input)
                ),
            ),
            (
                PlatformError::node("the audit chain's sequence number is exhausted"),
                Code::Internal,
                "internal error: the audit chain's sequence number is exhausted".into(),
            ),
            (
                PlatformError::node_because("writing upload", io(5)),
                Code::Internal,
                format!("internal error: writing upload: {}", io(5)),
            ),
        ];
        for (e, want_code, want_message) in cases {
            let s = to_status(e);
            assert_eq!(s.code(), want_code, "{}", s.message());
            assert_eq!(s.message(), want_message);
        }
    }

    /// What the node logs of a store failure carries the underlying cause, which the
    /// client's message leaves out.
    #[test]
    fn a_store_failure_logs_its_underlying_cause() {
        let e = PlatformError::from(store(28));
        let logged = error_chain(&e);
        assert!(logged.contains("meta.redb"), "{logged}");
        assert!(logged.contains("No space left on device"), "{logged}");
        let s = to_status(e);
        assert!(!s.message().contains("meta.redb"), "{}", s.message());
    }
}
