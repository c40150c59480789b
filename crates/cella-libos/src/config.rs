//! The node's LibOS configuration file (`--libos-config`, TOML): the backend, the pool
//! sizes, and the runtime images the node offers.
//!
//! ```toml
//! backend = "mock"            # the only backend so far; "sandbox" and "gramine" come later
//!
//! [pool]                      # optional
//! warm = 2                    # idle attested instances kept per runtime image
//! max = 8                     # most instances per runtime image
//!
//! [[runtime]]
//! name = "native"
//! argv = ["./program"]        # run in the workload directory, where the payload is `program`
//! files = []                  # [{ path = "...", sha256 = "<64 hex>" }], measured
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::attest::ExecutorAttestation;
use crate::executor::{ExecutorConfig, LibosExecutor, SetupError};
use crate::image::RuntimeImage;
use crate::pool::PoolConfig;

/// Largest configuration file read: a runtime image lists its files, and a Python
/// standard library is a few thousand of them; 4 MiB is plenty.
const MAX_CONFIG_LEN: u64 = 4 << 20;

/// Which backend launches instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// In-process instances running script workloads: development and tests only. It
    /// isolates nothing and runs no real program.
    Mock,
}

/// Pool sizes as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Idle attested instances kept per runtime image.
    pub warm: usize,
    /// Most instances per runtime image.
    pub max: usize,
}

/// The node's LibOS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibosConfig {
    /// The backend.
    pub backend: BackendKind,
    /// Pool sizes; [`PoolConfig::default`] if absent.
    #[serde(default)]
    pub pool: Option<PoolSection>,
    /// The runtime images offered.
    #[serde(default, rename = "runtime")]
    pub runtimes: Vec<RuntimeImage>,
}

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading LibOS configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("LibOS configuration {path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The content is invalid.
    #[error("LibOS configuration: {0}")]
    Invalid(String),
}

impl LibosConfig {
    /// Parses a configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the problem.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if config.runtimes.is_empty() {
            return Err(ConfigError::Invalid("no [[runtime]] is declared".into()));
        }
        for image in &config.runtimes {
            image.validate().map_err(ConfigError::Invalid)?;
        }
        Ok(config)
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|source| ConfigError::Io {
                path: shown.clone(),
                source,
            })?
            .len();
        if len > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: shown,
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The executor this configuration describes, with a fresh simulation key of its
    /// own (lost when the process ends; a node passes its persistent key to
    /// [`LibosConfig::build_with`]).
    ///
    /// # Errors
    ///
    /// [`SetupError`] if it cannot be set up.
    pub fn build(&self) -> Result<LibosExecutor, SetupError> {
        let hardware =
            cella_attest::sim::SimSigner::generate().map_err(|e| SetupError(e.to_string()))?;
        self.build_with(ExecutorAttestation::simulated(
            std::sync::Arc::new(hardware),
            cella_attest::Measurement::sha256(b"cella-libos executor (unmeasured)"),
        ))
    }

    /// The executor this configuration describes, attesting with `attestation`.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if it cannot be set up.
    pub fn build_with(
        &self,
        attestation: ExecutorAttestation,
    ) -> Result<LibosExecutor, SetupError> {
        let pool = self.pool.map_or_else(PoolConfig::default, |p| PoolConfig {
            warm: p.warm,
            max: p.max,
        });
        let config = ExecutorConfig {
            pool,
            ..ExecutorConfig::default()
        };
        match self.backend {
            BackendKind::Mock => {
                crate::mock::executor_with(self.runtimes.clone(), config, attestation)
                    .map(|(e, _)| e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = LibosConfig::from_toml_str(
            "backend = \"mock\"\n[pool]\nwarm = 1\nmax = 3\n[[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
        )
        .unwrap();
        assert_eq!(c.backend, BackendKind::Mock);
        assert_eq!(c.pool, Some(PoolSection { warm: 1, max: 3 }));
        assert_eq!(c.runtimes, vec![RuntimeImage::native()]);
        for bad in [
            "backend = \"gramine\"\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
            "backend = \"mock\"\n",
            "backend = \"mock\"\n[[runtime]]\nname = \"../n\"\nargv = [\"x\"]\n",
            "backend = \"mock\"\nextra = 1\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
        ] {
            assert!(LibosConfig::from_toml_str(bad).is_err(), "{bad}");
        }
    }
}
