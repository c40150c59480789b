//! Teaclave's status codes and messages for this API's refusals (its tables: the
//! authentication service answers 16 to everything; the frontend 16 for credentials and
//! 7 for its access control; the management errors 3, 7, 13 and 2).
//!
//! Teaclave's messages are terse (`failed to invoke task`); Cella keeps Teaclave's code
//! and message first, and appends the platform's reason after `: `, so a client that
//! matches on Teaclave's text still matches and a person sees what was wrong.

use cella_platform::PlatformError;
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

/// A worker failure or a platform error the same on both services.
fn common(e: &PlatformError) -> Option<Status> {
    match e {
        PlatformError::Unavailable(m) => Some(Status::unavailable(m.clone())),
        PlatformError::Internal(m) => {
            Some(with_reason(Code::Internal, "service internal error", m))
        }
        _ => None,
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
        PlatformError::Unauthenticated(m) => {
            with_reason(Code::Unauthenticated, INCORRECT_CREDENTIAL, m)
        }
        PlatformError::PermissionDenied(m) => {
            with_reason(Code::PermissionDenied, PERMISSION_DENIED, m)
        }
        PlatformError::NotFound(_) | PlatformError::InvalidArgument(_) => {
            with_reason(Code::InvalidArgument, op.invalid, &e.to_string())
        }
        PlatformError::FailedPrecondition(_)
        | PlatformError::AlreadyExists(_)
        | PlatformError::ResourceExhausted(_) => {
            with_reason(Code::Unknown, op.failed, &e.to_string())
        }
        PlatformError::Unavailable(_) | PlatformError::Internal(_) => {
            with_reason(Code::Internal, "service internal error", &e.to_string())
        }
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
        PlatformError::Unauthenticated(_) => return Status::unauthenticated(AUTHENTICATION_FAILED),
        // Its text already starts with Teaclave's words.
        PlatformError::PermissionDenied(_) => return Status::unauthenticated(e.to_string()),
        PlatformError::AlreadyExists(_) => "user id exist",
        PlatformError::NotFound(_) | PlatformError::InvalidArgument(_) => "invalid user id",
        _ => "service internal error",
    };
    with_reason(Code::Unauthenticated, head, &e.to_string())
}

/// A method this API does not serve yet, naming what is missing.
pub(crate) fn not_served(method: &str, missing: &str) -> Status {
    Status::unimplemented(format!(
        "{method} is not served by Cella's Teaclave API: {missing} (docs/teaclave.md)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(e: PlatformError) -> CallError {
        CallError::Platform(e)
    }

    #[test]
    fn teaclaves_codes_with_its_words_first_and_cellas_reason_after() {
        let s = frontend(
            Op::INVOKE,
            p(PlatformError::FailedPrecondition("not approved".into())),
        );
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(
            s.message(),
            "failed to invoke task: failed precondition: not approved"
        );
        let s = frontend(Op::GET_TASK, p(PlatformError::NotFound("task t".into())));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid task id: task t not found");
        let s = frontend(
            Op::APPROVE,
            p(PlatformError::PermissionDenied("not a participant".into())),
        );
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "permission denied: not a participant");
        let s = frontend(Op::ASSIGN, p(PlatformError::Unavailable("busy".into())));
        assert_eq!(s.code(), Code::Unavailable);
        // The authentication service answers 16 to everything but a busy or failed node.
        let s = auth(p(PlatformError::Unauthenticated(
            "wrong user name or password".into(),
        )));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, AUTHENTICATION_FAILED)
        );
        let s = auth(p(PlatformError::PermissionDenied(
            "managing users needs admin".into(),
        )));
        assert_eq!(s.message(), "permission denied: managing users needs admin");
        let s = auth(p(PlatformError::AlreadyExists("user u".into())));
        assert_eq!(s.code(), Code::Unauthenticated);
        assert!(
            s.message().starts_with("user id exist: "),
            "{}",
            s.message()
        );
        let s = auth(p(PlatformError::Internal("store".into())));
        assert_eq!(s.code(), Code::Internal);
        assert!(not_served("X", "why").message().contains("X is not served"));
    }
}
