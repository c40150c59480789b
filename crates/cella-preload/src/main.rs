//! `cella-preload`: the entrypoint of a LibOS instance. A thin binary over the library:
//! it reads its launch parameters from the environment the backend sets, gets evidence
//! from Gramine's `/dev/attestation`, and runs the workload as a child process.
//!
//! | variable | meaning |
//! |---|---|
//! | `CELLA_PRELOAD_SOCKET` | the executor's endpoint: a Unix socket's path, or `tcp:127.0.0.1:<port>` |
//! | `CELLA_PRELOAD_NONCE` | the launch nonce, hex |
//! | `CELLA_PRELOAD_WORK_DIR` | an empty directory for the workload |
//! | `CELLA_PRELOAD_POLICY` | the executor's attestation policy file (measured with the image) |
//! | `CELLA_PRELOAD_ROLE` | the policy role the executor is checked as (default `client`) |
//!
//! Exit status: 0 after `Finished` or a cancel, 1 otherwise (the reason on stderr).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use cella_attest::gramine::GramineDcapSource;
use cella_preload::{Launch, PreloadConfig, ProcessRunner};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn launch() -> Result<(Launch, PreloadConfig), String> {
    let nonce = hex::decode(var("CELLA_PRELOAD_NONCE")?)
        .map_err(|e| format!("CELLA_PRELOAD_NONCE is not hex: {e}"))?;
    let policy_path = PathBuf::from(var("CELLA_PRELOAD_POLICY")?);
    let executor_policy = std::fs::read_to_string(&policy_path)
        .map_err(|e| format!("reading {}: {e}", policy_path.display()))?;
    Ok((
        Launch {
            socket: cella_preload::Endpoint::parse(&var("CELLA_PRELOAD_SOCKET")?)
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (launch, config) = match launch() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cella-preload: {e}");
            return ExitCode::FAILURE;
        }
    };
    let evidence = GramineDcapSource::default_device();
    match cella_preload::run(&launch, &config, &evidence, &ProcessRunner).await {
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
