//! Where releases run. A `Target` speaks of releases, health, diagnoses and records: it applies a
//! release, tells when it is healthy, explains why not, and keeps the environment's history. The
//! release procedure on top of it (`crate::ops`) is the same for every target.
//! Docker Compose (`compose`) and Kubernetes (`kubernetes`) implement it.

pub mod compose;
pub mod kubernetes;

use std::time::Instant;

use time::OffsetDateTime;

use crate::error::Result;
use crate::http::Smoke;
use crate::ledger::Record;
use crate::plan::{Environment, Release};
use crate::report::Step;

/// What runs now in an environment, read from the live deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The running app version (its image tag), when the app exists.
    pub version: Option<String>,
    /// The app, when it exists (running or not).
    pub app: Option<AppState>,
    /// How to reach the app.
    pub url: Option<String>,
    /// Names of the parts that exist (Compose services, Kubernetes workloads).
    pub services: Vec<String>,
    /// The app's units (containers, pods) one by one.
    pub units: Vec<Unit>,
}

/// The app's state in target-neutral words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    /// Whether it serves at all (a container running; some pod ready).
    pub running: bool,
    /// `healthy`, `starting`, `unhealthy`, `2/3 ready`, ...
    pub health: String,
    /// One line with the details (status, exit code, restarts).
    pub state: String,
    /// Since when (RFC 3339), when known.
    pub since: String,
}

/// One container or pod of the app.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unit {
    pub name: String,
    /// `running`, `Pending`, `CrashLoopBackOff`, ...
    pub state: String,
    pub ready: bool,
    pub restarts: u64,
}

/// What stopped a release: the procedure acts differently on each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stopped {
    /// It did not become healthy (or the smoke test failed): the previous release comes back.
    #[default]
    Unhealthy,
    /// A signal asked the operation to stop: nothing more is changed, what was applied is recorded.
    Interrupted,
    /// The platform stopped answering (the API server went away): what runs is unknown, so nothing
    /// is restored and the failure is a missing prerequisite, not an unhealthy release.
    Unreachable,
}

/// Why a release is not healthy: everything a person needs to decide what to fix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// What stopped it.
    pub stopped: Stopped,
    /// One sentence: the most likely cause.
    pub cause: String,
    /// What to do about it, when known.
    pub fix: Option<String>,
    /// Evidence in one line each ("app container: restarting, exit code 1").
    pub details: Vec<String>,
    /// Titled blocks of evidence: health checks, log tails, events.
    pub blocks: Vec<(String, Vec<String>)>,
}

impl Diagnosis {
    /// A diagnosis that is just a cause.
    pub fn cause(cause: impl Into<String>) -> Self {
        Diagnosis {
            cause: cause.into(),
            ..Diagnosis::default()
        }
    }

    /// A signal stopped the wait for `what` ("the rollout", "the new containers' health").
    pub fn interrupted(what: &str) -> Self {
        Diagnosis {
            stopped: Stopped::Interrupted,
            cause: format!("interrupted by a signal while waiting for {what}"),
            ..Diagnosis::default()
        }
    }

    /// The platform stopped answering; `cause` says which and what it last answered.
    pub fn unreachable(cause: impl Into<String>) -> Self {
        Diagnosis {
            stopped: Stopped::Unreachable,
            cause: cause.into(),
            ..Diagnosis::default()
        }
    }
}

/// An environment's lock as its holder described it: one operation (deploy, rollback, down) at a
/// time per environment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// `user@host:pid` of the deployer holding it.
    pub holder: String,
    /// `deploy`, `rollback` or `down`.
    pub operation: String,
    /// The version it deploys (for `down`: what ran).
    pub version: String,
    /// When it took the lock.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When the holder last said it is alive, where the lock is renewed (Kubernetes).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub renewed: Option<OffsetDateTime>,
    /// When the lock stops counting unless renewed (Kubernetes: a dead holder's Lease expires).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
}

/// A lock being held. Released by [`LockGuard::release`]; a target's guard also releases it when
/// dropped without that (and the kernel or the lock's expiry does when the process dies).
pub trait LockGuard {
    /// Releases the lock. `Some(warning)` when it could not be released cleanly (it is then
    /// released by the kernel or expires by itself: the warning says which).
    fn release(self: Box<Self>) -> Option<String>;
}

/// What trying to take an environment's lock found.
pub enum Locking {
    /// Taken: hold it until the operation's last change.
    Taken(Box<dyn LockGuard>),
    /// Someone holds it.
    Held(LockInfo),
}

/// What a target applied: kept in the release's record so a rollback re-applies exactly that.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub manifests: Option<String>,
}

/// What became of a release that failed, once the target cleaned up after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandoned {
    /// It had replaced (part of) what ran before: the previous release must be brought back.
    Replaced,
    /// It ran beside the previous release, which never stopped serving; it is gone now.
    PreviousKeptServing,
}

/// What a release would change in one object (Kubernetes) or service (Compose), for `diff`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `Deployment infra-challenge-qa/challenge`, `service app`.
    pub object: String,
    /// `create` (it does not exist yet), `update` or `delete`.
    pub action: ChangeAction,
    /// The fields that would change (empty for `create`), secret values redacted.
    pub fields: Vec<FieldChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    /// Deleted by the release (Kubernetes: pruned, the overlay no longer declares it).
    Delete,
}

/// One field a release would change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    /// `image`, `environment.RUST_LOG`, `spec.template.spec.containers[challenge].image`.
    pub path: String,
    /// What runs now (`None`: absent).
    pub before: Option<String>,
    /// What the release would set (`None`: removed).
    pub after: Option<String>,
    /// Another field manager that owns the field now (Kubernetes), which the apply would conflict
    /// with unless `--force-conflicts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// What `diff` found: the objects a release would change and those it would leave as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub changes: Vec<Change>,
    pub unchanged: Vec<String>,
}

/// `logs` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: usize,
    /// The previous (crashed) container's log, where the target keeps one.
    pub previous: bool,
    pub service: Option<String>,
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

    /// The platform as a person names it ("Docker Compose").
    fn title(&self) -> &'static str;

    /// Where the environment lives, in a few words for the deploy summary (a URL, a cluster and
    /// namespace).
    fn location(&self, env: &Environment) -> String;

    /// Fast checks before anything changes; the error says how to fix what is missing.
    fn preflight(&self, env: &Environment) -> Result<()>;

    /// Checks that the release's artifact can be run there (the image is in the engine, the
    /// database image too); returns the artifact's identity for the record (an image id, or the
    /// image reference a cluster pulls).
    fn artifact(&self, env: &Environment, release: &Release) -> Result<String>;

    /// Everything that can be known about `release` before anything changes (the configuration
    /// renders, the platform would accept every object, the rights are there). A refusal is a
    /// prerequisite error whose message ends in "nothing was changed".
    fn verify(&self, _env: &Environment, _release: &Release) -> Result<()> {
        Ok(())
    }

    /// How many app instances a release runs: `requested` (`--replicas`, or the count the record of
    /// the release being returned to kept) checked against what the target can run, else the
    /// target's default. `None`: the target does not set a count. Kubernetes takes this default: its
    /// HorizontalPodAutoscaler owns the Deployment's replica count between the overlay's
    /// `minReplicas` and `maxReplicas`, and a count set by the deployer would be overridden by it at
    /// its next look (or, set on the Deployment, fight it), so `--replicas` is refused there.
    fn replicas(&self, _env: &Environment, requested: Option<u32>) -> Result<Option<u32>> {
        match requested {
            None => Ok(None),
            Some(n) => Err(crate::error::Error::usage(format!(
                "--replicas {n} is for --target compose: on {} the HorizontalPodAutoscaler sets the pod count between minReplicas and maxReplicas, so change those in deploy/kubernetes/overlays/<env>/horizontalpodautoscaler.yaml instead",
                self.title()
            ))),
        }
    }

    /// What deploying `release` would change against what runs, secret values redacted.
    fn diff(&self, env: &Environment, release: &Release) -> Result<Changes>;

    /// Every prerequisite with its state, for `doctor`.
    fn doctor(&self, env: &Environment) -> Vec<Check>;

    /// What runs now in the environment.
    fn live(&self, env: &Environment) -> Result<Live>;

    /// Versions a person could deploy there now (the interactive mode offers them).
    fn known_versions(&self, env: &Environment) -> Result<Vec<String>>;

    /// The configuration `apply` would use, fully resolved, secret values redacted.
    fn render(&self, env: &Environment, release: &Release) -> Result<String>;

    /// Creates the secrets the environment needs when they are absent (never overwrites one);
    /// returns a sentence per secret created.
    fn ensure_secrets(&self, env: &Environment) -> Result<Vec<String>>;

    /// Starts the release (returns when the target accepted it, not when it is healthy).
    fn apply(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<Applied, Diagnosis>;

    /// Waits until the release is healthy, or explains why it is not by `deadline` (or sooner,
    /// when its state cannot heal by waiting).
    fn wait_healthy(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis>;

    /// Sends the traffic to the healthy release and retires what ran before (Compose: the proxy
    /// routes to the new containers, then the old ones drain and go). Kubernetes' rolling update
    /// has done it already.
    fn switch(
        &self,
        _env: &Environment,
        _release: &Release,
        _deadline: Instant,
        _step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        Ok(())
    }

    /// Cleans up after a release that failed, and says whether what ran before still serves.
    fn abandon(&self, _env: &Environment, _release: &Release) -> Abandoned {
        Abandoned::Replaced
    }

    /// Asks the healthy release's API what it is: `/readyz`, a task list, `/version`.
    fn smoke(&self, env: &Environment) -> std::result::Result<Smoke, String>;

    /// The environment's release records, oldest first.
    fn history(&self, env: &Environment) -> Result<Vec<Record>>;

    /// Keeps a release record (the target numbers it where it numbers releases).
    fn record(&self, env: &Environment, record: Record) -> Result<()>;

    /// Prints logs to the terminal; returns the tool's exit code.
    fn logs(&self, env: &Environment, options: &LogOptions) -> Result<i32>;

    /// Stops the environment's app and database; `purge_data` also deletes their data and secrets.
    fn down(&self, env: &Environment, purge_data: bool) -> Result<()>;

    /// Takes the environment's lock for `request` at once, or says who holds it. Never waits:
    /// `crate::ops::lock` retries when asked to wait.
    fn try_lock(&self, env: &Environment, request: &LockInfo) -> Result<Locking>;

    /// Who holds the environment's lock now, if anyone (for `status`; never waits, never takes it).
    fn lock_holder(&self, env: &Environment) -> Result<Option<LockInfo>>;

    /// Breaks the environment's lock when its holder is known dead (`deployer unlock`); returns
    /// whose it was, `None` when nobody held it. A target whose locks cannot outlive their holder
    /// refuses, saying why.
    fn break_lock(&self, env: &Environment) -> Result<Option<LockInfo>>;
}

/// The time left until `deadline` (zero once it has passed).
pub fn remaining(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
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
