//! A bound on concurrent password hashing.
//!
//! One argon2id hash with the default parameters takes [`ARGON2_MEMORY_BYTES`] of memory,
//! and logins are the one operation anyone can cause without a session. Without a bound,
//! a few hundred concurrent logins for made-up names took gigabytes and starved every
//! other request. So every hash (login, registration, password change) holds a slot of a
//! [`HashLimiter`] sized from a memory budget; callers beyond the slots wait in a short
//! queue, and callers beyond the queue, or that waited too long, are refused with
//! [`PlatformError::Busy`] at once, which costs no memory.
//!
//! A login for an unknown user takes a slot and hashes exactly like one for a known user,
//! so neither the time taken nor a refusal under load tells which names exist.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{PlatformError, Result};

/// Memory one argon2id hash takes with the parameters Cella uses (argon2's defaults,
/// m = 19 MiB, the OWASP recommendation).
pub(crate) const ARGON2_MEMORY_BYTES: u64 = (argon2::Params::DEFAULT_M_COST as u64) * 1024;

/// Callers that may wait for a slot, per slot: a queue of a few hashes' time absorbs a
/// burst of honest logins without holding many threads.
const WAITING_PER_SLOT: usize = 8;

/// Longest a caller waits for a slot before it is refused: longer than a burst of honest
/// logins takes to drain, short enough that a flood is answered quickly.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// How many hashes may run at once for a memory budget of `budget_bytes` on a machine
/// with `cores` cores: what the budget holds, at most one per core (more only adds
/// memory, not throughput), and at least one.
pub(crate) fn slots_for(budget_bytes: u64, cores: usize) -> usize {
    let by_memory = usize::try_from(budget_bytes / ARGON2_MEMORY_BYTES).unwrap_or(usize::MAX);
    by_memory.min(cores).max(1)
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    waiting: usize,
}

/// A counting semaphore for password hashes, with a bounded queue.
#[derive(Debug)]
pub(crate) struct HashLimiter {
    slots: usize,
    max_waiting: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// A held hashing slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct HashSlot<'a>(&'a HashLimiter);

impl HashLimiter {
    /// A limiter of `slots` concurrent hashes (at least one) with a queue of
    /// [`WAITING_PER_SLOT`] callers per slot.
    pub(crate) fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        Self::with_queue(slots, slots.saturating_mul(WAITING_PER_SLOT))
    }

    fn with_queue(slots: usize, max_waiting: usize) -> Self {
        Self {
            slots: slots.max(1),
            max_waiting,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Two counters, each updated in one statement: consistent after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot, waiting in the queue if all are busy.
    ///
    /// # Errors
    ///
    /// [`PlatformError::Busy`] when the queue is full or no slot freed within
    /// [`MAX_WAIT`].
    pub(crate) fn acquire(&self) -> Result<HashSlot<'_>> {
        self.acquire_within(MAX_WAIT)
    }

    fn acquire_within(&self, max_wait: Duration) -> Result<HashSlot<'_>> {
        let busy = |state: &State| {
            PlatformError::Busy(format!(
                "the node is busy checking passwords ({} in progress, {} waiting); retry in a moment",
                state.in_use, state.waiting
            ))
        };
        let mut state = self.lock();
        if state.in_use < self.slots {
            state.in_use += 1;
            return Ok(HashSlot(self));
        }
        if state.waiting >= self.max_waiting {
            return Err(busy(&state));
        }
        state.waiting += 1;
        let deadline = Instant::now() + max_wait;
        while state.in_use >= self.slots {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.waiting -= 1;
                return Err(busy(&state));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.waiting -= 1;
        state.in_use += 1;
        Ok(HashSlot(self))
    }

    /// How many callers wait for a slot now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// How many hashes run now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.lock().in_use
    }
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        self.0.lock().in_use -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_memory_budget_and_the_cores() {
        assert_eq!(slots_for(0, 8), 1);
        assert_eq!(slots_for(ARGON2_MEMORY_BYTES * 3, 8), 3);
        assert_eq!(slots_for(ARGON2_MEMORY_BYTES * 3 + 1, 8), 3);
        assert_eq!(slots_for(ARGON2_MEMORY_BYTES * 100, 2), 2);
    }

    #[test]
    fn excess_callers_are_refused_and_a_freed_slot_is_reused() {
        let l = HashLimiter::with_queue(2, 0);
        let a = l.acquire().unwrap();
        let b = l.acquire().unwrap();
        let e = l.acquire().unwrap_err();
        assert!(matches!(e, PlatformError::Busy(_)), "{e}");
        assert!(e.to_string().contains("2 in progress"), "{e}");
        drop(a);
        let c = l.acquire().unwrap();
        assert_eq!(l.in_use(), 2);
        drop((b, c));
        assert_eq!(l.in_use(), 0);
    }

    #[test]
    fn a_waiter_gets_the_slot_freed_for_it_or_gives_up() {
        let l = HashLimiter::with_queue(1, 1);
        let held = l.acquire().unwrap();
        // Nobody frees the slot: the waiter is refused after its wait.
        let e = l.acquire_within(Duration::from_millis(10)).unwrap_err();
        assert!(matches!(e, PlatformError::Busy(_)), "{e}");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| l.acquire_within(Duration::from_secs(60)).map(drop));
            // The queue holds one: a second waiter is refused at once.
            while l.waiting() == 0 {
                std::thread::yield_now();
            }
            assert!(l.acquire_within(Duration::from_secs(60)).is_err());
            drop(held);
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(l.in_use(), 0);
    }
}
