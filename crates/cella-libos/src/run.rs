//! One task on one attested instance: `Deploy` and its content out, `Started`, log lines
//! and output chunks in, `Finished` with a verified receipt; or the deadline (`Cancel`,
//! then the process group killed after a grace period), or a failure with its reason.
//!
//! Who is at fault decides the error (`cella_executor::ExecutionError`):
//! - the program or its data (exit status, missing or oversized outputs, a command that
//!   cannot start, the instance dying while the program runs, the deadline): `Function`,
//!   `Io` or `DeadlineExceeded`, shown to the task's participants;
//! - the instance or the node (attestation, protocol violations, a receipt that does not
//!   hold, an instance that gives up on its own): `Internal`, logged by the platform with
//!   the full reason, the task failed with "the executor failed".

use std::time::Duration;

use cella_executor::{ExecutionError, ExecutionOutcome, IoError, StagedTask, TaskIo};
use cella_preload::protocol::{
    Body, Cancel, Chunk, ChunkTarget, Deploy, EnvVar, Envelope, ErrorCode, FileMeta, FrameError,
    FrameReader, Limits, MAX_CHUNK_LEN, PROTOCOL_VERSION, Reset, append_frame, write_frame,
    write_frames,
};
use cella_preload::receipt::sha256;
use cella_types::{InstanceReuse, Usage};
use tokio::io::{AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use crate::image::{PROGRAM_FILE, RuntimeImage};
use crate::launch::{InstanceGuard, ReadyInstance, Timeouts, Tls};
use crate::session::{Done, ExpectReset, Progress, SessionError};

/// Prefix of the environment variable carrying each task argument: `CELLA_ARG_<name>`.
pub const ARG_ENV_PREFIX: &str = cella_preload::task::ARG_ENV_PREFIX;

/// How long a dead instance's channel is read for frames it sent before dying.
const DRAIN: Duration = Duration::from_millis(200);

/// Where in the session a failure happened, which decides who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Deploying,
    Running,
}

fn internal(msg: impl Into<String>) -> ExecutionError {
    ExecutionError::internal(format!("LibOS instance: {}", msg.into()))
}

fn classify(e: SessionError) -> ExecutionError {
    match e {
        SessionError::Instance { code, message } => match code {
            ErrorCode::OutputMissing | ErrorCode::OutputTooLarge | ErrorCode::Spawn => {
                ExecutionError::function(message)
            }
            _ => internal(format!("gave up ({code:?}): {message}")),
        },
        SessionError::OutputTooLarge { slot, size, limit } => {
            ExecutionError::Io(IoError::OutputTooLarge { slot, size, limit })
        }
        other => internal(other.to_string()),
    }
}

/// Whether the channel ended (cleanly or not) rather than carrying something malformed.
fn closed(e: &FrameError) -> bool {
    match e {
        FrameError::Closed | FrameError::Truncated => true,
        FrameError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn frame_failure(
    e: &FrameError,
    phase: Phase,
    exit: Option<&crate::backend::InstanceExit>,
) -> ExecutionError {
    let closed = closed(e);
    match (closed, phase) {
        (true, Phase::Running) => {
            let how = exit.map_or_else(|| "its channel closed".to_owned(), ToString::to_string);
            ExecutionError::function(format!(
                "the LibOS instance stopped while the program ran ({how}); the program may have exhausted the instance's memory"
            ))
        }
        (true, Phase::Deploying) => {
            let how = exit.map_or_else(|| "its channel closed".to_owned(), ToString::to_string);
            internal(format!("{how} before starting the program"))
        }
        (false, _) => internal(e.to_string()),
    }
}

/// The `Deploy` for `task`: the payload as the workload's `program`, every input, every
/// output slot, the image's command line, arguments as `CELLA_ARG_<name>`.
pub(crate) fn build_deploy(
    task: &StagedTask,
    io: &TaskIo,
    image: &RuntimeImage,
) -> Result<Deploy, ExecutionError> {
    let payload_digest = sha256(&task.payload);
    if &payload_digest != task.payload_digest.as_bytes() {
        return Err(ExecutionError::internal(
            "the function's payload does not match its registered digest",
        ));
    }
    let len = |d: &[u8]| u64::try_from(d.len()).unwrap_or(u64::MAX);
    Ok(Deploy {
        protocol_version: PROTOCOL_VERSION,
        task_id: task.task_id.to_string(),
        function_id: task.function_id.to_string(),
        function_name: task.function_name.clone(),
        files: vec![FileMeta {
            name: PROGRAM_FILE.into(),
            size: len(&task.payload),
            sha256: payload_digest.to_vec(),
            executable: true,
        }],
        inputs: io
            .input_slots()
            .map(|s| {
                let data = io.input(s).unwrap_or_default();
                FileMeta {
                    name: s.to_owned(),
                    size: len(data),
                    sha256: sha256(data).to_vec(),
                    executable: false,
                }
            })
            .collect(),
        outputs: io.output_slots().map(str::to_owned).collect(),
        argv: image.argv.clone(),
        env: task
            .arguments
            .iter()
            .map(|(k, v)| EnvVar {
                name: format!("{ARG_ENV_PREFIX}{k}"),
                value: v.clone(),
            })
            .collect(),
        limits: Some(Limits {
            max_output_bytes: io.limits().max_output_bytes,
            deadline_ms: u64::try_from(task.deadline.as_millis()).unwrap_or(u64::MAX),
        }),
    })
}

/// Frames are batched into one write up to this size (four chunks): a small task's
/// `Deploy` and content go out in one system call, large inputs stream.
const BATCH_BYTES: usize = 4 * MAX_CHUNK_LEN;

async fn send_deploy<W: AsyncWrite + Unpin>(
    w: &mut W,
    deploy: &Deploy,
    task: &StagedTask,
    io: &TaskIo,
) -> Result<(), FrameError> {
    let mut batch = Vec::new();
    append_frame(&mut batch, &Body::Deploy(deploy.clone()).into())?;
    let contents = std::iter::once((ChunkTarget::File, 0, &task.payload[..])).chain(
        deploy
            .inputs
            .iter()
            .enumerate()
            .map(|(i, m)| (ChunkTarget::Input, i, io.input(&m.name).unwrap_or_default())),
    );
    for (target, index, data) in contents {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        for piece in data.chunks(MAX_CHUNK_LEN) {
            let chunk: Envelope = Body::Chunk(Chunk {
                target: target as i32,
                index,
                data: piece.to_vec(),
            })
            .into();
            append_frame(&mut batch, &chunk)?;
            if batch.len() >= BATCH_BYTES {
                write_frames(w, &batch).await?;
                batch.clear();
            }
        }
    }
    write_frames(w, &batch).await
}

/// After a failed write: the instance probably said why before closing.
async fn reason_for_broken_channel(
    reader: &mut FrameReader<ReadHalf<Tls>>,
) -> Option<ExecutionError> {
    match timeout(DRAIN, reader.read_frame()).await {
        Ok(Ok(Envelope {
            body: Some(Body::Error(e)),
        })) => Some(classify(SessionError::Instance {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
        })),
        _ => None,
    }
}

/// The deadline passed: ask the instance to stop, give it `grace`, then kill it.
async fn stop(
    guard: &mut InstanceGuard,
    writer: &mut tokio::io::WriteHalf<Tls>,
    reader: &mut FrameReader<ReadHalf<Tls>>,
    grace: Duration,
) {
    let until = Instant::now() + grace;
    let cancel: Envelope = Body::Cancel(Cancel {
        reason: "the task's deadline passed".into(),
    })
    .into();
    if timeout_at(until, write_frame(writer, &cancel))
        .await
        .is_ok()
    {
        // Read until the instance answers (Error{CANCELED}) or closes, within the grace.
        let answered = timeout_at(until, async {
            loop {
                match reader.read_frame().await {
                    Ok(Envelope {
                        body: Some(Body::Error(_)),
                    })
                    | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if answered.is_err() {
            tracing::info!("the LibOS instance did not answer Cancel in time; killing it");
        }
    }
    guard.kill_group();
}

enum Event {
    Frame(Result<Envelope, FrameError>),
    Deadline,
    Exit(crate::backend::InstanceExit),
}

/// A finished instance that is to serve another task of the same function once `Reset`.
pub(crate) struct Reusable {
    guard: InstanceGuard,
    reader: FrameReader<ReadHalf<Tls>>,
    writer: WriteHalf<Tls>,
    expect: ExpectReset,
    permit: Option<OwnedSemaphorePermit>,
    launched_at: std::time::Instant,
}

impl Reusable {
    /// Sends `Reset` and waits (at most `within`) for the instance's `Hello`: the instance
    /// ready for the next task, or `None` (and the instance killed) if it did not answer
    /// as it should.
    pub(crate) async fn reset(mut self, within: Duration) -> Option<ReadyInstance> {
        let reset: Envelope = Body::Reset(Reset {}).into();
        let answer = timeout(within, async {
            write_frame(&mut self.writer, &reset).await?;
            self.reader.read_frame().await
        })
        .await;
        let failure = match answer {
            Ok(Ok(hello)) => match self.expect.handle(hello) {
                Ok(session) => {
                    return Some(ReadyInstance {
                        guard: self.guard,
                        reader: self.reader,
                        writer: self.writer,
                        session,
                        permit: self.permit,
                        launched_at: self.launched_at,
                    });
                }
                Err(e) => e.to_string(),
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no Hello within {within:?} of Reset"),
        };
        tracing::warn!(reason = %failure, "a LibOS instance could not be reset for reuse");
        None
    }
}

/// Runs `task` on `ready` and fills `io` with its outputs; also returns the program's
/// own run time as the instance measured it, in microseconds, and, for a function with
/// `reuse = same-function` whose run ended with a verified `Finished`, the instance to
/// reset for its next task (otherwise the instance is retired).
pub(crate) async fn run_task(
    ready: ReadyInstance,
    task: &StagedTask,
    io: &mut TaskIo,
    image: &RuntimeImage,
    timeouts: Timeouts,
    deadline: Instant,
    started: std::time::Instant,
) -> (
    Result<(ExecutionOutcome, u64), ExecutionError>,
    Option<Reusable>,
) {
    let ReadyInstance {
        mut guard,
        mut reader,
        mut writer,
        session,
        permit,
        launched_at,
    } = ready;
    let done = match run_session(
        &mut guard,
        &mut reader,
        &mut writer,
        session,
        task,
        io,
        image,
        timeouts,
        deadline,
    )
    .await
    {
        Ok(done) => done,
        Err(e) => return (Err(e), None),
    };
    let mut done = done;
    let reusable = match task.reuse {
        InstanceReuse::SameFunction => done.reset().map(|expect| Reusable {
            guard,
            reader,
            writer,
            expect,
            permit,
            launched_at,
        }),
        InstanceReuse::Never => {
            guard.retire(timeouts.cancel_grace);
            None
        }
    };
    (finish(*done, io, started), reusable)
}

/// The session of one run, from `Deploy` to a verified `Finished`.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one instance, taken apart by the caller"
)]
async fn run_session(
    guard: &mut InstanceGuard,
    reader: &mut FrameReader<ReadHalf<Tls>>,
    writer: &mut WriteHalf<Tls>,
    session: crate::session::Attested,
    task: &StagedTask,
    io: &mut TaskIo,
    image: &RuntimeImage,
    timeouts: Timeouts,
    deadline: Instant,
) -> Result<Box<Done>, ExecutionError> {
    let deploy = build_deploy(task, io, image)?;
    let expect = session.deploy(&deploy);

    // Deploy and its content.
    let sent = tokio::select! {
        r = timeout_at(deadline, send_deploy(writer, &deploy, task, io)) => r,
        exit = guard.wait() => {
            return Err(internal(format!("{exit} while receiving the workload")));
        }
    };
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(reason_for_broken_channel(reader)
                .await
                .unwrap_or_else(|| frame_failure(&e, Phase::Deploying, None)));
        }
        Err(_) => {
            stop(guard, writer, reader, timeouts.cancel_grace).await;
            return Err(ExecutionError::DeadlineExceeded {
                limit: task.deadline,
            });
        }
    }

    // ExpectStarted. An exit seen before the frames it sent is noted, and the channel
    // read to its end: the exit is only the reason if no frame says more.
    let started_by = deadline.min(Instant::now() + timeouts.started);
    let mut exited = None;
    let mut running = loop {
        let event = tokio::select! {
            biased;
            f = reader.read_frame() => Event::Frame(f),
            () = sleep_until(started_by) => Event::Deadline,
            exit = guard.wait(), if exited.is_none() => Event::Exit(exit),
        };
        match event {
            Event::Frame(Ok(env)) => break expect.handle(env).map_err(classify)?,
            Event::Frame(Err(e)) => {
                if exited.is_none() {
                    exited = timeout(DRAIN, guard.wait()).await.ok();
                }
                return Err(frame_failure(&e, Phase::Deploying, exited.as_ref()));
            }
            Event::Exit(exit) => exited = Some(exit),
            Event::Deadline if started_by < deadline => {
                return Err(internal(format!(
                    "did not start the program within {:?} of Deploy",
                    timeouts.started
                )));
            }
            Event::Deadline => {
                stop(guard, writer, reader, timeouts.cancel_grace).await;
                return Err(ExecutionError::DeadlineExceeded {
                    limit: task.deadline,
                });
            }
        }
    };

    // Running.
    let done: Box<Done> = loop {
        let event = tokio::select! {
            biased;
            f = reader.read_frame() => Event::Frame(f),
            () = sleep_until(deadline) => Event::Deadline,
            exit = guard.wait(), if exited.is_none() => Event::Exit(exit),
        };
        match event {
            Event::Frame(Ok(env)) => {
                match running
                    .handle(env, std::time::Instant::now())
                    .map_err(classify)?
                {
                    Progress::Running(r) => running = r,
                    Progress::Done(d) => break d,
                }
            }
            Event::Frame(Err(e)) => {
                if exited.is_none() {
                    exited = timeout(DRAIN, guard.wait()).await.ok();
                }
                return Err(frame_failure(&e, Phase::Running, exited.as_ref()));
            }
            Event::Exit(exit) => {
                // Frames it sent before exiting are still in the channel: read them, with
                // the channel's end as the end of the run.
                exited = Some(exit);
            }
            Event::Deadline => {
                stop(guard, writer, reader, timeouts.cancel_grace).await;
                return Err(ExecutionError::DeadlineExceeded {
                    limit: task.deadline,
                });
            }
        }
    };
    Ok(done)
}

fn finish(
    done: Done,
    io: &mut TaskIo,
    started: std::time::Instant,
) -> Result<(ExecutionOutcome, u64), ExecutionError> {
    let mut log = done.log;
    if done.log_dropped > 0 {
        log.push(&format!(
            "… {} lines dropped by the instance's log rate limit",
            done.log_dropped
        ));
    }
    if !done.exit.success() {
        // The last lines of stderr say why, in most programs; a program that only wrote
        // to stdout gets its last log line.
        let tail: Vec<&str> = if done.stderr_tail.is_empty() {
            log.lines().last().map(String::as_str).into_iter().collect()
        } else {
            done.stderr_tail.iter().map(String::as_str).collect()
        };
        let last = if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = tail
                .iter()
                .map(|l| l.chars().take(300).collect::<String>())
                .collect();
            format!("; its last lines of output:\n{}", lines.join("\n"))
        };
        return Err(ExecutionError::function(format!(
            "the program ended with {}{last}",
            done.exit
        )));
    }
    for (slot, data) in done.outputs {
        io.write_output(&slot, data)?;
    }
    let outcome = ExecutionOutcome {
        return_value: done.return_value,
        log: log.into_lines(),
        usage: Usage {
            wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            input_bytes: io.input_bytes(),
            output_bytes: io.output_bytes(),
        },
        receipt: done.receipt,
    };
    Ok((outcome, done.usage.wall_us))
}
