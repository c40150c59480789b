//! The one place where platform errors become gRPC statuses. Errors are logged here,
//! once, at the boundary; internal details stay in the node's log.

use cella_platform::PlatformError;
use tonic::{Code, Status};

/// Maps a platform error to a status whose message says what was wrong.
pub(crate) fn to_status(e: PlatformError) -> Status {
    let code = match &e {
        PlatformError::Unauthenticated(_) => Code::Unauthenticated,
        PlatformError::PermissionDenied(_) => Code::PermissionDenied,
        PlatformError::NotFound(_) => Code::NotFound,
        PlatformError::InvalidArgument(_) => Code::InvalidArgument,
        PlatformError::FailedPrecondition(_) => Code::FailedPrecondition,
        PlatformError::AlreadyExists(_) => Code::AlreadyExists,
        PlatformError::ResourceExhausted(_) => Code::ResourceExhausted,
        PlatformError::Unavailable(_) => Code::Unavailable,
        PlatformError::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "request failed inside the node");
    } else {
        tracing::debug!(error = %e, "request refused");
    }
    Status::new(code, e.to_string())
}

/// A status for a malformed request that never reached the platform.
pub(crate) fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (
                PlatformError::Unauthenticated("x".into()),
                Code::Unauthenticated,
            ),
            (
                PlatformError::PermissionDenied("x".into()),
                Code::PermissionDenied,
            ),
            (PlatformError::NotFound("x".into()), Code::NotFound),
            (
                PlatformError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                PlatformError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                PlatformError::AlreadyExists("x".into()),
                Code::AlreadyExists,
            ),
            (
                PlatformError::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (PlatformError::Unavailable("x".into()), Code::Unavailable),
            (PlatformError::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let s = to_status(e);
            assert_eq!(s.code(), code);
            assert!(s.message().contains('x'));
        }
    }
}
