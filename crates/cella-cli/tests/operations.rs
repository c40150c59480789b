//! Operating a real `cella serve`: the configuration file (the documented example
//! parses, flags override it, unknown keys are refused by name), the operations listener
//! (`/healthz`, `/readyz`, `/metrics` with every metric the shipped Grafana dashboard
//! queries), JSON logs, and SIGTERM ending the process with exit 0.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

mod admin_cli;
mod common;

use common::Serve;

const CELLA: &str = env!("CARGO_BIN_EXE_cella");
const CONFIG_DOC: &str = include_str!("../../../docs/configuration.md");
const DASHBOARD: &str = include_str!("../../../deploy/grafana/cella.json");

/// The documentation's example configuration.
fn example() -> String {
    let at = CONFIG_DOC
        .find("```toml\n")
        .expect("the doc has a toml block")
        + 8;
    let block = &CONFIG_DOC[at..];
    block[..block.find("```").expect("the block ends")].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `addr`: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

#[test]
fn the_documented_example_parses_flags_override_it_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cella.toml");
    std::fs::write(&file, example()).unwrap();
    let out = Command::new(CELLA)
        .args([
            "serve",
            "--config",
            "cella.toml",
            "--print-config",
            "--workers",
            "3",
        ])
        .current_dir(dir.path())
        .env_remove("CELLA_DATA_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("workers = 3\n"), "{printed}");
    assert!(
        printed.contains("metrics = \"127.0.0.1:9464\"\n"),
        "{printed}"
    );
    assert!(printed.contains("shutdown_grace = 20\n"), "{printed}");
    // What it prints is a configuration file itself.
    std::fs::write(&file, &printed).unwrap();
    let again = Command::new(CELLA)
        .args(["serve", "--config", "cella.toml", "--print-config"])
        .current_dir(dir.path())
        .env_remove("CELLA_DATA_DIR")
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap(), printed);

    std::fs::write(&file, "data_dir = \"node\"\nshutdown_grase = 5\n").unwrap();
    let refused = Command::new(CELLA)
        .args(["serve", "--config", "cella.toml", "--print-config"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("shutdown_grase") && stderr.contains("cella.toml"),
        "{stderr}"
    );
}

/// Sends SIGTERM to `node` and waits for it to exit; returns its exit code.
fn terminate(node: &mut Serve, within: Duration) -> Option<i32> {
    let pid = node.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            return s.code();
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn probes_metrics_json_logs_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("libos.toml"),
        "backend = \"mock\"\n[pool]\nwarm = 1\nmax = 2\n[[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
    )
    .unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let (mut node, addr) = admin_cli::serve(
        dir.path(),
        &[
            "--data-dir",
            "node",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            &metrics,
            "--libos-config",
            "libos.toml",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(get(&metrics, "/healthz").0, 200);
    let (code, body) = get(&metrics, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("libos_probe: ok") && body.contains("evidence_fresh: ok"),
        "{body}"
    );
    assert_eq!(get(&metrics, "/nothing").0, 404);

    // One API call, then every metric the dashboard queries is in a scrape.
    let policy = dir.path().join("node/tls/attestation-policy.sim.toml");
    let health = Command::new(CELLA)
        .args([
            "node",
            "health",
            "--addr",
            &addr,
            "--policy",
            policy.to_str().unwrap(),
        ])
        .env("CELLA_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    // A task runs to its end, as the admin (its own function, nobody else's data).
    // A task runs to its end, as the admin (its own function, nobody else's data).
    admin_cli::login_admin(dir.path(), &addr);
    admin_cli::run_echo_task(dir.path());
    // The mock pool warms one instance in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let (code, scrape) = get(&metrics, "/metrics");
        assert_eq!(code, 200);
        if scrape.contains("cella_libos_instance_launches_total{runtime=\"native\"} 1")
            || Instant::now() > deadline
        {
            break scrape;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        scrape.contains(
            "cella_api_requests_total{method=\"/cella.v1.NodeService/Health\",code=\"OK\"} 1"
        ),
        "{scrape}"
    );
    assert!(scrape.contains("cella_workers 2"), "{scrape}");
    assert!(
        scrape.contains("cella_tasks_ended_total{status=\"Finished\",executor=\"builtin\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("cella_task_run_seconds_count{executor=\"builtin\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("cella_store_commit_seconds_count"),
        "{scrape}"
    );
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("cella_") {
                    // A histogram is queried by its buckets; a family with no sample
                    // yet still has its TYPE line.
                    let family = word.strip_suffix("_bucket").unwrap_or(word);
                    let family = family.strip_suffix("_total").unwrap_or(family);
                    assert!(
                        scrape.contains(&format!("# TYPE {family} ")),
                        "the dashboard queries {word}, which no scrape has:\n{scrape}"
                    );
                    queried += 1;
                }
            }
        }
    }
    assert!(queried >= 11, "{queried}");

    // SIGTERM: the node stops and exits 0; its log is JSON lines.
    let code = terminate(&mut node, Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(log.contains("\"stopped\""), "{log}");
    assert!(!log.contains('\x1b'), "{log}");
}

/// A Wasm function that loops forever (until it is cut off).
const SPIN_FOREVER: &str = "(module (memory (export \"memory\") 1)\n\
     (func (export \"_start\") (loop $l (br $l))))\n";
/// A Wasm function that counts to 10^9 and returns: busy for about a second.
const SPIN_A_WHILE: &str = "(module (memory (export \"memory\") 1)\n\
     (func (export \"_start\") (local $i i64)\n\
       (loop $l (local.set $i (i64.add (local.get $i) (i64.const 1)))\n\
         (br_if $l (i64.lt_u (local.get $i) (i64.const 1000000000))))))\n";

#[test]
fn sigterm_mid_task_lets_one_finish_hands_the_other_back_and_signs_a_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forever.wat"), SPIN_FOREVER).unwrap();
    std::fs::write(dir.path().join("while.wat"), SPIN_A_WHILE).unwrap();
    // No interval checkpoints: the only one is the one written on shutdown. Three
    // workers, so that one creator may run two tasks at once (docs/scheduling.md).
    let args = [
        "--data-dir",
        "node",
        "--workers",
        "3",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "8",
        "--audit-checkpoint-interval",
        "0",
        "--log-format",
        "json",
    ];
    let (mut node, addr) = admin_cli::serve(dir.path(), &args);
    let cella = |args: &[&str]| admin_cli::cella(dir.path(), args);
    let policy = dir.path().join("node/tls/attestation-policy.sim.toml");
    let policy = policy.to_str().unwrap();
    let login = |addr: &str| {
        cella(&[
            "login",
            "--addr",
            addr,
            "--policy",
            policy,
            "--user",
            "admin",
            "--password-file",
            "node/admin-password",
        ])
    };
    login(&addr);
    let task = |payload: &str| {
        let f = cella(&[
            "function",
            "register",
            "--name",
            payload,
            "--executor",
            "wasm",
            "--payload",
            payload,
            "--public",
        ]);
        let function = f["function"]["function_id"].as_str().unwrap().to_owned();
        let t = cella(&["task", "create", "--function", &function]);
        let task = t["task"]["task_id"].as_str().unwrap().to_owned();
        cella(&["task", "approve", &task, "--yes"]);
        task
    };
    let forever = task("forever.wat");
    let finite = task("while.wat");
    cella(&["task", "invoke", &forever]);
    cella(&["task", "invoke", &finite]);
    let status = |task: &str| cella(&["task", "get", task])["task"]["status"].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&forever) != "Running" || status(&finite) != "Running" {
        assert!(
            Instant::now() < deadline,
            "the tasks never ran together: {}\n{}",
            cella(&["task", "get", &forever]),
            cella(&["task", "get", &finite])
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGTERM while both run: the node waits for the finite one, cuts off the other
    // after the grace, signs a last checkpoint and exits 0.
    let signalled_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let code = terminate(&mut node, Duration::from_secs(40));
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert_eq!(code, Some(0), "{log}");
    let last_checkpoint = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "audit checkpoint written")
        .unwrap_or_else(|| panic!("no checkpoint in the log: {log}"));
    assert_eq!(
        last_checkpoint["fields"]["why"], "shutdown",
        "{last_checkpoint}"
    );
    let covered = last_checkpoint["fields"]["entry"].as_u64().unwrap();

    // Restarted on the same data: the finite task Finished, the other was handed back
    // to the queue (a state it leaves: it runs again, or is canceled), and the trail,
    // signed through the shutdown, verifies offline.
    let (mut node, addr) = admin_cli::serve(dir.path(), &args);
    login(&addr);
    assert_eq!(status(&finite), "Finished");
    let export = cella(&["audit", "export"]);
    let checkpoints = export["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 1, "{export}");
    assert_eq!(checkpoints[0]["entry_seq"], covered);
    let entries = export["entries"].as_array().unwrap();
    let sealed: Vec<_> = entries[..usize::try_from(covered).unwrap()]
        .iter()
        .filter(|e| e["objects"][0] == forever.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(sealed.last(), Some(&"lease_lost"), "{sealed:?}");
    let ended = entries[..usize::try_from(covered).unwrap()]
        .iter()
        .rfind(|e| e["objects"][0] == finite.as_str())
        .unwrap();
    assert_eq!(ended["action"], "task_finished", "{ended}");
    // It finished during the grace, not before the signal.
    assert!(
        u128::from(ended["at_ms"].as_u64().unwrap()) > signalled_ms,
        "{ended} ended before the SIGTERM at {signalled_ms}"
    );
    std::fs::write(dir.path().join("trail.json"), export.to_string()).unwrap();
    let verdict = cella(&["audit", "verify", "trail.json", "--policy", policy]);
    assert_eq!(verdict["sealed_through"], covered, "{verdict}");
    assert!(matches!(
        status(&forever).as_str(),
        Some("Staged" | "Running")
    ));
    cella(&["task", "cancel", &forever]);
    assert_eq!(status(&forever), "Canceled");
    assert_eq!(terminate(&mut node, Duration::from_secs(20)), Some(0));
}
