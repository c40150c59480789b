//! The mock backend: instances are tokio tasks in the executor's own process, running the
//! real pre-load logic ([`cella_preload::run`]) over a real Unix socket with real RA-TLS
//! (simulation evidence signed by the node's key, as the sandbox backend will do), with
//! [`ScriptRunner`] workloads. It isolates nothing; it exists to test the executor, the
//! protocol and the pre-load module, and to measure dispatch overhead.
//!
//! Faults are scripted per launch with [`MockBackend::push_fault`]: the next launch takes
//! the next fault. Faults of the workload itself (a program that hangs, writes too much,
//! floods its log, leaves an output out) are scripts; faults of the instance (crashes,
//! bad evidence, protocol violations) are [`Fault`]s, played by a rogue instance built
//! from the pre-load module's own pieces.

mod rogue;
mod script;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cella_attest::Measurement;
use cella_attest::sim::{SimEvidenceSource, SimSigner};
use cella_preload::PreloadConfig;
use cella_preload::receipt::sha256;
use tokio::task::JoinHandle;

pub use script::ScriptRunner;

use crate::attest::ExecutorAttestation;
use crate::backend::{
    BackendError, Instance, InstanceExit, LaunchSpec, LibosBackend, instance_measurement,
};
use crate::executor::{ExecutorConfig, LibosExecutor, SetupError};
use crate::image::RuntimeImage;

/// What the mock measures as its pre-load module: its name and version (the code is
/// linked into the executor, so there is no separate binary to hash).
const MOCK_PRELOAD: &str = concat!(
    "cella-preload (mock, in-process) ",
    env!("CARGO_PKG_VERSION")
);

/// A scripted misbehaviour of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Exits with status 1 before connecting.
    CrashBeforeAttestation,
    /// Evidence signed by a key the executor does not trust.
    BadEvidence,
    /// Evidence for another measurement than its image's.
    WrongMeasurement,
    /// Evidence over another launch's nonce.
    StaleNonce,
    /// Attests and says `Hello`, then reads nothing.
    HangBeforeDeploy,
    /// Receives the workload, says `Started`, then sends nothing and ignores `Cancel`.
    HangAfterDeploy,
    /// After `Started`, a frame that is not a protobuf envelope.
    GarbageFrame,
    /// After `Started`, a frame header announcing more than the frame limit.
    OversizedFrame,
    /// `Finished` lists fewer outputs than declared.
    PartialOutputs,
    /// Sends output chunks past the output limit.
    OutputOverLimit,
    /// Ignores its log budget and floods `Log` frames.
    LogFlood,
    /// `Finished` carries a receipt altered after it was signed.
    TamperedReceipt,
    /// Exits with status 137 after `Started`, as an instance killed for its memory.
    CrashAfterStarted,
    /// Attests and says `Hello`, then exits while idle in the pool.
    ExitWhileIdle,
}

/// The mock backend.
#[derive(Debug)]
pub struct MockBackend {
    hardware: Arc<SimSigner>,
    preload: PreloadConfig,
    faults: Mutex<VecDeque<Fault>>,
    live: Arc<AtomicUsize>,
    launched: AtomicU64,
}

/// Counts a live instance until dropped (when its task ends or is aborted).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl MockBackend {
    /// A mock backend whose instances trust the executor of `attestation` and whose
    /// evidence is signed by its simulation key.
    pub fn new(attestation: &ExecutorAttestation) -> Self {
        Self {
            hardware: Arc::clone(attestation.hardware()),
            preload: attestation.preload_config(),
            faults: Mutex::new(VecDeque::new()),
            live: Arc::new(AtomicUsize::new(0)),
            launched: AtomicU64::new(0),
        }
    }

    /// The next launch without a fault yet gets `fault`.
    pub fn push_fault(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fault);
    }

    /// Instances whose task has not ended yet: the leak counter.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Instances launched so far.
    pub fn launched(&self) -> u64 {
        self.launched.load(Ordering::Acquire)
    }

    fn backend_config_digest(&self) -> [u8; 32] {
        let mut bytes = b"mock\0".to_vec();
        bytes.extend_from_slice(&self.preload.digest());
        sha256(&bytes)
    }
}

/// A mock instance: a tokio task.
#[derive(Debug)]
struct MockInstance {
    handle: Option<JoinHandle<i32>>,
    exit: Option<InstanceExit>,
}

#[async_trait::async_trait]
impl Instance for MockInstance {
    fn pid(&self) -> Option<u32> {
        None
    }

    async fn wait(&mut self) -> InstanceExit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let Some(handle) = self.handle.as_mut() else {
            return InstanceExit::Other("never started".into());
        };
        let exit = match handle.await {
            Ok(code) => InstanceExit::Exited(code),
            Err(e) if e.is_cancelled() => InstanceExit::Signaled(9),
            Err(e) => InstanceExit::Other(format!("panicked: {e}")),
        };
        self.handle = None;
        self.exit = Some(exit.clone());
        exit
    }

    fn kill(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    fn kill_group(&mut self) {
        self.kill();
    }
}

#[async_trait::async_trait]
impl LibosBackend for MockBackend {
    fn name(&self) -> &str {
        "mock"
    }

    fn measure(&self, image: &RuntimeImage) -> Result<Measurement, BackendError> {
        Ok(instance_measurement(
            &sha256(MOCK_PRELOAD.as_bytes()),
            image,
            &self.backend_config_digest(),
        ))
    }

    async fn launch(&self, spec: LaunchSpec<'_>) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |message: String| BackendError {
            backend: "mock".into(),
            message,
        };
        let measurement = self.measure(spec.image)?;
        let work_dir = tempfile::Builder::new()
            .prefix("cella-mock-instance-")
            .tempdir()
            .map_err(|e| fail(format!("working directory: {e}")))?;
        let fault = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        self.live.fetch_add(1, Ordering::AcqRel);
        self.launched.fetch_add(1, Ordering::AcqRel);
        let live = Live(Arc::clone(&self.live));
        let mut evidence = SimEvidenceSource::new(Arc::clone(&self.hardware), measurement);
        let mut nonce = spec.nonce.to_vec();
        match fault {
            Some(Fault::BadEvidence) => {
                let stranger = SimSigner::generate().map_err(|e| fail(e.to_string()))?;
                evidence = SimEvidenceSource::new(Arc::new(stranger), measurement);
            }
            Some(Fault::WrongMeasurement) => {
                let mut other = *measurement.as_bytes();
                other[0] ^= 0xff;
                evidence = SimEvidenceSource::new(Arc::clone(&self.hardware), Measurement(other));
            }
            Some(Fault::StaleNonce) => nonce[0] ^= 0xff,
            _ => {}
        }
        let launch = cella_preload::Launch {
            socket: spec.socket,
            nonce,
            work_dir: work_dir.path().to_path_buf(),
        };
        let preload = self.preload.clone();
        let handle = tokio::spawn(async move {
            let _live = live;
            let _dir = work_dir;
            let result = match fault {
                Some(Fault::CrashBeforeAttestation) => return 1,
                Some(f) if rogue::plays(f) => rogue::run(f, &launch, &preload, &evidence).await,
                _ => cella_preload::run(&launch, &preload, &evidence, &ScriptRunner)
                    .await
                    .map(|_| 0),
            };
            match result {
                Ok(code) => code,
                Err(e) => {
                    tracing::debug!(error = %e, "mock instance ended with an error");
                    1
                }
            }
        });
        Ok(Box::new(MockInstance {
            handle: Some(handle),
            exit: None,
        }))
    }
}

/// A LibOS executor on a fresh mock backend, with a fresh simulation key and `images`;
/// the backend is returned too, to script faults and count instances.
///
/// # Errors
///
/// [`SetupError`] as [`LibosExecutor::new`], or if no key can be generated.
pub fn executor(
    images: Vec<RuntimeImage>,
    config: ExecutorConfig,
) -> Result<(LibosExecutor, Arc<MockBackend>), SetupError> {
    let hardware = SimSigner::generate().map_err(|e| SetupError(e.to_string()))?;
    let attestation = ExecutorAttestation::simulated(
        Arc::new(hardware),
        Measurement::sha256(b"cella-libos executor (mock node)"),
    );
    executor_with(images, config, attestation)
}

/// A LibOS executor on a fresh mock backend attesting with `attestation` (a node's own
/// simulation key and measurement); the backend is returned too.
///
/// # Errors
///
/// [`SetupError`] as [`LibosExecutor::new`].
pub fn executor_with(
    images: Vec<RuntimeImage>,
    config: ExecutorConfig,
    attestation: ExecutorAttestation,
) -> Result<(LibosExecutor, Arc<MockBackend>), SetupError> {
    let backend = Arc::new(MockBackend::new(&attestation));
    let executor = LibosExecutor::new(
        Arc::clone(&backend) as Arc<dyn LibosBackend>,
        images,
        attestation,
        config,
    )?;
    Ok((executor, backend))
}
