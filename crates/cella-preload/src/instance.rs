//! The instance's side of a session, after the attested channel is open, as consuming
//! typed states (the host side's, in `cella-libos/src/session.rs`, mirrored): each
//! `handle(self, …)` takes the channel from the state before it and hands it to the next.
//!
//! ```text
//! send Hello ─► ExpectDeploy ─Deploy─► ReceiveFiles ─all chunks, digests ok─► send Started
//!   ─► Running (Log frames out; Cancel in ─► stop, send Error{CANCELED})
//!   ─► Exited ─► output Chunks, Finished{exit, outputs, receipt}
//!   ─► channel closed: the end | Reset ─► wipe the run's files ─► send Hello again
//! ```
//!
//! Anything out of place is answered with `Error` and the session ends: there is nothing
//! to recover, the executor starts a fresh instance.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::PreloadError;
use crate::attest::Identity;
use crate::layout::{Incoming, Layout, LayoutError};
use crate::protocol::{
    Body, Chunk, ChunkTarget, Deploy, Envelope, ErrorCode, ErrorMsg, ExitStatus, Finished, Hello,
    LOG_BURST_BYTES, LOG_RATE_BYTES_PER_SEC, Log, LogStream, MAX_CHUNK_LEN, MAX_RETURN_VALUE_BYTES,
    OutputMeta, PROTOCOL_VERSION, ResourceUsage, Started, check_deploy, write_frame,
};
use crate::protocol::{FrameReader, Limits, append_frame, write_frames};
use crate::receipt::{Entry, RECEIPT_FORMAT, ReceiptBody, command_digest, sha256};
use crate::runner::{Job, Runner};

/// Frames are batched into one write up to this size (four chunks): small runs send
/// their outputs and `Finished` in one system call, large ones stream.
const BATCH_BYTES: usize = 4 * MAX_CHUNK_LEN;

/// Log lines buffered between the program and the channel: enough to ride out a slow
/// frame write, small enough to push back on a flooding program.
const LOG_QUEUE: usize = 256;

/// How a served session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The program ran to its end and `Finished` was sent.
    Finished(ExitStatus),
    /// The executor cancelled the run.
    Canceled,
}

/// The instance's log budget: a token bucket of [`LOG_BURST_BYTES`] refilled at
/// [`LOG_RATE_BYTES_PER_SEC`]. Lines over budget are dropped and counted.
#[derive(Debug)]
struct LogBudget {
    tokens: u64,
    last: Instant,
    dropped: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            tokens: LOG_BURST_BYTES,
            last: Instant::now(),
            dropped: 0,
        }
    }

    fn admit(&mut self, len: usize) -> bool {
        let now = Instant::now();
        let us = u64::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u64::MAX);
        let refill = us.saturating_mul(LOG_RATE_BYTES_PER_SEC) / 1_000_000;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(LOG_BURST_BYTES);
            self.last = now;
        }
        let cost = u64::try_from(len).unwrap_or(u64::MAX).max(1);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Sends `Error{code, message}` (best effort: the peer may be gone) and returns the error
/// that ends the session.
async fn give_up<W: AsyncWrite + Unpin>(
    wr: &mut W,
    code: ErrorCode,
    message: String,
) -> PreloadError {
    let frame: Envelope = Body::Error(ErrorMsg::new(code, message.clone())).into();
    if let Err(e) = write_frame(wr, &frame).await {
        tracing::debug!(error = %e, "could not send Error to the executor");
    }
    let _closed = wr.shutdown().await;
    PreloadError::GaveUp { code, message }
}

fn layout_failure(e: LayoutError) -> (ErrorCode, String) {
    (e.code, e.message)
}

/// A message the instance did not expect here.
fn unexpected(body: Option<Body>, expected: &str) -> Result<(ErrorCode, String), PreloadError> {
    match body {
        Some(Body::Error(e)) => Err(PreloadError::ExecutorGaveUp(e.message)),
        Some(other) => Ok((
            ErrorCode::Protocol,
            format!("expected {expected}, got {}", other.name()),
        )),
        None => Ok((ErrorCode::Protocol, "empty frame".into())),
    }
}

/// Serves an attested channel: says `Hello`, receives `Deploy`, lays the workload out
/// under `root` (an empty directory, or one holding only empty `outputs/` and `scratch/`
/// mount points), runs it with `runner`, and reports. After `Finished`, a `Reset` wipes
/// the run's files and starts over with `Hello` (functions with `reuse =
/// same-function`); the channel closing ends the session.
///
/// # Errors
///
/// [`PreloadError`] when the session ends without `Finished` or a cancel; the executor was
/// sent an `Error` saying why whenever the channel still worked.
pub async fn serve<S>(
    stream: S,
    identity: &Identity,
    root: &Path,
    runner: &dyn Runner,
) -> Result<Served, PreloadError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = FrameReader::new(rd);
    let hello: Envelope = Body::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        preload_version: env!("CARGO_PKG_VERSION").into(),
    })
    .into();
    let mut run_index = 1;
    loop {
        write_frame(&mut wr, &hello).await?;
        // The directories do not depend on the workload: make them while idle.
        let layout = match Layout::create(root) {
            Ok(l) => l,
            Err(e) => return Err(give_up(&mut wr, e.code, e.message).await),
        };
        let served = serve_run(
            &mut rd,
            &mut wr,
            identity,
            layout.clone(),
            runner,
            run_index,
        )
        .await?;
        if served == Served::Canceled {
            return Ok(served);
        }
        // Finished: a Reset for another run, or the end of the session.
        match rd.read_frame().await {
            Ok(Envelope {
                body: Some(Body::Reset(_)),
            }) => {
                if let Err(e) = layout.wipe().and_then(|()| runner.reset()) {
                    return Err(give_up(&mut wr, e.code, e.message).await);
                }
                run_index += 1;
            }
            Ok(other) => {
                let (code, msg) = unexpected(other.body, "Reset")?;
                return Err(give_up(&mut wr, code, msg).await);
            }
            Err(e) if e.is_malformed() => {
                return Err(give_up(&mut wr, ErrorCode::Protocol, e.to_string()).await);
            }
            Err(_) => {
                let _closed = wr.shutdown().await;
                return Ok(served);
            }
        }
    }
}

/// One run: `Deploy` to `Finished` (or a cancel), through the run's states in order.
async fn serve_run<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    identity: &Identity,
    layout: Layout,
    runner: &dyn Runner,
    run_index: u32,
) -> Result<Served, PreloadError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let receiving = ExpectDeploy {
        ch: Channel { rd, wr },
        layout,
    }
    .handle()
    .await?;
    let Next::State(running) = receiving.handle().await? else {
        return Ok(Served::Canceled);
    };
    let Next::State(exited) = running.handle(runner).await? else {
        return Ok(Served::Canceled);
    };
    exited.handle(identity, run_index).await
}

/// The attested channel to the executor, which every state of a run owns in turn.
struct Channel<'s, R, W> {
    rd: &'s mut FrameReader<R>,
    wr: &'s mut W,
}

/// What a state that may be cancelled leads to.
enum Next<T> {
    /// The run goes on in this state.
    State(T),
    /// The executor cancelled the run, and was told so.
    Canceled,
}

/// The run has not begun: the next frame must be a `Deploy` this module can run.
struct ExpectDeploy<'s, R, W> {
    ch: Channel<'s, R, W>,
    layout: Layout,
}

impl<'s, R, W> ExpectDeploy<'s, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn handle(self) -> Result<ReceiveFiles<'s, R, W>, PreloadError> {
        let Self { ch, layout } = self;
        let first = match ch.rd.read_frame().await {
            Ok(f) => f,
            Err(e) if e.is_malformed() => {
                return Err(give_up(ch.wr, ErrorCode::Protocol, e.to_string()).await);
            }
            Err(e) => return Err(e.into()),
        };
        let deploy = match first.body {
            Some(Body::Deploy(d)) => d,
            other => {
                let (code, msg) = unexpected(other, "Deploy")?;
                return Err(give_up(ch.wr, code, msg).await);
            }
        };
        if let Err(e) = check_deploy(&deploy) {
            let code = match e {
                crate::protocol::CheckError::Version { .. } => ErrorCode::Version,
                _ => ErrorCode::Protocol,
            };
            return Err(give_up(ch.wr, code, e.to_string()).await);
        }
        Ok(ReceiveFiles { ch, layout, deploy })
    }
}

/// `Deploy` checked: its files arrive, and are laid out once their digests match.
struct ReceiveFiles<'s, R, W> {
    ch: Channel<'s, R, W>,
    layout: Layout,
    deploy: Deploy,
}

impl<'s, R, W> ReceiveFiles<'s, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Receives every file, writes the task file and sends `Started`.
    async fn handle(self) -> Result<Next<Running<'s, R, W>>, PreloadError> {
        let Self { ch, layout, deploy } = self;
        let received = match receive_files(ch.rd, &deploy, layout).await {
            Ok(r) => r,
            Err(Receive::Fail(code, msg)) => return Err(give_up(ch.wr, code, msg).await),
            Err(Receive::Canceled) => {
                let _gone =
                    give_up(ch.wr, ErrorCode::Canceled, "canceled before start".into()).await;
                return Ok(Next::Canceled);
            }
            Err(Receive::Fatal(e)) => return Err(e),
        };
        if let Err(e) = crate::task::write_task_file(&received.layout, &deploy) {
            return Err(give_up(ch.wr, e.code, e.message).await);
        }
        write_frame(ch.wr, &Body::Started(Started {}).into()).await?;
        Ok(Next::State(Running {
            ch,
            deploy,
            received,
        }))
    }
}

/// `Started` sent: the program runs, its log goes out, a `Cancel` may come in.
struct Running<'s, R, W> {
    ch: Channel<'s, R, W>,
    deploy: Deploy,
    received: Received,
}

impl<'s, R, W> Running<'s, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Runs the program to its end, or until the executor cancels it or goes away.
    async fn handle(self, runner: &dyn Runner) -> Result<Next<Exited<'s, R, W>>, PreloadError> {
        let Self {
            ch,
            deploy,
            received,
        } = self;
        let mut env: Vec<(String, String)> = deploy
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        env.extend(received.layout.env());
        let argv = crate::task::program_argv(&deploy);
        let started = Instant::now();
        // The job borrows the run's files; it ends, with the program, before they move on.
        let (result, log_dropped, canceled, executor_gone) = {
            let job = Job {
                layout: &received.layout,
                argv: &argv,
                env: &env,
            };
            let (log_tx, mut log_rx) = mpsc::channel(LOG_QUEUE);
            let cancel = CancellationToken::new();
            let run = runner.run(&job, log_tx, cancel.clone());
            tokio::pin!(run);
            let mut budget = LogBudget::new();
            let mut canceled = false;
            let mut executor_gone = false;
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    Some((stream, line)) = log_rx.recv() => {
                        send_log(ch.wr, &mut budget, stream, line).await?;
                    }
                    frame = ch.rd.read_frame(), if !canceled && !executor_gone => match frame {
                        Ok(Envelope { body: Some(Body::Cancel(c)) }) => {
                            tracing::info!(reason = %c.reason, "cancel requested");
                            canceled = true;
                            cancel.cancel();
                        }
                        Ok(other) => {
                            cancel.cancel();
                            let (code, msg) = unexpected(other.body, "Cancel")?;
                            return Err(give_up(ch.wr, code, msg).await);
                        }
                        Err(e) => {
                            // The executor is gone or broke the framing: stop the program.
                            executor_gone = true;
                            cancel.cancel();
                            if e.is_malformed() {
                                return Err(give_up(ch.wr, ErrorCode::Protocol, e.to_string()).await);
                            }
                        }
                    },
                }
            };
            while let Ok((stream, line)) = log_rx.try_recv() {
                send_log(ch.wr, &mut budget, stream, line).await?;
            }
            (result, budget.dropped, canceled, executor_gone)
        };
        if executor_gone {
            return Err(PreloadError::ExecutorGaveUp("the channel closed".into()));
        }
        if canceled {
            let _sent = give_up(ch.wr, ErrorCode::Canceled, "canceled".into()).await;
            return Ok(Next::Canceled);
        }
        let exit = match result {
            Ok(exit) => exit,
            Err(e) => return Err(give_up(ch.wr, ErrorCode::Spawn, e.to_string()).await),
        };
        Ok(Next::State(Exited {
            ch,
            deploy,
            received,
            exit,
            wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            log_dropped,
        }))
    }
}

/// The program ended on its own: what it left is read, signed for and sent.
struct Exited<'s, R, W> {
    ch: Channel<'s, R, W>,
    deploy: Deploy,
    received: Received,
    exit: ExitStatus,
    wall_us: u64,
    log_dropped: u64,
}

impl<R, W> Exited<'_, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Sends the outputs (after a successful exit) and `Finished` with the signed receipt.
    async fn handle(self, identity: &Identity, run_index: u32) -> Result<Served, PreloadError> {
        let Self {
            ch,
            deploy,
            received,
            exit,
            wall_us,
            log_dropped,
        } = self;
        let limits = deploy.limits.unwrap_or_default();
        let mut outputs = Vec::new();
        let mut return_value = Vec::new();
        if exit.success() {
            match collect(&received.layout, &deploy.outputs, limits) {
                Ok((o, rv)) => {
                    outputs = o;
                    return_value = rv;
                }
                Err(e) => {
                    let (code, msg) = layout_failure(e);
                    return Err(give_up(ch.wr, code, msg).await);
                }
            }
        }
        // Output chunks and `Finished` go out in one write, up to a few chunks' worth.
        let mut batch = Vec::new();
        let mut metas = Vec::with_capacity(outputs.len());
        for (index, (slot, data)) in outputs.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            for piece in data.chunks(MAX_CHUNK_LEN) {
                let chunk: Envelope = Body::Chunk(Chunk {
                    target: ChunkTarget::Output as i32,
                    index,
                    data: piece.to_vec(),
                })
                .into();
                append_frame(&mut batch, &chunk)?;
                if batch.len() >= BATCH_BYTES {
                    write_frames(ch.wr, &batch).await?;
                    batch.clear();
                }
            }
            metas.push(OutputMeta {
                slot: slot.clone(),
                size: u64::try_from(data.len()).unwrap_or(u64::MAX),
                sha256: sha256(data).to_vec(),
            });
        }
        let body = ReceiptBody {
            format: RECEIPT_FORMAT.into(),
            task_id: deploy.task_id.clone(),
            function_id: deploy.function_id.clone(),
            measurement: identity.measurement().to_vec(),
            nonce: identity.nonce().to_vec(),
            workload: received.workload,
            inputs: received.inputs,
            outputs: metas
                .iter()
                .map(|m| Entry {
                    name: m.slot.clone(),
                    sha256: m.sha256.clone(),
                })
                .collect(),
            exit: Some(exit),
            return_value_sha256: sha256(&return_value).to_vec(),
            command_sha256: command_digest(&deploy.argv, &deploy.env).to_vec(),
            signed_at_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            run_index,
        }
        .encode_to_vec();
        let signature = match identity.signer().sign(&body) {
            Ok(s) => s,
            Err(e) => return Err(give_up(ch.wr, ErrorCode::Internal, e.to_string()).await),
        };
        let output_bytes = metas.iter().map(|m| m.size).sum();
        let finished: Envelope = Body::Finished(Finished {
            exit: Some(exit),
            outputs: metas,
            usage: Some(ResourceUsage {
                wall_us,
                input_bytes: received.input_bytes,
                output_bytes,
            }),
            return_value,
            log_dropped,
            receipt: body,
            signature,
        })
        .into();
        append_frame(&mut batch, &finished)?;
        write_frames(ch.wr, &batch).await?;
        Ok(Served::Finished(exit))
    }
}

async fn send_log<W: AsyncWrite + Unpin>(
    wr: &mut W,
    budget: &mut LogBudget,
    stream: LogStream,
    line: String,
) -> Result<(), PreloadError> {
    if budget.admit(line.len()) {
        let frame: Envelope = Body::Log(Log {
            stream: stream as i32,
            line,
        })
        .into();
        write_frame(wr, &frame).await?;
    }
    Ok(())
}

/// Outputs by slot, in `Deploy` order.
type Outputs = Vec<(String, Vec<u8>)>;

/// Reads every output and the return value, after a successful run.
fn collect(
    layout: &Layout,
    slots: &[String],
    limits: Limits,
) -> Result<(Outputs, Vec<u8>), LayoutError> {
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        out.push((
            slot.clone(),
            layout.read_output(slot, limits.max_output_bytes)?,
        ));
    }
    let rv = layout.read_return_value(MAX_RETURN_VALUE_BYTES as u64)?;
    Ok((out, rv))
}

/// The workload as received and verified.
struct Received {
    layout: Layout,
    workload: Vec<Entry>,
    inputs: Vec<Entry>,
    input_bytes: u64,
}

enum Receive {
    Fail(ErrorCode, String),
    Canceled,
    Fatal(PreloadError),
}

impl From<LayoutError> for Receive {
    fn from(e: LayoutError) -> Self {
        Receive::Fail(e.code, e.message)
    }
}

async fn receive_files<R: AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
    deploy: &Deploy,
    layout: Layout,
) -> Result<Received, Receive> {
    let mut files = deploy
        .files
        .iter()
        .map(|m| Incoming::create(&layout.workload_dir(), m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut inputs = deploy
        .inputs
        .iter()
        .map(|m| Incoming::create(&layout.input_dir(), m))
        .collect::<Result<Vec<_>, _>>()?;
    let pending = |f: &[Incoming], i: &[Incoming]| f.iter().chain(i).any(|x| !x.complete());
    while pending(&files, &inputs) {
        let frame = match rd.read_frame().await {
            Ok(f) => f,
            Err(e) if e.is_malformed() => {
                return Err(Receive::Fail(ErrorCode::Protocol, e.to_string()));
            }
            Err(e) => return Err(Receive::Fatal(e.into())),
        };
        match frame.body {
            Some(Body::Chunk(c)) => {
                let list = match ChunkTarget::try_from(c.target) {
                    Ok(ChunkTarget::File) => &mut files,
                    Ok(ChunkTarget::Input) => &mut inputs,
                    _ => {
                        return Err(Receive::Fail(
                            ErrorCode::Protocol,
                            format!("Chunk for target {} during Deploy", c.target),
                        ));
                    }
                };
                let Some(file) = usize::try_from(c.index).ok().and_then(|i| list.get_mut(i)) else {
                    return Err(Receive::Fail(
                        ErrorCode::Protocol,
                        format!("Chunk for unknown file index {}", c.index),
                    ));
                };
                if c.data.len() > MAX_CHUNK_LEN {
                    return Err(Receive::Fail(
                        ErrorCode::Protocol,
                        format!("Chunk of {} bytes is over {MAX_CHUNK_LEN}", c.data.len()),
                    ));
                }
                file.append(&c.data)?;
            }
            Some(Body::Cancel(_)) => return Err(Receive::Canceled),
            other => {
                let (code, msg) = unexpected(other, "Chunk").map_err(Receive::Fatal)?;
                return Err(Receive::Fail(code, msg));
            }
        }
    }
    let mut workload = Vec::with_capacity(files.len());
    for (f, m) in files.into_iter().zip(&deploy.files) {
        workload.push(Entry::new(m.name.clone(), f.finish()?));
    }
    let mut input_entries = Vec::with_capacity(inputs.len());
    for (f, m) in inputs.into_iter().zip(&deploy.inputs) {
        input_entries.push(Entry::new(m.name.clone(), f.finish()?));
    }
    layout.seal_read_only()?;
    Ok(Received {
        layout,
        workload,
        inputs: input_entries,
        input_bytes: deploy.inputs.iter().map(|i| i.size).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn log_budget_admits_a_burst_then_the_rate() {
        let mut b = LogBudget::new();
        let line = 4096;
        let burst = usize::try_from(LOG_BURST_BYTES).unwrap() / line;
        for _ in 0..burst {
            assert!(b.admit(line));
        }
        assert!(!b.admit(line));
        assert_eq!(b.dropped, 1);
        b.last -= Duration::from_secs(1);
        let per_sec = usize::try_from(LOG_RATE_BYTES_PER_SEC).unwrap() / line;
        for _ in 0..per_sec {
            assert!(b.admit(line));
        }
        assert!(!b.admit(line));
    }
}
