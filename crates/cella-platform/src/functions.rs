//! Functions: registration by function owners, visibility to task creators, payloads
//! kept in the blob store under their digest and shown only to their owner.

use cella_store::{BlobName, Record};
use cella_types::{Digest, Function, FunctionId, FunctionSpec, Task, User, Visibility};

use crate::audit::{AuditAction, Subject, audit};
use crate::config::MAX_PAYLOAD_BYTES;
use crate::error::Object;
use crate::page::{Listed, Page, PageRequest, Position};
use crate::policy::{self, Action};
use crate::{Caller, Platform, PlatformError, Result, now_ms};

/// A function as a caller may see it: the payload only for its owner, when asked for.
#[derive(Debug, Clone)]
pub struct FunctionView {
    /// The function.
    pub function: Function,
    /// Its payload, when the owner asked for it.
    pub payload: Option<Vec<u8>>,
}

impl Listed for Function {
    fn position(&self) -> Position {
        Position {
            created_ms: self.created_ms,
            id: self.id.to_string(),
        }
    }
}

impl Platform {
    /// Checks a spec on its own and against the node's limits: a function asking a
    /// larger output cap than the node's is refused, not clamped, so that its owner never
    /// believes its tasks may write more than they can.
    fn check_spec(&self, spec: &FunctionSpec) -> Result<()> {
        spec.validate()?;
        let node = self.config.max_task_output_bytes;
        match spec.max_output_bytes {
            Some(asked) if asked > node => Err(PlatformError::BadValue(format!(
                "max_output_bytes = {asked} is over this node's output cap of {node} bytes \
                 (--max-task-output-bytes): ask {node} or less, or none for the node's cap"
            ))),
            _ => Ok(()),
        }
    }

    /// Checks a spec and payload against the node: the executor exists, offers the
    /// runtime image named, and accepts the payload; allowlisted users exist. Refusing
    /// here, naming what the node offers, spares every participant approving a task that
    /// could never run.
    fn check_function(&self, spec: &FunctionSpec, payload: &[u8]) -> Result<()> {
        self.check_spec(spec)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PlatformError::BadValue(format!(
                "payload is {} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        let executor = self.executors.get(spec.executor).map_err(|e| {
            PlatformError::BadValue(format!(
                "{e}; it offers: {}",
                self.executor_kinds()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if let Some(runtime) = &spec.runtime {
            let offered = executor.offered_runtimes();
            if !offered.contains(runtime) {
                return Err(PlatformError::BadValue(format!(
                    "runtime image {runtime:?} is not offered by this node; it offers: [{}]",
                    offered.join(", ")
                )));
            }
        }
        executor
            .validate_payload(payload)
            .map_err(|e| PlatformError::BadValue(format!("payload refused: {e}")))?;
        if let Visibility::Allowlist(users) = &spec.visibility {
            self.store.read(|tx| {
                for u in users {
                    if tx.get::<User>(u.as_str())?.is_none() {
                        return Err(PlatformError::BadValue(format!(
                            "allowlisted user {u} does not exist"
                        )));
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Stores a payload under its digest (once: identical payloads share a blob).
    fn store_payload(&self, payload: &[u8]) -> Result<Digest> {
        let digest = Digest::of(payload);
        let name = BlobName::payload(&digest);
        if self.blobs.len(&name).is_err() {
            let mut w = self.blobs.create(&name)?;
            w.append(payload)?;
            w.commit_if(&digest)?;
        }
        Ok(digest)
    }

    /// Loads a function by id.
    pub(crate) fn load_function(&self, id: FunctionId) -> Result<Function> {
        self.store
            .read(|tx| tx.get::<Function>(&id.to_string()))?
            .ok_or(PlatformError::Missing(Object::Function(id)))
    }

    /// Registers a function (function_owner role).
    ///
    /// # Errors
    ///
    /// Permission, an invalid spec, or a payload its executor refuses.
    pub fn register_function(
        &self,
        caller: &Caller,
        spec: FunctionSpec,
        payload: &[u8],
    ) -> Result<Function> {
        policy::check(caller, &Action::RegisterFunction)?;
        self.check_function(&spec, payload)?;
        let payload_digest = self.store_payload(payload)?;
        let now = now_ms();
        let function = Function {
            id: FunctionId::new(),
            owner: caller.user.clone(),
            spec,
            payload_digest,
            payload_len: payload.len() as u64,
            usage: 0,
            disabled: false,
            created_ms: now,
            updated_ms: now,
        };
        self.store.write(|tx| {
            tx.put(&function)?;
            audit(
                tx,
                &caller.user,
                AuditAction::RegisterFunction,
                Subject::function(&function),
            )
        })?;
        Ok(function)
    }

    /// A function the caller may use; its payload too when the owner asks for it.
    ///
    /// # Errors
    ///
    /// Not found, or permission (the function is not shared with the caller, or the
    /// payload was asked for by someone other than the owner).
    pub fn get_function(
        &self,
        caller: &Caller,
        id: FunctionId,
        include_payload: bool,
    ) -> Result<FunctionView> {
        let function = self.load_function(id)?;
        if function.owner != caller.user {
            policy::check(caller, &Action::UseFunction(&function))?;
        }
        let payload = if include_payload {
            policy::check(caller, &Action::ReadPayload(&function))?;
            Some(self.read_payload(&function)?.to_vec())
        } else {
            None
        };
        Ok(FunctionView { function, payload })
    }

    /// One page of the functions the caller may use, or of only its own, in
    /// registration order.
    ///
    /// # Errors
    ///
    /// Store failures only.
    pub fn list_functions(
        &self,
        caller: &Caller,
        mine_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Function>> {
        let mut all = self.store.read(|tx| tx.list::<Function>())?;
        all.retain(|f| {
            f.owner == caller.user
                || (!mine_only && policy::check(caller, &Action::UseFunction(f)).is_ok())
        });
        Ok(page.select(all))
    }

    /// Replaces a function's spec, and its payload when given. The executor and runtime
    /// cannot change: that is a different function. A new payload changes the digest of
    /// every task using the function, so their approvals no longer count.
    ///
    /// # Errors
    ///
    /// Permission, not found, invalid spec or payload.
    pub fn update_function(
        &self,
        caller: &Caller,
        id: FunctionId,
        spec: FunctionSpec,
        payload: Option<&[u8]>,
    ) -> Result<Function> {
        let current = self.load_function(id)?;
        policy::check(
            caller,
            &Action::ModifyFunction {
                function: &current,
                verb: "update",
            },
        )?;
        if spec.executor != current.spec.executor || spec.runtime != current.spec.runtime {
            return Err(PlatformError::BadValue(
                "the executor and runtime of a function cannot change; register a new function"
                    .into(),
            ));
        }
        let (digest, len) = match payload {
            Some(p) => {
                self.check_function(&spec, p)?;
                (self.store_payload(p)?, p.len() as u64)
            }
            None => {
                self.check_spec(&spec)?;
                (current.payload_digest, current.payload_len)
            }
        };
        self.store.write(|tx| {
            let mut f = tx
                .get::<Function>(&current.key())?
                .ok_or_else(|| PlatformError::Missing(Object::Function(current.id)))?;
            f.spec = spec;
            f.payload_digest = digest;
            f.payload_len = len;
            f.updated_ms = now_ms();
            tx.put(&f)?;
            audit(
                tx,
                &caller.user,
                AuditAction::UpdateFunction,
                Subject::function(&f),
            )?;
            Ok(f)
        })
    }

    /// Disables a function: it accepts no new tasks and no invocations.
    ///
    /// # Errors
    ///
    /// Permission, not found.
    pub fn disable_function(&self, caller: &Caller, id: FunctionId) -> Result<Function> {
        let current = self.load_function(id)?;
        policy::check(
            caller,
            &Action::ModifyFunction {
                function: &current,
                verb: "disable",
            },
        )?;
        self.store.write(|tx| {
            let mut f = tx
                .get::<Function>(&current.key())?
                .ok_or_else(|| PlatformError::Missing(Object::Function(current.id)))?;
            f.disabled = true;
            f.updated_ms = now_ms();
            tx.put(&f)?;
            audit(
                tx,
                &caller.user,
                AuditAction::DisableFunction,
                Subject::function(&f),
            )?;
            Ok(f)
        })
    }

    /// Deletes a function that no unfinished task uses.
    ///
    /// # Errors
    ///
    /// Permission, not found, or [`PlatformError::WrongState`] naming a task
    /// that still uses it.
    pub fn delete_function(&self, caller: &Caller, id: FunctionId) -> Result<()> {
        let current = self.load_function(id)?;
        policy::check(
            caller,
            &Action::ModifyFunction {
                function: &current,
                verb: "delete",
            },
        )?;
        self.store.write(|tx| {
            if let Some(t) = tx
                .list::<Task>()?
                .into_iter()
                .find(|t| t.function_id() == current.id && !t.status().is_terminal())
            {
                return Err(PlatformError::WrongState(format!(
                    "function {} is used by unfinished {}",
                    current.id,
                    t.id()
                )));
            }
            tx.delete::<Function>(&current.key())?;
            audit(
                tx,
                &caller.user,
                AuditAction::DeleteFunction,
                Subject::function(&current),
            )
        })
    }

    /// A function's payload, checked against its digest.
    pub(crate) fn read_payload(&self, f: &Function) -> Result<std::sync::Arc<[u8]>> {
        self.sched.payload_cache.get_or_load(&f.payload_digest, || {
            let mut file = self
                .blobs
                .open_read(&BlobName::payload(&f.payload_digest))?;
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut buf)
                .map_err(|e| PlatformError::node_because("reading payload", e))?;
            if Digest::of(&buf) != f.payload_digest {
                return Err(PlatformError::node(format!(
                    "payload blob of {} does not match its digest",
                    f.id
                )));
            }
            Ok(buf)
        })
    }
}
