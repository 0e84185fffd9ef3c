//! The `challenge` release binaries to measure: the working tree's, and optionally one built at
//! another git revision in a temporary worktree.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::util;

/// A release binary and the revision it was built from, as the report names it.
pub struct Binary {
    pub path: PathBuf,
    /// "`e27a5ab`", or "`e27a5ab` + uncommitted changes" for a dirty working tree.
    pub revision: String,
}

/// Builds the working tree's binary in the workspace's target directory (`cargo build --release`).
pub fn current(sh: &Shell) -> anyhow::Result<Binary> {
    util::step("building the release binary of the working tree");
    cmd!(sh, "cargo build --release -p challenge").run()?;
    let sha = cmd!(sh, "git rev-parse --short HEAD").quiet().read()?;
    let dirty = !cmd!(sh, "git status --porcelain")
        .quiet()
        .read()?
        .is_empty();
    Ok(Binary {
        path: target_dir().join("release/challenge"),
        revision: if dirty {
            format!("`{sha}` + uncommitted changes (working tree)")
        } else {
            format!("`{sha}` (working tree, clean)")
        },
    })
}

/// Builds the binary of `rev` from a detached worktree under `target/bench-baseline/`, with its own
/// target directory there, so neither build invalidates the other's cache. The worktree is removed
/// as soon as the binary is built, also when the build fails.
pub fn at_revision(sh: &Shell, rev: &str) -> anyhow::Result<Binary> {
    let commit = format!("{rev}^{{commit}}");
    let sha = cmd!(sh, "git rev-parse --short --verify {commit}")
        .quiet()
        .read()
        .with_context(|| format!("--baseline {rev}: not a commit of this repository"))?;
    let home = target_dir().join("bench-baseline");
    let target = home.join("target");
    util::step(&format!("building the release binary of {sha} (baseline)"));
    let worktree = Worktree::add(sh, &home.join("src"), &sha)?;
    {
        let _dir = sh.push_dir(&worktree.path);
        let _target = sh.push_env("CARGO_TARGET_DIR", &target);
        cmd!(sh, "cargo build --release -p challenge").run()?;
    }
    drop(worktree);
    Ok(Binary {
        path: target.join("release/challenge"),
        revision: format!("`{sha}`"),
    })
}

/// Cargo's target directory for the workspace: `CARGO_TARGET_DIR` when set, else `target/`.
pub fn target_dir() -> PathBuf {
    let root = util::project_root();
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// A detached `git worktree`; dropping it removes the worktree (files and git's record of it).
struct Worktree {
    path: PathBuf,
}

impl Worktree {
    fn add(sh: &Shell, path: &Path, sha: &str) -> anyhow::Result<Worktree> {
        // A run killed before it could clean up leaves its worktree behind: remove it first.
        if path.exists() {
            drop(Worktree {
                path: path.to_owned(),
            });
        }
        cmd!(sh, "git worktree prune").quiet().run()?;
        cmd!(sh, "git worktree add --detach --quiet {path} {sha}")
            .quiet()
            .run()
            .with_context(|| format!("creating a worktree of {sha} at {}", path.display()))?;
        Ok(Worktree {
            path: path.to_owned(),
        })
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let removed = std::process::Command::new("git")
            .current_dir(util::project_root())
            .args(["worktree", "remove", "--force"])
            .arg(&self.path)
            .output()
            .is_ok_and(|out| out.status.success());
        if !removed {
            // Not (or no longer) registered as a worktree: the files are all that is left.
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::process::Command::new("git")
                .current_dir(util::project_root())
                .args(["worktree", "prune"])
                .status();
        }
        if self.path.exists() {
            eprintln!(
                "warning: could not remove the worktree {} (`git worktree remove --force {0}`)",
                self.path.display()
            );
        }
    }
}
