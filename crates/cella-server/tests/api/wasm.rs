//! The WebAssembly executor end to end: functions registered over gRPC with WAT-built
//! payloads, run by a node with the real `wasm` executor (not the scripted stand-in).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cella_client::Client;
use cella_client::proto::{self, TaskStatus};
use cella_crypto::FileKey;
use cella_executor::Executors;
use cella_platform::NodeConfig;
use cella_server::{default_executors, wasm_executor};
use cella_wasm::WasmExecutor;

use crate::support::*;

/// The wasm executor the node is running now (replaced at every restart).
type Current = Arc<Mutex<Option<Arc<WasmExecutor>>>>;

/// A node with its default executors (the real wasm executor among them), and a handle
/// on that executor to read its counters.
async fn wasm_node(tweak: impl FnOnce(&mut NodeConfig)) -> (TestNode, Current) {
    let current: Current = Arc::default();
    let slot = Arc::clone(&current);
    let build = move |config: &NodeConfig, _release: bool| -> Executors {
        let mut executors = default_executors(config).unwrap();
        let wasm = Arc::new(wasm_executor(config).unwrap());
        *slot.lock().unwrap() = Some(Arc::clone(&wasm));
        executors.register(wasm);
        executors
    };
    let node = TestNode::start_with_executors(tweak, Arc::new(build)).await;
    (node, current)
}

fn compiles(current: &Current) -> u64 {
    current.lock().unwrap().as_ref().unwrap().compile_count()
}

fn example(name: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/wasm/{name}.wat"));
    std::fs::read(path).unwrap()
}

/// Registers a public wasm function with these slots and no declared arguments but
/// `message` (default "hi"); returns its id.
async fn register(
    fo: &Client,
    name: &str,
    payload: Vec<u8>,
    inputs: &[&str],
    outputs: &[&str],
) -> String {
    fo.register_function(spec(name, "wasm", inputs, outputs), payload)
        .await
        .unwrap()
        .function_id
}

/// Creates, fills, approves and invokes a task of `function` whose every slot `user`
/// owns; waits for its end. Returns it and the output files by slot.
async fn run(
    user: &Client,
    name: &str,
    function: &str,
    message: Option<&str>,
    inputs: &[(&str, &[u8])],
    outputs: &[&str],
) -> (proto::TaskInfo, BTreeMap<String, (String, FileKey)>) {
    let args: HashMap<String, String> = message
        .map(|m| HashMap::from([("message".to_owned(), m.to_owned())]))
        .unwrap_or_default();
    let t = user
        .create_task(
            function,
            args,
            inputs.iter().map(|(s, _)| slot(s, &[name])).collect(),
            outputs.iter().map(|s| slot(s, &[name])).collect(),
        )
        .await
        .unwrap();
    let mut input_files = Vec::new();
    for (s, data) in inputs {
        input_files.push(file(s, &upload(user, data).await));
    }
    let mut out = BTreeMap::new();
    let mut output_files = Vec::new();
    for s in outputs {
        let (id, key) = output(user).await;
        output_files.push(file(s, &id));
        out.insert((*s).to_owned(), (id, key));
    }
    let t = user
        .assign_data(&t.task_id, input_files, output_files)
        .await
        .unwrap();
    user.approve_task(&t.task_id, &t.task_digest).await.unwrap();
    user.invoke_task(&t.task_id).await.unwrap();
    (wait(user, &t.task_id).await, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_copy_run_and_the_cache_is_used_across_tasks_and_restarts() {
    let (mut node, current) = wasm_node(|_| {}).await;
    let user = node.owner("owner").await;
    let echo = register(&user, "echo", example("echo"), &[], &[]).await;
    let copy = register(&user, "copy", example("copy"), &["input"], &["output"]).await;
    assert_eq!(compiles(&current), 2, "compiled once each, at registration");

    let (t, _) = run(&user, "owner", &echo, Some("hello wasm"), &[], &[]).await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    let result = t.result.unwrap();
    assert_eq!(result.log, ["--message=hello wasm"]);
    let receipt: serde_json::Value = serde_json::from_slice(&result.receipt).unwrap();
    assert_eq!(receipt["format"], "cella-wasm-receipt-v1");

    let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let (t, out) = run(
        &user,
        "owner",
        &copy,
        None,
        &[("input", &data)],
        &["output"],
    )
    .await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    let (id, key) = &out["output"];
    assert_eq!(fetch(&user, id, key).await, data);
    assert_eq!(
        compiles(&current),
        2,
        "the tasks found their modules compiled"
    );

    // A restart: a new executor on the same data dir loads the sealed cache files.
    node.restart(true).await;
    let user = {
        let mut c = node.client().await;
        c.login("owner", PASSWORD).await.unwrap();
        c
    };
    let (t, _) = run(&user, "owner", &echo, Some("again"), &[], &[]).await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    assert_eq!(t.result.unwrap().log, ["--message=again"]);
    let executor = current.lock().unwrap().clone().unwrap();
    assert_eq!(executor.compile_count(), 0, "{:?}", executor.cache_stats());
    assert_eq!(executor.cache_stats().disk_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parties_intersect_with_the_psi_module() {
    let (node, _) = wasm_node(|_| {}).await;
    let admin = node.admin().await;
    let fo = node.user(&admin, "fo", &["function_owner"]).await;
    let a = node.user(&admin, "bank-a", &["data_owner"]).await;
    let b = node.user(&admin, "bank-b", &["data_owner"]).await;
    let mut s = spec(
        "psi",
        "wasm",
        &["input_a", "input_b"],
        &["output_a", "output_b"],
    );
    s.arguments.clear();
    let f = fo.register_function(s, example("psi")).await.unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("input_a", &["bank-a"]), slot("input_b", &["bank-b"])],
            vec![slot("output_a", &["bank-a"]), slot("output_b", &["bank-b"])],
        )
        .await
        .unwrap();
    let mut keys = Vec::new();
    for (c, i, o, data) in [
        (&a, "input_a", "output_a", &b"alice\nbob\ncarol\n"[..]),
        (&b, "input_b", "output_b", &b"carol\ndave\nalice\n"[..]),
    ] {
        let input = upload(c, data).await;
        let (out, key) = output(c).await;
        c.assign_data(&t.task_id, vec![file(i, &input)], vec![file(o, &out)])
            .await
            .unwrap();
        keys.push((out, key));
    }
    let t = fo.get_task(&t.task_id).await.unwrap();
    for c in [&fo, &a, &b] {
        c.approve_task(&t.task_id, &t.task_digest).await.unwrap();
    }
    fo.invoke_task(&t.task_id).await.unwrap();
    let done = wait(&fo, &t.task_id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    assert_eq!(done.result.unwrap().log, ["2"]);
    assert_eq!(fetch(&a, &keys[0].0, &keys[0].1).await, b"alice\ncarol\n");
    assert_eq!(fetch(&b, &keys[1].0, &keys[1].1).await, b"alice\ncarol\n");
}

fn command(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
            (memory (export "memory") 1)
            (data (i32.const 100) "no such customer\n")
            (func $boom (export "_start") {body}))"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_traps_and_exits_fail_the_task_with_their_reason() {
    let (node, _) = wasm_node(|c| c.task_deadline = std::time::Duration::from_secs(1)).await;
    let user = node.owner("owner").await;
    let cases = [
        ("spin", command("(loop (br 0))"), "deadline of 1s"),
        (
            "bomb",
            command("(loop (drop (memory.grow (i32.const 16))) (br 0))"),
            "memory limit of 268435456 bytes exceeded",
        ),
        ("trap", command("unreachable"), "wasm trap: "),
        (
            "exit",
            command(
                "(i32.store (i32.const 0) (i32.const 100))
                 (i32.store (i32.const 4) (i32.const 17))
                 (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
                 (call $proc_exit (i32.const 3))",
            ),
            "exit status 3; last lines of stderr:\n  no such customer",
        ),
    ];
    for (name, payload, reason) in cases {
        let f = register(&user, name, payload, &[], &[]).await;
        let (t, _) = run(&user, "owner", &f, None, &[], &[]).await;
        assert_eq!(status(&t), TaskStatus::Failed, "{name}");
        assert!(t.reason.contains(reason), "{name}: {:?}", t.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_cannot_run_are_refused_at_registration() {
    let (node, current) = wasm_node(|_| {}).await;
    let user = node.owner("owner").await;
    let foreign = wat::parse_str(
        r#"(module (import "env" "read_host_file" (func (param i32) (result i32)))
                   (func (export "_start")))"#,
    )
    .unwrap();
    let no_start = wat::parse_str(r#"(module (func (export "main")))"#).unwrap();
    for (payload, says) in [
        (
            foreign,
            "the module imports `env::read_host_file`; only `wasi_snapshot_preview1` imports are provided",
        ),
        (no_start, "the module exports no `_start` function"),
        (
            b"\0asm not really".to_vec(),
            "not a valid WebAssembly module",
        ),
    ] {
        let e = user
            .register_function(spec("bad", "wasm", &[], &[]), payload)
            .await
            .unwrap_err();
        assert_eq!(code(&e), tonic::Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    assert_eq!(compiles(&current), 2);
    let listed = user.list_functions(false).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// A module over 64 MiB (a data segment of 64 MiB) uploads, compiles and runs; its
/// `_start` prints the segment's last bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_module_uploads_and_runs() {
    const SEGMENT: usize = 64 << 20;
    const MARK: &str = "END-OF-DATA";
    let mut src = String::with_capacity(SEGMENT + 1024);
    src.push_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1040)
            (data (i32.const 0) ""#,
    );
    src.push_str(&"a".repeat(SEGMENT - MARK.len()));
    src.push_str(MARK);
    let iov = SEGMENT + 64;
    src.push_str(&format!(
        r#"")
            (func (export "_start")
              (i32.store (i32.const {iov}) (i32.const {start}))
              (i32.store (i32.const {len_at}) (i32.const {len}))
              (drop (call $w (i32.const 1) (i32.const {iov}) (i32.const 1) (i32.const {nw})))))"#,
        start = SEGMENT - MARK.len(),
        len_at = iov + 4,
        len = MARK.len(),
        nw = iov + 8,
    ));
    let payload = wat::parse_str(&src).unwrap();
    drop(src);
    assert!(payload.len() >= SEGMENT, "{}", payload.len());

    let (node, _) = wasm_node(|_| {}).await;
    let user = node.owner("owner").await;
    let f = register(&user, "big", payload, &[], &[]).await;
    let (t, _) = run(&user, "owner", &f, None, &[], &[]).await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    assert_eq!(t.result.unwrap().log, [MARK]);
}
