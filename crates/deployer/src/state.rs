//! Where the deployer keeps what must survive between runs and never enter the repository: the
//! release ledger and the generated secrets, one directory per environment.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `--state-dir`, else `$XDG_STATE_HOME/infra-challenge`, else `~/.local/state/infra-challenge`.
pub fn resolve_state_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    default_state_dir(
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn default_state_dir(xdg_state_home: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = xdg_state_home.filter(|p| p.is_absolute()) {
        return Ok(xdg.join("infra-challenge"));
    }
    match home.filter(|p| p.is_absolute()) {
        Some(home) => Ok(home.join(".local/state/infra-challenge")),
        None => Err(Error::usage(
            "cannot find a state directory: HOME and XDG_STATE_HOME are unset; pass --state-dir DIR",
        )),
    }
}

/// Creates `dir` (and parents) readable by its owner only; tightens an existing one.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("restricting {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_the_environment() {
        let dir = resolve_state_dir(Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn xdg_state_home_then_home() {
        let xdg = default_state_dir(Some("/xdg".into()), Some("/home/u".into())).unwrap();
        assert_eq!(xdg, PathBuf::from("/xdg/infra-challenge"));
        let home = default_state_dir(Some("relative".into()), Some("/home/u".into())).unwrap();
        assert_eq!(home, PathBuf::from("/home/u/.local/state/infra-challenge"));
        assert!(default_state_dir(None, None).is_err());
    }

    #[test]
    fn private_dirs_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
