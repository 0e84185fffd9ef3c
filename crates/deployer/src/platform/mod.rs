//! Where releases run. A `Target` knows how to apply a plan, tell when the result is healthy, and
//! explain why not; the deploy/rollback logic on top of it is the same for every target.
//! Docker Compose is the first implementation; Kubernetes is planned.

pub mod compose;
pub mod kubernetes;

use std::time::Instant;

use crate::docker::ContainerState;
use crate::error::Result;
use crate::plan::Plan;
use crate::report::Step;

/// What runs now in an environment, read from the live deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The running app version (the image tag), when an app container exists.
    pub version: Option<String>,
    pub app: Option<ContainerState>,
    /// The URL the app is published on.
    pub url: Option<String>,
    /// Names of the services with a container, running or not.
    pub services: Vec<String>,
}

/// Why a release is not healthy: everything a person needs to decide what to fix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// One sentence: the most likely cause.
    pub cause: String,
    /// Container state in one line (status, health, exit code, restarts).
    pub state: String,
    /// The last healthcheck outputs.
    pub health_log: Vec<String>,
    /// The last log lines of the app.
    pub log_tail: Vec<String>,
}

/// A prerequisite check for `doctor`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to do when it failed.
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub trait Target {
    /// The `--target` value.
    fn name(&self) -> &'static str;

    /// Fast checks before anything changes; the error says how to fix what is missing.
    fn preflight(&self, plan: &Plan) -> Result<()>;

    /// Every prerequisite with its state, for `doctor`.
    fn doctor(&self, plan: &Plan) -> Vec<Check>;

    /// What runs now in the plan's environment.
    fn live(&self, plan: &Plan) -> Result<Live>;

    /// The configuration `apply` would use, fully resolved, secrets redacted.
    fn render(&self, plan: &Plan) -> Result<String>;

    /// Starts the plan's release (returns when the target accepted it, not when it is healthy).
    fn apply(&self, plan: &Plan, deadline: Instant, step: &mut Step<'_>) -> Result<(), Diagnosis>;

    /// Waits until the release is healthy, or explains why it is not by `deadline`.
    fn wait_healthy(
        &self,
        plan: &Plan,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis>;

    /// Prints logs to the terminal; returns the tool's exit code.
    fn logs(&self, plan: &Plan, follow: bool, tail: usize, service: Option<&str>) -> Result<i32>;

    /// Stops the environment; `purge_data` also deletes its volumes.
    fn down(&self, plan: &Plan, purge_data: bool) -> Result<()>;

    /// The secret values in use, so that any output can be redacted.
    fn secret_values(&self, plan: &Plan) -> Vec<String>;

    /// Creates the secrets the release needs when they are absent; returns the names created.
    fn ensure_secrets(&self, plan: &Plan) -> Result<Vec<&'static str>>;
}

/// Replaces every secret value, and the value of every `KEY: value` / `KEY=value` whose key names a
/// password, secret or token (but not a `*_FILE` path), by `[redacted]`.
pub fn redact(text: &str, secret_values: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_string();
        for value in secret_values.iter().filter(|v| v.len() >= 4) {
            line = line.replace(value.as_str(), "[redacted]");
        }
        out.push_str(&redact_sensitive_key(&line));
        out.push('\n');
    }
    out
}

fn redact_sensitive_key(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let dash = if body.len() < trimmed.len() { "- " } else { "" };
    let Some(position) = body.find([':', '=']) else {
        return line.to_string();
    };
    let (key, rest) = body.split_at(position);
    let key_upper = key.trim().trim_matches(['"', '\'']).to_ascii_uppercase();
    let sensitive = ["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY", "API_KEY"]
        .iter()
        .any(|word| key_upper.contains(word))
        && !key_upper.ends_with("_FILE")
        && !key_upper.is_empty();
    let value = rest[1..].trim();
    if !sensitive || value.is_empty() || value == "[redacted]" {
        return line.to_string();
    }
    let separator = &rest[..1];
    let space = if separator == ":" { " " } else { "" };
    format!("{indent}{dash}{key}{separator}{space}[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_known_values_anywhere() {
        let text = "url: mysql://app:s3cretvalue@db/challenge\nplain: s3cretvalue\nother: fine\n";
        let out = redact(text, &["s3cretvalue".to_string()]);
        assert!(!out.contains("s3cretvalue"), "{out}");
        assert!(out.contains("other: fine"));
        assert_eq!(out.matches("[redacted]").count(), 2);
    }

    #[test]
    fn redact_hides_values_of_password_keys_but_keeps_file_paths() {
        let text = "    environment:\n      MYSQL_ROOT_PASSWORD: hunter22\n      DB_PASSWORD_FILE: /run/secrets/db_password\n      - API_TOKEN=abc\n      PORT: '8000'\n";
        let out = redact(text, &[]);
        assert!(!out.contains("hunter22"), "{out}");
        assert!(!out.contains("abc"), "{out}");
        assert!(
            out.contains("      MYSQL_ROOT_PASSWORD: [redacted]"),
            "{out}"
        );
        assert!(out.contains("      - API_TOKEN=[redacted]"), "{out}");
        assert!(
            out.contains("DB_PASSWORD_FILE: /run/secrets/db_password"),
            "{out}"
        );
        assert!(out.contains("PORT: '8000'"));
    }

    #[test]
    fn redact_ignores_short_values_that_would_garble_the_text() {
        let out = redact("image: infra-challenge:1\n", &["1".to_string()]);
        assert_eq!(out, "image: infra-challenge:1\n");
    }
}
