//! Questions to the Docker engine, through the `docker` CLI (the one interface every Docker
//! installation has, with the user's contexts, `DOCKER_HOST` and credentials already set up).

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::Cmd;

/// Engine queries answer fast; a slower answer means the engine is in trouble.
const QUERY: Duration = Duration::from_secs(20);

/// Where the CLI talks to, for error messages.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// The engine's version, or a prerequisite error that says how to reach it.
pub fn engine_version() -> Result<String> {
    let output = Cmd::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output(Duration::from_secs(10))
        .map_err(|e| match e {
            Error::Command { detail, .. } => unreachable_engine(&detail),
            other => other,
        })?;
    let version = output.stdout.trim();
    if output.success && !version.is_empty() {
        Ok(version.to_string())
    } else {
        Err(unreachable_engine(&output.explanation()))
    }
}

/// The CPUs of the engine's host (`docker info`'s NCPU), or the same prerequisite error as
/// [`engine_version`] when the engine cannot be reached.
pub fn engine_cpus() -> Result<u32> {
    let output = Cmd::new("docker")
        .args(["info", "--format", "{{.NCPU}}"])
        .output(QUERY)
        .map_err(|e| match e {
            Error::Command { detail, .. } => unreachable_engine(&detail),
            other => other,
        })?;
    if !output.success {
        return Err(unreachable_engine(&output.explanation()));
    }
    let text = output.stdout.trim();
    text.parse::<u32>().map_err(|_| {
        Error::Other(format!(
            "`docker info --format {{{{.NCPU}}}}` printed {text:?}, not a CPU count"
        ))
    })
}

fn unreachable_engine(detail: &str) -> Error {
    let address = engine_address();
    let first_line = detail
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(detail);
    Error::prerequisite(
        format!("the Docker engine is not reachable at {address} ({first_line})"),
        if std::env::var_os("DOCKER_HOST").is_some() {
            "check DOCKER_HOST (unset it to use the local engine) and that the engine there is running (`docker info`)"
        } else {
            "start the Docker engine (`systemctl start docker`, or `dockerd &` without an init system) and check \
             `docker info`"
        },
    )
}

/// The id of a local image, or `None` when the engine does not have it.
pub fn image_id(image: &str) -> Result<Option<String>> {
    let output = Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output(QUERY)?;
    if output.success {
        Ok(Some(output.stdout.trim().to_string()))
    } else if output
        .explanation()
        .to_lowercase()
        .contains("no such image")
    {
        Ok(None)
    } else {
        Err(Error::Command {
            command: format!("docker image inspect {image}"),
            detail: output.explanation(),
        })
    }
}

/// Why a `docker pull` failed, in a few words: no registry, or the last line Docker said.
pub fn pull_failure(detail: &str) -> String {
    let lower = detail.to_lowercase();
    let offline = [
        "no such host",
        "dial tcp",
        "connection refused",
        "i/o timeout",
        "network is unreachable",
        "temporary failure in name resolution",
        "tls handshake timeout",
    ];
    if offline.iter().any(|sign| lower.contains(sign)) {
        "no registry answers".to_string()
    } else {
        let last = detail
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("docker pull failed")
            .trim();
        format!("it could not be pulled: {last}")
    }
}

/// The size of a local image in bytes.
pub fn image_size(image: &str) -> Result<u64> {
    let text = Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .checked(QUERY)?;
    text.trim().parse().map_err(|_| Error::Command {
        command: format!("docker image inspect {image}"),
        detail: format!("unexpected size {text:?}"),
    })
}

/// The tags of a repository present in the local engine.
pub fn local_tags(repository: &str) -> Result<Vec<String>> {
    let text = Cmd::new("docker")
        .args(["images", "--format", "{{.Tag}}", repository])
        .checked(QUERY)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "<none>")
        .map(String::from)
        .collect())
}

/// What `docker inspect` says about a container, reduced to what a deploy decision needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    /// `created`, `running`, `restarting`, `exited`, ...
    pub status: String,
    pub exit_code: i64,
    /// `starting`, `healthy`, `unhealthy`; `None` when the image has no healthcheck.
    pub health: Option<String>,
    /// The last healthcheck outputs, oldest first.
    pub health_log: Vec<String>,
    pub restart_count: u64,
    pub started_at: String,
    /// The image reference the container was created from (`repo:tag`).
    pub image: String,
    pub error: String,
}

/// "once", "2 times".
pub fn times(n: u64) -> String {
    if n == 1 {
        "once".into()
    } else {
        format!("{n} times")
    }
}

impl ContainerState {
    /// The version part of the image reference (`infra-challenge:1.2.0` -> `1.2.0`).
    pub fn image_tag(&self) -> Option<&str> {
        let name = self.image.rsplit('/').next().unwrap_or(&self.image);
        name.split_once(':').map(|(_, tag)| tag)
    }

    /// The process keeps dying: waiting longer will not make it healthy.
    pub fn is_crashing(&self) -> bool {
        match self.status.as_str() {
            "exited" | "dead" => true,
            "restarting" => true,
            _ => self.restart_count > 0 && self.exit_code != 0,
        }
    }

    /// One line a person can read: "running, health unhealthy, exit code 1, restarted 3 times".
    pub fn describe(&self) -> String {
        let mut parts = vec![self.status.clone()];
        if let Some(health) = &self.health {
            parts.push(format!("health {health}"));
        }
        if self.status != "running" || self.exit_code != 0 {
            parts.push(format!("exit code {}", self.exit_code));
        }
        if self.restart_count > 0 {
            parts.push(format!("restarted {}", times(self.restart_count)));
        }
        if !self.error.is_empty() {
            parts.push(format!("error: {}", self.error));
        }
        parts.join(", ")
    }
}

pub fn inspect_container(id: &str) -> Result<ContainerState> {
    let text = Cmd::new("docker")
        .args(["container", "inspect", id])
        .checked(QUERY)?;
    parse_inspect(&text).ok_or_else(|| Error::Command {
        command: format!("docker container inspect {id}"),
        detail: "unexpected output".into(),
    })
}

/// Parses `docker container inspect` output (a JSON array of one object).
pub fn parse_inspect(text: &str) -> Option<ContainerState> {
    let all: Value = serde_json::from_str(text).ok()?;
    let c = all.get(0)?;
    let state = c.get("State")?;
    let str_at =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let health = state.get("Health").filter(|h| !h.is_null());
    Some(ContainerState {
        id: str_at(c, "Id"),
        status: str_at(state, "Status"),
        exit_code: state.get("ExitCode").and_then(Value::as_i64).unwrap_or(0),
        health: health.map(|h| str_at(h, "Status")),
        health_log: health
            .and_then(|h| h.get("Log"))
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "exit {}: {}",
                            e.get("ExitCode").and_then(Value::as_i64).unwrap_or(-1),
                            str_at(e, "Output").trim()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        restart_count: c.get("RestartCount").and_then(Value::as_u64).unwrap_or(0),
        started_at: str_at(state, "StartedAt"),
        image: c
            .get("Config")
            .map(|config| str_at(config, "Image"))
            .unwrap_or_default(),
        error: str_at(state, "Error"),
    })
}

/// The last `lines` lines a container printed (stdout and stderr).
pub fn logs_tail(id: &str, lines: usize) -> Result<Vec<String>> {
    let output = Cmd::new("docker")
        .args(["logs", "--tail", &lines.to_string(), id])
        .output(QUERY)?;
    let mut all: Vec<String> = output
        .stdout
        .lines()
        .chain(output.stderr.lines())
        .map(String::from)
        .collect();
    if all.len() > lines {
        all.drain(..all.len() - lines);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSPECT: &str = r#"[{"Id":"abc","RestartCount":2,
        "State":{"Status":"restarting","ExitCode":1,"StartedAt":"2026-11-26T04:00:00Z","Error":"",
                 "Health":{"Status":"starting","Log":[{"ExitCode":1,"Output":"connection refused\n"}]}},
        "Config":{"Image":"registry.local:5000/infra-challenge:1.2.0"}}]"#;

    #[test]
    fn inspect_output_is_reduced_to_what_matters() {
        let state = parse_inspect(INSPECT).unwrap();
        assert_eq!(state.status, "restarting");
        assert_eq!(state.exit_code, 1);
        assert_eq!(state.health.as_deref(), Some("starting"));
        assert_eq!(state.health_log, ["exit 1: connection refused"]);
        assert_eq!(state.image_tag(), Some("1.2.0"));
        assert!(state.is_crashing());
        assert_eq!(
            state.describe(),
            "restarting, health starting, exit code 1, restarted 2 times"
        );
    }

    #[test]
    fn restart_counts_read_as_words() {
        assert_eq!(times(1), "once");
        assert_eq!(times(3), "3 times");
    }

    #[test]
    fn a_running_container_without_healthcheck_is_not_crashing() {
        let text = r#"[{"Id":"x","RestartCount":0,"State":{"Status":"running","ExitCode":0,"Health":null},
                        "Config":{"Image":"infra-challenge:2"}}]"#;
        let state = parse_inspect(text).unwrap();
        assert_eq!(state.health, None);
        assert!(!state.is_crashing());
        assert_eq!(state.describe(), "running");
    }
}
