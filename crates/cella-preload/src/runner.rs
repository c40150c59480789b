//! Running the workload: the [`Runner`] trait, and [`ProcessRunner`], which runs it as a
//! child process in its own process group (the real backends' runner; the mock backend
//! has a scripted one).
//!
//! Contract of a runner: it returns once the workload has ended, and no later than
//! [`CANCEL_GRACE`] plus a little after its `cancel` token fires; whatever it started is
//! gone when it returns (for [`ProcessRunner`]: its whole process group is killed).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::layout::Layout;
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
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessRunner;

async fn pump(stream: LogStream, reader: impl AsyncRead + Unpin, log: LogSink) {
    // Lines are read with a bound: `read_until` on a line-less flood would grow without
    // one, so read through a `take` of the line limit; a longer line comes out in pieces.
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_LOG_LINE_BYTES as u64 + 1);
        match limited.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let line = cut_line(String::from_utf8_lossy(&buf).into_owned());
        if log.send((stream, line)).await.is_err() {
            return;
        }
    }
}

fn signal_group(pid: Option<u32>, signal: rustix::process::Signal) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // ESRCH means the group is already gone, which is what we want.
    if let Err(e) = rustix::process::kill_process_group(pid, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(error = %e, "signalling the workload's process group");
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
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&job.argv[1.min(job.argv.len())..])
            .current_dir(job.layout.workload_dir())
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
            .map(|s| tokio::spawn(pump(LogStream::Stderr, s, log)));
        let status = tokio::select! {
            s = child.wait() => s.map_err(RunError::Wait)?,
            () = cancel.cancelled() => {
                signal_group(pid, rustix::process::Signal::TERM);
                match tokio::time::timeout(CANCEL_GRACE, child.wait()).await {
                    Ok(s) => s.map_err(RunError::Wait)?,
                    Err(_) => {
                        signal_group(pid, rustix::process::Signal::KILL);
                        child.wait().await.map_err(RunError::Wait)?
                    }
                }
            }
        };
        // The leader is gone; whatever it left in its group goes too, so that nothing
        // outlives the run and the log pipes close.
        signal_group(pid, rustix::process::Signal::KILL);
        for pump in [out, err].into_iter().flatten() {
            let _ended = pump.await;
        }
        use std::os::unix::process::ExitStatusExt;
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
        let status = ProcessRunner.run(&job, tx, cancel).await.unwrap();
        let pid = std::fs::read_to_string(layout.scratch_dir().join("pid")).ok();
        (status, collect.await.unwrap(), pid)
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
