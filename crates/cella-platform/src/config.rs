//! The node's configuration and data directory layout.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default session lifetime: a working day, so a CLI login lasts a session of work.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Default worker lease: long enough that heartbeats every third of it survive a busy
/// node, short enough that a dead worker's task is retried within seconds.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default wall-clock budget of one task run.
pub const DEFAULT_TASK_DEADLINE: Duration = Duration::from_secs(300);
/// Default cap on one output's plaintext: 256 MiB keeps a runaway function from filling
/// the node's disk while allowing real data sets.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// Default cap on one input's plaintext held in memory by an execution worker.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;
/// Default memory budget for password hashing: room for six argon2id hashes at once
/// (19 MiB each), which keeps a flood of logins from taking the node's memory while a
/// burst of honest logins still runs in parallel on a small machine.
pub const DEFAULT_PASSWORD_HASH_MEMORY: u64 = 128 << 20;
/// Largest function payload accepted: a 64 MiB WebAssembly module and then some.
pub const MAX_PAYLOAD_BYTES: usize = 96 << 20;

/// What a node needs to know to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its keys, metadata and (unless [`NodeConfig::blobs`] says
    /// otherwise) blobs.
    pub data_dir: PathBuf,
    /// Where the node keeps its blobs: [`cella_store::BlobLocation::Local`] (the default,
    /// [`NodeConfig::blob_dir`]) or an S3-compatible bucket.
    pub blobs: cella_store::BlobLocation,
    /// How many in-process execution workers run tasks concurrently.
    pub workers: usize,
    /// How long a session token is valid.
    pub token_ttl: Duration,
    /// How long a worker lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// Wall-clock budget of one task run.
    pub task_deadline: Duration,
    /// Cap on one output's plaintext size.
    pub max_output_bytes: u64,
    /// Cap on all of one task's outputs together (plaintext); a task over it fails,
    /// naming the cap, as the function's fault.
    pub max_task_output_bytes: u64,
    /// Cap on one input's plaintext size.
    pub max_input_bytes: u64,
    /// Memory password hashing may take at once; it sets how many logins, registrations
    /// and password changes hash concurrently (see `docs/security.md`).
    pub password_hash_memory: u64,
    /// Most tasks of one creator running at once; `None`: one less than the workers (at
    /// least one), so one user's flood always leaves a worker for everyone else (see
    /// `docs/scheduling.md`).
    pub max_running_per_user: Option<usize>,
    /// Directories under which `file://` URLs may be registered. Empty: none, so no
    /// user can make the node read its own files.
    pub file_url_roots: Vec<PathBuf>,
    /// The LibOS executor's configuration file (backend, pool, runtime images; see
    /// `docs/libos.md`). `None`: the node has no LibOS executor.
    pub libos_config: Option<PathBuf>,
    /// The metadata store: `None` for the embedded redb file in the data dir (the
    /// default), or a `postgres://user@host:port/db` URL without a password (see
    /// `docs/store.md`; the password, if the server wants one, is read from
    /// [`NodeConfig::store_password_path`]).
    pub store_url: Option<String>,
}

impl NodeConfig {
    /// Defaults for a node keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            blobs: cella_store::BlobLocation::Local,
            workers: 4,
            token_ttl: DEFAULT_TOKEN_TTL,
            lease_ttl: DEFAULT_LEASE_TTL,
            task_deadline: DEFAULT_TASK_DEADLINE,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_task_output_bytes: cella_executor::DEFAULT_MAX_TOTAL_OUTPUT_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            password_hash_memory: DEFAULT_PASSWORD_HASH_MEMORY,
            max_running_per_user: None,
            file_url_roots: Vec::new(),
            libos_config: None,
            store_url: None,
        }
    }

    /// The cap on one creator's running tasks: [`NodeConfig::max_running_per_user`], or
    /// one less than the workers (at least one).
    pub fn running_cap_per_user(&self) -> usize {
        self.max_running_per_user
            .unwrap_or_else(|| self.workers.max(1).saturating_sub(1))
            .max(1)
    }

    /// The node's sealing key file.
    pub fn sealing_key_path(&self) -> PathBuf {
        self.data_dir.join("sealing.key")
    }

    /// The metadata store file.
    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.redb")
    }

    /// The file holding the PostgreSQL password of [`NodeConfig::store_url`], if the
    /// server needs one: kept out of the URL, which shows in process lists and printed
    /// configurations.
    pub fn store_password_path(&self) -> PathBuf {
        self.data_dir.join("store-password")
    }

    /// The blob store directory (used when [`NodeConfig::blobs`] is local).
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// The file holding the first admin's password, written once at first start.
    pub fn admin_password_path(&self) -> PathBuf {
        self.data_dir.join("admin-password")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
