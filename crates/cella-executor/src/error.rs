//! [`ExecutionError`]: why a run produced no outcome.
//!
//! Every variant but [`ExecutionError::Internal`] is the function's (or its task's) fault:
//! the task fails and its participants see the message. `Internal` is the node's fault:
//! the platform may retry the task elsewhere and should not show the details to users.

use std::time::Duration;

use crate::io::IoError;

/// Why an execution produced no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// The function itself reported failure, usually about its input or arguments.
    #[error("{message}")]
    Function {
        /// What went wrong, for the task's participants.
        message: String,
    },
    /// The function wrote to an undeclared output slot or over the output limit.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The payload names no builtin compiled into this node.
    #[error("unknown builtin {name:?}")]
    UnknownBuiltin {
        /// The name from the payload (lossily decoded if it was not UTF-8).
        name: String,
    },
    /// The function ran past the task's deadline and was abandoned.
    #[error("function ran past its deadline of {limit:?}")]
    DeadlineExceeded {
        /// The task's deadline.
        limit: Duration,
    },
    /// The node could not provide what the task needs (an instance of its runtime could
    /// not be started): the node's fault, not the function's. `summary` says what failed
    /// in words for the task's participants; `message` has the details for the node's
    /// operators (paths, causes) and goes to the node's log only.
    #[error("{summary}: {message}")]
    Unavailable {
        /// What failed, without the node's internals.
        summary: String,
        /// The full reason.
        message: String,
    },
    /// The executor or platform failed, not the function.
    #[error("internal executor error: {message}")]
    Internal {
        /// What went wrong, for the node's operators.
        message: String,
    },
}

impl ExecutionError {
    /// Shorthand for [`ExecutionError::Function`].
    pub fn function(message: impl Into<String>) -> Self {
        Self::Function {
            message: message.into(),
        }
    }

    /// Shorthand for [`ExecutionError::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }

    /// Shorthand for [`ExecutionError::Unavailable`].
    pub fn unavailable(summary: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unavailable {
            summary: summary.into(),
            message: message.into(),
        }
    }

    /// Whether the node, not the function, is at fault: [`ExecutionError::Internal`] and
    /// [`ExecutionError::Unavailable`].
    pub fn is_platform_fault(&self) -> bool {
        matches!(self, Self::Internal { .. } | Self::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fault_split() {
        let f = ExecutionError::function("bad input");
        assert_eq!(f.to_string(), "bad input");
        assert!(!f.is_platform_fault());
        let io = ExecutionError::from(IoError::OutputTooLarge {
            slot: "o".into(),
            size: 2,
            limit: 1,
        });
        assert!(io.to_string().starts_with("output slot \"o\""));
        assert!(!io.is_platform_fault());
        let d = ExecutionError::DeadlineExceeded {
            limit: Duration::from_millis(50),
        };
        assert_eq!(d.to_string(), "function ran past its deadline of 50ms");
        assert!(!d.is_platform_fault());
        let i = ExecutionError::internal("join failed");
        assert_eq!(i.to_string(), "internal executor error: join failed");
        assert!(i.is_platform_fault());
    }
}
