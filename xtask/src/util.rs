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
    // SAFETY: called from `main` before any thread exists, so nothing reads the environment meanwhile.
    unsafe { forget_cargo_run_variables() };
    let sh = Shell::new().context("creating the task shell")?;
    sh.change_dir(project_root());
    Ok(sh)
}

/// Removes what `cargo run` set for xtask itself (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, ...), so the
/// tools xtask starts see the environment a developer's shell gives them. Otherwise build scripts
/// that watch such a variable (ring's watches `CARGO_MANIFEST_DIR`) rebuild, with all that depends on
/// them, whenever cargo runs from here; and cargo-machete 0.9.2 misreads its arguments when
/// `CARGO_PKG_NAME` is set. Variables that configure cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`, ...)
/// stay.
///
/// # Safety
/// No other thread may read or write the environment meanwhile.
unsafe fn forget_cargo_run_variables() {
    let set_by_cargo_run = |name: &str| {
        name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
    };
    let names: Vec<_> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(set_by_cargo_run))
        .collect();
    for name in names {
        // SAFETY: the caller guarantees no concurrent access to the environment.
        unsafe { std::env::remove_var(name) };
    }
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
