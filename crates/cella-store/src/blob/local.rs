//! Blobs as files under one root directory: `<root>/inputs/<input id>`,
//! `<root>/outputs/<output id>[.<version>]`, `<root>/payloads/<sha-256 hex>`.
//!
//! Writes go to a temporary file beside the destination; the commit fsyncs it, renames
//! it into place and fsyncs the directory, so a blob is either absent or complete. An
//! uncommitted writer removes its temporary file when dropped, and [`LocalBlobs::open`]
//! removes those a crash left behind. The store holds an exclusive lock on
//! `<root>/.lock` while open, so that this clean-up never removes another live store's
//! temporary files: open one store per root and share it.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{BlobError, BlobName, BlobReader, SUBDIRS};

/// File name prefix of temporary files. Ids and hex digests never start with a dot, so
/// no committed blob can be mistaken for one.
pub(super) const TEMP_PREFIX: &str = ".tmp-";
/// The lock file that makes a root directory exclusive to one open store.
const LOCK_FILE: &str = ".lock";

/// Mode of the store's directories: only the node's user lists or enters them.
pub(super) const DIR_MODE: u32 = 0o700;
/// Mode of blob files: only the node's user reads them.
pub(super) const FILE_MODE: u32 = 0o600;

/// Buffer in front of a blob's temporary file: uploads arrive in small messages, and
/// 64 KiB turns them into few large writes without holding much memory per upload.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Makes temporary file names unique within the process (with the pid and the clock
/// making them unique across processes and restarts).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Blobs in a local directory.
#[derive(Debug)]
pub struct LocalBlobs {
    root: PathBuf,
    /// Holds the exclusive lock on `<root>/.lock` for the store's lifetime.
    _lock: File,
}

impl LocalBlobs {
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

    /// Starts writing blob `name` into a temporary file in the blob's directory.
    pub(super) fn create(&self, name: &BlobName) -> Result<LocalWriter, BlobError> {
        let dir = self.root.join(name.dir);
        let (temp, file) = create_temp(&dir).map_err(|source| BlobError::CreateTemp {
            name: name.clone(),
            source,
        })?;
        Ok(LocalWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            temp: Some(temp),
            dir,
            path: self.path(name),
        })
    }

    /// Opens blob `name` for reading.
    pub(super) fn open_read(&self, name: &BlobName) -> Result<BlobReader, BlobError> {
        File::open(self.path(name))
            .and_then(BlobReader::from_file)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => BlobError::NotFound { name: name.clone() },
                _ => BlobError::Open {
                    name: name.clone(),
                    source,
                },
            })
    }

    /// The size of blob `name` in bytes.
    pub(super) fn len(&self, name: &BlobName) -> Result<u64, BlobError> {
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
    pub(super) fn remove(&self, name: &BlobName) -> Result<bool, BlobError> {
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
    pub(super) fn path(&self, name: &BlobName) -> PathBuf {
        self.root.join(name.dir).join(&name.file)
    }
}

/// A blob being written to its temporary file. Dropped uncommitted, it removes the file.
pub(super) struct LocalWriter {
    /// `None` only while committing.
    file: Option<BufWriter<File>>,
    /// The temporary file; `None` once renamed into place.
    temp: Option<PathBuf>,
    dir: PathBuf,
    path: PathBuf,
}

impl LocalWriter {
    pub(super) fn append(&mut self, name: &BlobName, buf: &[u8]) -> Result<(), BlobError> {
        let write_err = |source| BlobError::Write {
            name: name.clone(),
            source,
        };
        self.file
            .as_mut()
            .ok_or_else(|| write_err(io::Error::other("blob writer already closed")))?
            .write_all(buf)
            .map_err(write_err)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }

    /// Flush, fsync, rename into place (atomically replacing any blob of that name),
    /// fsync the directory.
    pub(super) fn install(&mut self, name: &BlobName) -> Result<(), BlobError> {
        let write_err = |source| BlobError::Write {
            name: name.clone(),
            source,
        };
        let file = self
            .file
            .take()
            .ok_or_else(|| write_err(io::Error::other("writer already closed")))?;
        let file = file.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        if let Some(temp) = &self.temp {
            std::fs::rename(temp, &self.path).map_err(|source| BlobError::Rename {
                name: name.clone(),
                source,
            })?;
        }
        self.temp = None;
        sync_dir(&self.dir)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Close before removing; buffered bytes are discarded with the file.
            drop(self.file.take().map(BufWriter::into_parts));
            if let Err(e) = std::fs::remove_file(&temp)
                && e.kind() != io::ErrorKind::NotFound
            {
                // `LocalBlobs::open` removes it on the next start.
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
