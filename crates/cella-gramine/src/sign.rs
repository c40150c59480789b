//! Signing a manifest and reading the enclave's measurement, with Gramine's own tools:
//!
//! ```text
//! gramine-sgx-sign --manifest <name>.manifest --output <name>.manifest.sgx \
//!                  --key <key.pem> --sigfile <name>.sig
//! gramine-sgx-sigstruct-view --output-format json <name>.sig
//! ```
//!
//! The second prints `{"mr_signer": "<hex>", "mr_enclave": "<hex>", "isv_prod_id": N,
//! "isv_svn": N, "debug_enclave": bool}` (more keys with `--verbose`). `MRENCLAVE` is what
//! the executor then expects in every instance's quote: the measurement is read from
//! what was signed, never computed by Cella, and never reported by an instance.

use std::path::{Path, PathBuf};
use std::process::Command;

use cella_attest::Measurement;
use serde::Deserialize;

/// Largest output of a tool kept for an error message.
const MAX_TOOL_OUTPUT: usize = 4096;

/// The signing tools and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignTools {
    /// `gramine-sgx-sign`.
    pub sign: PathBuf,
    /// `gramine-sgx-sigstruct-view`.
    pub sigstruct_view: PathBuf,
    /// The RSA-3072 signing key.
    pub key: PathBuf,
}

/// What `gramine-sgx-sigstruct-view` says of a signed enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sigstruct {
    /// `MRENCLAVE`: the enclave's measurement.
    pub mr_enclave: Measurement,
    /// `MRSIGNER`: SHA-256 of the signing key's modulus.
    pub mr_signer: Measurement,
    /// `ISVPRODID`.
    pub isv_prod_id: u16,
    /// `ISVSVN`.
    pub isv_svn: u16,
    /// Whether the enclave is a debug enclave.
    pub debug: bool,
}

/// A signed enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `<name>.manifest.sgx`: what `gramine-sgx <name>` loads.
    pub manifest_sgx: PathBuf,
    /// `<name>.sig`: the SIGSTRUCT.
    pub sig: PathBuf,
    /// Its fields.
    pub sigstruct: Sigstruct,
}

/// Signing or reading the signature failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The manifest's file name is not `<name>.manifest`.
    #[error("{0}: a manifest to sign must be named <name>.manifest")]
    ManifestName(PathBuf),
    /// A tool could not be started.
    #[error("starting {tool}: {source}")]
    Spawn {
        /// The tool.
        tool: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// The tool.
        tool: PathBuf,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The output of `gramine-sgx-sigstruct-view` is not what its documentation says.
    #[error("{tool} printed something that is not its JSON output: {reason}")]
    Output {
        /// The tool.
        tool: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signed enclave's debug flag is not the one configured.
    #[error(
        "the signed enclave has debug_enclave = {signed}, but the configuration says debug = {configured}"
    )]
    DebugMismatch {
        /// In the SIGSTRUCT.
        signed: bool,
        /// In the configuration.
        configured: bool,
    },
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(MAX_TOOL_OUTPUT);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

fn run(tool: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, SignError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SignError::Spawn {
            tool: tool.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(SignError::Failed {
            tool: tool.to_path_buf(),
            status: out.status.to_string(),
            stderr: tail(&out.stderr),
        });
    }
    Ok(out.stdout)
}

#[derive(Deserialize)]
struct ViewJson {
    mr_enclave: String,
    mr_signer: String,
    isv_prod_id: u16,
    isv_svn: u16,
    debug_enclave: bool,
}

/// Parses the JSON output of `gramine-sgx-sigstruct-view --output-format json`.
///
/// # Errors
///
/// A reason if it is not that JSON, or a measurement is not 64 hex digits.
pub fn parse_sigstruct_json(bytes: &[u8]) -> Result<Sigstruct, String> {
    let v: ViewJson = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let m = |name: &str, s: &str| {
        s.parse::<Measurement>()
            .map_err(|e| format!("{name} {s:?}: {e}"))
    };
    Ok(Sigstruct {
        mr_enclave: m("mr_enclave", &v.mr_enclave)?,
        mr_signer: m("mr_signer", &v.mr_signer)?,
        isv_prod_id: v.isv_prod_id,
        isv_svn: v.isv_svn,
        debug: v.debug_enclave,
    })
}

impl SignTools {
    /// Signs `manifest` (`<dir>/<name>.manifest`) into `<dir>/<name>.manifest.sgx` and
    /// `<dir>/<name>.sig`, then reads the SIGSTRUCT back.
    ///
    /// # Errors
    ///
    /// [`SignError`] naming the tool and its error output.
    pub fn sign(&self, manifest: &Path) -> Result<Signed, SignError> {
        let name = manifest
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".manifest"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SignError::ManifestName(manifest.to_path_buf()))?;
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let manifest_sgx = dir.join(format!("{name}.manifest.sgx"));
        let sig = dir.join(format!("{name}.sig"));
        run(
            &self.sign,
            &[
                "--manifest".as_ref(),
                manifest.as_os_str(),
                "--output".as_ref(),
                manifest_sgx.as_os_str(),
                "--key".as_ref(),
                self.key.as_os_str(),
                "--sigfile".as_ref(),
                sig.as_os_str(),
            ],
        )?;
        let sigstruct = self.view(&sig)?;
        Ok(Signed {
            manifest_sgx,
            sig,
            sigstruct,
        })
    }

    /// Reads a SIGSTRUCT with `gramine-sgx-sigstruct-view --output-format json`.
    ///
    /// # Errors
    ///
    /// [`SignError`] if the tool fails or prints something else than documented.
    pub fn view(&self, sig: &Path) -> Result<Sigstruct, SignError> {
        let out = run(
            &self.sigstruct_view,
            &["--output-format".as_ref(), "json".as_ref(), sig.as_os_str()],
        )?;
        parse_sigstruct_json(&out).map_err(|reason| SignError::Output {
            tool: self.sigstruct_view.clone(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_json_and_refuses_the_rest() {
        let good = br#"{
    "mr_signer": "0dedbe47afb6955e5f6109637c1fbd9cc4b4e073e1396da8ce2091075e5b0a3b",
    "mr_enclave": "81a675e9a408818b430be4b259f3e11e6f8cacdb4c971c3114ee79fe53076893",
    "isv_prod_id": 0,
    "isv_svn": 0,
    "debug_enclave": false
}"#;
        let s = parse_sigstruct_json(good).unwrap();
        assert_eq!(
            s.mr_enclave.to_string(),
            "81a675e9a408818b430be4b259f3e11e6f8cacdb4c971c3114ee79fe53076893"
        );
        assert!(!s.debug);
        // --verbose adds keys: still fine.
        let verbose =
            br#"{"mr_signer": "0dedbe47afb6955e5f6109637c1fbd9cc4b4e073e1396da8ce2091075e5b0a3b",
            "mr_enclave": "81a675e9a408818b430be4b259f3e11e6f8cacdb4c971c3114ee79fe53076893",
            "isv_prod_id": 1, "isv_svn": 2, "attribute_flags": "0x4", "date": "2026-11-27",
            "debug_enclave": true}"#;
        assert_eq!(parse_sigstruct_json(verbose).unwrap().isv_svn, 2);
        for bad in [
            &b"Attributes:\n    mr_enclave: 81a6"[..],
            br#"{"mr_signer": "00", "mr_enclave": "11", "isv_prod_id": 0, "isv_svn": 0, "debug_enclave": false}"#,
            br#"{"mr_enclave": "81a675e9a408818b430be4b259f3e11e6f8cacdb4c971c3114ee79fe53076893"}"#,
        ] {
            assert!(parse_sigstruct_json(bad).is_err());
        }
    }

    #[test]
    fn a_manifest_must_be_named_dot_manifest() {
        let tools = SignTools {
            sign: "/nonexistent/gramine-sgx-sign".into(),
            sigstruct_view: "/nonexistent/view".into(),
            key: "/k.pem".into(),
        };
        assert!(matches!(
            tools.sign(Path::new("/tmp/x.toml")),
            Err(SignError::ManifestName(_))
        ));
        assert!(matches!(
            tools.sign(Path::new("/tmp/x.manifest")),
            Err(SignError::Spawn { .. })
        ));
    }
}
