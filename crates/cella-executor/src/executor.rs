//! The [`Executor`] trait, its [`ExecutionOutcome`], and the [`Executors`] registry.
//!
//! Invariant: the registry holds at most one executor per [`ExecutorKind`], and an
//! executor is only ever registered under the kind it reports from [`Executor::kind`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cella_types::{ExecutorKind, Usage};

use crate::error::ExecutionError;
use crate::io::TaskIo;
use crate::task::StagedTask;

/// What a successful run produced besides its outputs (which stay in the [`TaskIo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionOutcome {
    /// The function's return value, plaintext.
    pub return_value: Vec<u8>,
    /// The function's log, bounded by [`crate::LogBuffer`].
    pub log: Vec<String>,
    /// Resources the run used.
    pub usage: Usage,
    /// The executor's receipt of what ran, in the executor family's own encoding.
    pub receipt: Vec<u8>,
}

/// One executor family: runs a staged task against its decrypted inputs.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// The family this executor runs.
    fn kind(&self) -> ExecutorKind;

    /// Checks a payload when its function is registered, so that a payload this
    /// executor could never run is refused then rather than at the first task.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with the payload.
    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        let _ = payload;
        Ok(())
    }

    /// Isolation settings weaker than the executor's default that the node's operator
    /// accepted explicitly (e.g. a sandbox with per-process limits only), each a sentence
    /// for `cella node health`. Empty by default.
    fn isolation_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The runtime images this executor offers, sorted by name, so that a function naming
    /// one it does not offer is refused at registration. Empty for executors that take
    /// no runtime image.
    fn offered_runtimes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs `task`, reading inputs from and writing outputs to `io`.
    ///
    /// # Errors
    ///
    /// An [`ExecutionError`]; after an error, the content of `io` is unspecified and its
    /// outputs must be discarded.
    async fn execute(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError>;
}

/// No executor of the requested kind is registered on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no {kind} executor on this node")]
pub struct NoExecutorError {
    /// The kind asked for.
    pub kind: ExecutorKind,
}

/// A missing executor is the node's configuration, not the function: `Internal`.
impl From<NoExecutorError> for ExecutionError {
    fn from(e: NoExecutorError) -> Self {
        ExecutionError::internal(e.to_string())
    }
}

/// The executors available on a node, by kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: BTreeMap<ExecutorKind, Arc<dyn Executor>>,
}

impl Executors {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `executor` under its [`Executor::kind`], replacing any executor already
    /// registered for that kind.
    pub fn register(&mut self, executor: Arc<dyn Executor>) {
        self.by_kind.insert(executor.kind(), executor);
    }

    /// The executor for `kind`.
    ///
    /// # Errors
    ///
    /// [`NoExecutorError`] when none is registered; it converts into
    /// [`ExecutionError::Internal`].
    pub fn get(&self, kind: ExecutorKind) -> Result<Arc<dyn Executor>, NoExecutorError> {
        self.by_kind
            .get(&kind)
            .cloned()
            .ok_or(NoExecutorError { kind })
    }

    /// Every registered executor's [`Executor::isolation_warnings`], each prefixed with
    /// its kind.
    pub fn isolation_warnings(&self) -> Vec<String> {
        self.by_kind
            .iter()
            .flat_map(|(kind, e)| {
                e.isolation_warnings()
                    .into_iter()
                    .map(move |w| format!("{kind}: {w}"))
            })
            .collect()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = ExecutorKind> + '_ {
        self.by_kind.keys().copied()
    }
}

impl fmt::Debug for Executors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.kinds()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::BuiltinExecutor;

    #[test]
    fn get_finds_registered_and_names_missing_kind() {
        let mut executors = Executors::new();
        executors.register(Arc::new(BuiltinExecutor::new()));
        let found = executors.get(ExecutorKind::Builtin).unwrap();
        assert_eq!(found.kind(), ExecutorKind::Builtin);
        assert_eq!(
            executors.kinds().collect::<Vec<_>>(),
            [ExecutorKind::Builtin]
        );

        let err = executors.get(ExecutorKind::Wasm).err().unwrap();
        assert_eq!(
            err,
            NoExecutorError {
                kind: ExecutorKind::Wasm
            }
        );
        assert_eq!(err.to_string(), "no wasm executor on this node");
        let as_exec = ExecutionError::from(err);
        assert!(as_exec.is_platform_fault());
        assert!(as_exec.to_string().contains("no wasm executor"));
        assert_eq!(format!("{executors:?}"), "{Builtin}");
    }
}
