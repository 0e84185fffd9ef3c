//! Kubernetes manifest checks.

use xshell::Shell;

pub fn check(_sh: &Shell) -> anyhow::Result<()> {
    Ok(())
}
