//! `cella serve --store postgres://…`: a node whose metadata lives in PostgreSQL runs a
//! real task end to end, keeps nothing of it in a local redb file, and finds it again
//! after a restart. The server is the test harness's throwaway cluster
//! (`cella_store::pg_cluster`): without PostgreSQL this test fails, unless
//! `CELLA_TEST_SKIP_POSTGRES=1`.

use std::process::Command;

mod admin_cli;
mod common;

use admin_cli::{cella, login_admin, run_echo_task, serve};

const CELLA: &str = env!("CARGO_BIN_EXE_cella");

/// `cella serve` arguments for a node with its data in `node` and its store at `url`.
fn node_args(url: &str) -> [&str; 6] {
    [
        "--data-dir",
        "node",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
    ]
}

#[test]
fn a_task_runs_end_to_end_on_a_postgres_store() {
    let Some(url) = cella_store::pg_cluster::database("a_task_runs_end_to_end_on_a_postgres_store")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = serve(dir.path(), &node_args(&url));
    login_admin(dir.path(), &addr);
    let task = run_echo_task(dir.path());
    let shown = cella(dir.path(), &["task", "get", &task]);
    assert_eq!(shown["task"]["status"], "Finished", "{shown}");

    // The records are in PostgreSQL, sealed; none went to a local redb file.
    assert!(!dir.path().join("node/meta.redb").exists());
    let tasks = cella_store::pg_cluster::query_text(
        &url,
        "SELECT count(*) FROM cella_records WHERE tbl = 'tasks'",
    )
    .unwrap();
    assert_eq!(tasks, "1");

    // A restart on the same database finds the task and the session's user again.
    drop(node);
    let (_node, addr) = serve(dir.path(), &node_args(&url));
    login_admin(dir.path(), &addr);
    let shown = cella(dir.path(), &["task", "get", &task]);
    assert_eq!(shown["task"]["status"], "Finished", "{shown}");
}

/// `store` in the configuration file selects PostgreSQL and is printed back; a store
/// that is not PostgreSQL, or a URL with a password, is refused by name before anything
/// is written, and the password is never echoed.
#[test]
fn store_setting_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(CELLA)
            .args(args)
            .current_dir(dir.path())
            .env_remove("CELLA_DATA_DIR")
            .output()
            .unwrap()
    };
    std::fs::write(
        dir.path().join("cella.toml"),
        "data_dir = \"node\"\nstore = \"postgres://cella@db:5432/cella\"\n",
    )
    .unwrap();
    let printed = run(&["serve", "--config", "cella.toml", "--print-config"]);
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(
        printed.contains("store = \"postgres://cella@db:5432/cella\"\n"),
        "{printed}"
    );

    let other = run(&["serve", "--data-dir", "node", "--store", "mysql://db/cella"]);
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("mysql://db/cella") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );

    let with_password = run(&[
        "serve",
        "--data-dir",
        "node",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "postgres://cella:hunter2-secret@127.0.0.1:1/cella",
    ]);
    assert!(!with_password.status.success());
    let stderr = String::from_utf8_lossy(&with_password.stderr);
    assert!(stderr.contains("holds a password"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
    assert!(!dir.path().join("node/meta.redb").exists());
}
