//! The mock backend's workload: the payload is a script of simple commands, run against
//! the real laid-out directories, so that tests drive every path of the pre-load module
//! (inputs, outputs, log, return value, exit status, cancel) without a real program.
//!
//! One command per line; blank lines and lines starting with `#` are skipped.
//!
//! | command | effect |
//! |---|---|
//! | `log TEXT` / `err TEXT` | a line on stdout / stderr |
//! | `copy IN OUT` | output `OUT` := input `IN` |
//! | `upper IN OUT` | output `OUT` := input `IN`, ASCII upper-cased |
//! | `write OUT TEXT` | output `OUT` := `TEXT` |
//! | `fill OUT N` | output `OUT` := `N` bytes `x` |
//! | `arg NAME OUT` | output `OUT` := the task argument `NAME` (`CELLA_ARG_NAME`) |
//! | `task OUT` | output `OUT` := the task description (`task.json`) |
//! | `argv OUT` | output `OUT` := the command line, one entry per line |
//! | `return TEXT` | the return value := `TEXT` |
//! | `keep NAME` | leaves a file `NAME` in scratch (what a reused instance must wipe) |
//! | `kept NAME OUT` | output `OUT` := `present` or `absent`: whether scratch holds `NAME` |
//! | `sleep MS` | wait `MS` milliseconds |
//! | `flood N MS` | `N` log lines, one every `MS` milliseconds |
//! | `hang` | wait until cancelled |
//! | `exit CODE` | end with exit status `CODE` |
//!
//! A cancel ends the script at its next command or wait, with signal 15. An unknown
//! command ends it with exit status 127 and a line on stderr.

use std::time::Duration;

use cella_preload::protocol::{ExitStatus, LogStream};
use cella_preload::runner::{Job, LogSink, RunError, Runner};
use tokio_util::sync::CancellationToken;

use crate::image::PROGRAM_FILE;

/// Exit status of a script stopped by a cancel: SIGTERM, as a program would report it.
const CANCELED: ExitStatus = ExitStatus {
    code: None,
    signal: Some(15),
};

/// Runs script payloads (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct ScriptRunner;

fn exited(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

async fn say(log: &LogSink, stream: LogStream, line: String) {
    // The session is gone if this fails; the script ends at its next wait anyway.
    let _gone = log.send((stream, line)).await;
}

async fn wait(ms: u64, cancel: &CancellationToken) -> bool {
    if ms == 0 {
        tokio::task::yield_now().await;
        return !cancel.is_cancelled();
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => true,
        () = cancel.cancelled() => false,
    }
}

#[async_trait::async_trait]
impl Runner for ScriptRunner {
    async fn run(
        &self,
        job: &Job<'_>,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, RunError> {
        let program = job.layout.workload_dir().join(PROGRAM_FILE);
        let script = std::fs::read_to_string(&program).map_err(|source| RunError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        let input = |name: &str| std::fs::read(job.layout.input_dir().join(name));
        let output =
            |name: &str, data: &[u8]| std::fs::write(job.layout.output_dir().join(name), data);
        for line in script.lines().map(str::trim) {
            if cancel.is_cancelled() {
                return Ok(CANCELED);
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
            let mut args = rest.split_whitespace();
            let mut arg = || args.next().unwrap_or_default().to_owned();
            let done: std::io::Result<()> = match cmd {
                "log" => {
                    say(&log, LogStream::Stdout, rest.to_owned()).await;
                    Ok(())
                }
                "err" => {
                    say(&log, LogStream::Stderr, rest.to_owned()).await;
                    Ok(())
                }
                "copy" => {
                    let (i, o) = (arg(), arg());
                    input(&i).and_then(|d| output(&o, &d))
                }
                "upper" => {
                    let (i, o) = (arg(), arg());
                    input(&i).and_then(|d| output(&o, &d.to_ascii_uppercase()))
                }
                "write" => {
                    let (o, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    output(o, text.as_bytes())
                }
                "fill" => {
                    let (o, n) = (arg(), arg().parse::<usize>().unwrap_or(0));
                    output(&o, &vec![b'x'; n])
                }
                "arg" => {
                    let (name, o) = (arg(), arg());
                    let key = format!("{}{name}", crate::run::ARG_ENV_PREFIX);
                    let value = job
                        .env
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    output(&o, value.as_bytes())
                }
                "task" => {
                    let o = arg();
                    std::fs::read(job.layout.task_file()).and_then(|d| output(&o, &d))
                }
                "argv" => {
                    let o = arg();
                    output(&o, job.argv.join("\n").as_bytes())
                }
                "return" => std::fs::write(job.layout.return_file(), rest.as_bytes()),
                "keep" => std::fs::write(job.layout.scratch_dir().join(arg()), b"left over"),
                "kept" => {
                    let (name, o) = (arg(), arg());
                    let there = job.layout.scratch_dir().join(name).exists();
                    output(&o, if there { b"present" } else { b"absent" })
                }
                "sleep" => {
                    if !wait(arg().parse().unwrap_or(0), &cancel).await {
                        return Ok(CANCELED);
                    }
                    Ok(())
                }
                "flood" => {
                    let (n, ms) = (
                        arg().parse::<u64>().unwrap_or(0),
                        arg().parse().unwrap_or(0),
                    );
                    for i in 0..n {
                        say(&log, LogStream::Stdout, format!("flood {i}")).await;
                        if !wait(ms, &cancel).await {
                            return Ok(CANCELED);
                        }
                    }
                    Ok(())
                }
                "hang" => {
                    cancel.cancelled().await;
                    return Ok(CANCELED);
                }
                "exit" => return Ok(exited(arg().parse().unwrap_or(1))),
                other => {
                    say(
                        &log,
                        LogStream::Stderr,
                        format!("unknown command {other:?}"),
                    )
                    .await;
                    return Ok(exited(127));
                }
            };
            if let Err(e) = done {
                say(&log, LogStream::Stderr, format!("{line}: {e}")).await;
                return Ok(exited(1));
            }
        }
        Ok(exited(0))
    }
}
