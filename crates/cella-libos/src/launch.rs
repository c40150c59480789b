//! Launching one instance and bringing its session to [`Attested`]: a fresh nonce and a
//! private endpoint (a Unix socket, or a loopback TCP port for backends that ask for
//! one), the backend's launch, the instance connecting back, the mutual RA-TLS
//! handshake, and `Hello`. Anything that fails on the way kills the instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cella_attest::policy::roles;
use cella_attest::tls::{attestation_failure, verified_peer};
use cella_attest::{Measurement, Verifier};
use cella_preload::endpoint::{Endpoint, Stream};
use cella_preload::protocol::{Envelope, FrameReader};
use ring::rand::SecureRandom;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

use crate::attest::ExecutorAttestation;
use crate::backend::{ConnectBack, Instance, InstanceLimits, LaunchSpec, LibosBackend, NONCE_LEN};
use crate::image::RuntimeImage;
use crate::session::{Attested, ExpectAttested};

/// The executor's end of an instance's channel.
pub(crate) type Tls = tokio_rustls::server::TlsStream<Stream>;

/// The executor's listener for one launch.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}

/// How long the steps of an instance's life may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From launch to an attested `Hello`: boot, evidence, handshake. 30 s covers an SGX
    /// enclave's start with a large heap.
    pub attest: Duration,
    /// From the end of `Deploy` to `Started`: laying out and hashing the inputs.
    pub started: Duration,
    /// Between `Cancel` and killing the instance's process group.
    pub cancel_grace: Duration,
    /// Longest an attested instance waits idle in the pool before it is replaced by a
    /// fresh one, so that the evidence behind a receipt is never older than this plus
    /// the task's deadline.
    pub max_idle: Duration,
}

impl Default for Timeouts {
    /// 30 s, 30 s, 500 ms and 30 min: a cancel grace well under the platform's own 2 s
    /// past the deadline and under the one second a cancel must take; idle instances
    /// renewed twice an hour, as the node renews its own evidence.
    fn default() -> Self {
        Self {
            attest: Duration::from_secs(30),
            started: Duration::from_secs(30),
            cancel_grace: Duration::from_millis(500),
            max_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// Launching or attesting an instance failed. The node's problem, never the function's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("launching a {image:?} instance on the {backend} backend: {step}: {message}")]
pub struct LaunchError {
    /// The backend.
    pub backend: String,
    /// The runtime image.
    pub image: String,
    /// The step that failed.
    pub step: &'static str,
    /// Why.
    pub message: String,
    /// Why the instance's attestation was refused ([`VerifyError::reason`]), when that is
    /// what failed.
    pub refusal: Option<&'static str>,
}

/// Kills its instance when dropped (the instance is single-use), then reaps it in the
/// background.
#[derive(Debug)]
pub(crate) struct InstanceGuard {
    inner: Option<Box<dyn Instance>>,
}

impl InstanceGuard {
    fn new(instance: Box<dyn Instance>) -> Self {
        Self {
            inner: Some(instance),
        }
    }

    /// Waits for the instance to end (cancel-safe).
    pub(crate) async fn wait(&mut self) -> crate::backend::InstanceExit {
        match self.inner.as_mut() {
            Some(i) => i.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Kills the instance's process group now.
    pub(crate) fn kill_group(&mut self) {
        if let Some(i) = self.inner.as_mut() {
            i.kill_group();
        }
    }

    /// Lets the instance end on its own within `grace`, then kills it; reaps it in the
    /// background either way.
    pub(crate) fn retire(mut self, grace: Duration) {
        let Some(mut instance) = self.inner.take() else {
            return;
        };
        instance.terminate();
        let reap = async move {
            if tokio::time::timeout(grace, instance.wait()).await.is_err() {
                instance.kill_group();
                instance.wait().await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn(reap)),
            Err(_) => tracing::warn!("no runtime to reap a LibOS instance on"),
        }
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if let Some(mut instance) = self.inner.take() {
            instance.kill_group();
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                drop(h.spawn(async move {
                    instance.wait().await;
                }));
            }
        }
    }
}

/// An attested instance and its channel, ready for `Deploy`.
#[derive(Debug)]
pub(crate) struct ReadyInstance {
    pub(crate) guard: InstanceGuard,
    pub(crate) reader: FrameReader<ReadHalf<Tls>>,
    pub(crate) writer: WriteHalf<Tls>,
    pub(crate) session: Attested,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// When it was launched: a reused instance is retired past `pool::MAX_REUSE_AGE`.
    pub(crate) launched_at: std::time::Instant,
}

/// What launching needs; one per pool.
#[derive(Debug, Clone)]
pub(crate) struct LaunchCtx {
    pub(crate) backend: Arc<dyn LibosBackend>,
    pub(crate) image: Arc<RuntimeImage>,
    pub(crate) attestation: Arc<ExecutorAttestation>,
    pub(crate) expected: Measurement,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) timeouts: Timeouts,
    pub(crate) limits: InstanceLimits,
    pub(crate) socket_dir: Arc<tempfile::TempDir>,
}

/// Removes the socket file when the launch is over, whatever happened.
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "removing an instance socket");
        }
    }
}

/// The rustls reason inside an accept error, as a sentence.
/// What a failed handshake says, and why attestation refused the instance if it did.
fn handshake_failure(e: &std::io::Error) -> (String, Option<&'static str>) {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(r) => match attestation_failure(r) {
            Some(v) => (
                format!("the instance's attestation was refused: {v}"),
                Some(v.reason()),
            ),
            None => (format!("TLS: {r}"), None),
        },
        None => (format!("TLS: {e}"), None),
    }
}

impl LaunchCtx {
    fn fail(&self, step: &'static str, message: impl Into<String>) -> LaunchError {
        LaunchError {
            backend: self.backend.name().to_owned(),
            image: self.image.name.clone(),
            step,
            message: message.into(),
            refusal: None,
        }
    }

    /// [`LaunchCtx::fail`] of an attestation that refused the instance for `reason`.
    fn refused(&self, message: impl Into<String>, reason: &'static str) -> LaunchError {
        LaunchError {
            refusal: Some(reason),
            ..self.fail("attest", message)
        }
    }

    /// Launches an instance and attests it.
    pub(crate) async fn launch(&self) -> Result<ReadyInstance, LaunchError> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| self.fail("nonce", "the random number generator failed"))?;
        let (listener, socket, _unlink) = match self.backend.connect_back() {
            ConnectBack::Unix => {
                let path = self
                    .socket_dir
                    .path()
                    .join(format!("{}.sock", hex::encode(&nonce[..8])));
                let l =
                    UnixListener::bind(&path).map_err(|e| self.fail("socket", e.to_string()))?;
                let unlink = Unlink(path.clone());
                (Listener::Unix(l), Endpoint::Unix(path), Some(unlink))
            }
            ConnectBack::Tcp => {
                let l = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                    .await
                    .map_err(|e| self.fail("socket", e.to_string()))?;
                let addr = l
                    .local_addr()
                    .map_err(|e| self.fail("socket", e.to_string()))?;
                (Listener::Tcp(l), Endpoint::Tcp(addr), None)
            }
        };
        let tls = self
            .attestation
            .server_config(Arc::clone(&self.verifier), &nonce)
            .map_err(|e| self.fail("attestation setup", e.to_string()))?;
        let launched_at = std::time::Instant::now();
        let instance = self
            .backend
            .launch(LaunchSpec {
                nonce,
                socket,
                image: &self.image,
                limits: self.limits,
            })
            .await
            .map_err(|e| self.fail("launch", e.to_string()))?;
        let mut guard = InstanceGuard::new(instance);
        let deadline = Instant::now() + self.timeouts.attest;
        let late = |what: &str| format!("{what} within {:?}", self.timeouts.attest);

        let channel = tokio::select! {
            r = timeout_at(deadline, listener.accept()) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(self.fail("accept", e.to_string())),
                Err(_) => return Err(self.fail("connect", late("the instance did not connect"))),
            },
            exit = guard.wait() => {
                return Err(self.fail("attest", format!("the instance {exit} before attesting")));
            }
        };
        drop(listener);
        let stream = tokio::select! {
            r = timeout_at(deadline, TlsAcceptor::from(tls).accept(channel)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let (message, refusal) = handshake_failure(&e);
                    return Err(LaunchError { refusal, ..self.fail("attest", message) });
                }
                Err(_) => return Err(self.fail("attest", late("no TLS handshake"))),
            },
            exit = guard.wait() => {
                return Err(self.fail("attest", format!("the instance {exit} during the handshake")));
            }
        };
        let certs = stream.get_ref().1.peer_certificates();
        let cert_der = certs
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let peer = verified_peer(&self.verifier, roles::LIBOS_INSTANCE, certs, Some(&nonce))
            .map_err(|e| self.refused(e.to_string(), e.reason()))?;
        let (rd, writer) = tokio::io::split(stream);
        let mut reader = FrameReader::new(rd);
        let hello: Envelope = tokio::select! {
            r = timeout_at(deadline, reader.read_frame()) => match r {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => return Err(self.fail("hello", e.to_string())),
                Err(_) => return Err(self.fail("hello", late("no Hello"))),
            },
            exit = guard.wait() => {
                return Err(self.fail("hello", format!("the instance {exit} before Hello")));
            }
        };
        let session = ExpectAttested::new(nonce, self.expected)
            .handle(peer, cert_der, hello)
            .map_err(|e| self.fail("hello", e.to_string()))?;
        tracing::debug!(
            image = %self.image.name,
            measurement = %session.measurement(),
            preload = session.preload_version(),
            "LibOS instance attested"
        );
        Ok(ReadyInstance {
            guard,
            reader,
            writer,
            session,
            permit: None,
            launched_at,
        })
    }
}
