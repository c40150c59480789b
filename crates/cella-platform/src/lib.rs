//! Cella's service logic, free of any wire protocol: authentication, the policy engine,
//! management of functions, files and tasks, the scheduler and its execution workers,
//! and the audit trail.
//!
//! Data flows one way: a frontend (the gRPC server) calls [`Platform`]; the platform
//! persists state in the metadata store, queues tasks, and its workers run them through
//! the [`cella_executor::Executor`] trait. Every state change is checked by
//! [`cella_types::Task`]'s state machine, persisted before it is acknowledged, and
//! audited in the same transaction.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
mod fair;
pub mod files;
pub mod functions;
mod hashing;
pub mod observe;
pub mod page;
mod policy;
pub mod scheduler;
pub mod tasks;
mod worker;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use cella_crypto::SealingKey;
use cella_executor::Executors;
use cella_store::{BlobStore, MetaStore};

pub use auth::{Caller, Login};
pub use config::NodeConfig;
pub use error::{PlatformError, Result};

use crate::auth::TokenKey;
use crate::hashing::HashLimiter;
use crate::scheduler::Scheduler;

/// A Cella node's service logic over its stores and executors.
pub struct Platform {
    config: NodeConfig,
    store: MetaStore,
    blobs: BlobStore,
    token_key: TokenKey,
    executors: Executors,
    sched: Scheduler,
    hashing: HashLimiter,
    /// Where events go for metrics ([`Platform::observe`]); unset: nowhere.
    observer: std::sync::OnceLock<Arc<dyn observe::Observer>>,
    /// The node's attested key for audit checkpoints, once the node has one.
    audit_signer: std::sync::RwLock<Option<Arc<cella_attest::renew::CertResolver>>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Opens (or creates) the node state in `config.data_dir`: the sealing key, the
    /// metadata store, the blob store and the token key; creates the first admin on
    /// first start; recovers tasks that were running when the node last stopped.
    ///
    /// Workers are not started: call [`Platform::start_workers`].
    ///
    /// # Errors
    ///
    /// [`PlatformError::Node`] naming the file or directory that failed.
    pub fn open(config: NodeConfig, executors: Executors) -> Result<Arc<Self>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|e| {
                PlatformError::node_because(
                    format!("cannot create data dir {}", config.data_dir.display()),
                    e,
                )
            })?;
        let key = SealingKey::load_or_create(&config.sealing_key_path())
            .map_err(|e| PlatformError::node_because("sealing key", e))?;
        let store = match &config.store_url {
            None => MetaStore::open(&config.meta_path(), key)?,
            Some(url) => {
                let path = config.store_password_path();
                // The buffer read is the one wiped: no unwiped copy of the password.
                let password = match std::fs::read(&path) {
                    Ok(p) => Some(zeroize::Zeroizing::new(p)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => {
                        return Err(PlatformError::node_because(
                            format!("reading {}", path.display()),
                            e,
                        ));
                    }
                };
                MetaStore::connect_postgres(url, password.as_deref().map(|p| p.trim_ascii()), key)?
            }
        };
        let blobs = BlobStore::open_at(&config.blobs, &config.blob_dir())?;
        let token_key = TokenKey::load_or_create(&store)?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let hashing = HashLimiter::new(hashing::slots_for(config.password_hash_memory, cores));
        let sched = Scheduler::new(config.running_cap_per_user());
        let platform = Arc::new(Self {
            config,
            store,
            blobs,
            token_key,
            executors,
            sched,
            hashing,
            observer: std::sync::OnceLock::new(),
            audit_signer: std::sync::RwLock::new(None),
        });
        platform.start_audit_chain()?;
        platform.bootstrap_admin()?;
        platform.recover()?;
        Ok(platform)
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The executor kinds this node runs.
    pub fn executor_kinds(&self) -> Vec<cella_types::ExecutorKind> {
        self.executors.kinds().collect()
    }
}

/// Milliseconds since the Unix epoch, by the node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
