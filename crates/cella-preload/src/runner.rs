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

use crate::layout::{Layout, LayoutError, empty_dir};
use crate::process::{BoundedLines, LongLines, Signal, descendants, signal_group};
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

    /// Removes what a run left outside the run's own directories (which
    /// [`Layout::wipe`] empties) before the instance serves another task: `Reset`.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] naming what could not be removed.
    fn reset(&self) -> Result<(), LayoutError> {
        Ok(())
    }
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
///   added to the log as one line (`sandbox: 3 system calls denied: mount ×2, ptrace ×1`);
/// - **private directories**: directories the program may write that belong to this
///   instance alone (the sandbox's `/tmp` tmpfs), emptied by [`Runner::reset`] so that
///   nothing of one task reaches the next on a reused instance.
///
/// And one the pre-load binary sets for itself ([`ProcessRunner::reap_leftovers`]):
/// **leftovers** — it becomes the child subreaper of everything the program starts, and
/// when the program exits, every process still below it (a daemon that called `setsid`
/// and holds the program's stdout, say) is killed: the run ends when the program does.
#[derive(Debug, Default, Clone)]
pub struct ProcessRunner {
    confine_with: Option<PathBuf>,
    denials: Option<PathBuf>,
    private_dirs: Vec<PathBuf>,
    kill_leftovers: bool,
    memory: Option<MemoryWatch>,
}

/// Where the instance's cgroup counts its OOM kills, and its memory limit.
#[derive(Debug, Clone)]
struct MemoryWatch {
    oom_control: PathBuf,
    limit_bytes: u64,
}

impl MemoryWatch {
    /// The cgroup's `oom_kill` count; `None` without the file (no cgroup applies).
    fn oom_kills(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.oom_control).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }
}

/// Set to `1` by the sandbox backend: start the program confined ([`crate::confine`]).
pub const CONFINE_ENV: &str = "CELLA_PRELOAD_CONFINE";
/// Set by the sandbox backend: the file of seccomp denial counts its supervisor writes.
pub const DENIALS_ENV: &str = "CELLA_SANDBOX_DENIALS";
/// Set by the sandbox backend: `<memory.oom_control path>:<limit in bytes>`, the
/// instance's cgroup memory events (bound in by the jailer when the cgroup applies) and
/// its limit, so that a program the kernel killed at the limit is reported as such.
pub const MEMORY_ENV: &str = "CELLA_SANDBOX_MEMORY";
/// Set by the sandbox backend: `:`-separated absolute directories private to the
/// instance that the program may write (`/tmp`), emptied at `Reset`.
pub const PRIVATE_DIRS_ENV: &str = "CELLA_PRELOAD_PRIVATE_DIRS";

/// How long the program's stdout and stderr are still read once it exited and what it
/// left was killed: the last lines in the pipes, not a process that keeps them open.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// How long killing what the program left may take before the run ends anyway.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

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

    /// Empties `dirs` (absolute paths private to this instance) at every [`Runner::reset`].
    #[must_use]
    pub fn with_private_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.private_dirs = dirs;
        self
    }

    /// Makes this process the child subreaper of the programs it runs, and kills every
    /// process below it when a program exits. Only for a process that has no other
    /// children than its programs' (the pre-load binary): everything below it goes.
    ///
    /// # Errors
    ///
    /// A message if the kernel refuses `PR_SET_CHILD_SUBREAPER`.
    pub fn reap_leftovers(&mut self) -> Result<(), String> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
        self.kill_leftovers = true;
        Ok(())
    }

    /// The runner the environment asks for: confined when [`CONFINE_ENV`] is `1` (through
    /// this very binary), denial counts from [`DENIALS_ENV`] when set, private directories
    /// from [`PRIVATE_DIRS_ENV`].
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
        if let Ok(memory) = std::env::var(MEMORY_ENV) {
            let parsed = memory
                .rsplit_once(':')
                .and_then(|(path, limit)| Some((PathBuf::from(path), limit.parse().ok()?)));
            let Some((oom_control, limit_bytes)) = parsed else {
                return Err(format!(
                    "{MEMORY_ENV} must be <path>:<bytes>, not {memory:?}"
                ));
            };
            runner.memory = Some(MemoryWatch {
                oom_control,
                limit_bytes,
            });
        }
        if let Ok(dirs) = std::env::var(PRIVATE_DIRS_ENV) {
            let dirs: Vec<PathBuf> = dirs.split(':').map(PathBuf::from).collect();
            if let Some(bad) = dirs.iter().find(|d| !d.is_absolute()) {
                return Err(format!(
                    "{PRIVATE_DIRS_ENV}: {} is not an absolute path",
                    bad.display()
                ));
            }
            runner = runner.with_private_dirs(dirs);
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

    /// The log line for these denials, `None` if there are none: most frequent first, at
    /// most [`MAX_LOG_LINE_BYTES`] long (the calls that do not fit are counted, "… and 12
    /// more"), since the channel refuses a longer line.
    pub fn log_line(&self) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        let mut calls: Vec<(&String, &u64)> = self.by_syscall.iter().collect();
        calls.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        // Room for the words around the list and the "… and N more" tail.
        let budget = MAX_LOG_LINE_BYTES - 96;
        let mut list = String::new();
        let mut shown = 0;
        for (name, n) in &calls {
            let item = format!("{name} ×{n}");
            if list.len() + item.len() + 2 > budget {
                break;
            }
            if !list.is_empty() {
                list.push_str(", ");
            }
            list.push_str(&item);
            shown += 1;
        }
        if shown < calls.len() {
            list.push_str(&format!(" … and {} more", calls.len() - shown));
        }
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
        let oom_before = self.memory.as_ref().and_then(MemoryWatch::oom_kills);
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
        // outlives the run and the log pipes close; and, with leftovers reaped, whatever
        // left the group (setsid) as well.
        signal_group(pid, Signal::KILL, WORKLOAD);
        if self.kill_leftovers {
            kill_leftovers().await;
        }
        let until = tokio::time::Instant::now() + OUTPUT_GRACE;
        let mut cut = false;
        for pump in [out, err].into_iter().flatten() {
            let abort = pump.abort_handle();
            if tokio::time::timeout_at(until, pump).await.is_err() {
                abort.abort();
                cut = true;
            }
        }
        if cut {
            let line = "sandbox: the program exited, but processes it left kept its output open; what they wrote after its end is not in the log";
            let _sent = log.send((LogStream::Stderr, line.to_owned())).await;
        }
        for line in self.limit_reached(status.signal(), oom_before) {
            let _sent = log.send((LogStream::Stderr, line)).await;
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

    fn reset(&self) -> Result<(), LayoutError> {
        for dir in &self.private_dirs {
            empty_dir(dir)?;
        }
        Ok(())
    }
}

/// `SIGKILL` and `SIGXCPU`.
const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;

impl ProcessRunner {
    /// Log lines saying which limit ended a program that a signal killed: the cgroup's
    /// memory limit when the kernel's OOM killer counted a kill during the run
    /// (`oom_before` the count before it), the CPU time limit for `SIGXCPU`.
    fn limit_reached(&self, signal: Option<i32>, oom_before: Option<u64>) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(watch) = &self.memory
            && let (Some(before), Some(after)) = (oom_before, watch.oom_kills())
            && after > before
        {
            let what = if signal == Some(SIGKILL) {
                "the program"
            } else {
                "a process of the program"
            };
            lines.push(format!(
                "sandbox: the kernel killed {what} at the instance's memory limit of {} MiB ([sandbox] memory_bytes, for all its processes together)",
                watch.limit_bytes >> 20
            ));
        }
        if signal == Some(SIGXCPU) {
            lines.push(
                "sandbox: the program used up its CPU time limit ([sandbox] cpu_seconds, per process)"
                    .to_owned(),
            );
        }
        lines
    }
}

/// Kills every process below this one and reaps those that became its children (it is
/// their subreaper), until none is left or [`LEFTOVER_GRACE`] passed.
async fn kill_leftovers() {
    let until = tokio::time::Instant::now() + LEFTOVER_GRACE;
    loop {
        let left = match descendants() {
            Ok(left) => left,
            Err(e) => {
                tracing::warn!(error = %e, "listing the processes the program left");
                return;
            }
        };
        if left.is_empty() {
            return;
        }
        for d in &left {
            let Some(pid) = i32::try_from(d.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            else {
                continue;
            };
            if !d.zombie {
                // Gone meanwhile (ESRCH) is what we want.
                let _gone = rustix::process::kill_process(pid, Signal::KILL);
            }
            // A child of ours since its parent died: reap it (ECHILD for the others,
            // which their own parent, killed too, leaves to us next round).
            let _reaped = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(
                left = left.len(),
                "processes the program left survived SIGKILL"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn the_denials_line_fits_a_log_line_however_many_calls_were_denied() {
        // 400 distinct unknown system call numbers, as a hostile program makes them.
        let denials = Denials {
            total: 400,
            by_syscall: (0..400).map(|n| (format!("nr_{}", 1000 + n), 1)).collect(),
        };
        let line = denials.log_line().unwrap();
        assert!(line.len() <= MAX_LOG_LINE_BYTES, "{} bytes", line.len());
        assert!(
            line.starts_with("sandbox: 400 system calls denied: nr_1000 ×1"),
            "{line}"
        );
        let shown = line.matches('×').count();
        assert!(
            line.ends_with(&format!("… and {} more", 400 - shown)),
            "{line}"
        );
    }

    #[test]
    fn a_kill_at_the_memory_limit_and_the_cpu_limit_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let oom = dir.path().join("memory.oom_control");
        let mut runner = ProcessRunner::new();
        runner.memory = Some(MemoryWatch {
            oom_control: oom.clone(),
            limit_bytes: 512 << 20,
        });
        // No cgroup file: nothing can be said.
        assert!(runner.limit_reached(Some(SIGKILL), None).is_empty());
        std::fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        let before = runner.memory.as_ref().unwrap().oom_kills();
        assert_eq!(before, Some(2));
        // A SIGKILL that was not the OOM killer's (the count did not move).
        assert!(runner.limit_reached(Some(SIGKILL), before).is_empty());
        std::fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        let lines = runner.limit_reached(Some(SIGKILL), before);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("memory limit of 512 MiB"), "{lines:?}");
        let cpu = ProcessRunner::new().limit_reached(Some(SIGXCPU), None);
        assert!(cpu[0].contains("CPU time limit"), "{cpu:?}");
    }

    #[tokio::test]
    async fn reset_empties_the_private_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("tmp");
        let other = dir.path().join("other");
        for d in [&private, &other] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/secret"), b"tenant a").unwrap();
        }
        // What a program may leave: a file and a directory it can no longer read.
        std::fs::set_permissions(private.join("sub"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o500)).unwrap();
        ProcessRunner::new().reset().unwrap();
        let runner = ProcessRunner::new().with_private_dirs(vec![private.clone()]);
        runner.reset().unwrap();
        assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0);
        assert!(other.join("sub/secret").exists());
    }

    #[tokio::test]
    async fn the_run_ends_when_the_program_exits_whatever_holds_its_output() {
        // The program exits at once, leaving a process in a session of its own (out of
        // its group) that keeps stdout open for 30 s.
        let started = std::time::Instant::now();
        let (status, lines, pid) = run_sh(
            "echo before; setsid sleep 30 & echo $! > \"$CELLA_SCRATCH_DIR/pid\"; sleep 0.3; exit 0",
            CancellationToken::new(),
        )
        .await;
        let took = started.elapsed();
        if let Some(pid) = pid.as_deref().and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                Signal::KILL,
            );
        }
        assert!(status.success());
        assert!(took < Duration::from_secs(5), "the run took {took:?}");
        assert_eq!(lines[0], "before", "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("kept its output open")),
            "{lines:?}"
        );
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
