//! A throwaway PostgreSQL server for tests (the store's own, and other crates' through
//! the `pg-test-cluster` feature). Never used by a node.
//!
//! [`database`] hands each test a fresh, empty database on a server found like this:
//!
//! 1. `CELLA_TEST_POSTGRES_URL` set: that server (its user must be allowed to create
//!    databases);
//! 2. otherwise a cluster started once per test process with `initdb` and `pg_ctl` from
//!    `CELLA_TEST_PG_BIN`, or else the newest `/usr/lib/postgresql/*/bin`, in a temporary
//!    directory, listening on a free loopback port only. Run as root, the server runs as
//!    the `postgres` user (PostgreSQL refuses root). A watchdog stops it and removes its
//!    directory when the test process exits.
//!
//! When no server can be had, [`database`] panics naming what is missing, so the tests
//! fail rather than pass without running, unless `CELLA_TEST_SKIP_POSTGRES=1` says
//! to skip them (then it returns `None`). `docs/store.md` has the details.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// URL of an existing server to use instead of starting one.
pub const URL_ENV: &str = "CELLA_TEST_POSTGRES_URL";
/// Directory holding `initdb` and `pg_ctl`.
pub const BIN_ENV: &str = "CELLA_TEST_PG_BIN";
/// `1`: skip the PostgreSQL tests instead of failing them when no server can be had.
pub const SKIP_ENV: &str = "CELLA_TEST_SKIP_POSTGRES";

/// The server of this test process: its base URL (no database), or why there is none.
static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

/// A new empty database for one test, as a URL; `None` only when [`SKIP_ENV`] is `1`.
///
/// # Panics
///
/// When no PostgreSQL server can be found or started, or the database cannot be created:
/// the message says what is missing and how to provide it.
pub fn database(test: &str) -> Option<String> {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("{SKIP_ENV}=1: skipping the PostgreSQL test {test}");
        return None;
    }
    let base = match SERVER.get_or_init(server) {
        Ok(base) => base,
        Err(why) => panic!(
            "PostgreSQL test {test} cannot run: {why}. Install PostgreSQL (apt-get install \
             postgresql), or set {BIN_ENV} to its bin directory, or {URL_ENV} to a server; \
             {SKIP_ENV}=1 skips these tests"
        ),
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "cella_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    execute(
        &format!("{base}/postgres"),
        &format!("CREATE DATABASE {name}"),
    )
    .unwrap_or_else(|e| panic!("creating database {name} for {test}: {e}"));
    Some(format!("{base}/{name}"))
}

/// Runs `sql` (one or more statements; a single one may be `CREATE DATABASE`) on the
/// database at `url`.
///
/// # Errors
///
/// The connection or statement error, as text.
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    simple_query(url, sql).map(drop)
}

/// The first column of the first row of the last statement of `sql`, as text (`""` for
/// no row or NULL).
///
/// # Errors
///
/// The connection or statement error, as text.
pub fn query_text(url: &str, sql: &str) -> Result<String, String> {
    let messages = simple_query(url, sql)?;
    let text = messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => {
            Some(row.get(0).unwrap_or_default().to_owned())
        }
        _ => None,
    });
    Ok(text.unwrap_or_default())
}

/// Runs `sql` on a thread of its own, so that it works from inside a tokio runtime too.
fn simple_query(url: &str, sql: &str) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connecting to {url}: {e}"))?;
            tokio::spawn(connection);
            client.simple_query(&sql).await.map_err(|e| {
                let detail = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), ToString::to_string);
                format!("{sql}: {detail}")
            })
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

/// Finds or starts this process's server.
fn server() -> Result<String, String> {
    if let Ok(url) = std::env::var(URL_ENV) {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let bin = match std::env::var_os(BIN_ENV) {
        Some(bin) => PathBuf::from(bin),
        None => newest_installed().ok_or("no /usr/lib/postgresql/*/bin/initdb found")?,
    };
    for tool in ["initdb", "pg_ctl"] {
        if !bin.join(tool).is_file() {
            return Err(format!("{} is missing", bin.join(tool).display()));
        }
    }
    start(&bin)
}

/// The bin directory of the newest PostgreSQL installed from Debian's packages.
fn newest_installed() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Creates a cluster in a new temporary directory and starts it on a free loopback port.
fn start(bin: &Path) -> Result<String, String> {
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("cella-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if root {
        let uid = id("-u")?;
        let gid = id("-g")?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("giving {} to the postgres user: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let as_server = |tool: &str| {
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
            c
        } else {
            Command::new(bin.join(tool))
        };
        cmd.stdin(Stdio::null());
        cmd
    };
    let out = as_server("initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // fsync off: a test cluster needs no crash safety, and it is much faster.
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200",
        dir.display()
    );
    let out = as_server("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-o", &options, "start"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("running pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        return Err(format!(
            "pg_ctl start failed: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    watch(bin, &data, &dir, root)?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}

/// Leaves a shell behind that stops the server and removes `dir` once this process is
/// gone (statics are never dropped, so nothing in-process could).
fn watch(bin: &Path, data: &Path, dir: &Path, root: bool) -> Result<(), String> {
    let stop = format!(
        "{}'{}' -D '{}' -m immediate stop",
        if root { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while [ -e /proc/{pid} ]; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
        dir.display(),
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the cluster's watchdog: {e}"))
}

/// Whether this process runs as root (the owner of `/proc/self`; no unsafe `getuid`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `id <flag> postgres`.
fn id(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| format!("running id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "running as root, but there is no postgres user to run the server".into())
}
