//! `cella._native`: the Python SDK's native module (PyO3).
//!
//! It is a thin layer over `cella-client`, `cella-crypto` and `cella-types`, so a
//! Python caller gets the checks the CLI makes, by the same code: the node is attested
//! in the TLS handshake before any secret is sent, files are sealed in the format
//! `cella file encrypt` writes, and `approve` recomputes the task digest locally before
//! approving. The Python package `cella` (sdk/python) re-exports it; its typed stubs
//! are `sdk/python/python/cella/_native.pyi`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod core;
mod error;
mod keys;
mod receipt;
mod runtime;
mod types;
mod watch;

use pyo3::prelude::*;

/// The module's contents.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(m)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<watch::TaskWatch>()?;
    m.add_class::<watch::AsyncTaskWatch>()?;
    m.add_class::<keys::FileKey>()?;
    m.add_class::<keys::Sealed>()?;
    m.add_class::<types::LoginInfo>()?;
    m.add_class::<types::User>()?;
    m.add_class::<types::Function>()?;
    m.add_class::<types::File>()?;
    m.add_class::<types::Slot>()?;
    m.add_class::<types::Task>()?;
    m.add_class::<receipt::Receipt>()?;
    m.add_function(wrap_pyfunction!(keys::seal_file, m)?)?;
    m.add_function(wrap_pyfunction!(keys::unseal_file, m)?)?;
    m.add_function(wrap_pyfunction!(keys::inspect_sealed, m)?)?;
    Ok(())
}
