//! Dispatch overhead of a LibOS task on a warm pooled mock instance, for `cella bench`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cella_executor::{IoLimits, StagedTask, TaskIo};
use cella_types::ExecutorKind;

use crate::executor::{ExecutorConfig, SetupError};
use crate::image::RuntimeImage;
use crate::pool::PoolConfig;

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
/// [`SetupError`] if the executor cannot be set up, a sample's task fails, or the pool
/// does not refill within 10 s.
pub async fn dispatch_overhead(samples: usize) -> Result<Vec<Duration>, SetupError> {
    let (executor, _backend) = crate::mock::executor(
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
                return Err(SetupError("the pool did not refill within 10 s".into()));
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
        let started = std::time::Instant::now();
        let (_, workload_us) = executor
            .execute_measured(&task, &mut io)
            .await
            .map_err(|e| SetupError(format!("bench task failed: {e}")))?;
        let total = started.elapsed();
        out.push(total.saturating_sub(Duration::from_micros(workload_us)));
    }
    Ok(out)
}

/// The `p`-th percentile (0–100) of `samples`, nearest rank; zero for no samples.
pub fn percentile(samples: &[Duration], p: u32) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * usize::try_from(p.min(100)).unwrap_or(100)).div_ceil(100);
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// Launches `samples` instances of `image` on `backend`, one after the other, and returns
/// for each the cold-start time: from the launch to an attested instance ready for
/// `Deploy` (start, evidence, RA-TLS handshake both ways, `Hello`). Each instance is
/// killed right after it is measured. Needs a tokio runtime.
///
/// # Errors
///
/// [`SetupError`] if the image cannot be measured or a launch fails.
pub async fn cold_start(
    backend: Arc<dyn crate::backend::LibosBackend>,
    image: RuntimeImage,
    attestation: crate::attest::ExecutorAttestation,
    samples: usize,
) -> Result<Vec<Duration>, SetupError> {
    let expected = backend
        .measure(&image)
        .map_err(|e| SetupError(e.to_string()))?;
    let attestation = Arc::new(attestation);
    let verifier = attestation
        .instance_verifier(expected)
        .map_err(|e| SetupError(e.to_string()))?;
    let socket_dir = tempfile::Builder::new()
        .prefix("cella-libos-bench-")
        .tempdir()
        .map_err(|e| SetupError(format!("socket directory: {e}")))?;
    let ctx = crate::launch::LaunchCtx {
        backend,
        image: Arc::new(image),
        attestation,
        expected,
        verifier,
        timeouts: crate::launch::Timeouts::default(),
        limits: crate::backend::InstanceLimits::default(),
        socket_dir: Arc::new(socket_dir),
    };
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = std::time::Instant::now();
        let ready = ctx
            .launch()
            .await
            .map_err(|e| SetupError(format!("cold start: {e}")))?;
        out.push(started.elapsed());
        let mut guard = ready.guard;
        guard.kill_group();
        guard.wait().await;
    }
    Ok(out)
}
