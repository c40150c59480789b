//! One sandbox instance: the outer jailer process (leader of its own process group), its
//! run dir, its evidence service and its stderr pump.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cella_libos::process::{
    AbortOnDrop, BoundedLines, LongLines, RemoveDirOnDrop, Signal, instance_exit, signal_group,
};
use cella_libos::{Instance, InstanceExit};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// Most lines of an instance's stderr copied into the node's log.
const MAX_LOG_LINES: usize = 200;
/// Longest stderr line copied (longer ones are cut).
const MAX_LOG_LINE: usize = 4096;

/// Counts a live instance until dropped.
#[derive(Debug)]
pub(crate) struct Live(Arc<AtomicUsize>);

impl Live {
    pub(crate) fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A launched sandbox instance.
#[derive(Debug)]
pub struct SandboxInstance {
    child: Child,
    pid: Option<u32>,
    exit: Option<InstanceExit>,
    run_dir: RemoveDirOnDrop,
    evidence: AbortOnDrop,
    stderr: Option<JoinHandle<()>>,
    live: Option<Live>,
}

/// Copies the jailer's stderr (the jailer's, the supervisor's and the pre-load module's
/// messages) into the node's log, line by line, bounded.
async fn pump_stderr(stderr: tokio::process::ChildStderr, id: String) {
    let mut reader = BoundedLines::new(stderr, MAX_LOG_LINE, LongLines::Split);
    let mut lines = 0usize;
    while let Some(line) = reader.next_line().await {
        if lines < MAX_LOG_LINES {
            tracing::info!(instance = %id, "sandbox: {}", line.trim_end());
        } else if lines == MAX_LOG_LINES {
            tracing::info!(instance = %id, "sandbox: further lines of this instance dropped");
        }
        lines = lines.saturating_add(1);
    }
}

impl SandboxInstance {
    pub(crate) fn new(
        mut child: Child,
        run_dir: RemoveDirOnDrop,
        evidence: AbortOnDrop,
        live: Live,
        id: String,
    ) -> Self {
        let pid = child.id();
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump_stderr(s, id)));
        Self {
            child,
            pid,
            exit: None,
            run_dir,
            evidence,
            stderr,
            live: Some(live),
        }
    }

    fn signal_group(&self) {
        signal_group(self.pid, Signal::KILL, "a sandbox instance");
    }
}

#[async_trait::async_trait]
impl Instance for SandboxInstance {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn wait(&mut self) -> InstanceExit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let exit = instance_exit(self.child.wait().await, "the jailer");
        // The jailer is reaped. It exits only after the instance's PID 1, and with PID 1
        // the kernel ends the whole pid namespace; a jailer killed alone takes PID 1 with
        // it (PR_SET_PDEATHSIG). Its group is not signalled again: once reaped, its pid
        // may belong to someone else. Then the run dir and the evidence service go.
        self.pid = None;
        self.evidence.abort();
        if let Some(pump) = self.stderr.take() {
            let _ended = tokio::time::timeout(std::time::Duration::from_secs(1), pump).await;
        }
        self.run_dir.remove();
        self.live = None;
        self.exit = Some(exit.clone());
        exit
    }

    fn kill(&mut self) {
        if self.exit.is_none()
            && let Err(e) = self.child.start_kill()
        {
            tracing::debug!(error = %e, "killing a sandbox instance");
        }
    }

    fn kill_group(&mut self) {
        if self.exit.is_none() {
            self.signal_group();
        }
    }
}

impl Drop for SandboxInstance {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal_group();
        }
        if let Some(pump) = self.stderr.take() {
            pump.abort();
        }
    }
}
