//! `cargo xtask bench`: measures the service and writes docs/BENCHMARKS.md.

use xshell::Shell;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_sh: &Shell, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
