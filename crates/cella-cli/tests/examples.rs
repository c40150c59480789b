//! The examples of `examples/libos/` end to end: each runs through a `LibosExecutor` on
//! the `sandbox` backend (the `cella` binary as jailer and pre-load module), on images
//! built into a temporary data dir: `python3` for `psi.py` and `stats.py`, `native` (no
//! file) for `hello.c` built with `gcc -static`. What the programs see is the function's
//! view of `docs/writing-functions.md`: `/cella/inputs`, `/cella/outputs`,
//! `/cella/task.json`, `--name=value` arguments.
//!
//! Skipped, with a line on stderr, where this machine cannot run sandboxes or lacks
//! `/usr/bin/python3` or `gcc -static`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cella_attest::Measurement;
use cella_attest::sim::SimSigner;
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, IoLimits, StagedTask, TaskIo};
use cella_image::ImageStore;
use cella_libos::config::SandboxSection;
use cella_libos::{ExecutorAttestation, ExecutorConfig, LibosExecutor, PoolConfig};
use cella_sandbox::backend::{ImageRoot, SandboxBackend, SandboxConfig};
use cella_types::ExecutorKind;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/libos")
        .join(name)
}

fn limits() -> SandboxSection {
    SandboxSection {
        memory_bytes: 512 << 20,
        processes: 64,
        open_files: 256,
        file_size_bytes: 64 << 20,
        cpu_seconds: 60,
        work_bytes: 64 << 20,
        outputs_bytes: 16 << 20,
        scratch_bytes: 16 << 20,
        tmp_bytes: 8 << 20,
        // The examples run wherever a sandbox can (as an ordinary user too); the
        // containment suite is where the limits themselves are checked.
        accept_per_process_limits: true,
        ..SandboxSection::default()
    }
}

/// An executor on the sandbox backend offering `images`, or `None` (said on stderr)
/// where sandboxes cannot run here.
async fn executor(data_dir: &Path, images: &[&str]) -> Option<LibosExecutor> {
    let store = ImageStore::new(data_dir);
    let roots = images
        .iter()
        .map(|name| ImageRoot::from(store.load(name).unwrap()))
        .collect();
    let attestation = ExecutorAttestation::simulated(
        Arc::new(SimSigner::generate().unwrap()),
        Measurement::sha256(b"examples executor"),
    );
    let cella = PathBuf::from(env!("CARGO_BIN_EXE_cella"));
    let config = SandboxConfig {
        data_dir: data_dir.to_path_buf(),
        jailer: cella.clone(),
        preload: cella,
        limits: limits(),
    };
    let backend = Arc::new(SandboxBackend::new(config, &attestation, roots).unwrap());
    if let Err(e) = backend.probe().await {
        eprintln!("this machine cannot run sandboxes ({e}): skipped");
        return None;
    }
    Some(
        LibosExecutor::new(
            Arc::clone(&backend) as Arc<dyn cella_libos::LibosBackend>,
            backend.images(),
            attestation,
            ExecutorConfig {
                pool: PoolConfig { warm: 0, max: 2 },
                ..ExecutorConfig::default()
            },
        )
        .unwrap(),
    )
}

async fn run(
    executor: &LibosExecutor,
    runtime: &str,
    payload: Vec<u8>,
    arguments: &[(&str, &str)],
    inputs: &[(&str, &[u8])],
    outputs: &[&str],
) -> (Result<ExecutionOutcome, ExecutionError>, TaskIo) {
    let task = StagedTask::new(
        "example",
        ExecutorKind::Libos,
        payload,
        Duration::from_secs(60),
    )
    .with_runtime(runtime)
    .with_arguments(arguments.iter().copied());
    let mut io = TaskIo::new(
        inputs
            .iter()
            .map(|(s, d)| ((*s).to_owned(), d.to_vec()))
            .collect::<BTreeMap<_, _>>(),
        outputs.iter().map(|s| (*s).to_owned()),
        IoLimits::per_slot(1 << 20),
    );
    let r = executor.execute(&task, &mut io).await;
    (r, io)
}

/// An executor whose `python3` image is the host's Python, in a fresh data dir that the
/// returned guard keeps; `None` (the test is skipped) without `/usr/bin/python3` or when
/// this machine cannot run sandboxes.
async fn python3_executor() -> Option<(tempfile::TempDir, LibosExecutor)> {
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("no /usr/bin/python3: skipped");
        return None;
    }
    let data_dir = tempfile::tempdir().unwrap();
    ImageStore::new(data_dir.path())
        .build_python3(python, "python3")
        .unwrap();
    let executor = executor(data_dir.path(), &["python3"]).await?;
    Some((data_dir, executor))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_examples_run_in_the_sandbox() {
    let Some((_data_dir, executor)) = python3_executor().await else {
        return;
    };

    let psi = std::fs::read(example("psi.py")).unwrap();
    let (r, io) = run(
        &executor,
        "python3",
        psi,
        &[],
        &[
            ("left", b"alice\nbob\ncarol\n"),
            ("right", b"carol\ndave\nalice\n"),
        ],
        &["result"],
    )
    .await;
    let outcome = r.unwrap();
    assert_eq!(io.output("result"), Some(&b"alice\ncarol\n"[..]));
    assert!(
        outcome.log.iter().any(|l| l.contains("2 ids in common")),
        "{:?}",
        outcome.log
    );

    let stats = std::fs::read(example("stats.py")).unwrap();
    let (r, io) = run(
        &executor,
        "python3",
        stats.clone(),
        &[("column", "age")],
        &[
            ("a", b"name,age\nann,20\n"),
            ("b", b"age\n30\n"),
            ("c", b"age,name\n40,cy\n"),
        ],
        &["summary"],
    )
    .await;
    r.unwrap();
    let summary: serde_json::Value = serde_json::from_slice(io.output("summary").unwrap()).unwrap();
    assert_eq!(summary["count"], 3);
    assert_eq!(summary["mean"], 30.0);

    // A failure: non-zero exit, the task's reason quotes stderr.
    let (r, _) = run(
        &executor,
        "python3",
        stats,
        &[("column", "height")],
        &[("a", b"age\n1\n"), ("b", b"age\n2\n"), ("c", b"age\n3\n")],
        &["summary"],
    )
    .await;
    match r {
        Err(ExecutionError::Function { message }) => {
            assert!(message.contains("no column 'height'"), "{message}");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
}

/// What `docs/writing-functions.md` promises a program: the paths, the environment, the
/// command line and `task.json`.
const VIEW: &str = r#"
import json, os, sys
view = {
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "task": json.load(open("/cella/task.json")),
    "input": open("/cella/inputs/in").read(),
    "program": os.path.exists("/cella/workload/program"),
}
open("/cella/outputs/out", "w").write(json.dumps(view))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_s_view_is_as_documented() {
    let Some((_data_dir, executor)) = python3_executor().await else {
        return;
    };
    let (r, io) = run(
        &executor,
        "python3",
        VIEW.as_bytes().to_vec(),
        &[("zeta", "z"), ("alpha", "a=b c")],
        &[("in", b"plain")],
        &["out"],
    )
    .await;
    r.unwrap();
    let view: serde_json::Value = serde_json::from_slice(io.output("out").unwrap()).unwrap();
    assert_eq!(
        view["argv"],
        serde_json::json!(["program", "--alpha=a=b c", "--zeta=z"])
    );
    assert_eq!(view["cwd"], "/cella/workload");
    assert_eq!(view["program"], true);
    assert_eq!(view["input"], "plain");
    assert_eq!(
        view["task"],
        serde_json::json!({
            "function": "example",
            "arguments": {"alpha": "a=b c", "zeta": "z"},
            "inputs": ["in"],
            "outputs": ["out"],
        })
    );
    let env = &view["env"];
    for (k, v) in [
        ("CELLA_WORKLOAD_DIR", "/cella/workload"),
        ("CELLA_INPUT_DIR", "/cella/inputs"),
        ("CELLA_OUTPUT_DIR", "/cella/outputs"),
        ("CELLA_SCRATCH_DIR", "/cella/scratch"),
        ("HOME", "/cella/scratch"),
        ("CELLA_TASK_FILE", "/cella/task.json"),
        ("CELLA_RETURN_FILE", "/cella/return"),
        ("CELLA_ARG_alpha", "a=b c"),
        ("CELLA_ARG_zeta", "z"),
        ("PATH", "/usr/bin:/bin"),
    ] {
        assert_eq!(env[k], v, "{k} in {env}");
    }
    // Nothing else, but what Python itself sets (LC_CTYPE: PEP 538 locale coercion).
    let extra: Vec<&String> = env
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            let documented = k.starts_with("CELLA_ARG_")
                || [
                    "CELLA_WORKLOAD_DIR",
                    "CELLA_INPUT_DIR",
                    "CELLA_OUTPUT_DIR",
                    "CELLA_SCRATCH_DIR",
                    "CELLA_TASK_FILE",
                    "CELLA_RETURN_FILE",
                    "HOME",
                    "PATH",
                    "LC_CTYPE",
                ]
                .contains(&k.as_str());
            !documented
        })
        .collect();
    assert!(extra.is_empty(), "unexpected environment: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_c_runs_static_on_the_native_image() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("hello");
    match std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(example("hello.c"))
        .status()
    {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("gcc -static unavailable ({other:?}): skipped");
            return;
        }
    }
    let data_dir = dir.path().join("data");
    let summary = ImageStore::new(&data_dir)
        .build_native(&bin, "native")
        .unwrap();
    assert_eq!(summary.files, 0);
    let Some(executor) = executor(&data_dir, &["native"]).await else {
        return;
    };
    let (r, io) = run(
        &executor,
        "native",
        std::fs::read(&bin).unwrap(),
        &[("word", "hi")],
        &[("name", b"sandbox\n")],
        &["greeting"],
    )
    .await;
    r.unwrap();
    assert_eq!(io.output("greeting"), Some(&b"hi, sandbox!\n"[..]));
}
