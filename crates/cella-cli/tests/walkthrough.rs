//! The README's CLI walkthrough, run with the real `cella` binary against a real
//! `cella serve`: two banks intersect their lists, and the CLI's failures exit non-zero
//! with a message naming what was wrong.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const CELLA: &str = env!("CARGO_BIN_EXE_cella");

/// A `cella serve` child, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    dir: tempfile::TempDir,
    addr: String,
    policy: PathBuf,
}

impl Env {
    /// Runs `cella` as the user whose session lives in `home`.
    fn run(&self, home: &str, args: &[&str]) -> Output {
        Command::new(CELLA)
            .args(args)
            .current_dir(self.dir.path())
            .env("CELLA_HOME", self.dir.path().join(home))
            .output()
            .unwrap()
    }

    /// Runs `cella --json …`, requires success, and returns the parsed object.
    fn json(&self, home: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(home, &all);
        assert!(
            out.status.success(),
            "cella {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn login(&self, home: &str, user: &str, password_file: &Path) {
        let pw = password_file.to_str().unwrap();
        let policy = self.policy.to_str().unwrap();
        self.json(
            home,
            &[
                "login",
                "--addr",
                &self.addr,
                "--policy",
                policy,
                "--user",
                user,
                "--password-file",
                pw,
            ],
        );
    }
}

fn id(v: &serde_json::Value, kind: &str, field: &str) -> String {
    v.get(kind).unwrap_or(v)[field].as_str().unwrap().to_owned()
}

#[test]
fn readme_walkthrough_and_cli_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(CELLA)
        .args([
            "--json",
            "serve",
            "--data-dir",
            "node",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _serve = Serve(child);
    let started: serde_json::Value = serde_json::from_str(&first).unwrap();
    let env = Env {
        addr: started["listening"].as_str().unwrap().to_owned(),
        policy: dir
            .path()
            .join(started["attestation_policy"].as_str().unwrap()),
        dir,
    };
    let root = env.dir.path().to_owned();

    env.login("h-admin", "admin", &root.join("node/admin-password"));
    for (user, role) in [
        ("fo", "function_owner"),
        ("bank-a", "data_owner"),
        ("bank-b", "data_owner"),
    ] {
        let pw = root.join(format!("{user}.pw"));
        std::fs::write(&pw, format!("{user} password 123\n")).unwrap();
        env.json(
            "h-admin",
            &[
                "user",
                "register",
                user,
                "--role",
                role,
                "--password-file",
                pw.to_str().unwrap(),
            ],
        );
        env.login(&format!("h-{user}"), user, &pw);
    }
    let f = env.json(
        "h-fo",
        &[
            "function",
            "register",
            "--name",
            "psi",
            "--builtin",
            "ordered_set_intersect",
            "--input",
            "a",
            "--input",
            "b",
            "--output",
            "a_out",
            "--output",
            "b_out",
            "--allow",
            "bank-a,bank-b",
        ],
    );
    let function = id(&f, "function", "function_id");

    let mut files = Vec::new();
    for (bank, data) in [
        ("bank-a", "alice\nbob\ncarol\n"),
        ("bank-b", "carol\ndave\nalice\n"),
    ] {
        let home = format!("h-{bank}");
        std::fs::write(root.join(format!("{bank}.csv")), data).unwrap();
        env.json(
            &home,
            &[
                "file",
                "encrypt",
                "--in",
                &format!("{bank}.csv"),
                "--out",
                &format!("{bank}.sealed"),
            ],
        );
        let input = env.json(
            &home,
            &[
                "file",
                "upload",
                &format!("{bank}.sealed"),
                "--key-file",
                &format!("{bank}.sealed.key"),
            ],
        );
        let output = env.json(
            &home,
            &[
                "file",
                "register-output",
                "--key-file",
                &format!("{bank}.out.key"),
            ],
        );
        files.push((
            home,
            id(&input, "file", "file_id"),
            id(&output, "file", "file_id"),
        ));
    }
    let t = env.json(
        "h-bank-a",
        &[
            "task",
            "create",
            "--function",
            &function,
            "--input",
            "a=bank-a",
            "--input",
            "b=bank-b",
            "--output",
            "a_out=bank-a",
            "--output",
            "b_out=bank-b",
        ],
    );
    let task = id(&t, "task", "task_id");
    for ((home, input, output), (slot_in, slot_out)) in
        files.iter().zip([("a", "a_out"), ("b", "b_out")])
    {
        env.json(
            home,
            &[
                "task",
                "assign",
                &task,
                "--input",
                &format!("{slot_in}={input}"),
                "--output",
                &format!("{slot_out}={output}"),
            ],
        );
    }
    // Invoking before every approval fails, naming who is missing.
    let early = env.run("h-bank-a", &["task", "invoke", &task]);
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    for home in ["h-bank-a", "h-bank-b", "h-fo"] {
        env.json(home, &["task", "approve", &task]);
    }
    env.json("h-bank-a", &["task", "invoke", &task]);
    let watched = env.run("h-bank-a", &["task", "watch", &task]);
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    env.json(
        "h-bank-a",
        &[
            "task",
            "result",
            &task,
            "--out-dir",
            "result",
            "--key-file",
            "a_out=bank-a.out.key",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("result/a_out")).unwrap(),
        "alice\ncarol\n"
    );

    // Errors name what was wrong and exit non-zero.
    let foreign = env.run(
        "h-bank-b",
        &[
            "task",
            "result",
            &task,
            "--out-dir",
            "r2",
            "--key-file",
            "a_out=bank-b.out.key",
        ],
    );
    assert!(!foreign.status.success());
    let bad_id = env.run("h-bank-a", &["task", "get", "task-not-a-uuid"]);
    assert!(!bad_id.status.success());
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("task-not-a-uuid"));
    let no_session = env.run("h-nobody", &["file", "list"]);
    assert!(!no_session.status.success());
    assert!(String::from_utf8_lossy(&no_session.stderr).contains("not logged in"));

    // `cella attest --collateral` loads DCAP collateral for SGX nodes (this node is in
    // simulation, which needs none: it is still accepted) and reports what it loaded.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cella-attest/testdata/sgx_quote_collateral.json");
    let policy = env.policy.to_str().unwrap().to_owned();
    let attested = env.json(
        "h-nobody",
        &[
            "attest",
            &env.addr,
            "--policy",
            &policy,
            "--collateral",
            sample.to_str().unwrap(),
        ],
    );
    assert_eq!(attested["verdict"], "accepted", "{attested}");
    assert_eq!(
        attested["collateral"][0]["fmspc"], "00A067110000",
        "{attested}"
    );
    let bad = root.join("bad-collateral.json");
    std::fs::write(&bad, "{\"tcb_info\": 3}").unwrap();
    let refused = env.run(
        "h-nobody",
        &[
            "attest",
            &env.addr,
            "--policy",
            &policy,
            "--collateral",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("bad-collateral.json") && stderr.contains("collateral JSON"),
        "{stderr}"
    );
    // And `cella login` with it: the session attests the node as before.
    let login = env.run(
        "h-collateral",
        &[
            "login",
            "--addr",
            &env.addr,
            "--policy",
            &policy,
            "--collateral",
            bad.to_str().unwrap(),
            "--user",
            "fo",
            "--password-file",
            "fo.pw",
        ],
    );
    assert!(!login.status.success());
    assert!(String::from_utf8_lossy(&login.stderr).contains("bad-collateral.json"));
    env.json(
        "h-collateral",
        &[
            "login",
            "--addr",
            &env.addr,
            "--policy",
            &policy,
            "--collateral",
            sample.to_str().unwrap(),
            "--user",
            "fo",
            "--password-file",
            "fo.pw",
        ],
    );
    env.json("h-collateral", &["file", "list"]);
}

#[test]
fn serve_with_sgx_evidence_outside_gramine_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CELLA)
        .args([
            "serve",
            "--data-dir",
            "node",
            "--listen",
            "127.0.0.1:0",
            "--evidence",
            "sgx-dcap",
            "--attestation-dir",
            "no-attestation",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-attestation")
            && stderr.contains("does not exist")
            && stderr.contains("does not fall back to simulation"),
        "{stderr}"
    );
    assert!(!dir.path().join("node/tls/sim-key.sealed").exists());
    // --attestation-dir only goes with --evidence sgx-dcap.
    let out = Command::new(CELLA)
        .args(["serve", "--data-dir", "node", "--attestation-dir", "x"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--evidence sgx-dcap"));
}
