//! Teaclave's API on a real `cella serve --teaclave-api` (issue 16): a Python client on
//! grpclib, the gRPC library of Teaclave's SDK, follows the SDK's call sequence for
//! `builtin_echo.py` and a two-party approval, checks the simulation-mode certificate,
//! and the refusals (wrong token, a foreign user's task, approval by a non-participant).
//! The protos are compiled at test time with grpcio-tools and grpclib's plugin. Needs
//! `python3 -m pip install -r crates/cella-teaclave/python/requirements.txt` (`.ci/run`
//! does it); without it the test fails saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const CELLA: &str = env!("CARGO_BIN_EXE_cella");

fn teaclave_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cella-teaclave")
}

/// Runs python3 with `args`; its stdout, or the test fails with its output.
fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3 must be installed (CI: python3 3.11)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Compiles the three protos into `dir` with grpcio-tools: messages and grpclib stubs.
fn compile_protos(dir: &Path) {
    let plugin = dir.join("protoc-gen-grpclib_python");
    std::fs::write(
        &plugin,
        "#!/bin/sh\nexec python3 -c 'from grpclib.plugin.main import main; main()'\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let proto = teaclave_crate().join("proto");
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "-m".to_owned(),
        "grpc_tools.protoc".to_owned(),
        format!("--proto_path={}", proto.display()),
        format!("--plugin=protoc-gen-grpclib_python={}", plugin.display()),
        format!("--python_out={out}"),
        format!("--grpclib_python_out={out}"),
    ];
    for f in [
        "teaclave_common",
        "teaclave_authentication_service",
        "teaclave_frontend_service",
    ] {
        args.push(proto.join(format!("{f}.proto")).display().to_string());
    }
    python(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn teaclaves_echo_sequence_and_refusals_over_grpclib() {
    let imported = Command::new("python3")
        .args(["-c", "import grpclib, grpc_tools, cryptography"])
        .output()
        .expect("python3 must be installed");
    assert!(
        imported.status.success(),
        "the Teaclave client test needs grpclib, grpcio-tools and cryptography: python3 -m \
         pip install -r crates/cella-teaclave/python/requirements.txt ({})",
        String::from_utf8_lossy(&imported.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    compile_protos(&stubs);

    let mut command = Command::new(CELLA);
    command
        .args([
            "--json",
            "serve",
            "--data-dir",
            "node",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--teaclave-api", "--teaclave-auth-listen", "127.0.0.1:0"])
        .args(["--teaclave-frontend-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(std::fs::File::create(dir.path().join("node.log")).unwrap());
    let (_node, first) = common::start(command);
    let started: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| {
        panic!(
            "{e}: {first:?} {}",
            std::fs::read_to_string(dir.path().join("node.log")).unwrap()
        )
    });
    let teaclave = &started["teaclave"];
    let password_file = dir
        .path()
        .join(started["admin_password_file"].as_str().unwrap());
    let client = teaclave_crate().join("python/teaclave_client.py");
    let out = python(&[
        client.to_str().unwrap(),
        stubs.to_str().unwrap(),
        teaclave["authentication"].as_str().unwrap(),
        teaclave["frontend"].as_str().unwrap(),
        password_file.to_str().unwrap(),
    ]);
    for check in [
        "ok simulation report extension",
        "ok echo",
        "ok wrong token",
        "ok a foreign user's task",
        "ok approval by a non-owner",
        "ok shared echo",
        "ok disable",
        "all checks passed",
    ] {
        assert!(out.contains(check), "{check:?} missing from:\n{out}");
    }
}

#[test]
fn the_teaclave_api_needs_simulation_evidence_and_its_addresses_need_the_flag() {
    let run = |args: &[&str]| {
        let out = Command::new(CELLA)
            .args(["serve", "--data-dir", "node", "--print-config"])
            .args(args)
            .env_remove("CELLA_DATA_DIR")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["--teaclave-api", "--evidence", "sgx-dcap"]);
    assert!(!ok);
    assert!(
        err.contains("simulation evidence") && err.contains("SGX_MODE=SW"),
        "{err}"
    );
    let (ok, _, err) = run(&["--teaclave-auth-listen", "127.0.0.1:9000"]);
    assert!(!ok);
    assert!(err.contains("need --teaclave-api"), "{err}");
    // The same address in the configuration file, without the API, is refused too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cella.toml");
    std::fs::write(&file, "teaclave_frontend_listen = \"127.0.0.1:9001\"\n").unwrap();
    let (ok, _, err) = run(&["--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("need --teaclave-api"), "{err}");
    let (ok, printed, err) = run(&[
        "--teaclave-api",
        "--teaclave-frontend-listen",
        "127.0.0.1:9001",
    ]);
    assert!(ok, "{err}");
    assert!(printed.contains("teaclave_api = true\n"), "{printed}");
    assert!(
        printed.contains("teaclave_auth_listen = \"127.0.0.1:7776\"\n")
            && printed.contains("teaclave_frontend_listen = \"127.0.0.1:9001\"\n"),
        "{printed}"
    );
}
