//! The launcher for real, through `standin-gramine-direct` (a stand-in of
//! `gramine-direct` that runs the real pre-load module on the host; see the script):
//! the loader started in a launch directory of its own, the pre-load module connecting
//! back over loopback TCP and attesting with the node's simulation evidence served over
//! TCP, a task run end to end, SIGTERM sent once when the instance is retired, and
//! nothing left behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cella_executor::{Executor, IoLimits, StagedTask, TaskIo};
use cella_gramine::backend::{GramineBackend, ImageOnDisk, Setup};
use cella_gramine::{GramineConfig, Mode};
use cella_libos::{ExecutorConfig, LibosExecutor, PoolConfig, Timeouts};
use cella_types::{Digest, ExecutorKind, FunctionId, TaskId};

use crate::common::{Fixture, preload_binary, standin};
use crate::signing::attestation;

fn direct_config(f: &Fixture) -> GramineConfig {
    let mut c = GramineConfig::defaults(Mode::Direct);
    c.gramine_direct = Some(standin("standin-gramine-direct"));
    c.preload = Some(preload_binary());
    c.libos = Some(f.libos.path.clone());
    c
}

fn executor(f: &Fixture, warm: usize) -> (LibosExecutor, std::path::PathBuf) {
    let attestation = attestation();
    let work = f.root.join("work");
    let backend = GramineBackend::new(
        direct_config(f),
        Setup {
            work_dir: work.clone(),
            images: vec![ImageOnDisk {
                image: f.native.clone(),
                rootfs: f.rootfs("native"),
            }],
            executor_policy: attestation.preload_config().executor_policy,
            preload_libraries: Vec::new(),
            hardware: Arc::clone(attestation.hardware()),
        },
    )
    .unwrap();
    let executor = LibosExecutor::new(
        Arc::new(backend),
        vec![f.native.clone()],
        attestation,
        ExecutorConfig {
            pool: PoolConfig { warm, max: 2 },
            timeouts: Timeouts {
                attest: Duration::from_secs(20),
                ..Timeouts::default()
            },
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    (executor, work)
}

fn task(program: &str) -> StagedTask {
    StagedTask {
        task_id: TaskId::new(),
        function_id: FunctionId::new(),
        function_name: "copy".into(),
        executor: ExecutorKind::Libos,
        payload: Arc::from(program.as_bytes()),
        payload_digest: Digest::of(program.as_bytes()),
        runtime: Some("native".into()),
        reuse: cella_types::InstanceReuse::Never,
        arguments: BTreeMap::new(),
        deadline: Duration::from_secs(20),
    }
}

fn launch_dirs(work: &std::path::Path) -> usize {
    std::fs::read_dir(work.join("launch")).map_or(0, |d| d.count())
}

/// Waits up to five seconds for `cond`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_through_the_gramine_direct_standin() {
    let f = Fixture::new();
    let (executor, work) = executor(&f, 0);
    let program = "#!/bin/sh\nset -e\ntr a-z A-Z < \"$CELLA_INPUT_DIR/in\" > \"$CELLA_OUTPUT_DIR/out\"\necho copied\n";
    let mut io = TaskIo::new(
        BTreeMap::from([("in".to_owned(), b"some data".to_vec())]),
        ["out".to_owned()],
        IoLimits {
            max_output_bytes: 1 << 20,
        },
    );
    let outcome = executor.execute(&task(program), &mut io).await.unwrap();
    assert_eq!(io.output("out"), Some(&b"SOME DATA"[..]));
    assert!(
        outcome.log.iter().any(|l| l == "copied"),
        "{:?}",
        outcome.log
    );
    // The receipt verifies under the policy the executor writes for its instances.
    let policy = cella_attest::Policy::from_toml_str(&executor.instance_policy()).unwrap();
    cella_libos::receipt::verify_bundle(&outcome.receipt, Some(&policy)).unwrap();

    // Single-use: the instance is retired with one SIGTERM (the stand-in records it, as
    // Gramine honours one), then its launch directory is gone.
    let signals = work.join("standin-signals");
    eventually("the retired instance got SIGTERM", || signals.is_file()).await;
    eventually("the launch directory was removed", || {
        launch_dirs(&work) == 0
    })
    .await;
    assert_eq!(std::fs::read_to_string(&signals).unwrap(), "TERM\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_attests_over_tcp_and_is_killed_with_its_group() {
    let f = Fixture::new();
    let (executor, work) = executor(&f, 1);
    let stats = || executor.pool_stats("native").unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while stats().idle < 1 {
        assert!(
            Instant::now() < until,
            "no attested instance: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats().launched, 1);
    assert_eq!(launch_dirs(&work), 1);
    // Dropping the executor kills the idle instance's process group at once.
    drop(executor);
    eventually("the killed instance's launch directory was removed", || {
        launch_dirs(&work) == 0
    })
    .await;
}
