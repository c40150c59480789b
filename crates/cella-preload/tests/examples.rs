//! The examples of `examples/libos/` run as the pre-load module runs a workload: laid out
//! in a `Layout`, with `task.json` written, the command line and environment built from a
//! `Deploy`, started by the `ProcessRunner`. Only the sandbox's isolation is missing (the
//! sandbox backend's own tests run them inside it), so the programs find their files
//! through `CELLA_INPUT_DIR`, `CELLA_OUTPUT_DIR` and `CELLA_TASK_FILE`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cella_preload::layout::Layout;
use cella_preload::protocol::{Deploy, EnvVar, ExitStatus, FileMeta};
use cella_preload::runner::{Job, ProcessRunner, Runner};
use cella_preload::task::{ARG_ENV_PREFIX, program_argv, write_task_file};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/libos")
        .join(name)
}

const PYTHON: &str = "/usr/bin/python3";

/// What a run left: its exit status, its log, its outputs.
struct Ran {
    exit: ExitStatus,
    log: Vec<String>,
    outputs: BTreeMap<String, Vec<u8>>,
}

/// Runs `program` (copied in as the workload's `program`) with `argv` (the image's
/// command line), the task's `arguments`, `inputs` and output slots.
async fn run(
    program: &Path,
    argv: &[&str],
    arguments: &[(&str, &str)],
    inputs: &[(&str, &[u8])],
    outputs: &[&str],
) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let dst = layout.workload_dir().join("program");
    std::fs::copy(program, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o500)).unwrap();
    for (slot, data) in inputs {
        std::fs::write(layout.input_dir().join(slot), data).unwrap();
    }
    layout.seal_read_only().unwrap();
    let deploy = Deploy {
        function_name: "example".into(),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: arguments
            .iter()
            .map(|(k, v)| EnvVar {
                name: format!("{ARG_ENV_PREFIX}{k}"),
                value: (*v).to_owned(),
            })
            .collect(),
        inputs: inputs
            .iter()
            .map(|(slot, _)| FileMeta {
                name: (*slot).to_owned(),
                ..FileMeta::default()
            })
            .collect(),
        outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        ..Deploy::default()
    };
    write_task_file(&layout, &deploy).unwrap();
    let mut env: Vec<(String, String)> = deploy
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    env.extend(layout.env());
    let argv = program_argv(&deploy);
    let (tx, mut rx) = mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some((_, line)) = rx.recv().await {
            lines.push(line);
        }
        lines
    });
    let job = Job {
        layout: &layout,
        argv: &argv,
        env: &env,
    };
    let exit = ProcessRunner::default()
        .run(&job, tx, CancellationToken::new())
        .await
        .unwrap();
    let log = collect.await.unwrap();
    let outputs = outputs
        .iter()
        .filter_map(|s| {
            std::fs::read(layout.output_dir().join(s))
                .ok()
                .map(|d| ((*s).to_owned(), d))
        })
        .collect();
    Ran { exit, log, outputs }
}

fn python() -> bool {
    if Path::new(PYTHON).exists() {
        true
    } else {
        eprintln!("{PYTHON} not found: skipped");
        false
    }
}

#[tokio::test]
async fn psi_intersects_two_parties_ids() {
    if !python() {
        return;
    }
    let ran = run(
        &example("psi.py"),
        &[PYTHON, "-I", "-B", "program"],
        &[],
        &[
            ("left", b"alice\nbob\n carol \n\ndave\nbob\n"),
            ("right", b"erin\ncarol\nbob\nfrank\n"),
        ],
        &["result", "result_b"],
    )
    .await;
    assert!(ran.exit.success(), "{:?}: {:?}", ran.exit, ran.log);
    assert_eq!(ran.outputs["result"], b"bob\ncarol\n");
    assert_eq!(ran.outputs["result_b"], b"bob\ncarol\n");
    // The log tells the count, never the ids.
    assert_eq!(ran.log, ["2 ids in common"]);

    // Wrong slots fail with a message on stderr.
    let ran = run(
        &example("psi.py"),
        &[PYTHON, "-I", "-B", "program"],
        &[],
        &[("a", b"x\n"), ("b", b"x\n")],
        &["result"],
    )
    .await;
    assert_eq!(ran.exit.code, Some(2));
    assert!(
        ran.log.iter().any(|l| l.contains("left and right")),
        "{:?}",
        ran.log
    );
}

#[tokio::test]
async fn stats_pools_a_column_across_three_owners() {
    if !python() {
        return;
    }
    let argv = [PYTHON, "-I", "-B", "program"];
    let inputs: [(&str, &[u8]); 3] = [
        ("a", b"name,salary\nann,10\nabe,20\n"),
        ("b", b"salary,name\n30,bea\n,nobody\n"),
        ("c", b"id,salary,dept\n1,40,x\n2,50,y\n"),
    ];
    let ran = run(
        &example("stats.py"),
        &argv,
        &[("column", "salary")],
        &inputs,
        &["summary"],
    )
    .await;
    assert!(ran.exit.success(), "{:?}: {:?}", ran.exit, ran.log);
    let summary: serde_json::Value = serde_json::from_slice(&ran.outputs["summary"]).unwrap();
    assert_eq!(summary["column"], "salary");
    assert_eq!(summary["count"], 5);
    let mean = summary["mean"].as_f64().unwrap();
    let variance = summary["variance"].as_f64().unwrap();
    assert!((mean - 30.0).abs() < 1e-9, "{mean}");
    assert!((variance - 200.0).abs() < 1e-9, "{variance}");
    assert_eq!(ran.log, ["5 values from 3 inputs"]);

    // A cell that is not a number fails the task naming the slot and row, not the cell.
    let bad: [(&str, &[u8]); 2] = [("a", b"salary\n1\n"), ("b", b"salary\n2\nsecret-value\n")];
    let ran = run(
        &example("stats.py"),
        &argv,
        &[("column", "salary")],
        &bad,
        &["summary"],
    )
    .await;
    assert_eq!(ran.exit.code, Some(1));
    let line = ran.log.join("\n");
    assert!(line.contains("'b', row 3"), "{line}");
    assert!(!line.contains("secret-value"), "{line}");
    assert!(ran.outputs.is_empty());

    // A missing column too.
    let ran = run(
        &example("stats.py"),
        &argv,
        &[("column", "age")],
        &inputs,
        &["summary"],
    )
    .await;
    assert_eq!(ran.exit.code, Some(1));
    assert!(
        ran.log.join("\n").contains("no column 'age'"),
        "{:?}",
        ran.log
    );
}

#[tokio::test]
async fn hello_c_built_static_reads_an_input_and_writes_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("hello");
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(example("hello.c"))
        .status();
    match built {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("gcc -static failed ({s}; no static libc?): skipped");
            return;
        }
        Err(e) => {
            eprintln!("gcc not runnable ({e}): skipped");
            return;
        }
    }
    // Static: it runs on the `native` image, which holds no file.
    let file = std::fs::read(&bin).unwrap();
    assert_eq!(&file[..4], b"\x7fELF");

    let ran = run(
        &bin,
        &["./program"],
        &[("word", "hi")],
        &[("name", b"world\nignored\n")],
        &["greeting"],
    )
    .await;
    assert!(ran.exit.success(), "{:?}: {:?}", ran.exit, ran.log);
    assert_eq!(ran.outputs["greeting"], b"hi, world!\n");
    assert_eq!(ran.log, ["greeted one name"]);

    let ran = run(&bin, &["./program"], &[], &[("name", b"")], &["greeting"]).await;
    assert_eq!(ran.exit.code, Some(1));
    assert_eq!(ran.log, ["input name is empty"]);
    assert!(ran.outputs.is_empty());
}
