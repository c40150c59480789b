//! Runs modules written in WAT through [`WasmExecutor`]: the examples, the module's
//! view of the world, every limit, and refusals at registration. The cache has its
//! own tests in `cache/tests.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cella_executor::{
    ExecutionError, ExecutionOutcome, Executor, IoError, IoLimits, StagedTask, TaskIo,
};
use cella_types::{Digest, ExecutorKind};

use cella_executor::receipt::{WASM_RECEIPT_FORMAT, WasmReceipt};

use crate::{WasmConfig, WasmExecutor};

/// `examples/wasm/` in the source tree.
pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm")
}

/// The example `name` (`echo`, `copy`, `psi`) compiled from its WAT source.
pub(crate) fn example(name: &str) -> Vec<u8> {
    wat::parse_file(examples_dir().join(format!("{name}.wat"))).unwrap()
}

pub(crate) fn wat(source: &str) -> Vec<u8> {
    wat::parse_str(source).unwrap()
}

/// A small executor: memory-only cache, a pool of 4, a 64 MiB memory cap.
pub(crate) fn executor() -> WasmExecutor {
    WasmExecutor::new(WasmConfig {
        memory_limit_bytes: 64 << 20,
        max_concurrent_runs: 4,
        ..WasmConfig::default()
    })
    .unwrap()
}

pub(crate) fn task(payload: &[u8], args: &[(&str, &str)]) -> StagedTask {
    StagedTask::new(
        "test-fn",
        ExecutorKind::Wasm,
        payload,
        Duration::from_secs(10),
    )
    .with_arguments(args.iter().copied())
}

pub(crate) fn io(inputs: &[(&str, &[u8])], outputs: &[&str], limit: u64) -> TaskIo {
    TaskIo::new(
        inputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect(),
        outputs.iter().map(|s| (*s).to_owned()),
        IoLimits::per_slot(limit),
    )
}

type Ran = Result<(ExecutionOutcome, BTreeMap<String, Vec<u8>>), ExecutionError>;

async fn run_task(
    exec: &WasmExecutor,
    task: &StagedTask,
    inputs: &[(&str, &[u8])],
    outputs: &[&str],
) -> Ran {
    let mut io = io(inputs, outputs, 1 << 20);
    let outcome = exec.execute(task, &mut io).await?;
    Ok((outcome, io.into_outputs()))
}

async fn run(
    payload: &[u8],
    args: &[(&str, &str)],
    inputs: &[(&str, &[u8])],
    outputs: &[&str],
) -> Ran {
    let exec = executor();
    exec.validate_payload(payload).unwrap();
    run_task(&exec, &task(payload, args), inputs, outputs).await
}

fn function_message(result: Ran) -> String {
    match result {
        Err(ExecutionError::Function { message }) => message,
        Err(other) => panic!("expected a function error, got {other:?}"),
        Ok((outcome, _)) => panic!("expected a function error, got success: {:?}", outcome.log),
    }
}

/// A WASI command whose `_start` body is `body`, with `fd_write`, `proc_exit` and
/// `path_open` imported and one page of memory (`extra` goes in the module).
fn command(extra: &str, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
            (import "wasi_snapshot_preview1" "path_open"
              (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
            (memory (export "memory") 1)
            {extra}
            (func $boom (export "_start") {body}))"#
    ))
}

#[test]
fn wat_text_and_binary_payloads_are_both_accepted() {
    let exec = executor();
    let text = std::fs::read(examples_dir().join("echo.wat")).unwrap();
    exec.validate_payload(&text).unwrap();
    exec.validate_payload(&example("echo")).unwrap();
    let err = exec.validate_payload(b"(module (func").unwrap_err();
    assert!(
        err.contains("neither a WebAssembly binary nor valid WAT"),
        "{err}"
    );
}

#[tokio::test]
async fn echo_prints_its_arguments_to_the_log() {
    let echo = example("echo");
    let t = task(&echo, &[("message", "hello world"), ("count", "2")]);
    let exec = executor();
    exec.validate_payload(&echo).unwrap();
    let (outcome, outputs) = run_task(&exec, &t, &[], &[]).await.unwrap();
    assert_eq!(outcome.log, ["--count=2", "--message=hello world"]);
    assert!(outcome.return_value.is_empty());
    assert!(outputs.is_empty());
    let receipt: WasmReceipt = serde_json::from_slice(&outcome.receipt).unwrap();
    assert_eq!(receipt.format, WASM_RECEIPT_FORMAT);
    assert_eq!(receipt.task_id, t.task_id);
    assert_eq!(receipt.run.payload_digest, Digest::of(&echo));
    assert_eq!(
        receipt.run.arguments_digest,
        Digest::of(br#"{"count":"2","message":"hello world"}"#)
    );

    // No arguments: nothing printed, still a success.
    let (outcome, _) = run(&echo, &[], &[], &[]).await.unwrap();
    assert!(outcome.log.is_empty());
}

#[tokio::test]
async fn copy_round_trips_a_file_larger_than_its_buffer() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (outcome, outputs) = run(&example("copy"), &[], &[("input", &data)], &["output"])
        .await
        .unwrap();
    assert_eq!(outputs["output"], data);
    assert_eq!(outcome.usage.input_bytes, 200_000);
    assert_eq!(outcome.usage.output_bytes, 200_000);
    let receipt: WasmReceipt = serde_json::from_slice(&outcome.receipt).unwrap();
    assert_eq!(receipt.run.outputs["output"], Digest::of(&data));
    assert_eq!(receipt.run.inputs["input"], Digest::of(&data));
}

#[tokio::test]
async fn copy_without_its_input_exits_with_enoent() {
    let message =
        function_message(run(&example("copy"), &[], &[("other", b"x")], &["output"]).await);
    assert_eq!(
        message,
        "exit status 44; last lines of stderr:\n  copy: cannot open /cella/inputs/input"
    );
}

#[tokio::test]
async fn psi_intersects_two_parties_lists() {
    let (outcome, outputs) = run(
        &example("psi"),
        &[],
        &[
            ("input_a", b"alice\nbob\ncarol\n"),
            ("input_b", b"carol\ndave\nalice"),
        ],
        &["output_a", "output_b"],
    )
    .await
    .unwrap();
    assert_eq!(outputs["output_a"], b"alice\ncarol\n");
    assert_eq!(outputs["output_b"], b"alice\ncarol\n");
    assert_eq!(outcome.log, ["2"]);

    let (outcome, outputs) = run(
        &example("psi"),
        &[],
        &[("input_a", b"x\n\ny"), ("input_b", b"")],
        &["output_a", "output_b"],
    )
    .await
    .unwrap();
    assert_eq!(outputs["output_a"], b"");
    assert_eq!(outcome.log, ["0"]);
}

/// Copies `/cella/task.json` (preopen fd 5) to the output `task`, and the number of
/// environment variables (as one byte) to the output `env`.
const TASK_JSON_READER: &str = r#"(module
    (import "wasi_snapshot_preview1" "path_open"
      (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 256) "task.json")
    (data (i32.const 272) "task")
    (data (i32.const 288) "env")
    (func $check (param i32) (if (local.get 0) (then (call $proc_exit (i32.add (i32.const 100) (local.get 0))))))
    (func $open_out (param $name i32) (param $len i32) (result i32)
      (call $check (call $path_open (i32.const 4) (i32.const 0) (local.get $name) (local.get $len)
        (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32)))
      (i32.load (i32.const 32)))
    (func (export "_start")
      (local $in i32) (local $out i32)
      (call $check (call $path_open (i32.const 5) (i32.const 0) (i32.const 256) (i32.const 9)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (local.set $in (i32.load (i32.const 32)))
      (i32.store (i32.const 40) (i32.const 1024))
      (i32.store (i32.const 44) (i32.const 60000))
      (call $check (call $fd_read (local.get $in) (i32.const 40) (i32.const 1) (i32.const 48)))
      (local.set $out (call $open_out (i32.const 272) (i32.const 4)))
      (i32.store (i32.const 44) (i32.load (i32.const 48)))
      (call $check (call $fd_write (local.get $out) (i32.const 40) (i32.const 1) (i32.const 48)))
      (call $check (call $environ_sizes_get (i32.const 64) (i32.const 68)))
      (local.set $out (call $open_out (i32.const 288) (i32.const 3)))
      (i32.store (i32.const 40) (i32.const 64))
      (i32.store (i32.const 44) (i32.const 1))
      (call $check (call $fd_write (local.get $out) (i32.const 40) (i32.const 1) (i32.const 48)))))"#;

#[tokio::test]
async fn task_json_describes_the_task_and_the_environment_is_empty() {
    let payload = wat(TASK_JSON_READER);
    let exec = executor();
    exec.validate_payload(&payload).unwrap();
    let t = task(&payload, &[("message", "hi"), ("n", "3")]);
    let (_, outputs) = run_task(&exec, &t, &[("in", b"data")], &["env", "task"])
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&outputs["task"]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "task_id": t.task_id.to_string(),
            "function": "test-fn",
            "arguments": {"message": "hi", "n": "3"},
            "inputs": ["in"],
            "outputs": ["env", "task"],
        })
    );
    assert_eq!(outputs["env"], [0], "the host environment leaked in");
}

/// Tries to leave its preopens and to write where it may not; writes each attempt's
/// WASI errno as one byte to the output `result`, and exits 0.
const ESCAPE_PROBE: &str = r#"(module
    (import "wasi_snapshot_preview1" "path_open"
      (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 256) "../outputs/x")
    (data (i32.const 272) "/etc/passwd")
    (data (i32.const 288) "input")
    (data (i32.const 304) "../inputs/input")
    (data (i32.const 320) "task.json")
    (data (i32.const 336) "result")
    (data (i32.const 352) "../../../../../../etc/passwd")
    ;; path_open(dirfd, path, len, oflags, rights) -> errno, as one byte at 1024 + slot
    (func $try (param $slot i32) (param $dir i32) (param $path i32) (param $len i32)
               (param $oflags i32) (param $rights i64)
      (i32.store8 (i32.add (i32.const 1024) (local.get $slot))
        (call $path_open (local.get $dir) (i32.const 0) (local.get $path) (local.get $len)
          (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 32))))
    (func (export "_start")
      (call $try (i32.const 0) (i32.const 3) (i32.const 256) (i32.const 12) (i32.const 9) (i64.const 64))
      (call $try (i32.const 1) (i32.const 3) (i32.const 272) (i32.const 11) (i32.const 0) (i64.const 2))
      (call $try (i32.const 2) (i32.const 3) (i32.const 288) (i32.const 5) (i32.const 0) (i64.const 64))
      (call $try (i32.const 3) (i32.const 4) (i32.const 304) (i32.const 15) (i32.const 0) (i64.const 2))
      (call $try (i32.const 4) (i32.const 5) (i32.const 320) (i32.const 9) (i32.const 0) (i64.const 64))
      (call $try (i32.const 5) (i32.const 5) (i32.const 352) (i32.const 28) (i32.const 0) (i64.const 2))
      ;; the one that must work: reading the own input
      (call $try (i32.const 6) (i32.const 3) (i32.const 288) (i32.const 5) (i32.const 0) (i64.const 2))
      (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 336) (i32.const 6)
            (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
        (then (call $proc_exit (i32.const 1))))
      (i32.store (i32.const 40) (i32.const 1024))
      (i32.store (i32.const 44) (i32.const 7))
      (if (call $fd_write (i32.load (i32.const 32)) (i32.const 40) (i32.const 1) (i32.const 48))
        (then (call $proc_exit (i32.const 2))))))"#;

#[tokio::test]
async fn paths_outside_the_preopens_and_writes_to_read_only_ones_are_refused() {
    let (_, outputs) = run(&wat(ESCAPE_PROBE), &[], &[("input", b"mine")], &["result"])
        .await
        .unwrap();
    let errnos = &outputs["result"];
    // WASI errnos: 63 = EPERM, 76 = ENOTCAPABLE, 2 = EACCES, 58 = ENOTSUP.
    let what = [
        "../outputs/x from /cella/inputs",
        "/etc/passwd from /cella/inputs",
        "/cella/inputs/input for writing",
        "../inputs/input from /cella/outputs",
        "/cella/task.json for writing",
        "../../../../../../etc/passwd from /cella",
    ];
    for (i, attempt) in what.iter().enumerate() {
        assert_ne!(errnos[i], 0, "{attempt} was allowed");
        assert!(
            [2, 63, 76].contains(&errnos[i]),
            "{attempt}: unexpected errno {}",
            errnos[i]
        );
    }
    assert_eq!(errnos[6], 0, "reading its own input was refused");
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let payload = command("", "(loop (br 0))");
    let exec = executor();
    exec.validate_payload(&payload).unwrap();
    let mut t = task(&payload, &[]);
    t.deadline = Duration::from_millis(300);
    let started = Instant::now();
    let err = run_task(&exec, &t, &[], &[]).await.unwrap_err();
    assert_eq!(
        err,
        ExecutionError::DeadlineExceeded {
            limit: Duration::from_millis(300)
        }
    );
    assert_eq!(err.to_string(), "function ran past its deadline of 300ms");
    // Stopped by the epoch callback, not abandoned after the grace period.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_cap() {
    let payload = command("", "(loop (drop (memory.grow (i32.const 16))) (br 0))");
    let message = function_message(run(&payload, &[], &[], &[]).await);
    assert!(
        message.starts_with("memory limit of 67108864 bytes exceeded"),
        "{message}"
    );
}

#[tokio::test]
async fn a_table_bomb_is_stopped_by_the_cap() {
    let payload = command(
        "(table $t 1 funcref)",
        "(loop (drop (table.grow $t (ref.null func) (i32.const 1000))) (br 0))",
    );
    let message = function_message(run(&payload, &[], &[], &[]).await);
    assert!(
        message.starts_with("table limit of 20000 elements exceeded"),
        "{message}"
    );
}

#[tokio::test]
async fn a_trap_fails_with_the_trap_message() {
    let message = function_message(run(&command("", "unreachable"), &[], &[], &[]).await);
    assert!(message.starts_with("wasm trap: "), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.ends_with("in function boom"), "{message}");

    let div = command("", "(drop (i32.div_u (i32.const 1) (i32.const 0)))");
    let message = function_message(run(&div, &[], &[], &[]).await);
    assert!(message.contains("integer divide by zero"), "{message}");
}

#[tokio::test]
async fn exit_status_decides_success() {
    let stderr_then_exit = |status: i32| {
        command(
            r#"(data (i32.const 100) "first\nbad input: line 3\n")"#,
            &format!(
                "(i32.store (i32.const 0) (i32.const 100))
                 (i32.store (i32.const 4) (i32.const 24))
                 (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
                 (call $proc_exit (i32.const {status}))"
            ),
        )
    };
    let message = function_message(run(&stderr_then_exit(3), &[], &[], &[]).await);
    assert_eq!(
        message,
        "exit status 3; last lines of stderr:\n  first\n  bad input: line 3"
    );
    let (outcome, _) = run(&stderr_then_exit(0), &[], &[], &[]).await.unwrap();
    assert_eq!(
        outcome.log,
        ["[stderr] first", "[stderr] bad input: line 3"]
    );

    let silent = command("", "(call $proc_exit (i32.const 7))");
    assert_eq!(
        function_message(run(&silent, &[], &[], &[]).await),
        "exit status 7"
    );
}

/// Writes `n` bytes to the output file named by the data at 256 (`name_len` bytes).
fn writer(name: &str, n: u32) -> Vec<u8> {
    command(
        &format!(r#"(data (i32.const 256) "{name}")"#),
        &format!(
            "(if (call $path_open (i32.const 4) (i32.const 0) (i32.const 256) (i32.const {len})
                   (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
               (then (call $proc_exit (i32.const 1))))
             (i32.store (i32.const 0) (i32.const 1024))
             (i32.store (i32.const 4) (i32.const {n}))
             (if (call $fd_write (i32.load (i32.const 32)) (i32.const 0) (i32.const 1) (i32.const 8))
               (then (call $proc_exit (i32.const 2))))",
            len = name.len()
        ),
    )
}

#[tokio::test]
async fn outputs_over_the_limit_fail_naming_it() {
    let payload = writer("output", 2048);
    let exec = executor();
    exec.validate_payload(&payload).unwrap();
    let mut io = io(&[], &["output"], 1024);
    let err = exec
        .execute(&task(&payload, &[]), &mut io)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecutionError::Io(IoError::OutputTooLarge {
            slot: "output".into(),
            size: 2048,
            limit: 1024
        })
    );
    assert!(
        err.to_string().contains("over the limit of 1024 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn an_undeclared_output_file_fails_the_task() {
    let message = function_message(run(&writer("scratch", 10), &[], &[], &["output"]).await);
    assert_eq!(
        message,
        "\"scratch\" in /cella/outputs is not a regular file named after a declared output slot; declared: [output]"
    );
}

#[tokio::test]
async fn a_symlink_in_the_outputs_is_never_followed() {
    let payload = wat(r#"(module
        (import "wasi_snapshot_preview1" "path_symlink"
          (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "../inputs/input")
        (data (i32.const 32) "output")
        (func (export "_start")
          (local $err i32)
          (local.set $err
            (call $path_symlink (i32.const 0) (i32.const 15) (i32.const 4) (i32.const 32) (i32.const 6)))
          (if (local.get $err)
            (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))))"#);
    let message = function_message(run(&payload, &[], &[("input", b"secret")], &["output"]).await);
    // WASI makes the link (it points inside the sandbox); the read-back refuses it
    // rather than follow it, so the input never comes back as the output.
    assert_eq!(
        message,
        "\"output\" in /cella/outputs is not a regular file named after a declared output slot; declared: [output]"
    );
}

#[tokio::test]
async fn a_chatty_module_is_not_failed_for_logging() {
    let payload = command(
        r#"(data (i32.const 100) "spam spam spam\n")"#,
        "(local $i i32)
         (i32.store (i32.const 0) (i32.const 100))
         (i32.store (i32.const 4) (i32.const 15))
         (loop
           (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
             (then (call $proc_exit (i32.const 9))))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if 0 (i32.lt_u (local.get $i) (i32.const 100000))))",
    );
    let (outcome, _) = run(&payload, &[], &[], &[]).await.unwrap();
    assert_eq!(outcome.log.len(), cella_executor::MAX_LOG_LINES + 1);
    assert!(outcome.log.last().unwrap().ends_with("lines dropped"));
}

#[test]
fn registration_refuses_what_cannot_run() {
    let exec = executor();
    let refuse = |payload: &[u8]| exec.validate_payload(payload).unwrap_err();

    let e = refuse(b"\0asm\x01\0\0\0garbage");
    assert!(e.starts_with("not a valid WebAssembly module"), "{e}");
    let e = refuse(b"#!/bin/sh\necho hi\n");
    assert!(e.starts_with("not a valid WebAssembly module"), "{e}");

    let e = refuse(&wat(r#"(module
        (import "env" "get_secret" (func (result i32)))
        (func (export "_start")))"#));
    assert_eq!(
        e,
        "the module imports `env::get_secret`; only `wasi_snapshot_preview1` imports are provided"
    );
    let e = refuse(&wat(r#"(module
        (import "wasi_snapshot_preview1" "sock_open_please" (func))
        (func (export "_start")))"#));
    assert!(
        e.starts_with("the module's WASI imports cannot be linked"),
        "{e}"
    );
    assert!(e.contains("sock_open_please"), "{e}");

    let e = refuse(&wat("(module (func (export \"main\")))"));
    assert!(
        e.starts_with("the module exports no `_start` function"),
        "{e}"
    );
    let e = refuse(&wat("(module (func (export \"_start\") (param i32)))"));
    assert_eq!(
        e,
        "the module's `_start` export is not a function of type [] -> []"
    );

    let e = refuse(&wat("(module (memory 2000) (func (export \"_start\")))"));
    assert!(
        e.starts_with("the module cannot be loaded within this node's limits"),
        "{e}"
    );
    assert!(e.contains("131072000"), "{e}");
    let e = refuse(&wat(
        "(module (table 30000 funcref) (func (export \"_start\")))",
    ));
    assert!(
        e.starts_with("the module cannot be loaded within this node's limits"),
        "{e}"
    );
    assert!(e.contains("30000"), "{e}");
    assert_eq!(
        exec.compile_count(),
        4,
        "each loadable module compiled once"
    );
}

#[tokio::test]
async fn a_task_for_another_executor_or_a_forged_digest_is_internal() {
    let exec = executor();
    let mut t = task(&example("echo"), &[]);
    t.executor = ExecutorKind::Builtin;
    let err = run_task(&exec, &t, &[], &[]).await.unwrap_err();
    assert!(err.is_platform_fault(), "{err:?}");

    // A digest nobody compiled, with a payload that does not hash to it.
    let mut t = task(&example("echo"), &[]);
    t.payload_digest = Digest::of(b"something else");
    let err = run_task(&exec, &t, &[], &[]).await.unwrap_err();
    assert!(err.is_platform_fault(), "{err:?}");
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert_eq!(exec.compile_count(), 0);
}

#[tokio::test]
async fn runs_leave_no_directory_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(WasmConfig {
        scratch_dir: Some(scratch.path().to_owned()),
        max_concurrent_runs: 2,
        ..WasmConfig::default()
    })
    .unwrap();
    let copy = example("copy");
    exec.validate_payload(&copy).unwrap();
    run_task(&exec, &task(&copy, &[]), &[("input", b"x")], &["output"])
        .await
        .unwrap();
    function_message(run_task(&exec, &task(&copy, &[]), &[], &["output"]).await);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_dropped_run_is_cancelled() {
    let payload = command("", "(loop (br 0))");
    let exec = executor();
    exec.validate_payload(&payload).unwrap();
    let t = task(&payload, &[]);
    let mut task_io = io(&[], &[], 1);
    // Give up after 100 ms of a 10 s deadline; the loop must stop soon after.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(100), exec.execute(&t, &mut task_io)).await;
    assert!(gave_up.is_err());
    // The pool has 4 slots: if cancelled runs kept theirs, these would fail.
    for _ in 0..6 {
        let mut task_io = io(&[], &[], 1);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), exec.execute(&t, &mut task_io)).await;
        assert!(gave_up.is_err());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (outcome, _) = run_task(&exec, &task(&example("echo"), &[("a", "b")]), &[], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(outcome.log, ["--a=b"]);
}

/// `_start` sleeps in one `poll_oneoff` on a relative monotonic clock of
/// `0x7fffffffffffffff` ns (292 years), then exits 0 if it ever wakes.
fn sleeper() -> Vec<u8> {
    wat(r#"(module
        (import "wasi_snapshot_preview1" "poll_oneoff"
          (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          ;; subscription at 0: userdata 7, tag 0 (clock), clock id 1 (monotonic),
          ;; timeout 0x7fffffffffffffff, precision 0, flags 0 (relative)
          (i64.store (i32.const 0) (i64.const 7))
          (i32.store8 (i32.const 8) (i32.const 0))
          (i32.store (i32.const 16) (i32.const 1))
          (i64.store (i32.const 24) (i64.const 0x7fffffffffffffff))
          (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_module_is_stopped_at_its_deadline_and_frees_its_slot() {
    let scratch = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(WasmConfig {
        max_concurrent_runs: 4,
        scratch_dir: Some(scratch.path().to_owned()),
        ..WasmConfig::default()
    })
    .unwrap();
    let payload = sleeper();
    exec.validate_payload(&payload).unwrap();
    let mut t = task(&payload, &[]);
    t.deadline = Duration::from_millis(200);
    // Twice as many sleepers as the pool has slots, two at a time.
    for _ in 0..4 {
        let started = Instant::now();
        let (a, b) = tokio::join!(
            run_task(&exec, &t, &[("input", b"secret")], &[]),
            run_task(&exec, &t, &[("input", b"secret")], &[])
        );
        for err in [a.unwrap_err(), b.unwrap_err()] {
            assert_eq!(
                err,
                ExecutionError::DeadlineExceeded {
                    limit: Duration::from_millis(200)
                }
            );
        }
        // Stopped in the host call at the deadline, not abandoned after the grace.
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }
    // Every slot came back: a normal task still runs, and no run dir is left.
    let (outcome, _) = run_task(&exec, &task(&example("echo"), &[("a", "b")]), &[], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(outcome.log.len(), 1);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_sleeping_module_frees_its_slot_at_once() {
    let exec = executor();
    let payload = sleeper();
    exec.validate_payload(&payload).unwrap();
    let t = task(&payload, &[]);
    // More cancels than slots (4), each 50 ms into a 10 s deadline.
    for _ in 0..6 {
        let mut task_io = io(&[], &[], 1);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), exec.execute(&t, &mut task_io)).await;
        assert!(gave_up.is_err());
    }
    let started = Instant::now();
    let (outcome, _) = run_task(&exec, &task(&example("echo"), &[("a", "b")]), &[], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(outcome.log.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn run_dirs_without_a_live_owner_are_swept_when_an_executor_starts() {
    let scratch = tempfile::tempdir().unwrap();
    let dead = scratch.path().join("cella-wasm-crashed");
    let live = scratch.path().join("cella-wasm-running");
    for dir in [&dead, &live] {
        std::fs::create_dir_all(dir.join("inputs")).unwrap();
        std::fs::write(dir.join("inputs").join("input"), b"decrypted secret").unwrap();
    }
    // The crashed node's lock died with it; a live node still holds its own.
    drop(cella_executor::scratch::claim(&dead).unwrap());
    let _running = cella_executor::scratch::claim(&live).unwrap();
    let other = scratch.path().join("not-a-run-dir");
    std::fs::create_dir(&other).unwrap();

    let exec = WasmExecutor::new(WasmConfig {
        scratch_dir: Some(scratch.path().to_owned()),
        max_concurrent_runs: 1,
        ..WasmConfig::default()
    })
    .unwrap();
    assert!(
        !dead.exists(),
        "a crashed run's plaintext survived the start"
    );
    assert!(live.join("inputs").join("input").exists());
    assert!(other.exists());
    drop(exec);
}

/// Writes `n` bytes to each of the outputs `a` and `b`.
fn two_writer(n: u32) -> Vec<u8> {
    let write = |at: u32| {
        format!(
            "(if (call $path_open (i32.const 4) (i32.const 0) (i32.const {at}) (i32.const 1)
                   (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
               (then (call $proc_exit (i32.const 1))))
             (i32.store (i32.const 0) (i32.const 1024))
             (i32.store (i32.const 4) (i32.const {n}))
             (if (call $fd_write (i32.load (i32.const 32)) (i32.const 0) (i32.const 1) (i32.const 8))
               (then (call $proc_exit (i32.const 2))))"
        )
    };
    command(
        r#"(data (i32.const 256) "a") (data (i32.const 260) "b")"#,
        &format!("{} {}", write(256), write(260)),
    )
}

#[tokio::test]
async fn outputs_over_the_task_total_fail_naming_the_cap() {
    let exec = executor();
    let payload = two_writer(600);
    exec.validate_payload(&payload).unwrap();
    // The node's cap, then a function's own cap below a larger node cap: each is named.
    for (limits, cap) in [
        (
            IoLimits::for_task(1024, 1000, None),
            "the node's output cap (--max-task-output-bytes)",
        ),
        (
            IoLimits::for_task(1024, 5000, Some(1000)),
            "the function's output cap (its max_output_bytes)",
        ),
    ] {
        let mut task_io = TaskIo::new(BTreeMap::new(), ["a".to_owned(), "b".to_owned()], limits);
        let err = exec
            .execute(&task(&payload, &[]), &mut task_io)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecutionError::function(format!(
                "{cap} of 1000 bytes exceeded: /cella/outputs holds 1200 bytes in all"
            ))
        );
        assert!(!err.is_platform_fault());
    }
    let limits = IoLimits::for_task(1024, 1000, None);

    // Within the cap, both come back.
    let mut task_io = TaskIo::new(
        BTreeMap::new(),
        ["a".to_owned(), "b".to_owned()],
        IoLimits {
            max_total_output_bytes: 1200,
            ..limits
        },
    );
    exec.execute(&task(&payload, &[]), &mut task_io)
        .await
        .unwrap();
    assert_eq!(task_io.output_bytes(), 1200);
}

/// Three `poll_oneoff` calls whose answers are checked, exiting with a distinct status
/// at the first wrong one: a 20 ms sleep (one event, userdata 7, no error); a 20 ms and
/// a 10 s clock together (only the first fires); a write subscription on stdout (ready
/// at once, event type fd_write).
const POLL_PROBE: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff"
      (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (func $clock (param $at i32) (param $userdata i64) (param $ns i64)
      (i64.store (local.get $at) (local.get $userdata))
      (i32.store8 (i32.add (local.get $at) (i32.const 8)) (i32.const 0))
      (i32.store (i32.add (local.get $at) (i32.const 16)) (i32.const 1))
      (i64.store (i32.add (local.get $at) (i32.const 24)) (local.get $ns)))
    (func $expect (param $ok i32) (param $status i32)
      (if (i32.eqz (local.get $ok)) (then (call $proc_exit (local.get $status)))))
    (func (export "_start")
      (call $clock (i32.const 0) (i64.const 7) (i64.const 20000000))
      (call $expect (i32.eqz (call $poll_oneoff (i32.const 0) (i32.const 512) (i32.const 1) (i32.const 1024))) (i32.const 10))
      (call $expect (i32.eq (i32.load (i32.const 1024)) (i32.const 1)) (i32.const 11))
      (call $expect (i64.eq (i64.load (i32.const 512)) (i64.const 7)) (i32.const 12))
      (call $expect (i32.eqz (i32.load16_u (i32.const 520))) (i32.const 13))

      (call $clock (i32.const 0) (i64.const 1) (i64.const 20000000))
      (call $clock (i32.const 48) (i64.const 2) (i64.const 10000000000))
      (call $expect (i32.eqz (call $poll_oneoff (i32.const 0) (i32.const 512) (i32.const 2) (i32.const 1024))) (i32.const 20))
      (call $expect (i32.eq (i32.load (i32.const 1024)) (i32.const 1)) (i32.const 21))
      (call $expect (i64.eq (i64.load (i32.const 512)) (i64.const 1)) (i32.const 22))

      ;; tag 2 = fd_write, on fd 1
      (i64.store (i32.const 0) (i64.const 9))
      (i32.store8 (i32.const 8) (i32.const 2))
      (i32.store (i32.const 16) (i32.const 1))
      (call $expect (i32.eqz (call $poll_oneoff (i32.const 0) (i32.const 512) (i32.const 1) (i32.const 1024))) (i32.const 30))
      (call $expect (i32.eq (i32.load (i32.const 1024)) (i32.const 1)) (i32.const 31))
      (call $expect (i32.eq (i32.load8_u (i32.const 522)) (i32.const 2)) (i32.const 32))))"#;

#[tokio::test]
async fn poll_oneoff_still_sleeps_reports_and_passes_on_fd_subscriptions() {
    let started = Instant::now();
    run(&wat(POLL_PROBE), &[], &[], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // Two 20 ms sleeps, and not the 10 s one.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(40), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
