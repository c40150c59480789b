//! The values calls return: frozen Python classes built from the API's messages. They
//! hold plain data (strings, lists, dicts), so they can be printed, compared and put in
//! a DataFrame; nothing in them is a secret (file keys are [`crate::keys::FileKey`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use cella_client::proto;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `Some(s)` unless `s` is empty: the API's "unset" is the empty string.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// What a successful login returns (the session token stays inside the client).
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct LoginInfo {
    /// The user logged in.
    user: String,
    /// The user's roles.
    roles: Vec<String>,
    /// When the session expires, milliseconds since the Unix epoch.
    expires_at_ms: i64,
}

impl From<&cella_client::LoginInfo> for LoginInfo {
    fn from(info: &cella_client::LoginInfo) -> Self {
        LoginInfo {
            user: info.user.clone(),
            roles: info.roles.clone(),
            expires_at_ms: info.expires_at_ms,
        }
    }
}

#[pymethods]
impl LoginInfo {
    fn __repr__(&self) -> String {
        format!(
            "LoginInfo(user={:?}, roles={:?}, expires_at_ms={})",
            self.user, self.roles, self.expires_at_ms
        )
    }
}

/// A user of the node.
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct User {
    /// The user's name.
    name: String,
    /// Its roles.
    roles: Vec<String>,
    /// When it was created, milliseconds since the Unix epoch.
    created_at_ms: i64,
}

impl From<proto::UserInfo> for User {
    fn from(u: proto::UserInfo) -> Self {
        User {
            name: u.name,
            roles: u.roles,
            created_at_ms: u.created_at_ms,
        }
    }
}

#[pymethods]
impl User {
    fn __repr__(&self) -> String {
        format!("User(name={:?}, roles={:?})", self.name, self.roles)
    }
}

/// A registered function.
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct Function {
    /// Its id (`fn-…`).
    function_id: String,
    /// Who registered it.
    owner: String,
    /// Its name.
    name: String,
    /// `builtin`, `wasm` or `libos`.
    executor: String,
    /// The LibOS runtime image, for `libos`.
    runtime: Option<String>,
    /// Its description.
    description: String,
    /// Input slot names.
    inputs: Vec<String>,
    /// Output slot names.
    outputs: Vec<String>,
    /// SHA-256 of the payload (hex): what a task's digest binds.
    payload_digest: String,
    /// Payload length in bytes.
    payload_len: u64,
    /// The cap on a task's total output bytes it set; `None`: the node's cap.
    max_output_bytes: Option<u64>,
    /// How many invocations it allows; `None`: unlimited.
    quota: Option<u64>,
    /// Whether it is disabled.
    disabled: bool,
    /// When it was registered, milliseconds since the Unix epoch.
    created_at_ms: i64,
}

impl From<proto::FunctionInfo> for Function {
    fn from(f: proto::FunctionInfo) -> Self {
        let spec = f.spec.unwrap_or_default();
        Function {
            function_id: f.function_id,
            owner: f.owner,
            name: spec.name,
            executor: spec.executor,
            runtime: non_empty(&spec.runtime),
            description: spec.description,
            inputs: spec.inputs.into_iter().map(|s| s.name).collect(),
            outputs: spec.outputs.into_iter().map(|s| s.name).collect(),
            max_output_bytes: spec.max_output_bytes,
            quota: spec.quota,
            payload_digest: f.payload_digest,
            payload_len: f.payload_len,
            disabled: f.disabled,
            created_at_ms: f.created_at_ms,
        }
    }
}

#[pymethods]
impl Function {
    fn __repr__(&self) -> String {
        format!(
            "Function(function_id={:?}, name={:?}, executor={:?}, owner={:?})",
            self.function_id, self.name, self.executor, self.owner
        )
    }
}

/// A file registered on the node (an input, or a place for an output).
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct File {
    /// Its id (`in-…` or `out-…`).
    file_id: String,
    /// Who registered it.
    owner: String,
    /// Where the node keeps it (`blob:…` or a URL).
    location: String,
    /// Its encryption schema (`cella-sealed-v1`).
    schema: String,
    /// SHA-256 of the ciphertext (hex); `None` for an output not yet written.
    ciphertext_digest: Option<String>,
    /// Ciphertext bytes.
    size: u64,
    /// When it was registered, milliseconds since the Unix epoch.
    created_at_ms: i64,
    /// The task that wrote it, for an output.
    written_by_task: Option<String>,
}

impl From<proto::FileInfo> for File {
    fn from(f: proto::FileInfo) -> Self {
        File {
            ciphertext_digest: non_empty(&f.ciphertext_digest),
            written_by_task: non_empty(&f.written_by_task),
            file_id: f.file_id,
            owner: f.owner,
            location: f.location,
            schema: f.schema,
            size: f.size,
            created_at_ms: f.created_at_ms,
        }
    }
}

#[pymethods]
impl File {
    fn __repr__(&self) -> String {
        format!(
            "File(file_id={:?}, size={}, ciphertext_digest={:?})",
            self.file_id, self.size, self.ciphertext_digest
        )
    }
}

/// One input or output slot of a task.
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// The slot's name.
    slot: String,
    /// Who may fill it (and, for an output, read it).
    owners: Vec<String>,
    /// Whether the task may run with it empty.
    optional: bool,
    /// The file assigned, if any.
    file_id: Option<String>,
    /// The assigned input file's ciphertext digest, if any.
    ciphertext_digest: Option<String>,
}

impl From<&proto::TaskSlot> for Slot {
    fn from(s: &proto::TaskSlot) -> Self {
        Slot {
            slot: s.slot.clone(),
            owners: s.owners.clone(),
            optional: s.optional,
            file_id: non_empty(&s.file_id),
            ciphertext_digest: non_empty(&s.ciphertext_digest),
        }
    }
}

#[pymethods]
impl Slot {
    fn __repr__(&self) -> String {
        format!(
            "Slot(slot={:?}, owners={:?}, file_id={:?})",
            self.slot, self.owners, self.file_id
        )
    }
}

/// A task as the node shows it to the caller.
#[pyclass(frozen, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct Task {
    /// The message as received: `approve` and `result` work from it.
    pub(crate) info: proto::TaskInfo,
}

impl From<proto::TaskInfo> for Task {
    fn from(info: proto::TaskInfo) -> Self {
        Task { info }
    }
}

impl Task {
    /// The status name, `"Unknown(n)"` for a code this SDK does not know.
    pub(crate) fn status_name(&self) -> String {
        cella_client::task_status(self.info.status).map_or_else(
            || format!("Unknown({})", self.info.status),
            |s| s.as_str().to_owned(),
        )
    }
}

#[pymethods]
impl Task {
    /// The task's id (`task-…`).
    #[getter]
    fn task_id(&self) -> &str {
        &self.info.task_id
    }
    /// Who created it.
    #[getter]
    fn creator(&self) -> &str {
        &self.info.creator
    }
    /// The function it runs.
    #[getter]
    fn function_id(&self) -> &str {
        &self.info.function_id
    }
    /// The function's owner.
    #[getter]
    fn function_owner(&self) -> &str {
        &self.info.function_owner
    }
    /// SHA-256 of the function's payload (hex), as the digest binds it.
    #[getter]
    fn function_payload_digest(&self) -> &str {
        &self.info.function_payload_digest
    }
    /// The function's instance reuse (`never` or `same-function`).
    #[getter]
    fn function_reuse(&self) -> &str {
        &self.info.function_reuse
    }
    /// The task's arguments.
    #[getter]
    fn arguments(&self) -> HashMap<String, String> {
        self.info.arguments.clone()
    }
    /// Its input slots.
    #[getter]
    fn inputs(&self) -> Vec<Slot> {
        self.info.inputs.iter().map(Slot::from).collect()
    }
    /// Its output slots.
    #[getter]
    fn outputs(&self) -> Vec<Slot> {
        self.info.outputs.iter().map(Slot::from).collect()
    }
    /// Everyone who must approve it.
    #[getter]
    fn participants(&self) -> Vec<String> {
        self.info.participants.clone()
    }
    /// Who has approved its current digest.
    #[getter]
    fn approved_by(&self) -> Vec<String> {
        self.info.approved_by.clone()
    }
    /// `Created`, `DataAssigned`, `Approved`, `Staged`, `Running`, `Finished`, `Failed`
    /// or `Canceled`.
    #[getter]
    fn status(&self) -> String {
        self.status_name()
    }
    /// Whether the task is Finished, Failed or Canceled.
    #[getter]
    fn is_terminal(&self) -> bool {
        cella_client::is_terminal(&self.info)
    }
    /// The digest the node reports (hex); `approve` recomputes it before trusting it.
    #[getter]
    fn task_digest(&self) -> Option<String> {
        non_empty(&self.info.task_digest)
    }
    /// Why it failed or was canceled.
    #[getter]
    fn reason(&self) -> Option<String> {
        non_empty(&self.info.reason)
    }
    /// How many times it was started.
    #[getter]
    fn attempts(&self) -> u32 {
        self.info.attempts
    }
    /// The function's return value, once Finished.
    #[getter]
    fn return_value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.info
            .result
            .as_ref()
            .map(|r| PyBytes::new(py, &r.return_value))
    }
    /// The function's log lines, once Finished.
    #[getter]
    fn log(&self) -> Vec<String> {
        self.info
            .result
            .as_ref()
            .map(|r| r.log.clone())
            .unwrap_or_default()
    }
    /// Each written output's ciphertext digest (hex) by slot, once Finished.
    #[getter]
    fn output_digests(&self) -> HashMap<String, String> {
        self.info
            .result
            .iter()
            .flat_map(|r| &r.outputs)
            .map(|o| (o.slot.clone(), o.ciphertext_digest.clone()))
            .collect()
    }
    /// The signed receipt's bytes, once Finished (`None` without one).
    #[getter]
    fn receipt<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.info
            .result
            .as_ref()
            .filter(|r| !r.receipt.is_empty())
            .map(|r| PyBytes::new(py, &r.receipt))
    }
    /// Recomputes the task digest from the fields shown (docs/formats/task-digest.md).
    ///
    /// Raises `ProtocolError` when a field is missing or malformed.
    fn compute_digest(&self) -> PyResult<String> {
        cella_client::compute_task_digest(&self.info).map_err(crate::error::to_py)
    }
    /// What approving this task covers, one line per item, for a person to read.
    fn describe(&self) -> String {
        describe(&self.info)
    }
    fn __repr__(&self) -> String {
        format!(
            "Task(task_id={:?}, status={:?}, function_id={:?})",
            self.info.task_id,
            self.status_name(),
            self.info.function_id
        )
    }
}

/// The text `Task.describe` returns: everything the task digest binds.
fn describe(t: &proto::TaskInfo) -> String {
    let mut text = format!(
        "task {} at digest {}\n  function    {} (owner {}), payload sha256 {}, reuse {}",
        t.task_id,
        t.task_digest,
        t.function_id,
        t.function_owner,
        t.function_payload_digest,
        if t.function_reuse.is_empty() {
            "never"
        } else {
            &t.function_reuse
        }
    );
    for (k, v) in t.arguments.iter().collect::<BTreeMap<_, _>>() {
        // Writing to a String cannot fail.
        let _ = write!(text, "\n  argument    {k}={v:?}");
    }
    let file = |s: &proto::TaskSlot| non_empty(&s.file_id).unwrap_or_else(|| "(empty)".into());
    for s in &t.inputs {
        let _ = write!(
            text,
            "\n  input       {} {} owners {} sha256 {}",
            s.slot,
            file(s),
            s.owners.join(","),
            non_empty(&s.ciphertext_digest).unwrap_or_else(|| "-".into())
        );
    }
    for s in &t.outputs {
        let _ = write!(
            text,
            "\n  output      {} {} owners {}",
            s.slot,
            file(s),
            s.owners.join(",")
        );
    }
    text
}
