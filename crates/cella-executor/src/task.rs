//! [`StagedTask`]: everything an executor needs to know about one run of a task.
//!
//! The platform builds it after the task was approved and invoked; by then the arguments
//! are resolved (defaults merged in) and the payload is loaded and its digest known.
//! Inputs and outputs are not here: they travel in [`crate::TaskIo`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cella_types::{Digest, ExecutorKind, FunctionId, InstanceReuse, TaskId};

/// What an executor needs to know about a task.
#[derive(Clone)]
pub struct StagedTask {
    /// The task being run.
    pub task_id: TaskId,
    /// The function it runs.
    pub function_id: FunctionId,
    /// The function's human-readable name (not the builtin's name: that is the payload).
    pub function_name: String,
    /// The executor family that must run it.
    pub executor: ExecutorKind,
    /// The function's payload. Builtin: the builtin's name as UTF-8; wasm: module bytes;
    /// libos: the program.
    pub payload: Arc<[u8]>,
    /// SHA-256 of `payload`, as registered with the function.
    pub payload_digest: Digest,
    /// The runtime image name, for libos functions only.
    pub runtime: Option<String>,
    /// Whether a LibOS instance may serve other tasks of this function afterwards.
    pub reuse: InstanceReuse,
    /// Resolved arguments: the function's defaults merged with the task's values.
    pub arguments: BTreeMap<String, String>,
    /// Wall-clock budget for the run.
    pub deadline: Duration,
}

/// Shows the payload's length and the argument names only: payloads can be large and
/// argument values belong to the task's participants, not to the node's logs.
impl fmt::Debug for StagedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedTask")
            .field("task_id", &self.task_id)
            .field("function_id", &self.function_id)
            .field("function_name", &self.function_name)
            .field("executor", &self.executor)
            .field("payload_len", &self.payload.len())
            .field("payload_digest", &self.payload_digest)
            .field("runtime", &self.runtime)
            .field("reuse", &self.reuse)
            .field("arguments", &self.arguments.keys().collect::<Vec<_>>())
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_payload_and_argument_values() {
        let task = StagedTask {
            task_id: TaskId::new(),
            function_id: FunctionId::new(),
            function_name: "f".into(),
            executor: ExecutorKind::Builtin,
            payload: Arc::from(&b"echo"[..]),
            payload_digest: Digest::of(b"echo"),
            runtime: None,
            reuse: cella_types::InstanceReuse::Never,
            arguments: BTreeMap::from([("message".into(), "secret-value".into())]),
            deadline: Duration::from_secs(1),
        };
        let shown = format!("{task:?}");
        assert!(shown.contains("payload_len: 4"), "{shown}");
        assert!(shown.contains("\"message\""), "{shown}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }
}
