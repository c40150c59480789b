//! A client in another language: `examples/python/cella_api_example.py` (the worked
//! example of docs/api.md) runs against a real node with Python's grpcio, verifying the
//! node's RA-TLS evidence itself and then trusting exactly that certificate under the
//! node's name (its subjectAltName). Then raw malformed and oversized messages get the
//! caller's status codes. Needs `python3 -m pip install -r examples/python/requirements.txt`
//! (`.ci/run` does it); without it the test fails saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs python3 with `args`; returns stdout, failing the test with stderr.
fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .current_dir(repo())
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

const EDGES: &str = r#"
import sys
sys.path.insert(0, "examples/python")
import grpc, cella_api_example as ex
addr, policy = sys.argv[1], sys.argv[2]
channel, _ = ex.attested_channel(addr, policy, grpc)
call = channel.unary_unary("/cella.v1.TaskService/GetTask")
for name, body in [("malformed", b"\x0a\xff\x01"), ("oversized", b"\x0a\x80\x80\xc0\x02" + b"x" * (5 << 20))]:
    try:
        call(body, metadata=[("authorization", "Bearer x")])
        print(name, "OK")
    except grpc.RpcError as e:
        print(name, e.code().name, e.details())
# A standard client that does not trust the certificate is refused by its own TLS stack.
try:
    grpc.channel_ready_future(grpc.secure_channel(addr, grpc.ssl_channel_credentials())).result(timeout=5)
    print("untrusted connected")
except Exception:
    print("untrusted refused")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_attests_the_node_and_runs_a_task() {
    let imported = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, cryptography"])
        .output()
        .expect("python3 must be installed");
    assert!(
        imported.status.success(),
        "the Python client test needs grpcio, grpcio-tools and cryptography: \
         python3 -m pip install -r examples/python/requirements.txt ({})",
        String::from_utf8_lossy(&imported.stderr)
    );
    let node = TestNode::start().await;
    let admin = node.admin().await;
    node.user(&admin, "alice", &["function_owner", "data_owner"])
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let pw = scratch.path().join("alice.pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    // By name: grpc checks "localhost" against the certificate's subjectAltName.
    let addr = format!("localhost:{}", node.running().addr().port());
    let policy = node.running().policy_file().to_str().unwrap().to_owned();
    let example = repo().join("examples/python/cella_api_example.py");
    let out = python(&[
        example.to_str().unwrap(),
        "--addr",
        &addr,
        "--policy",
        &policy,
        "--user",
        "alice",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(out.contains("node attested"), "{out}");
    assert!(out.contains("returned 2"), "{out}");
    assert!(out.contains("intersection: bob,zoe"), "{out}");
    assert!(out.contains("listed 1 task(s)"), "{out}");

    // Another node's policy is refused by the Python verifier, before any call.
    let other = TestNode::start().await;
    let bad = std::process::Command::new("python3")
        .args([
            example.to_str().unwrap(),
            "--addr",
            &addr,
            "--policy",
            other.running().policy_file().to_str().unwrap(),
            "--user",
            "alice",
            "--password-file",
            pw.to_str().unwrap(),
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a trusted simulation key"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let out = python(&["-c", EDGES, &addr, &policy]);
    assert!(out.contains("malformed INVALID_ARGUMENT"), "{out}");
    assert!(out.contains("oversized RESOURCE_EXHAUSTED"), "{out}");
    assert!(out.contains("untrusted refused"), "{out}");
}
