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
//! 3. **No untrusted I/O.** The instance reaches the executor's socket and nothing else
//!    of the host (stated per backend: the mock is in-process and isolates nothing).
//! 4. **Killing is total and immediate.** [`Instance::kill_group`] ends the instance and
//!    everything it started; it is synchronous, idempotent and safe to call from `Drop`.
//!    After it, [`Instance::wait`] returns promptly.
//! 5. **Waiting reaps.** Once [`Instance::wait`] has returned, the instance holds no
//!    process, thread, task or file of the host's any more (its working directory is
//!    removed).

use std::fmt;
use std::path::PathBuf;

use cella_attest::Measurement;
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
    /// The executor's Unix socket, where the instance connects back.
    pub socket: PathBuf,
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

    /// Kills the instance and everything it started (SIGKILL to its process group),
    /// without waiting. Idempotent; safe in `Drop`.
    fn kill_group(&mut self);
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
