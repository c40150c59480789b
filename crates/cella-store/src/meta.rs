//! The metadata store: typed records in an embedded redb database (the default) or in
//! PostgreSQL ([`MetaStore::connect_postgres`], `docs/store.md`), every value sealed.
//!
//! A [`Record`] names its table and its primary key. Each table is a redb table of
//! `&str` keys to `&[u8]` values. Keys are stored **in clear**: they are ids (`task-<uuid>`,
//! user names, zero-padded sequence numbers), not secrets, and keeping them clear keeps
//! ordered scans and point look-ups cheap. Values are the record's JSON sealed with
//! [`SealingKey::seal`] under the additional data `table ‖ 0x00 ‖ key`, so a value copied
//! to another key or another table does not unseal ([`StoreError::Corrupt`]).
//!
//! All access goes through [`MetaStore::read`] (a consistent snapshot) and
//! [`MetaStore::write`] / [`MetaStore::write_volatile`] (one serialised write transaction
//! that commits only if the closure returns `Ok`). Write transactions are serialised by
//! redb: calling `write` from inside a `write` closure deadlocks.
//!
//! Table names starting with [`RESERVED_TABLE_PREFIX`] belong to the store itself.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use cella_crypto::sealing::{SealingKey, UnsealValueError};
use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageError, TableDefinition, TableError, TransactionError,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::overlay::{Overlay, merge};
use crate::pg::{Mode, PgTxn, Postgres};

/// Table names starting with this prefix are the store's own (sequence counters, the
/// key check); other crates must not use it for their records.
pub const RESERVED_TABLE_PREFIX: &str = "_cella.";

/// Width of [`seq_key`]'s zero padding: `u64::MAX` has 20 decimal digits, so padded keys
/// sort in the same order as the numbers they encode.
pub const SEQ_KEY_WIDTH: usize = 20;

/// Size of redb's page cache. Records are a few KiB each, so this holds the working set
/// of a busy node while keeping a large store from taking redb's default of 1 GiB away
/// from executors.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Mode of a newly created database file: only the node's user reads it. Values are sealed,
/// but keys (ids, user names) are in clear.
const DB_FILE_MODE: u32 = 0o600;

/// Version of the store's layout (tables, AAD, JSON values), recorded in the key check.
const STORE_FORMAT: u32 = 1;

/// The table holding the store's own key check record.
const STORE_INFO_TABLE: &str = "_cella.store";

/// The table holding [`WriteTx::next_seq`] counters.
const SEQ_TABLE: &str = "_cella.seq";

/// Separates the table name from the key in a value's additional authenticated data.
/// Table names and keys never contain NUL, so `table ‖ 0x00 ‖ key` is unambiguous.
const AAD_SEPARATOR: u8 = 0x00;

/// redb's table type for every Cella table.
type RawTableDef = TableDefinition<'static, &'static str, &'static [u8]>;

/// A record type stored in the metadata store.
///
/// Implementations pick a table name unique across the whole node (and not starting with
/// [`RESERVED_TABLE_PREFIX`]) and a primary key that is not secret: it is stored in clear.
pub trait Record: Serialize + DeserializeOwned {
    /// The redb table that holds records of this type.
    const TABLE: &'static str;

    /// The record's primary key.
    fn key(&self) -> String;
}

/// A failed metadata store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("cannot open metadata store {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// redb could not open the database file (locked by another process, corrupt, or of
    /// an unsupported version).
    #[error("cannot open metadata database {path}")]
    OpenDatabase {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// The sealing key does not open this store's key check record: the key file is not
    /// the one the store was created with (or the record was altered).
    #[error(
        "the sealing key does not open metadata store {store}: wrong key file, or the store was tampered with"
    )]
    WrongSealingKey {
        /// The database file, or the PostgreSQL URL without its password.
        store: String,
        /// Why the key check failed to unseal.
        #[source]
        source: UnsealValueError,
    },
    /// The store was written by a newer, incompatible version of Cella.
    #[error("metadata store {store} has format {found}, this build reads format {STORE_FORMAT}")]
    UnsupportedFormat {
        /// The database file, or the PostgreSQL URL without its password.
        store: String,
        /// The format the store declares.
        found: u32,
    },
    /// A transaction could not be started.
    #[error("cannot begin a metadata transaction")]
    Begin {
        /// The cause.
        #[source]
        source: redb::TransactionError,
    },
    /// A write transaction's durability could not be set.
    #[error("cannot set the durability of a metadata transaction")]
    SetDurability {
        /// The cause.
        #[source]
        source: redb::SetDurabilityError,
    },
    /// A table could not be opened.
    #[error("cannot open metadata table {table:?}")]
    OpenTable {
        /// The table.
        table: &'static str,
        /// The cause.
        #[source]
        source: TableError,
    },
    /// Reading one record failed in redb.
    #[error("cannot read {table:?} record {key:?}")]
    Read {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: redb::StorageError,
    },
    /// Scanning or counting a table failed in redb.
    #[error("cannot scan metadata table {table:?}")]
    Scan {
        /// The table.
        table: &'static str,
        /// The cause.
        #[source]
        source: redb::StorageError,
    },
    /// Writing or deleting one record failed in redb.
    #[error("cannot write {table:?} record {key:?}")]
    Write {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: redb::StorageError,
    },
    /// The transaction could not be committed; nothing it wrote is visible.
    #[error("cannot commit a metadata transaction")]
    Commit {
        /// The cause.
        #[source]
        source: redb::CommitError,
    },
    /// The batch this write was part of could not be committed; nothing it wrote is
    /// visible. (The writer that committed the batch got the underlying error.)
    #[error("cannot commit a metadata transaction: {message}")]
    BatchCommit {
        /// The commit error, as text.
        message: String,
        /// Whether the commit error was a full disk ([`StoreError::is_out_of_space`] of
        /// the committing writer's error), so every writer of the batch can tell.
        out_of_space: bool,
    },
    /// A stored value does not unseal under its table and key: it was altered, moved from
    /// another key or table, or sealed under another key.
    #[error("{table:?} record {key:?} is corrupt: it does not unseal under its table and key")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: UnsealValueError,
    },
    /// A value unsealed but is not valid JSON for its record type (a schema mismatch).
    #[error("{table:?} record {key:?} does not decode")]
    Decode {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be serialized.
    #[error("cannot encode {table:?} record {key:?}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A sequence counter reached `u64::MAX`.
    #[error("sequence {name:?} is exhausted")]
    SeqExhausted {
        /// The counter's name.
        name: String,
    },
    /// A write failed with an I/O error, and reopening the database to recover from it
    /// failed too; the next write tries again.
    #[error("cannot reopen the metadata database after a failed write")]
    Reopen {
        /// The redb error.
        #[source]
        source: redb::DatabaseError,
    },
    /// The PostgreSQL URL given for the store does not parse.
    #[error("invalid PostgreSQL URL for the metadata store")]
    InvalidUrl {
        /// The parser's error (it never contains the password).
        #[source]
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL URL holds a password: URLs show in process lists, configuration
    /// files and `--print-config`, so the password must come from elsewhere.
    #[error(
        "the metadata store URL {store} holds a password: give the password separately (docs/store.md)"
    )]
    PasswordInUrl {
        /// The URL without its password.
        store: String,
    },
    /// The runtime driving PostgreSQL connections could not be started.
    #[error("cannot start the metadata store's PostgreSQL runtime")]
    Runtime {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PostgreSQL server cannot be reached (refused, lost, shutting down, out of
    /// connections). Nothing was committed unless the connection was lost during the
    /// commit itself; the next operation reconnects.
    #[error("the metadata database {store} is unavailable")]
    Unavailable {
        /// The PostgreSQL URL without its password.
        store: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A statement failed in PostgreSQL for another reason than an unreachable server.
    #[error("metadata database {store} failed {op}")]
    Database {
        /// The PostgreSQL URL without its password.
        store: String,
        /// What the store was doing.
        op: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL database was migrated by a newer Cella: this build does not know
    /// its schema and leaves it untouched.
    #[error(
        "metadata database {store} has schema version {found}, this build knows versions up to {known}: run a newer Cella"
    )]
    SchemaTooNew {
        /// The PostgreSQL URL without its password.
        store: String,
        /// The database's schema version.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
}

impl StoreError {
    /// Whether the error was caused by a full disk (`ENOSPC` / `EDQUOT`): somewhere in its
    /// source chain is an I/O error of kind `StorageFull` or `QuotaExceeded`.
    ///
    /// A commit that failed in another writer's batch carries the committing writer's
    /// verdict ([`StoreError::BatchCommit::out_of_space`]).
    pub fn is_out_of_space(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>().or_else(|| redb_io(e))
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            {
                return true;
            }
            cause = e.source();
        }
        match self {
            Self::BatchCommit { out_of_space, .. } => *out_of_space,
            Self::Database { source, .. } => crate::pg::is_disk_full(source),
            _ => false,
        }
    }

    /// Whether the store's database server cannot be reached now: the same request may
    /// succeed once it is back (a frontend answers `UNAVAILABLE`, not `INTERNAL`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The I/O error inside a redb error: redb's errors hold it but do not give it as their
/// `source()`.
fn redb_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let storage = if let Some(e) = e.downcast_ref::<StorageError>() {
        e
    } else if let Some(redb::CommitError::Storage(e)) = e.downcast_ref() {
        e
    } else if let Some(TransactionError::Storage(e)) = e.downcast_ref() {
        e
    } else if let Some(DatabaseError::Storage(e)) = e.downcast_ref() {
        e
    } else if let Some(TableError::Storage(e)) = e.downcast_ref() {
        e
    } else {
        return None;
    };
    match storage {
        StorageError::Io(io) => Some(io),
        _ => None,
    }
}

/// Opens (or reopens) the database file with the store's settings.
type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

/// The metadata store: a redb database (embedded, the default) or a PostgreSQL database,
/// whose values are sealed under the node's key.
///
/// `Send + Sync`: share it behind an `Arc`. Readers run concurrently with each other and
/// with the single writer (MVCC); writers are serialised (across every process sharing
/// the database, on PostgreSQL).
pub struct MetaStore {
    key: SealingKey,
    backend: Backend,
    /// Told how long each commit of a dirty batch took ([`MetaStore::on_commit`]).
    commit_hook: std::sync::OnceLock<CommitHook>,
}

/// Where the records live.
#[expect(
    clippy::large_enum_variant,
    reason = "one per store, built once and never moved; boxing would add a hop to redb's path"
)]
enum Backend {
    Redb(Redb),
    Postgres(PgState),
}

/// The embedded backend: one redb file, with group commit.
struct Redb {
    /// `None` only between dropping a database whose write failed and reopening it. A
    /// reader holds the read lock for its whole transaction: redb's `ReadTransaction`
    /// keeps the file open, so the database can be reopened only once none is live.
    db: RwLock<Option<Database>>,
    opener: Opener,
    group: Mutex<Group>,
    turn: Condvar,
}

/// The PostgreSQL backend and what [`MetaStore::commit_count`] and
/// [`MetaStore::write_failure`] report for it.
struct PgState {
    pg: Postgres,
    commits: AtomicU64,
    write_failure: Mutex<Option<String>>,
}

/// What [`MetaStore::on_commit`] calls with a commit's duration.
pub type CommitHook = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// Group commit: writers that arrive while a commit is being flushed share the next
/// redb transaction and its single fsync.
///
/// A writer waits while a commit is in flight, then runs its closure in the open batch
/// (opening one if there is none). The last writer to join a batch, seeing nobody else
/// waiting, commits it; the others wait for that commit. A closure's writes reach the
/// batch only if it returns `Ok` (see [`Overlay`]), so a refused request leaves nothing
/// even when it shares a transaction with others.
#[derive(Default)]
struct Group {
    open: Option<Batch>,
    committing: bool,
    waiting: usize,
    next_batch: u64,
    committed: u64,
    /// Recent batches whose commit failed, with the error, so their writers can report it.
    failed: Vec<FailedBatch>,
    commits: u64,
    /// The error of the last commit when it failed; cleared by the next successful one.
    write_failure: Option<String>,
}

/// A batch whose commit failed, as its other writers report it.
struct FailedBatch {
    batch: u64,
    /// The commit error with its causes ([`error_chain`]).
    message: String,
    /// [`StoreError::is_out_of_space`] of the commit error.
    out_of_space: bool,
}

/// How many failed batches [`Group`] remembers: a writer looks its batch up right after
/// the commit, so a handful suffices; redb refuses every later commit after an I/O error.
const FAILED_BATCHES_KEPT: usize = 64;

struct Batch {
    txn: WriteTransaction,
    id: u64,
    durable: bool,
    dirty: bool,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore").finish_non_exhaustive()
    }
}

impl MetaStore {
    /// Opens the store at `path`, creating the file (mode 0600) if it does not exist, and
    /// checks that `key` is the key the store was created with.
    ///
    /// Opening a store that was not closed cleanly runs redb's repair, which takes time
    /// proportional to the file size.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] / [`StoreError::OpenDatabase`] when the file cannot be opened
    /// (another process holds it, it is not a redb file),
    /// [`StoreError::WrongSealingKey`] when `key` is not the store's key,
    /// [`StoreError::UnsupportedFormat`] for a store written by a newer version, and any
    /// transaction error from writing the key check into a new store.
    pub fn open(path: &Path, key: SealingKey) -> Result<Self, StoreError> {
        let owned = path.to_owned();
        Self::open_with(
            path,
            key,
            Box::new(move || {
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(&owned)
            }),
        )
    }

    /// Opens the store with `opener`, which tests use to put a faulty backend under redb.
    fn open_with(path: &Path, key: SealingKey, opener: Opener) -> Result<Self, StoreError> {
        // An empty file is a new database to redb; creating it ourselves sets its mode.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(DB_FILE_MODE)
            .open(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let db = opener().map_err(|source| StoreError::OpenDatabase {
            path: path.to_owned(),
            source,
        })?;
        let store = Self {
            key,
            backend: Backend::Redb(Redb {
                db: RwLock::new(Some(db)),
                opener,
                group: Mutex::new(Group::default()),
                turn: Condvar::new(),
            }),
            commit_hook: std::sync::OnceLock::new(),
        };
        store.check_key(&path.display().to_string())?;
        tracing::debug!(path = %path.display(), "opened metadata store");
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`,
    /// libpq's URL and `key=value` forms) with `password` if the server asks for one,
    /// applies the schema migrations it lacks, and checks that `key` is the key the store
    /// was created with.
    ///
    /// TLS to the server is not supported yet: a URL with `sslmode=require` is refused
    /// when connecting (fail closed), `sslmode=prefer` (libpq's default) connects in
    /// clear. Values are sealed before they leave the node either way.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] for a URL that does not parse,
    /// [`StoreError::PasswordInUrl`] for one that holds a password,
    /// [`StoreError::Unavailable`] when the server cannot be reached,
    /// [`StoreError::SchemaTooNew`] for a database migrated by a newer Cella,
    /// [`StoreError::WrongSealingKey`] / [`StoreError::UnsupportedFormat`] as for
    /// [`MetaStore::open`], or [`StoreError::Database`] from a failed statement.
    pub fn connect_postgres(
        url: &str,
        password: Option<&[u8]>,
        key: SealingKey,
    ) -> Result<Self, StoreError> {
        let pg = Postgres::connect(url, password)?;
        let name = pg.name().to_owned();
        let store = Self {
            key,
            backend: Backend::Postgres(PgState {
                pg,
                commits: AtomicU64::new(0),
                write_failure: Mutex::new(None),
            }),
            commit_hook: std::sync::OnceLock::new(),
        };
        store.check_key(&name)?;
        Ok(store)
    }

    /// Checks the key against the key check record, writing it into a new store.
    fn check_key(&self, store: &str) -> Result<(), StoreError> {
        self.write(|tx| match tx.get::<StoreInfo>(StoreInfo::KEY) {
            Ok(Some(info)) if info.format == STORE_FORMAT => Ok(()),
            Ok(Some(info)) => Err(StoreError::UnsupportedFormat {
                store: store.to_owned(),
                found: info.format,
            }),
            Ok(None) => tx.put(&StoreInfo {
                format: STORE_FORMAT,
            }),
            Err(StoreError::Corrupt { source, .. }) => Err(StoreError::WrongSealingKey {
                store: store.to_owned(),
                source,
            }),
            Err(e) => Err(e),
        })
    }

    /// Runs `f` in a read transaction: a consistent snapshot of the last commit, durable
    /// or not. Writers are not blocked.
    ///
    /// # Errors
    ///
    /// [`StoreError::Begin`] when redb cannot start a transaction, or whatever `f` returns.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let r = match &self.backend {
            Backend::Redb(r) => r,
            Backend::Postgres(p) => {
                let txn = p.pg.begin(Mode::Read)?;
                let value = f(&ReadTx {
                    txn: TxnRef::Pg(&txn),
                    key: &self.key,
                    overlay: None,
                })?;
                // A read-only transaction has nothing to lose: its end is only cleanup,
                // which dropping it does (a failed rollback is logged, the read stands).
                drop(txn);
                return Ok(value);
            }
        };
        let db = r.db.read().unwrap_or_else(PoisonError::into_inner);
        let txn = db
            .as_ref()
            .ok_or(StoreError::BatchCommit {
                message: "the metadata database is being reopened after a failed write".into(),
                out_of_space: false,
            })?
            .begin_read()
            .map_err(|source| StoreError::Begin { source })?;
        f(&ReadTx {
            txn: TxnRef::Read(&txn),
            key: &self.key,
            overlay: None,
        })
    }

    /// Runs `f` in a write transaction. When `f` returns `Ok`, commits durably (fsync)
    /// before returning; when `f` returns `Err`, aborts, so a rejected request changes
    /// nothing. Blocks while another write transaction is open; never call it from inside
    /// another `write` closure on the same store (it would wait for itself).
    ///
    /// # Errors
    ///
    /// [`StoreError::Begin`] / [`StoreError::Commit`] from redb, or whatever `f` returns.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_with(true, f)
    }

    /// Like [`MetaStore::write`], but the commit is not fsynced (redb's
    /// `Durability::None`). It is visible to readers at once and becomes durable with the
    /// next durable commit (or a clean close); a crash before then loses it. Use it only
    /// for state that crash recovery rebuilds anyway: leases, heartbeats.
    ///
    /// # Errors
    ///
    /// As for [`MetaStore::write`].
    pub fn write_volatile<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_with(false, f)
    }

    /// Runs `f` in a write transaction; `durable` asks for an fsync at its commit.
    fn write_with<T, E: From<StoreError>>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Redb(r) => self.redb_write(r, durable, f),
            Backend::Postgres(p) => self.pg_write(p, durable, f),
        }
    }

    /// Runs `f` in its own PostgreSQL transaction, which holds the store's write lock.
    fn pg_write<T, E: From<StoreError>>(
        &self,
        p: &PgState,
        durable: bool,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let failed = |e: StoreError| {
            *p.write_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error_chain(&e));
            e
        };
        let txn = p.pg.begin(Mode::Write { durable }).map_err(failed)?;
        let overlay = RefCell::new(Overlay::default());
        // An error or a panic in `f` drops `txn`, which rolls back (and logs a failed
        // rollback).
        let value = f(&mut WriteTx {
            view: ReadTx {
                txn: TxnRef::Pg(&txn),
                key: &self.key,
                overlay: Some(&overlay),
            },
        })?;
        let overlay = overlay.into_inner();
        if overlay.is_empty() {
            // Nothing to write: the value stands whatever the rollback does.
            drop(txn);
            return Ok(value);
        }
        let began = std::time::Instant::now();
        txn.apply(overlay).map_err(failed)?;
        txn.commit().map_err(failed)?;
        if let Some(hook) = self.commit_hook.get() {
            hook(began.elapsed());
        }
        p.commits.fetch_add(1, Ordering::Relaxed);
        *p.write_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(value)
    }

    /// Runs `f` in the next redb batch; `durable` asks for an fsync at its commit.
    fn redb_write<T, E: From<StoreError>>(
        &self,
        r: &Redb,
        durable: bool,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut group = r.lock_group();
        group.waiting += 1;
        while group.committing {
            group = r.turn.wait(group).unwrap_or_else(PoisonError::into_inner);
        }
        group.waiting -= 1;
        if group.open.is_none() {
            let txn = match r.begin_write() {
                Ok(txn) => txn,
                Err(e) => {
                    group.write_failure = Some(error_chain(&e));
                    return Err(E::from(e));
                }
            };
            group.next_batch += 1;
            group.open = Some(Batch {
                txn,
                id: group.next_batch,
                durable: false,
                dirty: false,
            });
        }
        let Some(batch) = group.open.as_mut() else {
            unreachable!("a batch was opened above")
        };
        let overlay = RefCell::new(Overlay::default());
        // A panic in `f` must not leave the other writers of this batch waiting for a
        // commit that never comes: finish the protocol, then resume the panic.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut WriteTx {
                view: ReadTx {
                    txn: TxnRef::Write(&batch.txn),
                    key: &self.key,
                    overlay: Some(&overlay),
                },
            })
        }));
        let mut wrote = false;
        let outcome = match outcome {
            Ok(Ok(value)) => {
                let overlay = overlay.into_inner();
                wrote = !overlay.is_empty();
                match apply(&batch.txn, overlay) {
                    Ok(()) => Ok(Ok(value)),
                    Err(e) => Ok(Err(E::from(e))),
                }
            }
            other => other,
        };
        if wrote {
            batch.dirty = true;
            batch.durable |= durable;
        }
        let id = batch.id;
        let committed = if group.waiting == 0 {
            self.commit_batch(r, group)
        } else {
            // The last writer to join commits the batch; wait for it.
            while group.committed < id {
                group = r.turn.wait(group).unwrap_or_else(PoisonError::into_inner);
            }
            match group.failed.iter().find(|f| f.batch == id) {
                Some(f) => Err(StoreError::BatchCommit {
                    message: f.message.clone(),
                    out_of_space: f.out_of_space,
                }),
                None => Ok(()),
            }
        };
        match outcome {
            Ok(Ok(value)) if wrote => committed.map(|()| value).map_err(E::from),
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Commits the open batch (or aborts it when nobody wrote), outside the lock so
    /// new writers can queue for the next batch meanwhile.
    fn commit_batch(&self, r: &Redb, mut group: MutexGuard<'_, Group>) -> Result<(), StoreError> {
        let Some(mut batch) = group.open.take() else {
            return Ok(());
        };
        group.committing = true;
        drop(group);
        let began = std::time::Instant::now();
        let result = if batch.dirty {
            let durability = if batch.durable {
                Durability::Immediate
            } else {
                Durability::None
            };
            match batch.txn.set_durability(durability) {
                Ok(()) => batch
                    .txn
                    .commit()
                    .map_err(|source| StoreError::Commit { source }),
                Err(source) => Err(StoreError::SetDurability { source }),
            }
        } else {
            batch.txn.abort().map_err(|e| StoreError::BatchCommit {
                message: format!("aborting an empty batch: {e}"),
                out_of_space: false,
            })
        };
        if batch.dirty
            && let Some(hook) = self.commit_hook.get()
        {
            hook(began.elapsed());
        }
        let mut group = r.lock_group();
        group.committing = false;
        group.committed = batch.id;
        group.commits += 1;
        if batch.dirty {
            group.write_failure = result.as_ref().err().map(|e| error_chain(e));
        }
        if let Err(e) = &result {
            if group.failed.len() >= FAILED_BATCHES_KEPT {
                group.failed.remove(0);
            }
            group.failed.push(FailedBatch {
                batch: batch.id,
                message: error_chain(e),
                out_of_space: e.is_out_of_space(),
            });
        }
        r.turn.notify_all();
        result
    }

    /// Calls `hook` with the duration of every commit that wrote something (a metrics
    /// exporter's latency histogram), outside the store's locks. One hook per store: a
    /// second call is refused and returns `false`.
    pub fn on_commit(&self, hook: CommitHook) -> bool {
        self.commit_hook.set(hook).is_ok()
    }

    /// Why writes are failing: the error of the last commit when it failed, `None` once
    /// a commit succeeded since. Health reports the store as degraded while it is `Some`.
    pub fn write_failure(&self) -> Option<String> {
        match &self.backend {
            Backend::Redb(r) => r.lock_group().write_failure.clone(),
            Backend::Postgres(p) => p
                .write_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// How many commits (redb batches, PostgreSQL transactions) the store has made since
    /// it was opened: on redb, fewer than the writes when group commit batched them.
    pub fn commit_count(&self) -> u64 {
        match &self.backend {
            Backend::Redb(r) => r.lock_group().commits,
            Backend::Postgres(p) => p.commits.load(Ordering::Relaxed),
        }
    }
}

impl Redb {
    /// Begins a write transaction. Called with the group lock held and no batch open or
    /// committing, so no write transaction is live.
    ///
    /// After a commit fails with an I/O error (a full disk), redb refuses every later
    /// write with `PreviousIo` until the database is reopened; so this drops and reopens
    /// it (redb repairs the file from its last commit) and begins once more.
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let begun = match self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(db) => db.begin_write(),
            None => Err(TransactionError::Storage(StorageError::PreviousIo)),
        };
        match begun {
            Err(TransactionError::Storage(StorageError::PreviousIo)) => {}
            other => return other.map_err(|source| StoreError::Begin { source }),
        }
        {
            // Waits for live readers; new ones wait for the reopened database.
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            // The old database holds the file's lock: close it before opening again.
            drop(db.take());
            *db = Some((self.opener)().map_err(|source| StoreError::Reopen { source })?);
            tracing::warn!("reopened the metadata database after a failed write");
        }
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .ok_or(StoreError::BatchCommit {
                message: "the metadata database was closed while reopening it".into(),
                out_of_space: false,
            })?
            .begin_write()
            .map_err(|source| StoreError::Begin { source })
    }

    fn lock_group(&self) -> MutexGuard<'_, Group> {
        // The group's counters stay consistent across a panic: every update is a
        // single assignment made while no closure runs.
        self.group.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `e` and each of its sources, separated by ": ", so a failed commit names its OS cause
/// (redb's errors include their I/O cause in their message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Applies a successful closure's writes to the batch's transaction.
fn apply(txn: &WriteTransaction, overlay: Overlay) -> Result<(), StoreError> {
    for (name, changes) in overlay.into_changes() {
        let mut table =
            txn.open_table(table_def(name))
                .map_err(|source| StoreError::OpenTable {
                    table: name,
                    source,
                })?;
        for (key, value) in changes {
            let done = match &value {
                Some(v) => table.insert(key.as_str(), v.as_slice()).map(drop),
                None => table.remove(key.as_str()).map(drop),
            };
            done.map_err(|source| StoreError::Write {
                table: name,
                key,
                source,
            })?;
        }
    }
    Ok(())
}

/// The transaction a [`ReadTx`] reads through.
#[derive(Clone, Copy)]
enum TxnRef<'a> {
    Read(&'a ReadTransaction),
    Write(&'a WriteTransaction),
    Pg(&'a PgTxn<'a>),
}

/// Read access to the store inside [`MetaStore::read`], and (through `Deref`) inside
/// [`MetaStore::write`], where it also sees the transaction's own uncommitted writes.
pub struct ReadTx<'a> {
    txn: TxnRef<'a>,
    key: &'a SealingKey,
    /// Inside a write: the closure's own pending writes, which reads see first.
    overlay: Option<&'a RefCell<Overlay>>,
}

impl ReadTx<'_> {
    /// The record of type `R` with primary key `key`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the value does not unseal under its table and key,
    /// [`StoreError::Decode`] when it is not a valid `R`, or a redb error.
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>, StoreError> {
        if let Some(overlay) = self.overlay
            && let Some(pending) = overlay.borrow().get(R::TABLE, key)
        {
            return pending
                .map(|sealed| self.open_value(R::TABLE, key, sealed))
                .transpose();
        }
        self.stored_value(R::TABLE, key)?
            .map(|sealed| self.open_value(R::TABLE, key, &sealed))
            .transpose()
    }

    /// The committed sealed value under `table`/`key`, ignoring pending writes.
    fn stored_value(&self, table: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let TxnRef::Pg(txn) = self.txn {
            return txn.get(table, key);
        }
        let sealed = self.with_table(table, |t| {
            t.raw_get(key).map_err(|source| StoreError::Read {
                table,
                key: key.to_owned(),
                source,
            })
        })?;
        Ok(sealed.flatten())
    }

    /// Every record of type `R`, in key order (byte order of the keys).
    ///
    /// # Errors
    ///
    /// As for [`ReadTx::get`], for any record.
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        self.entries(usize::MAX)
    }

    /// The record of type `R` with the smallest key: the head of a queue kept under
    /// [`seq_key`] keys.
    ///
    /// # Errors
    ///
    /// As for [`ReadTx::get`].
    pub fn first<R: Record>(&self) -> Result<Option<R>, StoreError> {
        Ok(self.entries(1)?.into_iter().next())
    }

    /// The up to `n` records of type `R` with the smallest keys, in key order: the
    /// head of a queue kept under [`seq_key`] keys.
    ///
    /// # Errors
    ///
    /// As for [`ReadTx::get`], for any of them.
    pub fn first_n<R: Record>(&self, n: usize) -> Result<Vec<R>, StoreError> {
        self.entries(n)
    }

    /// How many records of type `R` there are.
    ///
    /// # Errors
    ///
    /// [`StoreError::Scan`] or [`StoreError::OpenTable`] from redb.
    pub fn count<R: Record>(&self) -> Result<u64, StoreError> {
        if self.pending::<R>() {
            return Ok(self.raw_entries::<R>(usize::MAX)?.len() as u64);
        }
        if let TxnRef::Pg(txn) = self.txn {
            return txn.count(R::TABLE);
        }
        let n = self.with_table(R::TABLE, |table| {
            table.raw_len().map_err(|source| StoreError::Scan {
                table: R::TABLE,
                source,
            })
        })?;
        Ok(n.unwrap_or(0))
    }

    /// Up to `limit` records of type `R` in key order.
    fn entries<R: Record>(&self, limit: usize) -> Result<Vec<R>, StoreError> {
        self.raw_entries::<R>(limit)?
            .into_iter()
            .map(|(key, sealed)| self.open_value(R::TABLE, &key, &sealed))
            .collect()
    }

    /// Whether this closure has pending writes to `R`'s table.
    fn pending<R: Record>(&self) -> bool {
        self.overlay
            .is_some_and(|o| o.borrow().table(R::TABLE).is_some())
    }

    /// Up to `limit` sealed entries of `R`'s table in key order, pending writes included.
    fn raw_entries<R: Record>(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let pending = self.pending::<R>();
        // With pending deletes, the first `limit` stored entries may not be enough.
        let stored_limit = if pending { usize::MAX } else { limit };
        let stored = match self.txn {
            TxnRef::Pg(txn) => txn.scan(R::TABLE, stored_limit)?,
            _ => self
                .with_table(R::TABLE, |table| {
                    table
                        .raw_entries(stored_limit)
                        .map_err(|source| StoreError::Scan {
                            table: R::TABLE,
                            source,
                        })
                })?
                .unwrap_or_default(),
        };
        match self.overlay {
            Some(o) if pending => {
                let o = o.borrow();
                Ok(o.table(R::TABLE)
                    .map_or(stored.clone(), |changes| merge(stored, changes, limit)))
            }
            _ => Ok(stored),
        }
    }

    /// Runs `f` on table `name`; `None` when a read transaction finds no such table (a
    /// table that was never written reads as empty). A write transaction creates it.
    fn with_table<T>(
        &self,
        name: &'static str,
        f: impl FnOnce(&dyn RawTable) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let open_err = |source| StoreError::OpenTable {
            table: name,
            source,
        };
        match self.txn {
            TxnRef::Read(txn) => match txn.open_table(table_def(name)) {
                Ok(table) => f(&table).map(Some),
                Err(TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(open_err(e)),
            },
            TxnRef::Write(txn) => {
                let table = txn.open_table(table_def(name)).map_err(open_err)?;
                f(&table).map(Some)
            }
            TxnRef::Pg(_) => unreachable!("PostgreSQL transactions are read through PgTxn"),
        }
    }

    /// Unseals and decodes one stored value.
    fn open_value<R: Record>(
        &self,
        table: &'static str,
        key: &str,
        sealed: &[u8],
    ) -> Result<R, StoreError> {
        let plain = self
            .key
            .unseal(&aad(table, key), sealed)
            .map(Zeroizing::new)
            .map_err(|source| StoreError::Corrupt {
                table,
                key: key.to_owned(),
                source,
            })?;
        serde_json::from_slice(&plain).map_err(|source| StoreError::Decode {
            table,
            key: key.to_owned(),
            source,
        })
    }
}

/// Read and write access to the store inside [`MetaStore::write`]. Reads (through `Deref`
/// to [`ReadTx`]) see this transaction's own writes.
pub struct WriteTx<'a> {
    view: ReadTx<'a>,
}

impl<'a> Deref for WriteTx<'a> {
    type Target = ReadTx<'a>;

    fn deref(&self) -> &ReadTx<'a> {
        &self.view
    }
}

impl WriteTx<'_> {
    /// Inserts `record` under its key, replacing any record with the same key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Encode`] when the record does not serialize, or a redb error.
    pub fn put<R: Record>(&mut self, record: &R) -> Result<(), StoreError> {
        let key = record.key();
        let plain = serde_json::to_vec(record)
            .map(Zeroizing::new)
            .map_err(|source| StoreError::Encode {
                table: R::TABLE,
                key: key.clone(),
                source,
            })?;
        let sealed = self.view.key.seal(&aad(R::TABLE, &key), &plain);
        self.overlay().borrow_mut().put(R::TABLE, key, sealed);
        Ok(())
    }

    /// Deletes the record of type `R` with key `key`; whether there was one.
    ///
    /// # Errors
    ///
    /// A redb error.
    pub fn delete<R: Record>(&mut self, key: &str) -> Result<bool, StoreError> {
        let pending = self
            .overlay()
            .borrow()
            .get(R::TABLE, key)
            .map(|p| p.is_some());
        let existed = match pending {
            Some(existed) => existed,
            None => self.stored_value(R::TABLE, key)?.is_some(),
        };
        self.overlay().borrow_mut().delete(R::TABLE, key.to_owned());
        Ok(existed)
    }

    fn overlay(&self) -> &RefCell<Overlay> {
        self.view
            .overlay
            .unwrap_or_else(|| unreachable!("a WriteTx is only built with an overlay"))
    }

    /// The next value of the counter `name`: 1 the first time, then one more on every
    /// call whose transaction commits. Counters survive restarts; use [`seq_key`] to turn
    /// the value into a key that sorts in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::SeqExhausted`] after `u64::MAX`, or a store error.
    pub fn next_seq(&mut self, name: &str) -> Result<u64, StoreError> {
        let last = self.get::<SeqCounter>(name)?.map_or(0, |c| c.last);
        let next = last
            .checked_add(1)
            .ok_or_else(|| StoreError::SeqExhausted {
                name: name.to_owned(),
            })?;
        self.put(&SeqCounter {
            name: name.to_owned(),
            last: next,
        })?;
        Ok(next)
    }
}

/// `seq` zero-padded to [`SEQ_KEY_WIDTH`] digits, so that keys sort like the numbers:
/// `seq_key(7) == "00000000000000000007"`.
pub fn seq_key(seq: u64) -> String {
    format!("{seq:0SEQ_KEY_WIDTH$}")
}

/// The additional authenticated data a value is sealed under: `table ‖ 0x00 ‖ key`.
fn aad(table: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(table.len() + 1 + key.len());
    aad.extend_from_slice(table.as_bytes());
    aad.push(AAD_SEPARATOR);
    aad.extend_from_slice(key.as_bytes());
    aad
}

fn table_def(name: &'static str) -> RawTableDef {
    TableDefinition::new(name)
}

/// The raw operations the typed accessors need, over either kind of redb table.
trait RawTable {
    fn raw_get(&self, key: &str) -> Result<Option<Vec<u8>>, redb::StorageError>;
    fn raw_entries(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError>;
    fn raw_len(&self) -> Result<u64, redb::StorageError>;
}

impl<T: ReadableTable<&'static str, &'static [u8]>> RawTable for T {
    fn raw_get(&self, key: &str) -> Result<Option<Vec<u8>>, redb::StorageError> {
        Ok(self.get(key)?.map(|v| v.value().to_vec()))
    }

    fn raw_entries(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError> {
        self.iter()?
            .take(limit)
            .map(|entry| {
                let (k, v) = entry?;
                Ok((k.value().to_owned(), v.value().to_vec()))
            })
            .collect()
    }

    fn raw_len(&self) -> Result<u64, redb::StorageError> {
        ReadableTableMetadata::len(self)
    }
}

/// The key check: proves on open that the sealing key is the store's, and records the
/// layout version.
#[derive(Serialize, Deserialize)]
struct StoreInfo {
    format: u32,
}

impl StoreInfo {
    const KEY: &'static str = "store";
}

impl Record for StoreInfo {
    const TABLE: &'static str = STORE_INFO_TABLE;

    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// One [`WriteTx::next_seq`] counter.
#[derive(Serialize, Deserialize)]
struct SeqCounter {
    name: String,
    last: u64,
}

impl Record for SeqCounter {
    const TABLE: &'static str = SEQ_TABLE;

    fn key(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
