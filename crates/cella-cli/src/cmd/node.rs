//! `cella node health|version|policy`: no login needed.

use std::path::PathBuf;

use anyhow::Context;
use cella_client::Client;
use serde_json::json;

use crate::cmd::Ctx;
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

/// Where the node is: given here, or the saved session's node.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// Node address (default: the saved session's).
    #[arg(long, value_name = "ADDR", requires = "cert")]
    pub(crate) addr: Option<String>,
    /// The node's certificate to pin (default: the saved session's).
    #[arg(long, value_name = "PEM_PATH", requires = "addr")]
    pub(crate) cert: Option<PathBuf>,
}

async fn connect(ctx: &Ctx, args: &NodeArgs) -> anyhow::Result<Client> {
    let (addr, pem) = match (&args.addr, &args.cert) {
        (Some(addr), Some(cert)) => (
            addr.clone(),
            std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read certificate {}", cert.display()))?,
        ),
        _ => match Session::load(&ctx.home)? {
            // The token is not needed, so an expired session still names the node.
            Some(s) => (s.addr, s.cert_pem),
            None => anyhow::bail!("no node given: pass --addr and --cert, or run cella login"),
        },
    };
    Ok(Client::connect(&addr, pem.as_bytes()).await?)
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
                }),
                format!(
                    "{}: {} ({} workers, {} queued, {} running)",
                    client.addr(),
                    h.status,
                    h.workers,
                    h.queued_tasks,
                    h.running_tasks
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
