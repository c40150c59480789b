//! Teaclave's status codes and messages for this API's refusals (its tables: the
//! authentication service answers 16 to everything; the frontend 16 for credentials and
//! 7 for its access control; the management errors 3, 7, 13 and 2).
//!
//! Teaclave's messages are terse (`failed to invoke task`); Cella keeps Teaclave's code
//! and message first, and appends the platform's reason after `: `, so a client that
//! matches on Teaclave's text still matches and a person sees what was wrong.

use cella_platform::PlatformError;
use cella_platform::error::NodeFailure;
use tonic::{Code, Status};

use crate::node::CallError;

/// Teaclave's answer to a failed login or credential check.
pub(crate) const AUTHENTICATION_FAILED: &str = "authentication failed";
/// The frontend's answer to a bad credential (Teaclave's spelling).
pub(crate) const INCORRECT_CREDENTIAL: &str = "incorrent credential";
/// Teaclave's access-control refusal.
pub(crate) const PERMISSION_DENIED: &str = "permission denied";

/// What a frontend call was doing, for Teaclave's messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    /// The message for a bad id or bad request (code 3): `invalid task id`, …
    pub(crate) invalid: &'static str,
    /// The message for a refused state change (code 2): `failed to invoke task`, …
    pub(crate) failed: &'static str,
}

impl Op {
    pub(crate) const FUNCTION: Op = Op {
        invalid: "invalid function id",
        failed: "service internal error",
    };
    pub(crate) const CREATE_TASK: Op = Op {
        invalid: "invalid task",
        failed: "service internal error",
    };
    pub(crate) const GET_TASK: Op = Op {
        invalid: "invalid task id",
        failed: "service internal error",
    };
    pub(crate) const ASSIGN: Op = Op {
        invalid: "invalid data id",
        failed: "failed to assign data to task",
    };
    pub(crate) const APPROVE: Op = Op {
        invalid: "invalid task id",
        failed: "failed to approve task",
    };
    pub(crate) const INVOKE: Op = Op {
        invalid: "invalid task id",
        failed: "failed to invoke task",
    };
    pub(crate) const CANCEL: Op = Op {
        invalid: "invalid task id",
        failed: "failed to cancel task, reason",
    };
    pub(crate) const FILE: Op = Op {
        invalid: "invalid data id",
        failed: "service internal error",
    };
}

fn with_reason(code: Code, head: &str, reason: &str) -> Status {
    Status::new(code, format!("{head}: {reason}"))
}

/// A node failure (or a node that cannot serve now), the same on both services, with
/// the reason the platform gives every frontend. A full disk is not one here: Teaclave
/// answers it as the refused operation (see [`failure`]).
fn common(e: &PlatformError) -> Option<Status> {
    match e.node_failure()? {
        NodeFailure::Unavailable(reason) => Some(Status::unavailable(reason)),
        NodeFailure::Internal(reason) => Some(with_reason(
            Code::Internal,
            "service internal error",
            &reason,
        )),
        NodeFailure::DiskFull => None,
    }
}

/// A frontend call's failure, as Teaclave's management service reports it.
pub(crate) fn frontend(op: Op, e: CallError) -> Status {
    let e = match e {
        CallError::Platform(e) => e,
        CallError::Worker(m) => return with_reason(Code::Internal, "service internal error", &m),
    };
    if let Some(s) = common(&e) {
        return s;
    }
    match &e {
        PlatformError::NoSession(m) => with_reason(Code::Unauthenticated, INCORRECT_CREDENTIAL, m),
        PlatformError::Refused(r) => {
            with_reason(Code::PermissionDenied, PERMISSION_DENIED, &r.to_string())
        }
        PlatformError::Missing(_)
        | PlatformError::BadValue(_)
        | PlatformError::Spec(_)
        | PlatformError::Task(cella_types::TaskError::NoSuchSlot { .. }) => {
            with_reason(Code::InvalidArgument, op.invalid, &e.to_string())
        }
        // A refused change of state, a name taken, a quota used or a full disk: Teaclave's
        // management service answers all of them with its "failed to …" and code 2.
        _ => with_reason(Code::Unknown, op.failed, &failure(&e)),
    }
}

/// The reason of a refusal that is not a node failure, as the client reads it.
fn failure(e: &PlatformError) -> String {
    match e.node_failure() {
        Some(NodeFailure::DiskFull) => "the node's disk is full; try again later".into(),
        _ => e.to_string(),
    }
}

/// An authentication-service call's failure: Teaclave answers 16 to everything, with
/// its messages for the cases it names.
pub(crate) fn auth(e: CallError) -> Status {
    let e = match e {
        CallError::Platform(e) => e,
        CallError::Worker(m) => return with_reason(Code::Internal, "service internal error", &m),
    };
    if let Some(s) = common(&e) {
        return s;
    }
    let head = match &e {
        PlatformError::NoSession(_) => return Status::unauthenticated(AUTHENTICATION_FAILED),
        PlatformError::Refused(_) => PERMISSION_DENIED,
        PlatformError::Taken(_) => "user id exist",
        PlatformError::Missing(_) | PlatformError::BadValue(_) => "invalid user id",
        _ => "service internal error",
    };
    with_reason(Code::Unauthenticated, head, &failure(&e))
}

/// A method this API does not serve yet, naming what is missing.
pub(crate) fn not_served(method: &str, missing: &str) -> Status {
    Status::unimplemented(format!(
        "{method} is not served by Cella's Teaclave API: {missing} (docs/teaclave.md)"
    ))
}

#[cfg(test)]
mod tests {
    use cella_platform::error::{Object, Refusal};
    use cella_types::{TaskError, TaskId, TaskStatus};

    use super::*;

    fn p(e: PlatformError) -> CallError {
        CallError::Platform(e)
    }

    #[test]
    fn teaclaves_codes_with_its_words_first_and_cellas_reason_after() {
        let task = TaskId::new();
        let s = frontend(
            Op::INVOKE,
            p(PlatformError::Task(TaskError::InvalidTransition {
                from: TaskStatus::Created,
                to: TaskStatus::Staged,
            })),
        );
        assert_eq!(s.code(), Code::Unknown);
        assert!(
            s.message().starts_with("failed to invoke task: "),
            "{}",
            s.message()
        );
        let s = frontend(Op::GET_TASK, p(PlatformError::Missing(Object::Task(task))));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            format!("invalid task id: task {task} not found")
        );
        let refusal = Refusal::NotCreator { task };
        let s = frontend(Op::APPROVE, p(PlatformError::Refused(refusal.clone())));
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), format!("permission denied: {refusal}"));
        let s = frontend(Op::ASSIGN, p(PlatformError::Busy("busy".into())));
        assert_eq!(s.code(), Code::Unavailable);
        let s = frontend(Op::ASSIGN, p(PlatformError::node("writing output")));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Internal, "service internal error: writing output")
        );
        // The authentication service answers 16 to everything but a busy or failed node.
        let s = auth(p(PlatformError::NoSession(
            "wrong user name or password".into(),
        )));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, AUTHENTICATION_FAILED)
        );
        let s = auth(p(PlatformError::Refused(refusal.clone())));
        assert_eq!(s.code(), Code::Unauthenticated);
        assert_eq!(s.message(), format!("permission denied: {refusal}"));
        let s = auth(p(PlatformError::Taken("user u exists".into())));
        assert_eq!(s.code(), Code::Unauthenticated);
        assert!(
            s.message().starts_with("user id exist: "),
            "{}",
            s.message()
        );
        let s = auth(p(PlatformError::node("store")));
        assert_eq!(s.code(), Code::Internal);
        assert!(not_served("X", "why").message().contains("X is not served"));
    }
}
