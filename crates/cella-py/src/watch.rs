//! Watching a task: `for task in client.watch(id)` and `async for task in
//! client.watch(id)`, one state shared by both. The iterator yields the task now and
//! after every status change, and stops after a terminal status (Finished, Failed or
//! Canceled); a stream the node ends early is checked against the task's status, so
//! the iterator never stops silently on a task that is still running.

use std::sync::Arc;

use cella_client::{Client, is_terminal};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;

use crate::error::{ProtocolError, to_py};
use crate::runtime::block_on;
use crate::types::Task;

/// Where one watch is.
struct Stream {
    /// The open stream, once opened.
    watch: Option<cella_client::TaskWatch>,
    /// Set after the terminal update was yielded, or after an error ended the watch.
    done: bool,
}

/// One watch of one task.
pub(crate) struct WatchState {
    client: Client,
    task_id: String,
    stream: tokio::sync::Mutex<Stream>,
}

impl WatchState {
    /// A watch of `task_id`, opened at the first update asked for.
    pub(crate) fn new(client: Client, task_id: String) -> Arc<Self> {
        Arc::new(WatchState {
            client,
            task_id,
            stream: tokio::sync::Mutex::new(Stream {
                watch: None,
                done: false,
            }),
        })
    }

    /// The next update, `None` after the terminal one.
    async fn next(self: Arc<Self>) -> PyResult<Option<Task>> {
        let mut s = self.stream.lock().await;
        if s.done {
            return Ok(None);
        }
        let result = self.advance(&mut s).await;
        match &result {
            Ok(task) if is_terminal(task) => s.done = true,
            Ok(_) => {}
            Err(_) => s.done = true,
        }
        result.map(|t| Some(Task::from(t))).map_err(to_py_or_self)
    }

    /// Reads one update, opening the stream first and checking an early end.
    async fn advance(&self, s: &mut Stream) -> Result<cella_client::proto::TaskInfo, WatchError> {
        if s.watch.is_none() {
            s.watch = Some(self.client.watch_task(&self.task_id).await?);
        }
        if let Some(watch) = s.watch.as_mut()
            && let Some(task) = watch.next_update().await?
        {
            return Ok(task);
        }
        s.watch = None;
        let task = self.client.get_task(&self.task_id).await?;
        if is_terminal(&task) {
            return Ok(task);
        }
        Err(WatchError::EndedEarly(format!(
            "the watch of {} ended while the task is {}; watch it again",
            self.task_id,
            Task::from(task).status_name()
        )))
    }
}

/// Why a watch step failed.
enum WatchError {
    /// The client call failed.
    Client(cella_client::ClientError),
    /// The node ended the stream before the task ended.
    EndedEarly(String),
}

impl From<cella_client::ClientError> for WatchError {
    fn from(e: cella_client::ClientError) -> Self {
        WatchError::Client(e)
    }
}

/// The Python exception for a failed watch step.
fn to_py_or_self(e: WatchError) -> PyErr {
    match e {
        WatchError::Client(e) => to_py(e),
        WatchError::EndedEarly(text) => ProtocolError::new_err(text),
    }
}

/// `for task in client.watch(task_id)`: blocks (without the GIL) for each update.
#[pyclass(module = "cella")]
pub(crate) struct TaskWatch {
    pub(crate) state: Arc<WatchState>,
}

#[pymethods]
impl TaskWatch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Task>> {
        let state = Arc::clone(&self.state);
        py.detach(move || block_on(state.next()))
    }
}

/// `async for task in client.watch(task_id)`: awaits each update on the SDK's runtime.
#[pyclass(module = "cella")]
pub(crate) struct AsyncTaskWatch {
    pub(crate) state: Arc<WatchState>,
}

#[pymethods]
impl AsyncTaskWatch {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match state.next().await? {
                Some(task) => Ok(task),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}
