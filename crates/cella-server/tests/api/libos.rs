//! The LibOS executor end to end: `libos` functions with a runtime image, run by a node
//! on the mock backend (real pre-load logic, real RA-TLS over a Unix socket), cancelled,
//! timed out, failed, and their receipts verified offline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cella_client::proto::{self, TaskStatus};
use cella_executor::Executors;
use cella_libos::mock::{Fault, MockBackend};
use cella_libos::receipt::{Expected, check_expected, verify_bundle};
use cella_libos::{ExecutorConfig, PoolConfig, RuntimeImage};
use cella_platform::NodeConfig;
use cella_server::default_executors;
use cella_types::Digest;

use crate::support::*;

/// The mock backend of the node running now.
type Backend = Arc<Mutex<Option<Arc<MockBackend>>>>;

/// A node whose libos executor runs on a mock backend we hold, with `warm` instances.
async fn libos_node(warm: usize, tweak: impl FnOnce(&mut NodeConfig)) -> (TestNode, Backend) {
    let backend: Backend = Arc::default();
    let slot = Arc::clone(&backend);
    let build = move |config: &NodeConfig, release: bool| -> Executors {
        let mut executors = executors(config, release);
        let (libos, mock) = cella_libos::mock::executor(
            vec![RuntimeImage::native()],
            ExecutorConfig {
                pool: PoolConfig { warm, max: 4 },
                ..ExecutorConfig::default()
            },
        )
        .unwrap();
        *slot.lock().unwrap() = Some(mock);
        executors.register(Arc::new(libos));
        executors
    };
    let node = TestNode::start_with_executors(tweak, Arc::new(build)).await;
    (node, backend)
}

fn mock(b: &Backend) -> Arc<MockBackend> {
    Arc::clone(b.lock().unwrap().as_ref().unwrap())
}

fn libos_spec(name: &str, runtime: &str) -> proto::FunctionSpec {
    proto::FunctionSpec {
        runtime: runtime.into(),
        ..spec(name, "libos", &["in"], &["out"])
    }
}

/// Waits until the backend has `live` instances, for at most `within`.
async fn live(b: &MockBackend, n: usize, within: Duration) {
    let until = Instant::now() + within;
    while b.live_instances() != n {
        assert!(
            Instant::now() < until,
            "{} live instances, expected {n}",
            b.live_instances()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libos_task_runs_and_its_receipt_verifies_offline() {
    let (node, backend) = libos_node(1, |_| {}).await;
    let fo = node.owner("fo").await;
    let script = b"log converting\nupper in out\nreturn ok\n".to_vec();
    let f = fo
        .register_function(libos_spec("upper", "native"), script.clone())
        .await
        .unwrap();
    let (task, out, key) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    let t = wait(&fo, &task).await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    let plain = fetch(&fo, &out, &key).await;
    assert_eq!(plain, b"DATA");
    let result = t.result.unwrap();
    assert_eq!(result.return_value, b"ok");
    assert_eq!(result.log, ["converting"]);

    let verified = verify_bundle(&result.receipt, None).unwrap();
    let expected = Expected {
        task_id: Some(task.clone()),
        function_id: Some(f.function_id.clone()),
        payload_sha256: Some(*Digest::of(&script).as_bytes()),
        output_slots: Some(result.outputs.iter().map(|o| o.slot.clone()).collect()),
        outputs: BTreeMap::from([("out".to_owned(), *Digest::of(&plain).as_bytes())]),
    };
    check_expected(&verified, &expected).unwrap();
    let tampered = Expected {
        outputs: BTreeMap::from([("out".to_owned(), *Digest::of(b"DATA!").as_bytes())]),
        ..expected
    };
    assert!(check_expected(&verified, &tampered).is_err());
    // The pool refills to its one warm instance; the used one is gone.
    live(&mock(&backend), 1, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runtime_and_failing_programs_fail_with_their_reason() {
    let (node, _backend) = libos_node(0, |_| {}).await;
    let fo = node.owner("fo").await;
    // An empty payload is refused at registration.
    assert_eq!(
        code(
            fo.register_function(libos_spec("empty", "native"), Vec::new())
                .await
                .unwrap_err()
        ),
        tonic::Code::InvalidArgument
    );
    // A runtime the node does not offer is refused at registration, naming what it
    // offers (before, it failed only after every participant had approved).
    let e = fo
        .register_function(libos_spec("py", "python3"), b"print(1)".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::InvalidArgument);
    assert!(
        e.to_string()
            .contains("runtime image \"python3\" is not offered by this node; it offers: [native]"),
        "{e}"
    );

    let failing = fo
        .register_function(
            libos_spec("failing", "native"),
            b"err no such column\nexit 3\n".to_vec(),
        )
        .await
        .unwrap();
    let (task, _, _) = approved_task(&failing.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    let t = wait(&fo, &task).await;
    assert_eq!(status(&t), TaskStatus::Failed);
    assert!(
        t.reason.contains("exit status 3") && t.reason.contains("no such column"),
        "{}",
        t.reason
    );

    let silent = fo
        .register_function(libos_spec("silent", "native"), b"log no output\n".to_vec())
        .await
        .unwrap();
    let (task, _, _) = approved_task(&silent.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    let t = wait(&fo, &task).await;
    assert_eq!(status(&t), TaskStatus::Failed);
    assert!(
        t.reason.contains("did not write output \"out\""),
        "{}",
        t.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_libos_task_takes_effect_within_a_second() {
    let (node, backend) = libos_node(0, |_| {}).await;
    let b = mock(&backend);
    let fo = node.owner("fo").await;
    let f = fo
        .register_function(libos_spec("hang", "native"), b"log up\nhang\n".to_vec())
        .await
        .unwrap();
    let (task, _, _) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    wait_for(&fo, &task, TaskStatus::Running).await;
    live(&b, 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    let t = fo.cancel_task(&task).await.unwrap();
    assert_eq!(status(&t), TaskStatus::Canceled);
    live(&b, 0, Duration::from_secs(1)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_and_instance_faults_fail_the_task_and_leave_nothing_behind() {
    let (node, backend) = libos_node(0, |c| c.task_deadline = Duration::from_millis(700)).await;
    let b = mock(&backend);
    let fo = node.owner("fo").await;
    let hang = fo
        .register_function(libos_spec("hang", "native"), b"hang\n".to_vec())
        .await
        .unwrap();
    let (task, _, _) = approved_task(&hang.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    let t = wait(&fo, &task).await;
    assert_eq!(status(&t), TaskStatus::Failed);
    assert!(t.reason.contains("deadline"), "{}", t.reason);
    live(&b, 0, Duration::from_secs(2)).await;

    let copy = fo
        .register_function(libos_spec("copy", "native"), b"copy in out\n".to_vec())
        .await
        .unwrap();
    for fault in [
        Fault::BadEvidence,
        Fault::GarbageFrame,
        Fault::TamperedReceipt,
    ] {
        b.push_fault(fault);
        let (task, _, _) = approved_task(&copy.function_id, &fo, "fo").await;
        fo.invoke_task(&task).await.unwrap();
        let t = wait(&fo, &task).await;
        assert_eq!(status(&t), TaskStatus::Failed, "{fault:?}");
        assert!(
            t.reason.contains("the executor failed"),
            "{fault:?}: {}",
            t.reason
        );
        live(&b, 0, Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_with_a_libos_file_runs_libos_functions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("libos.toml");
    std::fs::write(
        &config,
        "backend = \"mock\"\n[pool]\nwarm = 1\nmax = 2\n[[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
    )
    .unwrap();
    let node = TestNode::start_with(|c| c.libos_config = Some(config)).await;
    let fo = node.owner("fo").await;
    let f = fo
        .register_function(libos_spec("copy", "native"), b"copy in out\n".to_vec())
        .await
        .unwrap();
    let (task, out, key) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&task).await.unwrap();
    let t = wait(&fo, &task).await;
    assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
    assert_eq!(fetch(&fo, &out, &key).await, b"data");
    // The node wrote the policy that appraises its instances' receipts.
    let policy_file = node
        .config
        .node
        .data_dir
        .join(cella_server::LIBOS_DIR)
        .join(cella_server::LIBOS_POLICY_FILE);
    let policy = cella_libos::receipt::Policy::load(&policy_file).unwrap();
    let receipt = t.result.unwrap().receipt;
    assert!(verify_bundle(&receipt, Some(&policy)).unwrap().appraised);

    // A broken configuration stops the node from starting, naming the file's problem.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "backend = \"gramine\"\n").unwrap();
    let mut c = NodeConfig::new(dir.path().join("other"));
    c.libos_config = Some(bad);
    let err = default_executors(&c).err().unwrap();
    assert!(err.to_string().contains("libos"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_is_approved_with_the_task_and_reused_instances_say_so_in_receipts() {
    let (node, backend) = libos_node(0, |_| {}).await;
    let fo = node.owner("fo").await;
    // Reuse is for libos functions only, and spelled exactly.
    let builtin = proto::FunctionSpec {
        reuse: "same-function".into(),
        ..spec("b", "builtin", &["in"], &["out"])
    };
    let e = fo
        .register_function(builtin, b"echo".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("reuse"), "{e}");
    let typo = proto::FunctionSpec {
        reuse: "always".into(),
        ..libos_spec("u", "native")
    };
    assert_eq!(
        code(
            fo.register_function(typo, b"copy in out\n".to_vec())
                .await
                .unwrap_err()
        ),
        tonic::Code::InvalidArgument
    );

    let reusing = proto::FunctionSpec {
        reuse: "same-function".into(),
        ..libos_spec("upper", "native")
    };
    let f = fo
        .register_function(reusing.clone(), b"upper in out\n".to_vec())
        .await
        .unwrap();
    let mut run_indices = Vec::new();
    for _ in 0..2 {
        let (task, _out, _key) = approved_task(&f.function_id, &fo, "fo").await;
        let t = fo.get_task(&task).await.unwrap();
        assert_eq!(t.function_reuse, "same-function");
        assert_eq!(
            cella_client::compute_task_digest(&t).unwrap(),
            t.task_digest
        );
        fo.invoke_task(&task).await.unwrap();
        let t = wait(&fo, &task).await;
        assert_eq!(status(&t), TaskStatus::Finished, "{}", t.reason);
        let receipt = verify_bundle(&t.result.unwrap().receipt, None).unwrap();
        run_indices.push(receipt.body.run_index);
        // The instance is parked again before the next task takes it.
        let until = Instant::now() + Duration::from_secs(5);
        while mock(&backend).live_instances() != 1 {
            assert!(Instant::now() < until);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(run_indices, [1, 2]);
    assert_eq!(mock(&backend).launched(), 1);

    // Turning reuse off changes the digest: approvals given before no longer count.
    let (task, _out, _key) = approved_task(&f.function_id, &fo, "fo").await;
    let before = fo.get_task(&task).await.unwrap().task_digest;
    let single = proto::FunctionSpec {
        reuse: "never".into(),
        ..reusing
    };
    fo.update_function(&f.function_id, single, None)
        .await
        .unwrap();
    let after = fo.get_task(&task).await.unwrap();
    assert_ne!(after.task_digest, before);
    assert_eq!(after.function_reuse, "never");
    assert_eq!(
        code(fo.invoke_task(&task).await.unwrap_err()),
        tonic::Code::FailedPrecondition
    );
}
