//! Command-line parsing: the tricky forms parse to what the API expects, and mistakes
//! are caught before anything is sent.

use clap::{CommandFactory, Parser};

use crate::cmd::file::FileCmd;
use crate::cmd::function::{FunctionCmd, register_spec, updated_spec};
use crate::cmd::node::NodeCmd;
use crate::cmd::task::{TaskCmd, argument_map};
use crate::cmd::user::UserCmd;
use crate::{Cli, Command};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("cella").chain(args.iter().copied()))
}

const FUNCTION_ID: &str = "function-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";
const TASK_ID: &str = "task-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";
const INPUT_ID: &str = "input-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";
const OUTPUT_ID: &str = "output-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn function_register_parses_arguments_and_slots() {
    let cli = parse(&[
        "function",
        "register",
        "--name",
        "psi",
        "--builtin",
        "ordered_set_intersect",
        "--arg",
        "need",
        "--arg",
        "sep=,",
        "--arg",
        "mode=exact:fixed",
        "--input",
        "left",
        "--input",
        "right?",
        "--output",
        "result",
        "--allow",
        "bob,carol",
        "--allow",
        "dave",
        "--quota",
        "3",
        "--json",
    ])
    .unwrap();
    assert!(cli.json);
    let Command::Function(FunctionCmd::Register(args)) = cli.command else {
        panic!("not function register");
    };
    let (spec, payload) = register_spec(&args).unwrap();
    assert_eq!(payload, b"ordered_set_intersect");
    assert_eq!(spec.executor, "builtin");
    let args: Vec<_> = spec
        .arguments
        .iter()
        .map(|a| (a.name.as_str(), a.default_value.as_deref(), a.overridable))
        .collect();
    assert_eq!(
        args,
        [
            ("need", None, true),
            ("sep", Some(","), true),
            ("mode", Some("exact"), false)
        ]
    );
    let inputs: Vec<_> = spec
        .inputs
        .iter()
        .map(|s| (s.name.as_str(), s.optional))
        .collect();
    assert_eq!(inputs, [("left", false), ("right", true)]);
    assert_eq!(spec.outputs[0].name, "result");
    assert_eq!(spec.allowed_users, ["bob", "carol", "dave"]);
    assert!(!spec.public);
    assert_eq!(spec.quota, Some(3));
}

#[test]
fn function_register_rejects_bad_specs_locally() {
    // An optional output is refused by the parser.
    let err = parse(&[
        "function",
        "register",
        "--name",
        "f",
        "--builtin",
        "echo",
        "--output",
        "o?",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("cannot be optional"), "{err}");
    // A fixed argument needs a default.
    let err = parse(&[
        "function",
        "register",
        "--name",
        "f",
        "--builtin",
        "echo",
        "--arg",
        "x:fixed",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("no default"), "{err}");
    // --public and --allow exclude each other; so do --payload and --builtin.
    assert!(
        parse(&[
            "function",
            "register",
            "--name",
            "f",
            "--builtin",
            "e",
            "--public",
            "--allow",
            "a"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "function",
            "register",
            "--name",
            "f",
            "--builtin",
            "e",
            "--payload",
            "x"
        ])
        .is_err()
    );
    // The executor must be known.
    assert!(
        parse(&[
            "function",
            "register",
            "--name",
            "f",
            "--executor",
            "jvm",
            "--payload",
            "x"
        ])
        .is_err()
    );

    // Rules checked with the node's own validation, before connecting.
    let spec_err = |args: &[&str]| {
        let cli = parse(args).unwrap();
        let Command::Function(FunctionCmd::Register(a)) = cli.command else {
            panic!("not function register");
        };
        format!("{:#}", register_spec(&a).unwrap_err())
    };
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("f.wasm");
    std::fs::write(&wasm, b"\0asm").unwrap();
    let wasm = wasm.to_str().unwrap();
    assert!(
        spec_err(&["function", "register", "--name", "f", "--payload", wasm])
            .contains("--executor")
    );
    assert!(
        spec_err(&[
            "function",
            "register",
            "--name",
            "f",
            "--executor",
            "libos",
            "--payload",
            wasm
        ])
        .contains("runtime")
    );
    assert!(
        spec_err(&[
            "function",
            "register",
            "--name",
            "f",
            "--builtin",
            "e",
            "--input",
            "a",
            "--input",
            "a"
        ])
        .contains("twice")
    );
    assert!(
        spec_err(&[
            "function",
            "register",
            "--name",
            "f",
            "--executor",
            "wasm",
            "--builtin",
            "e"
        ])
        .contains("--executor builtin")
    );
    assert!(
        spec_err(&[
            "function",
            "register",
            "--name",
            "f",
            "--payload",
            "/nonexistent/x",
            "--executor",
            "wasm"
        ])
        .contains("cannot read payload")
    );
}

#[test]
fn function_update_changes_only_what_is_given() {
    let cli = parse(&[
        "function",
        "register",
        "--name",
        "f",
        "--builtin",
        "echo",
        "--arg",
        "a=1",
        "--input",
        "in",
        "--output",
        "out",
        "--public",
        "--quota",
        "5",
    ])
    .unwrap();
    let Command::Function(FunctionCmd::Register(r)) = cli.command else {
        panic!("not register");
    };
    let (spec, _) = register_spec(&r).unwrap();

    let cli = parse(&[
        "function",
        "update",
        FUNCTION_ID,
        "--description",
        "new",
        "--allow",
        "bob",
        "--no-quota",
    ])
    .unwrap();
    let Command::Function(FunctionCmd::Update(u)) = cli.command else {
        panic!("not update");
    };
    let (next, payload) = updated_spec(spec.clone(), &u).unwrap();
    assert!(payload.is_none());
    assert_eq!(next.description, "new");
    assert_eq!(next.arguments, spec.arguments);
    assert_eq!(next.inputs, spec.inputs);
    assert!(!next.public);
    assert_eq!(next.allowed_users, ["bob"]);
    assert_eq!(next.quota, None);

    let cli = parse(&[
        "function",
        "update",
        FUNCTION_ID,
        "--no-args",
        "--builtin",
        "other",
        "--private",
    ])
    .unwrap();
    let Command::Function(FunctionCmd::Update(u)) = cli.command else {
        panic!("not update");
    };
    let (next, payload) = updated_spec(spec, &u).unwrap();
    assert!(next.arguments.is_empty());
    assert_eq!(payload.as_deref(), Some(&b"other"[..]));
    assert!(!next.public && next.allowed_users.is_empty());
    assert!(parse(&["function", "update", FUNCTION_ID, "--private", "--public"]).is_err());
    assert!(parse(&["function", "update", "task-1"]).is_err());
}

#[test]
fn a_functions_output_cap_is_set_kept_and_given_back_to_the_node() {
    let register = |extra: &[&str]| {
        let mut args = vec!["function", "register", "--name", "f", "--builtin", "echo"];
        args.extend_from_slice(extra);
        let Command::Function(FunctionCmd::Register(r)) = parse(&args).unwrap().command else {
            panic!("not register");
        };
        register_spec(&r)
    };
    let update = |spec: &cella_client::proto::FunctionSpec, extra: &[&str]| {
        let mut args = vec!["function", "update", FUNCTION_ID];
        args.extend_from_slice(extra);
        let Command::Function(FunctionCmd::Update(u)) = parse(&args).unwrap().command else {
            panic!("not update");
        };
        updated_spec(spec.clone(), &u).map(|(s, _)| s.max_output_bytes)
    };
    assert_eq!(register(&[]).unwrap().0.max_output_bytes, None);
    let (spec, _) = register(&["--max-output-bytes", "4096"]).unwrap();
    assert_eq!(spec.max_output_bytes, Some(4096));
    // Zero is caught before anything is sent, naming the setting.
    let e = format!("{:#}", register(&["--max-output-bytes", "0"]).unwrap_err());
    assert!(e.contains("max_output_bytes = 0"), "{e}");
    assert!(parse(&["function", "register", "--max-output-bytes", "-1"]).is_err());

    // An update that does not name the cap keeps it; one that does replaces it; and
    // --node-output-cap hands the choice back to the node.
    assert_eq!(update(&spec, &["--description", "d"]).unwrap(), Some(4096));
    assert_eq!(
        update(&spec, &["--max-output-bytes", "10"]).unwrap(),
        Some(10)
    );
    assert_eq!(update(&spec, &["--node-output-cap"]).unwrap(), None);
    let e = format!(
        "{:#}",
        update(&spec, &["--max-output-bytes", "0"]).unwrap_err()
    );
    assert!(e.contains("max_output_bytes = 0"), "{e}");
    let both = [
        "function",
        "update",
        FUNCTION_ID,
        "--node-output-cap",
        "--max-output-bytes",
        "1",
    ];
    assert!(parse(&both).is_err());
}

#[test]
fn task_create_parses_owner_lists() {
    let cli = parse(&[
        "task",
        "create",
        "--function",
        FUNCTION_ID,
        "--arg",
        "k=v=w",
        "--arg",
        "empty=",
        "--input",
        "left=alice",
        "--input",
        "right=bob,carol",
        "--output",
        "out=alice",
    ])
    .unwrap();
    let Command::Task(TaskCmd::Create {
        function,
        args,
        inputs,
        outputs,
    }) = cli.command
    else {
        panic!("not task create");
    };
    assert_eq!(function, FUNCTION_ID);
    let args = argument_map(args).unwrap();
    assert_eq!(args["k"], "v=w");
    assert_eq!(args["empty"], "");
    assert_eq!(inputs[1].slot, "right");
    assert_eq!(inputs[1].owners, ["bob", "carol"]);
    assert_eq!(outputs[0].owners, ["alice"]);

    assert!(argument_map(vec![("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    assert!(
        parse(&[
            "task",
            "create",
            "--function",
            FUNCTION_ID,
            "--input",
            "left"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "task",
            "create",
            "--function",
            FUNCTION_ID,
            "--input",
            "left=bad user"
        ])
        .is_err()
    );
    assert!(parse(&["task", "create", "--function", "nope"]).is_err());
}

#[test]
fn task_assign_checks_file_kinds() {
    let cli = parse(&[
        "task",
        "assign",
        TASK_ID,
        "--input",
        &format!("left={INPUT_ID}"),
        "--output",
        &format!("out={OUTPUT_ID}"),
    ])
    .unwrap();
    let Command::Task(TaskCmd::Assign {
        id,
        inputs,
        outputs,
    }) = cli.command
    else {
        panic!("not task assign");
    };
    assert_eq!(id, TASK_ID);
    assert_eq!(inputs[0].file_id, INPUT_ID);
    assert_eq!(outputs[0].slot, "out");
    // An output file in an input slot is caught here.
    assert!(
        parse(&[
            "task",
            "assign",
            TASK_ID,
            "--input",
            &format!("left={OUTPUT_ID}")
        ])
        .is_err()
    );
}

#[test]
fn task_approve_result_and_watch() {
    let digest = "AB".repeat(32);
    let cli = parse(&["task", "approve", TASK_ID, "--digest", &digest]).unwrap();
    let Command::Task(TaskCmd::Approve {
        digest: Some(d), ..
    }) = cli.command
    else {
        panic!("not approve with digest");
    };
    assert_eq!(d, "ab".repeat(32));
    assert!(parse(&["task", "approve", TASK_ID, "--digest", "abc"]).is_err());
    assert!(matches!(
        parse(&["task", "approve", TASK_ID]).unwrap().command,
        Command::Task(TaskCmd::Approve { digest: None, .. })
    ));

    let cli = parse(&[
        "task",
        "result",
        TASK_ID,
        "--out-dir",
        "d",
        "--key-file",
        "out=k1.key",
        "--key-file",
        "log=k2.key",
    ])
    .unwrap();
    let Command::Task(TaskCmd::Result { keys, .. }) = cli.command else {
        panic!("not result");
    };
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].0, "out");
    assert!(parse(&["task", "result", TASK_ID, "--key-file", "k1.key"]).is_err());
    assert!(parse(&["task", "watch", TASK_ID, "--json"]).unwrap().json);
    assert!(matches!(
        parse(&["task", "result", TASK_ID, "--out-dir", "d", "--force"])
            .unwrap()
            .command,
        Command::Task(TaskCmd::Result { force: true, .. })
    ));
    assert!(matches!(
        parse(&["task", "approve", TASK_ID, "--yes"])
            .unwrap()
            .command,
        Command::Task(TaskCmd::Approve { yes: true, .. })
    ));
}

#[test]
fn users_files_and_sessions() {
    let cli = parse(&[
        "user",
        "register",
        "bob",
        "--role",
        "data_owner,function_owner",
    ])
    .unwrap();
    let Command::User(UserCmd::Register {
        name,
        roles,
        password_file,
    }) = cli.command
    else {
        panic!("not user register");
    };
    assert_eq!(name, "bob");
    assert_eq!(roles, ["data_owner", "function_owner"]);
    assert!(password_file.is_none());
    assert!(parse(&["user", "register", "bob"]).is_err());
    assert!(parse(&["user", "register", "bob", "--role", "root"]).is_err());

    let cli = parse(&[
        "file",
        "register-url",
        "file:///data/x.sealed",
        "--key-file",
        "k",
        "--digest",
        &"0".repeat(64),
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Command::File(FileCmd::RegisterUrl { .. })
    ));
    assert!(parse(&["file", "download", "task-1", "--out", "x"]).is_err());
    assert!(parse(&["file", "encrypt", "--in", "p", "--out", "c"]).is_ok());

    assert!(
        parse(&[
            "login",
            "--addr",
            "localhost:7443",
            "--cert",
            "c.pem",
            "--user",
            "alice",
            "--password-file",
            "f",
            "--password-stdin"
        ])
        .is_err()
    );
    // node commands take --addr with --policy or --cert, or neither; --addr alone is a
    // usage error naming --policy (checked when the command runs, to say where it is).
    let Command::Node(NodeCmd::Health(alone)) = parse(&["node", "health", "--addr", "localhost:1"])
        .unwrap()
        .command
    else {
        panic!("not node health")
    };
    let err = alone.trust.load("cella node --addr").err().unwrap();
    assert_eq!(crate::exit::exit_of(&err), crate::exit::Exit::Usage);
    assert!(err.to_string().contains("--policy FILE"), "{err}");
    assert!(
        parse(&[
            "node",
            "version",
            "--addr",
            "localhost:1",
            "--cert",
            "c.pem"
        ])
        .is_ok()
    );
    assert!(
        parse(&[
            "serve",
            "--data-dir",
            "d",
            "--listen",
            "127.0.0.1:7443",
            "--workers",
            "4"
        ])
        .is_ok()
    );
    assert!(parse(&["demo", "--json"]).is_ok());
    assert!(parse(&["bench", "--json"]).is_ok());
}

#[test]
fn errors_read_error_colon_what() {
    let err = anyhow::anyhow!("not logged in: run cella login");
    assert_eq!(
        crate::exit::error_text(&err),
        "error: not logged in: run cella login"
    );
}

#[test]
fn a_refused_token_gets_a_login_hint_but_a_failed_login_does_not() {
    let refused = |op| {
        anyhow::Error::from(cella_client::ClientError::Status {
            op,
            code: cella_client::Code::Unauthenticated,
            message: "token expired".to_owned(),
        })
    };
    let text = crate::exit::error_text(&refused("GetTask"));
    assert!(
        text.starts_with("error: GetTask failed: token expired"),
        "{text}"
    );
    assert!(text.contains("run cella login"), "{text}");
    assert!(!crate::exit::error_text(&refused("Login")).contains("hint"));
}

#[test]
fn attest_takes_an_address_and_a_policy() {
    let cli = parse(&["attest", "127.0.0.1:7443", "--policy", "p.toml"]).unwrap();
    let Command::Attest(args) = cli.command else {
        panic!("not attest")
    };
    assert_eq!(args.addr, "127.0.0.1:7443");
    assert_eq!(args.policy, std::path::PathBuf::from("p.toml"));
    assert!(args.trust_root.is_none());
    // The policy is required; signatures need a trust root.
    assert!(parse(&["attest", "127.0.0.1:7443"]).is_err());
    assert!(parse(&["attest", "x:1", "--policy", "p", "--signatures", "s"]).is_err());
    assert!(
        parse(&[
            "attest",
            "x:1",
            "--policy",
            "p",
            "--trust-root",
            "r",
            "--signatures",
            "s"
        ])
        .is_ok()
    );
}

#[test]
fn login_attests_with_a_policy_or_pins_a_certificate() {
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "--addr", "localhost:7443", "--user", "alice"];
        args.extend_from_slice(extra);
        parse(&args)
    };
    let cli = login(&["--policy", "node/tls/attestation-policy.sim.toml"]).unwrap();
    let Command::Login(args) = cli.command else {
        panic!("not login")
    };
    assert!(args.trust.policy.is_some() && args.trust.cert.is_none());
    assert!(login(&["--cert", "c.pem"]).is_ok());
    // Not both.
    assert!(login(&["--cert", "c.pem", "--policy", "p.toml"]).is_err());
}

#[test]
fn login_without_policy_names_policy_and_where_the_node_prints_it() {
    let cli = parse(&["login", "--addr", "localhost:7443", "--user", "alice"]).unwrap();
    let Command::Login(args) = cli.command else {
        panic!("not login")
    };
    let err = args.trust.load("cella login").err().unwrap();
    let text = crate::exit::error_text(&err);
    assert!(
        text.starts_with("error: cella login needs --policy FILE"),
        "{text}"
    );
    assert!(
        text.contains("`cella serve` prints when it starts")
            && text.contains("tls/attestation-policy.sim.toml"),
        "{text}"
    );
    assert!(!text.contains("--cert <PEM_PATH>"), "{text}");
    assert_eq!(crate::exit::exit_of(&err), crate::exit::Exit::Usage);
    assert_eq!(crate::exit::error_json(&err)["error"]["code"], "usage");
}

#[test]
fn node_commands_take_a_policy_like_login() {
    let node = |args: &[&str]| match parse(args).map(|c| c.command) {
        Ok(Command::Node(NodeCmd::Health(a) | NodeCmd::Version(a))) => Ok(a),
        Ok(_) => panic!("not node"),
        Err(e) => Err(e),
    };
    let a = node(&["node", "health", "--addr", "x:1", "--policy", "p.toml"]).unwrap();
    assert_eq!(a.trust.policy, Some(std::path::PathBuf::from("p.toml")));
    let a = node(&["node", "version", "--addr", "x:1", "--cert", "c.pem"]).unwrap();
    assert!(a.trust.cert.is_some());
    assert!(node(&["node", "version", "--policy", "p", "--cert", "c"]).is_err());
    // With the saved session's node, nothing is needed.
    let a = node(&["node", "health"]).unwrap();
    assert!(a.addr.is_none() && !a.trust.given());
}

#[test]
fn completions_cover_the_command_tree() {
    let script = |shell| {
        let Command::Completions(args) = parse(&["completions", shell]).unwrap().command else {
            panic!("not completions")
        };
        crate::cmd::completions::run(&args).unwrap().human
    };
    let bash = script("bash");
    assert!(
        bash.contains("_cella()") && bash.contains("complete -F _cella"),
        "{bash}"
    );
    // Subcommands and their flags are in it: generated from the same tree.
    assert!(bash.contains("whoami") && bash.contains("--key-file"));
    assert!(script("zsh").starts_with("#compdef cella"));
    assert!(script("fish").contains("complete -c cella"));
    assert!(parse(&["completions", "tcsh"]).is_err());
}

#[test]
fn exit_codes_follow_the_table() {
    use crate::exit::{Exit, Failure, exit_of};
    let failed = anyhow::Error::from(Failure::TaskFailed {
        task_id: "task-1".into(),
        reason: "boom".into(),
    });
    assert_eq!(exit_of(&failed), Exit::TaskFailed);
    assert_eq!(Exit::TaskFailed as u8, 3);
    let canceled = anyhow::Error::from(Failure::TaskCanceled {
        task_id: "task-1".into(),
        reason: "canceled by bank-a".into(),
    });
    assert_eq!(exit_of(&canceled), Exit::TaskCanceled);
    assert_eq!(Exit::TaskCanceled as u8, 4);
    // Context added on top keeps the classification.
    assert_eq!(exit_of(&failed.context("task result")), Exit::TaskFailed);
    assert_eq!(exit_of(&anyhow::anyhow!("disk full")), Exit::Error);
    assert_eq!(Exit::Usage as u8, 2);
    assert_eq!(Exit::AttestationRefused as u8, 5);
    assert_eq!(Exit::AuditBroken as u8, 6);
}

#[test]
fn json_errors_are_one_object_with_a_code() {
    let refused = anyhow::Error::from(cella_client::ClientError::Status {
        op: "ApproveTask",
        code: cella_client::Code::FailedPrecondition,
        message: "task is Created".to_owned(),
    });
    let v = crate::exit::error_json(&refused);
    assert_eq!(v["error"]["code"], "failed_precondition");
    assert_eq!(v["error"]["exit_code"], 1);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("task is Created")
    );
    assert_eq!(v.as_object().unwrap().len(), 1);
    let text = crate::exit::error_text(&anyhow::anyhow!("evil \x1b[2J\rforged"));
    assert_eq!(text, "error: evil \\u{1b}[2J\\u{d}forged");
}

#[test]
fn collateral_is_repeatable_on_attest_and_needs_a_policy_on_login() {
    let cli = parse(&[
        "attest",
        "x:1",
        "--policy",
        "p",
        "--collateral",
        "a.json",
        "--collateral",
        "b.json",
    ])
    .unwrap();
    let Command::Attest(args) = cli.command else {
        panic!("not attest")
    };
    assert_eq!(args.collateral.len(), 2);
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "--addr", "localhost:7443", "--user", "alice"];
        args.extend_from_slice(extra);
        parse(&args)
    };
    let cli = login(&["--policy", "p.toml", "--collateral", "c.json"]).unwrap();
    let Command::Login(args) = cli.command else {
        panic!("not login")
    };
    assert_eq!(args.trust.collateral, [std::path::PathBuf::from("c.json")]);
    // Collateral verifies quotes under a policy; a pinned certificate has no use for it.
    assert!(login(&["--cert", "c.pem", "--collateral", "c.json"]).is_err());
}

#[test]
fn serve_evidence_is_sim_by_default_or_sgx_dcap() {
    use cella_server::NodeEvidence;
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--data-dir", "d"];
        args.extend_from_slice(extra);
        match parse(&args)?.command {
            Command::Serve(a) => Ok::<_, clap::Error>(a),
            _ => panic!("not serve"),
        }
    };
    let evidence = |extra: &[&str]| {
        serve(extra)
            .unwrap()
            .resolve()
            .and_then(|c| c.node_evidence())
    };
    assert_eq!(evidence(&[]).unwrap(), NodeEvidence::Simulation);
    assert_eq!(
        evidence(&["--evidence", "sgx-dcap"]).unwrap(),
        NodeEvidence::sgx_dcap_default()
    );
    assert_eq!(
        evidence(&["--evidence", "sgx-dcap", "--attestation-dir", "/tmp/att"]).unwrap(),
        NodeEvidence::SgxDcap {
            dir: "/tmp/att".into()
        }
    );
    let err = evidence(&["--attestation-dir", "/tmp/att"]).unwrap_err();
    assert!(err.to_string().contains("--evidence sgx-dcap"), "{err}");
    assert!(serve(&["--evidence", "tdx"]).is_err());
}

#[test]
fn serve_blobs_are_local_by_default_or_s3_with_credentials_from_the_environment() {
    use cella_store::BlobLocation;
    let resolve = |extra: &[&str]| {
        let mut args = vec!["serve", "--data-dir", "d"];
        args.extend_from_slice(extra);
        match parse(&args).unwrap().command {
            Command::Serve(a) => a.resolve(),
            _ => panic!("not serve"),
        }
    };
    let local = resolve(&[]).unwrap();
    assert_eq!(local.blobs, "local");
    assert_eq!(local.blob_location(None).unwrap(), BlobLocation::Local);

    let s3 = resolve(&[
        "--blobs",
        "s3://bucket/node-a",
        "--s3-endpoint",
        "http://127.0.0.1:9000",
        "--s3-region",
        "eu-west-1",
    ])
    .unwrap();
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("the-secret".to_owned()),
        _ => None,
    };
    let BlobLocation::S3(c) = s3.blob_location(Some(&env)).unwrap() else {
        panic!("not s3")
    };
    assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "node-a"));
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.allow_http, "an http:// endpoint the operator wrote");
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.secret_access_key.as_deref(), Some("the-secret"));
    // The printed configuration names the bucket and never a credential.
    let printed = s3.to_toml().unwrap();
    assert!(
        printed.contains("blobs = \"s3://bucket/node-a\""),
        "{printed}"
    );
    assert!(
        !printed.contains("the-secret") && !printed.contains("AKID"),
        "{printed}"
    );

    let half = |k: &str| (k == "AWS_ACCESS_KEY_ID").then(|| "AKID".to_owned());
    let err = s3.blob_location(Some(&half)).unwrap_err();
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    for bad in [
        &["--blobs", "gs://bucket"][..],
        &["--blobs", "s3://key:secret@bucket"],
        &["--s3-region", "eu-west-1"],
        &["--blobs", "s3://b", "--s3-endpoint", "ftp://host"],
        &["--blobs", "s3://b", "--s3-endpoint", "https://user:pw@host"],
    ] {
        let err = resolve(bad).unwrap_err();
        let chain = format!("{err:#}");
        assert!(
            !chain.contains("secret@") && !chain.contains("pw@"),
            "{chain}"
        );
    }
}
