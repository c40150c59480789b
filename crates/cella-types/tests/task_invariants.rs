//! The task's invariants, from outside the crate: the only way to change a task is its
//! methods, and each refuses what would break an invariant, changing nothing. (That
//! its fields cannot be written from here is shown by the `compile_fail` examples on
//! `Task`.)

use std::collections::BTreeMap;

use cella_types::{
    Digest, FunctionId, InputFileId, InstanceReuse, Lease, NewTask, OutputFileId, Task, TaskError,
    TaskResult, TaskStatus, Usage, UserName,
};

fn u(s: &str) -> UserName {
    s.parse().unwrap()
}

/// A task with one input and one output slot, both owned by `a`.
fn task() -> Task {
    Task::new(
        NewTask {
            creator: u("a"),
            function_id: FunctionId::new(),
            function_owner: u("a"),
            function_public: true,
            arguments: BTreeMap::new(),
            inputs: BTreeMap::from([("in".into(), ([u("a")].into(), false))]),
            outputs: BTreeMap::from([("out".into(), [u("a")].into())]),
        },
        1,
    )
}

fn lease() -> Lease {
    Lease {
        worker: "w".into(),
        expires_ms: 100,
    }
}

fn result() -> TaskResult {
    TaskResult {
        return_value: b"ok".to_vec(),
        log: Vec::new(),
        outputs: BTreeMap::new(),
        usage: Usage::default(),
        receipt: Vec::new(),
    }
}

/// A task whose slots are filled and which `a` approved, with its digest.
fn approved() -> (Task, Digest) {
    let mut t = task();
    t.assign_input("in", InputFileId::new(), Digest::of(b"c"), 2)
        .unwrap();
    t.assign_output("out", OutputFileId::new(), 2).unwrap();
    let d = t.digest(&Digest::of(b"payload"), InstanceReuse::Never);
    t.approve(&u("a"), d, d, 3).unwrap();
    (t, d)
}

#[test]
fn slots_are_write_once() {
    let mut t = task();
    let first = InputFileId::new();
    t.assign_input("in", first, Digest::of(b"1"), 2).unwrap();
    let before = t.clone();
    let again = t.assign_input("in", InputFileId::new(), Digest::of(b"2"), 3);
    assert!(
        matches!(again, Err(TaskError::SlotAlreadyAssigned { .. })),
        "{again:?}"
    );
    assert_eq!(t, before, "a refused assignment changes nothing");
    assert_eq!(t.inputs()["in"].file, Some((first, Digest::of(b"1"))));

    let out = OutputFileId::new();
    t.assign_output("out", out, 3).unwrap();
    let before = t.clone();
    assert!(matches!(
        t.assign_output("out", OutputFileId::new(), 4),
        Err(TaskError::SlotAlreadyAssigned { .. })
    ));
    assert_eq!(t, before);
    assert_eq!(t.outputs()["out"].file, Some(out));

    // Once approved and past DataAssigned, no slot can be assigned at all.
    let (mut t, d) = approved();
    t.stage(&d, 4).unwrap();
    let before = t.clone();
    assert!(matches!(
        t.assign_input("in", InputFileId::new(), Digest::of(b"x"), 5),
        Err(TaskError::WrongStatus { .. })
    ));
    assert_eq!(t, before);
}

#[test]
fn approvals_record_only_the_current_digest() {
    let mut t = task();
    t.assign_input("in", InputFileId::new(), Digest::of(b"c"), 2)
        .unwrap();
    t.assign_output("out", OutputFileId::new(), 2).unwrap();
    let d = t.digest(&Digest::of(b"payload"), InstanceReuse::Never);
    let stale = Digest::of(b"something else");
    assert!(matches!(
        t.approve(&u("a"), stale, d, 3),
        Err(TaskError::StaleDigest { .. })
    ));
    assert!(t.approvals().is_empty(), "a stale approval is not recorded");
    t.approve(&u("a"), d, d, 3).unwrap();
    assert_eq!(t.approvals().get(&u("a")), Some(&d));
    assert_eq!(t.status(), TaskStatus::Approved);
}

#[test]
fn a_lease_exists_exactly_while_running() {
    let (mut t, d) = approved();
    // Not Staged yet: no worker may start it.
    assert!(matches!(
        t.start(lease(), 4),
        Err(TaskError::InvalidTransition { .. })
    ));
    assert!(t.lease().is_none());
    assert_eq!(t.attempts(), 0);
    t.stage(&d, 4).unwrap();
    assert!(t.lease().is_none());
    t.start(lease(), 5).unwrap();
    assert_eq!(t.lease(), Some(&lease()));
    assert!(t.is_held_by("w") && !t.is_held_by("other"));
    assert_eq!(t.attempts(), 1);
    // A second start while Running is refused and keeps the first lease.
    let other = Lease {
        worker: "other".into(),
        expires_ms: 1,
    };
    assert!(t.start(other, 6).is_err());
    assert_eq!(t.lease(), Some(&lease()));
    assert_eq!(t.attempts(), 1);

    // Every way out of Running drops the lease.
    let mut lost = t.clone();
    assert_eq!(lost.lease_lost("gone", 7), Ok(TaskStatus::Staged));
    assert!(lost.lease().is_none() && !lost.is_held_by("w"));
    let mut failed = t.clone();
    failed.fail("boom".into(), 7).unwrap();
    assert!(failed.lease().is_none());
    let mut canceled = t.clone();
    canceled.cancel(&u("a"), 7).unwrap();
    assert!(canceled.lease().is_none());
    t.finish(result(), 7).unwrap();
    assert!(t.lease().is_none() && !t.is_held_by("w"));
    // Lease recovery needs a Running task.
    assert!(matches!(
        t.lease_lost("late", 8),
        Err(TaskError::WrongStatus { .. })
    ));
}

#[test]
fn a_result_only_once_finished_and_never_replaced() {
    let (mut t, d) = approved();
    assert!(matches!(
        t.finish(result(), 4),
        Err(TaskError::InvalidTransition { .. })
    ));
    assert!(t.result().is_none());
    t.stage(&d, 4).unwrap();
    assert!(t.finish(result(), 5).is_err(), "Staged is not Running");
    assert!(t.result().is_none());
    t.start(lease(), 5).unwrap();
    t.finish(result(), 6).unwrap();
    assert_eq!(
        t.result().map(|r| r.return_value.as_slice()),
        Some(&b"ok"[..])
    );
    let mut second = result();
    second.return_value = b"forged".to_vec();
    let before = t.clone();
    assert!(t.finish(second, 7).is_err());
    assert!(t.fail("late".into(), 7).is_err());
    assert_eq!(t, before);
    let statuses: Vec<_> = t.history().iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Created,
            TaskStatus::DataAssigned,
            TaskStatus::Approved,
            TaskStatus::Staged,
            TaskStatus::Running,
            TaskStatus::Finished
        ]
    );
}
