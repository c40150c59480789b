//! `cella bench`: measures a local node (reserved for the server engineer; a stub until
//! then).

/// Arguments of `cella bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {}

/// Runs the benchmark.
pub(crate) async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let _ = (args, json);
    anyhow::bail!("not implemented yet")
}
