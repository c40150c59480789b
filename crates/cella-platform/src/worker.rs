//! One execution: fetch and verify the approved inputs, decrypt them, run the executor
//! under the task's deadline, encrypt outputs for their owners, and record the result
//! only if this worker still holds the task's lease.
//!
//! Plaintext exists only in this worker's memory and inside the executor; it is never
//! written to disk or logged.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use cella_crypto::FileKey;
use cella_executor::{ExecutionError, IoLimits, StagedTask, TaskIo};
use cella_store::{Record, error_chain};
use cella_types::{
    Digest, Function, Hasher, InputFile, OutputContent, OutputFile, Task, TaskId, TaskResult,
    TaskStatus,
};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditAction, NODE_ACTOR, Subject, audit_as};
use crate::{Platform, PlatformError, Result, now_ms};

/// Extra time the platform waits past the task deadline before abandoning an executor
/// that did not enforce it itself.
const DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a run produced no result to record.
enum RunError {
    /// The task fails with this reason, shown to its participants.
    Failed(String),
}

/// A successful run, ready to be recorded.
struct Completed {
    result: TaskResult,
    outputs: Vec<(OutputFile, OutputContent)>,
}

/// Why a task did not finish when the node stopped under it: cut off by a graceful
/// shutdown, or found Running by recovery after a crash. One wording for both, since
/// the participant sees the same event.
pub(crate) const STOPPED: &str = "the node stopped while the task was running";

/// What a run needs from the store, read in one snapshot.
struct Job {
    task: Task,
    function: Function,
    inputs: BTreeMap<String, (InputFile, Digest)>,
    outputs: BTreeMap<String, OutputFile>,
}

fn key_of(bytes: &[u8]) -> std::result::Result<FileKey, RunError> {
    FileKey::try_from(bytes).map_err(|e| RunError::Failed(format!("file key: {e}")))
}

impl Platform {
    /// Runs a leased task to its end and records the outcome. Returns when the task is
    /// recorded, canceled, or the node is stopping.
    pub(crate) async fn run_leased(
        self: &Arc<Self>,
        task: Task,
        worker: &str,
        stop: &CancellationToken,
    ) {
        let id = task.id();
        let creator = task.creator().clone();
        let cancel = self.sched.register_running(id);
        let me = Arc::clone(self);
        // A task of its own, so that a panic in an executor is caught here.
        let job = tokio::spawn(async move { me.execute(task).await });
        let abort = job.abort_handle();
        tokio::select! {
            joined = job => match joined {
                Ok(outcome) => self.record(id, worker, outcome),
                Err(e) if e.is_panic() => {
                    tracing::error!(task = %id, "execution panicked");
                    if let Err(e) = self.lease_lost(id, worker, "the execution worker crashed") {
                        tracing::error!(task = %id, error = %error_chain(&e), "could not recover the task");
                    }
                }
                Err(_) => {}
            },
            () = cancel.cancelled() => {
                // The cancel is already recorded; drop the execution.
                abort.abort();
            }
            () = stop.cancelled() => {
                // The node is stopping and the grace period is over: hand the task back
                // now (queued for its retry, or Failed) rather than leave it Running.
                abort.abort();
                if let Err(e) = self.lease_lost(id, worker, STOPPED) {
                    // Left Running: the next start recovers it.
                    tracing::error!(task = %id, error = %error_chain(&e), "could not hand back a cut-off task");
                }
            }
        }
        self.sched.unregister_running(id);
        self.sched.ended(&creator);
    }

    fn load_job(&self, task: Task) -> Result<Job> {
        self.store.read(|tx| {
            let function = tx
                .get::<Function>(&task.function_id().to_string())?
                .ok_or_else(|| {
                    PlatformError::WrongState("the task's function was deleted".into())
                })?;
            let mut inputs = BTreeMap::new();
            for (slot, s) in task.inputs() {
                if let Some((id, approved)) = &s.file {
                    let f = tx.get::<InputFile>(&id.to_string())?.ok_or_else(|| {
                        PlatformError::WrongState(format!(
                            "input file {id} of slot {slot:?} was deleted"
                        ))
                    })?;
                    inputs.insert(slot.clone(), (f, *approved));
                }
            }
            let mut outputs = BTreeMap::new();
            for (slot, s) in task.outputs() {
                let id = s
                    .file
                    .ok_or_else(|| PlatformError::node(format!("output slot {slot:?} is empty")))?;
                let f = tx.get::<OutputFile>(&id.to_string())?.ok_or_else(|| {
                    PlatformError::WrongState(format!(
                        "output file {id} of slot {slot:?} was deleted"
                    ))
                })?;
                outputs.insert(slot.clone(), f);
            }
            Ok(Job {
                task,
                function,
                inputs,
                outputs,
            })
        })
    }

    /// Reads an input's ciphertext, checks it is exactly what was approved, decrypts it.
    fn fetch_input(
        &self,
        slot: &str,
        file: &InputFile,
        approved: &Digest,
    ) -> std::result::Result<Vec<u8>, RunError> {
        let fail =
            |msg: String| RunError::Failed(format!("input slot {slot:?} ({}): {msg}", file.id));
        if &file.ciphertext_digest != approved {
            return Err(fail("the file's digest is not the one approved".into()));
        }
        let mut source = self.open_input(file).map_err(|e| fail(error_chain(&e)))?;
        let len = source.len();
        if len > self.config.max_input_bytes.saturating_add(1 << 20) {
            return Err(fail(format!(
                "{len} bytes is more than the node's input limit of {}",
                self.config.max_input_bytes
            )));
        }
        let mut ciphertext = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        source
            .read_to_end(&mut ciphertext)
            .map_err(|e| fail(e.to_string()))?;
        let actual = {
            let mut h = Hasher::new();
            h.update(&ciphertext);
            h.finish()
        };
        if &actual != approved {
            return Err(fail(format!(
                "ciphertext digest mismatch: approved {approved}, found {actual} (the file was changed)"
            )));
        }
        let key = key_of(file.key.as_bytes())?;
        cella_crypto::stream::unseal_to_vec(&ciphertext, &key)
            .map_err(|e| fail(format!("cannot decrypt: {e}")))
    }

    async fn execute(self: Arc<Self>, task: Task) -> std::result::Result<Completed, RunError> {
        let job = self
            .load_job(task)
            .map_err(|e| RunError::Failed(error_chain(&e)))?;
        let me = Arc::clone(&self);
        let inputs_job = job.inputs.clone();
        let (plain_inputs, payload) = tokio::task::spawn_blocking(move || {
            let mut plain = BTreeMap::new();
            for (slot, (file, approved)) in &inputs_job {
                plain.insert(slot.clone(), me.fetch_input(slot, file, approved)?);
            }
            Ok::<_, RunError>(plain)
        })
        .await
        .map_err(|e| RunError::Failed(format!("input worker failed: {e}")))
        .and_then(|r| r)
        .and_then(|plain| {
            let payload = self
                .read_payload(&job.function)
                .map_err(|e| RunError::Failed(error_chain(&e)))?;
            Ok((plain, payload))
        })?;

        let executor = self
            .executors
            .get(job.function.spec.executor)
            .map_err(|e| RunError::Failed(e.to_string()))?;
        let staged = StagedTask {
            task_id: job.task.id(),
            function_id: job.function.id,
            function_name: job.function.spec.name.clone(),
            executor: job.function.spec.executor,
            payload,
            payload_digest: job.function.payload_digest,
            runtime: job.function.spec.runtime.clone(),
            reuse: job.function.spec.reuse,
            arguments: job.task.arguments().clone(),
            deadline: self.config.task_deadline,
        };
        let mut io = TaskIo::new(
            plain_inputs,
            job.outputs.keys().cloned(),
            IoLimits::for_task(
                self.config.max_output_bytes,
                self.config.max_task_output_bytes,
                job.function.spec.max_output_bytes,
            ),
        );
        let run = tokio::time::timeout(
            self.config.task_deadline + DEADLINE_GRACE,
            executor.execute(&staged, &mut io),
        )
        .await
        .map_err(|_| {
            RunError::Failed(format!(
                "function ran past its deadline of {:?}",
                self.config.task_deadline
            ))
        })?;
        let outcome = run.map_err(|e| match e {
            ExecutionError::Function { message } => {
                RunError::Failed(format!("function failed: {message}"))
            }
            ExecutionError::Internal { message } => {
                tracing::error!(task = %job.task.id(), %message, "executor failed");
                RunError::Failed("the executor failed (see the node's log)".into())
            }
            ExecutionError::Unavailable { summary, message } => {
                tracing::error!(task = %job.task.id(), %summary, %message, "executor failed");
                RunError::Failed(format!(
                    "the executor failed: {summary} (the node's log has the details)"
                ))
            }
            other => RunError::Failed(other.to_string()),
        })?;

        let plain_outputs = io.into_outputs();
        let me = Arc::clone(&self);
        let out_files = job.outputs.clone();
        let task_id = job.task.id();
        let outputs = tokio::task::spawn_blocking(move || {
            me.seal_outputs(task_id, &out_files, plain_outputs)
        })
        .await
        .map_err(|e| RunError::Failed(format!("output worker failed: {e}")))??;
        Ok(Completed {
            result: TaskResult {
                return_value: outcome.return_value,
                log: outcome.log,
                outputs: outputs
                    .iter()
                    .map(|(slot, (_, c))| (slot.clone(), c.ciphertext_digest))
                    .collect(),
                usage: outcome.usage,
                receipt: outcome.receipt,
            },
            outputs: outputs.into_values().collect(),
        })
    }

    fn seal_outputs(
        &self,
        task: TaskId,
        files: &BTreeMap<String, OutputFile>,
        mut plain: BTreeMap<String, Vec<u8>>,
    ) -> std::result::Result<BTreeMap<String, (OutputFile, OutputContent)>, RunError> {
        let mut written: BTreeMap<String, (OutputFile, OutputContent)> = BTreeMap::new();
        // This run's outputs go to blobs of their own; only the commit that records the
        // result makes them the outputs' content (see `record`).
        let version = crate::auth::random_bytes::<8>()
            .map(u64::from_be_bytes)
            .map_err(|e| RunError::Failed(format!("output version: {e}")))?;
        for (slot, file) in files {
            let data = plain.remove(slot).unwrap_or_default();
            let sealed = key_of(file.key.as_bytes()).and_then(|key| {
                cella_crypto::stream::seal_to_vec(&data, &key)
                    .map_err(|e| RunError::Failed(format!("sealing output {slot:?}: {e}")))
            });
            let stored = sealed.and_then(|ct| {
                self.write_output(file, version, &ct)
                    .map(|d| (d, ct.len() as u64))
                    .map_err(|e| RunError::Failed(format!("output slot {slot:?}: {e}")))
            });
            match stored {
                Ok((ciphertext_digest, size)) => {
                    written.insert(
                        slot.clone(),
                        (
                            file.clone(),
                            OutputContent {
                                ciphertext_digest,
                                size,
                                task,
                                version: Some(version),
                            },
                        ),
                    );
                }
                Err(e) => {
                    for (f, _) in written.values() {
                        self.discard_output(f, version);
                    }
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    /// Records a run's outcome if `worker` still holds the task; otherwise (canceled
    /// meanwhile) throws the outputs away.
    fn record(&self, id: TaskId, worker: &str, outcome: std::result::Result<Completed, RunError>) {
        let outputs: Vec<(OutputFile, u64)> = match &outcome {
            Ok(c) => c
                .outputs
                .iter()
                .filter_map(|(f, content)| content.version.map(|v| (f.clone(), v)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let discard = || outputs.iter().for_each(|(f, v)| self.discard_output(f, *v));
        let recorded = self.store.write(|tx| {
            let Some(mut task) = tx.get::<Task>(&id.to_string())? else {
                return Ok::<_, PlatformError>(None);
            };
            if !task.is_held_by(worker) {
                return Ok(None);
            }
            let now = now_ms();
            match outcome {
                Ok(done) => {
                    for (file, content) in done.outputs {
                        let mut current = tx.get::<OutputFile>(&file.key())?.ok_or_else(|| {
                            PlatformError::WrongState(format!(
                                "output file {} was deleted",
                                file.id
                            ))
                        })?;
                        if let Some(c) = &current.content {
                            return Err(PlatformError::WrongState(format!(
                                "output file {} was already written by {}",
                                file.id, c.task
                            )));
                        }
                        current.content = Some(content);
                        tx.put(&current)?;
                    }
                    task.finish(done.result, now)?;
                    audit_as(
                        tx,
                        NODE_ACTOR,
                        AuditAction::TaskFinished,
                        Subject::ran(&task),
                    )?;
                }
                Err(RunError::Failed(reason)) => {
                    task.fail(reason, now)?;
                    audit_as(tx, NODE_ACTOR, AuditAction::TaskFailed, Subject::ran(&task))?;
                }
            }
            tx.put(&task)?;
            Ok(Some(task))
        });
        match recorded {
            Ok(Some(task)) => self.observe_ended(&task),
            Ok(None) => discard(),
            Err(e) => {
                discard();
                tracing::error!(task = %id, error = %error_chain(&e), "could not record the result");
                // Record the failure itself, so the task does not stay Running.
                let reason = format!("recording the result failed: {}", error_chain(&e));
                let failed = self.store.write(|tx| {
                    if let Some(mut t) = tx.get::<Task>(&id.to_string())?
                        && t.status() == TaskStatus::Running
                    {
                        t.fail(reason, now_ms())?;
                        tx.put(&t)?;
                        return Ok::<_, PlatformError>(Some(t));
                    }
                    Ok(None)
                });
                match failed {
                    Ok(Some(t)) => self.observe_ended(&t),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(task = %id, error = %error_chain(&e), "could not mark the task failed");
                    }
                }
            }
        }
        self.sched.publish(id);
    }
}
