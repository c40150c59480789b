//! Dequeue order of the fair share, through the store: which creator's task a free
//! worker leases next, without running anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use cella_types::{Digest, FunctionId, InstanceReuse, NewTask, Task, TaskStatus, UserName};

use super::enqueue;
use crate::{NodeConfig, Platform};

fn u(s: &str) -> UserName {
    s.parse().unwrap()
}

/// A node with `workers` workers (never started) and the default per-user cap.
fn platform(dir: &std::path::Path, workers: usize) -> Arc<Platform> {
    let mut config = NodeConfig::new(dir.join("data"));
    config.workers = workers;
    Platform::open(config, cella_executor::Executors::new()).unwrap()
}

/// Queues a Staged task of `creator` (a slotless function, approved by its creator).
fn queue_task(p: &Platform, creator: &str) {
    let mut task = Task::new(
        NewTask {
            creator: u(creator),
            function_id: FunctionId::new(),
            function_owner: u(creator),
            function_public: true,
            arguments: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
        },
        0,
    );
    let d = task.digest(&Digest::of(b"payload"), InstanceReuse::Never);
    task.approve(&u(creator), d, d, 1).unwrap();
    task.stage(&d, 2).unwrap();
    p.store
        .write(|tx| {
            tx.put(&task)?;
            enqueue(tx, &task)
        })
        .unwrap();
}

/// The creator of the task leased next, if any.
fn next(p: &Platform) -> Option<String> {
    p.lease_next("w").unwrap().map(|t| {
        assert_eq!(t.status(), TaskStatus::Running);
        t.creator().as_str().to_owned()
    })
}

#[test]
fn another_creators_task_is_leased_before_a_bursts_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Three workers: the default cap is two running tasks per creator.
    let p = platform(dir.path(), 3);
    for _ in 0..6 {
        queue_task(&p, "alice");
    }
    queue_task(&p, "bob");
    assert_eq!(next(&p).as_deref(), Some("alice"));
    // Bob runs nothing: his task, last in the queue, goes next.
    assert_eq!(next(&p).as_deref(), Some("bob"));
    assert_eq!(next(&p).as_deref(), Some("alice"));
    // Alice is at her cap of two: nothing is leased although tasks are queued.
    assert_eq!(next(&p), None);
    assert_eq!(p.health().unwrap().queued, 4);
    // One of hers ends: the next of hers may start.
    p.sched.ended(&u("alice"));
    assert_eq!(next(&p).as_deref(), Some("alice"));
    assert_eq!(next(&p), None);
}

#[test]
fn the_cap_is_configurable_and_canceled_entries_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(dir.path().join("data"));
    config.workers = 4;
    config.max_running_per_user = Some(1);
    let p = Platform::open(config, cella_executor::Executors::new()).unwrap();
    queue_task(&p, "alice");
    queue_task(&p, "alice");
    queue_task(&p, "carol");
    // Carol's task is canceled while queued: its entry is dropped, not leased.
    let carols = p
        .store
        .read(|tx| tx.list::<Task>())
        .unwrap()
        .into_iter()
        .find(|t| t.creator().as_str() == "carol")
        .unwrap();
    p.store
        .write(|tx| {
            let mut t = carols.clone();
            t.cancel(&u("carol"), 3)?;
            tx.put(&t)?;
            Ok::<_, crate::PlatformError>(())
        })
        .unwrap();
    assert_eq!(next(&p).as_deref(), Some("alice"));
    assert_eq!(
        next(&p),
        None,
        "alice is at her cap of 1; carol's task was canceled"
    );
    assert_eq!(p.health().unwrap().queued, 1);
    // The canceled task did not count against carol.
    assert_eq!(p.sched.fair().running(&u("carol")), 0);
}

/// Counts what the platform tells its observer.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<crate::observe::TaskEnded>>);

impl crate::observe::Observer for Recorder {
    fn task_ended(&self, ended: &crate::observe::TaskEnded) {
        self.0.lock().unwrap().push(ended.clone());
    }
    fn store_commit(&self, _took: std::time::Duration) {}
}

#[test]
fn a_task_given_up_after_its_retry_is_reported_as_ended_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 2);
    let seen = Arc::new(Recorder::default());
    assert!(p.observe(seen.clone()));
    assert!(
        !p.observe(Arc::new(Recorder::default())),
        "one observer only"
    );
    queue_task(&p, "alice");
    let t = p.lease_next("w").unwrap().unwrap();
    // First loss: queued again for the retry, not an end.
    p.lease_lost(t.id(), "w", "lost").unwrap();
    assert!(seen.0.lock().unwrap().is_empty());
    // Its worker is done with it (as `run_leased` says at the end of every run).
    p.sched.ended(&u("alice"));
    // A loss reported by a worker that no longer holds it changes nothing.
    let again = p.lease_next("w2").unwrap().unwrap();
    p.lease_lost(again.id(), "w", "stale").unwrap();
    assert!(seen.0.lock().unwrap().is_empty());
    // Second loss: Failed, and the observer hears of it once.
    p.lease_lost(again.id(), "w2", "lost again").unwrap();
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].status, TaskStatus::Failed);
    // The function was never registered: the end is still counted, without executor.
    assert_eq!(seen[0].executor, None);
    assert!(seen[0].run.is_some(), "{seen:?}");
}
