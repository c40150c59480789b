//! Capture of a guest's stdout and stderr into the task's bounded [`LogBuffer`].
//!
//! Invariants: memory is bounded whatever the guest writes (the [`LogBuffer`]'s bounds,
//! one partial line of at most [`MAX_LOG_LINE_BYTES`] per stream, and
//! [`STDERR_TAIL_LINES`] lines of stderr tail); the guest's writes always succeed, so a
//! chatty module is never failed for logging too much: what does not fit is counted
//! as dropped by the [`LogBuffer`]. Lines keep the order in which they were completed;
//! stderr lines are marked with [`STDERR_PREFIX`].
//!
//! wasmtime-wasi's `MemoryOutputPipe` is not used: once full it reports the stream
//! closed, and the guest's writes start failing.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use cella_executor::{LogBuffer, MAX_LOG_LINE_BYTES};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Marks a log line that the guest wrote to stderr.
pub(crate) const STDERR_PREFIX: &str = "[stderr] ";
/// Lines of stderr kept apart for the message of a non-zero exit.
pub(crate) const STDERR_TAIL_LINES: usize = 5;
/// Longest stderr line kept in that tail: the message must stay short.
const STDERR_TAIL_LINE_BYTES: usize = 200;
/// Write permit given to the guest: any size works, this one keeps WASI's copies small.
const WRITE_PERMIT: usize = 64 * 1024;

/// Which guest stream a sink captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct State {
    log: LogBuffer,
    /// The unfinished line of each stream: stdout, stderr.
    partial: [Vec<u8>; 2],
    /// Whether that unfinished line was cut at [`MAX_LOG_LINE_BYTES`].
    cut: [bool; 2],
    stderr_tail: VecDeque<String>,
}

impl State {
    fn feed(&mut self, stream: Stream, mut bytes: &[u8]) {
        let i = stream as usize;
        while !bytes.is_empty() {
            let (chunk, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            let room = MAX_LOG_LINE_BYTES.saturating_sub(self.partial[i].len());
            self.partial[i].extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                self.cut[i] = true;
            }
            bytes = &bytes[chunk.len() + usize::from(newline)..];
            if newline {
                self.finish_line(stream);
            }
        }
    }

    fn finish_line(&mut self, stream: Stream) {
        let i = stream as usize;
        let raw = std::mem::take(&mut self.partial[i]);
        let mut line = String::from_utf8_lossy(&raw).into_owned();
        if std::mem::take(&mut self.cut[i]) {
            line.push('…');
        }
        match stream {
            Stream::Stdout => self.log.push(&line),
            Stream::Stderr => {
                self.log.push(&format!("{STDERR_PREFIX}{line}"));
                if self.stderr_tail.len() == STDERR_TAIL_LINES {
                    self.stderr_tail.pop_front();
                }
                let end = line.floor_char_boundary(STDERR_TAIL_LINE_BYTES);
                self.stderr_tail.push_back(line[..end].to_owned());
            }
        }
    }
}

/// The captured output of one run; hands out a sink per stream.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<State>>);

impl Capture {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A sink for the guest's stdout.
    pub(crate) fn stdout(&self) -> Sink {
        Sink {
            state: Arc::clone(&self.0),
            stream: Stream::Stdout,
        }
    }

    /// A sink for the guest's stderr.
    pub(crate) fn stderr(&self) -> Sink {
        Sink {
            state: Arc::clone(&self.0),
            stream: Stream::Stderr,
        }
    }

    /// Ends unfinished lines and returns the log and the last lines of stderr.
    pub(crate) fn finish(&self) -> (LogBuffer, Vec<String>) {
        let mut state = lock(&self.0);
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !state.partial[stream as usize].is_empty() {
                state.finish_line(stream);
            }
        }
        let tail = state.stderr_tail.drain(..).collect();
        (std::mem::take(&mut state.log), tail)
    }
}

/// A lock that survives a panic elsewhere: the state is a log, always consistent.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One guest stream's end of a [`Capture`].
#[derive(Clone)]
pub(crate) struct Sink {
    state: Arc<Mutex<State>>,
    stream: Stream,
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Sink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        lock(&self.state).feed(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.state).feed(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use cella_executor::{MAX_LOG_BYTES, MAX_LOG_LINES};

    use super::*;

    #[test]
    fn lines_are_split_across_writes_and_streams_marked() {
        let capture = Capture::new();
        let mut out = capture.stdout();
        let mut err = capture.stderr();
        out.write(Bytes::from_static(b"hel")).unwrap();
        err.write(Bytes::from_static(b"oops\n")).unwrap();
        out.write(Bytes::from_static(b"lo\nworld")).unwrap();
        let (log, tail) = capture.finish();
        assert_eq!(log.lines(), ["[stderr] oops", "hello", "world"]);
        assert_eq!(tail, ["oops"]);
    }

    #[test]
    fn long_lines_are_cut_and_memory_stays_bounded() {
        let capture = Capture::new();
        let mut out = capture.stdout();
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        for _ in 0..8 {
            out.write(chunk.clone()).unwrap();
        }
        assert!(lock(&capture.0).partial[0].len() <= MAX_LOG_LINE_BYTES);
        out.write(Bytes::from_static(b"\n")).unwrap();
        let (log, _) = capture.finish();
        assert_eq!(log.lines().len(), 1);
        assert!(log.lines()[0].ends_with('…'));
        assert!(log.lines()[0].len() <= MAX_LOG_LINE_BYTES);
    }

    #[test]
    fn a_flood_is_dropped_not_refused_and_the_tail_is_the_last_lines() {
        let capture = Capture::new();
        let mut err = capture.stderr();
        for i in 0..(MAX_LOG_LINES + 10) {
            assert_eq!(err.check_write().unwrap(), WRITE_PERMIT);
            err.write(Bytes::from(format!("line {i}\n"))).unwrap();
        }
        let (log, tail) = capture.finish();
        assert!(log.dropped() > 0);
        let kept: usize = log.lines().iter().map(String::len).sum();
        assert!(kept <= MAX_LOG_BYTES);
        let last = MAX_LOG_LINES + 9;
        assert_eq!(tail.len(), STDERR_TAIL_LINES);
        assert_eq!(tail.last().unwrap(), &format!("line {last}"));
    }
}
