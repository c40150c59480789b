//! The README's CLI walkthrough, read from README.md's code block and run step by step in
//! its order, with the real `cella` binary against a real `cella serve`: if the README's
//! order stops working, or the README changes, this test follows it. Then the CLI's
//! habits a user meets next: what `task get` and `task watch` say a task waits for, exit
//! codes, errors as JSON, `task result` refusing to overwrite, confirmation, escaping of
//! a function's text, `whoami`, and logs without colour codes in a pipe.
//!
//! The only liberties the test takes with the README's commands are the ones a shell
//! would resolve: the node listens on a free port instead of 7443, `~/.cella-X` is a
//! directory of the test, a placeholder such as `task-…` is the id the earlier command
//! printed, the password a login prompts for is typed on stdin, and `--json` is added
//! so the test can read those ids.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "walkthrough/audit.rs"]
mod audit;
mod common;

use common::Serve;

const CELLA: &str = env!("CARGO_BIN_EXE_cella");
const README: &str = include_str!("../../../README.md");
/// The README section whose code block is the walkthrough.
const SECTION: &str = "## Five minutes with the CLI";
/// The address the README's node listens on, replaced by the test node's.
const README_ADDR: &str = "127.0.0.1:7443";
/// How long a `task watch` may take to print the task's state.
const WATCH_FIRST_LINE: Duration = Duration::from_secs(20);

/// One step of the README's walkthrough.
#[derive(Debug)]
enum Step {
    /// `printf 'TEXT' > PATH`.
    Write { path: String, text: String },
    /// `[CELLA_HOME=~/.NAME] cella ARGS… [&]`.
    Cella {
        home: Option<String>,
        args: Vec<String>,
    },
}

/// The words of one shell line: single quotes group, a word starting with `#` starts a
/// comment.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return words,
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            if c == '\'' {
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// The README walkthrough's steps, in order. Panics on a line it does not know how to
/// run, so that a new kind of step cannot be skipped silently.
fn readme_steps() -> Vec<Step> {
    let section = &README[README
        .find(SECTION)
        .expect("the README has the walkthrough")..];
    let block = &section[section.find("```sh\n").expect("a sh block") + 6..];
    let block = &block[..block.find("```").expect("the block ends")];
    let mut steps = Vec::new();
    let mut logical = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        let mut w = words(&logical);
        logical.clear();
        if w.last().is_some_and(|l| l == "&") {
            w.pop();
        }
        let Some(first) = w.first().cloned() else {
            continue;
        };
        if first == "cargo" {
            // The build: the test runs the binary cargo built for it.
            continue;
        }
        if first == "printf" {
            assert!(w.len() == 4 && w[2] == ">", "unexpected printf: {w:?}");
            steps.push(Step::Write {
                path: w[3].clone(),
                text: w[1].replace("\\n", "\n"),
            });
            continue;
        }
        let home = first
            .strip_prefix("CELLA_HOME=~/.")
            .map(|h| (h.to_owned(), w.remove(0)));
        assert_eq!(
            w.first().map(String::as_str),
            Some("cella"),
            "the walkthrough test does not know how to run {w:?}"
        );
        steps.push(Step::Cella {
            home: home.map(|(h, _)| h),
            args: w[1..].to_vec(),
        });
    }
    steps
}

/// The ids and passwords the walkthrough's commands printed.
#[derive(Default)]
struct Printed {
    /// `(home, kind)` → the last id of that kind printed under that session.
    by_home: HashMap<(String, String), String>,
    /// kind → the last id of that kind printed by anyone.
    last: HashMap<String, String>,
    /// user → the generated password `user register` printed.
    passwords: HashMap<String, String>,
}

impl Printed {
    fn record(&mut self, home: &str, v: &serde_json::Value) {
        for (object, field) in [
            ("file", "file_id"),
            ("function", "function_id"),
            ("task", "task_id"),
        ] {
            if let Some(id) = v[object][field].as_str() {
                let kind = id.split('-').next().unwrap().to_owned();
                self.by_home
                    .insert((home.to_owned(), kind.clone()), id.to_owned());
                self.last.insert(kind, id.to_owned());
            }
        }
        if let (Some(user), Some(pw)) = (v["user"]["name"].as_str(), v["password"].as_str()) {
            self.passwords.insert(user.to_owned(), pw.to_owned());
        }
    }

    /// `arg` with its placeholder (`task-…`, `a=input-…`) replaced by the id printed.
    fn resolve(&self, home: &str, arg: &str) -> String {
        for kind in ["function", "task", "input", "output"] {
            let placeholder = format!("{kind}-…");
            if arg.contains(&placeholder) {
                let id = self
                    .by_home
                    .get(&(home.to_owned(), kind.to_owned()))
                    .or_else(|| self.last.get(kind))
                    .unwrap_or_else(|| panic!("{arg}: no {kind} id was printed before"));
                return arg.replace(&placeholder, id);
            }
        }
        arg.to_owned()
    }
}

struct Env {
    dir: tempfile::TempDir,
    addr: String,
    policy: PathBuf,
}

impl Env {
    fn command(&self, home: &str, args: &[&str]) -> Command {
        let mut c = Command::new(CELLA);
        c.args(args)
            .current_dir(self.dir.path())
            .env("CELLA_HOME", self.dir.path().join(home))
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        c
    }

    /// Runs `cella` as the user whose session lives in `home`.
    fn run(&self, home: &str, args: &[&str]) -> Output {
        self.command(home, args).output().unwrap()
    }

    /// Runs `cella`, requires success, and returns its stdout.
    fn text(&self, home: &str, args: &[&str]) -> String {
        let out = self.run(home, args);
        assert!(
            out.status.success(),
            "cella {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `cella --json …`, requires success, and returns the parsed object.
    fn json(&self, home: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.text(home, &all)).unwrap()
    }

    /// Runs `cella --json …`, requires it to fail with `exit`, and returns the one JSON
    /// error object it printed on stderr (stdout stays empty).
    fn json_error(&self, home: &str, args: &[&str], exit: i32) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(home, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "cella {args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {stderr}"));
        assert_eq!(v["error"]["exit_code"], exit, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        v
    }
}

/// Starts `cella serve ARGS --listen 127.0.0.1:0` in `dir` and reads where it listens;
/// its log goes to `node.log` in `dir`, at `rust_log`.
fn serve(dir: tempfile::TempDir, args: &[String], rust_log: &str) -> (Env, Serve) {
    let mut command = Command::new(CELLA);
    command
        .arg("--json")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", rust_log)
        .stderr(std::fs::File::create(dir.path().join("node.log")).unwrap());
    let (node, first) = common::start(command);
    let started: serde_json::Value = serde_json::from_str(&first).unwrap();
    let env = Env {
        addr: started["listening"].as_str().unwrap().to_owned(),
        policy: dir
            .path()
            .join(started["attestation_policy"].as_str().unwrap()),
        dir,
    };
    (env, node)
}

/// Runs the README's walkthrough; returns the node and the ids it printed.
fn run_readme() -> (Env, Serve, Printed) {
    run_readme_with(&[], "warn")
}

/// [`run_readme`] with `extra` flags for its `cella serve` and its log at `rust_log`.
fn run_readme_with(extra: &[&str], rust_log: &str) -> (Env, Serve, Printed) {
    let steps = readme_steps();
    let dir = tempfile::tempdir().unwrap();
    let Some(Step::Cella { home: None, args }) = steps.first() else {
        panic!("the walkthrough starts with cella serve: {steps:?}");
    };
    assert_eq!(args[0], "serve", "{args:?}");
    let mut args = args.clone();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let (env, node) = serve(dir, &args, rust_log);
    let mut printed = Printed::default();
    let mut commands = 0;
    for step in &steps[1..] {
        let (home, args) = match step {
            Step::Write { path, text } => {
                std::fs::write(env.dir.path().join(path), text).unwrap();
                continue;
            }
            Step::Cella { home, args } => (home.clone().unwrap_or_else(|| "cella".into()), args),
        };
        let mut args: Vec<String> = args
            .iter()
            .map(|a| {
                if a == README_ADDR {
                    env.addr.clone()
                } else {
                    printed.resolve(&home, a)
                }
            })
            .collect();
        let mut stdin = None;
        if args[0] == "login" && !args.iter().any(|a| a.starts_with("--password")) {
            // The login prompts; the test types the password `user register` printed.
            let user = &args[args.iter().position(|a| a == "--user").unwrap() + 1];
            stdin = Some(printed.passwords[user].clone());
            args.push("--password-stdin".into());
        }
        let mut cmd = env.command(&home, &[]);
        cmd.arg("--json")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(pw) = stdin {
            writeln!(input, "{pw}").unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "README step `CELLA_HOME=~/.{home} cella {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        printed.record(&home, &v);
        commands += 1;
    }
    // The block is the whole flow, not a fragment of it.
    assert!(
        commands >= 25,
        "only {commands} commands in the README block"
    );
    (env, node, printed)
}

#[test]
fn readme_steps_are_parsed_in_order() {
    let steps = readme_steps();
    let cella: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Cella { home, args } => Some(format!(
                "{} {}",
                home.as_deref().unwrap_or("-"),
                args[..2.min(args.len())].join(" ")
            )),
            Step::Write { .. } => None,
        })
        .collect();
    // Every slot is assigned before anyone approves: approval needs them all.
    let last_assign = cella
        .iter()
        .rposition(|c| c.contains("task assign"))
        .unwrap();
    let first_approve = cella
        .iter()
        .position(|c| c.contains("task approve"))
        .unwrap();
    assert!(last_assign < first_approve, "{cella:#?}");
    assert_eq!(
        cella.iter().filter(|c| c.contains("task approve")).count(),
        3
    );
    assert_eq!(words("a 'b c' d # e 'f'"), ["a", "b c", "d"]);
}

#[test]
fn readme_walkthrough_and_cli_errors() {
    let (env, _node, printed) = run_readme();
    let root = env.dir.path().to_owned();
    for result in ["result/a_out", "result-b/b_out"] {
        assert_eq!(
            std::fs::read_to_string(root.join(result)).unwrap(),
            "alice\ncarol\n"
        );
    }
    let task = printed.last["task"].clone();
    let policy = env.policy.to_str().unwrap().to_owned();

    // `task result` labels what it prints, shows the log, and keeps existing files.
    std::fs::write(root.join("result/a_out"), "mine\n").unwrap();
    let result_a = [
        "task",
        "result",
        &task,
        "--out-dir",
        "result",
        "--key-file",
        "a_out=a_out.key",
    ];
    let again = env.run("cella-a", &result_a);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("result/a_out already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("result/a_out")).unwrap(),
        "mine\n"
    );
    let text = env.text("cella-a", &[&result_a[..], &["--force"]].concat());
    assert!(text.contains("\nthe function returned: 2\n"), "{text}");
    assert!(text.contains("\nthe function's log:"), "{text}");
    assert_eq!(
        std::fs::read_to_string(root.join("result/a_out")).unwrap(),
        "alice\ncarol\n"
    );

    // Node commands work with the session a --policy login made, and take --policy.
    let health = env.json("cella-a", &["node", "health"]);
    assert_eq!(health["status"], "serving", "{health}");
    let version = env.text("cella-a", &["node", "version"]);
    assert!(version.contains("builtins:"), "{version}");
    let health = env.json(
        "nobody",
        &["node", "health", "--addr", &env.addr, "--policy", &policy],
    );
    assert_eq!(health["addr"], env.addr.as_str());
    let bare = env.json_error("nobody", &["node", "version", "--addr", &env.addr], 2);
    assert_eq!(bare["error"]["code"], "usage");
    assert!(
        bare["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--policy")
    );

    // A login without --policy names it and says where the node prints it.
    let no_policy = env.run("nobody", &["login", "--addr", &env.addr, "--user", "fo"]);
    assert_eq!(no_policy.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&no_policy.stderr);
    assert!(
        stderr.contains("needs --policy FILE")
            && stderr.contains("`cella serve` prints when it starts")
            && !stderr.contains("--cert <PEM_PATH>"),
        "{stderr}"
    );

    // Errors with --json: one object on stderr, with a code; usage errors exit 2.
    let missing = env.json_error(
        "cella-a",
        &["task", "get", "task-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e"],
        1,
    );
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
    let usage = env.json_error("cella-a", &["task", "frobnicate"], 2);
    assert_eq!(usage["error"]["code"], "usage");
    let usage = env.run("cella-a", &["task", "get"]);
    assert_eq!(usage.status.code(), Some(2));
    let nobody = env.json_error("nobody", &["file", "list"], 1);
    assert_eq!(nobody["error"]["code"], "not_logged_in");

    // whoami reads the session; its warning about an open session file is not coloured
    // when stderr is a pipe.
    let who = env.json("cella-a", &["whoami"]);
    assert_eq!(who["user"], "bank-a");
    assert_eq!(who["roles"], serde_json::json!(["data_owner"]));
    assert_eq!(who["trust"], "attestation policy");
    assert_eq!(who["addr"], env.addr.as_str());
    let session = root.join("cella-a/session.json");
    std::fs::set_permissions(&session, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .command("cella-a", &["whoami"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    std::fs::set_permissions(&session, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("bank-a on "), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("session file has mode 644"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a pipe: {stderr:?}"
    );

    waiting_watch_and_cancel(&env, &printed);
    failed_task_exit_codes_and_escaping(&env);

    // Errors name what was wrong and exit non-zero.
    let foreign = env.run(
        "cella-b",
        &[
            "task",
            "result",
            &task,
            "--out-dir",
            "r2",
            "--key-file",
            "a_out=b_out.key",
        ],
    );
    assert_eq!(foreign.status.code(), Some(1));
    let bad_id = env.run("cella-a", &["task", "get", "task-not-a-uuid"]);
    assert_eq!(bad_id.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("task-not-a-uuid"));
    let no_session = env.run("nobody", &["file", "list"]);
    assert_eq!(no_session.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_session.stderr).contains("not logged in"));

    attest_and_collateral(&env, &printed);
}

/// A task nobody acted on yet: `task get` and `task watch` say who must act, at once;
/// a canceled task's watch exits 4.
fn waiting_watch_and_cancel(env: &Env, printed: &Printed) {
    let function = &printed.last["function"];
    let t = env.json(
        "cella-a",
        &[
            "task",
            "create",
            "--function",
            function,
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
    let task = t["task"]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(
        t["task"]["waiting_for"]["assign"].as_array().unwrap().len(),
        4,
        "{t}"
    );
    let input_a = &printed.by_home[&("cella-a".to_owned(), "input".to_owned())];
    env.json(
        "cella-a",
        &["task", "assign", &task, "--input", &format!("a={input_a}")],
    );
    let shown = env.text("cella-b", &["task", "get", &task]);
    assert!(
        shown.contains(
            "\n  to assign   input b by bank-b, output a_out by bank-a, output b_out by bank-b"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("\n  to approve  bank-a, bank-b, fo (once every slot is assigned)"),
        "{shown}"
    );
    assert!(
        shown.contains("\n  to invoke   bank-a (the creator"),
        "{shown}"
    );

    // Invoking early fails, naming what is missing.
    let early = env.run("cella-a", &["task", "invoke", &task]);
    assert_eq!(early.status.code(), Some(1));

    // `task watch` prints the state at once, with what it waits for.
    let mut watch = env
        .command("cella-b", &["task", "watch", &task])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(WATCH_FIRST_LINE);
    let first = first.expect("task watch printed nothing");
    assert!(
        first.contains(&format!("{task}  Created: waiting for assignments: "))
            && first.contains("input b by bank-b"),
        "{first}"
    );
    // Canceling ends the watch with exit code 4.
    env.json("cella-a", &["task", "cancel", &task]);
    let status = watch.wait().unwrap();
    assert_eq!(status.code(), Some(4));
    let last = rx.recv_timeout(WATCH_FIRST_LINE).unwrap();
    assert!(last.contains("Canceled"), "{last}");
    let canceled = env.json_error(
        "cella-a",
        &["task", "result", &task, "--out-dir", "r-canceled"],
        4,
    );
    assert_eq!(canceled["error"]["code"], "task_canceled");
}

/// A task that ends Failed exits 3 from `watch` and `result`; a function's escape
/// sequences never reach the terminal; `approve` asks only on a terminal.
fn failed_task_exit_codes_and_escaping(env: &Env) {
    // `echo` without its argument fails: the function's fault.
    let f = env.json(
        "cella-fo",
        &[
            "function",
            "register",
            "--name",
            "echo-none",
            "--builtin",
            "echo",
        ],
    );
    let function = f["function"]["function_id"].as_str().unwrap();
    let t = env.json("cella-fo", &["task", "create", "--function", function]);
    let task = t["task"]["task_id"].as_str().unwrap();
    env.json("cella-fo", &["task", "approve", task]);
    env.json("cella-fo", &["task", "invoke", task]);
    let watched = env.run("cella-fo", &["task", "watch", task]);
    assert_eq!(
        watched.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(String::from_utf8_lossy(&watched.stdout).contains("Failed: "));
    let failed = env.json_error(
        "cella-fo",
        &["task", "result", task, "--out-dir", "r-failed"],
        3,
    );
    assert_eq!(failed["error"]["code"], "task_failed");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo needs the argument")
    );

    // A return value with escape sequences is shown escaped, never as itself.
    let f = env.json(
        "cella-fo",
        &[
            "function",
            "register",
            "--name",
            "echo",
            "--builtin",
            "echo",
            "--arg",
            "message",
        ],
    );
    let function = f["function"]["function_id"].as_str().unwrap();
    let evil = "\x1b[2J\x1b[1;31mhacked\r\n  log | forged";
    let t = env.json(
        "cella-fo",
        &[
            "task",
            "create",
            "--function",
            function,
            "--arg",
            &format!("message={evil}"),
        ],
    );
    let task = t["task"]["task_id"].as_str().unwrap();
    approve_on_a_terminal(env, task);
    env.json("cella-fo", &["task", "invoke", task]);
    let watched = env.run("cella-fo", &["task", "watch", task]);
    assert_eq!(watched.status.code(), Some(0));
    for args in [
        vec!["task", "get", task],
        vec!["task", "result", task, "--out-dir", "r-echo"],
    ] {
        let text = env.text("cella-fo", &args);
        assert!(!text.contains(['\x1b', '\r']), "{args:?}: {text:?}");
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("log | forged")),
            "{text}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{text}");
    }
    // JSON carries the bytes as they are.
    let result = env.json("cella-fo", &["task", "result", task, "--out-dir", "r-echo"]);
    assert_eq!(result["return_value"], evil);
}

/// `task approve` asks on a terminal after showing what it covers; `--yes` or a pipe
/// never asks. The terminal is a pty from util-linux's `script`.
fn approve_on_a_terminal(env: &Env, task: &str) {
    let approve = |answer: &str| {
        let mut child = Command::new("script")
            .args(["-qec", &format!("{CELLA} task approve {task}"), "/dev/null"])
            .current_dir(env.dir.path())
            .env("CELLA_HOME", env.dir.path().join("cella-fo"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux script runs a command on a pty");
        let mut stdin = child.stdin.take().unwrap();
        // Answer once the question is on the terminal: the pty echoes it to stdout.
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("[y/N] ") {
            let n = std::io::Read::read(&mut reader, &mut byte).unwrap();
            assert!(n > 0, "no question: {}", String::from_utf8_lossy(&seen));
            seen.push(byte[0]);
        }
        writeln!(stdin, "{answer}").unwrap();
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
        let status = child.wait().unwrap();
        seen.extend(rest);
        (status, String::from_utf8_lossy(&seen).into_owned())
    };
    let (status, screen) = approve("n");
    assert!(!status.success(), "{screen}");
    assert!(
        screen.contains("approving task-") && screen.contains("argument    message="),
        "{screen}"
    );
    assert!(screen.contains("not approved"), "{screen}");
    let t = env.json("cella-fo", &["task", "get", task]);
    assert_eq!(t["task"]["approved_by"], serde_json::json!([]), "{t}");
    let (status, screen) = approve("y");
    assert!(status.success(), "{screen}");
    assert!(screen.contains("approved: 1 of 1"), "{screen}");
}

/// `cella attest --collateral` loads DCAP collateral for SGX nodes (this node is in
/// simulation, which needs none: it is still accepted) and reports what it loaded.
fn attest_and_collateral(env: &Env, printed: &Printed) {
    let root = env.dir.path();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cella-attest/testdata/sgx_quote_collateral.json");
    let policy = env.policy.to_str().unwrap().to_owned();
    let attested = env.json(
        "nobody",
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
        "nobody",
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
    std::fs::write(root.join("fo.pw"), format!("{}\n", printed.passwords["fo"])).unwrap();
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
