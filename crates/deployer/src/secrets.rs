//! Generated secrets: random values in files of the environment's state directory, created once,
//! mode 0600, never printed, never overwritten (the database keeps the password it was initialised
//! with, so a new value would lock the app out).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::error::{Error, Result};

/// Length of generated values: 32 alphanumerics is about 190 bits of entropy.
const LENGTH: usize = 32;

/// One secret file and who must be able to read it inside the containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFile {
    /// File name inside the secrets directory.
    pub name: &'static str,
    /// Numeric owner (uid, gid) the file is given, because Compose bind-mounts file secrets with
    /// the host's ownership and mode: a 0600 file is readable in the container only by its owner.
    /// `None` keeps the deployer's own user.
    pub owner: Option<(u32, u32)>,
}

/// Creates the missing secret files; returns the names of those created. Existing files keep their
/// value; their mode and owner are corrected.
pub fn ensure(dir: &Path, files: &[SecretFile]) -> Result<Vec<&'static str>> {
    crate::state::create_private_dir(dir)?;
    let mut created = Vec::new();
    for file in files {
        let path = dir.join(file.name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut handle) => {
                handle
                    .write_all(random_value().as_bytes())
                    .map_err(Error::io(format!("writing {}", path.display())))?;
                created.push(file.name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", path.display()))(e)),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(Error::io(format!("restricting {}", path.display())))?;
        if let Some((uid, gid)) = file.owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| {
                Error::prerequisite(
                    format!(
                        "cannot give {} to uid {uid} (the container user that reads it): {e}",
                        path.display()
                    ),
                    "run the deployer as root (or with sudo) so it can set the owner of the secret files",
                )
            })?;
        }
    }
    Ok(created)
}

/// The values of the existing secret files, so output can be redacted.
pub fn values(dir: &Path, files: &[SecretFile]) -> Vec<String> {
    files
        .iter()
        .filter_map(|file| fs::read_to_string(dir.join(file.name)).ok())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

fn random_value() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(LENGTH)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [SecretFile; 2] = [
        SecretFile {
            name: "a",
            owner: None,
        },
        SecretFile {
            name: "b",
            owner: None,
        },
    ];

    #[test]
    fn secrets_are_created_once_with_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        assert_eq!(ensure(&dir, &FILES).unwrap(), ["a", "b"]);
        let first = fs::read_to_string(dir.join("a")).unwrap();
        assert_eq!(first.len(), LENGTH);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, fs::read_to_string(dir.join("b")).unwrap());
        let mode = fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            ensure(&dir, &FILES).unwrap().is_empty(),
            "nothing new to create"
        );
        assert_eq!(
            fs::read_to_string(dir.join("a")).unwrap(),
            first,
            "never overwritten"
        );
        let mode = fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode corrected");
        assert_eq!(values(&dir, &FILES).len(), 2);
    }
}
