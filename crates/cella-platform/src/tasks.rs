//! Tasks: creation, data assignment, approval over the task digest, invocation by the
//! creator, cancellation, and watching status changes.
//!
//! Each mutation runs in one write transaction: load, authorize, apply the state
//! machine, persist, audit. A refused request returns before the commit, so it changes
//! nothing. Watchers are told after the commit.

use std::collections::{BTreeMap, BTreeSet};

use cella_store::{Record, WriteTx};
use cella_types::{
    Digest, FileId, Function, FunctionId, InputFile, InputFileId, InstanceReuse, NewTask,
    OutputFile, OutputFileId, Task, TaskId, TaskStatus, User, UserName,
};
use tokio::sync::broadcast;

use crate::audit::{AuditAction, Subject, audit};
use crate::error::Object;
use crate::page::{Listed, Page, PageRequest, Position};
use crate::policy::{self, Action};
use crate::scheduler::{IdleWorker, enqueue};
use crate::{Caller, Platform, PlatformError, Result, now_ms};

/// Which tasks a task list shows: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in one of these statuses; empty: any.
    pub statuses: Vec<TaskStatus>,
    /// Only tasks of this function.
    pub function_id: Option<FunctionId>,
    /// Only tasks the caller created.
    pub created_by_me: bool,
}

impl TaskFilter {
    fn matches(&self, caller: &Caller, task: &Task) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&task.status()))
            && self.function_id.is_none_or(|f| f == task.function_id())
            && (!self.created_by_me || task.creator() == &caller.user)
    }
}

impl Listed for Task {
    fn position(&self) -> Position {
        Position {
            created_ms: self.history().first().map_or(0, |h| h.at_ms),
            id: self.id().to_string(),
        }
    }
}

impl Listed for TaskView {
    fn position(&self) -> Position {
        self.task.position()
    }
}

/// A task as a participant sees it.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The task.
    pub task: Task,
    /// Its current digest; `None` once the function has been deleted.
    pub digest: Option<Digest>,
    /// The function's current payload digest, which the task digest covers.
    pub payload_digest: Option<Digest>,
    /// The function's current instance reuse mode, which the task digest covers.
    pub reuse: InstanceReuse,
    /// Participants whose approval matches the current digest.
    pub approved_by: Vec<UserName>,
}

/// The owners named for one slot in a create request.
pub type SlotOwners = (String, Vec<UserName>);

/// The files named for slots in an assign request: each slot's name and file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotFiles {
    /// Input slots and the input files to fill them with.
    pub inputs: Vec<(String, InputFileId)>,
    /// Output slots and the output files to fill them with.
    pub outputs: Vec<(String, OutputFileId)>,
}

fn check_owners(
    tx: &cella_store::ReadTx<'_>,
    kind: &str,
    slot: &str,
    owners: &[UserName],
) -> Result<BTreeSet<UserName>> {
    if owners.is_empty() {
        return Err(PlatformError::BadValue(format!(
            "{kind} slot {slot:?} needs at least one owner"
        )));
    }
    owners
        .iter()
        .map(|name| {
            if tx.get::<User>(name.as_str())?.is_none() {
                return Err(PlatformError::BadValue(format!(
                    "owner {name} of {kind} slot {slot:?} is not a user"
                )));
            }
            Ok(name.clone())
        })
        .collect()
}

/// A file record assigned to a slot, or [`PlatformError::Missing`] naming it.
fn load_file<R: Record>(tx: &WriteTx<'_>, id: FileId) -> Result<R> {
    tx.get::<R>(&id.to_string())?
        .ok_or(PlatformError::Missing(Object::SlotFile(id)))
}

/// Whether `caller` may put a file of `file_owner` into slot `slot` (`owners` is `None`
/// when the task has no such slot).
fn check_slot(
    caller: &Caller,
    task: &cella_types::Task,
    kind: &str,
    slot: &str,
    owners: Option<&BTreeSet<UserName>>,
    file_owner: &UserName,
) -> Result<()> {
    let slot_owners = owners.ok_or_else(|| {
        PlatformError::BadValue(format!("the function has no {kind} slot named {slot:?}"))
    })?;
    policy::check(
        caller,
        &Action::AssignSlot {
            task,
            slot_owners,
            file_owner,
        },
    )
}

/// Refuses an output file that another unfinished task holds, or another slot of this
/// task: two runs writing one output would make one of them lose its result (or, before
/// outputs were versioned, destroy the other's).
fn check_output_free(tx: &WriteTx<'_>, task: &Task, file: &OutputFile) -> Result<()> {
    if let Some((other_slot, _)) = task.outputs().iter().find(|(_, s)| s.file == Some(file.id)) {
        return Err(PlatformError::WrongState(format!(
            "output file {} is already assigned to slot {other_slot:?} of this task: \
             each output slot needs its own output file",
            file.id
        )));
    }
    if let Some(holder) = file.reserved_by.filter(|t| *t != task.id())
        && let Some(other) = tx.get::<Task>(&holder.to_string())?
        && !other.status().is_terminal()
    {
        return Err(PlatformError::WrongState(format!(
            "output file {} is assigned to unfinished {holder}: an output goes to one task \
             at a time; register another output file, or wait until {holder} ends",
            file.id
        )));
    }
    Ok(())
}

fn view_of(function: Option<&Function>, task: Task) -> TaskView {
    let digest = function.map(|f| task.digest(&f.payload_digest, f.spec.reuse));
    let approved_by = match &digest {
        Some(d) => task
            .participants()
            .iter()
            .filter(|u| task.approvals().get(*u) == Some(d))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    TaskView {
        task,
        digest,
        payload_digest: function.map(|f| f.payload_digest),
        reuse: function.map(|f| f.spec.reuse).unwrap_or_default(),
        approved_by,
    }
}

impl Platform {
    fn load_view(&self, tx: &cella_store::ReadTx<'_>, task: Task) -> Result<TaskView> {
        let f = tx.get::<Function>(&task.function_id().to_string())?;
        Ok(view_of(f.as_ref(), task))
    }

    /// Runs `change` on a task inside one write transaction, after `authorize`; commits
    /// only when both succeed, then tells watchers.
    fn mutate_task(
        &self,
        caller: &Caller,
        id: TaskId,
        op: AuditAction,
        change: impl FnOnce(&mut WriteTx<'_>, &mut Task, Option<&Function>) -> Result<()>,
    ) -> Result<TaskView> {
        let view = self.store.write(|tx| {
            let mut task = tx
                .get::<Task>(&id.to_string())?
                .ok_or(PlatformError::Missing(Object::Task(id)))?;
            let function = tx.get::<Function>(&task.function_id().to_string())?;
            change(tx, &mut task, function.as_ref())?;
            tx.put(&task)?;
            let view = view_of(function.as_ref(), task);
            audit(tx, &caller.user, op, Subject::task(&view.task, view.digest))?;
            Ok::<_, PlatformError>(view)
        })?;
        self.sched.publish(view.task.id());
        Ok(view)
    }

    /// Creates a task binding a function the caller may use to arguments and to the
    /// owners of each slot.
    ///
    /// # Errors
    ///
    /// Permission, a disabled function, bad arguments, unknown or missing slots, owners
    /// that are not users.
    pub fn create_task(
        &self,
        caller: &Caller,
        function_id: FunctionId,
        arguments: &BTreeMap<String, String>,
        inputs: &[SlotOwners],
        outputs: &[SlotOwners],
    ) -> Result<TaskView> {
        let function = self.load_function(function_id)?;
        policy::check(caller, &Action::UseFunction(&function))?;
        if function.disabled {
            return Err(PlatformError::WrongState(format!(
                "function {} is disabled",
                function.id
            )));
        }
        let arguments = function.resolve_arguments(arguments)?;
        let new = self.store.read(|tx| {
            let mut in_slots = BTreeMap::new();
            for (slot, owners) in inputs {
                let spec = function
                    .spec
                    .inputs
                    .iter()
                    .find(|s| &s.name == slot)
                    .ok_or_else(|| {
                        PlatformError::BadValue(format!("the function has no input slot {slot:?}"))
                    })?;
                let owners = check_owners(tx, "input", slot, owners)?;
                if in_slots
                    .insert(slot.clone(), (owners, spec.optional))
                    .is_some()
                {
                    return Err(PlatformError::BadValue(format!(
                        "input slot {slot:?} given twice"
                    )));
                }
            }
            if let Some(s) = function
                .spec
                .inputs
                .iter()
                .find(|s| !s.optional && !in_slots.contains_key(&s.name))
            {
                return Err(PlatformError::BadValue(format!(
                    "input slot {:?} needs owners",
                    s.name
                )));
            }
            let mut out_slots = BTreeMap::new();
            for (slot, owners) in outputs {
                if !function.spec.outputs.iter().any(|s| &s.name == slot) {
                    return Err(PlatformError::BadValue(format!(
                        "the function has no output slot {slot:?}"
                    )));
                }
                let owners = check_owners(tx, "output", slot, owners)?;
                if out_slots.insert(slot.clone(), owners).is_some() {
                    return Err(PlatformError::BadValue(format!(
                        "output slot {slot:?} given twice"
                    )));
                }
            }
            if let Some(s) = function
                .spec
                .outputs
                .iter()
                .find(|s| !out_slots.contains_key(&s.name))
            {
                return Err(PlatformError::BadValue(format!(
                    "output slot {:?} needs owners",
                    s.name
                )));
            }
            Ok(NewTask {
                creator: caller.user.clone(),
                function_id: function.id,
                function_owner: function.owner.clone(),
                function_public: matches!(
                    function.spec.visibility,
                    cella_types::Visibility::Public
                ),
                arguments,
                inputs: in_slots,
                outputs: out_slots,
            })
        })?;
        let task = Task::new(new, now_ms());
        let view = view_of(Some(&function), task);
        self.store.write(|tx| {
            tx.put(&view.task)?;
            audit(
                tx,
                &caller.user,
                AuditAction::CreateTask,
                Subject::task(&view.task, view.digest),
            )
        })?;
        self.sched.publish(view.task.id());
        Ok(view)
    }

    /// A task the caller participates in.
    ///
    /// # Errors
    ///
    /// Not found, permission.
    pub fn get_task(&self, caller: &Caller, id: TaskId) -> Result<TaskView> {
        self.store.read(|tx| {
            let task = tx
                .get::<Task>(&id.to_string())?
                .ok_or(PlatformError::Missing(Object::Task(id)))?;
            policy::check(caller, &Action::ReadTask(&task))?;
            self.load_view(tx, task)
        })
    }

    /// One page of the tasks the caller participates in that pass `filter`, in
    /// creation order (see [`crate::page`]). Only the page's tasks are turned into
    /// views (their function read, their digest computed).
    ///
    /// # Errors
    ///
    /// Store failures only.
    pub fn list_tasks(
        &self,
        caller: &Caller,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<TaskView>> {
        self.store.read(|tx| {
            let mut tasks = tx.list::<Task>()?;
            tasks.retain(|task| {
                filter.matches(caller, task)
                    && policy::check(caller, &Action::ReadTask(task)).is_ok()
            });
            let Page { items, more } = page.select(tasks);
            let items = items
                .into_iter()
                .map(|task| self.load_view(tx, task))
                .collect::<Result<_>>()?;
            Ok(Page { items, more })
        })
    }

    /// Fills slots the caller owns with files the caller owns (write-once), all or none.
    ///
    /// # Errors
    ///
    /// Permission, unknown slot or file, a slot already filled, an output file already
    /// written, or a task past DataAssigned.
    pub fn assign_data(&self, caller: &Caller, id: TaskId, files: &SlotFiles) -> Result<TaskView> {
        self.mutate_task(caller, id, AuditAction::AssignData, |tx, task, _| {
            policy::check(caller, &Action::ReadTask(task))?;
            let now = now_ms();
            for (slot, file_id) in &files.inputs {
                let file: InputFile = load_file(tx, FileId::Input(*file_id))?;
                let owners = task.inputs().get(slot).map(|s| &s.owners);
                check_slot(caller, task, "input", slot, owners, &file.owner)?;
                task.assign_input(slot, file.id, file.ciphertext_digest, now)?;
            }
            for (slot, file_id) in &files.outputs {
                let mut file: OutputFile = load_file(tx, FileId::Output(*file_id))?;
                let owners = task.outputs().get(slot).map(|s| &s.owners);
                check_slot(caller, task, "output", slot, owners, &file.owner)?;
                if let Some(c) = &file.content {
                    return Err(PlatformError::WrongState(format!(
                        "output file {file_id} was already written by {}",
                        c.task
                    )));
                }
                check_output_free(tx, task, &file)?;
                task.assign_output(slot, file.id, now)?;
                file.reserved_by = Some(task.id());
                tx.put(&file)?;
            }
            Ok(())
        })
    }

    /// Records the caller's approval of `digest`, which must be the task's current
    /// digest.
    ///
    /// # Errors
    ///
    /// Permission, a stale digest, a task not waiting for approvals.
    pub fn approve_task(&self, caller: &Caller, id: TaskId, given: Digest) -> Result<TaskView> {
        self.mutate_task(caller, id, AuditAction::ApproveTask, |_, task, function| {
            policy::check(caller, &Action::Approve(task))?;
            let function = function.ok_or_else(|| {
                PlatformError::WrongState("the task's function was deleted".into())
            })?;
            let current = task.digest(&function.payload_digest, function.spec.reuse);
            task.approve(&caller.user, given, current, now_ms())?;
            Ok(())
        })
    }

    /// Queues an approved task (creator only), counting one use of the function's quota.
    ///
    /// # Errors
    ///
    /// Permission, missing or stale approvals, a disabled function, quota exhausted.
    pub fn invoke_task(&self, caller: &Caller, id: TaskId) -> Result<TaskView> {
        let mut handoff: Option<IdleWorker> = None;
        // Only the creator may invoke (checked below), so the task counts against them.
        let creator = caller.user.clone();
        let invoked =
            self.mutate_task(caller, id, AuditAction::InvokeTask, |tx, task, function| {
                policy::check(caller, &Action::Invoke(task))?;
                let mut function = function.cloned().ok_or_else(|| {
                    PlatformError::WrongState("the task's function was deleted".into())
                })?;
                if function.disabled {
                    return Err(PlatformError::WrongState(format!(
                        "function {} is disabled",
                        function.id
                    )));
                }
                if !function.has_quota_left() {
                    return Err(PlatformError::QuotaUsed {
                        function: function.id,
                        quota: function.spec.quota.unwrap_or_default(),
                    });
                }
                let current = task.digest(&function.payload_digest, function.spec.reuse);
                let now = now_ms();
                task.stage(&current, now)?;
                function.usage += 1;
                tx.put(&function)?;
                // An idle worker takes the task in this same commit, if its creator is under
                // the cap of running tasks; otherwise it queues.
                match self.sched.take_idle() {
                    Some(worker) if self.sched.try_start(task.creator()) => {
                        // Counted from here; undone below unless the commit goes through.
                        let lease = self.new_lease(&worker.name);
                        handoff = Some(worker);
                        task.start(lease, now)?;
                        Ok(())
                    }
                    // The worker not taken stays parked: its hand-off channel closes when
                    // `worker` drops, and it looks at the queue again.
                    _ => enqueue(tx, task),
                }
            });
        match (invoked, handoff) {
            (Ok(view), Some(worker)) => {
                let name = worker.name.clone();
                if !worker.hand(view.task.clone()) {
                    // The worker stopped meanwhile: treat it as a lost lease; the task
                    // did not run.
                    self.sched.ended(&creator);
                    self.lease_lost(
                        view.task.id(),
                        &name,
                        "the worker stopped before starting the task",
                    )?;
                }
                Ok(view)
            }
            (Ok(view), None) => {
                self.sched.wake_one();
                Ok(view)
            }
            // A worker taken by an invoke that did not commit sees its hand-off channel
            // close and goes back to waiting; the task never started.
            (Err(e), Some(_)) => {
                self.sched.ended(&creator);
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Cancels a task in any non-terminal status; a running execution is stopped.
    ///
    /// # Errors
    ///
    /// Permission, or a task already terminal.
    pub fn cancel_task(&self, caller: &Caller, id: TaskId) -> Result<TaskView> {
        let view = self.mutate_task(caller, id, AuditAction::CancelTask, |_, task, _| {
            policy::check(caller, &Action::Cancel(task))?;
            task.cancel(&caller.user, now_ms())?;
            Ok(())
        })?;
        self.sched.stop_running(view.task.id());
        self.observe_ended(&view.task);
        Ok(view)
    }

    /// The task now, and a receiver of the ids of tasks that changed since. Subscribe
    /// first, read second, so no change between the two is missed.
    ///
    /// # Errors
    ///
    /// As [`Platform::get_task`].
    pub fn watch_task(
        &self,
        caller: &Caller,
        id: TaskId,
    ) -> Result<(TaskView, broadcast::Receiver<TaskId>)> {
        let rx = self.sched.subscribe();
        let view = self.get_task(caller, id)?;
        Ok((view, rx))
    }
}
