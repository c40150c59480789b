//! One run of a prepared module: the store with its limits, the WASI context that is
//! the module's whole view of the world, and the classification of how the run ended.
//!
//! The module's view: argv is `[function name, "name=value" for each argument in name
//! order]`; the environment is empty; stdin is closed; stdout and stderr go to the task
//! log ([`crate::capture`]); preopens are, in this order (so fds 3, 4, 5),
//! `/cella/inputs` (read-only), `/cella/outputs` (read-write) and `/cella` (read-only,
//! holding `task.json`); no sockets. Clocks and randomness are WASI's defaults.
//!
//! Limits, each stopping the run with an error that names it ([`LimitExceeded`]):
//! the memory cap and table cap through the store's [`ResourceLimiter`] (growing past
//! them traps rather than returning -1, so the failure says which limit), the instance,
//! memory and table counts through the same limiter, and the deadline, output sizes and
//! cancellation through the epoch callback, which runs on the guest's thread at every
//! epoch tick.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cella_executor::{ExecutionError, IoError, IoLimits, LogBuffer};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::Prepared;
use crate::capture::Capture;
use crate::config::{MAX_INSTANCES_PER_RUN, MAX_MEMORIES_PER_MODULE, MAX_TABLES_PER_MODULE};
use crate::error::LimitExceeded;
use crate::poll::RunClock;
use crate::rundir::{self, GUEST_INPUTS, GUEST_META, GUEST_OUTPUTS, RunDir};

/// Output sizes are checked every this many epoch ticks (50 ms at the default tick):
/// a directory scan per tick would cost more than the guard is worth, and a module can
/// overshoot the limit on tmpfs by at most what it writes in that time.
const OUTPUT_CHECK_TICKS: u64 = 5;

/// Stands in for a deadline too far away to add to an `Instant` (a year).
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The store's data: the WASI context, the limiter and the watch.
pub(crate) struct RunState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    watch: Watch,
    clock: RunClock,
}

impl RunState {
    /// The WASI context, for the linker.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    /// The guest's monotonic clock.
    pub(crate) fn clock(&self) -> RunClock {
        self.clock
    }

    /// Why the run must stop now (cancelled, or past its deadline), if it must.
    pub(crate) fn stop_reason(&self) -> Option<LimitExceeded> {
        self.watch.stop_reason()
    }

    /// A state with an empty WASI context, default caps and no deadline, for
    /// instances that run nothing ([`crate::CachedModule::instantiate_idle`]).
    pub(crate) fn empty() -> Self {
        Self {
            wasi: WasiCtxBuilder::new().build_p1(),
            limiter: Limiter {
                memory_bytes: crate::config::DEFAULT_MEMORY_LIMIT_BYTES,
                table_elements: crate::config::DEFAULT_MAX_TABLE_ELEMENTS,
            },
            watch: Watch {
                deadline_at: Instant::now() + Duration::from_secs(3600),
                deadline: Duration::from_secs(3600),
                outputs: PathBuf::new(),
                declared: BTreeSet::new(),
                output_limits: IoLimits::per_slot(0),
                ticks: 0,
                cancel: Arc::new(AtomicBool::new(false)),
            },
            clock: RunClock::start(),
        }
    }
}

/// The memory and table caps of one run.
struct Limiter {
    memory_bytes: u64,
    table_elements: u32,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = u64::try_from(desired).unwrap_or(u64::MAX);
        if requested > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                limit: self.memory_bytes,
                requested,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = u64::try_from(desired).unwrap_or(u64::MAX);
        if requested > u64::from(self.table_elements) {
            return Err(wasmtime::Error::new(LimitExceeded::TableElements {
                limit: self.table_elements,
                requested,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES_PER_RUN
    }

    fn tables(&self) -> usize {
        usize::try_from(MAX_TABLES_PER_MODULE).unwrap_or(usize::MAX)
    }

    fn memories(&self) -> usize {
        usize::try_from(MAX_MEMORIES_PER_MODULE).unwrap_or(usize::MAX)
    }
}

/// What the epoch callback checks.
struct Watch {
    deadline_at: Instant,
    deadline: Duration,
    outputs: PathBuf,
    declared: BTreeSet<String>,
    output_limits: IoLimits,
    ticks: u64,
    cancel: Arc<AtomicBool>,
}

impl Watch {
    fn stop_reason(&self) -> Option<LimitExceeded> {
        if self.cancel.load(Ordering::Relaxed) {
            return Some(LimitExceeded::Cancelled);
        }
        (Instant::now() >= self.deadline_at).then_some(LimitExceeded::Deadline {
            limit: self.deadline,
        })
    }

    fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if let Some(stop) = self.stop_reason() {
            return Err(wasmtime::Error::new(stop));
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(OUTPUT_CHECK_TICKS) {
            rundir::check_outputs(&self.outputs, &self.declared, self.output_limits)
                .map_err(wasmtime::Error::new)?;
        }
        Ok(UpdateDeadline::Continue(1))
    }
}

/// What a run needs besides the module and its directory.
pub(crate) struct RunSpec<'a> {
    /// argv.
    pub(crate) argv: Vec<String>,
    /// The declared output slots.
    pub(crate) output_slots: Vec<&'a str>,
    /// The per-slot and total output caps.
    pub(crate) output_limits: IoLimits,
    /// When the task's time started.
    pub(crate) started: Instant,
    /// The task's deadline.
    pub(crate) deadline: Duration,
    /// Set when the caller gave up on the run.
    pub(crate) cancel: Arc<AtomicBool>,
    /// The memory cap.
    pub(crate) memory_limit_bytes: u64,
    /// The table cap.
    pub(crate) max_table_elements: u32,
}

/// A run that ended well.
pub(crate) struct Finished {
    /// Its log.
    pub(crate) log: LogBuffer,
    /// The outputs it wrote, by declared slot.
    pub(crate) outputs: BTreeMap<String, Vec<u8>>,
}

/// Builds the store for one run: WASI context, limiter, epoch callback.
fn store(
    engine: &Engine,
    dir: &RunDir,
    spec: &RunSpec<'_>,
    capture: &Capture,
) -> Result<Store<RunState>, ExecutionError> {
    let clock = RunClock::start();
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&spec.argv)
        .monotonic_clock(clock)
        .stdout(capture.stdout())
        .stderr(capture.stderr())
        // File operations run on this (blocking) thread rather than hopping to tokio.
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let preopens = [
        (dir.inputs(), GUEST_INPUTS, FsPerms::ReadOnly),
        (dir.outputs(), GUEST_OUTPUTS, FsPerms::ReadWrite),
        (dir.meta(), GUEST_META, FsPerms::ReadOnly),
    ];
    for (host, guest, perms) in preopens {
        wasi.preopened_dir(&host, guest, perms).map_err(|e| {
            ExecutionError::internal(format!("cannot preopen {}: {e:#}", host.display()))
        })?;
    }
    let state = RunState {
        wasi: wasi.build_p1(),
        limiter: Limiter {
            memory_bytes: spec.memory_limit_bytes,
            table_elements: spec.max_table_elements,
        },
        watch: Watch {
            // A deadline too far to represent is no deadline: a far-off instant.
            deadline_at: spec
                .started
                .checked_add(spec.deadline)
                .unwrap_or_else(|| spec.started + FAR_FUTURE),
            deadline: spec.deadline,
            outputs: dir.outputs(),
            declared: spec.output_slots.iter().map(|s| (*s).to_owned()).collect(),
            output_limits: spec.output_limits,
            ticks: 0,
            cancel: Arc::clone(&spec.cancel),
        },
        clock,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| cx.data_mut().watch.on_tick());
    Ok(store)
}

/// Runs `prepared` in `dir` and reads its outputs back.
///
/// # Errors
///
/// [`ExecutionError::DeadlineExceeded`] for the deadline; [`ExecutionError::Io`] for an
/// output over its limit; [`ExecutionError::Function`] for a trap (with the trap's
/// message), a non-zero exit (`exit status N`, then the last lines of stderr), another
/// limit (naming it) or an undeclared output file; [`ExecutionError::Internal`] when
/// the node fails (no free instance slot, I/O errors on the run directory).
pub(crate) fn run(
    engine: &Engine,
    prepared: &Prepared,
    dir: &RunDir,
    spec: &RunSpec<'_>,
) -> Result<Finished, ExecutionError> {
    let capture = Capture::new();
    let mut store = store(engine, dir, spec, &capture)?;
    let ended = match prepared.pre.instantiate(&mut store) {
        Ok(instance) => instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| ExecutionError::internal(format!("`_start` vanished: {e:#}")))?
            .call(&mut store, ())
            .map_err(|e| failure(&e, Stage::Run)),
        Err(e) => Err(failure(&e, Stage::Instantiate)),
    };
    // Close the guest's files before reading them.
    drop(store);
    let (log, stderr_tail) = capture.finish();
    match ended {
        Ok(()) | Err(Failure::Exit(0)) => {}
        Err(Failure::Exit(status)) => return Err(exit_error(status, &stderr_tail)),
        Err(Failure::Error(e)) => return Err(e),
    }
    let declared = spec.output_slots.iter().map(|s| (*s).to_owned()).collect();
    let outputs = rundir::read_outputs(&dir.outputs(), &declared, spec.output_limits).map_err(
        |e| match e {
            rundir::ReadOutputsError::Limit(limit) => limit_error(limit),
            rundir::ReadOutputsError::Io(e) => ExecutionError::internal(e.to_string()),
        },
    )?;
    Ok(Finished { log, outputs })
}

/// Where a wasmtime error came from.
#[derive(Clone, Copy)]
enum Stage {
    Instantiate,
    Run,
}

/// How a run that did not return ended.
enum Failure {
    /// `proc_exit(status)`.
    Exit(i32),
    /// Anything else, classified.
    Error(ExecutionError),
}

/// Classifies a wasmtime error: exit, limit, trap, or (by stage) the module's or the
/// node's fault.
fn failure(e: &wasmtime::Error, stage: Stage) -> Failure {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Failure::Exit(exit.0);
    }
    if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
        return Failure::Error(limit_error(limit.clone()));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let place = e
            .downcast_ref::<WasmBacktrace>()
            .and_then(|bt| bt.frames().first())
            .map(|frame| match frame.func_name() {
                Some(name) => format!(" in function {name}"),
                None => format!(" in function #{}", frame.func_index()),
            })
            .unwrap_or_default();
        return Failure::Error(ExecutionError::function(format!(
            "wasm trap: {trap}{place}"
        )));
    }
    match stage {
        // A failed instantiation that is neither a trap nor a limit: the pooling
        // allocator is full or the host is out of memory. Not the module's fault.
        Stage::Instantiate => Failure::Error(ExecutionError::internal(format!(
            "cannot instantiate the module: {e:#}"
        ))),
        Stage::Run => Failure::Error(ExecutionError::function(format!(
            "the module failed: {e:#}"
        ))),
    }
}

/// The error for a limit hit.
fn limit_error(limit: LimitExceeded) -> ExecutionError {
    match limit {
        LimitExceeded::Deadline { limit } => ExecutionError::DeadlineExceeded { limit },
        LimitExceeded::Output { file, size, limit } => {
            ExecutionError::Io(IoError::OutputTooLarge {
                slot: file,
                size,
                limit,
            })
        }
        LimitExceeded::Cancelled => ExecutionError::internal("the run was cancelled"),
        other => ExecutionError::function(other.to_string()),
    }
}

/// The error for a non-zero exit: the status, then the last lines of stderr.
fn exit_error(status: i32, stderr_tail: &[String]) -> ExecutionError {
    let mut message = format!("exit status {status}");
    if !stderr_tail.is_empty() {
        message.push_str("; last lines of stderr:");
        for line in stderr_tail {
            message.push_str("\n  ");
            message.push_str(line);
        }
    }
    ExecutionError::function(message)
}
