//! The platform's error: what went wrong, sorted by who can act on it.
//!
//! Each variant says whose problem it is (the caller's input, the caller's rights, the
//! object's state, the node), so a frontend maps it to a status code in one place.

use cella_types::{SpecError, TaskError};

/// An operation of the platform failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No valid session: bad, expired or revoked token, or wrong password.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this to this object.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No such object, or the caller may not know it exists.
    #[error("{0} not found")]
    NotFound(String),
    /// The request itself is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The object's state does not allow this now.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A name that is taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A quota or limit is used up.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The node cannot take this request now (busy, or its store cannot write); the
    /// same request may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node failed; the message says where, never what secret was involved.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of platform operations.
pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

impl From<TaskError> for PlatformError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NoSuchSlot { .. } => Self::InvalidArgument(e.to_string()),
            _ => Self::FailedPrecondition(e.to_string()),
        }
    }
}

impl From<SpecError> for PlatformError {
    fn from(e: SpecError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<cella_store::StoreError> for PlatformError {
    fn from(e: cella_store::StoreError) -> Self {
        tracing::error!(error = %cella_store::error_chain(&e), "metadata store failed");
        if e.is_out_of_space() {
            return Self::ResourceExhausted(
                "the node's disk is full: the metadata store cannot write; try again later".into(),
            );
        }
        if e.is_unavailable() {
            return Self::Unavailable(format!("{e}; try again later"));
        }
        Self::Internal(format!("metadata store: {e}"))
    }
}

impl From<cella_store::BlobError> for PlatformError {
    fn from(e: cella_store::BlobError) -> Self {
        let chain = cella_store::error_chain(&e);
        tracing::error!(error = %chain, "blob store failed");
        if e.is_unavailable() {
            // The object store is down or cut off: the same request may succeed later.
            return Self::Unavailable(format!("blob store: {chain}"));
        }
        Self::Internal(format!("blob store: {e}"))
    }
}

impl From<cella_types::ParseIdError> for PlatformError {
    fn from(e: cella_types::ParseIdError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<cella_types::user::ParseUserNameError> for PlatformError {
    fn from(e: cella_types::user::ParseUserNameError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<cella_types::digest::ParseDigestError> for PlatformError {
    fn from(e: cella_types::digest::ParseDigestError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_resource_exhausted_other_store_errors_internal() {
        let full = cella_store::StoreError::Open {
            path: "meta.redb".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert!(matches!(
            PlatformError::from(full),
            PlatformError::ResourceExhausted(m) if m.contains("disk is full")
        ));
        let denied = cella_store::StoreError::Open {
            path: "meta.redb".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        assert!(matches!(
            PlatformError::from(denied),
            PlatformError::Internal(_)
        ));
    }

    #[test]
    fn an_unreachable_database_is_unavailable() {
        let lost = cella_store::StoreError::Unavailable {
            store: "postgres://cella@db:5432/cella".into(),
            source: "connection refused".into(),
        };
        assert!(matches!(
            PlatformError::from(lost),
            PlatformError::Unavailable(m) if m.contains("postgres://cella@db:5432/cella")
        ));
    }
}
