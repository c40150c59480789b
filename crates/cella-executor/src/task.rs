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

impl StagedTask {
    /// A run of a fresh task of a fresh function (new ids) named `function_name`:
    /// `payload` with its digest, no runtime image, single-use instances, no arguments.
    /// The platform fills every field from the task and its function; tests, benchmarks
    /// and other embedders of an executor start here and add what they need.
    pub fn new(
        function_name: impl Into<String>,
        executor: ExecutorKind,
        payload: impl Into<Arc<[u8]>>,
        deadline: Duration,
    ) -> Self {
        let payload = payload.into();
        Self {
            task_id: TaskId::new(),
            function_id: FunctionId::new(),
            function_name: function_name.into(),
            executor,
            payload_digest: Digest::of(&payload),
            payload,
            runtime: None,
            reuse: InstanceReuse::Never,
            arguments: BTreeMap::new(),
            deadline,
        }
    }

    /// The same, on LibOS runtime image `runtime`.
    #[must_use]
    pub fn with_runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = Some(runtime.into());
        self
    }

    /// The same, with these (resolved) arguments.
    #[must_use]
    pub fn with_arguments<'a>(
        mut self,
        arguments: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.arguments = arguments
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self
    }
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
        let task = StagedTask::new(
            "f",
            ExecutorKind::Builtin,
            &b"echo"[..],
            Duration::from_secs(1),
        )
        .with_arguments([("message", "secret-value")]);
        assert_eq!(task.payload_digest, Digest::of(b"echo"));
        assert_eq!(task.reuse, InstanceReuse::Never);
        let shown = format!("{task:?}");
        assert!(shown.contains("payload_len: 4"), "{shown}");
        assert!(shown.contains("\"message\""), "{shown}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }
}
