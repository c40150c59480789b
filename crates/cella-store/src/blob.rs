//! The blob store: immutable byte strings in a local directory (the default) or in an
//! S3-compatible object store.
//!
//! Blobs are ciphertexts uploaded by data owners, function payloads and task outputs: they
//! are already encrypted or not secret, so the store keeps them as they come and seals
//! nothing. Names: `inputs/<input id>`, `outputs/<output id>[.<version>]`,
//! `payloads/<sha-256 hex>`; a [`BlobName`] can only name one of those. In a directory
//! they are paths under its root; in a bucket, keys under the configured prefix.
//!
//! Both backends keep one rule: a blob is either absent or complete. A [`BlobWriter`]
//! hashes and counts what it is given and makes nothing visible under the blob's name
//! until [`BlobWriter::commit`] (or [`BlobWriter::commit_if`], which first checks the
//! digest); a writer dropped uncommitted leaves nothing visible. The local directory
//! writes a temporary file and renames it into place (see [`local`]); object storage
//! buffers at most one part in memory and uploads larger blobs as a multipart upload that
//! only its completion makes visible (see [`s3`]). Reads stream on both: a [`BlobReader`]
//! is a local file, or the object's body as it arrives.
//!
//! `docs/store.md` describes both layouts and what a crash leaves behind.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cella_types::{Digest, Hasher, InputFileId, OutputFileId};

pub mod local;
pub mod s3;
#[cfg(any(test, feature = "test-s3"))]
pub mod test_s3;

pub use s3::S3Config;

/// Sub-directory (or key prefix) of uploaded input ciphertexts, named by input file id.
const INPUTS_DIR: &str = "inputs";
/// Sub-directory (or key prefix) of task output ciphertexts, named by output file id.
const OUTPUTS_DIR: &str = "outputs";
/// Sub-directory (or key prefix) of function payloads, named by their SHA-256 (so
/// identical payloads are stored once).
const PAYLOADS_DIR: &str = "payloads";
/// Every sub-directory.
const SUBDIRS: [&str; 3] = [INPUTS_DIR, OUTPUTS_DIR, PAYLOADS_DIR];

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
    /// The object store's settings are not usable (the reason says which).
    #[error("object store settings: {reason}")]
    S3Settings {
        /// What is wrong.
        reason: String,
    },
    /// The object store client could not be built from the settings.
    #[error("cannot set up the object store client for bucket {bucket}")]
    S3Client {
        /// The bucket.
        bucket: String,
        /// The cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The threads that drive object store requests could not be started.
    #[error("cannot start the object store's I/O threads")]
    S3Runtime {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The bucket could not be listed when the store was opened: it is missing, the
    /// credentials are refused, or the object store is unreachable.
    #[error("cannot reach bucket {bucket} under prefix {prefix:?}")]
    S3Reach {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
        /// The cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// An object store request about blob `name` failed.
    #[error("object store cannot {op} blob {name}")]
    S3 {
        /// What was asked: "read", "stat", "upload", "complete the upload of", "remove".
        op: &'static str,
        /// The blob.
        name: BlobName,
        /// The cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// An object store request ended without an answer (its task was lost).
    #[error("the object store request about blob {name} was interrupted")]
    S3Interrupted {
        /// The blob.
        name: BlobName,
    },
}

impl BlobError {
    /// Whether the store could not be reached (connection refused or cut, timeout): the
    /// same request may succeed later, so a frontend answers "unavailable" rather than
    /// "internal". Local directory errors never are.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::S3Reach { source, .. } | Self::S3 { source, .. } => s3::is_unreachable(source),
            Self::S3Interrupted { .. } => true,
            _ => false,
        }
    }

    /// The [`BlobError`] carried by an I/O error of a [`BlobWriter`] or [`BlobReader`]
    /// (used through `Write`/`Read`), if it is one.
    pub fn from_io(e: &io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// Wraps a blob error as the I/O error of a `Read` or `Write` call, recoverable with
/// [`BlobError::from_io`].
fn into_io(e: BlobError) -> io::Error {
    let kind = if e.is_unavailable() {
        io::ErrorKind::NotConnected
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// The name of a blob: its path relative to the store's root (or its key under the
/// bucket's prefix). Only the constructors below make one, so a name never escapes the
/// root.
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

/// Where a node keeps its blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory on the node's disk (`<data dir>/blobs`): the default.
    #[default]
    Local,
    /// A bucket of an S3-compatible object store.
    S3(S3Config),
}

/// The blob store: `Send + Sync`, share it behind an `Arc`. Open one per directory or
/// bucket prefix.
#[derive(Debug)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Local(local::LocalBlobs),
    S3(s3::S3Blobs),
}

impl BlobStore {
    /// Opens the store in directory `root` (see [`local::LocalBlobs::open`]).
    ///
    /// # Errors
    ///
    /// [`BlobError::CreateDir`], [`BlobError::Lock`], [`BlobError::Locked`] when another
    /// store has the root open, [`BlobError::CleanTemp`].
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        Ok(Self {
            backend: Backend::Local(local::LocalBlobs::open(root)?),
        })
    }

    /// Opens the store in an S3-compatible bucket (see [`s3::S3Blobs::open`]); fails at
    /// once when the bucket cannot be listed.
    ///
    /// # Errors
    ///
    /// [`BlobError::S3Settings`], [`BlobError::S3Client`], [`BlobError::S3Runtime`],
    /// [`BlobError::S3Reach`].
    pub fn open_s3(config: &S3Config) -> Result<Self, BlobError> {
        Ok(Self {
            backend: Backend::S3(s3::S3Blobs::open(config)?),
        })
    }

    /// Opens the store at `location`; `local_root` is the directory of
    /// [`BlobLocation::Local`].
    ///
    /// # Errors
    ///
    /// As for [`BlobStore::open`] or [`BlobStore::open_s3`].
    pub fn open_at(location: &BlobLocation, local_root: &Path) -> Result<Self, BlobError> {
        match location {
            BlobLocation::Local => Self::open(local_root),
            BlobLocation::S3(config) => Self::open_s3(config),
        }
    }

    /// Starts writing blob `name`. Readers see the old blob (or none) until
    /// [`BlobWriter::commit`].
    ///
    /// # Errors
    ///
    /// [`BlobError::CreateTemp`] (local); none on object storage, where the first
    /// request waits for the first full part or the commit.
    pub fn create(&self, name: &BlobName) -> Result<BlobWriter, BlobError> {
        let sink = match &self.backend {
            Backend::Local(l) => Sink::Local(l.create(name)?),
            Backend::S3(s) => Sink::S3(s.create(name)),
        };
        Ok(BlobWriter {
            sink,
            name: name.clone(),
            hasher: Hasher::new(),
            len: 0,
        })
    }

    /// Opens blob `name` for reading.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when there is no such blob, [`BlobError::Open`] or
    /// [`BlobError::S3`] otherwise.
    pub fn open_read(&self, name: &BlobName) -> Result<BlobReader, BlobError> {
        match &self.backend {
            Backend::Local(l) => l.open_read(name),
            Backend::S3(s) => s.open_read(name),
        }
    }

    /// The size of blob `name` in bytes.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when there is no such blob, [`BlobError::Stat`] or
    /// [`BlobError::S3`] otherwise.
    pub fn len(&self, name: &BlobName) -> Result<u64, BlobError> {
        match &self.backend {
            Backend::Local(l) => l.len(name),
            Backend::S3(s) => s.len(name),
        }
    }

    /// Removes blob `name`; whether it existed. Readers that already opened the blob
    /// keep reading it locally; on object storage they may see the read cut short.
    ///
    /// # Errors
    ///
    /// [`BlobError::Remove`], [`BlobError::SyncDir`], [`BlobError::S3`].
    pub fn remove(&self, name: &BlobName) -> Result<bool, BlobError> {
        match &self.backend {
            Backend::Local(l) => l.remove(name),
            Backend::S3(s) => s.remove(name),
        }
    }

    /// Where blob `name` lives on the node's disk (whether or not it exists); `None` on
    /// object storage, where no blob has a path.
    pub fn path(&self, name: &BlobName) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(l) => Some(l.path(name)),
            Backend::S3(_) => None,
        }
    }
}

/// A blob being written: implements [`Write`] (and [`BlobWriter::append`], which keeps
/// the typed error), hashing and counting the bytes. Nothing is visible under the blob's
/// name until [`BlobWriter::commit`]; dropping the writer without committing leaves
/// nothing visible.
pub struct BlobWriter {
    sink: Sink,
    name: BlobName,
    hasher: Hasher,
    len: u64,
}

enum Sink {
    Local(local::LocalWriter),
    S3(s3::S3Writer),
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

    /// Appends `buf`. On object storage a full part is uploaded before this returns, so
    /// memory stays at one part whatever the blob's size.
    ///
    /// # Errors
    ///
    /// [`BlobError::Write`] (local), [`BlobError::S3`] (a part upload failed); the blob's
    /// name is unchanged and the writer should be dropped.
    pub fn append(&mut self, buf: &[u8]) -> Result<(), BlobError> {
        match &mut self.sink {
            Sink::Local(w) => w.append(&self.name, buf)?,
            Sink::S3(w) => w.append(&self.name, buf)?,
        }
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Makes the blob durable and visible, atomically replacing any blob of that name.
    /// Returns the SHA-256 and size of what was written.
    ///
    /// # Errors
    ///
    /// Locally [`BlobError::Write`], [`BlobError::Rename`], [`BlobError::SyncDir`] (the
    /// blob is then in place but maybe not durable); on object storage [`BlobError::S3`]
    /// or [`BlobError::S3Interrupted`]. Except after a failed directory sync, the blob's
    /// name is unchanged on error.
    pub fn commit(mut self) -> Result<(Digest, u64), BlobError> {
        let digest = std::mem::take(&mut self.hasher).finish();
        self.install()?;
        Ok((digest, self.len))
    }

    /// Commits only if what was written has SHA-256 `expected`; returns the size.
    ///
    /// # Errors
    ///
    /// [`BlobError::DigestMismatch`] (and nothing is stored), or as for
    /// [`BlobWriter::commit`].
    pub fn commit_if(mut self, expected: &Digest) -> Result<u64, BlobError> {
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != *expected {
            // Dropping `self` discards what was written.
            return Err(BlobError::DigestMismatch {
                name: self.name.clone(),
                expected: *expected,
                actual,
            });
        }
        self.install()?;
        Ok(self.len)
    }

    fn install(&mut self) -> Result<(), BlobError> {
        match &mut self.sink {
            Sink::Local(w) => w.install(&self.name),
            Sink::S3(w) => w.install(&self.name),
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf).map_err(into_io)?;
        Ok(buf.len())
    }

    /// Pushes buffered bytes towards the store; visibility still waits for the commit.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Local(w) => w.flush(),
            // Parts go up as they fill; a short last part can only go with the commit.
            Sink::S3(_) => Ok(()),
        }
    }
}

/// A blob being read: a local file, or an object's body streamed as it arrives. Its
/// size is known from the start.
#[derive(Debug)]
pub struct BlobReader {
    len: u64,
    source: Source,
}

#[derive(Debug)]
enum Source {
    File(File),
    S3(s3::S3Reader),
}

impl BlobReader {
    /// Reads a local file (a blob, or a node-side file the caller opened itself).
    ///
    /// # Errors
    ///
    /// The file's size cannot be read.
    pub fn from_file(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            len,
            source: Source::File(file),
        })
    }

    /// The blob's size in bytes, as it was when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The local file, for an executor that needs one (to map it, or hand it to a
    /// sandbox); `None` on object storage, where the caller reads the stream instead.
    pub fn as_file(&self) -> Option<&File> {
        match &self.source {
            Source::File(f) => Some(f),
            Source::S3(_) => None,
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::File(f) => f.read(buf),
            Source::S3(r) => r.read(buf).map_err(into_io),
        }
    }
}

#[cfg(test)]
#[path = "blob_tests.rs"]
mod tests;
