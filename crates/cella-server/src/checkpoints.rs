//! The node's audit checkpoints: signed with its attested key at an interval while it
//! serves, and once more on shutdown after the last task has ended, so the whole trail
//! up to the stop is vouched for (`docs/formats/audit.md`).

use std::sync::Arc;
use std::time::Duration;

use cella_platform::Platform;
use tokio_util::sync::CancellationToken;

/// The interval between checkpoints unless the operator sets one: short enough that
/// little of the trail is ever unsigned, long enough that an idle node writes nothing
/// (a checkpoint is written only when the head moved).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Writes a checkpoint over the head now (on a blocking thread: it commits to the store)
/// and logs the outcome; a failure is logged, never fatal: the entries stay chained and
/// the next checkpoint covers them.
pub(crate) async fn write(platform: &Arc<Platform>, why: &'static str) {
    let p = Arc::clone(platform);
    match tokio::task::spawn_blocking(move || p.write_audit_checkpoint()).await {
        Ok(Ok(c)) => tracing::info!(
            checkpoint = c.number,
            entry = c.entry_seq,
            why,
            "audit checkpoint written"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, why, "could not write an audit checkpoint"),
        Err(e) => tracing::warn!(error = %e, why, "the audit checkpoint writer failed"),
    }
}

/// Writes a checkpoint every `interval` until `closing` is cancelled; `None` or zero:
/// only the one on shutdown.
pub(crate) fn spawn(
    platform: &Arc<Platform>,
    interval: Option<Duration>,
    closing: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = interval.filter(|i| !i.is_zero())?;
    let platform = Arc::clone(platform);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the next one is a whole interval away.
        ticks.tick().await;
        loop {
            tokio::select! {
                () = closing.cancelled() => return,
                _ = ticks.tick() => write(&platform, "interval").await,
            }
        }
    }))
}
