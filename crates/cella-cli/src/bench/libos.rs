//! The LibOS executor's figures for `cella bench`: the dispatch overhead of a task on a
//! warm pooled mock instance, and the cold start of any backend's instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cella_executor::{IoLimits, StagedTask, TaskIo};
use cella_libos::{
    ExecutorAttestation, ExecutorConfig, LibosBackend, LibosExecutor, PoolConfig, RuntimeImage,
};
use cella_types::ExecutorKind;

/// The workload of each sample: copy a 64-byte input to the output, one log line.
const SCRIPT: &[u8] = b"log bench\ncopy in out\n";

/// How long one sample may wait for the pool to have a warm instance.
const WARM_WAIT: Duration = Duration::from_secs(10);

/// Runs `samples` tasks, each on a warm instance of a mock pool (warm = 1), and returns
/// for each the time from `execute` to its verified `Finished`, minus the workload's own
/// run time as the instance measured it: deploy, start, output collection, receipt
/// signing and verification, over RA-TLS on a Unix socket. Waiting for the pool to refill
/// between samples is not counted. Needs a tokio runtime (multi-threaded or not).
///
/// # Errors
///
/// If the executor cannot be set up, a sample's task fails, or the pool does not refill
/// within 10 s.
pub(crate) async fn dispatch_overhead(samples: usize) -> anyhow::Result<Vec<Duration>> {
    let (executor, _backend) = cella_libos::mock::executor(
        vec![RuntimeImage::native()],
        ExecutorConfig {
            pool: PoolConfig { warm: 1, max: 2 },
            ..ExecutorConfig::default()
        },
    )?;
    let payload: Arc<[u8]> = Arc::from(SCRIPT);
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let warm_by = tokio::time::Instant::now() + WARM_WAIT;
        while executor.pool_stats("native").is_none_or(|s| s.idle == 0) {
            if tokio::time::Instant::now() > warm_by {
                bail!("the pool did not refill within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let task = StagedTask::new(
            "bench",
            ExecutorKind::Libos,
            Arc::clone(&payload),
            Duration::from_secs(10),
        )
        .with_runtime("native");
        let mut io = TaskIo::new(
            BTreeMap::from([("in".to_owned(), vec![7u8; 64])]),
            ["out".to_owned()],
            IoLimits::default(),
        );
        let started = Instant::now();
        let (_, workload_us) = executor
            .execute_measured(&task, &mut io)
            .await
            .context("bench task failed")?;
        let total = started.elapsed();
        out.push(total.saturating_sub(Duration::from_micros(workload_us)));
    }
    Ok(out)
}

/// Launches `samples` instances of `image` on `backend`, one after the other, and returns
/// for each the cold-start time: from the launch to an attested instance ready for
/// `Deploy` (start, evidence, RA-TLS handshake both ways, `Hello`). Each instance is
/// killed right after it is measured. Needs a tokio runtime.
///
/// # Errors
///
/// If the image cannot be measured or a launch fails.
pub(crate) async fn cold_start(
    backend: Arc<dyn LibosBackend>,
    image: RuntimeImage,
    attestation: ExecutorAttestation,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let runtime = image.name.clone();
    let executor = LibosExecutor::new(
        backend,
        vec![image],
        attestation,
        ExecutorConfig {
            pool: PoolConfig { warm: 0, max: 1 },
            ..ExecutorConfig::default()
        },
    )?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let instance = executor
            .launch_unpooled(&runtime)
            .await
            .context("cold start")?;
        out.push(started.elapsed());
        instance.kill().await;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_measures_overheads() {
        let mut samples = dispatch_overhead(5).await.unwrap();
        assert_eq!(samples.len(), 5);
        samples.sort();
        let p50 = crate::bench::percentile(&samples, 0.5);
        assert!(p50 > 0.0 && p50 < 1000.0, "{p50} ms");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cold_start_launches_attested_instances_and_kills_them() {
        let attestation = ExecutorAttestation::simulated(
            Arc::new(cella_attest::sim::SimSigner::generate().unwrap()),
            cella_attest::Measurement::sha256(b"bench test executor"),
        );
        let mock = Arc::new(cella_libos::mock::MockBackend::new(&attestation));
        let samples = cold_start(
            Arc::clone(&mock) as Arc<dyn LibosBackend>,
            RuntimeImage::native(),
            attestation,
            3,
        )
        .await
        .unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(mock.launched(), 3);
        assert_eq!(mock.live_instances(), 0);
    }
}
