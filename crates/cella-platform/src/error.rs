//! The platform's error: what went wrong, in the domain's terms, with its cause.
//!
//! Each variant names a kind of failure (a policy refusal, a missing object, the task
//! state machine refusing a change, the metadata store failing…) and keeps the domain
//! error it wraps as its [`std::error::Error::source`], so the node's log can show the
//! whole cause chain (`cella_store::error_chain`). No variant is named after a wire code:
//! a frontend maps variants to its codes, and words its client messages, in one place
//! (`cella-server/src/status.rs` for gRPC). The `Display` text never holds a secret.

use std::fmt;

use cella_types::{FileId, FunctionId, Role, SpecError, TaskError, TaskId, UserName};

/// An object the platform looked for, by its typed id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A task.
    Task(TaskId),
    /// A function.
    Function(FunctionId),
    /// A file, as asked for by an id of either kind.
    File(FileId),
    /// A file named to fill a slot of that kind (`input file …`, `output file …`).
    SlotFile(FileId),
    /// A user account.
    User(UserName),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Task(id) => write!(f, "task {id}"),
            Self::Function(id) => write!(f, "function {id}"),
            Self::File(id) => write!(f, "file {id}"),
            Self::SlotFile(id @ FileId::Input(_)) => write!(f, "input file {id}"),
            Self::SlotFile(id @ FileId::Output(_)) => write!(f, "output file {id}"),
            Self::User(name) => write!(f, "user {name}"),
        }
    }
}

/// Why the node's policy refused a caller: the rule, and who and what it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller lacks the role an action needs.
    #[error("{action} needs the {role} role, which {user} lacks")]
    MissingRole {
        /// What was attempted.
        action: &'static str,
        /// The role it needs.
        role: Role,
        /// The caller.
        user: UserName,
    },
    /// A private function not shared with the caller.
    #[error("function {function} is not shared with {user}")]
    NotShared {
        /// The function.
        function: FunctionId,
        /// The caller.
        user: UserName,
    },
    /// Only a function's owner may do this.
    #[error("only the owner of function {function} ({owner}) may {action}; {user} is not")]
    NotFunctionOwner {
        /// The function.
        function: FunctionId,
        /// Its owner.
        owner: UserName,
        /// What was attempted.
        action: String,
        /// The caller.
        user: UserName,
    },
    /// Only a file's owner may use it.
    #[error("{user} does not own this file")]
    NotFileOwner {
        /// The caller.
        user: UserName,
    },
    /// Only a task's participants may do this.
    #[error("{user} is not a participant of {task} and may not {action} it")]
    NotParticipant {
        /// The caller.
        user: UserName,
        /// The task.
        task: TaskId,
        /// What was attempted.
        action: &'static str,
    },
    /// Only a slot's owners fill it.
    #[error("{user} does not own this slot")]
    NotSlotOwner {
        /// The caller.
        user: UserName,
    },
    /// A slot is filled only with the caller's own files.
    #[error("{user} may only assign files it owns")]
    ForeignFile {
        /// The caller.
        user: UserName,
    },
    /// Only a task's creator invokes it.
    #[error("only the creator of {task} may invoke it")]
    NotCreator {
        /// The task.
        task: TaskId,
    },
    /// This node reads and writes no `file://` URLs.
    #[error("file:// URLs are not enabled on this node (see --file-url-root)")]
    FileUrlsDisabled,
    /// A `file://` URL outside every allowed root.
    #[error("file URL {url:?} is outside the node's allowed file roots")]
    OutsideFileRoots {
        /// The URL's path, as given.
        url: String,
    },
    /// The caller's own password change named a wrong old password.
    #[error("the old password is wrong")]
    WrongOldPassword,
}

/// A cause of a node failure that is not one of the domain errors below.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An operation of the platform failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No valid session: a bad, expired or revoked token, or a wrong password.
    #[error("{0}")]
    NoSession(String),
    /// The node's policy refuses the caller this action on this object.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No such object, or the caller may not know it exists.
    #[error("{0} not found")]
    Missing(Object),
    /// A value of the request is wrong; the message names the value and its problem.
    #[error("{0}")]
    BadValue(String),
    /// A function spec that does not hold together.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The task's state machine refuses the change.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The object's state (other than a task's status) does not allow this now.
    #[error("{0}")]
    WrongState(String),
    /// A name or place that is taken.
    #[error("{0}")]
    Taken(String),
    /// A function has been invoked as many times as its quota allows.
    #[error("function {function} has used its quota of {quota} invocations")]
    QuotaUsed {
        /// The function.
        function: FunctionId,
        /// Its quota of invocations.
        quota: u64,
    },
    /// The node cannot take this request now; the same request may succeed later.
    #[error("{0}")]
    Busy(String),
    /// The metadata store failed (a full disk among other causes).
    #[error("metadata store")]
    Store(#[from] cella_store::StoreError),
    /// The blob store failed.
    #[error("blob store")]
    Blob(#[from] cella_store::BlobError),
    /// The node failed elsewhere: what it was doing, and why when a cause is known.
    #[error("{what}")]
    Node {
        /// What failed, naming the file or step, never a secret.
        what: String,
        /// The underlying error.
        #[source]
        source: Option<Cause>,
    },
}

/// Result of platform operations.
pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

impl PlatformError {
    /// A node failure with no underlying error.
    pub fn node(what: impl Into<String>) -> Self {
        Self::Node {
            what: what.into(),
            source: None,
        }
    }

    /// A node failure caused by `source`.
    pub fn node_because(what: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Node {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// How this error reaches a client when the node, not the request, is at fault:
    /// every frontend words its own answer from this, so that which failures may be
    /// retried, and what their reason says, is decided once. `None` for a refusal of the
    /// request.
    pub fn node_failure(&self) -> Option<NodeFailure> {
        Some(match self {
            Self::Busy(m) => NodeFailure::Unavailable(m.clone()),
            Self::Store(s) if s.is_out_of_space() => NodeFailure::DiskFull,
            Self::Store(s) if s.is_unavailable() => {
                NodeFailure::Unavailable(format!("{s}; try again later"))
            }
            Self::Blob(b) if b.is_unavailable() => NodeFailure::Unavailable(format!(
                "blob store: {}; try again later",
                cella_store::error_chain(b)
            )),
            Self::Store(s) => NodeFailure::Internal(format!("metadata store: {s}")),
            Self::Blob(b) => NodeFailure::Internal(format!("blob store: {b}")),
            Self::Node {
                what,
                source: Some(cause),
            } => NodeFailure::Internal(format!("{what}: {cause}")),
            Self::Node { what, source: None } => NodeFailure::Internal(what.clone()),
            _ => return None,
        })
    }
}

/// A failure of the node rather than of the request ([`PlatformError::node_failure`]),
/// with the reason a client may read: the failing part and its immediate cause, never
/// a secret or the store's internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFailure {
    /// The node cannot serve this now (busy, or a store it needs is unreachable); the same
    /// request may succeed later, and nothing was changed.
    Unavailable(String),
    /// The disk under the metadata store is full.
    DiskFull,
    /// The node failed.
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_store_password_stops_the_node_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::NodeConfig::new(dir.path().join("node"));
        // Never reached: the password is read before the server is dialled.
        config.store_url = Some("postgres://cella@127.0.0.1:1/cella".into());
        std::fs::create_dir_all(config.store_password_path()).unwrap();
        let e =
            crate::Platform::open(config.clone(), cella_executor::Executors::new()).unwrap_err();
        let chain = cella_store::error_chain(&e);
        assert!(matches!(e, PlatformError::Node { .. }), "{chain}");
        assert!(
            chain.contains(&format!(
                "reading {}",
                config.store_password_path().display()
            )),
            "{chain}"
        );
    }

    #[test]
    fn store_and_node_failures_keep_their_cause_for_the_log() {
        let full = cella_store::StoreError::Open {
            path: "meta.redb".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let e = PlatformError::from(full);
        assert!(matches!(&e, PlatformError::Store(s) if s.is_out_of_space()));
        let chain = cella_store::error_chain(&e);
        assert!(chain.starts_with("metadata store: "), "{chain}");
        assert!(chain.contains("meta.redb"), "{chain}");
        assert!(chain.contains("No space left on device"), "{chain}");
        let node =
            PlatformError::node_because("writing upload", std::io::Error::from_raw_os_error(5));
        let chain = cella_store::error_chain(&node);
        assert!(chain.starts_with("writing upload: "), "{chain}");
        assert!(chain.contains("Input/output error"), "{chain}");
    }

    #[test]
    fn missing_objects_name_kind_and_id() {
        let input = cella_types::InputFileId::new();
        let output = cella_types::OutputFileId::new();
        let e = PlatformError::Missing(Object::SlotFile(input.into()));
        assert_eq!(e.to_string(), format!("input file {input} not found"));
        let e = PlatformError::Missing(Object::SlotFile(output.into()));
        assert_eq!(e.to_string(), format!("output file {output} not found"));
        let e = PlatformError::Missing(Object::File(output.into()));
        assert_eq!(e.to_string(), format!("file {output} not found"));
    }
}
