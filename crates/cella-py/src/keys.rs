//! File keys and local sealing: the sealed stream format of `cella-crypto`
//! (docs/formats/sealed-file.md), the code `cella file encrypt/decrypt` runs.
//!
//! Outputs are written to a temporary file beside the destination (mode 0600) and
//! renamed into place only when complete, so a failed unseal never leaves partial
//! plaintext behind.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use cella_client::proto;
use cella_crypto::FileKey as Key;
use cella_crypto::stream::{self, DEFAULT_CHUNK_SIZE, StreamSummary};
use pyo3::prelude::*;
use tempfile::NamedTempFile;

use crate::error::{InvalidInputError, SealError, chain};

/// A 256-bit file key. Its `repr` is redacted; `hex()` reveals it (keep it secret: it
/// decrypts the file).
#[pyclass(frozen, from_py_object, module = "cella")]
#[derive(Clone)]
pub(crate) struct FileKey {
    pub(crate) key: Key,
}

impl FileKey {
    /// The key as the API's `FileCrypto` for the sealed format.
    pub(crate) fn crypto(&self) -> proto::FileCrypto {
        proto::FileCrypto {
            schema: cella_client::SCHEMA_CELLA_SEALED_V1.to_owned(),
            key: self.key.as_bytes().to_vec(),
        }
    }
}

#[pymethods]
impl FileKey {
    /// A new random key.
    #[staticmethod]
    fn generate() -> Self {
        FileKey {
            key: Key::generate(),
        }
    }
    /// The key written as 64 hex digits (as in a `cella` key file).
    #[staticmethod]
    fn from_hex(text: &str) -> PyResult<Self> {
        let key = text
            .trim()
            .parse::<Key>()
            .map_err(|e| InvalidInputError::new_err(format!("not a file key: {e}")))?;
        Ok(FileKey { key })
    }
    /// Reads a `cella` key file (hex).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot read key file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_hex(&text).map_err(|_| {
            InvalidInputError::new_err(format!(
                "key file {} does not hold a file key",
                path.display()
            ))
        })
    }
    /// Writes the key as a new file (mode 0600) that the CLI can read; refuses to
    /// replace an existing file.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let write = || -> io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(self.key.to_hex().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        write().map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot write key file {}: {e}",
                path.display()
            ))
        })
    }
    /// The key as 64 hex digits: a secret.
    fn hex(&self) -> String {
        self.key.to_hex().to_string()
    }
    fn __repr__(&self) -> &'static str {
        "FileKey(<redacted>)"
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.key.as_bytes() == other.key.as_bytes()
    }
}

/// What sealing a file produced.
#[pyclass(frozen, get_all, module = "cella")]
#[derive(Clone, Debug)]
pub(crate) struct Sealed {
    /// Plaintext bytes.
    plaintext_len: u64,
    /// Bytes of the sealed file.
    ciphertext_len: u64,
    /// SHA-256 of the sealed file (hex): its identity on the node.
    ciphertext_digest: String,
}

impl From<StreamSummary> for Sealed {
    fn from(s: StreamSummary) -> Self {
        Sealed {
            plaintext_len: s.plaintext_len,
            ciphertext_len: s.ciphertext_len,
            ciphertext_digest: s.ciphertext_digest.to_hex(),
        }
    }
}

#[pymethods]
impl Sealed {
    fn __repr__(&self) -> String {
        format!(
            "Sealed(plaintext_len={}, ciphertext_len={}, ciphertext_digest={:?})",
            self.plaintext_len, self.ciphertext_len, self.ciphertext_digest
        )
    }
}

/// A temporary file in the directory of `dest`, so it can be renamed onto `dest`.
pub(crate) fn temp_beside(dest: &Path) -> PyResult<NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".cella-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| {
            os_error(
                format!("cannot create a temporary file in {}", dir.display()),
                &e,
            )
        })
}

/// An `OSError` saying `what`, with `err`'s causes.
pub(crate) fn os_error(what: String, err: &io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("{what}: {}", chain(err)))
}

/// Opens `path` for reading.
fn open(path: &Path) -> PyResult<File> {
    File::open(path).map_err(|e| os_error(format!("cannot open {}", path.display()), &e))
}

/// Syncs `tmp` and renames it onto `out`; an existing `out` is replaced only when
/// `replace`.
pub(crate) fn persist(tmp: NamedTempFile, out: &Path, replace: bool) -> PyResult<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| os_error(format!("cannot sync {}", out.display()), &e))?;
    let persisted = if replace {
        tmp.persist(out)
    } else {
        tmp.persist_noclobber(out)
    };
    persisted
        .map(drop)
        .map_err(|e| os_error(format!("cannot write {}", out.display()), &e.error))
}

/// Seals the file at `path` into `out` under `key`.
pub(crate) fn seal_to(path: &Path, out: &Path, key: &Key) -> PyResult<Sealed> {
    let input = BufReader::new(open(path)?);
    let tmp = temp_beside(out)?;
    let mut writer = BufWriter::new(tmp);
    let summary = stream::seal(input, &mut writer, key, DEFAULT_CHUNK_SIZE).map_err(|e| {
        SealError::new_err(format!("sealing {} failed: {}", path.display(), chain(&e)))
    })?;
    let tmp = writer
        .into_inner()
        .map_err(|e| os_error("cannot flush the sealed file".to_owned(), e.error()))?;
    persist(tmp, out, true)?;
    Ok(summary.into())
}

/// Unseals the file at `path` into `out` (mode 0600), written only on success.
pub(crate) fn unseal_to(path: &Path, out: &Path, key: &Key, replace: bool) -> PyResult<Sealed> {
    let input = BufReader::new(open(path)?);
    let tmp = temp_beside(out)?;
    let mut writer = BufWriter::new(tmp);
    let summary = stream::unseal(input, &mut writer, key).map_err(|e| {
        SealError::new_err(format!("cannot unseal {}: {}", path.display(), chain(&e)))
    })?;
    let tmp = writer
        .into_inner()
        .map_err(|e| os_error("cannot flush the plaintext".to_owned(), e.error()))?;
    persist(tmp, out, replace)?;
    Ok(summary.into())
}

/// Reads the whole sealed file once: proves `key` opens it (so a tampered or truncated
/// file is refused before anything is sent) and computes its digest.
pub(crate) fn check_sealed(path: &Path, key: &Key) -> PyResult<StreamSummary> {
    let input = BufReader::new(open(path)?);
    stream::unseal(input, io::sink(), key).map_err(|e| {
        SealError::new_err(format!(
            "{} does not open with this key: {}",
            path.display(),
            chain(&e)
        ))
    })
}

/// Seals the file at `path` into `out` (the sealed stream format) and returns the key:
/// a new one, or `key` when given. Keep the key: it is what decrypts the file.
#[pyfunction]
#[pyo3(signature = (path, out, key=None))]
pub(crate) fn seal_file(
    py: Python<'_>,
    path: PathBuf,
    out: PathBuf,
    key: Option<FileKey>,
) -> PyResult<FileKey> {
    let key = key.unwrap_or_else(FileKey::generate);
    py.detach(|| seal_to(&path, &out, &key.key))?;
    Ok(key)
}

/// Unseals the sealed file at `path` into `out` with `key`; returns the plaintext
/// length. Raises `SealError` for the wrong key or a tampered or truncated file, and
/// then writes nothing.
#[pyfunction]
pub(crate) fn unseal_file(
    py: Python<'_>,
    path: PathBuf,
    out: PathBuf,
    key: FileKey,
) -> PyResult<u64> {
    py.detach(|| unseal_to(&path, &out, &key.key, true))
        .map(|s| s.plaintext_len)
}

/// Digest and sizes of the sealed file at `path`, checking that `key` opens it whole.
#[pyfunction]
pub(crate) fn inspect_sealed(py: Python<'_>, path: PathBuf, key: FileKey) -> PyResult<Sealed> {
    py.detach(|| check_sealed(&path, &key.key))
        .map(Sealed::from)
}
