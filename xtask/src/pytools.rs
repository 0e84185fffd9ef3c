//! The Python tools the checks run (kubernetes-validate, checkov, yamllint, hadolint, schemathesis),
//! pinned in `xtask/requirements.txt` and installed into `<root>/.venv`.
//!
//! The virtualenv is created on first use and rebuilt only when `requirements.txt` changes: a copy
//! of the file it was installed from is kept inside it as a stamp, and compared byte for byte. The
//! stamp is written last, so an interrupted install is redone on the next run. A lock file keeps two
//! concurrent `cargo xtask` runs from installing into the same directory at once.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::util;

const REQUIREMENTS: &str = "xtask/requirements.txt";
const VENV: &str = ".venv";
const STAMP: &str = "installed-requirements.txt";
const LOCK: &str = ".xtask/pytools.lock";

/// Makes sure the virtualenv exists with exactly the pinned tools, and returns its `bin` directory.
pub fn ensure(sh: &Shell) -> anyhow::Result<PathBuf> {
    let root = util::project_root();
    let venv = root.join(VENV);
    let bin = venv.join("bin");
    let wanted =
        fs::read(root.join(REQUIREMENTS)).with_context(|| format!("reading {REQUIREMENTS}"))?;

    let lock_path = root.join(LOCK);
    if let Some(dir) = lock_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating the lock file {}", lock_path.display()))?;
    // Blocks while another `cargo xtask` installs; released when `lock` is dropped.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;

    if is_current(sh, &venv, &wanted) {
        return Ok(bin);
    }
    install(sh, &root, &venv, &wanted)?;
    Ok(bin)
}

/// Whether the virtualenv is there and current, without installing anything (`cargo xtask setup`'s
/// check; [`ensure`] installs).
pub fn is_ready(sh: &Shell) -> bool {
    let root = util::project_root();
    fs::read(root.join(REQUIREMENTS)).is_ok_and(|wanted| is_current(sh, &root.join(VENV), &wanted))
}

/// The path of one tool installed in the virtualenv (`hadolint`, `checkov`, `yamllint`,
/// `kubernetes-validate`, `st` for schemathesis, `python`), installing the tools first if needed.
pub fn tool(sh: &Shell, name: &str) -> anyhow::Result<PathBuf> {
    let path = ensure(sh)?.join(name);
    anyhow::ensure!(
        path.is_file(),
        "`{name}` is not in the tools virtualenv ({}): is it listed in {REQUIREMENTS}?",
        path.display()
    );
    Ok(path)
}

/// The virtualenv is usable as it is: its interpreter runs, and it was installed from this very
/// requirements file.
fn is_current(sh: &Shell, venv: &Path, wanted: &[u8]) -> bool {
    let python = venv.join("bin").join("python");
    let stamp_matches = fs::read(venv.join(STAMP)).is_ok_and(|stamp| stamp == wanted);
    // A Python upgrade on the machine can leave the venv's interpreter link dangling.
    stamp_matches
        && cmd!(sh, "{python} -c ''")
            .quiet()
            .ignore_stdout()
            .run()
            .is_ok()
}

fn install(sh: &Shell, root: &Path, venv: &Path, wanted: &[u8]) -> anyhow::Result<()> {
    util::step(&format!(
        "installing the pinned Python tools into {VENV} (from {REQUIREMENTS})"
    ));
    util::require_program(
        "python3",
        "install CPython 3.11 or newer with its venv module (Debian: apt-get install python3-venv)",
    )?;
    if venv.exists() {
        fs::remove_dir_all(venv)
            .with_context(|| format!("removing the stale {}", venv.display()))?;
    }
    cmd!(sh, "python3 -m venv {venv}").run().context(
        "creating the tools virtualenv: does `python3 -m venv` work here (python3-venv)?",
    )?;
    let python = venv.join("bin").join("python");
    let requirements = root.join(REQUIREMENTS);
    let started = std::time::Instant::now();
    cmd!(sh, "{python} -m pip install --disable-pip-version-check --no-input --quiet --requirement {requirements}")
        .run()
        .with_context(|| {
            format!("installing {REQUIREMENTS}: is the Python package index reachable from here?")
        })?;
    fs::write(venv.join(STAMP), wanted).context("writing the tools virtualenv's stamp")?;
    eprintln!("tools installed in {:.0?}", started.elapsed());
    Ok(())
}
