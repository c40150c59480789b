//! A `cella serve` child driven with the `cella` CLI as its first admin, as the tests
//! that run a real task on a node do.

use std::path::Path;
use std::process::Command;

use crate::common::{self, Serve};

const CELLA: &str = env!("CARGO_BIN_EXE_cella");

/// Runs `cella --json args` in `dir` with its client state in `dir/home`, asserts that it
/// succeeded, and returns its JSON output (`null` when it printed none).
pub(crate) fn cella(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(CELLA)
        .arg("--json")
        .args(args)
        .current_dir(dir)
        .env("CELLA_HOME", dir.join("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Logs in as `admin` to the node at `addr` whose data dir is `dir/node` (simulation
/// evidence).
pub(crate) fn login_admin(dir: &Path, addr: &str) {
    let policy = dir.join("node/tls/attestation-policy.sim.toml");
    cella(
        dir,
        &[
            "login",
            "--addr",
            addr,
            "--policy",
            policy.to_str().unwrap(),
            "--user",
            "admin",
            "--password-file",
            "node/admin-password",
        ],
    );
}

/// Registers the builtin `echo` (public), creates a task of it with `message=hi`,
/// approves, invokes and watches it to its end, as the logged-in admin (its own
/// function, nobody else's data); returns the task's id.
pub(crate) fn run_echo_task(dir: &Path) -> String {
    let f = cella(
        dir,
        &[
            "function",
            "register",
            "--name",
            "echo",
            "--builtin",
            "echo",
            "--arg",
            "message",
            "--public",
        ],
    );
    let function = f["function"]["function_id"].as_str().unwrap().to_owned();
    let t = cella(
        dir,
        &[
            "task",
            "create",
            "--function",
            &function,
            "--arg",
            "message=hi",
        ],
    );
    let task = t["task"]["task_id"].as_str().unwrap().to_owned();
    cella(dir, &["task", "approve", &task, "--yes"]);
    cella(dir, &["task", "invoke", &task]);
    cella(dir, &["task", "watch", &task]);
    task
}

/// Starts `cella --json serve` with `args` in `dir`; returns it and where it listens.
pub(crate) fn serve(dir: &Path, args: &[&str]) -> (Serve, String) {
    let mut command = Command::new(CELLA);
    command
        .arg("--json")
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap());
    let (node, first) = common::start(command);
    let started: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| {
        panic!(
            "{e}: {first:?} {}",
            std::fs::read_to_string(dir.join("node.log")).unwrap()
        )
    });
    (node, started["listening"].as_str().unwrap().to_owned())
}
