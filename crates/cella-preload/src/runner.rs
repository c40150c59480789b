//! Running the workload: the [`Runner`] trait, and [`ProcessRunner`], which runs it as a
//! child process in its own process group (the real backends' runner; the mock backend
//! has a scripted one).
//!
//! Contract of a runner: it returns once the workload has ended, and no later than
//! [`CANCEL_GRACE`] plus a little after its `cancel` token fires; whatever it started is
//! gone when it returns (for [`ProcessRunner`]: its whole process group is killed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt as _;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::layout::Layout;
use crate::process::{BoundedLines, LongLines, Signal, signal_group};
use crate::protocol::{ExitStatus, LogStream, MAX_LOG_LINE_BYTES};

/// How long a cancelled program has between SIGTERM and SIGKILL: enough to flush and
/// exit, short enough that a cancel takes effect within a second.
pub const CANCEL_GRACE: Duration = Duration::from_millis(300);

/// Where a runner sends the program's log lines.
pub type LogSink = mpsc::Sender<(LogStream, String)>;

/// What to run.
#[derive(Debug)]
pub struct Job<'a> {
    /// The directories.
    pub layout: &'a Layout,
    /// The command line from `Deploy`.
    pub argv: &'a [String],
    /// The environment: `Deploy.env` and the layout's variables.
    pub env: &'a [(String, String)],
}

/// The workload could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("waiting for the program: {0}")]
    Wait(#[source] std::io::Error),
}

/// Runs a workload to its end.
#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    /// Runs `job`, sending its log lines to `log`, until it ends or `cancel` fires.
    ///
    /// # Errors
    ///
    /// [`RunError`] if the workload could not be started or waited for.
    async fn run(
        &self,
        job: &Job<'_>,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, RunError>;
}

/// Cuts `line` to [`MAX_LOG_LINE_BYTES`] on a character boundary, marking the cut.
pub fn cut_line(mut line: String) -> String {
    if line.len() > MAX_LOG_LINE_BYTES {
        let end = line.floor_char_boundary(MAX_LOG_LINE_BYTES - '…'.len_utf8());
        line.truncate(end);
        line.push('…');
    }
    line
}

/// Runs the workload as a child process: `argv[0]` relative to the workload directory
/// (which is its working directory), a clean environment (`PATH=/usr/bin:/bin` and the
/// job's variables only), stdin from `/dev/null`, stdout and stderr as log lines, in a
/// process group of its own so that a cancel kills everything it started.
///
/// Two options, which the `sandbox` backend sets ([`ProcessRunner::from_env`]):
/// - **confined**: the program is started through the pre-load binary's wrapper mode
///   ([`crate::confine`]), which restricts it with Landlock to writing its outputs,
///   scratch and `/tmp` only, then `exec`s it;
/// - **denials**: the file where the sandbox's supervisor counts the system calls its
///   seccomp filter denied; after the program ends, the ones denied during its run are
///   added to the log as one line (`sandbox: 3 system calls denied: mount ×2, ptrace ×1`).
#[derive(Debug, Default, Clone)]
pub struct ProcessRunner {
    confine_with: Option<PathBuf>,
    denials: Option<PathBuf>,
}

/// Set to `1` by the sandbox backend: start the program confined ([`crate::confine`]).
pub const CONFINE_ENV: &str = "CELLA_PRELOAD_CONFINE";
/// Set by the sandbox backend: the file of seccomp denial counts its supervisor writes.
pub const DENIALS_ENV: &str = "CELLA_SANDBOX_DENIALS";

impl ProcessRunner {
    /// The plain runner: no confinement, no denial counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts programs through `preload` (the pre-load binary, as seen from where it runs)
    /// in its wrapper mode, confined with Landlock.
    #[must_use]
    pub fn confined(mut self, preload: impl Into<PathBuf>) -> Self {
        self.confine_with = Some(preload.into());
        self
    }

    /// Reports the seccomp denials counted in `file` during each run.
    #[must_use]
    pub fn with_denials(mut self, file: impl Into<PathBuf>) -> Self {
        self.denials = Some(file.into());
        self
    }

    /// The runner the environment asks for: confined when [`CONFINE_ENV`] is `1` (through
    /// this very binary), denial counts from [`DENIALS_ENV`] when set.
    ///
    /// # Errors
    ///
    /// A message if confinement is asked for but this binary cannot be located.
    pub fn from_env() -> Result<Self, String> {
        let mut runner = Self::new();
        match std::env::var(CONFINE_ENV).as_deref() {
            Ok("1") => runner = runner.confined(own_binary()?),
            Ok("0") | Err(_) => {}
            Ok(other) => return Err(format!("{CONFINE_ENV} must be 0 or 1, not {other:?}")),
        }
        if let Some(file) = std::env::var_os(DENIALS_ENV) {
            runner = runner.with_denials(file);
        }
        Ok(runner)
    }
}

/// This binary's path: `/proc/self/exe`, or an absolute `argv[0]` where there is no
/// `/proc`.
fn own_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::current_exe() {
        return Ok(p);
    }
    match std::env::args_os().next().map(PathBuf::from) {
        Some(p) if p.is_absolute() => Ok(p),
        _ => Err("cannot locate the pre-load binary to confine the program with".into()),
    }
}

/// Seccomp denials as the sandbox's supervisor writes them.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Denials {
    /// Every denied call.
    #[serde(default)]
    pub total: u64,
    /// Denied calls by system call name.
    #[serde(default)]
    pub by_syscall: BTreeMap<String, u64>,
}

/// What [`signal_group`] names in a warning.
const WORKLOAD: &str = "the workload";

/// Largest denials file read: a count per system call name is a few KiB at most.
const MAX_DENIALS_LEN: u64 = 64 * 1024;

impl Denials {
    /// Reads `path`; no file yet means none denied.
    ///
    /// # Errors
    ///
    /// A message naming the file if it cannot be read or parsed.
    pub fn read(path: &Path) -> Result<Self, String> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_DENIALS_LEN), &mut text)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
    }

    /// The denials counted since `before`.
    #[must_use]
    pub fn since(&self, before: &Self) -> Self {
        let by_syscall = self
            .by_syscall
            .iter()
            .filter_map(|(name, n)| {
                let was = before.by_syscall.get(name).copied().unwrap_or(0);
                (*n > was).then(|| (name.clone(), n - was))
            })
            .collect();
        Self {
            total: self.total.saturating_sub(before.total),
            by_syscall,
        }
    }

    /// The log line for these denials, `None` if there are none: most frequent first.
    pub fn log_line(&self) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        let mut calls: Vec<(&String, &u64)> = self.by_syscall.iter().collect();
        calls.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let list = calls
            .iter()
            .map(|(name, n)| format!("{name} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let calls = if self.total == 1 { "call" } else { "calls" };
        Some(if list.is_empty() {
            format!("sandbox: {} system {calls} denied", self.total)
        } else {
            format!("sandbox: {} system {calls} denied: {list}", self.total)
        })
    }
}

async fn pump(stream: LogStream, reader: impl AsyncRead + Unpin, log: LogSink) {
    // Lines are read with a bound (a longer line comes out in pieces), then cut with a
    // mark to the protocol's limit.
    let mut lines = BoundedLines::new(reader, MAX_LOG_LINE_BYTES + 1, LongLines::Split);
    while let Some(mut line) = lines.next_line().await {
        while line.ends_with('\r') {
            line.pop();
        }
        if log.send((stream, cut_line(line))).await.is_err() {
            return;
        }
    }
}

#[async_trait::async_trait]
impl Runner for ProcessRunner {
    async fn run(
        &self,
        job: &Job<'_>,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, RunError> {
        let program = job.argv.first().cloned().unwrap_or_default();
        let mut cmd = match &self.confine_with {
            None => {
                let mut cmd = tokio::process::Command::new(&program);
                cmd.args(&job.argv[1.min(job.argv.len())..]);
                cmd
            }
            Some(preload) => {
                // The return value is the one file outside the writable directories the
                // program may write: it must exist for Landlock to name it.
                let rv = job.layout.return_file();
                std::fs::File::create(&rv).map_err(|source| RunError::Spawn {
                    program: program.clone(),
                    source,
                })?;
                let req = crate::confine::ExecRequest {
                    writable_dirs: vec![
                        job.layout.output_dir(),
                        job.layout.scratch_dir(),
                        PathBuf::from("/tmp"),
                    ],
                    writable_files: vec![rv],
                    argv: job.argv.iter().map(Into::into).collect(),
                };
                let mut cmd = tokio::process::Command::new(preload);
                cmd.arg0("cella-preload").args(req.to_args());
                cmd
            }
        };
        let before = self.denials.as_deref().map(Denials::read);
        cmd.current_dir(job.layout.workload_dir())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|source| RunError::Spawn { program, source })?;
        let pid = child.id();
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(LogStream::Stdout, s, log.clone())));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(LogStream::Stderr, s, log.clone())));
        let status = tokio::select! {
            s = child.wait() => s.map_err(RunError::Wait)?,
            () = cancel.cancelled() => {
                signal_group(pid, Signal::TERM, WORKLOAD);
                match tokio::time::timeout(CANCEL_GRACE, child.wait()).await {
                    Ok(s) => s.map_err(RunError::Wait)?,
                    Err(_) => {
                        signal_group(pid, Signal::KILL, WORKLOAD);
                        child.wait().await.map_err(RunError::Wait)?
                    }
                }
            }
        };
        // The leader is gone; whatever it left in its group goes too, so that nothing
        // outlives the run and the log pipes close.
        signal_group(pid, Signal::KILL, WORKLOAD);
        for pump in [out, err].into_iter().flatten() {
            let _ended = pump.await;
        }
        if let (Some(path), Some(before)) = (&self.denials, before) {
            let line = match (Denials::read(path), before) {
                (Ok(after), Ok(before)) => after.since(&before).log_line(),
                (Err(e), _) | (_, Err(e)) => {
                    Some(format!("sandbox: denial counts unavailable: {e}"))
                }
            };
            if let Some(line) = line {
                let _sent = log.send((LogStream::Stderr, line)).await;
            }
        }
        Ok(ExitStatus {
            code: status.code(),
            signal: status.signal(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_sh(
        script: &str,
        cancel: CancellationToken,
    ) -> (ExitStatus, Vec<String>, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let env = layout.env();
        let (tx, mut rx) = mpsc::channel(16);
        let collect = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some((_, l)) = rx.recv().await {
                lines.push(l);
            }
            lines
        });
        let job = Job {
            layout: &layout,
            argv: &argv,
            env: &env,
        };
        let status = ProcessRunner::new().run(&job, tx, cancel).await.unwrap();
        let pid = std::fs::read_to_string(layout.scratch_dir().join("pid")).ok();
        (status, collect.await.unwrap(), pid)
    }

    #[test]
    fn denials_since_a_baseline_make_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denials.json");
        assert_eq!(Denials::read(&path).unwrap(), Denials::default());
        std::fs::write(&path, r#"{"total": 1, "by_syscall": {"ptrace": 1}}"#).unwrap();
        let before = Denials::read(&path).unwrap();
        std::fs::write(
            &path,
            r#"{"total": 4, "by_syscall": {"ptrace": 2, "mount": 2}}"#,
        )
        .unwrap();
        let after = Denials::read(&path).unwrap();
        assert_eq!(
            after.since(&before).log_line().unwrap(),
            "sandbox: 3 system calls denied: mount ×2, ptrace ×1"
        );
        assert_eq!(after.since(&after).log_line(), None);
        std::fs::write(&path, "{not json").unwrap();
        assert!(Denials::read(&path).unwrap_err().contains("denials.json"));
    }

    #[tokio::test]
    async fn the_denials_line_is_logged_after_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("w");
        std::fs::create_dir(&root).unwrap();
        let layout = Layout::create(&root).unwrap();
        let denials = dir.path().join("denials.json");
        let argv = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo ran; printf '{{\"total\": 2, \"by_syscall\": {{\"mount\": 2}}}}' > {}",
                denials.display()
            ),
        ];
        let env = layout.env();
        let (tx, mut rx) = mpsc::channel(16);
        let job = Job {
            layout: &layout,
            argv: &argv,
            env: &env,
        };
        let runner = ProcessRunner::new().with_denials(&denials);
        let status = runner
            .run(&job, tx, CancellationToken::new())
            .await
            .unwrap();
        assert!(status.success());
        let mut lines = Vec::new();
        while let Some((_, l)) = rx.recv().await {
            lines.push(l);
        }
        assert_eq!(
            lines,
            ["ran", "sandbox: 2 system calls denied: mount ×2"],
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn runs_logs_and_reports_exit() {
        let (status, lines, _) = run_sh(
            "echo one; echo two >&2; test -d \"$CELLA_OUTPUT_DIR\" && exit 3",
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.code, Some(3));
        assert!(!status.success());
        assert!(lines.contains(&"one".to_owned()) && lines.contains(&"two".to_owned()));
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let (status, lines, _) = run_sh(
            "head -c 10000 /dev/zero | tr '\\0' x; echo; echo after",
            CancellationToken::new(),
        )
        .await;
        assert!(status.success());
        assert!(lines[0].len() <= MAX_LOG_LINE_BYTES && lines[0].ends_with('…'));
        assert_eq!(lines.last().unwrap(), "after");
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group_quickly() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let started = std::time::Instant::now();
        // The shell ignores TERM and has a grandchild: both must go.
        let (status, _, pid) = run_sh(
            "trap '' TERM; sleep 30 & echo $! > \"$CELLA_SCRATCH_DIR/pid\"; wait",
            cancel,
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(status.signal, Some(9));
        let pid = pid.expect("the script wrote its child's pid");
        assert!(gone(pid.trim()).await, "grandchild {pid} outlived the run");
    }

    /// Whether process `pid` is gone (or a zombie waiting for init), within a second.
    async fn gone(pid: &str) -> bool {
        for _ in 0..50 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z')) =>
                {
                    return true;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        false
    }
}
