//! The compiled-module cache, keyed by payload digest: a bounded in-memory LRU of
//! ready-to-instantiate modules ([`Prepared`]: an `InstancePre` with WASI linked), in
//! front of sealed files on disk ([`disk`]).
//!
//! Invariants: an entry under digest `d` was compiled from bytes whose SHA-256 is `d`
//! (checked before compiling) or loaded from an authenticated cache file for `d`; and
//! every entry passed [`check_module`]. Compiles are counted ([`CacheStats`]) so that
//! tests and operators can see the cache working.
//!
//! Two runs that miss on the same digest at once may both compile; the second insert
//! replaces the first. Registration compiles before any task can run, so this is rare.

pub(crate) mod disk;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cella_types::Digest;
use wasmtime::{Engine, InstancePre, Linker, Module};

use crate::check::check_module;
use crate::config::WasmConfig;
use crate::error::PayloadError;
use crate::run::RunState;
use disk::{DiskStore, Loaded};

/// A module ready to instantiate.
pub(crate) struct Prepared {
    /// The module with its WASI imports resolved.
    pub(crate) pre: InstancePre<RunState>,
    /// Size of the payload it was compiled from, for the cache's byte bound.
    pub(crate) payload_len: u64,
}

/// Counters of the module cache, since the executor was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules compiled from their payload.
    pub compiles: u64,
    /// Lookups answered from memory.
    pub memory_hits: u64,
    /// Lookups answered by deserialising an authenticated cache file.
    pub disk_hits: u64,
    /// Cache files refused (failed authentication, unreadable, or refused by
    /// wasmtime) and removed.
    pub disk_rejected: u64,
}

#[derive(Default)]
struct Counters {
    compiles: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    disk_rejected: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Why a module could not be made ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// The payload is refused.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The payload given does not hash to the digest it was given with.
    #[error("the payload does not match its digest {digest}")]
    DigestMismatch {
        /// The claimed digest.
        digest: Digest,
    },
}

/// The module cache of one executor.
pub(crate) struct ModuleCache {
    memory: Mutex<Lru>,
    disk: Option<DiskStore>,
    counters: Counters,
}

impl ModuleCache {
    /// A cache bounded by `config`, with `disk` behind it.
    pub(crate) fn new(config: &WasmConfig, disk: Option<DiskStore>) -> Self {
        Self {
            memory: Mutex::new(Lru::new(
                config.memory_cache_entries,
                config.memory_cache_bytes,
            )),
            disk,
            counters: Counters::default(),
        }
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            disk_rejected: c.disk_rejected.load(Ordering::Relaxed),
        }
    }

    /// The disk store, if any.
    #[cfg(test)]
    pub(crate) fn disk(&self) -> Option<&DiskStore> {
        self.disk.as_ref()
    }

    /// The ready module for `digest`: from memory, else from disk, else compiled from
    /// `payload` (after checking that it hashes to `digest`, unless `payload_verified`).
    ///
    /// # Errors
    ///
    /// [`PrepareError`]: the payload is refused or does not match its digest.
    pub(crate) fn get_or_prepare(
        &self,
        engine: &Engine,
        linker: &Linker<RunState>,
        config: &WasmConfig,
        digest: &Digest,
        payload: &[u8],
        payload_verified: bool,
    ) -> Result<Arc<Prepared>, PrepareError> {
        if let Some(hit) = self.lock().get(digest) {
            bump(&self.counters.memory_hits);
            return Ok(hit);
        }
        let payload_len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        if let Some(disk) = &self.disk {
            match disk.load(engine, digest) {
                Loaded::Module(module) => match prepare(&module, linker, config) {
                    Ok(pre) => {
                        bump(&self.counters.disk_hits);
                        tracing::debug!(%digest, "wasm module loaded from the disk cache");
                        return Ok(self.insert(digest, pre, payload_len));
                    }
                    // Authentic, so written by this node when the module passed: the
                    // limits must have changed since. Recompile to report why.
                    Err(e) => {
                        tracing::info!(%digest, reason = %e, "cached wasm module no longer passes");
                    }
                },
                Loaded::Rejected => {
                    bump(&self.counters.disk_rejected);
                }
                Loaded::Missing => {}
            }
        }
        if !payload_verified && Digest::of(payload) != *digest {
            return Err(PrepareError::DigestMismatch { digest: *digest });
        }
        let started = Instant::now();
        // A payload is a WebAssembly binary or its text format (WAT); a binary passes
        // through unchanged. Function owners may register either; the digest is of
        // what they registered.
        let binary = wat::parse_bytes(payload).map_err(|e| PayloadError::Invalid {
            reason: format!("neither a WebAssembly binary nor valid WAT text: {e}"),
        })?;
        // Validation first, so that "not WebAssembly" and "over this node's limits"
        // (which the pooling allocator checks when the module is created) read apart.
        Module::validate(engine, &binary).map_err(|e| PayloadError::Invalid {
            reason: format!("{e:#}"),
        })?;
        let module = Module::new(engine, &binary).map_err(|e| PayloadError::Unsupported {
            reason: format!("{e:#}"),
        })?;
        let compiles = bump(&self.counters.compiles);
        tracing::debug!(
            %digest,
            bytes = payload.len(),
            elapsed_ms = started.elapsed().as_millis(),
            compiles,
            "compiled wasm module"
        );
        let pre = prepare(&module, linker, config)?;
        if let Some(disk) = &self.disk
            && let Err(reason) = disk.store(digest, &module)
        {
            tracing::warn!(%digest, %reason, "cannot write the wasm disk cache");
        }
        Ok(self.insert(digest, pre, payload_len))
    }

    fn insert(
        &self,
        digest: &Digest,
        pre: InstancePre<RunState>,
        payload_len: u64,
    ) -> Arc<Prepared> {
        let prepared = Arc::new(Prepared { pre, payload_len });
        self.lock().insert(*digest, Arc::clone(&prepared));
        prepared
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks `module` and links WASI into it.
fn prepare(
    module: &Module,
    linker: &Linker<RunState>,
    config: &WasmConfig,
) -> Result<InstancePre<RunState>, PayloadError> {
    check_module(module, config)?;
    linker
        .instantiate_pre(module)
        .map_err(|e| PayloadError::Link {
            reason: format!("{e:#}"),
        })
}

/// Least-recently-used map bounded by entries and by payload bytes.
struct Lru {
    entries: BTreeMap<Digest, (Arc<Prepared>, u64)>,
    clock: u64,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl Lru {
    fn new(max_entries: usize, max_bytes: u64) -> Self {
        Self {
            entries: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn get(&mut self, digest: &Digest) -> Option<Arc<Prepared>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|(p, used)| {
            *used = clock;
            Arc::clone(p)
        })
    }

    fn insert(&mut self, digest: Digest, prepared: Arc<Prepared>) {
        if self.max_entries == 0 {
            return;
        }
        self.clock += 1;
        self.bytes = self.bytes.saturating_add(prepared.payload_len);
        if let Some((old, _)) = self.entries.insert(digest, (prepared, self.clock)) {
            self.bytes = self.bytes.saturating_sub(old.payload_len);
        }
        // Evict the least recently used, never the entry just inserted.
        while self.entries.len() > 1
            && (self.entries.len() > self.max_entries || self.bytes > self.max_bytes)
        {
            let Some(oldest) = self
                .entries
                .iter()
                .filter(|(d, _)| **d != digest)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| *d)
            else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(gone.payload_len);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
