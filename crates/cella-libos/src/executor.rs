//! [`LibosExecutor`]: the `libos` executor family. One pool of warm attested instances
//! per runtime image; each task takes one instance, deploys, runs, verifies the receipt,
//! and the instance is killed afterwards — unless the function opted in to
//! `reuse = same-function`, in which case the instance is reset and parked for the
//! function's next task.
//!
//! The function's runtime image is named in its spec, not in its payload: the platform
//! checks it against [`Executor::offered_runtimes`] at registration, and a run still
//! re-checks it (a node restarted with fewer images), failing with a message listing the
//! runtimes it does offer.
//!
//! Cancellation: when the platform cancels a task it drops the `execute` future; the
//! instance's guard then kills its process group at once (no grace: the decision is
//! made), which is why a cancel takes effect well within a second.

use std::collections::BTreeMap;
use std::sync::Arc;

use cella_attest::Measurement;
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, StagedTask, TaskIo};
use cella_types::{ExecutorKind, InstanceReuse};

use crate::attest::ExecutorAttestation;
use crate::backend::{InstanceEvidence, InstanceLimits, LibosBackend};
use crate::image::RuntimeImage;
use crate::launch::{LaunchCtx, LaunchError, Timeouts};
use crate::pool::{Pool, PoolConfig, PoolStats, ReuseKey};

/// How the executor runs its pools and instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Pool sizes, the same for every runtime image.
    pub pool: PoolConfig,
    /// Timeouts of launches, starts and cancels.
    pub timeouts: Timeouts,
    /// Limits of each instance.
    pub limits: InstanceLimits,
}

/// The executor could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LibOS executor: {0}")]
pub struct SetupError(pub String);

struct Runtime {
    image: Arc<RuntimeImage>,
    measurement: Measurement,
    pool: Pool,
}

/// An attested instance outside any pool ([`LibosExecutor::launch_unpooled`]); its
/// process group is killed when it is dropped.
#[derive(Debug)]
pub struct UnpooledInstance {
    ready: crate::launch::ReadyInstance,
}

impl UnpooledInstance {
    /// Kills the instance's process group and waits until it has ended.
    pub async fn kill(self) {
        let mut guard = self.ready.guard;
        guard.kill_group();
        guard.wait().await;
    }
}

/// Runs `libos` functions on LibOS instances of a backend.
pub struct LibosExecutor {
    backend_name: String,
    attestation: Arc<ExecutorAttestation>,
    evidence: InstanceEvidence,
    runtimes: BTreeMap<String, Runtime>,
    timeouts: Timeouts,
    /// The backend's isolation warnings, as it found them before the executor started.
    isolation_warnings: Vec<String>,
    // Sockets live here until the executor is dropped (after its pools).
    _socket_dir: Arc<tempfile::TempDir>,
}

impl std::fmt::Debug for LibosExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibosExecutor")
            .field("backend", &self.backend_name)
            .field("runtimes", &self.runtimes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LibosExecutor {
    /// An executor offering `images` on `backend`. Each image is measured now; its pool
    /// starts filling on the current tokio runtime (or at its first task without one).
    ///
    /// # Errors
    ///
    /// [`SetupError`] for an invalid or duplicate image, a measurement the backend cannot
    /// make, or a socket directory that cannot be created.
    pub fn new(
        backend: Arc<dyn LibosBackend>,
        images: Vec<RuntimeImage>,
        attestation: ExecutorAttestation,
        config: ExecutorConfig,
    ) -> Result<Self, SetupError> {
        let socket_dir = Arc::new(
            tempfile::Builder::new()
                .prefix("cella-libos-")
                .tempdir()
                .map_err(|e| SetupError(format!("socket directory: {e}")))?,
        );
        let attestation = Arc::new(attestation);
        let evidence = backend.instance_evidence();
        let mut runtimes = BTreeMap::new();
        for image in images {
            image.validate().map_err(SetupError)?;
            let expected = backend
                .measure(&image)
                .map_err(|e| SetupError(e.to_string()))?;
            let verifier = attestation
                .instance_verifier_for(expected, &evidence)
                .map_err(|e| SetupError(e.to_string()))?;
            let name = image.name.clone();
            let image = Arc::new(image);
            let ctx = LaunchCtx {
                backend: Arc::clone(&backend),
                image: Arc::clone(&image),
                attestation: Arc::clone(&attestation),
                expected,
                verifier,
                timeouts: config.timeouts,
                limits: config.limits,
                socket_dir: Arc::clone(&socket_dir),
            };
            tracing::info!(runtime = %name, backend = backend.name(), measurement = %expected, "LibOS runtime image");
            let runtime = Runtime {
                image,
                measurement: expected,
                pool: Pool::new(ctx, config.pool),
            };
            if runtimes.insert(name.clone(), runtime).is_some() {
                return Err(SetupError(format!(
                    "runtime image {name:?} is declared twice"
                )));
            }
        }
        Ok(Self {
            backend_name: backend.name().to_owned(),
            attestation,
            evidence,
            runtimes,
            timeouts: config.timeouts,
            isolation_warnings: backend.isolation_warnings(),
            _socket_dir: socket_dir,
        })
    }

    /// The runtime images offered, sorted by name.
    pub fn runtimes(&self) -> impl Iterator<Item = &str> {
        self.runtimes.keys().map(String::as_str)
    }

    /// The measurement instances of `runtime` carry.
    pub fn measurement(&self, runtime: &str) -> Option<Measurement> {
        self.runtimes.get(runtime).map(|r| r.measurement)
    }

    /// An attestation policy (TOML) whose `libos-instance` role accepts exactly this
    /// executor's instances, for `cella task receipt --verify --policy`.
    pub fn instance_policy(&self) -> String {
        self.attestation.receipt_policy_for(
            self.runtimes.values().map(|r| r.measurement),
            &self.evidence,
        )
    }

    /// The counters of `runtime`'s pool.
    pub fn pool_stats(&self, runtime: &str) -> Option<PoolStats> {
        self.runtimes.get(runtime).map(|r| r.pool.stats())
    }

    /// Launches and attests one instance of `runtime` outside its pool, as the pool
    /// launches each warm instance (start, evidence, RA-TLS both ways, `Hello`
    /// verified), for timing or probing a backend (`cella bench`'s cold start). It
    /// counts against no pool limit and serves no task.
    ///
    /// # Errors
    ///
    /// [`LaunchError`] naming the failed step; step `runtime` if `runtime` is not
    /// offered.
    pub async fn launch_unpooled(&self, runtime: &str) -> Result<UnpooledInstance, LaunchError> {
        let Some(r) = self.runtimes.get(runtime) else {
            return Err(LaunchError {
                backend: self.backend_name.clone(),
                image: runtime.to_owned(),
                step: "runtime",
                message: "not offered by this executor".into(),
                refusal: None,
            });
        };
        r.pool
            .launch_unpooled()
            .await
            .map(|ready| UnpooledInstance { ready })
    }

    fn runtime(&self, task: &StagedTask) -> Result<&Runtime, ExecutionError> {
        let offered = || self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = task.runtime.as_deref().ok_or_else(|| {
            ExecutionError::function(format!(
                "a libos function needs a runtime image; this node offers: [{}]",
                offered()
            ))
        })?;
        self.runtimes.get(name).ok_or_else(|| {
            ExecutionError::function(format!(
                "runtime image {name:?} is not offered by this node; it offers: [{}]",
                offered()
            ))
        })
    }
}

#[async_trait::async_trait]
impl Executor for LibosExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Libos
    }

    fn isolation_warnings(&self) -> Vec<String> {
        self.isolation_warnings.clone()
    }

    /// A libos payload is the program file (a binary or a script); it must not be empty.
    /// The runtime image is checked when a task runs (see the module documentation).
    fn offered_runtimes(&self) -> Vec<String> {
        self.runtimes.keys().cloned().collect()
    }

    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        if payload.is_empty() {
            return Err("a libos payload is the program to run, and it is empty".into());
        }
        Ok(())
    }

    async fn execute(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        self.execute_measured(task, io).await.map(|(o, _)| o)
    }
}

impl LibosExecutor {
    /// [`Executor::execute`], also returning the program's own run time as the instance
    /// measured it, in microseconds (`cella bench` subtracts it from the dispatch time).
    ///
    /// # Errors
    ///
    /// As [`Executor::execute`].
    pub async fn execute_measured(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<(ExecutionOutcome, u64), ExecutionError> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + task.deadline;
        let runtime = self.runtime(task)?;
        let key = (task.reuse == InstanceReuse::SameFunction).then_some(ReuseKey {
            function: task.function_id,
            payload: task.payload_digest,
        });
        let ready = tokio::time::timeout_at(deadline, runtime.pool.acquire(key.as_ref()))
            .await
            .map_err(|_| ExecutionError::DeadlineExceeded {
                limit: task.deadline,
            })?
            .map_err(|e| {
                ExecutionError::unavailable(
                    format!(
                        "the node could not start an instance of runtime image {:?} ({} backend, {})",
                        runtime.image.name,
                        e.backend,
                        e.step
                    ),
                    e.to_string(),
                )
            })?;
        let (result, reusable) = crate::run::run_task(
            ready,
            task,
            io,
            &runtime.image,
            self.timeouts,
            deadline,
            started,
        )
        .await;
        if let (Some(reusable), Some(key)) = (reusable, key) {
            // Off the task's path: its result does not wait for the instance's wipe.
            let returner = runtime.pool.returner();
            let within = self.timeouts.started;
            tokio::spawn(async move {
                if let Some(ready) = reusable.reset(within).await {
                    returner.park(key, ready);
                }
            });
        }
        result
    }
}
