//! `cella.Client` (blocking) and `cella.AsyncClient` (asyncio): the same calls, from
//! one list, over [`Inner`]. The blocking client releases the GIL while it waits; the
//! async one returns awaitables resolved on the SDK's tokio runtime, so neither blocks
//! an event loop or another thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cella_client::ServerTrust;
use pyo3::prelude::*;

use crate::core::{FunctionArgs, Inner, Payload};
use crate::error::{InvalidInputError, to_py};
use crate::keys::FileKey;
use crate::receipt::Receipt;
use crate::runtime::block_on;
use crate::types::{File, Function, LoginInfo, Task, User};
use crate::watch::{AsyncTaskWatch, TaskWatch, WatchState};

/// How to trust the node: attest it under the policy file `policy` (as `cella login
/// --policy` does), or pin the certificate file `cert`.
fn trust(policy: Option<PathBuf>, cert: Option<PathBuf>) -> PyResult<ServerTrust> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            crate::keys::os_error(format!("cannot read {what} {}", path.display()), &e)
        })
    };
    match (policy, cert) {
        (Some(policy), None) => {
            // Read as the CLI reads it: bounded in size.
            let parsed = cella_attest::Policy::load(&policy).map_err(|e| match e {
                cella_attest::policy::PolicyError::Io { source, .. } => crate::keys::os_error(
                    format!("cannot read attestation policy {}", policy.display()),
                    &source,
                ),
                other => InvalidInputError::new_err(format!(
                    "attestation policy {}: {}",
                    policy.display(),
                    crate::error::chain(&other)
                )),
            })?;
            Ok(ServerTrust::attested(parsed))
        }
        (None, Some(cert)) => {
            let pem = read(&cert, "certificate")?;
            ServerTrust::pinned_pem(pem.as_bytes()).map_err(to_py)
        }
        _ => Err(InvalidInputError::new_err(
            "connect needs exactly one of policy= (the node's attestation policy, whose path \
             `cella serve` prints) or cert= (its certificate, to pin)",
        )),
    }
}

/// Connects and, for an attested node, appraises its evidence in the handshake.
async fn connect(
    addr: String,
    policy: Option<PathBuf>,
    cert: Option<PathBuf>,
) -> PyResult<Arc<Inner>> {
    let trust = trust(policy, cert)?;
    let client = cella_client::Client::connect_with_trust(&addr, trust)
        .await
        .map_err(to_py)?;
    Ok(Inner::new(client))
}

/// A blocking client for one node: for scripts and notebooks. Each call releases the
/// GIL while it waits.
#[pyclass(frozen, module = "cella")]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

/// An asyncio client for one node: each call returns an awaitable.
#[pyclass(frozen, module = "cella")]
pub(crate) struct AsyncClient {
    inner: Arc<Inner>,
}

/// Defines every call on both clients from one list: `Client.name(...)` runs
/// `Inner::name` to completion without the GIL, `AsyncClient.name(...)` returns it as
/// an awaitable. Extra items (connect, properties, watch) are given per client.
macro_rules! both_clients {
    (
        sync { $($sync_extra:item)* }
        async { $($async_extra:item)* }
        calls {
            $(
                $(#[$attr:meta])*
                fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $(=> $convert:expr)?;
            )*
        }
    ) => {
        #[pymethods]
        impl Client {
            $($sync_extra)*
            $(
                $(#[$attr])*
                fn $name(&self, py: Python<'_> $(, $arg: $ty)*) -> PyResult<$ret> {
                    let inner = Arc::clone(&self.inner);
                    py.detach(move || block_on(both_clients!(@call inner, $name, ($($arg),*) $(, $convert)?)))
                }
            )*
        }
        #[pymethods]
        impl AsyncClient {
            $($async_extra)*
            $(
                $(#[$attr])*
                fn $name<'py>(&self, py: Python<'py> $(, $arg: $ty)*) -> PyResult<Bound<'py, PyAny>> {
                    let inner = Arc::clone(&self.inner);
                    pyo3_async_runtimes::tokio::future_into_py(
                        py,
                        both_clients!(@call inner, $name, ($($arg),*) $(, $convert)?),
                    )
                }
            )*
        }
    };
    (@call $inner:ident, $name:ident, ($($arg:ident),*)) => {
        $inner.$name($($arg),*)
    };
    (@call $inner:ident, $name:ident, ($($arg:ident),*), $convert:expr) => {
        $inner.$name($convert($($arg),*))
    };
}

/// Builds [`FunctionArgs`] from `register_function`'s keyword arguments.
#[expect(clippy::too_many_arguments, reason = "it mirrors the Python signature")]
fn function_args(
    name: String,
    executor: String,
    payload: Payload,
    inputs: Vec<String>,
    outputs: Vec<String>,
    arguments: Option<HashMap<String, Option<String>>>,
    description: String,
    runtime: Option<String>,
    public: bool,
    allowed_users: Vec<String>,
    reuse: Option<String>,
    max_output_bytes: Option<u64>,
    quota: Option<u64>,
) -> FunctionArgs {
    FunctionArgs {
        name,
        executor,
        payload,
        inputs,
        outputs,
        arguments: arguments.unwrap_or_default(),
        description,
        runtime,
        public,
        allowed_users,
        reuse,
        max_output_bytes,
        quota,
    }
}

both_clients! {
    sync {
        /// Connects to the node at `addr` (`host:port`), attesting it under the policy
        /// file `policy` before anything is sent (or pinning the certificate `cert`).
        #[staticmethod]
        #[pyo3(signature = (addr, *, policy=None, cert=None))]
        fn connect(py: Python<'_>, addr: String, policy: Option<PathBuf>, cert: Option<PathBuf>) -> PyResult<Client> {
            let inner = py.detach(move || block_on(connect(addr, policy, cert)))?;
            Ok(Client { inner })
        }
        /// The node address.
        #[getter]
        fn addr(&self) -> String {
            self.inner.addr()
        }
        /// The user logged in, if any.
        #[getter]
        fn user(&self) -> Option<String> {
            self.inner.user()
        }
        /// Iterates over the task's updates until it is Finished, Failed or Canceled.
        fn watch(&self, task_id: String) -> TaskWatch {
            TaskWatch { state: WatchState::new(self.inner.client(), task_id) }
        }
    }
    async {
        /// Connects to the node at `addr` (`host:port`), attesting it under the policy
        /// file `policy` before anything is sent (or pinning the certificate `cert`).
        #[staticmethod]
        #[pyo3(signature = (addr, *, policy=None, cert=None))]
        fn connect(py: Python<'_>, addr: String, policy: Option<PathBuf>, cert: Option<PathBuf>) -> PyResult<Bound<'_, PyAny>> {
            pyo3_async_runtimes::tokio::future_into_py(py, async move {
                Ok(AsyncClient { inner: connect(addr, policy, cert).await? })
            })
        }
        /// The node address.
        #[getter]
        fn addr(&self) -> String {
            self.inner.addr()
        }
        /// The user logged in, if any.
        #[getter]
        fn user(&self) -> Option<String> {
            self.inner.user()
        }
        /// Iterates (`async for`) over the task's updates until it is Finished, Failed
        /// or Canceled.
        fn watch(&self, task_id: String) -> AsyncTaskWatch {
            AsyncTaskWatch { state: WatchState::new(self.inner.client(), task_id) }
        }
    }
    calls {
        /// Logs in; the session token stays in the client.
        fn login(user: String, password: String) -> LoginInfo;
        /// Revokes the session token on the node and forgets it.
        fn logout() -> ();
        /// Creates a user with `roles` (admin only).
        fn register_user(user: String, password: String, roles: Vec<String>) -> User;
        /// Changes the caller's password (or, for an admin, `user`'s).
        #[pyo3(signature = (old_password, new_password, *, user=None))]
        fn change_password(old_password: String, new_password: String, user: Option<String>) -> ();
        /// Every user (admin only).
        fn list_users() -> Vec<User>;
        /// Registers a function. `payload` is the builtin's name (`str`) for `builtin`,
        /// or the module / program as `bytes` or a `pathlib.Path` to read.
        /// `max_output_bytes` caps a task's total output (unset: the node's cap);
        /// `quota` caps its invocations (unset: unlimited).
        #[expect(clippy::too_many_arguments, reason = "keyword arguments of the Python signature")]
        #[pyo3(signature = (name, executor, payload, *, inputs=Vec::new(), outputs=Vec::new(), arguments=None, description=String::new(), runtime=None, public=false, allowed_users=Vec::new(), reuse=None, max_output_bytes=None, quota=None))]
        fn register_function(
            name: String,
            executor: String,
            payload: Payload,
            inputs: Vec<String>,
            outputs: Vec<String>,
            arguments: Option<HashMap<String, Option<String>>>,
            description: String,
            runtime: Option<String>,
            public: bool,
            allowed_users: Vec<String>,
            reuse: Option<String>,
            max_output_bytes: Option<u64>,
            quota: Option<u64>,
        ) -> Function => function_args;
        /// A function the caller may use.
        fn get_function(function_id: String) -> Function;
        /// The functions the caller may use (`mine_only`: those it owns).
        #[pyo3(signature = (*, mine_only=false))]
        fn list_functions(mine_only: bool) -> Vec<Function>;
        /// Disables a function (owner only).
        fn disable_function(function_id: String) -> Function;
        /// Deletes a function no unfinished task uses (owner only).
        fn delete_function(function_id: String) -> ();
        /// Uploads the sealed file at `path` as an input; `key` goes to the node over
        /// the attested channel. The file is checked whole against `key` first.
        /// `progress(bytes_sent)` is called as it streams.
        #[pyo3(signature = (path, key, *, progress=None))]
        fn upload(path: PathBuf, key: FileKey, progress: Option<Py<PyAny>>) -> File;
        /// Registers a sealed input the node reads from `url` (`file://…`).
        fn register_input_url(url: String, key: FileKey, ciphertext_digest: String) -> File;
        /// Registers a place for a task output, sealed under `key` (keep it).
        #[pyo3(signature = (key, *, url=None))]
        fn register_output(key: FileKey, url: Option<String>) -> File;
        /// One of the caller's files.
        fn get_file(file_id: String) -> File;
        /// The caller's files.
        fn list_files() -> Vec<File>;
        /// Deletes a file no unfinished task uses.
        fn delete_file(file_id: String) -> ();
        /// Downloads a file's ciphertext to `out` (checked against its digest).
        #[pyo3(signature = (file_id, out, *, progress=None))]
        fn download(file_id: String, out: PathBuf, progress: Option<Py<PyAny>>) -> u64;
        /// Creates a task: `inputs` and `outputs` map each slot to its owners.
        #[pyo3(signature = (function_id, *, inputs, outputs, arguments=HashMap::new()))]
        fn create_task(
            function_id: String,
            inputs: HashMap<String, Vec<String>>,
            outputs: HashMap<String, Vec<String>>,
            arguments: HashMap<String, String>,
        ) -> Task;
        /// A task the caller takes part in.
        fn get_task(task_id: String) -> Task;
        /// The tasks the caller takes part in.
        fn list_tasks() -> Vec<Task>;
        /// Fills slots the caller owns with files it owns (`{slot: file_id}`).
        #[pyo3(signature = (task_id, *, inputs=HashMap::new(), outputs=HashMap::new()))]
        fn assign(task_id: String, inputs: HashMap<String, String>, outputs: HashMap<String, String>) -> Task;
        /// Approves the task after recomputing its digest locally; refuses (raising
        /// `DigestMismatchError`, sending nothing) when the node's digest is not what the
        /// task hashes to or not `digest`, the one the caller reviewed. `confirm(task)`,
        /// if given, sees what is approved and must return true.
        #[pyo3(signature = (task_id, *, digest=None, confirm=None))]
        fn approve(task_id: String, digest: Option<String>, confirm: Option<Py<PyAny>>) -> Task;
        /// Queues an approved task (creator only).
        fn invoke(task_id: String) -> Task;
        /// Cancels a task that has not ended.
        fn cancel(task_id: String) -> Task;
        /// Waits until the task is Finished, Failed or Canceled, and returns it.
        fn wait(task_id: String) -> Task;
        /// Downloads and unseals the caller's outputs of a Finished task into
        /// `out_dir/<slot>`; `keys` maps each of those slots to its key.
        #[pyo3(signature = (task_id, keys, out_dir, *, overwrite=false))]
        fn result(task_id: String, keys: HashMap<String, FileKey>, out_dir: PathBuf, overwrite: bool) -> HashMap<String, PathBuf>;
        /// Like `result`, returning the plaintexts by slot.
        fn result_bytes(task_id: String, keys: HashMap<String, FileKey>) -> HashMap<String, Vec<u8>>;
        /// Verifies a Finished LibOS task's receipt offline (evidence → attested key →
        /// signed receipt → digests) and compares it with the task and with `outputs`,
        /// the plaintexts the caller decrypted by slot; `policy` (a file) or
        /// `node_policy=True` (the instance policy the node publishes) appraises the
        /// evidence, `collateral` files verify SGX quotes. Raises `ReceiptError` when
        /// anything does not hold.
        #[pyo3(signature = (task_id, *, policy=None, node_policy=false, outputs=HashMap::new(), collateral=Vec::new()))]
        fn verify_receipt(
            task_id: String,
            policy: Option<PathBuf>,
            node_policy: bool,
            outputs: HashMap<String, Vec<u8>>,
            collateral: Vec<PathBuf>,
        ) -> Receipt;
    }
}
