//! The audit trail of the README's flow, end to end through `cella audit`: who sees
//! which entries, export and offline verification (by the admin and by a user who took
//! part in nothing), every kind of tampering caught at its entry or checkpoint; and the
//! node's JSON log of the whole run, which must hold none of the passwords, tokens and
//! keys the run used.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use super::{Env, run_readme_with};

/// The exit code of `cella audit verify` when the trail does not verify.
const AUDIT_BROKEN: i32 = 6;

impl Env {
    /// `cella [--json] audit verify FILE --policy P`, FILE under the test's directory.
    fn verify_file(&self, name: &str, json: bool) -> std::process::Output {
        let file = self.dir.path().join(name);
        let mut args = vec![
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--policy",
            self.policy.to_str().unwrap(),
        ];
        if json {
            args.insert(0, "--json");
        }
        self.run("cella", &args)
    }

    /// `export` written to `name`, verified with `--json`: its exit code and verdict.
    fn verify(&self, export: &Value, name: &str) -> (i32, Value) {
        std::fs::write(
            self.dir.path().join(name),
            serde_json::to_vec(export).unwrap(),
        )
        .unwrap();
        let out = self.verify_file(name, true);
        let verdict = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), verdict)
    }

    /// The entries `cella audit list ARGS` shows the user of `home`.
    fn audit_list(&self, home: &str, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["audit", "list"];
        all.extend_from_slice(args);
        self.json(home, &all)["entries"].as_array().unwrap().clone()
    }

    /// `home`'s export once a checkpoint covers the chain's last entry (the node signs
    /// one a second after the head moves).
    fn sealed_export(&self, home: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let export = self.json(home, &["audit", "export"]);
            let last = export["entries"].as_array().unwrap().last().unwrap()["seq"].clone();
            let sealed = export["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["entry_seq"] == last);
            if sealed {
                return export;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint over {last}: {export}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The entry `cella audit verify` names as the first broken one.
fn broken_at(env: &Env, export: &Value, name: &str) -> Value {
    let (code, verdict) = env.verify(export, name);
    assert_eq!(code, AUDIT_BROKEN, "{name}: {verdict}");
    assert_eq!(verdict["verified"], false, "{verdict}");
    verdict
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[test]
fn the_readme_flow_is_audited_by_role_verifiable_offline_and_logs_no_secret() {
    let (env, _node, printed) = run_readme_with(
        &["--audit-checkpoint-interval", "1", "--log-format", "json"],
        "debug",
    );
    let root = env.dir.path().to_owned();
    let task = printed.last["task"].clone();
    let input_a = printed.by_home[&("cella-a".to_owned(), "input".to_owned())].clone();

    // A user who takes part in nothing.
    let outsider_password = "outsider-pw-5vQ2r7Lk";
    std::fs::write(root.join("outsider-pw"), outsider_password).unwrap();
    env.json(
        "cella",
        &[
            "user",
            "register",
            "outsider",
            "--role",
            "data_owner",
            "--password-file",
            "outsider-pw",
        ],
    );
    env.json(
        "cella-out",
        &[
            "login",
            "--addr",
            &env.addr,
            "--policy",
            env.policy.to_str().unwrap(),
            "--user",
            "outsider",
            "--password-file",
            "outsider-pw",
        ],
    );

    // Who sees the task's entries: every participant and the admin, all of them; the
    // outsider none.
    let by_admin = env.audit_list("cella", &["--task", &task]);
    let seen = actions(&by_admin);
    for action in [
        "create_task",
        "assign_data",
        "approve_task",
        "invoke_task",
        "task_finished",
    ] {
        assert!(seen.contains(&action), "{action} missing: {seen:?}");
    }
    assert_eq!(
        seen.iter().filter(|a| **a == "approve_task").count(),
        3,
        "{seen:?}"
    );
    for participant in ["cella-a", "cella-b", "cella-fo"] {
        assert_eq!(
            env.audit_list(participant, &["--task", &task]),
            by_admin,
            "{participant}"
        );
    }
    assert!(env.audit_list("cella-out", &["--task", &task]).is_empty());
    let own = env.audit_list("cella-out", &[]);
    assert_eq!(actions(&own), ["register_user", "login"], "{own:?}");
    // A data owner's file: its owner sees its upload, the outsider does not; the other
    // filters narrow as they say.
    let upload = env.audit_list("cella-a", &["--object", &input_a]);
    assert!(actions(&upload).contains(&"upload_input"), "{upload:?}");
    assert!(
        env.audit_list("cella-out", &["--object", &input_a])
            .is_empty()
    );
    let by_fo = env.audit_list("cella", &["--actor", "fo", "--task", &task]);
    assert_eq!(actions(&by_fo), ["approve_task"], "{by_fo:?}");
    let first_at = by_admin[0]["at_ms"].as_u64().unwrap();
    let before = env.audit_list(
        "cella",
        &["--task", &task, "--until", &first_at.to_string()],
    );
    assert!(before.is_empty(), "{before:?}");
    let text = env.text("cella", &["audit", "list", "--task", &task]);
    assert!(
        text.starts_with("SEQ") && text.contains("approve_task"),
        "{text}"
    );

    // The admin's export verifies, signed through its last entry.
    let admin = env.sealed_export("cella");
    let (code, verdict) = env.verify(&admin, "admin.json");
    assert_eq!(code, 0, "{verdict}");
    let n = admin["entries"].as_array().unwrap().len();
    assert_eq!(verdict["sealed_through"], n, "{verdict}");
    assert!(
        admin["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "full")
    );

    // The outsider's export shows the task only as links, and verifies too.
    let outsider = env.sealed_export("cella-out");
    let outsider_text = outsider.to_string();
    assert!(!outsider_text.contains(&task) && !outsider_text.contains(&input_a));
    let kinds: Vec<&str> = outsider["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "full").count(),
        2,
        "{kinds:?}"
    );
    let (code, verdict) = env.verify(&outsider, "outsider.json");
    assert_eq!(code, 0, "{verdict}");

    // Each tampering is caught at its entry.
    let entries = admin["entries"].as_array().unwrap();
    let k = entries
        .iter()
        .position(|e| e["action"] == "approve_task")
        .unwrap();
    let seq = entries[k]["seq"].as_u64().unwrap();
    let mut edited = admin.clone();
    edited["entries"][k]["actor"] = "mallory".into();
    assert_eq!(broken_at(&env, &edited, "edited.json")["entry"], seq);
    let mut removed = admin.clone();
    removed["entries"].as_array_mut().unwrap().remove(k);
    assert_eq!(broken_at(&env, &removed, "removed.json")["entry"], seq);
    let mut reordered = admin.clone();
    reordered["entries"].as_array_mut().unwrap().swap(k, k + 1);
    assert_eq!(broken_at(&env, &reordered, "reordered.json")["entry"], seq);
    // A link of the outsider's export pointed elsewhere.
    let r = kinds.iter().position(|k| *k == "redacted").unwrap();
    let mut relinked = outsider.clone();
    relinked["entries"][r]["body_hash"] = "00".repeat(32).into();
    assert_eq!(broken_at(&env, &relinked, "relinked.json")["entry"], r + 1);
    // The tail cut off after its last checkpoint: the checkpoint names an entry the
    // export no longer has.
    let mut cut = admin.clone();
    cut["entries"].as_array_mut().unwrap().pop();
    let verdict = broken_at(&env, &cut, "cut.json");
    assert_eq!(verdict["entry"], n, "{verdict}");

    // A forged checkpoint signature, and a checkpoint signed with another key.
    let last = admin["checkpoints"].as_array().unwrap().len() - 1;
    let number = admin["checkpoints"][last]["number"].clone();
    let mut forged = admin.clone();
    let sig = forged["checkpoints"][last]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if sig.ends_with('0') { "1" } else { "0" };
    forged["checkpoints"][last]["signature"] = format!("{}{flipped}", &sig[..sig.len() - 1]).into();
    let verdict = broken_at(&env, &forged, "forged.json");
    assert_eq!(verdict["checkpoint"], number, "{verdict}");
    let mut other_key = admin.clone();
    other_key["checkpoints"][last]["cert"] = other_node_cert(&env).into();
    let verdict = broken_at(&env, &other_key, "other-key.json");
    assert_eq!(verdict["checkpoint"], number, "{verdict}");

    // The human verdict names the entry; untrusted text in the file reaches the
    // terminal escaped.
    let out = env.verify_file("edited.json", false);
    assert_eq!(out.status.code(), Some(AUDIT_BROKEN));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains(&format!("breaks at entry {seq}")), "{human}");
    let mut odd = admin.clone();
    odd["format"] = "v9\u{1b}[2J".into();
    std::fs::write(root.join("odd.json"), odd.to_string()).unwrap();
    let out = env.verify_file("odd.json", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("\\u{1b}[2J") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );

    no_secret_in_the_log(&env, &printed.passwords, outsider_password);
}

/// The RA-TLS certificate (DER, hex) of another node, whose key signed none of the
/// first node's checkpoints.
fn other_node_cert(env: &Env) -> String {
    let dir = env.dir.path().join("other");
    let mut serve = std::process::Command::new(super::CELLA);
    serve
        .args([
            "--json",
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::null());
    let (node, first) = super::common::start(serve);
    drop(node);
    assert!(first.contains("listening"), "{first}");
    let text = std::fs::read_to_string(dir.join("tls/cert.pem")).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
}

/// Every secret the run used, in each form it could be written in.
fn no_secret_in_the_log(
    env: &Env,
    passwords: &std::collections::HashMap<String, String>,
    outsider_password: &str,
) {
    let root = env.dir.path();
    let mut secrets: Vec<(String, String)> = passwords
        .iter()
        .map(|(user, pw)| (format!("{user}'s password"), pw.clone()))
        .collect();
    secrets.push(("outsider's password".into(), outsider_password.into()));
    let admin = std::fs::read_to_string(root.join("node/admin-password")).unwrap();
    secrets.push(("the admin password".into(), admin.trim().to_owned()));
    for home in ["cella", "cella-fo", "cella-a", "cella-b", "cella-out"] {
        let session: Value =
            serde_json::from_slice(&std::fs::read(root.join(home).join("session.json")).unwrap())
                .unwrap();
        secrets.push((
            format!("{home}'s token"),
            session["token"].as_str().unwrap().to_owned(),
        ));
    }
    for key in [
        "a.sealed.key",
        "a_out.key",
        "b.sealed.key",
        "b_out.key",
        "node/sealing.key",
    ] {
        let bytes = std::fs::read(root.join(key)).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            secrets.push((key.into(), text.trim().to_owned()));
        }
        secrets.push((format!("{key} as hex"), hex::encode(&bytes)));
        secrets.push((
            format!("{key} as base64"),
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        ));
    }
    let log = std::fs::read_to_string(root.join("node.log")).unwrap();
    // The grep means something only over a real log: debug lines of every request.
    assert!(log.lines().count() > 100, "{log}");
    assert!(log.contains("audit checkpoint written"), "{log}");
    for line in log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 16,
            "{what} is too short to grep for: {secret:?}"
        );
        assert!(
            !log.contains(secret.as_str()),
            "{what} is in the node's log"
        );
    }
}
