//! `cella node health|version|policy`: no login needed.

use cella_client::Client;
use serde_json::json;

use crate::cmd::Ctx;
use crate::cmd::login::TrustArgs;
use crate::exit::Failure;
use crate::output::Report;
use crate::session::Session;

/// `cella node` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCmd {
    /// Liveness and load of the node.
    Health(NodeArgs),
    /// Version, API and executors of the node.
    Version(NodeArgs),
    /// An attestation policy the node publishes over the attested channel: the one
    /// accepting the node itself, or with --instance the one accepting its LibOS
    /// instances (for `cella task receipt --verify --policy FILE`).
    Policy {
        /// Where the node is.
        #[command(flatten)]
        node: NodeArgs,
        /// The LibOS instance policy instead of the node's.
        #[arg(long)]
        instance: bool,
    },
}

/// Where the node is: given here, or the saved session's node, trusted as `login`
/// trusted it (attested under its policy, or pinned).
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// Node address (default: the saved session's); needs --policy or --cert.
    #[arg(long, value_name = "ADDR")]
    pub(crate) addr: Option<String>,
    /// How to trust the node given by --addr.
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
}

async fn connect(ctx: &Ctx, args: &NodeArgs) -> anyhow::Result<Client> {
    let (addr, trust) = match &args.addr {
        Some(addr) => (addr.clone(), args.trust.load("cella node --addr")?.server),
        None if args.trust.given() => {
            return Err(Failure::Usage(
                "--policy and --cert say how to trust the node at --addr: add --addr HOST:PORT"
                    .to_owned(),
            )
            .into());
        }
        None => match Session::load(&ctx.home)? {
            // The token is not needed, so an expired session still names the node.
            Some(s) => {
                let trust = s.trust()?;
                (s.addr, trust)
            }
            None => Err(Failure::NotLoggedIn(
                "no node given: pass --addr and --policy, or run cella login".to_owned(),
            ))?,
        },
    };
    Ok(Client::connect_with_trust(&addr, trust).await?)
}

/// Runs a `cella node` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: NodeCmd) -> anyhow::Result<Report> {
    match cmd {
        NodeCmd::Health(args) => {
            let client = connect(ctx, &args).await?;
            let h = client.health().await?;
            Ok(Report::new(
                json!({
                    "addr": client.addr(),
                    "status": h.status,
                    "workers": h.workers,
                    "queued_tasks": h.queued_tasks,
                    "running_tasks": h.running_tasks,
                    "isolation_warnings": h.isolation_warnings,
                }),
                format!(
                    "{}: {} ({} workers, {} queued, {} running){}",
                    client.addr(),
                    h.status,
                    h.workers,
                    h.queued_tasks,
                    h.running_tasks,
                    h.isolation_warnings
                        .iter()
                        .map(|w| format!("\nwarning: {w}"))
                        .collect::<String>()
                ),
            ))
        }
        NodeCmd::Version(args) => {
            let client = connect(ctx, &args).await?;
            let v = client.version().await?;
            Ok(Report::new(
                json!({
                    "addr": client.addr(),
                    "version": v.version,
                    "api": v.api,
                    "executors": v.executors,
                    "builtins": v.builtins,
                    "client_version": env!("CARGO_PKG_VERSION"),
                }),
                format!(
                    "node {} version {} (API {})\nexecutors: {}\nbuiltins:  {}\nclient version {}",
                    client.addr(),
                    v.version,
                    v.api,
                    v.executors.join(", "),
                    v.builtins.join(", "),
                    env!("CARGO_PKG_VERSION")
                ),
            ))
        }
        NodeCmd::Policy { node, instance } => {
            let client = connect(ctx, &node).await?;
            let p = client.policies().await?;
            let (role, text) = if instance {
                ("libos-instance", p.instance_policy)
            } else {
                ("node", p.node_policy)
            };
            if text.is_empty() {
                anyhow::bail!("the node publishes no {role} policy: it has no LibOS executor");
            }
            Ok(Report::new(
                json!({ "addr": client.addr(), "role": role, "policy": text }),
                text.trim_end().to_owned(),
            ))
        }
    }
}
