//! Small helpers shared by the tasks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::Shell;

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A shell rooted at the workspace, so every task sees the same relative paths. Called once, first
/// thing in `main`.
pub fn shell() -> anyhow::Result<Shell> {
    // `cargo run` set this for xtask itself. Build scripts that watch it (ring's does) would see a
    // value that differs from a developer's shell, and every cargo run from here would rebuild them
    // and all that depends on them (rustls, sqlx, the service). xshell can only add variables.
    // SAFETY: called from `main` before any thread exists, so nothing reads the environment meanwhile.
    unsafe { std::env::remove_var("CARGO_MANIFEST_DIR") };
    let sh = Shell::new().context("creating the task shell")?;
    sh.change_dir(project_root());
    Ok(sh)
}

/// Prints a step banner so a long `cargo xtask test` log is easy to scan.
pub fn step(name: &str) {
    eprintln!("\n==> {name}");
}

/// A TCP port free on every interface right now (the OS picks it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("0.0.0.0", 0))?
        .local_addr()?
        .port())
}

/// Fails with an explanation when a required program is not on `PATH`.
pub fn require_program(program: &str, install_hint: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    anyhow::ensure!(
        found,
        "`{program}` is not installed or not on PATH: {install_hint}"
    );
    Ok(())
}
