//! Figures of the sandbox backend for `cella bench`, each beside a baseline measured in
//! the same run:
//!
//! - **cold instance start** (launch → attested → ready for `Deploy`) beside
//!   `bwrap --unshare-all --ro-bind / / /bin/true`, when `bwrap` is installed;
//! - **a Python hello-world task** through the LibOS executor, on a cold instance (pool
//!   empty) and from the warm pool, beside `python3 hello.py` run directly;
//! - **host memory per idle pooled instance**: the PSS of every process of the idle
//!   instances (`/proc/<pid>/smaps_rollup`), divided by their number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cella_attest::Measurement;
use cella_attest::sim::SimSigner;
use cella_executor::{Executor, IoLimits, StagedTask, TaskIo};
use cella_libos::config::SandboxSection;
use cella_libos::process::descendants;
use cella_libos::{ExecutorAttestation, ExecutorConfig, LibosBackend, LibosExecutor, PoolConfig};
use cella_types::ExecutorKind;

use cella_sandbox::backend::{ImageRoot, SandboxBackend, SandboxConfig};

/// The hello-world task: read an input, print, write an output.
const HELLO_PY: &str = r#"import os, sys
name = open(os.path.join(os.environ["CELLA_INPUT_DIR"], "in")).read()
print("hello", name)
with open(os.path.join(os.environ["CELLA_OUTPUT_DIR"], "out"), "w") as f:
    f.write("hello " + name)
"#;

/// The same program as run directly (input and output in the working directory).
const HELLO_DIRECT_PY: &str = r#"import os, sys
name = open("in").read()
print("hello", name)
with open("out", "w") as f:
    f.write("hello " + name)
"#;

/// What to measure with.
#[derive(Debug, Clone)]
pub(crate) struct BenchConfig {
    /// The `cella` binary (jailer and pre-load module).
    pub(crate) exe: PathBuf,
    /// The Python interpreter the image is built from (and the direct baseline runs).
    pub(crate) python: PathBuf,
    /// Samples of each timed figure.
    pub(crate) samples: usize,
    /// Idle instances kept for the memory figure.
    pub(crate) idle_instances: usize,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct BenchReport {
    /// Cold instance starts.
    pub(crate) cold_start: Vec<Duration>,
    /// Cold starts of the in-process mock backend: the same launch and mutual attestation
    /// without a jail or a process, i.e. what attestation alone costs.
    pub(crate) mock_cold_start: Vec<Duration>,
    /// `bwrap --unshare-all --ro-bind / / /bin/true`; `None` when bwrap is not installed.
    pub(crate) bwrap: Option<Vec<Duration>>,
    /// The hello-world task on a cold instance (pool empty), end to end through the
    /// executor.
    pub(crate) task_cold: Vec<Duration>,
    /// The hello-world task on a warm pooled instance.
    pub(crate) task_warm: Vec<Duration>,
    /// `python3 hello.py` run directly.
    pub(crate) python_direct: Vec<Duration>,
    /// PSS per idle pooled instance, bytes; `None` if it could not be read.
    pub(crate) idle_pss_bytes: Option<u64>,
    /// Idle instances the memory figure was taken over.
    pub(crate) idle_instances: usize,
    /// The PSS of each process of the idle instances, by process name (bytes, summed
    /// over the instances, divided by their number): where the memory goes.
    pub(crate) idle_pss_by_process: BTreeMap<String, u64>,
}

/// A benchmark step failed.
#[derive(Debug, thiserror::Error)]
#[error("sandbox benchmark: {0}")]
pub(crate) struct BenchError(pub(crate) String);

fn err(e: impl std::fmt::Display) -> BenchError {
    // `{:#}`: an `anyhow` error of the LibOS figures shows its whole chain.
    BenchError(format!("{e:#}"))
}

/// The median of `samples` (zero for none).
pub(crate) fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

struct Setup {
    _dir: tempfile::TempDir,
    backend: Arc<SandboxBackend>,
    image: cella_libos::RuntimeImage,
    attestation: ExecutorAttestation,
}

async fn setup(cfg: &BenchConfig) -> Result<Setup, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("cella-sandbox-bench-")
        .tempdir()
        .map_err(err)?;
    let store = cella_image::ImageStore::new(dir.path());
    store.build_python3(&cfg.python, "python3").map_err(err)?;
    let loaded = store.load("python3").map_err(err)?;
    let image = loaded.image.clone();
    let attestation = ExecutorAttestation::simulated(
        Arc::new(SimSigner::generate().map_err(err)?),
        Measurement::sha256(b"cella bench executor"),
    );
    let config = SandboxConfig {
        data_dir: dir.path().to_path_buf(),
        jailer: cfg.exe.clone(),
        preload: cfg.exe.clone(),
        limits: SandboxSection::default(),
    };
    let backend = Arc::new(
        SandboxBackend::new(config, &attestation, vec![ImageRoot::from(loaded)]).map_err(err)?,
    );
    backend.probe().await.map_err(err)?;
    Ok(Setup {
        _dir: dir,
        backend,
        image,
        attestation,
    })
}

fn executor(s: &Setup, warm: usize) -> Result<LibosExecutor, BenchError> {
    LibosExecutor::new(
        Arc::clone(&s.backend) as Arc<dyn LibosBackend>,
        vec![s.image.clone()],
        s.attestation.clone(),
        ExecutorConfig {
            pool: PoolConfig {
                warm,
                max: warm + 2,
            },
            ..ExecutorConfig::default()
        },
    )
    .map_err(err)
}

async fn hello(executor: &LibosExecutor) -> Result<Duration, BenchError> {
    let task = StagedTask::new(
        "hello",
        ExecutorKind::Libos,
        HELLO_PY.as_bytes(),
        Duration::from_secs(30),
    )
    .with_runtime("python3");
    let mut io = TaskIo::new(
        BTreeMap::from([("in".to_owned(), b"world".to_vec())]),
        ["out".to_owned()],
        IoLimits::default(),
    );
    let started = Instant::now();
    executor.execute(&task, &mut io).await.map_err(err)?;
    let took = started.elapsed();
    if io.output("out") != Some(&b"hello world"[..]) {
        return Err(BenchError(
            "the hello-world task wrote a wrong output".into(),
        ));
    }
    Ok(took)
}

/// Waits until `executor`'s pool holds `n` idle instances (up to 30 s).
async fn wait_idle(executor: &LibosExecutor, n: usize) -> Result<(), BenchError> {
    let until = Instant::now() + Duration::from_secs(30);
    while executor.pool_stats("python3").is_none_or(|s| s.idle < n) {
        if Instant::now() > until {
            return Err(BenchError(format!(
                "the pool did not reach {n} idle instances within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Times `argv` run to completion `samples` times in `dir`; `None` if it cannot start.
fn time_command(argv: &[&str], dir: &Path, samples: usize) -> Option<Vec<Duration>> {
    let (program, args) = argv.split_first()?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let status = std::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        out.push(started.elapsed());
    }
    Some(out)
}

/// The PSS of `pid` in bytes, from `/proc/<pid>/smaps_rollup`.
fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Runs every figure. Needs a multi-threaded tokio runtime.
///
/// # Errors
///
/// [`BenchError`] if the image cannot be built, the machine cannot run sandboxes, or a
/// task fails.
pub(crate) async fn run(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let s = setup(cfg).await?;
    let samples = cfg.samples.max(1);
    let mut report = BenchReport::default();

    // Cold start and its baseline, one warm-up each.
    let cold = super::libos::cold_start(
        Arc::clone(&s.backend) as Arc<dyn LibosBackend>,
        s.image.clone(),
        s.attestation.clone(),
        samples + 1,
    )
    .await
    .map_err(err)?;
    report.cold_start = cold[1..].to_vec();
    let mock = Arc::new(cella_libos::mock::MockBackend::new(&s.attestation));
    let mock_cold = super::libos::cold_start(
        mock as Arc<dyn LibosBackend>,
        s.image.clone(),
        s.attestation.clone(),
        samples + 1,
    )
    .await
    .map_err(err)?;
    report.mock_cold_start = mock_cold[1..].to_vec();
    let root = Path::new("/");
    report.bwrap = time_command(
        &["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"],
        root,
        samples + 1,
    )
    .map(|v| v[1..].to_vec());

    // The hello-world task, cold (no pool) and warm, and run directly.
    let cold_executor = executor(&s, 0)?;
    hello(&cold_executor).await?;
    for _ in 0..samples {
        report.task_cold.push(hello(&cold_executor).await?);
    }
    drop(cold_executor);
    let warm_executor = executor(&s, 1)?;
    for i in 0..=samples {
        wait_idle(&warm_executor, 1).await?;
        let took = hello(&warm_executor).await?;
        if i > 0 {
            report.task_warm.push(took);
        }
    }
    drop(warm_executor);
    let work = tempfile::tempdir().map_err(err)?;
    std::fs::write(work.path().join("hello.py"), HELLO_DIRECT_PY).map_err(err)?;
    std::fs::write(work.path().join("in"), b"world").map_err(err)?;
    let python = cfg.python.to_string_lossy().into_owned();
    report.python_direct =
        time_command(&[&python, "-I", "-B", "hello.py"], work.path(), samples + 1)
            .map(|v| v[1..].to_vec())
            .ok_or_else(|| BenchError(format!("{python} hello.py failed")))?;

    // Memory of idle pooled instances.
    let n = cfg.idle_instances.max(1);
    let pool = executor(&s, n)?;
    wait_idle(&pool, n).await?;
    // Let the instances settle (the pre-load module waits for Deploy).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut total = 0u64;
    let mut read_all = true;
    let per = n as u64;
    for process in descendants().unwrap_or_default() {
        match pss_bytes(process.pid) {
            Some(b) => {
                total += b;
                *report.idle_pss_by_process.entry(process.name).or_default() += b / per;
            }
            None => read_all = false,
        }
    }
    report.idle_instances = n;
    report.idle_pss_bytes = (read_all && total > 0).then(|| total / per);
    drop(pool);
    Ok(report)
}
