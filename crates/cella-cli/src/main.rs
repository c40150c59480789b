//! The `cella` command: runs a node (`cella serve`) and talks to one (every other
//! command), through the `cella-client` SDK.
//!
//! Output contract: with `--json`, each command prints exactly one JSON object on
//! stdout, and a failure one JSON object on stderr; otherwise text for people, with
//! errors on stderr as `error: <what was wrong>`. Exit codes are one table
//! ([`exit::Exit`], `docs/cli.md#exit-codes`). Logs go to stderr, filtered by `RUST_LOG`
//! (default `warn`), coloured only when stderr is a terminal.
#![forbid(unsafe_code)]

mod bench;
mod cmd;
mod collateral;
mod demo;
mod exit;
mod output;
mod parse;
mod progress;
mod secrets;
mod serve;
mod session;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd::Ctx;
use crate::exit::Exit;
use crate::output::Report;

/// Cella: confidential function-as-a-service.
#[derive(Debug, Parser)]
#[command(name = "cella", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node: every role in one process.
    Serve(serve::ServeArgs),
    /// Run a local node and a complete multi-party task flow.
    Demo(demo::DemoArgs),
    /// Measure a local node.
    Bench(bench::BenchArgs),
    /// Log in to a node and save the session (mode 0600) for the other commands.
    Login(cmd::login::LoginArgs),
    /// Revoke the saved session's token and delete the session.
    Logout,
    /// Who the saved session is: user, roles, node, how the node is trusted, expiry
    /// (read locally; the node is not asked).
    Whoami,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::CompletionsArgs),
    /// Users: register, list, change passwords.
    #[command(subcommand)]
    User(cmd::user::UserCmd),
    /// Functions: register, inspect, update, disable, delete.
    #[command(subcommand)]
    Function(cmd::function::FunctionCmd),
    /// Files: encrypt and decrypt locally, upload, register, download.
    #[command(subcommand)]
    File(cmd::file::FileCmd),
    /// Tasks: create, assign data, approve, invoke, watch, fetch results.
    #[command(subcommand)]
    Task(cmd::task::TaskCmd),
    /// The node: health and version (no login needed).
    #[command(subcommand)]
    Node(cmd::node::NodeCmd),
    /// Attest a node: its evidence type, measurement, TCB status, evidence age and the
    /// verdict under an attestation policy. No login needed; exits 5 when refused.
    Attest(cmd::attest::AttestArgs),
    /// The audit trail: list entries, export the chain, verify an export offline.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Runtime images of the LibOS executor, in a node's data directory: build, list,
    /// inspect (no login: local files).
    #[command(subcommand)]
    Image(cmd::image::ImageCmd),
}

/// Runs one command; `None` when the command printed its own output.
async fn run(cli: Cli) -> anyhow::Result<Option<Report>> {
    let json = cli.json;
    let ctx = || -> anyhow::Result<Ctx> {
        Ok(Ctx {
            home: session::cella_home()?,
            json,
        })
    };
    let report = match cli.command {
        Command::Serve(args) => return serve::run(args, json).await.map(|()| None),
        Command::Demo(args) => return demo::run(args, json).await.map(|()| None),
        Command::Bench(args) => return bench::run(args, json).await.map(|()| None),
        Command::Login(args) => cmd::login::login(&ctx()?, args).await?,
        Command::Logout => cmd::login::logout(&ctx()?).await?,
        Command::Whoami => cmd::login::whoami(&ctx()?)?,
        Command::Completions(args) => cmd::completions::run(&args)?,
        Command::User(c) => cmd::user::run(&ctx()?, c).await?,
        Command::Function(c) => cmd::function::run(&ctx()?, c).await?,
        Command::File(c) => cmd::file::run(&ctx()?, c).await?,
        Command::Task(c) => cmd::task::run(&ctx()?, c).await?,
        Command::Node(c) => cmd::node::run(&ctx()?, c).await?,
        Command::Attest(args) => cmd::attest::run(args).await?,
        Command::Audit(c) => cmd::audit::run(&ctx()?, c).await?,
        Command::Image(c) => cmd::image::run(c).await?,
    };
    Ok(Some(report))
}

/// Logs on stderr, filtered by `RUST_LOG` (default `warn`): lines for people, or one
/// JSON object a line (`cella serve --log-format json`).
pub(crate) fn init_tracing(format: serve::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // A log shipper reads fields, not colours.
        serve::LogFormat::Json => builder.json().with_ansi(false).init(),
        serve::LogFormat::Text => {
            // Colour codes are for a person at a terminal; in a pipe or a log file they
            // are noise (and NO_COLOR turns them off everywhere).
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).init();
        }
    }
}

/// Whether `--json` is on the command line, for reporting a command line clap refused
/// (it is global, so it may stand anywhere before a `--`).
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// The multi-call entrypoints: started under the name `cella-jail` the binary is the
/// sandbox's jailer, under `cella-preload` the pre-load module of a LibOS instance. Decided
/// on `argv[0]`'s file name before anything else runs (no runtime, no argument parsing):
/// the sandbox backend starts this very binary in both roles.
fn multi_call() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    match std::path::Path::new(&argv0).file_name()?.to_str()? {
        "cella-jail" => Some(cella_sandbox::jail::main()),
        "cella-preload" => Some(cella_preload::entry::main()),
        _ => None,
    }
}

fn main() -> ExitCode {
    if let Some(code) = multi_call() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::usage_error(&e, json_requested()),
    };
    // `cella serve` sets its log up itself: its format may come from its --config.
    if !matches!(cli.command, Command::Serve(_)) {
        init_tracing(serve::LogFormat::Text);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) => {
            if json {
                println!("{}", report.json);
            } else if !report.human.is_empty() {
                println!("{}", report.human);
            }
            report.exit.into()
        }
        Err(err) => {
            if json {
                eprintln!("{}", exit::error_json(&err));
            } else {
                eprintln!("{}", exit::error_text(&err));
            }
            exit::exit_of(&err).into()
        }
    }
}

#[cfg(test)]
mod tests;
