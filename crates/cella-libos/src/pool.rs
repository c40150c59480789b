//! A pool of warm, attested instances per (backend, runtime image).
//!
//! - **Warm**: a background task keeps [`PoolConfig::warm`] instances launched and
//!   attested ahead of demand, so boot and attestation stay off the request path; it is
//!   woken after every acquire and every eviction, and backs off after failed launches.
//! - **Capped**: every instance, idle, launching or busy, holds one of
//!   [`PoolConfig::max`] permits.
//! - **Evicted when they die idle**: each idle instance sits in a task of its own that
//!   watches its channel and its exit; an instance that exits, closes its channel or
//!   sends anything while idle is killed and removed, and the pool refills.
//! - **Fresh**: an instance idle for longer than `Timeouts::max_idle` is replaced, so the
//!   evidence behind a receipt is at most that old when its task starts.
//! - **Single-use by default**: an acquired instance never comes back; the executor kills
//!   it after its task. A function registered with `reuse = same-function` opts in to
//!   reuse: after its task the instance is `Reset` (its files wiped) and parked under the
//!   function's [`ReuseKey`], where only tasks of the same function and payload take it;
//!   it still holds its permit, is watched like any idle instance, and is given up when
//!   a launch needs its permit, when idle too long, or [`MAX_REUSE_AGE`] after its launch.
//! - **Never waits on the background**: when no instance is idle, `acquire` launches one
//!   itself if the cap allows, so a launch failure reaches the task that needed it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cella_types::{Digest, FunctionId};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::launch::{LaunchCtx, LaunchError, ReadyInstance};

/// First pause after a failed background launch; doubled per failure up to
/// [`MAX_BACKOFF`], so a broken backend is retried without being hammered.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between failed background launches.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Longest an instance is reused after its launch: its evidence, which every receipt it
/// signs leans on, is never older than this plus a deadline when it signs.
pub(crate) const MAX_REUSE_AGE: Duration = Duration::from_secs(3600);

/// Which tasks may take a reused instance: those of one function with one payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReuseKey {
    /// The function.
    pub(crate) function: FunctionId,
    /// Its payload digest (an updated payload is another program).
    pub(crate) payload: Digest,
}

/// How many instances a pool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle attested instances kept ready.
    pub warm: usize,
    /// Most instances at once, idle, launching and busy together.
    pub max: usize,
}

impl Default for PoolConfig {
    /// Two warm, eight at most: a node with a few workers never waits for a boot, and a
    /// burst cannot launch more instances than the machine has room for.
    fn default() -> Self {
        Self { warm: 2, max: 8 }
    }
}

/// A pool's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Idle attested instances.
    pub idle: usize,
    /// Instances being launched in the background.
    pub launching: usize,
    /// Instances handed out (or launched for a task) and not yet released.
    pub busy: usize,
    /// Instances launched and attested so far.
    pub launched: u64,
    /// Idle instances evicted because they died or misbehaved.
    pub evicted: u64,
    /// Idle instances replaced because they waited longer than `Timeouts::max_idle`.
    pub renewed: u64,
    /// Instances parked for another task of the same function after a `Reset` (they
    /// count in `idle`).
    pub reused: u64,
    /// Launches that failed.
    pub launch_failures: u64,
    /// Of those, the launches whose attestation refused the instance, by reason
    /// (`cella_attest::VerifyError::reason`).
    pub attestation_refusals: BTreeMap<&'static str, u64>,
}

struct IdleHandle {
    id: u64,
    /// `None` for a fresh instance, which any task may take.
    key: Option<ReuseKey>,
    take: oneshot::Sender<oneshot::Sender<ReadyInstance>>,
}

struct Inner {
    ctx: LaunchCtx,
    config: PoolConfig,
    permits: Arc<Semaphore>,
    idle: Mutex<VecDeque<IdleHandle>>,
    refill: Notify,
    idle_ready: Notify,
    launching: AtomicUsize,
    launched: AtomicU64,
    evicted: AtomicU64,
    renewed: AtomicU64,
    reused: AtomicU64,
    failures: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    next_id: AtomicU64,
    started: AtomicBool,
    shutdown: CancellationToken,
}

impl Inner {
    /// Counts a failed launch, and its attestation refusal if that is what failed.
    fn count_failure(&self, e: &LaunchError) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        if let Some(reason) = e.refusal {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            *refusals.entry(reason).or_default() += 1;
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<IdleHandle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fresh idle instances (the warm target counts only these).
    fn fresh_idle(&self) -> usize {
        self.idle().iter().filter(|h| h.key.is_none()).count()
    }

    /// The idle instance a task with `key` should take: one parked for its function, else
    /// a fresh one.
    fn pop_idle(&self, key: Option<&ReuseKey>) -> Option<IdleHandle> {
        let mut idle = self.idle();
        let at = key
            .and_then(|k| idle.iter().position(|h| h.key.as_ref() == Some(k)))
            .or_else(|| idle.iter().position(|h| h.key.is_none()))?;
        idle.remove(at)
    }

    /// Gives up the oldest instance parked for another function, so that its permit can
    /// serve a launch. Returns whether there was one.
    fn evict_parked(&self) -> bool {
        let handle = {
            let mut idle = self.idle();
            let Some(at) = idle.iter().position(|h| h.key.is_some()) else {
                return false;
            };
            idle.remove(at)
        };
        // Dropping the taker wakes the instance's watcher, which drops the instance and
        // with it the permit.
        drop(handle);
        true
    }
}

/// Parks reset instances back into their pool, without keeping the pool alive.
#[derive(Clone)]
pub(crate) struct Returner(std::sync::Weak<Inner>);

impl Returner {
    /// Parks `ready`, reset after a task of `key`'s function, for the next such task.
    /// An instance past [`MAX_REUSE_AGE`], or whose pool is gone, is dropped (killed).
    pub(crate) fn park(&self, key: ReuseKey, ready: ReadyInstance) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        if inner.shutdown.is_cancelled() || ready.launched_at.elapsed() > MAX_REUSE_AGE {
            return;
        }
        inner.reused.fetch_add(1, Ordering::AcqRel);
        park(&inner, ready, Some(key));
    }
}

/// A pool of attested instances of one runtime image on one backend.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("image", &self.inner.ctx.image.name)
            .field("stats", &self.stats())
            .finish()
    }
}

enum IdleEvent {
    Take(Result<oneshot::Sender<ReadyInstance>, oneshot::error::RecvError>),
    Frame(String),
    Exit(crate::backend::InstanceExit),
    Stale,
    Shutdown,
}

impl Pool {
    /// A pool launching with `ctx`. The background refill starts on the current tokio
    /// runtime if there is one, else at the first [`Pool::acquire`].
    pub(crate) fn new(ctx: LaunchCtx, config: PoolConfig) -> Self {
        let max = config.max.max(1);
        let pool = Self {
            inner: Arc::new(Inner {
                ctx,
                config: PoolConfig {
                    warm: config.warm.min(max),
                    max,
                },
                permits: Arc::new(Semaphore::new(max)),
                idle: Mutex::new(VecDeque::new()),
                refill: Notify::new(),
                idle_ready: Notify::new(),
                launching: AtomicUsize::new(0),
                launched: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                renewed: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                refusals: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(0),
                started: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            pool.ensure_started();
        }
        pool
    }

    fn ensure_started(&self) {
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(refill_loop(Arc::clone(&self.inner)));
        }
    }

    /// Launches and attests one instance as a refill would, outside the pool's count.
    pub(crate) async fn launch_unpooled(&self) -> Result<ReadyInstance, LaunchError> {
        self.inner.ctx.launch().await
    }

    /// Where reset instances go back to.
    pub(crate) fn returner(&self) -> Returner {
        Returner(Arc::downgrade(&self.inner))
    }

    /// The pool's counters.
    pub(crate) fn stats(&self) -> PoolStats {
        let i = &self.inner;
        let idle = i.idle().len();
        let launching = i.launching.load(Ordering::Acquire);
        let held = i.config.max - i.permits.available_permits().min(i.config.max);
        PoolStats {
            idle,
            launching,
            busy: held.saturating_sub(idle + launching),
            launched: i.launched.load(Ordering::Acquire),
            evicted: i.evicted.load(Ordering::Acquire),
            renewed: i.renewed.load(Ordering::Acquire),
            reused: i.reused.load(Ordering::Acquire),
            launch_failures: i.failures.load(Ordering::Acquire),
            attestation_refusals: i.refusals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// An attested instance: one parked for `key`'s function if there is one, else a
    /// fresh idle one, else one launched now (waiting for a permit if the pool is at its
    /// cap, after giving up instances parked for other functions).
    ///
    /// # Errors
    ///
    /// [`LaunchError`] if the instance launched for this call fails to launch or attest.
    pub(crate) async fn acquire(
        &self,
        key: Option<&ReuseKey>,
    ) -> Result<ReadyInstance, LaunchError> {
        self.ensure_started();
        let inner = &self.inner;
        loop {
            loop {
                let Some(handle) = inner.pop_idle(key) else {
                    break;
                };
                let (tx, rx) = oneshot::channel();
                if handle.take.send(tx).is_err() {
                    continue;
                }
                if let Ok(ready) = rx.await {
                    inner.refill.notify_one();
                    return Ok(ready);
                }
            }
            if inner.permits.available_permits() == 0 && inner.evict_parked() {
                // Its permit comes back once its watcher has dropped it.
                tokio::task::yield_now().await;
            }
            tokio::select! {
                permit = Arc::clone(&inner.permits).acquire_owned() => {
                    let Ok(permit) = permit else {
                        return Err(inner.ctx.fail_closed());
                    };
                    inner.refill.notify_one();
                    return match inner.ctx.launch().await {
                        Ok(mut ready) => {
                            inner.launched.fetch_add(1, Ordering::AcqRel);
                            ready.permit = Some(permit);
                            Ok(ready)
                        }
                        Err(e) => {
                            inner.count_failure(&e);
                            Err(e)
                        }
                    };
                }
                () = inner.idle_ready.notified() => {}
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
    }
}

impl LaunchCtx {
    fn fail_closed(&self) -> LaunchError {
        LaunchError {
            backend: self.backend.name().to_owned(),
            image: self.image.name.clone(),
            step: "pool",
            message: "the pool is shut down".into(),
            refusal: None,
        }
    }
}

async fn refill_loop(inner: Arc<Inner>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        while inner.fresh_idle() + inner.launching.load(Ordering::Acquire) < inner.config.warm {
            let Ok(permit) = Arc::clone(&inner.permits).try_acquire_owned() else {
                break;
            };
            inner.launching.fetch_add(1, Ordering::AcqRel);
            let launched = tokio::select! {
                r = inner.ctx.launch() => r,
                () = inner.shutdown.cancelled() => return,
            };
            inner.launching.fetch_sub(1, Ordering::AcqRel);
            match launched {
                Ok(mut ready) => {
                    backoff = FIRST_BACKOFF;
                    inner.launched.fetch_add(1, Ordering::AcqRel);
                    ready.permit = Some(permit);
                    park(&inner, ready, None);
                }
                Err(e) => {
                    inner.count_failure(&e);
                    tracing::warn!(error = %e, retry_in = ?backoff, "warm LibOS launch failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = inner.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            () = inner.refill.notified() => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}

/// Puts `ready` in the idle list (for any task, or parked for `key`'s function), watched
/// by a task of its own until it is taken, dies, misbehaves or the pool shuts down.
fn park(inner: &Arc<Inner>, mut ready: ReadyInstance, key: Option<ReuseKey>) {
    let id = inner.next_id.fetch_add(1, Ordering::AcqRel);
    let (take, mut taken) = oneshot::channel::<oneshot::Sender<ReadyInstance>>();
    inner.idle().push_back(IdleHandle { id, key, take });
    inner.idle_ready.notify_one();
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        let event = tokio::select! {
            t = &mut taken => IdleEvent::Take(t),
            f = ready.reader.read_frame() => IdleEvent::Frame(match f {
                Ok(e) => format!("sent {} while idle", e.body.map_or("a frame", |b| b.name())),
                Err(e) => format!("channel failed while idle: {e}"),
            }),
            exit = ready.guard.wait() => IdleEvent::Exit(exit),
            () = tokio::time::sleep(inner.ctx.timeouts.max_idle) => IdleEvent::Stale,
            () = inner.shutdown.cancelled() => IdleEvent::Shutdown,
        };
        let reason = match event {
            IdleEvent::Take(Ok(reply)) => {
                // If the taker is gone, the instance is dropped here, which kills it.
                drop(reply.send(ready));
                return;
            }
            IdleEvent::Take(Err(_)) | IdleEvent::Shutdown => {
                inner.idle().retain(|h| h.id != id);
                return;
            }
            IdleEvent::Stale => {
                inner.idle().retain(|h| h.id != id);
                inner.renewed.fetch_add(1, Ordering::AcqRel);
                tracing::debug!(image = %inner.ctx.image.name, "renewing an idle LibOS instance");
                drop(ready);
                inner.refill.notify_one();
                return;
            }
            IdleEvent::Frame(why) => why,
            IdleEvent::Exit(exit) => format!("{exit} while idle"),
        };
        inner.idle().retain(|h| h.id != id);
        inner.evicted.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(image = %inner.ctx.image.name, %reason, "evicting an idle LibOS instance");
        drop(ready);
        inner.refill.notify_one();
    });
}
