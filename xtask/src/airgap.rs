//! `cargo xtask airgap-images`: base image stand-ins built from Debian packages.

use xshell::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// Rebuild images that are already present.
    #[arg(long)]
    force: bool,
}

pub fn run(_sh: &Shell, args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("airgap-images is not implemented yet (force={})", args.force)
}
