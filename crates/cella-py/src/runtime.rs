//! The one tokio runtime the SDK runs on: pyo3-async-runtimes' (so asyncio futures and
//! blocking calls share it), started at the first call.

use std::future::Future;

/// Runs `future` to completion on the SDK's runtime, blocking this thread. Callers
/// release the GIL first (`Python::detach`), so other Python threads keep running.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    pyo3_async_runtimes::tokio::get_runtime().block_on(future)
}
