//! The Python SDK's test suite (sdk/python/tests, pytest) against this `cella` binary, so
//! that `cargo test --workspace` runs it too.
//!
//! It builds the wheel with maturin, installs it into a virtual environment under the
//! target directory (never into the system Python: an installed `cella` would be visible
//! to every other Python test), and runs pytest there. The environment is created, with
//! the pinned tools of sdk/python/requirements.txt and the grpcio example's requirements
//! (so that its stubs can be checked beside the SDK), on the first run.
//! pytest's "no tests collected" (exit 5) is a failure like any other.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The virtual environment, with the SDK's build and test tools and the grpcio
/// example's requirements installed (pinned; pip needs the network only the first time).
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdk-venv");
    if !dir.join("bin/python").exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv (the SDK tests need python3 with venv)",
        );
    }
    run(
        Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(repo().join("sdk/python/requirements.txt"))
            .arg("-r")
            .arg(repo().join("examples/python/requirements.txt")),
        "pip install of sdk/python and examples/python requirements into the SDK's venv",
    );
    dir
}

#[test]
fn the_python_sdk_suite_passes_against_this_binary() {
    let venv = venv();
    let python = venv.join("bin/python");
    let wheels = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdk-wheels");
    // A stale wheel of an earlier run must not be the one installed.
    if wheels.exists() {
        std::fs::remove_dir_all(&wheels).unwrap();
    }
    run(
        Command::new(venv.join("bin/maturin"))
            // The dev profile: the workspace's own build, not a release one.
            .args(["build", "--quiet", "--profile", "dev", "--out"])
            .arg(&wheels)
            .current_dir(repo().join("sdk/python"))
            .env("VIRTUAL_ENV", &venv),
        "maturin build (the SDK's wheel)",
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("maturin build wrote no wheel");
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall",
            ])
            .arg(&wheel),
        "pip install of the SDK's wheel into its venv",
    );
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(repo().join("sdk/python"))
        .env("CELLA_BIN", env!("CARGO_BIN_EXE_cella"))
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(5),
        "pytest collected no tests:\n{stdout}"
    );
    assert!(
        out.status.success(),
        "the Python SDK's tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
}
