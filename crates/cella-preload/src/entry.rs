//! The pre-load module's entrypoint, shared by the `cella-preload` binary and the `cella`
//! binary started under the name `cella-preload` (multi-call): [`main`].
//!
//! With `exec-program` as its first argument it is the confining wrapper
//! ([`crate::confine`]); with `probe`, it prints [`PROBE_OK`] and exits; otherwise it runs an instance, configured by the environment the
//! backend sets:
//!
//! | variable | meaning |
//! |---|---|
//! | `CELLA_PRELOAD_SOCKET` | the executor's endpoint: a Unix socket's absolute path, or `tcp:127.0.0.1:<port>` ([`crate::endpoint`]) |
//! | `CELLA_PRELOAD_NONCE` | the launch nonce, hex |
//! | `CELLA_PRELOAD_WORK_DIR` | an empty directory for the workload |
//! | `CELLA_PRELOAD_POLICY` | the executor's attestation policy file (measured with the image) |
//! | `CELLA_PRELOAD_ROLE` | the policy role the executor is checked as (default `client`) |
//! | `CELLA_PRELOAD_EVIDENCE` | `socket:<path>`: simulation evidence from the node over that socket ([`crate::evidence`]); `tcp:127.0.0.1:<port>`: the same over TCP (`gramine-direct`, [`crate::gramine`]); unset: Gramine's `/dev/attestation` |
//! | `CELLA_PRELOAD_INSTANCE_KEY` | inside Gramine: the name of the encrypted `/cella`'s key, provisioned with fresh random bytes at start ([`crate::gramine`]) |
//! | `CELLA_PRELOAD_CONFINE` | `1`: start the program confined with Landlock ([`crate::confine`]) |
//! | `CELLA_SANDBOX_DENIALS` | the sandbox supervisor's seccomp denial counts, reported in the task log |
//! | `CELLA_PRELOAD_PRIVATE_DIRS` | `:`-separated directories of the instance alone the program may write (the sandbox's `/tmp`), emptied at every `Reset` |
//!
//! Exit status: 0 after `Finished` or a cancel, 1 otherwise (the reason on stderr).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use cella_attest::EvidenceSource;
use cella_attest::gramine::GramineDcapSource;

use crate::confine::{EXEC_PROGRAM, exec_program};
use crate::evidence::{SOCKET_PREFIX, SocketEvidenceSource};
use crate::{Launch, PreloadConfig, ProcessRunner};

/// The argument of the probe mode: prints [`PROBE_OK`] and exits 0. The sandbox backend
/// runs it, confined, at the node's start to check that the machine can run sandboxes.
pub const PROBE: &str = "probe";
/// What the probe mode prints.
pub const PROBE_OK: &str = "cella-preload probe: ok";

/// The environment variable choosing the evidence source.
pub const EVIDENCE_ENV: &str = "CELLA_PRELOAD_EVIDENCE";

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The evidence source `CELLA_PRELOAD_EVIDENCE` names.
///
/// # Errors
///
/// A message if the variable holds anything but `socket:<absolute path>`.
pub fn evidence_source(value: Option<&str>) -> Result<Box<dyn EvidenceSource>, String> {
    match value {
        None => Ok(Box::new(GramineDcapSource::default_device())),
        Some(v) if v.starts_with(crate::gramine::TCP_PREFIX) => {
            Ok(Box::new(crate::gramine::TcpEvidenceSource::parse(v)?))
        }
        Some(v) => match v.strip_prefix(SOCKET_PREFIX) {
            Some(path) if path.starts_with('/') => Ok(Box::new(SocketEvidenceSource::new(path))),
            _ => Err(format!(
                "{EVIDENCE_ENV} must be socket:<absolute path>, tcp:127.0.0.1:<port> (or unset for /dev/attestation), not {v:?}"
            )),
        },
    }
}

fn launch() -> Result<(Launch, PreloadConfig), String> {
    let nonce = hex::decode(var("CELLA_PRELOAD_NONCE")?)
        .map_err(|e| format!("CELLA_PRELOAD_NONCE is not hex: {e}"))?;
    let policy_path = PathBuf::from(var("CELLA_PRELOAD_POLICY")?);
    let executor_policy = std::fs::read_to_string(&policy_path)
        .map_err(|e| format!("reading {}: {e}", policy_path.display()))?;
    Ok((
        Launch {
            socket: crate::Endpoint::parse(&var("CELLA_PRELOAD_SOCKET")?)
                .map_err(|e| format!("CELLA_PRELOAD_SOCKET: {e}"))?,
            nonce,
            work_dir: var("CELLA_PRELOAD_WORK_DIR")?.into(),
        },
        PreloadConfig {
            executor_policy,
            executor_role: var("CELLA_PRELOAD_ROLE").unwrap_or_else(|_| "client".into()),
        },
    ))
}

async fn instance() -> Result<crate::Served, String> {
    let (launch, config) = launch()?;
    let evidence = evidence_source(std::env::var(EVIDENCE_ENV).ok().as_deref())?;
    if let Ok(name) = std::env::var(crate::gramine::INSTANCE_KEY_ENV) {
        // Inside Gramine: the encrypted /cella's key, before anything is written there.
        crate::gramine::provision_instance_key(
            std::path::Path::new(cella_attest::gramine::DEFAULT_ATTESTATION_DIR),
            &name,
        )?;
    }
    // The pre-load process starts nothing but the programs it runs: what they leave
    // behind is its to kill when they end.
    let mut runner = ProcessRunner::from_env()?;
    if let Err(e) = runner.reap_leftovers() {
        // A LibOS without child subreapers (Gramine): the process group is still killed.
        eprintln!("cella-preload: warning: processes a program leaves are not reaped: {e}");
    }
    crate::run(&launch, &config, evidence.as_ref(), &runner)
        .await
        .map_err(|e| e.to_string())
}

/// Runs the pre-load module with this process's arguments and environment (see the
/// module documentation); the exit status to end the process with.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == EXEC_PROGRAM) {
        return exec_program(&args[1..]);
    }
    if args.first().is_some_and(|a| a == PROBE) {
        println!("{PROBE_OK}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cella-preload: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(instance()) {
        Ok(served) => {
            eprintln!("cella-preload: {served:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cella-preload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cella_attest::Platform;

    #[test]
    fn the_evidence_variable_selects_the_source() {
        assert_eq!(evidence_source(None).unwrap().platform(), Platform::SgxDcap);
        assert_eq!(
            evidence_source(Some("socket:/run/cella/evidence.sock"))
                .unwrap()
                .platform(),
            Platform::Sim
        );
        for bad in ["socket:relative", "file:/x", ""] {
            let e = evidence_source(Some(bad)).unwrap_err();
            assert!(e.contains(EVIDENCE_ENV), "{bad}: {e}");
        }
    }
}
