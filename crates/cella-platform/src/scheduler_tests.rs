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
