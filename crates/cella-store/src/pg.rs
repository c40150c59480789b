//! The PostgreSQL backend of the metadata store: the same tables, keys and sealed values
//! as the redb backend, kept in one table of a PostgreSQL database.
//!
//! Every record is a row `(tbl, key, value)` of `cella_records`, with `tbl` and `key`
//! under the `"C"` collation so that keys sort by their bytes, as redb sorts them. Values
//! are sealed exactly as in redb (same AAD), so the database server never sees a record
//! in clear.
//!
//! Write transactions take one cluster-wide advisory lock ([`WRITE_LOCK`]) first, so
//! writers run one at a time across every process using the database, as redb's single
//! writer does: `next_seq`, queue heads and chain heads read inside a write stay correct
//! with several replicas, and no closure ever needs re-running (there are no serialization
//! failures to retry). Reads run in `REPEATABLE READ READ ONLY` transactions: one
//! consistent snapshot, never blocked by the writer.
//!
//! The client is `tokio-postgres`, driven by a small runtime the store owns. The store's
//! API is synchronous and is called from inside the platform's tokio runtime, where a
//! nested `block_on` of tokio would panic; so the connection tasks run on the store's own
//! runtime and callers wait for query results with `futures::executor::block_on`, which
//! only parks the calling thread (as a redb fsync does).

use std::future::Future;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::meta::StoreError;
use crate::overlay::Overlay;

/// The schema migrations, in order: each brings the schema to its version. Append only;
/// never edit a released migration.
const MIGRATIONS: &[(i32, &str)] = &[
    // The records table.
    (
        1,
        r#"CREATE TABLE cella_records (
        tbl   text COLLATE "C" NOT NULL,
        key   text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    )"#,
    ),
];

/// The schema version this build creates and reads: the last migration's.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Advisory lock held by every write transaction: writers are serialised across all
/// processes sharing the database (the ASCII of `cella-w`).
const WRITE_LOCK: i64 = 0x0063_656c_6c61_2d77;

/// Advisory lock held while migrating, so replicas starting together migrate once
/// (the ASCII of `cella-m`).
const MIGRATE_LOCK: i64 = 0x0063_656c_6c61_2d6d;

/// Connections kept open for reuse; more are opened under load and closed after.
const IDLE_CONNECTIONS: usize = 8;

/// The prepared statements of one connection.
struct Statements {
    get: Statement,
    scan: Statement,
    count: Statement,
    upsert: Statement,
    delete: Statement,
}

/// One open connection and its prepared statements.
pub(crate) struct Conn {
    client: Client,
    stmts: Statements,
}

/// A PostgreSQL database holding a metadata store.
pub(crate) struct Postgres {
    config: tokio_postgres::Config,
    /// The URL without its password, for errors and logs.
    name: String,
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    idle: Mutex<Vec<Conn>>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The store may be dropped on a tokio worker thread, where a runtime must not
        // block to shut down: let its threads wind down on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Parses `url` (which must not hold a password: `password` gives it), connects once
    /// and brings the schema to [`SCHEMA_VERSION`].
    pub(crate) fn connect(url: &str, password: Option<&[u8]>) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|source| StoreError::InvalidUrl { source })?;
        let name = describe(&config);
        if config.get_password().is_some() {
            return Err(StoreError::PasswordInUrl { store: name });
        }
        if let Some(password) = password {
            config.password(password);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cella-store-pg")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Runtime { source })?;
        let pg = Self {
            config,
            name,
            runtime: Some(runtime),
            idle: Mutex::new(Vec::new()),
        };
        pg.migrate()?;
        tracing::debug!(store = %pg.name, "opened metadata store on PostgreSQL");
        Ok(pg)
    }

    /// The database's URL without its password.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Applies the migrations this database lacks, in one transaction under
    /// [`MIGRATE_LOCK`]; refuses a database whose schema is newer than this build's.
    fn migrate(&self) -> Result<(), StoreError> {
        // Not a pooled connection: those prepare statements on tables made here.
        let client = self.client()?;
        let result = block_on(async {
            client
                .batch_execute(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
                     CREATE TABLE IF NOT EXISTS cella_schema_version (
                         version integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     )"
                ))
                .await?;
            let row = client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM cella_schema_version",
                    &[],
                )
                .await?;
            let found: i32 = row.try_get(0)?;
            if found > SCHEMA_VERSION {
                client.batch_execute("ROLLBACK").await?;
                return Ok(Err(found));
            }
            for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
                client.batch_execute(sql).await?;
                client
                    .execute(
                        "INSERT INTO cella_schema_version (version) VALUES ($1)",
                        &[&version],
                    )
                    .await?;
                tracing::info!(version, "applied metadata schema migration");
            }
            client.batch_execute("COMMIT").await?;
            Ok(Ok(()))
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(found)) => Err(StoreError::SchemaTooNew {
                store: self.name.clone(),
                found,
                known: SCHEMA_VERSION,
            }),
            Err(e) => Err(self.error("migrating the schema", e)),
        }
    }

    /// An idle connection, or a new one.
    fn conn(&self) -> Result<Conn, StoreError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some(c) if c.client.is_closed() => {}
                Some(c) => return Ok(c),
                None => break,
            }
        }
        let client = self.client()?;
        let preparing = async {
            let stmts = Statements {
                get: client
                    .prepare("SELECT value FROM cella_records WHERE tbl = $1 AND key = $2")
                    .await?,
                scan: client
                    .prepare(
                        "SELECT key, value FROM cella_records WHERE tbl = $1 \
                         ORDER BY key LIMIT $2",
                    )
                    .await?,
                count: client
                    .prepare("SELECT count(*) FROM cella_records WHERE tbl = $1")
                    .await?,
                upsert: client
                    .prepare(
                        "INSERT INTO cella_records (tbl, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                    )
                    .await?,
                delete: client
                    .prepare("DELETE FROM cella_records WHERE tbl = $1 AND key = $2")
                    .await?,
            };
            Ok::<_, tokio_postgres::Error>(stmts)
        };
        match block_on(preparing) {
            Ok(stmts) => Ok(Conn { client, stmts }),
            Err(e) => Err(self.error("preparing statements", e)),
        }
    }

    /// A new connection, driven by a task on the store's runtime.
    fn client(&self) -> Result<Client, StoreError> {
        let config = self.config.clone();
        let Some(runtime) = &self.runtime else {
            unreachable!("the runtime is taken only when dropping")
        };
        let connecting = runtime.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "metadata database connection lost");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        match block_on(connecting) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.error("connecting", e)),
            Err(join) => Err(StoreError::Unavailable {
                store: self.name.clone(),
                source: Box::new(join),
            }),
        }
    }

    /// Returns a healthy connection to the idle pool.
    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS && !conn.client.is_closed() {
            idle.push(conn);
        }
    }

    /// Maps a database error: losing the server is [`StoreError::Unavailable`], the rest
    /// [`StoreError::Database`].
    pub(crate) fn error(&self, op: &'static str, source: tokio_postgres::Error) -> StoreError {
        if is_unavailable(&source) {
            StoreError::Unavailable {
                store: self.name.clone(),
                source: Box::new(source),
            }
        } else {
            StoreError::Database {
                store: self.name.clone(),
                op,
                source,
            }
        }
    }

    /// Begins a transaction: a write holding [`WRITE_LOCK`] (not fsynced at commit when
    /// `durable` is false), or a read-only snapshot.
    pub(crate) fn begin(&self, mode: Mode) -> Result<PgTxn<'_>, StoreError> {
        let conn = self.conn()?;
        let sql = match mode {
            Mode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_owned(),
            Mode::Write { durable } => format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK}){}",
                if durable {
                    ""
                } else {
                    "; SET LOCAL synchronous_commit TO OFF"
                }
            ),
        };
        match block_on(conn.client.batch_execute(&sql)) {
            Ok(()) => Ok(PgTxn {
                pg: self,
                conn: Some(conn),
            }),
            Err(e) => Err(self.error("beginning a transaction", e)),
        }
    }
}

/// What a transaction is for.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// A read-only snapshot.
    Read,
    /// A write; `durable` waits for the commit to be flushed.
    Write {
        /// Whether the commit is synchronous.
        durable: bool,
    },
}

/// An open transaction on one connection. Dropped without [`PgTxn::commit`], it rolls
/// back.
pub(crate) struct PgTxn<'a> {
    pg: &'a Postgres,
    /// `None` once finished.
    conn: Option<Conn>,
}

impl PgTxn<'_> {
    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("a PgTxn is used only until it finishes"))
    }

    /// Runs one query future on this transaction's connection.
    fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        block_on(fut).map_err(|e| self.pg.error(op, e))
    }

    /// The sealed value under `table`/`key`.
    pub(crate) fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.conn();
        let row = self.run(
            "reading a record",
            c.client.query_opt(&c.stmts.get, &[&table, &key]),
        )?;
        row.map(|r| r.try_get::<_, Vec<u8>>(0))
            .transpose()
            .map_err(|e| self.pg.error("reading a record", e))
    }

    /// Up to `limit` sealed entries of `table`, in key order.
    pub(crate) fn scan(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let c = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.run(
            "scanning a table",
            c.client.query(&c.stmts.scan, &[&table, &limit]),
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| self.pg.error("scanning a table", e))
    }

    /// How many records `table` holds.
    pub(crate) fn count(&self, table: &str) -> Result<u64, StoreError> {
        let c = self.conn();
        let row = self.run(
            "counting a table",
            c.client.query_one(&c.stmts.count, &[&table]),
        )?;
        let n: i64 = row
            .try_get(0)
            .map_err(|e| self.pg.error("counting a table", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Writes a successful closure's changes into the transaction.
    pub(crate) fn apply(&self, overlay: Overlay) -> Result<(), StoreError> {
        let c = self.conn();
        for (table, changes) in overlay.into_changes() {
            for (key, value) in changes {
                let done = match &value {
                    Some(v) => block_on(c.client.execute(&c.stmts.upsert, &[&table, &key, v])),
                    None => block_on(c.client.execute(&c.stmts.delete, &[&table, &key])),
                };
                done.map_err(|e| self.pg.error("writing a record", e))?;
            }
        }
        Ok(())
    }

    /// Commits; the connection goes back to the pool when the commit succeeded.
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.finish("COMMIT", "committing")
    }

    fn finish(&mut self, sql: &str, op: &'static str) -> Result<(), StoreError> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        match block_on(conn.client.batch_execute(sql)) {
            Ok(()) => {
                self.pg.give_back(conn);
                Ok(())
            }
            // The connection is in an unknown state: close it.
            Err(e) => Err(self.pg.error(op, e)),
        }
    }
}

impl Drop for PgTxn<'_> {
    fn drop(&mut self) {
        if self.conn.is_some()
            && let Err(e) = self.finish("ROLLBACK", "rolling back")
        {
            tracing::warn!(error = %crate::meta::error_chain(&e), "rollback failed");
        }
    }
}

/// Whether `e` means the server cannot be reached (refused, lost, shutting down, out of
/// connections) rather than a failed statement.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    if e.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether `e` is PostgreSQL's "disk full" (SQLSTATE 53100).
pub(crate) fn is_disk_full(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::DISK_FULL)
}

/// `postgres://user@host:port/dbname` of `config`, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map_or_else(String::new, |h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        });
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// Waits for `fut` on the calling thread, which may be a tokio worker: the connection
/// tasks run on the store's own runtime, so nothing here needs the caller's.
fn block_on<F: Future>(fut: F) -> F::Output {
    futures::executor::block_on(fut)
}
