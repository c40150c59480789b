//! Builtin functions: Rust functions compiled into the node, named by the function's
//! payload, and run by [`BuiltinExecutor`].
//!
//! Builtins are a table of name → function (`BUILTINS`). Each one reads its inputs
//! from and writes its outputs to the [`TaskIo`], may log to a [`LogBuffer`], and returns
//! its return value. They are CPU-bound, so the executor runs them on tokio's blocking
//! pool under the task's deadline; on timeout it stops waiting, and the builtin stops at
//! its next cancellation check (every input line). Every builtin is documented, slot by
//! slot, in `docs/functions/builtin.md`.
//!
//! Builtins must not put private data in their log: the log goes to every participant.

mod echo;
mod join;
mod psi;
mod stats;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cella_types::{Digest, ExecutorKind, Usage};

use crate::error::ExecutionError;
use crate::executor::{ExecutionOutcome, Executor};
use crate::io::TaskIo;
use crate::log::LogBuffer;
use crate::receipt::Receipt;
use crate::task::StagedTask;

use crate::receipt::BuiltinReceipt;

/// What a builtin sees of its task.
struct Call<'a> {
    /// Resolved arguments.
    arguments: &'a BTreeMap<String, String>,
    /// Inputs and outputs.
    io: &'a mut TaskIo,
    /// The function's log.
    log: &'a mut LogBuffer,
    /// Set once the executor has given up on the run.
    cancel: &'a AtomicBool,
}

/// A builtin: returns its return value.
type BuiltinFn = fn(&mut Call<'_>) -> Result<Vec<u8>, ExecutionError>;

/// One row of a builtin table.
struct Builtin {
    name: &'static str,
    run: BuiltinFn,
}

/// The builtins compiled into this node.
const BUILTINS: [Builtin; 4] = [
    Builtin {
        name: "echo",
        run: echo::echo,
    },
    Builtin {
        name: "ordered_set_intersect",
        run: psi::ordered_set_intersect,
    },
    Builtin {
        name: "private_join_and_compute",
        run: join::private_join_and_compute,
    },
    Builtin {
        name: "multiparty_statistics",
        run: stats::multiparty_statistics,
    },
];

/// The names of [`BUILTINS`], in table order.
const NAMES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].name;
        i += 1;
    }
    names
};

/// Runs builtin functions; the task's payload is the builtin's name.
#[derive(Clone, Copy)]
pub struct BuiltinExecutor {
    table: &'static [Builtin],
}

impl BuiltinExecutor {
    /// An executor for every builtin in [`BuiltinExecutor::names`].
    pub fn new() -> Self {
        Self { table: &BUILTINS }
    }

    /// An executor for the builtins of `table` only.
    #[cfg(test)]
    fn with_table(table: &'static [Builtin]) -> Self {
        Self { table }
    }

    /// The names of the builtins compiled into this node.
    pub fn names() -> &'static [&'static str] {
        &NAMES
    }

    fn lookup(&self, name: &str) -> Option<BuiltinFn> {
        self.table.iter().find(|b| b.name == name).map(|b| b.run)
    }
}

impl Default for BuiltinExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BuiltinExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.table.iter().map(|b| b.name))
            .finish()
    }
}

/// Sets the cancellation flag when dropped: when the run finishes, times out, or the
/// caller drops the `execute` future, the blocking thread stops at its next check.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl Executor for BuiltinExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Builtin
    }

    /// A builtin payload must name a builtin compiled into this node.
    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        match std::str::from_utf8(payload) {
            Ok(name) if Self::names().contains(&name) => Ok(()),
            _ => Err(format!(
                "unknown builtin {:?}; this node has: {}",
                String::from_utf8_lossy(payload)
                    .chars()
                    .take(64)
                    .collect::<String>(),
                Self::names().join(", ")
            )),
        }
    }

    /// Runs the builtin named by the payload on the blocking pool, under `task.deadline`.
    ///
    /// # Errors
    ///
    /// [`ExecutionError::UnknownBuiltin`] for a payload that names no builtin,
    /// [`ExecutionError::DeadlineExceeded`] when the run outlives the deadline (the time
    /// spent waiting for a blocking thread counts), the builtin's own
    /// [`ExecutionError::Function`] or [`ExecutionError::Io`] errors, and
    /// [`ExecutionError::Internal`] when the task is not a builtin task, the payload does
    /// not match its digest, or the builtin panicked. After `DeadlineExceeded` or
    /// `Internal`, `io` may be left empty.
    async fn execute(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        if task.executor != ExecutorKind::Builtin {
            return Err(ExecutionError::internal(format!(
                "task {} is for the {} executor, not builtin",
                task.task_id, task.executor
            )));
        }
        if Digest::of(&task.payload) != task.payload_digest {
            return Err(ExecutionError::internal(format!(
                "task {}: payload does not match its digest {}",
                task.task_id, task.payload_digest
            )));
        }
        let unknown = || ExecutionError::UnknownBuiltin {
            name: String::from_utf8_lossy(&task.payload).into_owned(),
        };
        let name = std::str::from_utf8(&task.payload).map_err(|_| unknown())?;
        let run = self.lookup(name).ok_or_else(unknown)?;

        let arguments = task.arguments.clone();
        let mut owned_io = std::mem::take(io);
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&cancel.0);
        let started = Instant::now();
        let handle = tokio::task::spawn_blocking(move || {
            let mut log = LogBuffer::new();
            let result = run(&mut Call {
                arguments: &arguments,
                io: &mut owned_io,
                log: &mut log,
                cancel: &flag,
            });
            (result, owned_io, log)
        });
        let (result, returned_io, log) = match tokio::time::timeout(task.deadline, handle).await {
            Err(_elapsed) => {
                return Err(ExecutionError::DeadlineExceeded {
                    limit: task.deadline,
                });
            }
            Ok(Err(join_error)) => {
                return Err(ExecutionError::internal(format!(
                    "builtin {name:?} did not complete: {join_error}"
                )));
            }
            Ok(Ok(finished)) => finished,
        };
        let wall = started.elapsed();
        drop(cancel);
        *io = returned_io;
        let return_value = result?;

        let usage = Usage {
            wall_us: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
            input_bytes: io.input_bytes(),
            output_bytes: io.output_bytes(),
        };
        let receipt =
            Receipt::Builtin(BuiltinReceipt::new(task, name, io, &return_value)).to_bytes()?;
        Ok(ExecutionOutcome {
            return_value,
            log: log.into_lines(),
            usage,
            receipt,
        })
    }
}

impl Call<'_> {
    /// The argument `name`, if the task has it.
    fn argument(&self, name: &str) -> Option<&str> {
        self.arguments.get(name).map(String::as_str)
    }

    /// The input slots with their contents, in slot order.
    fn inputs(&self) -> Vec<(&str, &[u8])> {
        self.io
            .input_slots()
            .map(|slot| (slot, self.io.input(slot).unwrap_or_default()))
            .collect()
    }

    /// Writes `data` to every declared output slot.
    fn write_every_output(&mut self, data: &[u8]) -> Result<(), ExecutionError> {
        let slots: Vec<String> = self.io.output_slots().map(str::to_owned).collect();
        for slot in slots {
            self.io.write_output(&slot, data.to_vec())?;
        }
        Ok(())
    }
}

/// The error a builtin returns once cancelled; the executor has already stopped waiting
/// for it, so nobody sees it.
fn cancelled() -> ExecutionError {
    ExecutionError::internal("builtin cancelled")
}

/// Renders a list of slot names for messages: `[a, b]`.
fn slot_list(slots: &[(&str, &[u8])]) -> String {
    let names: Vec<&str> = slots.iter().map(|(s, _)| *s).collect();
    format!("[{}]", names.join(", "))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs builtins end to end through [`BuiltinExecutor`].

    use std::collections::BTreeMap;

    use std::time::Duration;

    use cella_types::ExecutorKind;

    use super::BuiltinExecutor;
    use crate::{ExecutionError, ExecutionOutcome, Executor, IoLimits, StagedTask, TaskIo};

    /// A staged builtin task for `name` with these arguments and a 10 s deadline.
    pub(crate) fn task(name: &str, args: &[(&str, &str)]) -> StagedTask {
        StagedTask::new(
            format!("test-{name}"),
            ExecutorKind::Builtin,
            name.as_bytes(),
            Duration::from_secs(10),
        )
        .with_arguments(args.iter().copied())
    }

    /// A `TaskIo` with these inputs and outputs and the default limits.
    pub(crate) fn io(inputs: &[(&str, &[u8])], outputs: &[&str]) -> TaskIo {
        TaskIo::new(
            inputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            outputs.iter().map(|s| (*s).to_owned()),
            IoLimits::default(),
        )
    }

    /// Runs builtin `name`; returns its outcome and outputs.
    pub(crate) async fn run(
        name: &str,
        args: &[(&str, &str)],
        inputs: &[(&str, &[u8])],
        outputs: &[&str],
    ) -> Result<(ExecutionOutcome, BTreeMap<String, Vec<u8>>), ExecutionError> {
        let mut io = io(inputs, outputs);
        let outcome = BuiltinExecutor::new()
            .execute(&task(name, args), &mut io)
            .await?;
        Ok((outcome, io.into_outputs()))
    }

    /// The message of a [`ExecutionError::Function`], or a panic.
    pub(crate) fn function_message(result: Result<impl Sized, ExecutionError>) -> String {
        match result {
            Err(ExecutionError::Function { message }) => message,
            Err(other) => panic!("expected a function error, got {other:?}"),
            Ok(_) => panic!("expected a function error, got success"),
        }
    }

    /// Each output slot paired with `content`.
    pub(crate) fn every(outputs: &[&str], content: &[u8]) -> BTreeMap<String, Vec<u8>> {
        outputs
            .iter()
            .map(|s| ((*s).to_owned(), content.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_support::{io, run, task};
    use super::*;

    /// Set by `sleepy` when it saw the cancellation flag and stopped.
    static SLEEPY_STOPPED: AtomicBool = AtomicBool::new(false);

    fn sleepy(call: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
        for _ in 0..500 {
            if call.cancel.load(Ordering::Relaxed) {
                SLEEPY_STOPPED.store(true, Ordering::SeqCst);
                return Err(cancelled());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(b"woke".to_vec())
    }

    fn panicky(_: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
        panic!("builtin bug")
    }

    static TEST_TABLE: [Builtin; 2] = [
        Builtin {
            name: "sleepy",
            run: sleepy,
        },
        Builtin {
            name: "panicky",
            run: panicky,
        },
    ];

    #[test]
    fn names_are_unique_and_documented() {
        let names = BuiltinExecutor::names();
        assert_eq!(
            names,
            [
                "echo",
                "ordered_set_intersect",
                "private_join_and_compute",
                "multiparty_statistics"
            ]
        );
        let doc = include_str!("../../../../docs/functions/builtin.md");
        for name in names {
            assert!(doc.contains(&format!("## `{name}`")), "{name} undocumented");
        }
    }

    #[tokio::test]
    async fn deadline_is_enforced_and_the_run_is_cancelled() {
        let mut t = task("sleepy", &[]);
        t.deadline = Duration::from_millis(50);
        let mut io = io(&[], &["out"]);
        let started = Instant::now();
        let err = BuiltinExecutor::with_table(&TEST_TABLE)
            .execute(&t, &mut io)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecutionError::DeadlineExceeded {
                limit: Duration::from_millis(50)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(!err.is_platform_fault());
        // The blocking thread sees the flag and stops instead of sleeping its 5 s.
        for _ in 0..200 {
            if SLEEPY_STOPPED.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the builtin kept running after its deadline");
    }

    #[tokio::test]
    async fn panic_is_internal() {
        let mut io = io(&[], &[]);
        let err = BuiltinExecutor::with_table(&TEST_TABLE)
            .execute(&task("panicky", &[]), &mut io)
            .await
            .unwrap_err();
        assert!(err.is_platform_fault(), "{err:?}");
        assert!(err.to_string().contains("\"panicky\""), "{err}");
    }

    #[tokio::test]
    async fn unknown_builtin_is_named() {
        let err = run("no_such_builtin", &[], &[], &[]).await.unwrap_err();
        assert_eq!(
            err,
            ExecutionError::UnknownBuiltin {
                name: "no_such_builtin".into()
            }
        );
        // Test-only builtins are not in the production table.
        let err = run("sleepy", &[], &[], &[]).await.unwrap_err();
        assert!(matches!(err, ExecutionError::UnknownBuiltin { .. }));
    }

    #[tokio::test]
    async fn non_utf8_payload_is_an_unknown_builtin() {
        let mut t = task("echo", &[]);
        t.payload = Arc::from(&b"ec\xffho"[..]);
        t.payload_digest = Digest::of(&t.payload);
        let err = BuiltinExecutor::new()
            .execute(&t, &mut io(&[], &[]))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecutionError::UnknownBuiltin {
                name: "ec\u{fffd}ho".into()
            }
        );
    }

    #[tokio::test]
    async fn wrong_kind_and_digest_mismatch_are_internal() {
        let mut t = task("echo", &[("message", "hi")]);
        t.executor = ExecutorKind::Wasm;
        let err = BuiltinExecutor::new()
            .execute(&t, &mut io(&[], &[]))
            .await
            .unwrap_err();
        assert!(err.is_platform_fault());
        assert!(err.to_string().contains("wasm executor"), "{err}");

        let mut t = task("echo", &[("message", "hi")]);
        t.payload_digest = Digest::of(b"something else");
        let err = BuiltinExecutor::new()
            .execute(&t, &mut io(&[], &[]))
            .await
            .unwrap_err();
        assert!(err.is_platform_fault());
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn usage_and_receipt_describe_the_run() {
        let t = task("ordered_set_intersect", &[]);
        let mut io = io(&[("a", b"x\ny\n"), ("b", b"y\nz\n")], &["o1", "o2"]);
        let outcome = BuiltinExecutor::new().execute(&t, &mut io).await.unwrap();
        assert_eq!(outcome.usage.input_bytes, 8);
        assert_eq!(outcome.usage.output_bytes, 4);
        assert_eq!(outcome.return_value, b"1");

        let receipt: BuiltinReceipt = serde_json::from_slice(&outcome.receipt).unwrap();
        assert_eq!(receipt.format, crate::receipt::RECEIPT_FORMAT);
        assert_eq!(receipt.task_id, t.task_id);
        assert_eq!(receipt.function_id, t.function_id);
        assert_eq!(receipt.builtin, "ordered_set_intersect");
        assert_eq!(
            receipt.run.payload_digest,
            Digest::of(b"ordered_set_intersect")
        );
        assert_eq!(receipt.run.arguments_digest, Digest::of(b"{}"));
        assert_eq!(
            receipt.run.inputs,
            BTreeMap::from([
                ("a".to_owned(), Digest::of(b"x\ny\n")),
                ("b".to_owned(), Digest::of(b"y\nz\n")),
            ])
        );
        assert_eq!(
            receipt.run.outputs,
            BTreeMap::from([
                ("o1".to_owned(), Digest::of(b"y\n")),
                ("o2".to_owned(), Digest::of(b"y\n")),
            ])
        );
        assert_eq!(receipt.run.return_value, Digest::of(b"1"));
        assert_eq!(io.into_outputs()["o1"], b"y\n");
    }
}
