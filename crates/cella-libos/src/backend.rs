//! The interface between the LibOS executor and whatever starts LibOS instances.
//!
//! A [`LibosBackend`] measures a runtime image and launches instances of it; an
//! [`Instance`] is a handle on one launched instance. Backends: `mock` (in-process, this
//! crate, [`crate::mock`]); `sandbox` (Linux namespaces) and `gramine` come later and fit
//! the same trait: a child process is an `Instance` whose `kill_group` signals its process
//! group.
//!
//! # What a backend must guarantee
//!
//! 1. **It measures; the instance does not.** [`LibosBackend::measure`] returns the
//!    measurement that instances of an image will carry in their evidence, computed from
//!    what the backend starts (pre-load module, image, the backend's own configuration —
//!    [`instance_measurement`]), never from the function. An instance whose evidence
//!    states any other measurement is refused by the executor.
//! 2. **The pre-load module is the entrypoint.** A launched instance runs
//!    `cella-preload` with [`LaunchSpec::socket`], [`LaunchSpec::nonce`] and an empty
//!    working directory, and nothing else first: it is the pre-load module that connects
//!    back, attests, and receives the workload.
//! 3. **No untrusted I/O.** The instance reaches the executor's endpoint and nothing else
//!    of the host (stated per backend: the mock is in-process and isolates nothing).
//! 4. **Killing is total and immediate.** [`Instance::kill_group`] ends the instance and
//!    everything it started; it is synchronous, idempotent and safe to call from `Drop`.
//!    After it, [`Instance::wait`] returns promptly.
//! 5. **Waiting reaps.** Once [`Instance::wait`] has returned, the instance holds no
//!    process, thread, task or file of the host's any more (its working directory is
//!    removed).

use std::fmt;
use std::sync::Arc;

use cella_attest::dcap::{DcapVerifier, TcbStatus};
use cella_attest::{Clock, Measurement};
use cella_preload::Endpoint;
use cella_preload::receipt::sha256;

use crate::image::RuntimeImage;

/// Length of a launch nonce.
pub const NONCE_LEN: usize = 32;

/// What one launch needs.
#[derive(Debug, Clone)]
pub struct LaunchSpec<'a> {
    /// Fresh random bytes the instance must carry in its certificate's claims: proves the
    /// evidence was made for this launch.
    pub nonce: [u8; NONCE_LEN],
    /// The executor's endpoint, where the instance connects back: a Unix socket, or a
    /// loopback TCP port for a backend whose [`LibosBackend::connect_back`] asks for it.
    pub socket: Endpoint,
    /// The runtime image to start.
    pub image: &'a RuntimeImage,
    /// Resource limits of the whole instance.
    pub limits: InstanceLimits,
}

/// Resource limits a backend applies to a whole instance (the mock ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub max_processes: u32,
}

impl Default for InstanceLimits {
    /// 2 GiB and 256 processes: a Python process with data in memory, and its helpers.
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            max_processes: 256,
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceExit {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (9 after [`Instance::kill_group`]).
    Signaled(i32),
    /// It ended in a way the backend can only describe (a mock task that panicked).
    Other(String),
}

impl fmt::Display for InstanceExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceExit::Exited(c) => write!(f, "exited with status {c}"),
            InstanceExit::Signaled(s) => write!(f, "killed by signal {s}"),
            InstanceExit::Other(s) => f.write_str(s),
        }
    }
}

/// A launched instance.
#[async_trait::async_trait]
pub trait Instance: Send + Sync + fmt::Debug {
    /// The instance's main process id, if it is a process.
    fn pid(&self) -> Option<u32>;

    /// Waits until the instance has ended, and reaps it. Cancel-safe: it can be raced in
    /// `select!` and called again; after it returned once, it returns the same again.
    async fn wait(&mut self) -> InstanceExit;

    /// Kills the instance's main process (SIGKILL), without waiting. Idempotent.
    fn kill(&mut self);

    /// Asks the instance to stop on its own, without waiting (the executor kills its group
    /// if it has not stopped after a grace period). Gramine instances get one SIGTERM (a
    /// Gramine enclave honours one); the default does nothing.
    fn terminate(&mut self) {}

    /// Kills the instance and everything it started (SIGKILL to its process group),
    /// without waiting. Idempotent; safe in `Drop`.
    fn kill_group(&mut self);
}

/// How an instance reaches its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectBack {
    /// A fresh Unix socket per launch, in a directory only the executor can write.
    #[default]
    Unix,
    /// A fresh TCP port on 127.0.0.1 per launch: for LibOSes that cannot reach a Unix
    /// socket of the host (Gramine). Any local process can connect to it; RA-TLS with the
    /// launch nonce decides who is the instance (a stranger only makes the launch fail).
    Tcp,
}

/// What evidence the executor accepts from a backend's instances.
#[derive(Debug, Clone, Default)]
pub enum InstanceEvidence {
    /// Simulation evidence signed by the node's key, for the measurement
    /// [`LibosBackend::measure`] computed (mock, sandbox, gramine-direct).
    #[default]
    Simulated,
    /// SGX DCAP quotes whose `MRENCLAVE` is the measurement [`LibosBackend::measure`]
    /// returned (gramine-sgx).
    SgxDcap(SgxAppraisal),
}

/// How SGX DCAP quotes of instances are appraised.
#[derive(Clone)]
pub struct SgxAppraisal {
    /// Verifies quotes (with the platform's collateral).
    pub dcap: DcapVerifier,
    /// TCB statuses accepted.
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Intel advisories accepted.
    pub accepted_advisory_ids: Vec<String>,
    /// Accept debug enclaves (never in production).
    pub allow_debug: bool,
    /// The clock of the verifier (`None`: the system's).
    pub clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for SgxAppraisal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SgxAppraisal")
            .field("accepted_tcb_statuses", &self.accepted_tcb_statuses)
            .field("accepted_advisory_ids", &self.accepted_advisory_ids)
            .field("allow_debug", &self.allow_debug)
            .finish_non_exhaustive()
    }
}

/// A backend refused or failed to launch or measure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct BackendError {
    /// The backend's name.
    pub backend: String,
    /// What went wrong.
    pub message: String,
}

/// Something that launches LibOS instances.
#[async_trait::async_trait]
pub trait LibosBackend: Send + Sync + fmt::Debug {
    /// The backend's name, as in the node's configuration: `mock`, `sandbox`, `gramine`.
    fn name(&self) -> &str;

    /// The measurement instances of `image` will carry: [`instance_measurement`] of the
    /// pre-load module, the image's manifest and this backend's configuration.
    ///
    /// # Errors
    ///
    /// [`BackendError`] if a file to measure cannot be read.
    fn measure(&self, image: &RuntimeImage) -> Result<Measurement, BackendError>;

    /// Isolation weaker than the backend's default that the operator accepted (see
    /// `cella_executor::Executor::isolation_warnings`); known once the backend checked
    /// the machine at start. Empty by default.
    fn isolation_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// How its instances reach the executor (default: a Unix socket).
    fn connect_back(&self) -> ConnectBack {
        ConnectBack::Unix
    }

    /// What evidence its instances present (default: simulation evidence signed by the
    /// node's key).
    fn instance_evidence(&self) -> InstanceEvidence {
        InstanceEvidence::Simulated
    }

    /// Launches an instance of `spec.image`, whose pre-load module will connect to
    /// `spec.socket`. Returns once the instance is started, not attested.
    ///
    /// # Errors
    ///
    /// [`BackendError`] if the instance could not be started.
    async fn launch(&self, spec: LaunchSpec<'_>) -> Result<Box<dyn Instance>, BackendError>;
}

/// An instance's measurement: SHA-256 of `cella-libos-instance-v1\0` ‖ SHA-256 of the
/// pre-load module ‖ the image's manifest digest ‖ SHA-256 of the backend configuration.
/// The function is not in it: the receipt binds the function.
pub fn instance_measurement(
    preload: &[u8; 32],
    image: &RuntimeImage,
    backend_config: &[u8; 32],
) -> Measurement {
    let mut bytes = b"cella-libos-instance-v1\0".to_vec();
    bytes.extend_from_slice(preload);
    bytes.extend_from_slice(&image.manifest_digest());
    bytes.extend_from_slice(backend_config);
    Measurement(sha256(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_changes_with_each_input() {
        let image = RuntimeImage::native();
        let base = instance_measurement(&[1; 32], &image, &[2; 32]);
        assert_ne!(base, instance_measurement(&[9; 32], &image, &[2; 32]));
        assert_ne!(base, instance_measurement(&[1; 32], &image, &[9; 32]));
        let mut other = image.clone();
        other.argv.push("x".into());
        assert_ne!(base, instance_measurement(&[1; 32], &other, &[2; 32]));
        assert_eq!(base, instance_measurement(&[1; 32], &image, &[2; 32]));
    }
}
