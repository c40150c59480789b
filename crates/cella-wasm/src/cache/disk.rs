//! The on-disk half of the module cache: `<dir>/<payload digest>.cwasm`, each file a
//! compiled module as `Module::serialize` wrote it, sealed with the node's
//! [`SealingKey`] (AES-256-GCM) under associated data that names the payload digest.
//!
//! Trust argument: `Module::deserialize` maps its input as executable machine code, so
//! it must only ever see bytes that this node's wasmtime serialised. A file is
//! deserialised only after it unsealed under the node's sealing key with the associated
//! data of the digest asked for, which proves it was written by a holder of that key
//! (this node, which only seals `Module::serialize` output of a module that passed
//! [`crate::check`]) for that very payload: not altered, not truncated, and not another
//! payload's file renamed. [`Authenticated`] carries that proof to the one `unsafe` call.
//! A file written by another wasmtime version or configuration still authenticates;
//! wasmtime's own header check refuses it, and it is recompiled.
//!
//! Anything wrong with a file (unreadable, fails authentication, refused by wasmtime)
//! is logged, the file removed, and the module recompiled: the cache is an optimisation,
//! never a source of truth.

use std::fs::DirBuilder;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

use cella_crypto::SealingKey;
use cella_types::Digest;
use wasmtime::{Engine, Module};

use crate::config::DiskCache;

/// Prefix of the associated data of a cache file; the version changes with the format.
const CACHE_AAD_PREFIX: &[u8] = b"cella-wasm-module-v1\0";
/// File name extension of a cache file.
const CACHE_EXT: &str = "cwasm";

/// Bytes that unsealed under the node's sealing key as the serialised module of one
/// payload digest. Only [`DiskStore::load`] makes one.
pub(crate) struct Authenticated(Vec<u8>);

/// What a cache lookup found.
pub(crate) enum Loaded {
    /// No file for this digest.
    Missing,
    /// An authenticated file, deserialised.
    Module(Module),
    /// A file that was not used (the reason is logged, the file removed).
    Rejected,
}

/// Cache files in one directory, sealed under one key.
pub(crate) struct DiskStore {
    dir: PathBuf,
    key: Arc<SealingKey>,
}

impl DiskStore {
    /// Opens (creating, mode 0700) the cache directory.
    ///
    /// # Errors
    ///
    /// The directory cannot be created.
    pub(crate) fn open(cache: &DiskCache) -> io::Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache.dir)?;
        Ok(Self {
            dir: cache.dir.clone(),
            key: Arc::clone(&cache.key),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.{CACHE_EXT}", digest.to_hex()))
    }

    /// Loads the compiled module of `digest`, if an authentic file holds it.
    pub(crate) fn load(&self, engine: &Engine, digest: &Digest) -> Loaded {
        let path = self.path(digest);
        let sealed = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return self.reject(digest, format!("cannot read: {e}")),
        };
        let authentic = match self.key.unseal(&aad(digest), &sealed) {
            Ok(plain) => Authenticated(plain),
            Err(e) => return self.reject(digest, e.to_string()),
        };
        drop(sealed);
        match deserialize_authenticated(engine, authentic) {
            Ok(module) => Loaded::Module(module),
            Err(e) => self.reject(digest, format!("wasmtime refused it: {e:#}")),
        }
    }

    fn reject(&self, digest: &Digest, reason: String) -> Loaded {
        let path = self.path(digest);
        tracing::warn!(path = %path.display(), %reason, "ignoring a wasm cache file");
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a wasm cache file");
        }
        Loaded::Rejected
    }

    /// Seals and writes `module` as the compiled module of `digest`, atomically (a
    /// temporary file renamed into place).
    ///
    /// # Errors
    ///
    /// A message saying what failed; the caller logs it and carries on uncached.
    pub(crate) fn store(&self, digest: &Digest, module: &Module) -> Result<(), String> {
        let serialized = module
            .serialize()
            .map_err(|e| format!("cannot serialise the module: {e:#}"))?;
        let sealed = self.key.seal(&aad(digest), &serialized);
        drop(serialized);
        let path = self.path(digest);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| format!("cannot create a file in {}: {e}", self.dir.display()))?;
        tmp.write_all(&sealed)
            .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
        tmp.persist(&path)
            .map_err(|e| format!("cannot rename into {}: {}", path.display(), e.error))?;
        Ok(())
    }

    /// The cache file of `digest` (for tests that tamper with it).
    #[cfg(test)]
    pub(crate) fn file_of(&self, digest: &Digest) -> PathBuf {
        self.path(digest)
    }
}

/// The associated data that binds a cache file to its payload digest.
fn aad(digest: &Digest) -> Vec<u8> {
    let mut aad = CACHE_AAD_PREFIX.to_vec();
    aad.extend_from_slice(digest.to_hex().as_bytes());
    aad
}

/// Deserialises a compiled module from authenticated cache bytes.
#[allow(
    unsafe_code,
    reason = "Module::deserialize trusts its input; Authenticated proves where it came from"
)]
fn deserialize_authenticated(engine: &Engine, bytes: Authenticated) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize` of a
    // compatible wasmtime. `Authenticated` is only built from a file that unsealed under
    // the node's sealing key with this digest's associated data, and the node seals only
    // `Module::serialize` output (`DiskStore::store`); so the bytes are such output,
    // unmodified. Version or configuration mismatches are detected by wasmtime's header
    // check and returned as errors.
    unsafe { Module::deserialize(engine, &bytes.0) }
}
