//! The `cella` command.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("cella: not built yet")
}
