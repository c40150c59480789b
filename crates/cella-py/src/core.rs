//! The SDK's calls, written once as async functions over `cella-client`. The sync
//! `Client` and the asyncio `AsyncClient` (crate::client) are both thin wrappers that
//! run these, so both take exactly the same security path as the CLI: attestation in
//! the TLS handshake, the sealed format of `cella-crypto`, the task digest recomputed
//! by `cella_client::compute_task_digest` before anything is approved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cella_client::{Client, proto};
use cella_types::TaskStatus;
use pyo3::prelude::*;

use crate::error::{
    CellaError, DigestMismatchError, InvalidInputError, NotLoggedInError, ProtocolError,
    TaskFailedError, to_py,
};
use crate::keys::{self, FileKey};
use crate::types::{File, Function, LoginInfo, Task, User};

/// A function's payload as given from Python: `bytes`, a builtin's name as `str`, or a
/// path (`os.PathLike`, e.g. `pathlib.Path`) to read it from. A `str` is never taken
/// as a path, so a builtin's name cannot be mistaken for a file.
#[derive(FromPyObject)]
pub(crate) enum Payload {
    /// The payload itself.
    Bytes(Vec<u8>),
    /// A builtin's name.
    Name(String),
    /// A file holding the payload.
    Path(PathBuf),
}

impl Payload {
    /// The payload's bytes.
    async fn read(self) -> PyResult<Vec<u8>> {
        match self {
            Payload::Bytes(b) => Ok(b),
            Payload::Name(n) => Ok(n.into_bytes()),
            Payload::Path(p) => tokio::fs::read(&p)
                .await
                .map_err(|e| keys::os_error(format!("cannot read payload {}", p.display()), &e)),
        }
    }
}

/// What a function is, as `register_function` takes it.
pub(crate) struct FunctionArgs {
    pub(crate) name: String,
    pub(crate) executor: String,
    pub(crate) payload: Payload,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) arguments: HashMap<String, Option<String>>,
    pub(crate) description: String,
    pub(crate) runtime: Option<String>,
    pub(crate) public: bool,
    pub(crate) allowed_users: Vec<String>,
    pub(crate) reuse: Option<String>,
    /// The function's cap on a task's total output bytes; `None`: the node's cap.
    pub(crate) max_output_bytes: Option<u64>,
    /// How many times it may be invoked; `None`: unlimited.
    pub(crate) quota: Option<u64>,
}

/// One connection and session, shared by every clone of a Python client.
pub(crate) struct Inner {
    client: Mutex<Client>,
    user: Mutex<Option<String>>,
}

/// Locks `m`; a panic elsewhere while it was held leaves a value that is still whole
/// (a client handle, a user name), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking file work off the async runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> PyResult<T> + Send + 'static,
) -> PyResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CellaError::new_err(format!("a file worker thread failed: {e}")))?
}

/// A progress callback that calls the Python callable with the bytes so far; the first
/// exception it raises is kept, and later calls are skipped, so it can be raised once
/// the transfer returns.
fn progress_callback(
    callback: Option<Py<PyAny>>,
) -> (Option<cella_client::Progress>, Arc<Mutex<Option<PyErr>>>) {
    let failure = Arc::new(Mutex::new(None));
    let Some(callback) = callback else {
        return (None, failure);
    };
    let kept = Arc::clone(&failure);
    let progress: cella_client::Progress = Box::new(move |done| {
        let mut slot = lock(&kept);
        if slot.is_none()
            && let Err(e) = Python::attach(|py| callback.call1(py, (done,)).map(drop))
        {
            *slot = Some(e);
        }
    });
    (Some(progress), failure)
}

/// Raises the progress callback's exception, if it raised one.
fn raise_progress_failure(failure: &Mutex<Option<PyErr>>) -> PyResult<()> {
    match lock(failure).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One output downloaded for `result`: its ciphertext in a temporary file.
struct Downloaded {
    slot: String,
    sealed: tempfile::NamedTempFile,
    key: FileKey,
}

impl Inner {
    /// A session over `client`, not logged in.
    pub(crate) fn new(client: Client) -> Arc<Self> {
        Arc::new(Inner {
            client: Mutex::new(client),
            user: Mutex::new(None),
        })
    }

    /// A handle on the connection with the current token (cheap: it shares the
    /// connection).
    pub(crate) fn client(&self) -> Client {
        lock(&self.client).clone()
    }

    /// The node address.
    pub(crate) fn addr(&self) -> String {
        lock(&self.client).addr().to_owned()
    }

    /// The user logged in, if any.
    pub(crate) fn user(&self) -> Option<String> {
        lock(&self.user).clone()
    }

    pub(crate) async fn login(
        self: Arc<Self>,
        user: String,
        password: String,
    ) -> PyResult<LoginInfo> {
        let mut client = self.client();
        let info = client.login(&user, &password).await.map_err(to_py)?;
        *lock(&self.client) = client;
        *lock(&self.user) = Some(info.user.clone());
        Ok(LoginInfo::from(&info))
    }

    pub(crate) async fn logout(self: Arc<Self>) -> PyResult<()> {
        let mut client = self.client();
        client.logout().await.map_err(to_py)?;
        *lock(&self.client) = client;
        *lock(&self.user) = None;
        Ok(())
    }

    pub(crate) async fn register_user(
        self: Arc<Self>,
        user: String,
        password: String,
        roles: Vec<String>,
    ) -> PyResult<User> {
        let client = self.client();
        let info = client.register_user(&user, &password, &roles).await;
        info.map(User::from).map_err(to_py)
    }

    pub(crate) async fn change_password(
        self: Arc<Self>,
        old_password: String,
        new_password: String,
        user: Option<String>,
    ) -> PyResult<()> {
        let client = self.client();
        let done = client.change_password(user.as_deref(), &old_password, &new_password);
        done.await.map_err(to_py)
    }

    pub(crate) async fn list_users(self: Arc<Self>) -> PyResult<Vec<User>> {
        let users = self.client().list_users().await.map_err(to_py)?;
        Ok(users.into_iter().map(User::from).collect())
    }

    pub(crate) async fn register_function(self: Arc<Self>, f: FunctionArgs) -> PyResult<Function> {
        let slot = |name: String| proto::SlotSpec {
            name,
            optional: false,
        };
        let mut arguments: Vec<_> = f.arguments.into_iter().collect();
        arguments.sort();
        let spec = proto::FunctionSpec {
            name: f.name,
            description: f.description,
            executor: f.executor,
            runtime: f.runtime.unwrap_or_default(),
            arguments: arguments
                .into_iter()
                .map(|(name, default_value)| proto::ArgumentSpec {
                    name,
                    default_value,
                    overridable: true,
                })
                .collect(),
            inputs: f.inputs.into_iter().map(slot).collect(),
            outputs: f.outputs.into_iter().map(slot).collect(),
            public: f.public,
            allowed_users: f.allowed_users,
            quota: f.quota,
            reuse: f.reuse.unwrap_or_default(),
            max_output_bytes: f.max_output_bytes,
        };
        let payload = f.payload.read().await?;
        let info = self.client().register_function(spec, payload).await;
        info.map(Function::from).map_err(to_py)
    }

    pub(crate) async fn get_function(self: Arc<Self>, function_id: String) -> PyResult<Function> {
        let info = self.client().get_function(&function_id, false).await;
        info.map(Function::from).map_err(to_py)
    }

    pub(crate) async fn list_functions(
        self: Arc<Self>,
        mine_only: bool,
    ) -> PyResult<Vec<Function>> {
        let all = self
            .client()
            .list_functions(mine_only)
            .await
            .map_err(to_py)?;
        Ok(all.into_iter().map(Function::from).collect())
    }

    pub(crate) async fn disable_function(
        self: Arc<Self>,
        function_id: String,
    ) -> PyResult<Function> {
        let info = self.client().disable_function(&function_id).await;
        info.map(Function::from).map_err(to_py)
    }

    pub(crate) async fn delete_function(self: Arc<Self>, function_id: String) -> PyResult<()> {
        self.client()
            .delete_function(&function_id)
            .await
            .map_err(to_py)
    }

    /// Uploads a sealed file: first reads it whole to prove `key` opens it and to get
    /// its digest (so a tampered file is refused here, before anything is sent), then
    /// streams it.
    pub(crate) async fn upload(
        self: Arc<Self>,
        path: PathBuf,
        key: FileKey,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<File> {
        let (p, k) = (path.clone(), key.key.clone());
        let summary = blocking(move || keys::check_sealed(&p, &k)).await?;
        let (progress, failure) = progress_callback(progress);
        let digest = summary.ciphertext_digest.to_hex();
        let uploaded = self
            .client()
            .upload_input(path.as_path(), key.crypto(), &digest, progress)
            .await;
        raise_progress_failure(&failure)?;
        uploaded.map(File::from).map_err(to_py)
    }

    pub(crate) async fn register_input_url(
        self: Arc<Self>,
        url: String,
        key: FileKey,
        ciphertext_digest: String,
    ) -> PyResult<File> {
        let info = self
            .client()
            .register_input_url(&url, key.crypto(), &ciphertext_digest)
            .await;
        info.map(File::from).map_err(to_py)
    }

    pub(crate) async fn register_output(
        self: Arc<Self>,
        key: FileKey,
        url: Option<String>,
    ) -> PyResult<File> {
        let info = self
            .client()
            .register_output(key.crypto(), url.as_deref())
            .await;
        info.map(File::from).map_err(to_py)
    }

    pub(crate) async fn get_file(self: Arc<Self>, file_id: String) -> PyResult<File> {
        self.client()
            .get_file(&file_id)
            .await
            .map(File::from)
            .map_err(to_py)
    }

    pub(crate) async fn list_files(self: Arc<Self>) -> PyResult<Vec<File>> {
        let files = self.client().list_files().await.map_err(to_py)?;
        Ok(files.into_iter().map(File::from).collect())
    }

    pub(crate) async fn delete_file(self: Arc<Self>, file_id: String) -> PyResult<()> {
        self.client().delete_file(&file_id).await.map_err(to_py)
    }

    /// Downloads the ciphertext of `file_id` into `sealed`, refusing it unless its
    /// SHA-256 is `expected`.
    async fn download_checked(
        &self,
        file_id: &str,
        expected: &str,
        sealed: &tempfile::NamedTempFile,
        progress: Option<cella_client::Progress>,
    ) -> PyResult<u64> {
        let std_file = sealed
            .as_file()
            .try_clone()
            .map_err(|e| keys::os_error("cannot open a temporary file".to_owned(), &e))?;
        let mut writer = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
        let summary = self
            .client()
            .download_file(file_id, &mut writer, progress)
            .await
            .map_err(to_py)?;
        if expected.is_empty() || summary.ciphertext_digest != expected {
            return Err(ProtocolError::new_err(format!(
                "the download of {file_id} has digest {} but {} was expected; it was discarded",
                summary.ciphertext_digest,
                if expected.is_empty() {
                    "(none)"
                } else {
                    expected
                }
            )));
        }
        Ok(summary.bytes)
    }

    /// Downloads the ciphertext of a file the caller owns to `out` (replaced only when
    /// complete and when its digest is the file's); returns the bytes written.
    pub(crate) async fn download(
        self: Arc<Self>,
        file_id: String,
        out: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let info = self.client().get_file(&file_id).await.map_err(to_py)?;
        let tmp = keys::temp_beside(&out)?;
        let (progress, failure) = progress_callback(progress);
        let bytes = self
            .download_checked(&file_id, &info.ciphertext_digest, &tmp, progress)
            .await;
        raise_progress_failure(&failure)?;
        let bytes = bytes?;
        blocking(move || keys::persist(tmp, &out, true)).await?;
        Ok(bytes)
    }

    pub(crate) async fn create_task(
        self: Arc<Self>,
        function_id: String,
        inputs: HashMap<String, Vec<String>>,
        outputs: HashMap<String, Vec<String>>,
        arguments: HashMap<String, String>,
    ) -> PyResult<Task> {
        let owners = |m: HashMap<String, Vec<String>>| {
            let mut slots: Vec<_> = m
                .into_iter()
                .map(|(slot, owners)| proto::SlotOwners { slot, owners })
                .collect();
            slots.sort_by(|a, b| a.slot.cmp(&b.slot));
            slots
        };
        let task = self
            .client()
            .create_task(&function_id, arguments, owners(inputs), owners(outputs))
            .await;
        task.map(Task::from).map_err(to_py)
    }

    pub(crate) async fn get_task(self: Arc<Self>, task_id: String) -> PyResult<Task> {
        self.client()
            .get_task(&task_id)
            .await
            .map(Task::from)
            .map_err(to_py)
    }

    pub(crate) async fn list_tasks(self: Arc<Self>) -> PyResult<Vec<Task>> {
        let tasks = self.client().list_tasks().await.map_err(to_py)?;
        Ok(tasks.into_iter().map(Task::from).collect())
    }

    pub(crate) async fn assign(
        self: Arc<Self>,
        task_id: String,
        inputs: HashMap<String, String>,
        outputs: HashMap<String, String>,
    ) -> PyResult<Task> {
        if inputs.is_empty() && outputs.is_empty() {
            return Err(InvalidInputError::new_err(
                "nothing to assign: give inputs={slot: file_id} or outputs={slot: file_id}",
            ));
        }
        let files = |m: HashMap<String, String>| {
            let mut slots: Vec<_> = m
                .into_iter()
                .map(|(slot, file_id)| proto::SlotFile { slot, file_id })
                .collect();
            slots.sort_by(|a, b| a.slot.cmp(&b.slot));
            slots
        };
        let task = self
            .client()
            .assign_data(&task_id, files(inputs), files(outputs))
            .await;
        task.map(Task::from).map_err(to_py)
    }

    /// Approves the task as the node shows it now, only after recomputing its digest
    /// locally: refuses when the node's digest is not what its fields hash to, when it
    /// is not the `reviewed` digest the caller checked earlier, or when `confirm`
    /// (called with the task) returns false. Nothing is sent when it refuses.
    pub(crate) async fn approve(
        self: Arc<Self>,
        task_id: String,
        reviewed: Option<String>,
        confirm: Option<Py<PyAny>>,
    ) -> PyResult<Task> {
        let client = self.client();
        let task = client.get_task(&task_id).await.map_err(to_py)?;
        if task.task_digest.is_empty() {
            return Err(InvalidInputError::new_err(format!(
                "{task_id} has no digest to approve yet: its inputs and outputs are not all assigned"
            )));
        }
        let local = cella_client::compute_task_digest(&task).map_err(to_py)?;
        if local != task.task_digest {
            return Err(DigestMismatchError::new_err(format!(
                "refusing to approve {task_id}: the node reports digest {} but the task it shows \
                 hashes to {local} (docs/formats/task-digest.md); nothing was sent",
                task.task_digest
            )));
        }
        if let Some(reviewed) = reviewed.filter(|r| *r != local) {
            return Err(DigestMismatchError::new_err(format!(
                "refusing to approve {task_id}: it changed since it was reviewed at digest \
                 {reviewed}; it is now at {local} (call describe() on the task again); \
                 nothing was sent"
            )));
        }
        if let Some(confirm) = confirm {
            let shown = Task::from(task.clone());
            let yes = Python::attach(|py| confirm.call1(py, (shown,))?.bind(py).is_truthy())?;
            if !yes {
                return Err(CellaError::new_err(format!(
                    "not approved: confirm returned false for {task_id}; nothing was sent"
                )));
            }
        }
        let approved = client.approve_task(&task_id, &local).await;
        approved.map(Task::from).map_err(to_py)
    }

    pub(crate) async fn invoke(self: Arc<Self>, task_id: String) -> PyResult<Task> {
        let task = self.client().invoke_task(&task_id).await;
        task.map(Task::from).map_err(to_py)
    }

    pub(crate) async fn cancel(self: Arc<Self>, task_id: String) -> PyResult<Task> {
        let task = self.client().cancel_task(&task_id).await;
        task.map(Task::from).map_err(to_py)
    }

    pub(crate) async fn wait(self: Arc<Self>, task_id: String) -> PyResult<Task> {
        let task = self.client().wait_terminal(&task_id).await;
        task.map(Task::from).map_err(to_py)
    }

    /// Downloads every output of a Finished task that the caller owns, each checked
    /// against the digest the task result records. `keys` must hold a key for each of
    /// them, and nothing else.
    async fn download_outputs(
        &self,
        task_id: &str,
        mut keys: HashMap<String, FileKey>,
    ) -> PyResult<Vec<Downloaded>> {
        let me = self
            .user()
            .ok_or_else(|| NotLoggedInError::new_err("not logged in: call login first"))?;
        let task = self.client().get_task(task_id).await.map_err(to_py)?;
        let why = || {
            if task.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", task.reason)
            }
        };
        match cella_client::task_status(task.status) {
            Some(TaskStatus::Finished) => {}
            Some(s @ (TaskStatus::Failed | TaskStatus::Canceled)) => {
                return Err(TaskFailedError::new_err(format!(
                    "{task_id} is {s}{}; it has no results",
                    why()
                )));
            }
            _ => {
                return Err(InvalidInputError::new_err(format!(
                    "{task_id} is {}: results exist only once it is Finished",
                    Task::from(task.clone()).status_name()
                )));
            }
        }
        let digests: HashMap<&str, &str> = task
            .result
            .iter()
            .flat_map(|r| &r.outputs)
            .map(|o| (o.slot.as_str(), o.ciphertext_digest.as_str()))
            .collect();
        let mut out = Vec::new();
        for slot in task.outputs.iter().filter(|s| s.owners.contains(&me)) {
            cella_types::function::check_name("output slot", &slot.slot)
                .map_err(|e| ProtocolError::new_err(e.to_string()))?;
            let key = keys.remove(&slot.slot).ok_or_else(|| {
                InvalidInputError::new_err(format!(
                    "no key for output slot {:?} of {task_id}: pass keys={{{:?}: key}}",
                    slot.slot, slot.slot
                ))
            })?;
            let sealed = tempfile::NamedTempFile::new()
                .map_err(|e| keys::os_error("cannot create a temporary file".to_owned(), &e))?;
            let expected = digests.get(slot.slot.as_str()).copied().unwrap_or_default();
            self.download_checked(&slot.file_id, expected, &sealed, None)
                .await?;
            out.push(Downloaded {
                slot: slot.slot.clone(),
                sealed,
                key,
            });
        }
        if let Some(extra) = keys.keys().next() {
            return Err(InvalidInputError::new_err(format!(
                "{extra:?} is not an output slot of {task_id} that {me} owns"
            )));
        }
        Ok(out)
    }

    /// Downloads and unseals the caller's outputs into `out_dir/<slot>` (mode 0600,
    /// each written only when whole); returns the paths by slot.
    pub(crate) async fn result(
        self: Arc<Self>,
        task_id: String,
        keys: HashMap<String, FileKey>,
        out_dir: PathBuf,
        overwrite: bool,
    ) -> PyResult<HashMap<String, PathBuf>> {
        let outputs = self.download_outputs(&task_id, keys).await?;
        blocking(move || {
            std::fs::create_dir_all(&out_dir)
                .map_err(|e| keys::os_error(format!("cannot create {}", out_dir.display()), &e))?;
            let mut written = HashMap::new();
            for o in outputs {
                let path = out_dir.join(&o.slot);
                keys::unseal_to(o.sealed.path(), &path, &o.key.key, overwrite)?;
                written.insert(o.slot, path);
            }
            Ok(written)
        })
        .await
    }

    pub(crate) async fn verify_receipt(
        self: Arc<Self>,
        task_id: String,
        policy: Option<PathBuf>,
        node_policy: bool,
        outputs: HashMap<String, Vec<u8>>,
        collateral: Vec<PathBuf>,
    ) -> PyResult<crate::receipt::Receipt> {
        let client = self.client();
        crate::receipt::verify(client, task_id, policy, node_policy, outputs, collateral).await
    }

    /// Downloads and unseals the caller's outputs into memory, by slot.
    pub(crate) async fn result_bytes(
        self: Arc<Self>,
        task_id: String,
        keys: HashMap<String, FileKey>,
    ) -> PyResult<HashMap<String, Vec<u8>>> {
        let outputs = self.download_outputs(&task_id, keys).await?;
        blocking(move || {
            let mut plain = HashMap::new();
            for o in outputs {
                plain.insert(o.slot, unseal_in_memory(o.sealed.path(), &o.key)?);
            }
            Ok(plain)
        })
        .await
    }
}

/// The plaintext of the sealed file at `path`.
fn unseal_in_memory(path: &Path, key: &FileKey) -> PyResult<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|e| keys::os_error(format!("cannot open {}", path.display()), &e))?;
    let mut plain = Vec::new();
    cella_crypto::stream::unseal(std::io::BufReader::new(file), &mut plain, &key.key).map_err(
        |e| {
            crate::error::SealError::new_err(format!(
                "cannot unseal an output: {}",
                crate::error::chain(&e)
            ))
        },
    )?;
    Ok(plain)
}
