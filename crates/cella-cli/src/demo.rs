//! `cella demo`: a node and a complete multi-party task flow in one command (reserved
//! for the server engineer; a stub until then).

/// Arguments of `cella demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs, json: bool) -> anyhow::Result<()> {
    let _ = (args, json);
    anyhow::bail!("not implemented yet")
}
