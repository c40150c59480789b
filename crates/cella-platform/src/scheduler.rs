//! The scheduler: a queue of staged tasks kept in the metadata store, in-process workers
//! woken the moment a task is queued (no poll interval), leases, recovery of tasks whose
//! worker was lost, cancellation of running tasks, and change notifications.
//!
//! Invariants: a task is in the queue table exactly while it is Staged (a canceled task's
//! entry is skipped and dropped when reached); a Running task has a lease naming its
//! worker; a worker only records a result if it still holds the lease. Workers are
//! shared fairly between task creators, each under a cap of running tasks (see
//! [`crate::fair`]); a task counts against its creator from its lease to the end of its
//! run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cella_store::{Record, WriteTx, seq_key};
use cella_types::{Digest, Task, TaskId, TaskStatus, UserName};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditAction, NODE_ACTOR, Subject, audit_as};
use crate::fair::{FairShare, SCAN_WINDOW};
use crate::{Platform, PlatformError, Result, now_ms};

/// Capacity of the change-notification channel. A watcher that falls this far behind
/// re-reads its task, so a small ring loses nothing that matters.
const EVENT_CAPACITY: usize = 1024;
/// Most payload bytes kept in memory for reuse across tasks: enough for a few large
/// WebAssembly modules.
const PAYLOAD_CACHE_BYTES: usize = 256 << 20;

/// A queued task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueueEntry {
    seq: u64,
    pub(crate) task: TaskId,
    /// The task's creator, whose share the task counts against. `None` in entries
    /// queued before fair sharing; those are looked up in the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creator: Option<UserName>,
}

impl Record for QueueEntry {
    const TABLE: &'static str = "queue";
    fn key(&self) -> String {
        seq_key(self.seq)
    }
}

/// Puts a task at the back of the queue, inside the caller's transaction.
pub(crate) fn enqueue(tx: &mut WriteTx<'_>, task: &Task) -> Result<()> {
    let seq = tx.next_seq(QueueEntry::TABLE)?;
    tx.put(&QueueEntry {
        seq,
        task: task.id(),
        creator: Some(task.creator().clone()),
    })?;
    Ok(())
}

/// Cached payloads by digest, and their total size.
#[derive(Default)]
struct CachedPayloads {
    by_digest: HashMap<Digest, Arc<[u8]>>,
    bytes: usize,
}

/// Payloads by digest, shared across tasks.
#[derive(Default)]
pub(crate) struct PayloadCache(Mutex<CachedPayloads>);

impl PayloadCache {
    /// The cached payload, or `load`'s result, cached when it fits.
    pub(crate) fn get_or_load(
        &self,
        digest: &Digest,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<[u8]>> {
        if let Some(p) = self.lock().by_digest.get(digest) {
            return Ok(Arc::clone(p));
        }
        let payload: Arc<[u8]> = load()?.into();
        let mut cache = self.lock();
        if cache.bytes + payload.len() > PAYLOAD_CACHE_BYTES {
            cache.by_digest.clear();
            cache.bytes = 0;
        }
        if payload.len() <= PAYLOAD_CACHE_BYTES {
            cache.bytes += payload.len();
            cache.by_digest.insert(*digest, Arc::clone(&payload));
        }
        Ok(payload)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedPayloads> {
        // The map is only a cache: after a panic elsewhere its content is still valid.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An idle worker waiting for a task to be handed to it directly.
pub(crate) struct IdleWorker {
    pub(crate) name: String,
    handoff: oneshot::Sender<Task>,
}

impl IdleWorker {
    /// Gives the worker its task; false if the worker is gone.
    pub(crate) fn hand(self, task: Task) -> bool {
        self.handoff.send(task).is_ok()
    }
}

/// In-memory scheduling state of one node.
pub(crate) struct Scheduler {
    wake: Notify,
    /// Workers parked with nothing to do, most recent last.
    idle: Mutex<Vec<IdleWorker>>,
    events: broadcast::Sender<TaskId>,
    running: Mutex<HashMap<TaskId, CancellationToken>>,
    fair: Mutex<FairShare>,
    /// Most tasks one creator runs at once.
    cap_per_user: usize,
    pub(crate) payload_cache: PayloadCache,
}

impl Scheduler {
    pub(crate) fn new(cap_per_user: usize) -> Self {
        Self {
            wake: Notify::new(),
            idle: Mutex::new(Vec::new()),
            events: broadcast::channel(EVENT_CAPACITY).0,
            running: Mutex::new(HashMap::new()),
            fair: Mutex::new(FairShare::default()),
            cap_per_user: cap_per_user.max(1),
            payload_cache: PayloadCache::default(),
        }
    }

    fn fair(&self) -> std::sync::MutexGuard<'_, FairShare> {
        // Counters updated one at a time: consistent after a panic elsewhere.
        self.fair.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a task of `creator` as started if the creator is under its cap; whether
    /// it was.
    pub(crate) fn try_start(&self, creator: &UserName) -> bool {
        let mut fair = self.fair();
        let ok = fair.may_start(creator, self.cap_per_user);
        if ok {
            fair.start(creator);
        }
        ok
    }

    /// Counts a task of `creator` as ended, or as never started after all.
    pub(crate) fn ended(&self, creator: &UserName) {
        self.fair().end(creator);
    }

    /// Tells watchers that `task` changed.
    pub(crate) fn publish(&self, task: TaskId) {
        // No receiver is fine: nobody is watching.
        let _receivers = self.events.send(task);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TaskId> {
        self.events.subscribe()
    }

    /// Wakes one idle worker, or leaves a permit for the next one to wait.
    pub(crate) fn wake_one(&self) {
        self.wake.notify_one();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleWorker>> {
        // A list of channels: a panic elsewhere leaves it consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an idle worker, if any, to hand a task to directly: the invoke that staged
    /// the task leases it in the same commit, so the task starts without a queue round
    /// trip and one fsync sooner.
    pub(crate) fn take_idle(&self) -> Option<IdleWorker> {
        self.idle().pop()
    }

    /// Parks `name` until a task is handed to it.
    fn park(&self, name: &str) -> oneshot::Receiver<Task> {
        let (handoff, rx) = oneshot::channel();
        self.idle().push(IdleWorker {
            name: name.to_owned(),
            handoff,
        });
        rx
    }

    /// Unparks `name`; false when an invoke already took it (its task is on the way).
    fn unpark(&self, name: &str) -> bool {
        let mut idle = self.idle();
        let before = idle.len();
        idle.retain(|w| w.name != name);
        idle.len() != before
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, CancellationToken>> {
        // Entries are independent tokens: a panic elsewhere leaves them consistent.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register_running(&self, task: TaskId) -> CancellationToken {
        let token = CancellationToken::new();
        self.running().insert(task, token.clone());
        token
    }

    pub(crate) fn unregister_running(&self, task: TaskId) {
        self.running().remove(&task);
    }

    /// Stops the execution of `task` if it runs on this node.
    pub(crate) fn stop_running(&self, task: TaskId) {
        if let Some(t) = self.running().get(&task) {
            t.cancel();
        }
    }

    pub(crate) fn running_count(&self) -> usize {
        self.running().len()
    }
}

/// Load figures for health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Configured workers.
    pub workers: usize,
    /// Tasks waiting in the queue.
    pub queued: u64,
    /// Tasks executing on this node.
    pub running: usize,
    /// Weaker isolation the operator accepted ([`Executors::isolation_warnings`]).
    ///
    /// [`Executors::isolation_warnings`]: cella_executor::Executors::isolation_warnings
    pub isolation_warnings: Vec<String>,
    /// Why metadata writes are failing (e.g. the disk is full), while they do; the node
    /// is degraded meanwhile ([`cella_store::MetaStore::write_failure`]).
    pub store_write_failure: Option<String>,
}

/// The running workers of a node; dropping it does not stop them, [`Workers::shutdown`]
/// does.
#[derive(Debug)]
pub struct Workers {
    /// Canceled first: workers take no new task.
    drain: CancellationToken,
    /// Canceled after the grace period: running executions are cut off.
    stop: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

/// Logs a worker that ended by panicking.
fn report(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::warn!(error = %e, "worker ended abnormally");
    }
}

impl Workers {
    /// Stops taking new tasks, lets running executions finish for up to `grace`, then
    /// cuts off the rest and waits for the workers. A task cut off this way is handed
    /// back as after a lost lease: queued again for its retry (it runs at the next
    /// start), or Failed if it had its retry, saying the node stopped.
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.drain.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        for mut h in self.handles {
            match tokio::time::timeout_at(deadline, &mut h).await {
                Ok(ended) => report(ended),
                Err(_) => {
                    // The grace is over: cut off what still runs.
                    self.stop.cancel();
                    report(h.await);
                }
            }
        }
        self.stop.cancel();
    }
}

impl Platform {
    /// Starts `config.workers` execution workers on the current tokio runtime.
    pub fn start_workers(self: &Arc<Self>) -> Workers {
        let drain = CancellationToken::new();
        let stop = CancellationToken::new();
        let handles = (0..self.config.workers.max(1))
            .map(|i| {
                let platform = Arc::clone(self);
                let drain = drain.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    platform
                        .worker_loop(format!("worker-{i}"), drain, stop)
                        .await;
                })
            })
            .collect();
        Workers {
            drain,
            stop,
            handles,
        }
    }

    async fn worker_loop(
        self: Arc<Self>,
        name: String,
        drain: CancellationToken,
        stop: CancellationToken,
    ) {
        loop {
            // Register for a wake-up before looking at the queue, so a task queued
            // between the look and the wait is not missed.
            let notified = self.sched.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if drain.is_cancelled() {
                return;
            }
            match self.lease_next(&name) {
                Ok(Some(task)) => {
                    // Another queued task may be waiting: pass the wake-up on.
                    self.sched.wake_one();
                    self.run_leased(task, &name, &stop).await;
                }
                Ok(None) => {
                    let mut handed = self.sched.park(&name);
                    let task = tokio::select! {
                        t = &mut handed => t.ok(),
                        () = &mut notified => {
                            if self.sched.unpark(&name) {
                                None
                            } else {
                                // An invoke took this worker just now: its task comes.
                                handed.await.ok()
                            }
                        }
                        () = drain.cancelled() => {
                            if self.sched.unpark(&name) {
                                return;
                            }
                            // An invoke took this worker just now: run its task.
                            handed.await.ok()
                        }
                    };
                    if let Some(task) = task {
                        self.run_leased(task, &name, &stop).await;
                    }
                }
                Err(e) => {
                    tracing::error!(worker = %name, error = %cella_store::error_chain(&e), "could not lease a task");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                        () = drain.cancelled() => return,
                    }
                }
            }
        }
    }

    /// A lease for `worker` starting now.
    pub(crate) fn new_lease(&self, worker: &str) -> cella_types::Lease {
        let lease_ms =
            u64::try_from((self.config.task_deadline + self.config.lease_ttl).as_millis())
                .unwrap_or(u64::MAX);
        cella_types::Lease {
            worker: worker.to_owned(),
            expires_ms: now_ms().saturating_add(lease_ms),
        }
    }

    /// Takes the queued task that the fair share picks (see [`crate::fair`]) and marks
    /// it Running under a lease held by `worker`, counting it against its creator.
    /// `None` when the queue is empty or every queued creator is at its cap.
    pub(crate) fn lease_next(&self, worker: &str) -> Result<Option<Task>> {
        let mut counted: Option<UserName> = None;
        let leased = self.store.write(|tx| {
            loop {
                let mut window = tx.first_n::<QueueEntry>(SCAN_WINDOW)?;
                if window.is_empty() {
                    return Ok::<_, PlatformError>(None);
                }
                let mut creators = Vec::with_capacity(window.len());
                let mut stale = Vec::new();
                for entry in &window {
                    let creator = match &entry.creator {
                        Some(c) => Some(c.clone()),
                        None => tx
                            .get::<Task>(&entry.task.to_string())?
                            .map(|t| t.creator().clone()),
                    };
                    match creator {
                        Some(c) => creators.push(c),
                        None => stale.push(entry.key()),
                    }
                }
                if !stale.is_empty() {
                    // Entries of deleted tasks: drop them and look again.
                    for key in stale {
                        tx.delete::<QueueEntry>(&key)?;
                    }
                    continue;
                }
                let picked = {
                    let mut fair = self.sched.fair();
                    let Some(i) = fair.pick(&creators, self.sched.cap_per_user) else {
                        return Ok(None);
                    };
                    fair.start(&creators[i]);
                    i
                };
                let entry = window.swap_remove(picked);
                counted = Some(creators.swap_remove(picked));
                tx.delete::<QueueEntry>(&entry.key())?;
                let task = tx.get::<Task>(&entry.task.to_string())?;
                match task {
                    Some(mut task) if task.status() == TaskStatus::Staged => {
                        task.start(self.new_lease(worker), now_ms())?;
                        tx.put(&task)?;
                        return Ok(Some(task));
                    }
                    // Canceled while queued: it never starts.
                    _ => {
                        if let Some(c) = counted.take() {
                            self.sched.ended(&c);
                        }
                    }
                }
            }
        });
        match leased {
            Ok(leased) => {
                if let Some(t) = &leased {
                    self.sched.publish(t.id());
                }
                Ok(leased)
            }
            Err(e) => {
                // Nothing was leased: the task does not count.
                if let Some(c) = counted {
                    self.sched.ended(&c);
                }
                Err(e)
            }
        }
    }

    /// Runs after a start: every task that was Running belonged to a worker of the last
    /// run of this node, which is gone. Each gets its retry, or fails if it had it.
    pub(crate) fn recover(&self) -> Result<()> {
        let recovered = self.store.write(|tx| {
            let mut n = 0usize;
            for mut task in tx.list::<Task>()? {
                if task.status() != TaskStatus::Running {
                    continue;
                }
                let status = task.lease_lost(crate::worker::STOPPED, now_ms())?;
                tx.put(&task)?;
                if status == TaskStatus::Staged {
                    crate::scheduler::enqueue(tx, &task)?;
                }
                audit_as(
                    tx,
                    NODE_ACTOR,
                    AuditAction::RecoverTask,
                    Subject::ran(&task),
                )?;
                n += 1;
            }
            Ok::<_, PlatformError>(n)
        })?;
        if recovered > 0 {
            tracing::warn!(
                tasks = recovered,
                "recovered tasks that were running when the node stopped"
            );
        }
        Ok(())
    }

    /// A worker lost `task` (its execution panicked, or the node stopped under it):
    /// retry once, else fail.
    pub(crate) fn lease_lost(&self, task: TaskId, worker: &str, why: &str) -> Result<()> {
        let handed_back = self.store.write(|tx| {
            let Some(mut t) = tx.get::<Task>(&task.to_string())? else {
                return Ok::<_, PlatformError>(None);
            };
            if !t.is_held_by(worker) {
                return Ok(None);
            }
            let status = t.lease_lost(why, now_ms())?;
            tx.put(&t)?;
            if status == TaskStatus::Staged {
                enqueue(tx, &t)?;
            }
            audit_as(tx, NODE_ACTOR, AuditAction::LeaseLost, Subject::ran(&t))?;
            Ok(Some(t))
        })?;
        self.sched.publish(task);
        match handed_back {
            Some(t) if t.status() == TaskStatus::Staged => self.sched.wake_one(),
            // It had its retry: it ended Failed.
            Some(t) => self.observe_ended(&t),
            None => {}
        }
        Ok(())
    }

    /// Current load.
    ///
    /// # Errors
    ///
    /// Store failures only.
    pub fn health(&self) -> Result<Health> {
        Ok(Health {
            workers: self.config.workers,
            queued: self.store.read(|tx| tx.count::<QueueEntry>())?,
            running: self.sched.running_count(),
            isolation_warnings: self.executors.isolation_warnings(),
            store_write_failure: self.store.write_failure(),
        })
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
