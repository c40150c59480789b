//! `cella serve`: runs every role of a node in one process (reserved for the server
//! engineer; a stub until then).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `cella serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Directory for the node's store, blobs, keys and TLS certificate.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// Address to listen on for the gRPC API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
    pub(crate) listen: SocketAddr,
    /// Number of execution workers.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(crate) workers: usize,
}

/// Runs the node until it is stopped.
pub(crate) async fn run(args: ServeArgs, json: bool) -> anyhow::Result<()> {
    let _ = (args, json);
    anyhow::bail!("not implemented yet")
}
