//! A real S3-compatible server for tests: the `s3s-fs` binary (crates.io `s3s-fs`,
//! installed by `.ci/run`), started on a free loopback port over a temporary directory,
//! with its own credentials and one bucket.
//!
//! The binary is `$CELLA_TEST_S3_BIN`, else `target/s3s-fs/bin/s3s-fs` in the
//! workspace (where `.ci/run` installs it), else `s3s-fs` on the `PATH`. Without it the
//! tests that need it fail naming what to install, unless `CELLA_TEST_SKIP_S3=1` says
//! to skip them.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::S3Config;

/// Names the server binary.
pub const BIN_ENV: &str = "CELLA_TEST_S3_BIN";
/// Set to `1` to skip the tests that need the server instead of failing them.
pub const SKIP_ENV: &str = "CELLA_TEST_SKIP_S3";
/// The bucket every test server has.
pub const BUCKET: &str = "cella-test";
/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `s3s-fs`, killed when dropped.
#[derive(Debug)]
pub struct S3TestServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
}

/// Waits until the server accepts connections; `false` if it exited or took too long.
fn wait_listening(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Where the server binary is, if anywhere.
fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(BIN_ENV) {
        return Some(PathBuf::from(bin));
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/s3s-fs/bin/s3s-fs");
    if installed.is_file() {
        return Some(installed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

impl S3TestServer {
    /// Starts a server, or `None` when `CELLA_TEST_SKIP_S3=1` (the caller returns, and
    /// the skip is printed).
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not come up: a test that needs it
    /// fails rather than passing without having run.
    pub fn start() -> Option<Self> {
        if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
            eprintln!("skipping: {SKIP_ENV}=1 (this test needs an S3 server)");
            return None;
        }
        let Some(bin) = find_binary() else {
            panic!(
                "this test needs the S3 server s3s-fs: run `cargo install s3s-fs --version =0.14.1 \
                 --locked --features binary --root target/s3s-fs` (as .ci/run does), set \
                 {BIN_ENV} to the binary, or set {SKIP_ENV}=1 to skip"
            );
        };
        let dir = tempfile::tempdir().expect("temporary directory for the S3 server");
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket directory");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let access_key = format!("cella-test-{}", std::process::id());
        let secret_key = format!("secret-{nanos:x}");
        // Another process may take the port between probing and binding: try again.
        let mut last = String::new();
        let dir = dir;
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let log_path = dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).expect("server log");
            let child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("server log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut child = child;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if wait_listening(&mut child, addr) {
                return Some(Self {
                    child: Some(child),
                    dir,
                    addr,
                    access_key,
                    secret_key,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last.clear();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut last));
        }
        panic!(
            "the S3 server {} did not start; its log:\n{last}",
            bin.display()
        );
    }

    /// The settings of a blob store under `prefix` in the server's bucket.
    pub fn config(&self, prefix: &str) -> S3Config {
        let mut c = S3Config::from_url(&format!("s3://{BUCKET}/{prefix}"))
            .expect("a valid test bucket URL");
        c.endpoint = Some(self.endpoint());
        c.allow_http = true;
        c.access_key_id = Some(self.access_key.clone());
        c.secret_access_key = Some(self.secret_key.clone());
        c
    }

    /// The server's `http://127.0.0.1:port` endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory the server keeps the buckets in (`<dir>/<bucket>/<key>`) and its
    /// multipart uploads' parts.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (an object store that went away); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}
