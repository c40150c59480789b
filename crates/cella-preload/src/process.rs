//! Child-process helpers shared by everything in Cella that starts a program as the
//! leader of its own process group and copies its output into a log: the pre-load
//! module's [`crate::runner::ProcessRunner`] and the process backends of the LibOS
//! executor (`cella-sandbox`, `cella-gramine`, through `cella_libos::process`).
//!
//! [`descendants`] also serves the pre-load module: it kills what a program left running
//! when the program ends.
//!
//! They live here rather than in `cella-libos` because this is the lower crate: the
//! executor depends on the pre-load module, never the other way round.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

pub use rustix::process::Signal;

/// Sends `signal` to the process group led by `pid` (a child started with
/// `process_group(0)`), reaching everything it started that stayed in its group.
///
/// Nothing is sent when `pid` is `None` or not a valid pid. A group that is already gone
/// (`ESRCH`) is what the caller wants and is not reported; any other failure is logged
/// as a warning naming `what` was signalled (e.g. "a Gramine instance").
pub fn signal_group(pid: Option<u32>, signal: Signal, what: &str) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(
            pid = pid.as_raw_nonzero().get(),
            ?signal,
            error = %e,
            "signalling the process group of {what}"
        );
    }
}

/// What [`BoundedLines`] does with a line longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongLines {
    /// The line comes out in pieces of at most the limit each.
    Split,
    /// The first piece comes out; the rest of the line is read and dropped.
    Skip,
}

/// Reads a child's output (a pipe) line by line, never buffering more than a limit per
/// line: `read_until` on a line-less flood would otherwise grow without bound.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: BufReader<R>,
    max_len: u64,
    long: LongLines,
    buf: Vec<u8>,
    /// The last line returned was cut and [`LongLines::Skip`] drops its rest.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    /// Lines of `reader` of at most `max_len` bytes each (newline included); longer lines
    /// are handled as `long` says.
    pub fn new(reader: R, max_len: usize, long: LongLines) -> Self {
        Self {
            reader: BufReader::new(reader),
            max_len: u64::try_from(max_len).unwrap_or(u64::MAX),
            long,
            buf: Vec::with_capacity(256),
            skipping: false,
        }
    }

    /// The next line without its `\n` (invalid UTF-8 replaced), or `None` at the end of
    /// the stream or on a read error (the pipe is done either way).
    pub async fn next_line(&mut self) -> Option<String> {
        if self.skipping {
            self.skipping = false;
            loop {
                self.buf.clear();
                match self.read_piece().await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) if self.buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
        self.buf.clear();
        match self.read_piece().await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = match self.buf.strip_suffix(b"\n") {
            Some(line) => line,
            None => {
                self.skipping = self.long == LongLines::Skip;
                &self.buf
            }
        };
        Some(String::from_utf8_lossy(line).into_owned())
    }

    async fn read_piece(&mut self) -> std::io::Result<usize> {
        (&mut self.reader)
            .take(self.max_len)
            .read_until(b'\n', &mut self.buf)
            .await
    }
}

/// A process below this one, as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descendant {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`comm`: at most 15 bytes of the program's file name).
    pub name: String,
    /// It has exited and waits to be reaped (state `Z`): it holds no memory or files.
    pub zombie: bool,
}

/// How many parents up [`descendants`] looks for this process before giving up.
const MAX_DEPTH: usize = 64;

/// The processes below this one (children, grandchildren, …, up to 64 levels), by pid,
/// read from `/proc`. Processes that end while it reads are left out.
///
/// # Errors
///
/// `/proc` cannot be listed.
pub fn descendants() -> std::io::Result<Vec<Descendant>> {
    use std::collections::BTreeMap;
    let me = std::process::id();
    let mut parent = BTreeMap::new();
    let mut about = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let zombie = fields.next() == Some("Z");
        if let Some(ppid) = fields.next().and_then(|p| p.parse::<u32>().ok()) {
            parent.insert(pid, ppid);
            let name = head.split_once('(').map_or("", |x| x.1).to_owned();
            about.insert(pid, (name, zombie));
        }
    }
    let below_me = |pid: u32| {
        let mut p = pid;
        for _ in 0..MAX_DEPTH {
            match parent.get(&p) {
                Some(&pp) if pp == me => return pid != me,
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    Ok(about
        .into_iter()
        .filter(|(pid, _)| below_me(*pid))
        .map(|(pid, (name, zombie))| Descendant { pid, name, zombie })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize, long: LongLines) -> Vec<String> {
        let mut lines = BoundedLines::new(input, max, long);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_come_without_their_newline() {
        assert_eq!(
            lines(b"one\ntwo\n\nlast", 16, LongLines::Split).await,
            ["one", "two", "", "last"]
        );
        assert!(lines(b"", 16, LongLines::Split).await.is_empty());
    }

    #[tokio::test]
    async fn a_long_line_is_split_or_skipped() {
        let input = b"abcdefghij\nok\n";
        assert_eq!(
            lines(input, 4, LongLines::Split).await,
            ["abcd", "efgh", "ij", "ok"]
        );
        assert_eq!(lines(input, 4, LongLines::Skip).await, ["abcd", "ok"]);
        // A cut line at the very end of the stream.
        assert_eq!(lines(b"abcdefg", 4, LongLines::Skip).await, ["abcd"]);
    }

    #[test]
    fn signalling_no_pid_or_a_gone_group_is_quiet() {
        signal_group(None, Signal::KILL, "nothing");
        // Far above any pid_max: no such group (ESRCH), nothing to report or kill.
        signal_group(Some(0x3fff_fff0), Signal::KILL, "a gone group");
    }

    #[tokio::test]
    async fn the_group_of_a_child_is_signalled() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        signal_group(child.id(), Signal::KILL, "a test child");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(child.wait().await.unwrap().signal(), Some(9));
    }

    #[test]
    fn a_child_is_a_descendant_until_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pid = child.id();
        let found = descendants().unwrap();
        let me = found.iter().find(|d| d.pid == pid);
        assert!(
            me.is_some_and(|d| d.name == "sleep" && !d.zombie),
            "{found:?}"
        );
        assert!(found.iter().all(|d| d.pid != std::process::id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(descendants().unwrap().iter().all(|d| d.pid != pid));
    }
}
