//! The `[gramine]` section of the node's LibOS configuration (`backend = "gramine"`).
//!
//! ```toml
//! backend = "gramine"
//!
//! [gramine]
//! mode = "sgx"                      # or "direct" (no quotes: needs allow_simulation = true)
//! signing_key = "/etc/cella/enclave-key.pem"   # RSA-3072, exponent 3 (gramine-sgx-gen-private-key)
//! enclave_size = "2G"               # sgx.enclave_size
//! max_threads = 16                  # sgx.max_threads
//! edmm_enable = false               # sgx.edmm_enable
//! debug = false                     # sgx.debug: never true in production
//! accepted_tcb_statuses = ["UpToDate"]
//! collateral = "/etc/cella/sgx-collateral.json"  # DCAP collateral of this platform
//! # gramine_sgx, gramine_direct, sgx_sign, sigstruct_view: the tools (default: on PATH)
//! # libos: Gramine's libsysdb.so (default: the Debian/Ubuntu package's path)
//! # preload: the pre-load module (default: cella-preload next to this binary, else this binary)
//! ```

use std::path::{Path, PathBuf};

use cella_attest::dcap::TcbStatus;
use serde::Deserialize;

/// Where the Debian and Ubuntu packages of Gramine install the LibOS
/// (`gramine-manifest`'s `gramine.libos`).
pub const DEFAULT_LIBOS: &str = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so";

/// Which Gramine loader starts instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `gramine-sgx`: an SGX enclave per process, DCAP quotes through `/dev/attestation`.
    #[default]
    Sgx,
    /// `gramine-direct`: Gramine without SGX. It offers no quotes and protects nothing
    /// from the host; instances get simulation evidence from the node, so it is accepted
    /// only with `allow_simulation = true` (debugging a manifest on a machine without SGX).
    Direct,
}

impl Mode {
    /// The loader's name.
    pub fn loader(self) -> &'static str {
        match self {
            Mode::Sgx => "gramine-sgx",
            Mode::Direct => "gramine-direct",
        }
    }
}

/// The `[gramine]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GramineConfig {
    /// The loader.
    #[serde(default)]
    pub mode: Mode,
    /// Accept `mode = "direct"` (simulation evidence). Fail closed: `false` by default.
    #[serde(default)]
    pub allow_simulation: bool,
    /// `gramine-sgx` (default: found on `PATH`).
    pub gramine_sgx: Option<PathBuf>,
    /// `gramine-direct` (default: found on `PATH`).
    pub gramine_direct: Option<PathBuf>,
    /// `gramine-sgx-sign` (default: found on `PATH`).
    pub sgx_sign: Option<PathBuf>,
    /// `gramine-sgx-sigstruct-view` (default: found on `PATH`).
    pub sigstruct_view: Option<PathBuf>,
    /// The enclave signing key (RSA-3072, public exponent 3): required with `mode = "sgx"`.
    pub signing_key: Option<PathBuf>,
    /// Gramine's LibOS, `loader.entrypoint` (default [`DEFAULT_LIBOS`]).
    pub libos: Option<PathBuf>,
    /// The pre-load module (default: `cella-preload` next to the running binary, else the
    /// running binary itself, started under the name `cella-preload`).
    pub preload: Option<PathBuf>,
    /// `sgx.enclave_size`, a size such as `"2G"` (a power of two).
    #[serde(default = "default_enclave_size")]
    pub enclave_size: String,
    /// `sgx.max_threads`.
    #[serde(default = "default_max_threads")]
    pub max_threads: u32,
    /// `sgx.edmm_enable`.
    #[serde(default)]
    pub edmm_enable: bool,
    /// `sgx.debug`: a debug enclave can be read by the host. Never in production.
    #[serde(default)]
    pub debug: bool,
    /// `sys.stack.size` of every thread.
    #[serde(default = "default_stack_size")]
    pub stack_size: String,
    /// `sgx.isvprodid`.
    #[serde(default)]
    pub isv_prod_id: u16,
    /// `sgx.isvsvn`.
    #[serde(default)]
    pub isv_svn: u16,
    /// TCB statuses of this platform the executor accepts in its instances' quotes.
    #[serde(default = "default_tcb_statuses")]
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Intel advisories the executor accepts in its instances' quotes.
    #[serde(default)]
    pub accepted_advisory_ids: Vec<String>,
    /// The DCAP collateral (JSON, as `dcap-qvl` writes it) the executor verifies its
    /// instances' quotes with: required with `mode = "sgx"`.
    pub collateral: Option<PathBuf>,
}

fn default_enclave_size() -> String {
    "2G".into()
}

fn default_max_threads() -> u32 {
    16
}

fn default_stack_size() -> String {
    "2M".into()
}

fn default_tcb_statuses() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate]
}

/// The configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[gramine] configuration: {0}")]
pub struct ConfigError(pub String);

/// Parses a Gramine size (`"512M"`, `"2G"`): digits and a `K`, `M` or `G` suffix.
/// Returns the size in bytes.
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.char_indices().last()? {
        (i, 'K') => (&value[..i], 1u64 << 10),
        (i, 'M') => (&value[..i], 1 << 20),
        (i, 'G') => (&value[..i], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

impl GramineConfig {
    /// Parses the section from its TOML table.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming an unknown key, a wrong type or an invalid value.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a `[gramine]` section written as a TOML document of its own.
    ///
    /// # Errors
    ///
    /// As [`GramineConfig::from_table`].
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        Self::from_table(table)
    }

    /// The defaults, for `mode`.
    pub fn defaults(mode: Mode) -> Self {
        Self {
            mode,
            allow_simulation: mode == Mode::Direct,
            gramine_sgx: None,
            gramine_direct: None,
            sgx_sign: None,
            sigstruct_view: None,
            signing_key: None,
            libos: None,
            preload: None,
            enclave_size: default_enclave_size(),
            max_threads: default_max_threads(),
            edmm_enable: false,
            debug: false,
            stack_size: default_stack_size(),
            isv_prod_id: 0,
            isv_svn: 0,
            accepted_tcb_statuses: default_tcb_statuses(),
            accepted_advisory_ids: Vec::new(),
            collateral: None,
        }
    }

    /// Checks the values that need no file system: sizes, thread count, mode.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_manifest_options()?;
        if self.mode == Mode::Direct && !self.allow_simulation {
            return Err(ConfigError(
                "mode = \"direct\" runs gramine-direct, which offers no SGX quotes: instances \
                 would attest with simulation evidence. Set allow_simulation = true to accept \
                 that (never in production), or use mode = \"sgx\""
                    .into(),
            ));
        }
        if self.mode == Mode::Sgx {
            if self.accepted_tcb_statuses.is_empty() {
                return Err(ConfigError(
                    "accepted_tcb_statuses is empty: no SGX platform would be accepted".into(),
                ));
            }
            if self.signing_key.is_none() {
                return Err(ConfigError(
                    "mode = \"sgx\" needs signing_key (an RSA-3072 key with exponent 3, as \
                     gramine-sgx-gen-private-key makes) to sign the enclaves"
                        .into(),
                ));
            }
            if self.collateral.is_none() {
                return Err(ConfigError(
                    "mode = \"sgx\" needs collateral (this platform's DCAP collateral, JSON) to \
                     verify the instances' quotes"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks the options that shape a manifest: sizes and thread count.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate_manifest_options(&self) -> Result<(), ConfigError> {
        match parse_size(&self.enclave_size) {
            Some(n) if n.is_power_of_two() && n >= 64 << 20 => {}
            _ => {
                return Err(ConfigError(format!(
                    "enclave_size {:?} must be a power of two of at least 64M, such as \"2G\"",
                    self.enclave_size
                )));
            }
        }
        if parse_size(&self.stack_size).is_none_or(|n| n < 64 << 10) {
            return Err(ConfigError(format!(
                "stack_size {:?} must be a size of at least 64K, such as \"2M\"",
                self.stack_size
            )));
        }
        // The pre-load module's thread, Gramine's IPC and async threads, and one TLS
        // handshake thread (Gramine's documented minimum is 4).
        if !(4..=1024).contains(&self.max_threads) {
            return Err(ConfigError(format!(
                "max_threads {} must be between 4 and 1024",
                self.max_threads
            )));
        }
        Ok(())
    }

    /// The LibOS path (`loader.entrypoint`).
    pub fn libos(&self) -> &Path {
        self.libos.as_deref().unwrap_or(Path::new(DEFAULT_LIBOS))
    }
}

/// Finds `name` on `PATH`, as a shell would: the first executable regular file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SGX: &str = "signing_key = \"/k.pem\"\ncollateral = \"/c.json\"\n";

    #[test]
    fn defaults_and_full_section_parse() {
        let c = GramineConfig::from_toml_str(SGX).unwrap();
        assert_eq!(c.mode, Mode::Sgx);
        assert_eq!(c.enclave_size, "2G");
        assert_eq!(c.max_threads, 16);
        assert!(!c.debug && !c.edmm_enable && !c.allow_simulation);
        assert_eq!(c.accepted_tcb_statuses, [TcbStatus::UpToDate]);
        assert_eq!(c.libos(), Path::new(DEFAULT_LIBOS));
        let c = GramineConfig::from_toml_str(&format!(
            "{SGX}enclave_size = \"512M\"\nmax_threads = 8\nedmm_enable = true\ndebug = true\n\
             accepted_tcb_statuses = [\"UpToDate\", \"SWHardeningNeeded\"]\n"
        ))
        .unwrap();
        assert_eq!(c.enclave_size, "512M");
        assert!(c.edmm_enable && c.debug);
        let d =
            GramineConfig::from_toml_str("mode = \"direct\"\nallow_simulation = true\n").unwrap();
        assert_eq!(d.mode.loader(), "gramine-direct");
    }

    #[test]
    fn refuses_unsafe_or_invalid_sections() {
        for (bad, why) in [
            ("mode = \"direct\"\n".to_owned(), "allow_simulation"),
            ("collateral = \"/c\"\n".to_owned(), "signing_key"),
            ("signing_key = \"/k\"\n".to_owned(), "collateral"),
            (format!("{SGX}enclave_size = \"3G\"\n"), "power of two"),
            (format!("{SGX}enclave_size = \"G\"\n"), "enclave_size"),
            (format!("{SGX}enclave_size = \"1M\"\n"), "at least 64M"),
            (format!("{SGX}max_threads = 2\n"), "max_threads"),
            (format!("{SGX}stack_size = \"x\"\n"), "stack_size"),
            (
                format!("{SGX}accepted_tcb_statuses = []\n"),
                "accepted_tcb_statuses",
            ),
            (format!("{SGX}debgu = true\n"), "debgu"),
            (format!("{SGX}mode = \"tdx\"\n"), "tdx"),
        ] {
            let err = GramineConfig::from_toml_str(&bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_parse_like_gramine() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "M", "1.5G", "-1G", "1T", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
