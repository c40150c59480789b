//! The blob store: immutable byte strings as files under one root directory.
//!
//! Blobs are ciphertexts uploaded by data owners, function payloads and task outputs: they
//! are already encrypted or not secret, so the store keeps them as they come and seals
//! nothing. Layout: `<root>/inputs/<input id>`, `<root>/outputs/<output id>[.<version>]`,
//! `<root>/payloads/<sha-256 hex>`; a [`BlobName`] can only name one of those.
//!
//! Writes go to a temporary file beside the destination, hashed on the way in; [`BlobWriter::commit`]
//! fsyncs it, renames it into place and fsyncs the directory, so a blob is either absent
//! or complete. An uncommitted writer removes its temporary file when dropped, and
//! [`BlobStore::open`] removes those a crash left behind. The store holds an exclusive
//! lock on `<root>/.lock` while open, so that this clean-up never removes another live
//! store's temporary files: open one `BlobStore` per root and share it.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cella_types::{Digest, Hasher, InputFileId, OutputFileId};

/// Sub-directory of uploaded input ciphertexts, named by input file id.
const INPUTS_DIR: &str = "inputs";
/// Sub-directory of task output ciphertexts, named by output file id.
const OUTPUTS_DIR: &str = "outputs";
/// Sub-directory of function payloads, named by their SHA-256 (so identical payloads are
/// stored once).
const PAYLOADS_DIR: &str = "payloads";
/// Every sub-directory, created on open and swept for temporary files.
const SUBDIRS: [&str; 3] = [INPUTS_DIR, OUTPUTS_DIR, PAYLOADS_DIR];

/// File name prefix of temporary files. Ids and hex digests never start with a dot, so
/// no committed blob can be mistaken for one.
const TEMP_PREFIX: &str = ".tmp-";
/// The lock file that makes a root directory exclusive to one open store.
const LOCK_FILE: &str = ".lock";

/// Mode of the store's directories: only the node's user lists or enters them.
const DIR_MODE: u32 = 0o700;
/// Mode of blob files: only the node's user reads them.
const FILE_MODE: u32 = 0o600;

/// Buffer in front of a blob's temporary file: uploads arrive in small messages, and
/// 64 KiB turns them into few large writes without holding much memory per upload.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Makes temporary file names unique within the process (with the pid and the clock
/// making them unique across processes and restarts).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A failed blob store operation.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A store directory could not be created.
    #[error("cannot create blob directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock blob store {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another open store (in this process or another) holds the lock.
    #[error("blob store {path} is already open elsewhere")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A leftover temporary file could not be listed or removed on open.
    #[error("cannot remove leftover temporary blob {path}")]
    CleanTemp {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A temporary file for a new blob could not be created.
    #[error("cannot create a temporary file for blob {name}")]
    CreateTemp {
        /// The blob being written.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Flushing or syncing a new blob failed.
    #[error("cannot write blob {name}")]
    Write {
        /// The blob being written.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The temporary file could not be renamed into place.
    #[error("cannot move blob {name} into place")]
    Rename {
        /// The blob being written.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A directory could not be fsynced after a rename or removal.
    #[error("cannot sync blob directory {path}")]
    SyncDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The written bytes do not have the expected digest; nothing was stored.
    #[error("blob {name} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The blob being written.
        name: BlobName,
        /// The digest the caller declared.
        expected: Digest,
        /// The digest of what was written.
        actual: Digest,
    },
    /// There is no such blob.
    #[error("blob {name} not found")]
    NotFound {
        /// The missing blob.
        name: BlobName,
    },
    /// A blob exists but could not be opened.
    #[error("cannot open blob {name}")]
    Open {
        /// The blob.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A blob's size could not be read.
    #[error("cannot read the size of blob {name}")]
    Stat {
        /// The blob.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A blob could not be removed.
    #[error("cannot remove blob {name}")]
    Remove {
        /// The blob.
        name: BlobName,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The name of a blob: its path relative to the store's root. Only the constructors
/// below make one, so a name never escapes the root.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BlobName {
    dir: &'static str,
    file: String,
}

impl BlobName {
    /// The ciphertext of an uploaded input file: `inputs/<id>`.
    pub fn input(id: InputFileId) -> Self {
        Self {
            dir: INPUTS_DIR,
            file: id.to_string(),
        }
    }

    /// The ciphertext of an output file: `outputs/<id>`.
    pub fn output(id: OutputFileId) -> Self {
        Self {
            dir: OUTPUTS_DIR,
            file: id.to_string(),
        }
    }

    /// One run's version of an output's ciphertext: `outputs/<id>.<version as 16 hex>`.
    /// A run writes its own version, so a run whose result is refused or discarded never
    /// touches the content another run recorded.
    pub fn output_version(id: OutputFileId, version: u64) -> Self {
        Self {
            dir: OUTPUTS_DIR,
            file: format!("{id}.{version:016x}"),
        }
    }

    /// A function payload with SHA-256 `digest`: `payloads/<hex>`.
    pub fn payload(digest: &Digest) -> Self {
        Self {
            dir: PAYLOADS_DIR,
            file: digest.to_hex(),
        }
    }
}

impl fmt::Display for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dir, self.file)
    }
}

impl fmt::Debug for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobName({self})")
    }
}

/// Blobs in a local directory. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Holds the exclusive lock on `<root>/.lock` for the store's lifetime.
    _lock: File,
}

impl BlobStore {
    /// Opens the store at `root`: creates it and its sub-directories (mode 0700) if
    /// needed, takes the root's lock, and removes temporary files a crash left behind.
    ///
    /// # Errors
    ///
    /// [`BlobError::CreateDir`], [`BlobError::Lock`], [`BlobError::Locked`] when another
    /// store has the root open, [`BlobError::CleanTemp`].
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let create_dir = |path: &Path| {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(|source| BlobError::CreateDir {
                    path: path.to_owned(),
                    source,
                })
        };
        create_dir(root)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(|source| BlobError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(BlobError::Locked { path: lock_path }),
            Err(TryLockError::Error(source)) => {
                return Err(BlobError::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
        for sub in SUBDIRS {
            let dir = root.join(sub);
            create_dir(&dir)?;
            remove_temp_files(&dir)?;
        }
        // Make the sub-directories' entries in the root durable.
        sync_dir(root)?;
        tracing::debug!(root = %root.display(), "opened blob store");
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    /// Starts writing blob `name`. The bytes go to a temporary file in the blob's
    /// directory until [`BlobWriter::commit`]; readers see the old blob (or none) until
    /// then.
    ///
    /// # Errors
    ///
    /// [`BlobError::CreateTemp`].
    pub fn create(&self, name: &BlobName) -> Result<BlobWriter, BlobError> {
        let dir = self.root.join(name.dir);
        let (temp, file) = create_temp(&dir).map_err(|source| BlobError::CreateTemp {
            name: name.clone(),
            source,
        })?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            temp: Some(temp),
            dir,
            path: self.path(name),
            name: name.clone(),
            hasher: Hasher::new(),
            len: 0,
        })
    }

    /// Opens blob `name` for reading.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when there is no such blob, [`BlobError::Open`] otherwise.
    pub fn open_read(&self, name: &BlobName) -> Result<File, BlobError> {
        File::open(self.path(name)).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BlobError::NotFound { name: name.clone() },
            _ => BlobError::Open {
                name: name.clone(),
                source,
            },
        })
    }

    /// The size of blob `name` in bytes.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when there is no such blob, [`BlobError::Stat`] otherwise.
    pub fn len(&self, name: &BlobName) -> Result<u64, BlobError> {
        match std::fs::metadata(self.path(name)) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::NotFound { name: name.clone() })
            }
            Err(source) => Err(BlobError::Stat {
                name: name.clone(),
                source,
            }),
        }
    }

    /// Removes blob `name`; whether it existed. The removal is fsynced. Readers that
    /// already opened the blob keep reading it.
    ///
    /// # Errors
    ///
    /// [`BlobError::Remove`], [`BlobError::SyncDir`].
    pub fn remove(&self, name: &BlobName) -> Result<bool, BlobError> {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {
                sync_dir(&self.root.join(name.dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobError::Remove {
                name: name.clone(),
                source,
            }),
        }
    }

    /// Where blob `name` lives (whether or not it exists).
    pub fn path(&self, name: &BlobName) -> PathBuf {
        self.root.join(name.dir).join(&name.file)
    }
}

/// A blob being written: implements [`Write`], hashing and counting the bytes. Nothing is
/// visible under the blob's name until [`BlobWriter::commit`]; dropping the writer
/// without committing removes its temporary file.
pub struct BlobWriter {
    /// `None` only while committing.
    file: Option<BufWriter<File>>,
    /// The temporary file; `None` once renamed into place.
    temp: Option<PathBuf>,
    dir: PathBuf,
    path: PathBuf,
    name: BlobName,
    hasher: Hasher,
    len: u64,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("name", &self.name)
            .field("written", &self.len)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// How many bytes have been written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Makes the blob durable and visible: flushes and fsyncs the temporary file, renames
    /// it over the blob's name (atomically replacing any blob of that name) and fsyncs
    /// the directory. Returns the SHA-256 and size of what was written.
    ///
    /// # Errors
    ///
    /// [`BlobError::Write`], [`BlobError::Rename`], [`BlobError::SyncDir`]; on error the
    /// temporary file is removed and the blob's name is unchanged, except after a failed
    /// directory sync, when the blob is in place but maybe not durable.
    pub fn commit(mut self) -> Result<(Digest, u64), BlobError> {
        let digest = std::mem::take(&mut self.hasher).finish();
        self.install()?;
        Ok((digest, self.len))
    }

    /// Commits only if what was written has SHA-256 `expected`; returns the size.
    ///
    /// # Errors
    ///
    /// [`BlobError::DigestMismatch`] (and the temporary file is removed), or as for
    /// [`BlobWriter::commit`].
    pub fn commit_if(mut self, expected: &Digest) -> Result<u64, BlobError> {
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != *expected {
            // Dropping `self` removes the temporary file.
            return Err(BlobError::DigestMismatch {
                name: self.name.clone(),
                expected: *expected,
                actual,
            });
        }
        self.install()?;
        Ok(self.len)
    }

    /// Flush, fsync, rename into place, fsync the directory.
    fn install(&mut self) -> Result<(), BlobError> {
        let write_err = |name: &BlobName, source| BlobError::Write {
            name: name.clone(),
            source,
        };
        let file = self
            .file
            .take()
            .ok_or_else(|| write_err(&self.name, io::Error::other("writer already closed")))?;
        let file = file
            .into_inner()
            .map_err(|e| write_err(&self.name, e.into_error()))?;
        file.sync_all().map_err(|e| write_err(&self.name, e))?;
        drop(file);
        if let Some(temp) = &self.temp {
            std::fs::rename(temp, &self.path).map_err(|source| BlobError::Rename {
                name: self.name.clone(),
                source,
            })?;
        }
        self.temp = None;
        sync_dir(&self.dir)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already closed"))?;
        let n = file.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.len += written.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Close before removing; buffered bytes are discarded with the file.
            drop(self.file.take().map(BufWriter::into_parts));
            if let Err(e) = std::fs::remove_file(&temp)
                && e.kind() != io::ErrorKind::NotFound
            {
                // `BlobStore::open` removes it on the next start.
                tracing::warn!(path = %temp.display(), error = %e, "cannot remove an aborted blob's temporary file");
            }
        }
    }
}

/// Creates a fresh temporary file in `dir`.
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{pid}-{nanos}-{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            // Left by an earlier process with the same pid: try the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes every temporary file in `dir`.
fn remove_temp_files(dir: &Path) -> Result<(), BlobError> {
    let clean_err = |path: &Path, source| BlobError::CleanTemp {
        path: path.to_owned(),
        source,
    };
    let mut removed = 0usize;
    for entry in std::fs::read_dir(dir).map_err(|e| clean_err(dir, e))? {
        let entry = entry.map_err(|e| clean_err(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| clean_err(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed temporary blobs left by a crash");
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory, making renames and removals in it durable.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BlobError::SyncDir {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
#[path = "blob_tests.rs"]
mod tests;
