//! Object-level authorization: the one place that decides who may do what to which
//! object. Services call [`check`] before touching state; nothing else grants access.
//!
//! Rules, in short: admins manage users and nothing else (an admin is not a data
//! owner's confidant); function owners register functions and alone see and change
//! their payloads; data owners register files and alone read or delete them; a task is
//! visible to its participants, its slots are filled by their owners with their own
//! files, any participant approves or cancels, and only the creator invokes.

use std::collections::BTreeSet;

use cella_types::{Function, Role, Task, UserName};

use crate::PlatformError;
use crate::auth::Caller;
use crate::error::Refusal;

/// Something a caller wants to do, with the object it touches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// Register users, list them, reset others' passwords.
    ManageUsers,
    /// Register a new function.
    RegisterFunction,
    /// See a function's description, or create a task with it.
    UseFunction(&'a Function),
    /// Read a function's payload.
    ReadPayload(&'a Function),
    /// Update, disable or delete a function; `verb` names which, for the refusal.
    ModifyFunction {
        /// The function.
        function: &'a Function,
        /// What the caller tried: "update", "disable" or "delete".
        verb: &'static str,
    },
    /// Register an input or output file.
    RegisterFile,
    /// Read, download or delete a file owned by `owner`.
    AccessFile {
        /// The file's owner.
        owner: &'a UserName,
    },
    /// See a task.
    ReadTask(&'a Task),
    /// Fill a slot owned by `slot_owners` with a file owned by `file_owner`.
    AssignSlot {
        /// The task.
        task: &'a Task,
        /// The slot's owners.
        slot_owners: &'a BTreeSet<UserName>,
        /// The file's owner.
        file_owner: &'a UserName,
    },
    /// Approve a task.
    Approve(&'a Task),
    /// Invoke a task.
    Invoke(&'a Task),
    /// Cancel a task.
    Cancel(&'a Task),
}

fn deny(refusal: Refusal) -> Result<(), PlatformError> {
    Err(PlatformError::Refused(refusal))
}

fn need_role(caller: &Caller, role: Role, action: &'static str) -> Result<(), PlatformError> {
    if caller.has_role(role) {
        Ok(())
    } else {
        deny(Refusal::MissingRole {
            action,
            role,
            user: caller.user.clone(),
        })
    }
}

fn need_participant(
    caller: &Caller,
    task: &Task,
    action: &'static str,
) -> Result<(), PlatformError> {
    if task.participants().contains(&caller.user) {
        Ok(())
    } else {
        deny(Refusal::NotParticipant {
            user: caller.user.clone(),
            task: task.id(),
            action,
        })
    }
}

fn need_function_owner(caller: &Caller, f: &Function, action: String) -> Result<(), PlatformError> {
    if f.owner == caller.user {
        Ok(())
    } else {
        deny(Refusal::NotFunctionOwner {
            function: f.id,
            owner: f.owner.clone(),
            action,
            user: caller.user.clone(),
        })
    }
}

/// Whether `caller` may perform `action`.
///
/// # Errors
///
/// [`PlatformError::Refused`] saying which rule refused.
pub(crate) fn check(caller: &Caller, action: &Action<'_>) -> Result<(), PlatformError> {
    match *action {
        Action::ManageUsers => need_role(caller, Role::Admin, "managing users"),
        Action::RegisterFunction => {
            need_role(caller, Role::FunctionOwner, "registering a function")
        }
        Action::UseFunction(f) => {
            if f.usable_by(&caller.user) {
                Ok(())
            } else {
                deny(Refusal::NotShared {
                    function: f.id,
                    user: caller.user.clone(),
                })
            }
        }
        Action::ReadPayload(f) => need_function_owner(caller, f, "read its payload".into()),
        Action::ModifyFunction { function, verb } => {
            need_function_owner(caller, function, format!("{verb} it"))
        }
        Action::RegisterFile => need_role(caller, Role::DataOwner, "registering a file"),
        Action::AccessFile { owner } => {
            if owner == &caller.user {
                Ok(())
            } else {
                deny(Refusal::NotFileOwner {
                    user: caller.user.clone(),
                })
            }
        }
        Action::ReadTask(t) => need_participant(caller, t, "read"),
        Action::AssignSlot {
            task,
            slot_owners,
            file_owner,
        } => {
            need_participant(caller, task, "assign data to")?;
            if !slot_owners.contains(&caller.user) {
                return deny(Refusal::NotSlotOwner {
                    user: caller.user.clone(),
                });
            }
            if file_owner != &caller.user {
                return deny(Refusal::ForeignFile {
                    user: caller.user.clone(),
                });
            }
            Ok(())
        }
        Action::Approve(t) => need_participant(caller, t, "approve"),
        Action::Cancel(t) => need_participant(caller, t, "cancel"),
        Action::Invoke(t) => {
            if t.creator() == &caller.user {
                Ok(())
            } else {
                deny(Refusal::NotCreator { task: t.id() })
            }
        }
    }
}

/// Whether `caller` may see audit entry `entry`: an admin sees every entry (reading the
/// trail is managing the node, and entries hold ids, never data); anyone else sees the
/// entries they acted in and those that concern them (its parties: the participants of a
/// task, the owner of a file or function, the user of an account).
pub(crate) fn may_read_audit(caller: &Caller, entry: &crate::audit::AuditEntry) -> bool {
    caller.has_role(Role::Admin)
        || entry.actor == caller.user.as_str()
        || entry.parties.iter().any(|p| p == caller.user.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cella_types::{Digest, FunctionId, FunctionSpec, NewTask, Visibility};

    use super::*;

    fn u(s: &str) -> UserName {
        s.parse().unwrap()
    }

    fn function(public: bool) -> Function {
        Function {
            id: FunctionId::new(),
            owner: u("fo"),
            spec: FunctionSpec {
                name: "f".into(),
                description: String::new(),
                executor: cella_types::ExecutorKind::Builtin,
                runtime: None,
                reuse: cella_types::InstanceReuse::Never,
                arguments: vec![],
                inputs: vec![],
                outputs: vec![],
                visibility: if public {
                    Visibility::Public
                } else {
                    Visibility::Allowlist([u("creator")].into())
                },
                quota: None,
                max_output_bytes: None,
            },
            payload_digest: Digest::of(b"echo"),
            payload_len: 4,
            usage: 0,
            disabled: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn task(f: &Function) -> Task {
        Task::new(
            NewTask {
                creator: u("creator"),
                function_id: f.id,
                function_owner: f.owner.clone(),
                function_public: false,
                arguments: BTreeMap::new(),
                inputs: BTreeMap::from([("in".into(), ([u("alice")].into(), false))]),
                outputs: BTreeMap::from([("out".into(), [u("alice")].into())]),
            },
            0,
        )
    }

    /// Every action against every kind of caller: the owner of the object, a
    /// participant, a foreign user, an admin who is not involved.
    #[test]
    fn every_action_by_every_role() {
        let private = function(false);
        let public = function(true);
        let t = task(&private);
        let alice_slot: BTreeSet<UserName> = [u("alice")].into();
        let alice = u("alice");
        let mallory = u("mallory");

        let admin = Caller::for_test("root", &[Role::Admin]);
        let fo = Caller::for_test("fo", &[Role::FunctionOwner]);
        let creator = Caller::for_test("creator", &[Role::DataOwner]);
        let alice_c = Caller::for_test("alice", &[Role::DataOwner]);
        let outsider = Caller::for_test("mallory", &[Role::DataOwner, Role::FunctionOwner]);

        let actions: Vec<(&str, Action<'_>)> = vec![
            ("manage users", Action::ManageUsers),
            ("register function", Action::RegisterFunction),
            ("use private function", Action::UseFunction(&private)),
            ("use public function", Action::UseFunction(&public)),
            ("read payload", Action::ReadPayload(&private)),
            (
                "modify function",
                Action::ModifyFunction {
                    function: &private,
                    verb: "update",
                },
            ),
            ("register file", Action::RegisterFile),
            ("access alice's file", Action::AccessFile { owner: &alice }),
            ("read task", Action::ReadTask(&t)),
            (
                "assign alice's file to alice's slot",
                Action::AssignSlot {
                    task: &t,
                    slot_owners: &alice_slot,
                    file_owner: &alice,
                },
            ),
            (
                "assign mallory's file to alice's slot",
                Action::AssignSlot {
                    task: &t,
                    slot_owners: &alice_slot,
                    file_owner: &mallory,
                },
            ),
            ("approve", Action::Approve(&t)),
            ("invoke", Action::Invoke(&t)),
            ("cancel", Action::Cancel(&t)),
        ];
        // Expected outcome per action for: admin, fo, creator, alice, outsider.
        let expected: [[bool; 5]; 14] = [
            [true, false, false, false, false],  // manage users
            [false, true, false, false, true],   // register function
            [false, true, true, false, false],   // use private function
            [true, true, true, true, true],      // use public function
            [false, true, false, false, false],  // read payload
            [false, true, false, false, false],  // modify function
            [false, false, true, true, true],    // register file
            [false, false, false, true, false],  // access alice's file
            [false, true, true, true, false],    // read task
            [false, false, false, true, false],  // assign own file to own slot
            [false, false, false, false, false], // assign foreign file
            [false, true, true, true, false],    // approve
            [false, false, true, false, false],  // invoke
            [false, true, true, true, false],    // cancel
        ];
        let callers = [&admin, &fo, &creator, &alice_c, &outsider];
        assert_eq!(actions.len(), expected.len());
        for ((name, action), row) in actions.iter().zip(expected) {
            for (caller, allowed) in callers.iter().zip(row) {
                let got = check(caller, action);
                assert_eq!(
                    got.is_ok(),
                    allowed,
                    "{name} by {}: got {got:?}",
                    caller.user
                );
                if let Err(e) = got {
                    assert!(matches!(e, PlatformError::Refused(_)));
                }
            }
        }
    }
}
