//! Which Compose the machine has: the v2 plugin (`docker compose`) or the standalone binary.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::Cmd;

/// Which Compose the machine has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `docker compose` (the v2 plugin).
    Plugin { version: String },
    /// `docker-compose` (standalone, v1 or v2).
    Standalone { version: String },
}

impl Flavour {
    pub fn describe(&self) -> String {
        match self {
            Flavour::Plugin { version } => format!("docker compose {version}"),
            Flavour::Standalone { version } => format!("docker-compose {version}"),
        }
    }

    pub(super) fn base(&self) -> Cmd {
        match self {
            Flavour::Plugin { .. } => Cmd::new("docker").arg("compose"),
            Flavour::Standalone { .. } => Cmd::new("docker-compose"),
        }
    }
}

/// Finds the Compose flavour: the v2 plugin when present, else the standalone binary.
pub fn detect_flavour() -> Result<Flavour> {
    let quick = Duration::from_secs(20);
    let plugin = Cmd::new("docker")
        .args(["compose", "version", "--short"])
        .output(quick);
    if let Some(output) = plugin.ok().filter(|o| o.success) {
        return Ok(Flavour::Plugin {
            version: output.stdout.trim().to_string(),
        });
    }
    match Cmd::new("docker-compose")
        .args(["version", "--short"])
        .output(quick)
    {
        Ok(output) if output.success => Ok(Flavour::Standalone {
            version: output.stdout.trim().to_string(),
        }),
        _ => Err(Error::prerequisite(
            "Docker Compose is not installed: neither `docker compose` nor `docker-compose` answers",
            "install the Compose plugin (`apt-get install docker-compose-plugin`) or the standalone \
             `docker-compose` (`apt-get install docker-compose`)",
        )),
    }
}
