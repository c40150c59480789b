//! Tasks and their state machine.
//!
//! Every change of a task's status goes through [`Task`]'s methods, which check the
//! transition against [`TaskStatus::can_become`]: the one place that says which edges
//! exist. Callers persist the task after a successful call and before acknowledging.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    Digest, FunctionId, Hasher, InputFileId, InstanceReuse, OutputFileId, TaskId, UserName,
};

/// How many times a task may be leased: the first run and one retry after a lost lease.
pub const MAX_ATTEMPTS: u32 = 2;
/// Longest failure reason kept on a task, in bytes; longer ones are cut.
pub const MAX_REASON_LEN: usize = 4096;

/// A task's status, in Teaclave's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Created; waiting for its slots to be filled.
    Created,
    /// Every required slot holds a file; waiting for approvals.
    DataAssigned,
    /// Every participant approved the current task digest.
    Approved,
    /// Invoked; queued for a worker.
    Staged,
    /// Leased by a worker and executing.
    Running,
    /// The function succeeded; outputs are written.
    Finished,
    /// The function or the platform failed; the reason says which.
    Failed,
    /// Canceled by a participant.
    Canceled,
}

impl TaskStatus {
    /// Whether no transition leaves this status.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Canceled)
    }

    /// The transition table: whether a task in `self` may move to `to`.
    pub const fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        match (self, to) {
            (Created, DataAssigned) | (DataAssigned, Approved) | (Approved, Staged) => true,
            (Staged, Running) | (Running, Finished) => true,
            // A lost lease puts the task back in the queue for its retry.
            (Running, Staged) => true,
            (from, Failed | Canceled) => !from.is_terminal(),
            _ => false,
        }
    }

    /// The status's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::DataAssigned => "DataAssigned",
            Self::Approved => "Approved",
            Self::Staged => "Staged",
            Self::Running => "Running",
            Self::Finished => "Finished",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An input slot of a task: who owns it and which file fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSlot {
    /// The users who may fill the slot (and so must approve the task).
    pub owners: BTreeSet<UserName>,
    /// Whether the function lets the slot stay empty.
    pub optional: bool,
    /// The assigned file and its ciphertext digest, once filled.
    pub file: Option<(InputFileId, Digest)>,
}

/// An output slot of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSlot {
    /// The users who may fill the slot and receive the output.
    pub owners: BTreeSet<UserName>,
    /// The assigned output file, once filled.
    pub file: Option<OutputFileId>,
}

/// A worker's hold on a running task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker's name.
    pub worker: String,
    /// When the lease runs out unless renewed, milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Resources a task used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock run time of the executor, in microseconds.
    pub wall_us: u64,
    /// Bytes of input the function read.
    pub input_bytes: u64,
    /// Bytes of output the function wrote (plaintext).
    pub output_bytes: u64,
}

/// What a finished task produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The function's return value.
    pub return_value: Vec<u8>,
    /// The function's log, bounded by the executor.
    pub log: Vec<String>,
    /// Ciphertext digest of each output slot's file.
    pub outputs: BTreeMap<String, Digest>,
    /// Resources used.
    pub usage: Usage,
    /// The executor's receipt of what ran, in its own encoding.
    pub receipt: Vec<u8>,
}

/// One status change, for the task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The new status.
    pub status: TaskStatus,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A task: a function bound to arguments and to the files of its owners.
///
/// Every field is private: what a task holds changes only through its methods, which
/// keep its invariants. Slots are write-once; an approval names the digest it approved;
/// a lease exists exactly while the task is Running; a result exists only once it is
/// Finished; every status change is in the history. Code outside this crate reads the
/// fields through the accessors and cannot write them:
///
/// ```compile_fail
/// # fn forge(task: &mut cella_types::Task) {
/// task.lease = None; // a worker's lease is not the caller's to drop
/// # }
/// ```
///
/// ```compile_fail
/// # fn forge(task: &mut cella_types::Task, d: cella_types::Digest, u: cella_types::UserName) {
/// task.approvals.insert(u, d); // approvals go through `Task::approve`
/// # }
/// ```
///
/// ```compile_fail
/// # fn forge(task: &mut cella_types::Task, r: cella_types::TaskResult) {
/// task.result = Some(r); // a result goes through `Task::finish`
/// # }
/// ```
///
/// ```compile_fail
/// # fn forge(task: &mut cella_types::Task, f: cella_types::OutputFileId) {
/// task.outputs.get_mut("out").unwrap().file = Some(f); // slots go through `assign_output`
/// # }
/// ```
///
/// ```compile_fail
/// # fn forge(task: &mut cella_types::Task) {
/// task.attempts = 0; // the retry budget is counted by `Task::start`
/// # }
/// ```
///
/// The same reads through the accessors compile:
///
/// ```
/// # fn read(task: &cella_types::Task) {
/// let _ = (task.lease(), task.approvals(), task.result(), task.attempts());
/// let _ = task.outputs().get("out").and_then(|s| s.file);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id.
    id: TaskId,
    /// Who created it; only the creator invokes.
    creator: UserName,
    /// The function it runs.
    function_id: FunctionId,
    /// The function's owner.
    function_owner: UserName,
    /// Resolved arguments (defaults merged in).
    arguments: BTreeMap<String, String>,
    /// Input slots by name.
    inputs: BTreeMap<String, InputSlot>,
    /// Output slots by name.
    outputs: BTreeMap<String, OutputSlot>,
    /// Everyone whose approval is required.
    participants: BTreeSet<UserName>,
    /// Each approver and the task digest they approved.
    approvals: BTreeMap<UserName, Digest>,
    status: TaskStatus,
    /// How many times a worker has leased it.
    attempts: u32,
    /// The current worker lease, while Running.
    lease: Option<Lease>,
    /// The result, once Finished.
    result: Option<TaskResult>,
    /// Why it failed or who canceled it.
    reason: Option<String>,
    /// Every status it has had, oldest first.
    history: Vec<Transition>,
}

/// A task operation that the task's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The status table has no such edge.
    #[error("task is {from}; it cannot become {to}")]
    InvalidTransition {
        /// Current status.
        from: TaskStatus,
        /// Requested status.
        to: TaskStatus,
    },
    /// The operation needs one of the listed statuses.
    #[error("task is {status}; {operation} needs it to be {expected}")]
    WrongStatus {
        /// What was attempted.
        operation: &'static str,
        /// Current status.
        status: TaskStatus,
        /// The statuses that would have allowed it.
        expected: &'static str,
    },
    /// No slot of that name.
    #[error("the function has no {kind} slot named {slot:?}")]
    NoSuchSlot {
        /// `input` or `output`.
        kind: &'static str,
        /// The requested slot.
        slot: String,
    },
    /// Slots are write-once.
    #[error("{kind} slot {slot:?} is already assigned")]
    SlotAlreadyAssigned {
        /// `input` or `output`.
        kind: &'static str,
        /// The slot.
        slot: String,
    },
    /// The approval names a digest other than the task's current one.
    #[error("stale approval: approved digest {given} but the task digest is now {current}")]
    StaleDigest {
        /// The digest the approver sent.
        given: Digest,
        /// The current digest.
        current: Digest,
    },
    /// Approval before every slot is filled: the digest to approve does not exist yet.
    #[error(
        "approval needs every slot assigned first; still to assign: {}",
        join_slots(.unassigned)
    )]
    SlotsUnassigned {
        /// The slots still empty, with who may fill each.
        unassigned: Vec<UnassignedSlot>,
    },
    /// Invoke before every participant approved the current digest.
    #[error("not approved by every participant for the current digest; missing: {}", join(.missing))]
    NotApproved {
        /// Participants whose approval is missing or stale.
        missing: Vec<UserName>,
    },
}

/// A slot that must still be filled before the task can be approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnassignedSlot {
    /// `input` or `output`.
    pub kind: &'static str,
    /// The slot's name.
    pub slot: String,
    /// Who may fill it (any one of them).
    pub owners: Vec<UserName>,
}

impl fmt::Display for UnassignedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} slot {:?} (by ", self.kind, self.slot)?;
        let owners = self.owners.iter().map(UserName::as_str);
        f.write_str(&owners.collect::<Vec<_>>().join(" or "))?;
        f.write_str(")")
    }
}

fn join_slots(slots: &[UnassignedSlot]) -> String {
    slots
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn join(users: &[UserName]) -> String {
    users
        .iter()
        .map(UserName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts `value` into a slot that must exist (`target` is `None` when it does not) and be
/// empty: slots are write-once.
fn fill<T>(
    target: Option<&mut Option<T>>,
    kind: &'static str,
    slot: &str,
    value: T,
) -> Result<(), TaskError> {
    let target = target.ok_or_else(|| TaskError::NoSuchSlot {
        kind,
        slot: slot.to_owned(),
    })?;
    if target.is_some() {
        return Err(TaskError::SlotAlreadyAssigned {
            kind,
            slot: slot.to_owned(),
        });
    }
    *target = Some(value);
    Ok(())
}

fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// The fields a new task is built from; see [`Task::new`].
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The creator.
    pub creator: UserName,
    /// The function's id.
    pub function_id: FunctionId,
    /// The function's owner.
    pub function_owner: UserName,
    /// Whether the function is public (if not, its owner must approve too).
    pub function_public: bool,
    /// Resolved arguments.
    pub arguments: BTreeMap<String, String>,
    /// Input slots, by name: owners and whether optional.
    pub inputs: BTreeMap<String, (BTreeSet<UserName>, bool)>,
    /// Output slots, by name: owners.
    pub outputs: BTreeMap<String, BTreeSet<UserName>>,
}

impl Task {
    /// A task in status Created. Participants are the creator, every slot owner, and the
    /// function owner when the function is not public.
    pub fn new(new: NewTask, now_ms: u64) -> Self {
        let mut participants: BTreeSet<UserName> = [new.creator.clone()].into();
        if !new.function_public {
            participants.insert(new.function_owner.clone());
        }
        for (owners, _) in new.inputs.values() {
            participants.extend(owners.iter().cloned());
        }
        for owners in new.outputs.values() {
            participants.extend(owners.iter().cloned());
        }
        let mut task = Self {
            id: TaskId::new(),
            creator: new.creator,
            function_id: new.function_id,
            function_owner: new.function_owner,
            arguments: new.arguments,
            inputs: new
                .inputs
                .into_iter()
                .map(|(k, (owners, optional))| {
                    (
                        k,
                        InputSlot {
                            owners,
                            optional,
                            file: None,
                        },
                    )
                })
                .collect(),
            outputs: new
                .outputs
                .into_iter()
                .map(|(k, owners)| (k, OutputSlot { owners, file: None }))
                .collect(),
            participants,
            approvals: BTreeMap::new(),
            status: TaskStatus::Created,
            attempts: 0,
            lease: None,
            result: None,
            reason: None,
            history: vec![Transition {
                status: TaskStatus::Created,
                at_ms: now_ms,
            }],
        };
        // A function with no required slots is ready for approval at once.
        task.advance_if_data_complete(now_ms);
        task
    }

    /// The current status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Who created it; only the creator invokes.
    pub fn creator(&self) -> &UserName {
        &self.creator
    }

    /// The function it runs.
    pub fn function_id(&self) -> FunctionId {
        self.function_id
    }

    /// The function's owner.
    pub fn function_owner(&self) -> &UserName {
        &self.function_owner
    }

    /// Resolved arguments (defaults merged in).
    pub fn arguments(&self) -> &BTreeMap<String, String> {
        &self.arguments
    }

    /// Input slots by name, with the file assigned to each so far.
    pub fn inputs(&self) -> &BTreeMap<String, InputSlot> {
        &self.inputs
    }

    /// Output slots by name, with the file assigned to each so far.
    pub fn outputs(&self) -> &BTreeMap<String, OutputSlot> {
        &self.outputs
    }

    /// Everyone whose approval is required.
    pub fn participants(&self) -> &BTreeSet<UserName> {
        &self.participants
    }

    /// Each approver and the task digest they approved (which may no longer be the
    /// current one: see [`Task::missing_approvals`]).
    pub fn approvals(&self) -> &BTreeMap<UserName, Digest> {
        &self.approvals
    }

    /// How many times a worker has leased it.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The current worker lease: `Some` exactly while Running.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Whether `worker` holds the task now: it is Running under that worker's lease.
    /// A worker records an outcome only while this holds.
    pub fn is_held_by(&self, worker: &str) -> bool {
        self.status == TaskStatus::Running
            && self.lease.as_ref().is_some_and(|l| l.worker == worker)
    }

    /// The result: `Some` only once Finished.
    pub fn result(&self) -> Option<&TaskResult> {
        self.result.as_ref()
    }

    /// Why it failed or who canceled it.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Every status it has had, oldest first.
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    fn set_status(&mut self, to: TaskStatus, now_ms: u64) -> Result<(), TaskError> {
        if !self.status.can_become(to) {
            return Err(TaskError::InvalidTransition {
                from: self.status,
                to,
            });
        }
        self.status = to;
        self.history.push(Transition {
            status: to,
            at_ms: now_ms,
        });
        Ok(())
    }

    fn require(
        &self,
        operation: &'static str,
        allowed: &[TaskStatus],
        expected: &'static str,
    ) -> Result<(), TaskError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(TaskError::WrongStatus {
                operation,
                status: self.status,
                expected,
            })
        }
    }

    /// The slots that must still be filled before the task can be approved, inputs
    /// first, each with the users who may fill it. Optional inputs are not listed.
    pub fn unassigned_slots(&self) -> Vec<UnassignedSlot> {
        let inputs = self
            .inputs
            .iter()
            .filter(|(_, s)| !s.optional && s.file.is_none())
            .map(|(name, s)| ("input", name, &s.owners));
        let outputs = self
            .outputs
            .iter()
            .filter(|(_, s)| s.file.is_none())
            .map(|(name, s)| ("output", name, &s.owners));
        inputs
            .chain(outputs)
            .map(|(kind, slot, owners)| UnassignedSlot {
                kind,
                slot: slot.clone(),
                owners: owners.iter().cloned().collect(),
            })
            .collect()
    }

    fn data_complete(&self) -> bool {
        self.inputs.values().all(|s| s.optional || s.file.is_some())
            && self.outputs.values().all(|s| s.file.is_some())
    }

    fn advance_if_data_complete(&mut self, now_ms: u64) {
        if self.status == TaskStatus::Created && self.data_complete() {
            self.status = TaskStatus::DataAssigned;
            self.history.push(Transition {
                status: TaskStatus::DataAssigned,
                at_ms: now_ms,
            });
        }
    }

    /// Fills an input slot (write-once). Allowed while Created or DataAssigned.
    ///
    /// # Errors
    ///
    /// [`TaskError::WrongStatus`], [`TaskError::NoSuchSlot`], [`TaskError::SlotAlreadyAssigned`].
    pub fn assign_input(
        &mut self,
        slot: &str,
        file: InputFileId,
        digest: Digest,
        now_ms: u64,
    ) -> Result<(), TaskError> {
        self.require_assignable()?;
        let target = self.inputs.get_mut(slot).map(|s| &mut s.file);
        fill(target, "input", slot, (file, digest))?;
        self.advance_if_data_complete(now_ms);
        Ok(())
    }

    /// Fills an output slot (write-once). Allowed while Created or DataAssigned.
    ///
    /// # Errors
    ///
    /// As [`Task::assign_input`].
    pub fn assign_output(
        &mut self,
        slot: &str,
        file: OutputFileId,
        now_ms: u64,
    ) -> Result<(), TaskError> {
        self.require_assignable()?;
        let target = self.outputs.get_mut(slot).map(|s| &mut s.file);
        fill(target, "output", slot, file)?;
        self.advance_if_data_complete(now_ms);
        Ok(())
    }

    fn require_assignable(&self) -> Result<(), TaskError> {
        self.require(
            "assigning data",
            &[TaskStatus::Created, TaskStatus::DataAssigned],
            "Created or DataAssigned",
        )
    }

    /// The task digest: SHA-256 over the canonical encoding of everything an approver
    /// approves (`docs/formats/task-digest.md`). `payload_digest` and `reuse` are the
    /// function's current ones, so changing either changes the digest.
    pub fn digest(&self, payload_digest: &Digest, reuse: InstanceReuse) -> Digest {
        TaskDigest {
            function_id: self.function_id,
            payload_digest: *payload_digest,
            reuse,
            arguments: &self.arguments,
            inputs: &self.inputs,
            outputs: &self.outputs,
        }
        .compute()
    }

    /// Participants whose approval is missing or names another digest than `current`.
    pub fn missing_approvals(&self, current: &Digest) -> Vec<UserName> {
        self.participants
            .iter()
            .filter(|u| self.approvals.get(*u) != Some(current))
            .cloned()
            .collect()
    }

    /// Records `user`'s approval of `given`, which must equal the `current` digest. When
    /// every participant has approved `current`, the task becomes Approved.
    ///
    /// # Errors
    ///
    /// [`TaskError::SlotsUnassigned`] while slots are still empty (Created), naming them;
    /// [`TaskError::WrongStatus`] unless DataAssigned or Approved;
    /// [`TaskError::StaleDigest`] when `given != current`.
    pub fn approve(
        &mut self,
        user: &UserName,
        given: Digest,
        current: Digest,
        now_ms: u64,
    ) -> Result<(), TaskError> {
        if self.status == TaskStatus::Created {
            return Err(TaskError::SlotsUnassigned {
                unassigned: self.unassigned_slots(),
            });
        }
        self.require(
            "approval",
            &[TaskStatus::DataAssigned, TaskStatus::Approved],
            "DataAssigned or Approved",
        )?;
        if given != current {
            return Err(TaskError::StaleDigest { given, current });
        }
        self.approvals.insert(user.clone(), given);
        if self.status == TaskStatus::DataAssigned && self.missing_approvals(&current).is_empty() {
            self.set_status(TaskStatus::Approved, now_ms)?;
        }
        Ok(())
    }

    /// Queues the task for execution, re-checking every approval against `current`.
    ///
    /// # Errors
    ///
    /// [`TaskError::WrongStatus`] unless Approved; [`TaskError::NotApproved`] when an
    /// approval is missing or stale (for example the function's payload changed).
    pub fn stage(&mut self, current: &Digest, now_ms: u64) -> Result<(), TaskError> {
        if self.status == TaskStatus::DataAssigned {
            return Err(TaskError::NotApproved {
                missing: self.missing_approvals(current),
            });
        }
        self.require("invoke", &[TaskStatus::Approved], "Approved")?;
        let missing = self.missing_approvals(current);
        if !missing.is_empty() {
            return Err(TaskError::NotApproved { missing });
        }
        self.set_status(TaskStatus::Staged, now_ms)
    }

    /// A worker takes the task: Staged → Running, one more attempt.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidTransition`] unless Staged.
    pub fn start(&mut self, lease: Lease, now_ms: u64) -> Result<(), TaskError> {
        self.set_status(TaskStatus::Running, now_ms)?;
        self.attempts += 1;
        self.lease = Some(lease);
        Ok(())
    }

    /// The worker holding the task was lost. The task goes back to the queue if it has an
    /// attempt left, else it fails with `reason`. Returns the new status.
    ///
    /// # Errors
    ///
    /// [`TaskError::WrongStatus`] unless Running.
    pub fn lease_lost(&mut self, reason: &str, now_ms: u64) -> Result<TaskStatus, TaskError> {
        self.require("lease recovery", &[TaskStatus::Running], "Running")?;
        self.lease = None;
        if self.attempts < MAX_ATTEMPTS {
            self.set_status(TaskStatus::Staged, now_ms)?;
        } else {
            self.fail(
                format!("{reason}; gave up after {} attempts", self.attempts),
                now_ms,
            )?;
        }
        Ok(self.status)
    }

    /// Running → Finished with `result`.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidTransition`] unless Running.
    pub fn finish(&mut self, result: TaskResult, now_ms: u64) -> Result<(), TaskError> {
        self.set_status(TaskStatus::Finished, now_ms)?;
        self.lease = None;
        self.result = Some(result);
        Ok(())
    }

    /// Any non-terminal status → Failed with `reason`.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidTransition`] when already terminal.
    pub fn fail(&mut self, reason: String, now_ms: u64) -> Result<(), TaskError> {
        self.set_status(TaskStatus::Failed, now_ms)?;
        self.lease = None;
        self.reason = Some(cut(reason));
        Ok(())
    }

    /// Any non-terminal status → Canceled by `by`.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidTransition`] when already terminal.
    pub fn cancel(&mut self, by: &UserName, now_ms: u64) -> Result<(), TaskError> {
        self.set_status(TaskStatus::Canceled, now_ms)?;
        self.lease = None;
        self.reason = Some(format!("canceled by {by}"));
        Ok(())
    }
}

/// The fields a task digest covers, so that a client can recompute the digest from what
/// the node shows it instead of trusting the node's value.
#[derive(Debug, Clone, Copy)]
pub struct TaskDigest<'a> {
    /// The function's id.
    pub function_id: FunctionId,
    /// The function's current payload digest.
    pub payload_digest: Digest,
    /// The function's current instance reuse mode.
    pub reuse: InstanceReuse,
    /// Resolved arguments.
    pub arguments: &'a BTreeMap<String, String>,
    /// Input slots.
    pub inputs: &'a BTreeMap<String, InputSlot>,
    /// Output slots.
    pub outputs: &'a BTreeMap<String, OutputSlot>,
}

impl TaskDigest<'_> {
    /// SHA-256 over the canonical encoding of `docs/formats/task-digest.md`.
    pub fn compute(&self) -> Digest {
        let mut h = Hasher::new();
        put_str(&mut h, "cella/task-digest/v2");
        put_str(&mut h, &self.function_id.to_string());
        h.update(self.payload_digest.as_bytes());
        h.update(&[match self.reuse {
            InstanceReuse::Never => 0,
            InstanceReuse::SameFunction => 1,
        }]);
        put_len(&mut h, self.arguments.len());
        for (k, v) in self.arguments {
            put_str(&mut h, k);
            put_str(&mut h, v);
        }
        put_len(&mut h, self.inputs.len());
        for (name, slot) in self.inputs {
            put_str(&mut h, name);
            put_owners(&mut h, &slot.owners);
            match &slot.file {
                Some((id, d)) => {
                    h.update(&[1]);
                    put_str(&mut h, &id.to_string());
                    h.update(d.as_bytes());
                }
                None => h.update(&[0]),
            }
        }
        put_len(&mut h, self.outputs.len());
        for (name, slot) in self.outputs {
            put_str(&mut h, name);
            put_owners(&mut h, &slot.owners);
            match &slot.file {
                Some(id) => {
                    h.update(&[1]);
                    put_str(&mut h, &id.to_string());
                }
                None => h.update(&[0]),
            }
        }
        h.finish()
    }
}

fn put_len(h: &mut Hasher, n: usize) {
    // Counts are bounded by MAX_SPEC_ENTRIES and lengths by the request size limit, so
    // they fit in u32; saturate rather than wrap if that ever changes.
    h.update(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(h: &mut Hasher, s: &str) {
    put_len(h, s.len());
    h.update(s.as_bytes());
}

fn put_owners(h: &mut Hasher, owners: &BTreeSet<UserName>) {
    put_len(h, owners.len());
    for o in owners {
        put_str(h, o.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserName {
        s.parse().unwrap()
    }

    fn task() -> Task {
        Task::new(
            NewTask {
                creator: u("fo"),
                function_id: FunctionId::new(),
                function_owner: u("fo"),
                function_public: false,
                arguments: BTreeMap::from([("k".into(), "v".into())]),
                inputs: BTreeMap::from([
                    ("in_a".into(), ([u("a")].into(), false)),
                    ("in_opt".into(), ([u("a")].into(), true)),
                    ("in_b".into(), ([u("b")].into(), false)),
                ]),
                outputs: BTreeMap::from([("out_a".into(), [u("a")].into())]),
            },
            1,
        )
    }

    fn assigned() -> Task {
        let mut t = task();
        t.assign_input("in_a", InputFileId::new(), Digest::of(b"a"), 2)
            .unwrap();
        t.assign_input("in_b", InputFileId::new(), Digest::of(b"b"), 2)
            .unwrap();
        t.assign_output("out_a", OutputFileId::new(), 2).unwrap();
        t
    }

    #[test]
    fn transition_table() {
        use TaskStatus::*;
        let all = [
            Created,
            DataAssigned,
            Approved,
            Staged,
            Running,
            Finished,
            Failed,
            Canceled,
        ];
        for from in all {
            for to in all {
                let expected = matches!(
                    (from, to),
                    (Created, DataAssigned)
                        | (DataAssigned, Approved)
                        | (Approved, Staged)
                        | (Staged, Running)
                        | (Running, Finished)
                        | (Running, Staged)
                ) || (matches!(to, Failed | Canceled) && !from.is_terminal());
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn participants_include_creator_owners_and_private_function_owner() {
        let t = task();
        assert_eq!(t.participants, [u("fo"), u("a"), u("b")].into());
        assert_eq!(t.status(), TaskStatus::Created);
    }

    #[test]
    fn assignment_is_write_once_and_completes_data() {
        let mut t = task();
        t.assign_input("in_a", InputFileId::new(), Digest::of(b"a"), 2)
            .unwrap();
        let again = t.assign_input("in_a", InputFileId::new(), Digest::of(b"x"), 2);
        assert!(matches!(again, Err(TaskError::SlotAlreadyAssigned { .. })));
        assert!(matches!(
            t.assign_input("nope", InputFileId::new(), Digest::of(b"x"), 2),
            Err(TaskError::NoSuchSlot { .. })
        ));
        t.assign_input("in_b", InputFileId::new(), Digest::of(b"b"), 2)
            .unwrap();
        assert_eq!(t.status(), TaskStatus::Created);
        t.assign_output("out_a", OutputFileId::new(), 3).unwrap();
        // The optional slot may stay empty.
        assert_eq!(t.status(), TaskStatus::DataAssigned);
    }

    #[test]
    fn early_approval_names_each_slot_still_to_assign_and_who_may() {
        let mut t = task();
        t.assign_input("in_a", InputFileId::new(), Digest::of(b"a"), 2)
            .unwrap();
        let d = Digest::of(b"any");
        let e = t.approve(&u("a"), d, d, 3).unwrap_err();
        assert_eq!(
            e,
            TaskError::SlotsUnassigned {
                unassigned: vec![
                    UnassignedSlot {
                        kind: "input",
                        slot: "in_b".into(),
                        owners: vec![u("b")],
                    },
                    UnassignedSlot {
                        kind: "output",
                        slot: "out_a".into(),
                        owners: vec![u("a")],
                    },
                ]
            }
        );
        assert_eq!(
            e.to_string(),
            "approval needs every slot assigned first; still to assign: \
             input slot \"in_b\" (by b), output slot \"out_a\" (by a)"
        );
        // The optional slot is never listed; nothing was recorded.
        assert!(t.approvals.is_empty());
        assert!(assigned().unassigned_slots().is_empty());
    }

    #[test]
    fn approvals_bind_the_digest() {
        let mut t = assigned();
        let payload = Digest::of(b"payload");
        let d = t.digest(&payload, InstanceReuse::Never);
        assert!(matches!(
            t.stage(&d, 3),
            Err(TaskError::NotApproved { missing }) if missing.len() == 3
        ));
        let stale = Digest::of(b"other");
        assert!(matches!(
            t.approve(&u("a"), stale, d, 3),
            Err(TaskError::StaleDigest { .. })
        ));
        for who in ["a", "b", "fo"] {
            t.approve(&u(who), d, d, 3).unwrap();
        }
        assert_eq!(t.status(), TaskStatus::Approved);
        // The function owner changes the payload: every approval is void.
        let new_d = t.digest(&Digest::of(b"payload v2"), InstanceReuse::Never);
        assert_ne!(new_d, d);
        assert!(
            matches!(t.stage(&new_d, 4), Err(TaskError::NotApproved { missing }) if missing.len() == 3)
        );
        assert_eq!(t.status(), TaskStatus::Approved);
        t.stage(&d, 4).unwrap();
        assert_eq!(t.status(), TaskStatus::Staged);
    }

    #[test]
    fn digest_covers_every_field() {
        let t = assigned();
        let p = Digest::of(b"p");
        let base = t.digest(&p, InstanceReuse::Never);
        let mut t2 = t.clone();
        t2.arguments.insert("k".into(), "w".into());
        assert_ne!(t2.digest(&p, InstanceReuse::Never), base);
        let mut t3 = t.clone();
        t3.outputs.get_mut("out_a").unwrap().owners.insert(u("z"));
        assert_ne!(t3.digest(&p, InstanceReuse::Never), base);
        let mut t4 = t.clone();
        t4.assign_input("in_opt", InputFileId::new(), Digest::of(b"o"), 5)
            .unwrap();
        assert_ne!(t4.digest(&p, InstanceReuse::Never), base);
        let mut t5 = t.clone();
        t5.function_id = FunctionId::new();
        assert_ne!(t5.digest(&p, InstanceReuse::Never), base);
        assert_ne!(t.digest(&p, InstanceReuse::SameFunction), base);
        assert_eq!(t.clone().digest(&p, InstanceReuse::Never), base);
    }

    /// The encoding of docs/formats/task-digest.md, written out byte by byte for a task
    /// with one argument, one filled input and one empty output.
    #[test]
    fn digest_matches_the_documented_encoding() {
        let fid: FunctionId = "function-00000000-0000-4000-8000-000000000001"
            .parse()
            .unwrap();
        let iid: InputFileId = "input-00000000-0000-4000-8000-000000000002"
            .parse()
            .unwrap();
        let payload = Digest::of(b"echo");
        let file_digest = Digest::of(b"ciphertext");
        let arguments = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let inputs = BTreeMap::from([(
            "in".to_string(),
            InputSlot {
                owners: [u("a")].into(),
                optional: false,
                file: Some((iid, file_digest)),
            },
        )]);
        let outputs = BTreeMap::from([(
            "out".to_string(),
            OutputSlot {
                owners: [u("a"), u("b")].into(),
                file: None,
            },
        )]);
        fn s(v: &mut Vec<u8>, x: &str) {
            v.extend_from_slice(&u32::try_from(x.len()).unwrap().to_be_bytes());
            v.extend_from_slice(x.as_bytes());
        }
        let mut e = Vec::new();
        s(&mut e, "cella/task-digest/v2");
        s(&mut e, &fid.to_string());
        e.extend_from_slice(payload.as_bytes());
        e.push(1);
        e.extend_from_slice(&1u32.to_be_bytes());
        s(&mut e, "k");
        s(&mut e, "v");
        e.extend_from_slice(&1u32.to_be_bytes());
        s(&mut e, "in");
        e.extend_from_slice(&1u32.to_be_bytes());
        s(&mut e, "a");
        e.push(1);
        s(&mut e, &iid.to_string());
        e.extend_from_slice(file_digest.as_bytes());
        e.extend_from_slice(&1u32.to_be_bytes());
        s(&mut e, "out");
        e.extend_from_slice(&2u32.to_be_bytes());
        s(&mut e, "a");
        s(&mut e, "b");
        e.push(0);
        let computed = TaskDigest {
            function_id: fid,
            payload_digest: payload,
            reuse: InstanceReuse::SameFunction,
            arguments: &arguments,
            inputs: &inputs,
            outputs: &outputs,
        }
        .compute();
        assert_eq!(computed, Digest::of(&e));
    }

    #[test]
    fn lease_retry_then_fail() {
        let mut t = assigned();
        let d = t.digest(&Digest::of(b"p"), InstanceReuse::Never);
        for who in ["a", "b", "fo"] {
            t.approve(&u(who), d, d, 3).unwrap();
        }
        t.stage(&d, 4).unwrap();
        let lease = || Lease {
            worker: "w".into(),
            expires_ms: 10,
        };
        t.start(lease(), 5).unwrap();
        assert_eq!(t.lease_lost("worker w lost", 6), Ok(TaskStatus::Staged));
        t.start(lease(), 7).unwrap();
        assert_eq!(t.lease_lost("worker w lost", 8), Ok(TaskStatus::Failed));
        assert!(t.reason().unwrap().contains("gave up after 2 attempts"));
        assert!(t.cancel(&u("a"), 9).is_err());
    }

    #[test]
    fn cancel_from_every_non_terminal_state() {
        let mut t = task();
        t.cancel(&u("a"), 2).unwrap();
        assert_eq!(t.status(), TaskStatus::Canceled);
        assert_eq!(t.reason.as_deref(), Some("canceled by a"));
        assert!(matches!(
            t.fail("x".into(), 3),
            Err(TaskError::InvalidTransition { .. })
        ));
        let mut t = assigned();
        t.fail("y".repeat(MAX_REASON_LEN * 2), 3).unwrap();
        assert!(t.reason.unwrap().len() <= MAX_REASON_LEN + 3);
    }
}
