//! `poll_oneoff` that the deadline and cancellation can interrupt.
//!
//! wasmtime-wasi's synchronous `poll_oneoff` sleeps on the guest's thread: for one
//! relative clock it calls `std::thread::sleep` for the whole timeout, otherwise it
//! blocks on the timers. The epoch callback that enforces deadlines and cancellation
//! runs only in wasm code, so a module sleeping for `0x7fffffffffffffff` ns held its
//! thread, its pool slot and its run directory forever.
//!
//! The linker's `poll_oneoff` is therefore this function. Only clocks can wait in this
//! executor (stdin is closed; files, stdout and stderr are always ready), so a file
//! descriptor subscription is ready at once, and a call waits for its earliest clock
//! in slices of at most [`WAIT_SLICE`], checking the run's deadline and cancel flag
//! between slices, and traps with the limit when either fires. Errors are WASI's: no
//! subscription, an unknown clock or subscription type is `inval`; a pointer outside
//! memory or misaligned is `fault`. One difference from wasmtime-wasi: a descriptor
//! subscription is not checked against the descriptor table (an unknown fd is reported
//! ready rather than `badf`; the read or write that follows gets `badf`).
//!
//! Layouts are WASI preview 1's (`witx/wasi_snapshot_preview1.witx`): a `subscription`
//! is 48 bytes, 8-aligned (userdata u64 at 0, tag u8 at 8, and for a clock: id u32 at
//! 16, timeout u64 at 24, precision u64 at 32, flags u16 at 40); an `event` is 32
//! bytes (userdata u64 at 0, errno u16 at 8, type u8 at 10, nbytes u64 at 16, flags
//! u16 at 24).

use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::error::WASI_P1_MODULE;
use crate::run::RunState;

/// Longest uninterrupted sleep: how late a deadline or a cancel is noticed while a
/// module sleeps (the same order as the epoch tick that bounds it in wasm code).
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(10);

const SUBSCRIPTION_BYTES: usize = 48;
const EVENT_BYTES: usize = 32;
/// Subscriptions read here at most; a longer list is left to wasmtime-wasi.
const MAX_SUBSCRIPTIONS: usize = 64;
const TAG_CLOCK: u8 = 0;
const TAG_FD_READ: u8 = 1;
const TAG_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;
const ERRNO_SUCCESS: i32 = 0;
/// WASI's `inval` errno: no subscription, or an unknown clock or subscription type.
const ERRNO_INVAL: i32 = 28;
/// WASI's `fault` errno: a pointer outside the guest's memory, or misaligned.
const ERRNO_FAULT: i32 = 21;

/// The guest's monotonic clock: nanoseconds since the run's store was made. Given to
/// WASI so that an absolute monotonic timeout can be turned back into an [`Instant`].
#[derive(Clone, Copy)]
pub(crate) struct RunClock {
    origin: Instant,
}

impl RunClock {
    /// A clock that reads 0 now.
    pub(crate) fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The instant the guest's clock reads `nanos`.
    fn instant_at(self, nanos: u64) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(nanos))
    }
}

impl wasmtime_wasi::HostMonotonicClock for RunClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Replaces `poll_oneoff` in `linker` (which has WASI preview 1) with this module's.
pub(crate) fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI_P1_MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, RunState>,
              subs: i32,
              events: i32,
              count: i32,
              nevents: i32|
              -> wasmtime::Result<i32> {
            match subscriptions(&mut caller, subs, count) {
                Ok(subs) => wait_and_report(&mut caller, &subs, events, nevents),
                Err(errno) => Ok(errno),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One subscription, resolved to a host instant (`None`: never).
struct Clock {
    userdata: u64,
    /// The subscription's type, which is also its event's type.
    tag: u8,
    wake: Option<Instant>,
}

/// The guest's memory export.
fn memory(caller: &mut Caller<'_, RunState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// The subscriptions of a call, or the errno that answers it.
fn subscriptions(
    caller: &mut Caller<'_, RunState>,
    subs: i32,
    count: i32,
) -> Result<Vec<Clock>, i32> {
    let count = usize::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_SUBSCRIPTIONS).contains(n))
        .ok_or(ERRNO_INVAL)?;
    let base = usize::try_from(subs)
        .ok()
        .filter(|p| p.is_multiple_of(8))
        .ok_or(ERRNO_FAULT)?;
    let memory = memory(caller).ok_or(ERRNO_FAULT)?;
    let mut raw = vec![0u8; count * SUBSCRIPTION_BYTES];
    memory
        .read(&*caller, base, &mut raw)
        .map_err(|_| ERRNO_FAULT)?;
    let clock = caller.data().clock();
    let mut clocks = Vec::with_capacity(count);
    for sub in raw.chunks_exact(SUBSCRIPTION_BYTES) {
        let field = |at: usize| -> [u8; 8] {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&sub[at..at + 8]);
            bytes
        };
        let userdata = u64::from_le_bytes(field(0));
        let tag = sub[8];
        let now = Instant::now();
        if tag == TAG_FD_READ || tag == TAG_FD_WRITE {
            clocks.push(Clock {
                userdata,
                tag,
                wake: Some(now),
            });
            continue;
        }
        if tag != TAG_CLOCK {
            return Err(ERRNO_INVAL);
        }
        let id = u32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
        let timeout = u64::from_le_bytes(field(24));
        let flags = u16::from_le_bytes([sub[40], sub[41]]);
        let absolute = flags & SUBCLOCK_ABSTIME != 0;
        let wake = match (id, absolute) {
            (CLOCK_MONOTONIC | CLOCK_REALTIME, false) => {
                now.checked_add(Duration::from_nanos(timeout))
            }
            (CLOCK_MONOTONIC, true) => clock.instant_at(timeout),
            (CLOCK_REALTIME, true) => {
                let since_epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                let left = Duration::from_nanos(timeout).saturating_sub(since_epoch);
                now.checked_add(left)
            }
            _ => return Err(ERRNO_INVAL),
        };
        clocks.push(Clock {
            userdata,
            tag,
            wake,
        });
    }
    Ok(clocks)
}

/// Waits for the earliest of `clocks`, or traps when the run's deadline passes or it is
/// cancelled; then writes an event per clock that fired and their count.
fn wait_and_report(
    caller: &mut Caller<'_, RunState>,
    clocks: &[Clock],
    events: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let earliest = clocks.iter().filter_map(|c| c.wake).min();
    loop {
        if let Some(stop) = caller.data().stop_reason() {
            return Err(wasmtime::Error::new(stop));
        }
        let now = Instant::now();
        if earliest.is_some_and(|at| at <= now) {
            break;
        }
        let left = earliest.map_or(WAIT_SLICE, |at| at.saturating_duration_since(now));
        std::thread::sleep(left.min(WAIT_SLICE));
    }
    let now = Instant::now();
    let fired: Vec<&Clock> = clocks
        .iter()
        .filter(|c| c.wake.is_some_and(|at| at <= now))
        .collect();
    let Some(memory) = memory(caller) else {
        return Ok(ERRNO_FAULT);
    };
    let mut raw = vec![0u8; fired.len() * EVENT_BYTES];
    for (event, sub) in raw.chunks_exact_mut(EVENT_BYTES).zip(&fired) {
        event[0..8].copy_from_slice(&sub.userdata.to_le_bytes());
        event[10] = sub.tag;
        if sub.tag != TAG_CLOCK {
            // nbytes: at least one byte can be read or written.
            event[16] = 1;
        }
    }
    let count = u32::try_from(fired.len()).unwrap_or(u32::MAX);
    let (Ok(events), Ok(nevents)) = (usize::try_from(events), usize::try_from(nevents)) else {
        return Ok(ERRNO_FAULT);
    };
    if !events.is_multiple_of(8)
        || !nevents.is_multiple_of(4)
        || memory.write(&mut *caller, events, &raw).is_err()
        || memory
            .write(&mut *caller, nevents, &count.to_le_bytes())
            .is_err()
    {
        return Ok(ERRNO_FAULT);
    }
    Ok(ERRNO_SUCCESS)
}
