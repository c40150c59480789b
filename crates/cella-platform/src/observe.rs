//! Hooks for a node's metrics: the platform tells an [`Observer`] what happened (a task
//! ended, a store commit took so long), and knows nothing of how it is counted or
//! exported. Without an observer nothing is measured and nothing costs.

use std::sync::Arc;
use std::time::Duration;

use cella_types::{ExecutorKind, Function, Task, TaskStatus};

use crate::Platform;

/// A task reached a terminal status: what a metrics exporter counts and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnded {
    /// Finished, Failed or Canceled.
    pub status: TaskStatus,
    /// The executor of the task's function; `None` when the function is gone.
    pub executor: Option<ExecutorKind>,
    /// From the last time it was Staged (queued) to the last time it started Running;
    /// `None` when it never ran (canceled before a worker took it).
    pub queue_wait: Option<Duration>,
    /// From the last start to the end; `None` when it never ran.
    pub run: Option<Duration>,
    /// From creation to the end.
    pub end_to_end: Duration,
}

impl TaskEnded {
    /// What `task`, which has just reached a terminal status, spent where, from its
    /// history (the clock is the node's; a clock stepped backwards counts as zero).
    pub fn of(task: &Task, executor: Option<ExecutorKind>) -> Self {
        let at = |status: TaskStatus| {
            task.history()
                .iter()
                .rev()
                .find(|t| t.status == status)
                .map(|t| t.at_ms)
        };
        let created = task.history().first().map_or(0, |t| t.at_ms);
        let end = task.history().last().map_or(created, |t| t.at_ms);
        let between = |from: u64, to: u64| Duration::from_millis(to.saturating_sub(from));
        let started = at(TaskStatus::Running);
        Self {
            status: task.status(),
            executor,
            queue_wait: started
                .zip(at(TaskStatus::Staged))
                .map(|(run, staged)| between(staged, run)),
            run: started.map(|s| between(s, end)),
            end_to_end: between(created, end),
        }
    }
}

/// Receives the platform's events. Called on the path of the event (a worker recording a
/// result, a writer committing): an implementation only counts, it never blocks.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A task ended.
    fn task_ended(&self, ended: &TaskEnded);
    /// A metadata store commit (one batch) took `took`.
    fn store_commit(&self, took: Duration);
}

impl Platform {
    /// Sends the platform's events to `observer` from now on. One observer per platform:
    /// a second call is refused and returns `false`.
    pub fn observe(&self, observer: Arc<dyn Observer>) -> bool {
        let for_store = Arc::clone(&observer);
        if self.observer.set(observer).is_err() {
            return false;
        }
        self.store
            .on_commit(Box::new(move |took| for_store.store_commit(took)));
        true
    }

    /// Tells the observer, if any, that `task` reached a terminal status (finished,
    /// failed, given up after its retry, canceled). The function's executor is looked up
    /// only when there is an observer, outside the transaction that ended the task: a
    /// metric costs nothing without metrics, and never fails the change it counts.
    pub(crate) fn observe_ended(&self, task: &Task) {
        let Some(o) = self.observer.get() else {
            return;
        };
        let executor = self
            .store
            .read(|tx| tx.get::<Function>(&task.function_id().to_string()))
            .ok()
            .flatten()
            .map(|f| f.spec.executor);
        o.task_ended(&TaskEnded::of(task, executor));
    }
}
