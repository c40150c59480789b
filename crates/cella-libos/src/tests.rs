//! The executor driven directly, on the mock backend: every lifecycle path and every
//! scripted fault ends in the right error with a reason, and leaves no instance behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cella_executor::receipt::LibosReceipt;
use cella_executor::{
    ExecutionError, ExecutionOutcome, Executor, IoError, IoLimits, StagedTask, TaskIo,
};
use cella_preload::receipt::{ReceiptBody, sha256};
use cella_types::{ExecutorKind, InstanceReuse, TaskId};
use prost::Message;

use crate::mock::{Fault, MockBackend};
use crate::receipt::{Expected, ReceiptError, check_expected, verify_bundle};
use crate::{ExecutorConfig, LibosExecutor, PoolConfig, RuntimeImage, Timeouts};

/// Short timeouts, so that the hang faults end quickly.
const TIMEOUTS: Timeouts = Timeouts {
    attest: Duration::from_secs(5),
    started: Duration::from_millis(500),
    cancel_grace: Duration::from_millis(200),
    max_idle: Duration::from_secs(60),
};

fn executor(warm: usize, max: usize) -> (Arc<LibosExecutor>, Arc<MockBackend>) {
    let (e, b) = crate::mock::executor(
        vec![RuntimeImage::native()],
        ExecutorConfig {
            pool: PoolConfig { warm, max },
            timeouts: TIMEOUTS,
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    (Arc::new(e), b)
}

fn task(script: &str, deadline: Duration) -> StagedTask {
    StagedTask::new("t", ExecutorKind::Libos, script.as_bytes(), deadline)
        .with_runtime("native")
        .with_arguments([("message", "hi there")])
}

fn io(limit: u64) -> TaskIo {
    TaskIo::new(
        BTreeMap::from([("in".to_owned(), b"some data".to_vec())]),
        ["out".to_owned()],
        IoLimits::per_slot(limit),
    )
}

/// Waits until the backend has exactly `live` instances (the pool's idle ones), for at
/// most two seconds: the leak check after every test.
async fn settle(backend: &MockBackend, live: usize) {
    let until = Instant::now() + Duration::from_secs(2);
    while backend.live_instances() != live {
        assert!(
            Instant::now() < until,
            "{} live instances, expected {live}",
            backend.live_instances()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(
    script: &str,
    fault: Option<Fault>,
) -> (Result<ExecutionOutcome, ExecutionError>, TaskIo) {
    run_with(script, fault, Duration::from_secs(10), 1 << 20).await
}

async fn run_with(
    script: &str,
    fault: Option<Fault>,
    deadline: Duration,
    limit: u64,
) -> (Result<ExecutionOutcome, ExecutionError>, TaskIo) {
    let (e, b) = executor(0, 2);
    if let Some(f) = fault {
        b.push_fault(f);
    }
    let t = task(script, deadline);
    let mut io = io(limit);
    let r = e.execute(&t, &mut io).await;
    drop(e);
    settle(&b, 0).await;
    (r, io)
}

/// The node's fault: an internal error, or no instance (a launch or its attestation
/// failed), whose summary must not carry the details.
fn internal(r: &Result<ExecutionOutcome, ExecutionError>) -> String {
    match r {
        Err(e @ ExecutionError::Internal { message }) => {
            assert!(e.is_platform_fault());
            message.clone()
        }
        Err(e @ ExecutionError::Unavailable { summary, message }) => {
            assert!(e.is_platform_fault());
            assert!(summary.contains("could not start an instance"), "{summary}");
            assert!(!summary.contains(message.as_str()), "{summary}");
            message.clone()
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
}

fn function(r: &Result<ExecutionOutcome, ExecutionError>) -> String {
    match r {
        Err(ExecutionError::Function { message }) => message.clone(),
        other => panic!("expected a function error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_task_and_its_receipt_verifies() {
    let script = "log hello\nerr to stderr\nupper in out\nreturn done\n";
    let (e, b) = executor(0, 2);
    let t = task(script, Duration::from_secs(10));
    let mut io = io(1 << 20);
    let out = e.execute(&t, &mut io).await.unwrap();
    assert_eq!(io.output("out"), Some(&b"SOME DATA"[..]));
    assert_eq!(out.return_value, b"done");
    assert_eq!(out.log, ["hello", "to stderr"]);
    assert_eq!(out.usage.input_bytes, 9);
    assert_eq!(out.usage.output_bytes, 9);

    let verified = verify_bundle(&out.receipt, None).unwrap();
    assert!(!verified.appraised);
    // The policy the executor writes for verifiers appraises it.
    let policy = cella_attest::Policy::from_toml_str(&e.instance_policy()).unwrap();
    assert!(
        verify_bundle(&out.receipt, Some(&policy))
            .unwrap()
            .appraised
    );
    let body = &verified.body;
    assert_eq!(body.task_id, t.task_id.to_string());
    assert_eq!(body.function_id, t.function_id.to_string());
    assert_eq!(body.inputs[0].sha256, sha256(b"some data"));
    assert_eq!(body.outputs[0].sha256, sha256(b"SOME DATA"));
    assert_eq!(body.exit.unwrap().code, Some(0));
    assert_eq!(verified.measurement, b.measure_native());
    let expected = Expected {
        task_id: Some(t.task_id.to_string()),
        function_id: Some(t.function_id.to_string()),
        payload_sha256: Some(*t.payload_digest.as_bytes()),
        output_slots: Some(vec!["out".into()]),
        outputs: BTreeMap::from([("out".to_owned(), sha256(b"SOME DATA"))]),
    };
    check_expected(&verified, &expected).unwrap();
    for wrong in [
        Expected {
            task_id: Some(TaskId::new().to_string()),
            ..Expected::default()
        },
        Expected {
            payload_sha256: Some([0; 32]),
            ..Expected::default()
        },
        Expected {
            output_slots: Some(vec!["other".into()]),
            ..Expected::default()
        },
        Expected {
            outputs: BTreeMap::from([("out".to_owned(), sha256(b"some data"))]),
            ..Expected::default()
        },
    ] {
        assert!(matches!(
            check_expected(&verified, &wrong),
            Err(ReceiptError::Mismatch(_))
        ));
    }
    drop(e);
    settle(&b, 0).await;
}

impl MockBackend {
    fn measure_native(&self) -> cella_attest::Measurement {
        crate::LibosBackend::measure(self, &RuntimeImage::native()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_program() {
    let (r, io) = run("arg message out\n", None).await;
    r.unwrap();
    assert_eq!(io.output("out"), Some(&b"hi there"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_file_and_the_command_line_carry_the_arguments() {
    let (r, io) = run("task out\n", None).await;
    r.unwrap();
    assert_eq!(
        io.output("out").unwrap(),
        b"{\"function\":\"t\",\"arguments\":{\"message\":\"hi there\"},\
          \"inputs\":[\"in\"],\"outputs\":[\"out\"]}\n"
    );
    let (r, io) = run("argv out\n", None).await;
    r.unwrap();
    let argv = String::from_utf8(io.output("out").unwrap().to_vec()).unwrap();
    assert_eq!(argv, "./program\n--message=hi there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_program_fails_its_task_with_its_status_and_last_line() {
    let (r, _) = run("err boom\nexit 3\n", None).await;
    let m = function(&r);
    assert!(m.contains("exit status 3") && m.contains("boom"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_output_fails_the_task_naming_the_slot() {
    let (r, _) = run("log nothing written\n", None).await;
    let m = function(&r);
    assert!(m.contains("did not write output \"out\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_its_limit_fails_the_task() {
    let (r, _) = run_with("fill out 2000\n", None, Duration::from_secs(10), 1000).await;
    let m = function(&r);
    assert!(m.contains("\"out\"") && m.contains("limit of 1000"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_program_hits_the_deadline_and_is_stopped() {
    let started = Instant::now();
    let (r, _) = run_with("hang\n", None, Duration::from_millis(300), 1 << 20).await;
    assert!(
        matches!(r, Err(ExecutionError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_log_flood_is_bounded_and_stopped_at_the_deadline() {
    let (r, _) = run_with(
        "flood 1000000 1\n",
        None,
        Duration::from_millis(500),
        1 << 20,
    )
    .await;
    assert!(
        matches!(r, Err(ExecutionError::DeadlineExceeded { .. })),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_log_flood_is_rate_limited_and_the_log_bounded() {
    let (r, _) = run("flood 100000 0\nwrite out ok\n", None).await;
    let out = r.unwrap();
    assert!(
        out.log.len() <= cella_executor::MAX_LOG_LINES + 2,
        "{}",
        out.log.len()
    );
    assert!(
        out.log.last().unwrap().contains("dropped"),
        "{:?}",
        out.log.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runtime_is_refused_with_the_offered_ones() {
    let (e, b) = executor(0, 1);
    let mut t = task("log x\n", Duration::from_secs(1));
    t.runtime = Some("python3".into());
    let r = e.execute(&t, &mut io(10)).await;
    let m = function(&r);
    assert!(m.contains("\"python3\"") && m.contains("[native]"), "{m}");
    assert_eq!(b.launched(), 0);
    assert!(e.validate_payload(b"").is_err());
    assert!(e.validate_payload(b"x").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_task_kills_its_instance_within_a_second() {
    let (e, b) = executor(0, 2);
    let exec = Arc::clone(&e);
    let job = tokio::spawn(async move {
        let t = task("log started\nhang\n", Duration::from_secs(60));
        let mut io = io(10);
        exec.execute(&t, &mut io).await
    });
    while b.live_instances() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let canceled = Instant::now();
    job.abort();
    settle(&b, 0).await;
    assert!(
        canceled.elapsed() < Duration::from_secs(1),
        "{:?}",
        canceled.elapsed()
    );
}

async fn launch_fault(fault: Fault) -> String {
    let (r, _) = run("write out x\n", Some(fault)).await;
    internal(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_before_attestation_fail_the_launch_with_the_reason() {
    let m = launch_fault(Fault::CrashBeforeAttestation).await;
    assert!(m.contains("exited with status 1 before attesting"), "{m}");
    let m = launch_fault(Fault::BadEvidence).await;
    assert!(
        m.contains("attestation was refused") && m.contains("not a trusted simulation key"),
        "{m}"
    );
    let m = launch_fault(Fault::WrongMeasurement).await;
    assert!(
        m.contains("attestation was refused") && m.contains("measurement"),
        "{m}"
    );
    let m = launch_fault(Fault::StaleNonce).await;
    assert!(
        m.contains("attestation was refused") && m.contains("nonce"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_refusals_are_counted_by_reason() {
    let (e, b) = executor(0, 2);
    let faults = [
        Fault::BadEvidence,
        Fault::WrongMeasurement,
        Fault::StaleNonce,
        Fault::CrashBeforeAttestation,
    ];
    for fault in faults {
        b.push_fault(fault);
        let mut io = io(1 << 20);
        let r = e
            .execute(&task("write out x\n", Duration::from_secs(10)), &mut io)
            .await;
        internal(&r);
    }
    let stats = e.pool_stats("native").unwrap();
    assert_eq!(stats.launch_failures, 4, "{stats:?}");
    // A crash before attesting is a failed launch, not a refusal.
    let refusals: Vec<_> = stats.attestation_refusals.into_iter().collect();
    assert_eq!(
        refusals,
        [("freshness", 1), ("policy", 1), ("simulation_key", 1)]
    );
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_never_starts_the_program_is_given_up() {
    let started = Instant::now();
    let m = launch_fault(Fault::HangBeforeDeploy).await;
    assert!(m.contains("did not start the program within"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_ignores_cancel_is_killed_after_the_grace() {
    let started = Instant::now();
    let (e, b) = executor(0, 2);
    b.push_fault(Fault::HangAfterDeploy);
    let r = e
        .execute(
            &task("write out x\n", Duration::from_millis(300)),
            &mut io(10),
        )
        .await;
    assert!(
        matches!(r, Err(ExecutionError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert!(
        started.elapsed()
            < Duration::from_millis(300) + TIMEOUTS.cancel_grace + Duration::from_millis(500)
    );
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_channel_and_fail_the_task() {
    let m = launch_fault(Fault::GarbageFrame).await;
    assert!(m.contains("malformed frame"), "{m}");
    let m = launch_fault(Fault::OversizedFrame).await;
    assert!(m.contains("over the limit of 1048576 bytes"), "{m}");
    let m = launch_fault(Fault::LogFlood).await;
    assert!(m.contains("log over"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_finishes_are_refused() {
    let m = launch_fault(Fault::PartialOutputs).await;
    assert!(
        m.contains("Finished lists 0 outputs, 1 were declared"),
        "{m}"
    );
    let m = launch_fault(Fault::TamperedReceipt).await;
    assert!(m.contains("signature does not verify"), "{m}");
    let (r, _) = run_with(
        "write out x\n",
        Some(Fault::OutputOverLimit),
        Duration::from_secs(10),
        1000,
    )
    .await;
    assert!(
        matches!(&r, Err(ExecutionError::Io(IoError::OutputTooLarge { slot, limit: 1000, .. })) if slot == "out"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_dying_mid_run_fails_the_task() {
    let (r, _) = run("write out x\n", Some(Fault::CrashAfterStarted)).await;
    let m = function(&r);
    assert!(
        m.contains("stopped while the program ran") && m.contains("137"),
        "{m}"
    );
}

async fn idle(e: &LibosExecutor, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while e.pool_stats("native").unwrap().idle != n {
        assert!(Instant::now() < until, "{:?}", e.pool_stats("native"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_n_refills_after_n_tasks() {
    let n = 3;
    let (e, b) = executor(n, 2 * n);
    idle(&e, n).await;
    assert_eq!(b.launched(), 3);
    for i in 0..n {
        let mut io = io(100);
        e.execute(&task("copy in out\n", Duration::from_secs(10)), &mut io)
            .await
            .unwrap_or_else(|err| panic!("task {i}: {err}"));
    }
    idle(&e, n).await;
    let stats = e.pool_stats("native").unwrap();
    assert_eq!(b.launched(), 2 * n as u64, "{stats:?}");
    assert_eq!(stats.launch_failures, 0);
    settle(&b, n).await;
    drop(e);
    settle(&b, 0).await;
}

fn run_index(outcome: &ExecutionOutcome) -> u32 {
    let bundle = LibosReceipt::decode(&outcome.receipt[..]).unwrap();
    ReceiptBody::decode(&bundle.body[..]).unwrap().run_index
}

/// Waits until `n` instances have been parked for reuse.
async fn reused(e: &LibosExecutor, n: u64) {
    let until = Instant::now() + Duration::from_secs(5);
    while e.pool_stats("native").unwrap().reused != n {
        assert!(Instant::now() < until, "{:?}", e.pool_stats("native"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_function_reuse_serves_the_function_again_with_scratch_wiped() {
    let (e, b) = executor(0, 2);
    let script = "kept secret out\nkeep secret\n";
    let mut t = task(script, Duration::from_secs(10));
    t.reuse = InstanceReuse::SameFunction;
    let mut first = io(100);
    let o1 = e.execute(&t, &mut first).await.unwrap();
    assert_eq!(first.output("out"), Some(&b"absent"[..]));
    assert_eq!(run_index(&o1), 1);
    reused(&e, 1).await;
    assert_eq!(b.launched(), 1);

    // The same function again: the same instance, its scratch wiped, and the receipt
    // says it is the instance's second run.
    t.task_id = TaskId::new();
    let mut second = io(100);
    let o2 = e.execute(&t, &mut second).await.unwrap();
    assert_eq!(
        second.output("out"),
        Some(&b"absent"[..]),
        "scratch survived a Reset"
    );
    assert_eq!(run_index(&o2), 2);
    assert_eq!(b.launched(), 1);
    reused(&e, 2).await;

    // Another function never takes it, nor does the same function with another payload;
    // at the cap (2), the parked instance gives up its permit to their launches.
    let mut other = task(script, Duration::from_secs(10));
    other.reuse = InstanceReuse::SameFunction;
    let o3 = e.execute(&other, &mut io(100)).await.unwrap();
    assert_eq!(run_index(&o3), 1);
    let mut changed = task("write out 1\n", Duration::from_secs(10));
    changed.function_id = t.function_id;
    changed.reuse = InstanceReuse::SameFunction;
    let o4 = e.execute(&changed, &mut io(100)).await.unwrap();
    assert_eq!(run_index(&o4), 1);
    assert_eq!(b.launched(), 3);
    // The evicted instance is killed and reaped in the background: within the cap once
    // it is gone.
    let until = Instant::now() + Duration::from_secs(2);
    while b.live_instances() > 2 {
        assert!(Instant::now() < until, "{} live", b.live_instances());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_functions_never_get_a_reused_instance() {
    let (e, b) = executor(0, 2);
    let mut t = task("kept secret out\nkeep secret\n", Duration::from_secs(10));
    t.reuse = InstanceReuse::SameFunction;
    e.execute(&t, &mut io(100)).await.unwrap();
    reused(&e, 1).await;
    // Same function id, but this task's function is single-use (its digest said so).
    t.reuse = InstanceReuse::Never;
    t.task_id = TaskId::new();
    let o = e.execute(&t, &mut io(100)).await.unwrap();
    assert_eq!(run_index(&o), 1);
    assert_eq!(b.launched(), 2);
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_program_is_reset_too_and_a_crashed_instance_is_not_reused() {
    let (e, b) = executor(0, 2);
    let mut t = task(
        "keep secret\nerr it broke\nexit 3\n",
        Duration::from_secs(10),
    );
    t.reuse = InstanceReuse::SameFunction;
    let m = function(&e.execute(&t, &mut io(100)).await);
    assert!(m.contains("status 3") && m.contains("it broke"), "{m}");
    reused(&e, 1).await;
    // An instance that dies mid-run is not parked again.
    let mut crash = task("write out 1\n", Duration::from_secs(10));
    crash.reuse = InstanceReuse::SameFunction;
    b.push_fault(Fault::CrashAfterStarted);
    let m = function(&e.execute(&crash, &mut io(100)).await);
    assert!(m.contains("stopped while the program ran"), "{m}");
    // The crashed instance is gone, the parked one waits: once that is settled, the
    // parked one is still the only one ever parked, and the function's next task takes it
    // (its second run).
    settle(&b, 1).await;
    assert_eq!(e.pool_stats("native").unwrap().reused, 1);
    t.task_id = TaskId::new();
    let again = function(&e.execute(&t, &mut io(100)).await);
    assert!(again.contains("status 3"), "{again}");
    assert_eq!(
        b.launched(),
        2,
        "the crash's launch and the first, nothing more"
    );
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_bounds_instances_and_waiters_get_one_when_it_frees() {
    let (e, b) = executor(0, 1);
    let first = {
        let e = Arc::clone(&e);
        tokio::spawn(async move {
            e.execute(
                &task("sleep 200\nwrite out 1\n", Duration::from_secs(10)),
                &mut io(10),
            )
            .await
        })
    };
    while b.live_instances() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = e
        .execute(&task("write out 2\n", Duration::from_secs(10)), &mut io(10))
        .await;
    second.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(b.launched(), 2);
    drop(e);
    settle(&b, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_die_idle_are_evicted_and_replaced() {
    // A pool whose first warm instance dies while idle.
    let (e, b2) = executor_with_first_fault(Fault::ExitWhileIdle);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = e.pool_stats("native").unwrap();
        if s.evicted >= 1 && s.idle == 1 {
            break;
        }
        assert!(Instant::now() < until, "{s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    e.execute(
        &task("write out ok\n", Duration::from_secs(10)),
        &mut io(10),
    )
    .await
    .unwrap();
    drop(e);
    settle(&b2, 0).await;
}

/// An executor keeping one warm instance, whose first launch gets `fault` (pushed before
/// the pool starts launching).
fn executor_with_first_fault(fault: Fault) -> (Arc<LibosExecutor>, Arc<MockBackend>) {
    use cella_attest::sim::SimSigner;
    let attestation = crate::ExecutorAttestation::simulated(
        Arc::new(SimSigner::generate().unwrap()),
        cella_attest::Measurement::sha256(b"test executor"),
    );
    let backend = Arc::new(MockBackend::new(&attestation));
    backend.push_fault(fault);
    let e = LibosExecutor::new(
        Arc::clone(&backend) as Arc<dyn crate::LibosBackend>,
        vec![RuntimeImage::native()],
        attestation,
        ExecutorConfig {
            pool: PoolConfig { warm: 1, max: 2 },
            timeouts: TIMEOUTS,
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    (Arc::new(e), backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_with_any_field_altered_fails_verification() {
    let (r, _) = run("upper in out\nreturn rv\n", None).await;
    let receipt = r.unwrap().receipt;
    let original = verify_bundle(&receipt, None).unwrap();
    let bundle = LibosReceipt::decode(&receipt[..]).unwrap();
    let body = ReceiptBody::decode(&bundle.body[..]).unwrap();

    // Every field of the body, altered and re-encoded under the original signature.
    type Alteration = Box<dyn Fn(&mut ReceiptBody)>;
    let alterations: Vec<Alteration> = vec![
        Box::new(|b| b.format.push('x')),
        Box::new(|b| b.task_id.push('x')),
        Box::new(|b| b.function_id.push('x')),
        Box::new(|b| b.measurement[0] ^= 1),
        Box::new(|b| b.nonce[0] ^= 1),
        Box::new(|b| b.workload[0].sha256[0] ^= 1),
        Box::new(|b| b.workload[0].name.push('x')),
        Box::new(|b| b.inputs[0].sha256[0] ^= 1),
        Box::new(|b| b.inputs.clear()),
        Box::new(|b| b.outputs[0].sha256[0] ^= 1),
        Box::new(|b| b.outputs[0].name.push('x')),
        Box::new(|b| {
            b.exit = Some(cella_preload::protocol::ExitStatus {
                code: Some(1),
                signal: None,
            })
        }),
        Box::new(|b| b.return_value_sha256[0] ^= 1),
        Box::new(|b| b.command_sha256[0] ^= 1),
        Box::new(|b| b.signed_at_unix_secs += 1),
    ];
    for (i, alter) in alterations.iter().enumerate() {
        let mut altered = body.clone();
        alter(&mut altered);
        let forged = LibosReceipt {
            body: altered.encode_to_vec(),
            ..bundle.clone()
        }
        .encode_to_vec();
        assert_eq!(
            verify_bundle(&forged, None),
            Err(ReceiptError::Signature),
            "alteration {i}"
        );
    }

    // Every single bit flip of the encoded bundle: refused, except inside the certificate
    // outside its key and evidence (validity, serial, its own signature), which the chain
    // does not rely on, and then the verified content is unchanged.
    let cert_at = receipt
        .windows(bundle.instance_cert.len())
        .position(|w| w == bundle.instance_cert)
        .unwrap();
    let cert_range = cert_at..cert_at + bundle.instance_cert.len();
    let mut tolerated = 0;
    for i in 0..receipt.len() {
        let mut flipped = receipt.clone();
        flipped[i] ^= 0x01;
        if let Ok(v) = verify_bundle(&flipped, None) {
            assert!(
                cert_range.contains(&i),
                "flip at {i} outside the certificate verified"
            );
            assert_eq!(v, original, "flip at {i} changed what verified");
            tolerated += 1;
        }
    }
    assert!(tolerated < bundle.instance_cert.len() / 2, "{tolerated}");

    // A receipt verified against a policy that does not trust its simulation key fails.
    let stranger = cella_attest::sim::SimSigner::generate().unwrap();
    let policy = cella_attest::Policy::from_toml_str(&format!(
        "version = 1\n[roles.\"libos-instance\"]\nmax_evidence_age_secs = 600\nallow_simulation = true\n\
         trusted_sim_keys = [\"{}\"]\nsim_measurements = [\"{}\"]\n",
        stranger.public_key(),
        original.measurement
    ))
    .unwrap();
    assert!(matches!(
        verify_bundle(&receipt, Some(&policy)),
        Err(ReceiptError::Evidence(_))
    ));
    let trusted = cella_attest::Policy::from_toml_str(&format!(
        "version = 1\n[roles.\"libos-instance\"]\nmax_evidence_age_secs = 600\nallow_simulation = true\n\
         trusted_sim_keys = [\"{}\"]\nsim_measurements = [\"{}\"]\n",
        original.sim_signer.unwrap(),
        original.measurement
    ))
    .unwrap();
    assert!(verify_bundle(&receipt, Some(&trusted)).unwrap().appraised);
}

#[test]
fn the_protocol_log_line_limit_is_the_executors() {
    assert_eq!(
        cella_preload::protocol::MAX_LOG_LINE_BYTES,
        cella_executor::MAX_LOG_LINE_BYTES
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_are_renewed_after_max_idle() {
    let (e, b) = crate::mock::executor(
        vec![RuntimeImage::native()],
        ExecutorConfig {
            pool: PoolConfig { warm: 1, max: 2 },
            timeouts: Timeouts {
                max_idle: Duration::from_millis(100),
                ..TIMEOUTS
            },
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = e.pool_stats("native").unwrap();
        if s.renewed >= 2 && s.idle == 1 {
            assert_eq!(s.evicted, 0);
            break;
        }
        assert!(Instant::now() < until, "{s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(e);
    settle(&b, 0).await;
}
