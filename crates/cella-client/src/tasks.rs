//! Task calls, and watching a task until it ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cella_types::task::{InputSlot, OutputSlot, TaskDigest};
use cella_types::{
    Digest, FunctionId, InputFileId, InstanceReuse, OutputFileId, TaskStatus, UserName,
};
use futures::{Stream, StreamExt};

use crate::Client;
use crate::error::{ClientError, Result};
use crate::proto;

/// How often [`Client::wait_terminal`] re-opens a watch that ended before the task did
/// (a node restart, a proxy timeout) before giving up.
const MAX_WATCH_RESTARTS: u32 = 5;
/// Pause before re-opening such a watch.
const WATCH_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The domain status of a wire status (`None` for `UNSPECIFIED` or a value this build
/// does not know).
pub fn task_status(status: i32) -> Option<TaskStatus> {
    use proto::TaskStatus as P;
    Some(match P::try_from(status).ok()? {
        P::Unspecified => return None,
        P::Created => TaskStatus::Created,
        P::DataAssigned => TaskStatus::DataAssigned,
        P::Approved => TaskStatus::Approved,
        P::Staged => TaskStatus::Staged,
        P::Running => TaskStatus::Running,
        P::Finished => TaskStatus::Finished,
        P::Failed => TaskStatus::Failed,
        P::Canceled => TaskStatus::Canceled,
    })
}

/// Whether `task` is Finished, Failed or Canceled.
pub fn is_terminal(task: &proto::TaskInfo) -> bool {
    task_status(task.status).is_some_and(TaskStatus::is_terminal)
}

/// Recomputes a task's digest from the fields the node shows
/// (`docs/formats/task-digest.md`), so an approver need not trust the node's
/// `task_digest`: compare the two before approving.
///
/// # Errors
///
/// [`ClientError::Protocol`] when a field is malformed or missing, notably an empty
/// `function_payload_digest` (a node too old to send it).
pub fn compute_task_digest(task: &proto::TaskInfo) -> Result<String> {
    let bad = |message: String| ClientError::Protocol {
        op: "GetTask",
        message: format!("cannot recompute the digest of {}: {message}", task.task_id),
    };
    let function_id: FunctionId = task.function_id.parse().map_err(|e| bad(format!("{e}")))?;
    if task.function_payload_digest.is_empty() {
        return Err(bad(
            "the node did not send the function's payload digest".to_owned()
        ));
    }
    let payload_digest: Digest = task
        .function_payload_digest
        .parse()
        .map_err(|e| bad(format!("{e}")))?;
    let reuse: InstanceReuse = task
        .function_reuse
        .parse()
        .map_err(|e| bad(format!("{e}")))?;
    let arguments: BTreeMap<String, String> = task
        .arguments
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let owners = |slot: &proto::TaskSlot| -> Result<BTreeSet<UserName>> {
        slot.owners
            .iter()
            .map(|o| {
                o.parse()
                    .map_err(|e| bad(format!("slot {}: {e}", slot.slot)))
            })
            .collect()
    };
    let mut inputs = BTreeMap::new();
    for slot in &task.inputs {
        let file = if slot.file_id.is_empty() {
            None
        } else {
            let id: InputFileId = slot.file_id.parse().map_err(|e| bad(format!("{e}")))?;
            let digest: Digest = slot
                .ciphertext_digest
                .parse()
                .map_err(|e| bad(format!("input slot {}: {e}", slot.slot)))?;
            Some((id, digest))
        };
        let entry = InputSlot {
            owners: owners(slot)?,
            optional: slot.optional,
            file,
        };
        if inputs.insert(slot.slot.clone(), entry).is_some() {
            return Err(bad(format!("input slot {} is listed twice", slot.slot)));
        }
    }
    let mut outputs = BTreeMap::new();
    for slot in &task.outputs {
        let file = if slot.file_id.is_empty() {
            None
        } else {
            let id: OutputFileId = slot.file_id.parse().map_err(|e| bad(format!("{e}")))?;
            Some(id)
        };
        let entry = OutputSlot {
            owners: owners(slot)?,
            file,
        };
        if outputs.insert(slot.slot.clone(), entry).is_some() {
            return Err(bad(format!("output slot {} is listed twice", slot.slot)));
        }
    }
    let digest = TaskDigest {
        function_id,
        payload_digest,
        reuse,
        arguments: &arguments,
        inputs: &inputs,
        outputs: &outputs,
    }
    .compute();
    Ok(digest.to_hex())
}

/// The updates of one task, from [`Client::watch_task`]: the task now, then after every
/// status change, ending after a terminal status.
pub struct TaskWatch {
    inner: tonic::Streaming<proto::TaskInfo>,
}

impl std::fmt::Debug for TaskWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskWatch(..)")
    }
}

impl TaskWatch {
    /// The next update, or `None` when the node ended the stream.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] when the stream breaks.
    pub async fn next_update(&mut self) -> Result<Option<proto::TaskInfo>> {
        self.next().await.transpose()
    }
}

impl Stream for TaskWatch {
    type Item = Result<proto::TaskInfo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|s| ClientError::status("WatchTask", s))))
    }
}

impl Client {
    /// Creates a task binding `function_id` to `arguments` and naming the owners of each
    /// input and output slot.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn create_task(
        &self,
        function_id: &str,
        arguments: HashMap<String, String>,
        inputs: Vec<proto::SlotOwners>,
        outputs: Vec<proto::SlotOwners>,
    ) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::CreateTaskRequest {
            function_id: function_id.to_owned(),
            arguments,
            inputs,
            outputs,
        })?;
        Ok(self
            .task_service()
            .create_task(request)
            .await
            .map_err(|s| ClientError::status("CreateTask", s))?
            .into_inner())
    }

    /// Gets a task the caller participates in.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn get_task(&self, task_id: &str) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::GetTaskRequest {
            task_id: task_id.to_owned(),
        })?;
        Ok(self
            .task_service()
            .get_task(request)
            .await
            .map_err(|s| ClientError::status("GetTask", s))?
            .into_inner())
    }

    /// Fills slots the caller owns with files the caller owns (slots are write-once).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn assign_data(
        &self,
        task_id: &str,
        inputs: Vec<proto::SlotFile>,
        outputs: Vec<proto::SlotFile>,
    ) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::AssignDataRequest {
            task_id: task_id.to_owned(),
            inputs,
            outputs,
        })?;
        Ok(self
            .task_service()
            .assign_data(request)
            .await
            .map_err(|s| ClientError::status("AssignData", s))?
            .into_inner())
    }

    /// Approves the task digest (hex) the caller has checked; the node refuses it when
    /// it is no longer the task's current digest.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn approve_task(&self, task_id: &str, task_digest: &str) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::ApproveTaskRequest {
            task_id: task_id.to_owned(),
            task_digest: task_digest.to_owned(),
        })?;
        Ok(self
            .task_service()
            .approve_task(request)
            .await
            .map_err(|s| ClientError::status("ApproveTask", s))?
            .into_inner())
    }

    /// Queues an approved task (creator only).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn invoke_task(&self, task_id: &str) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::InvokeTaskRequest {
            task_id: task_id.to_owned(),
        })?;
        Ok(self
            .task_service()
            .invoke_task(request)
            .await
            .map_err(|s| ClientError::status("InvokeTask", s))?
            .into_inner())
    }

    /// Cancels a task in any non-terminal status (any participant).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn cancel_task(&self, task_id: &str) -> Result<proto::TaskInfo> {
        let request = self.authed(proto::CancelTaskRequest {
            task_id: task_id.to_owned(),
        })?;
        Ok(self
            .task_service()
            .cancel_task(request)
            .await
            .map_err(|s| ClientError::status("CancelTask", s))?
            .into_inner())
    }

    /// Watches a task: the stream yields it now and after every status change, and ends
    /// after a terminal status.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn watch_task(&self, task_id: &str) -> Result<TaskWatch> {
        let request = self.authed(proto::WatchTaskRequest {
            task_id: task_id.to_owned(),
        })?;
        let inner = self
            .task_service()
            .watch_task(request)
            .await
            .map_err(|s| ClientError::status("WatchTask", s))?
            .into_inner();
        Ok(TaskWatch { inner })
    }

    /// Waits until the task is Finished, Failed or Canceled and returns it then. Built on
    /// [`watch_task`](Self::watch_task); a watch that ends early is re-opened a few times.
    /// A Failed or Canceled task is returned, not an error: check its status.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`], or
    /// [`ClientError::Protocol`] when the watch keeps ending before the task does.
    pub async fn wait_terminal(&self, task_id: &str) -> Result<proto::TaskInfo> {
        let mut restarts = 0;
        loop {
            let mut watch = self.watch_task(task_id).await?;
            while let Some(task) = watch.next_update().await? {
                if is_terminal(&task) {
                    return Ok(task);
                }
            }
            let task = self.get_task(task_id).await?;
            if is_terminal(&task) {
                return Ok(task);
            }
            restarts += 1;
            if restarts > MAX_WATCH_RESTARTS {
                return Err(ClientError::Protocol {
                    op: "WatchTask",
                    message: format!(
                        "the watch of {task_id} ended {restarts} times before the task did"
                    ),
                });
            }
            tracing::debug!(task_id, restarts, "watch ended early; re-opening it");
            tokio::time::sleep(WATCH_RESTART_DELAY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, owners: &[&str], file_id: &str, digest: &str) -> proto::TaskSlot {
        proto::TaskSlot {
            slot: name.to_owned(),
            owners: owners.iter().map(|o| (*o).to_owned()).collect(),
            optional: false,
            file_id: file_id.to_owned(),
            ciphertext_digest: digest.to_owned(),
        }
    }

    #[test]
    fn digest_is_recomputed_canonically_from_what_the_node_shows() {
        let function_id = FunctionId::new();
        let input_id = InputFileId::new();
        let output_id = OutputFileId::new();
        let payload = Digest::of(b"echo");
        let file_digest = Digest::of(b"ciphertext");
        let u = |s: &str| s.parse::<UserName>().unwrap();

        let arguments = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let inputs = BTreeMap::from([
            (
                "left".to_owned(),
                InputSlot {
                    owners: [u("alice"), u("bob")].into(),
                    optional: false,
                    file: Some((input_id, file_digest)),
                },
            ),
            (
                "right".to_owned(),
                InputSlot {
                    owners: [u("carol")].into(),
                    optional: false,
                    file: None,
                },
            ),
        ]);
        let outputs = BTreeMap::from([(
            "out".to_owned(),
            OutputSlot {
                owners: [u("alice")].into(),
                file: Some(output_id),
            },
        )]);
        let expected = TaskDigest {
            function_id,
            payload_digest: payload,
            reuse: InstanceReuse::Never,
            arguments: &arguments,
            inputs: &inputs,
            outputs: &outputs,
        }
        .compute()
        .to_hex();

        // As the node might send it: maps unordered, owners and slots in any order.
        let mut task = proto::TaskInfo {
            task_id: "task-x".to_owned(),
            function_id: function_id.to_string(),
            function_payload_digest: payload.to_hex(),
            arguments: HashMap::from([
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
            ]),
            inputs: vec![
                slot("right", &["carol"], "", ""),
                slot(
                    "left",
                    &["bob", "alice"],
                    &input_id.to_string(),
                    &file_digest.to_hex(),
                ),
            ],
            outputs: vec![slot("out", &["alice"], &output_id.to_string(), "")],
            ..Default::default()
        };
        assert_eq!(compute_task_digest(&task).unwrap(), expected);

        // Anything covered changes it.
        task.arguments.insert("a".to_owned(), "9".to_owned());
        assert_ne!(compute_task_digest(&task).unwrap(), expected);
        task.arguments.insert("a".to_owned(), "1".to_owned());
        task.outputs[0].owners.push("mallory".to_owned());
        assert_ne!(compute_task_digest(&task).unwrap(), expected);
        task.outputs[0].owners.pop();
        assert_eq!(compute_task_digest(&task).unwrap(), expected);
        task.function_reuse = "same-function".to_owned();
        assert_ne!(compute_task_digest(&task).unwrap(), expected);
        task.function_reuse = "sometimes".to_owned();
        assert!(compute_task_digest(&task).is_err());
        task.function_reuse = "never".to_owned();
        assert_eq!(compute_task_digest(&task).unwrap(), expected);

        // Missing or malformed fields are refused, not guessed.
        task.function_payload_digest.clear();
        assert!(matches!(
            compute_task_digest(&task),
            Err(ClientError::Protocol { .. })
        ));
        task.function_payload_digest = payload.to_hex();
        task.inputs.push(slot("right", &["carol"], "", ""));
        assert!(
            compute_task_digest(&task)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn wire_status_maps_to_domain_status() {
        assert_eq!(task_status(0), None);
        assert_eq!(task_status(99), None);
        assert_eq!(
            task_status(proto::TaskStatus::DataAssigned as i32),
            Some(TaskStatus::DataAssigned)
        );
        let mut task = proto::TaskInfo {
            status: proto::TaskStatus::Running as i32,
            ..Default::default()
        };
        assert!(!is_terminal(&task));
        task.status = proto::TaskStatus::Canceled as i32;
        assert!(is_terminal(&task));
    }
}
