//! The release procedure: preflight -> artifact present -> secrets -> apply -> wait -> switch ->
//! smoke -> record; when the release is not healthy: diagnose -> record -> abandon it -> restore
//! what ran before, unless it never stopped serving.

use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use crate::context::Context;
use crate::error::{Error, Restore, Result};
use crate::http::Smoke;
use crate::ledger::{self, Action, Outcome, Record};
use crate::plan::{Environment, Release};
use crate::platform::{Abandoned, Applied, Diagnosis, Stopped, Target};

/// Brings `release` up in `env`, or explains why not and restores what ran before.
pub fn release(
    ctx: &Context,
    target: &dyn Target,
    env: &Environment,
    release: &Release,
    action: Action,
    timeout: Duration,
) -> Result<()> {
    let reporter = &ctx.reporter;
    let started = Instant::now();
    let step = reporter.step("checking prerequisites");
    let checked = check(target, env, release);
    let Checked {
        artifact,
        before,
        records,
    } = match checked {
        Ok(checked) => checked,
        Err(e) => {
            step.failed("");
            return Err(nothing_changed(e));
        }
    };
    // The replica count is the target's to check (and to choose when not given): what the release
    // runs is what its record keeps.
    let release = &match target.replicas(env, release.replicas) {
        Ok(replicas) => Release {
            replicas,
            ..release.clone()
        },
        Err(e) => {
            step.failed("");
            return Err(nothing_changed(e));
        }
    };
    step.ok(&format!(
        "{}, running now: {}{}",
        target.name(),
        before.as_deref().unwrap_or("nothing"),
        release
            .replicas
            .map(|n| format!("; the release runs {n} app container{}", plural(n)))
            .unwrap_or_default()
    ));

    for created in target.ensure_secrets(env)? {
        reporter.info(&created);
    }

    let what = format!("{} {}", verb(action), release.version);
    let (outcome, applied) = bring_up(ctx, target, env, release, &what, timeout);
    let attempt = Attempt {
        target,
        env,
        release,
        action,
        artifact: &artifact,
        applied: applied.as_ref(),
        before: before.as_deref(),
    };
    match outcome {
        Ok(smoke) => {
            attempt.record(Outcome::Ok, smoke.schema_version)?;
            let elapsed = started.elapsed();
            let url = target.location(env);
            reporter.result(
                json!({
                    "env": env.name, "version": release.version, "image_id": artifact, "url": url,
                    "reported_version": smoke.version, "elapsed_ms": elapsed.as_millis(), "action": action,
                }),
                || {
                    format!(
                        "{} {} is healthy at {} ({:.1}s)",
                        env.project(),
                        release.version,
                        url,
                        elapsed.as_secs_f64()
                    )
                },
            );
            Ok(())
        }
        Err(diagnosis) => match diagnosis.stopped {
            Stopped::Unhealthy => unhealthy(ctx, &attempt, &records, &diagnosis, timeout),
            Stopped::Interrupted => Err(interrupted(ctx, &attempt, &diagnosis)),
            Stopped::Unreachable => Err(unreachable(ctx, &attempt, &diagnosis)),
        },
    }
}

/// One attempt at a release, as the failure paths need it.
struct Attempt<'a> {
    target: &'a dyn Target,
    env: &'a Environment,
    release: &'a Release,
    action: Action,
    artifact: &'a str,
    /// What the target applied; `None` when it was stopped before applying anything.
    applied: Option<&'a Applied>,
    /// The version serving before, if any.
    before: Option<&'a str>,
}

impl Attempt<'_> {
    /// Records the attempt with its result (and the schema its `/version` named, when healthy).
    fn record(&self, result: Outcome, schema_version: Option<i64>) -> Result<()> {
        let none = Applied::default();
        let facts = Facts {
            artifact: self.artifact,
            applied: self.applied.unwrap_or(&none),
            schema_version,
        };
        self.target.record(
            self.env,
            record(
                self.target,
                self.env,
                self.release,
                &facts,
                self.action,
                result,
            ),
        )
    }

    /// `deployer <command> --target T --env E`, for the next-step hints.
    fn command(&self, command: &str) -> String {
        format!(
            "`deployer {command} --target {} --env {}`",
            self.target.name(),
            self.env.name
        )
    }
}

/// The release did not become healthy: record it, clean up, and bring back what ran before.
fn unhealthy(
    ctx: &Context,
    attempt: &Attempt<'_>,
    records: &[Record],
    diagnosis: &Diagnosis,
    timeout: Duration,
) -> Result<()> {
    let (target, env, release) = (attempt.target, attempt.env, attempt.release);
    report_diagnosis(ctx, env, release, diagnosis);
    attempt.record(Outcome::Failed, None)?;
    let message = format!(
        "{} {} failed: {}",
        env.project(),
        release.version,
        diagnosis.cause
    );
    if let (Abandoned::PreviousKeptServing, Some(previous)) =
        (target.abandon(env, release), attempt.before)
    {
        return Err(Error::DeployFailed {
            message: format!(
                "{message}; it was removed, and {previous}, which it would have replaced, kept serving throughout"
            ),
            restore: Restore::KeptServing {
                version: previous.to_string(),
            },
        });
    }
    let Some(previous) = restore_target(attempt.before, &release.version, records) else {
        return Err(Error::DeployFailed {
            message: format!(
                "{message}; there was no earlier release to restore, so the failed one is left in place for \
                 inspection (`deployer logs`, then `deployer down`)"
            ),
            restore: Restore::Nothing,
        });
    };
    let previous_release = release_of(env, &previous, records);
    match restore(ctx, target, env, &previous_release, timeout) {
        Ok(()) => Err(Error::DeployFailed {
            message: format!("{message}; rolled back: {previous} serves again"),
            restore: Restore::Restored { version: previous },
        }),
        Err(Error::Interrupted(why)) => Err(Error::Interrupted(format!(
            "{message}; then, rolling back to {previous}: {why}"
        ))),
        Err(e @ Error::Prerequisite { .. }) if is_unreachable(&e) => Err(e),
        Err(e) => Err(Error::DeployFailed {
            message: format!("{message}; rolling back to {previous} failed too: {e}"),
            restore: Restore::Failed { version: previous },
        }),
    }
}

/// A signal stopped the release: no rollback (a person or a pipeline asked to stop), but what was
/// applied is cleaned up where that is instant (Compose removes a release that never took over)
/// and recorded as interrupted, so `history` and `status` tell the truth.
fn interrupted(ctx: &Context, attempt: &Attempt<'_>, diagnosis: &Diagnosis) -> Error {
    let (target, env, release) = (attempt.target, attempt.env, attempt.release);
    ctx.reporter.warn(&format!(
        "{} {}: {}",
        env.project(),
        release.version,
        diagnosis.cause
    ));
    let version = &release.version;
    let state = match attempt.applied {
        None => "nothing had been applied, so nothing was changed".to_string(),
        Some(applied) => match (target.abandon(env, release), attempt.before) {
            (Abandoned::PreviousKeptServing, Some(previous)) => format!(
                "{version} was removed, and {previous}, which it would have replaced, kept serving throughout"
            ),
            _ if applied.manifests.is_some() => format!(
                "{version} had been applied and the platform goes on rolling it out{}",
                attempt
                    .before
                    .map(|previous| format!(" (it replaces {previous} as it becomes ready)"))
                    .unwrap_or_default()
            ),
            (_, Some(previous)) => {
                format!(
                    "{version} had been started beside or instead of {previous}, and was left as it is"
                )
            }
            (_, None) => format!("{version} had been started and was left as it is"),
        },
    };
    let recorded = match attempt.applied {
        None => String::new(),
        Some(_) => match attempt.record(Outcome::Interrupted, None) {
            Ok(()) => "; recorded as interrupted".to_string(),
            Err(e) => format!("; recording it failed: {e}"),
        },
    };
    Error::Interrupted(format!(
        "{} {version}: interrupted: {state}{recorded}. See what runs with {}; {} returns to the previous good \
         release",
        env.project(),
        attempt.command("status"),
        attempt.command("rollback")
    ))
}

/// The platform stopped answering: what runs is unknown, so nothing is rolled back (it could not
/// be) and nothing is recorded (the record would be a guess); the message says what is known.
fn unreachable(ctx: &Context, attempt: &Attempt<'_>, diagnosis: &Diagnosis) -> Error {
    let (env, release) = (attempt.env, attempt.release);
    ctx.reporter.warn(&format!(
        "{} {}: {}",
        env.project(),
        release.version,
        diagnosis.cause
    ));
    let known = match attempt.applied {
        None => format!("{} had not been applied", release.version),
        Some(_) => format!(
            "{} had been applied{}",
            release.version,
            attempt
                .before
                .map(|previous| format!(" over {previous}"))
                .unwrap_or_default()
        ),
    };
    Error::prerequisite(
        format!(
            "{}: {known}; what runs now is unknown, and no record was written",
            diagnosis.cause
        ),
        format!(
            "when the cluster answers again ({}), {} shows what runs; deploy {} again, or {} returns to the \
             previous good release",
            attempt.command("doctor"),
            attempt.command("status"),
            release.version,
            attempt.command("rollback")
        ),
    )
}

/// Whether a prerequisite failure is the platform going away in the middle of an operation.
fn is_unreachable(error: &Error) -> bool {
    matches!(error, Error::Prerequisite { problem, .. } if problem.contains("what runs now is unknown"))
}

/// A refusal before the first change says so, so nobody goes looking for what it did.
fn nothing_changed(error: Error) -> Error {
    match error {
        Error::Prerequisite { problem, fix } if !problem.ends_with("nothing was changed") => {
            Error::Prerequisite {
                problem: format!("{problem}; nothing was changed"),
                fix,
            }
        }
        Error::Usage(message) if !message.ends_with("nothing was changed") => {
            Error::Usage(format!("{message}; nothing was changed"))
        }
        other => other,
    }
}

/// The release to restore after `failed` did not become healthy: what ran before (unless it was
/// the failed version itself), else the last good release of another version.
pub fn restore_target(before: Option<&str>, failed: &str, records: &[Record]) -> Option<String> {
    before
        .filter(|v| *v != failed)
        .map(str::to_string)
        .or_else(|| ledger::previous_good(records, Some(failed)).map(|r| r.version.clone()))
}

/// The release of `version` as it last ran well: the same image and, where the target recorded
/// them, the same manifests.
pub fn release_of(env: &Environment, version: &str, records: &[Record]) -> Release {
    let mut release = env.release(version);
    if let Some(record) = ledger::last_good_of(records, version) {
        if !record.image.is_empty() {
            release.image = record.image.clone();
        }
        release.manifests = record.manifests.clone();
        release.replicas = record.replicas;
    }
    release
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What the checks before a release learned.
struct Checked {
    /// The artifact's identity (image id or reference).
    artifact: String,
    /// The version serving now, if any.
    before: Option<String>,
    records: Vec<Record>,
}

/// Everything checked before a release changes anything: the target's prerequisites, the
/// release's artifact, what runs now and the history.
fn check(target: &dyn Target, env: &Environment, release: &Release) -> Result<Checked> {
    target.preflight(env)?;
    let artifact = target.artifact(env, release)?;
    // Whatever the platform would refuse is refused here, before the first change.
    target.verify(env, release)?;
    let live = target.live(env)?;
    let records = target.history(env)?;
    // What serves now: the live app (if any), else nothing.
    let before = live.version.clone().filter(|_| live.app.is_some());
    Ok(Checked {
        artifact,
        before,
        records,
    })
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Deploy => "deploying",
        Action::Rollback | Action::AutoRollback => "rolling back to",
        Action::Down => "stopping",
    }
}

/// Apply, wait for health, smoke test: all within `timeout`. Returns what was applied either way
/// (`None` when it was stopped before applying anything), so the record of a failed release says
/// what was tried. Only a release whose own `/version` answers with its version is healthy: a tag
/// that points at another build fails here.
fn bring_up(
    ctx: &Context,
    target: &dyn Target,
    env: &Environment,
    release: &Release,
    what: &str,
    timeout: Duration,
) -> (std::result::Result<Smoke, Diagnosis>, Option<Applied>) {
    let deadline = Instant::now() + timeout;
    let mut step = ctx.reporter.step(what);
    if step.interrupted() {
        step.failed("interrupted");
        return (Err(Diagnosis::interrupted("the release to start")), None);
    }
    let applied = match target.apply(env, release, deadline, &mut step) {
        Ok(applied) => applied,
        Err(diagnosis) => {
            step.failed(&diagnosis.cause);
            return (Err(diagnosis), Some(Applied::default()));
        }
    };
    let outcome = target
        .wait_healthy(env, release, deadline, &mut step)
        .and_then(|()| target.switch(env, release, deadline, &mut step))
        .and_then(|()| {
            step.detail("smoke test");
            target.smoke(env).map_err(|e| {
                if step.interrupted() {
                    Diagnosis::interrupted("the smoke test")
                } else {
                    Diagnosis::cause(format!("healthy, but the smoke test failed: {e}"))
                }
            })
        })
        .and_then(|smoke| same_version(release, smoke));
    match &outcome {
        Ok(smoke) => step.ok(&format!(
            "healthy, /readyz 200, API answers, /version says {}",
            smoke.version
        )),
        Err(diagnosis) => step.failed(&diagnosis.cause),
    }
    (outcome, Some(applied))
}

/// The smoke test's `/version` must be the release's own.
fn same_version(release: &Release, smoke: Smoke) -> std::result::Result<Smoke, Diagnosis> {
    if smoke.version == release.version {
        return Ok(smoke);
    }
    Err(Diagnosis {
        cause: format!(
            "it is healthy, but its /version says {}, not {}: the image {} is another build than its tag says",
            smoke.version, release.version, release.image
        ),
        fix: Some(format!(
            "build {} from the right sources and tag it again (`deployer build --version {}`, with --push for \
             a registry)",
            release.version, release.version
        )),
        ..Diagnosis::default()
    })
}

/// After a failed deploy: bring the previous release back and record it.
fn restore(
    ctx: &Context,
    target: &dyn Target,
    env: &Environment,
    release: &Release,
    timeout: Duration,
) -> Result<()> {
    // As many containers as the restored release ran (its record), else the target's default.
    let release = &Release {
        replicas: target.replicas(env, release.replicas)?,
        ..release.clone()
    };
    let artifact = target.artifact(env, release).map_err(|e| match e {
        Error::Prerequisite { problem, fix } => Error::prerequisite(
            format!("the previous release cannot run: {problem}"),
            format!("{fix}; then `deployer rollback`"),
        ),
        other => other,
    })?;
    let what = format!("rolling back to {}", release.version);
    let (outcome, applied) = bring_up(ctx, target, env, release, &what, timeout);
    let attempt = Attempt {
        target,
        env,
        release,
        action: Action::AutoRollback,
        artifact: &artifact,
        applied: applied.as_ref(),
        before: None,
    };
    match outcome {
        Ok(smoke) => attempt.record(Outcome::Ok, smoke.schema_version),
        Err(diagnosis) => match diagnosis.stopped {
            Stopped::Interrupted => Err(interrupted(ctx, &attempt, &diagnosis)),
            Stopped::Unreachable => Err(unreachable(ctx, &attempt, &diagnosis)),
            Stopped::Unhealthy => {
                attempt.record(Outcome::Failed, None)?;
                report_diagnosis(ctx, env, release, &diagnosis);
                Err(Error::Other(diagnosis.cause))
            }
        },
    }
}

/// What a record says beyond the release itself.
struct Facts<'a> {
    artifact: &'a str,
    applied: &'a Applied,
    schema_version: Option<i64>,
}

fn record(
    target: &dyn Target,
    env: &Environment,
    release: &Release,
    facts: &Facts<'_>,
    action: Action,
    result: Outcome,
) -> Record {
    Record {
        version: release.version.clone(),
        image_id: facts.artifact.to_string(),
        time: OffsetDateTime::now_utc(),
        action,
        result,
        who: ledger::who(),
        target: target.name().to_string(),
        port: env.port,
        image: release.image.clone(),
        revision: None,
        schema_version: facts.schema_version,
        purged_data: false,
        manifests: facts.applied.manifests.clone(),
        replicas: release.replicas,
    }
}

/// The record of `down`.
pub fn down_record(
    target: &dyn Target,
    env: &Environment,
    version: &str,
    purged_data: bool,
) -> Record {
    Record {
        version: version.to_string(),
        image_id: String::new(),
        time: OffsetDateTime::now_utc(),
        action: Action::Down,
        result: Outcome::Ok,
        who: ledger::who(),
        target: target.name().to_string(),
        port: env.port,
        image: String::new(),
        revision: None,
        schema_version: None,
        purged_data,
        manifests: None,
        replicas: None,
    }
}

/// A diagnosis as warnings, details and blocks (the same shapes on every target).
pub fn report_diagnosis(
    ctx: &Context,
    env: &Environment,
    release: &Release,
    diagnosis: &Diagnosis,
) {
    let reporter = &ctx.reporter;
    reporter.warn(&format!(
        "{} {}: {}",
        env.project(),
        release.version,
        diagnosis.cause
    ));
    if let Some(fix) = &diagnosis.fix {
        reporter.info(&format!("fix: {fix}"));
    }
    for detail in &diagnosis.details {
        reporter.info(detail);
    }
    for (title, lines) in &diagnosis.blocks {
        if !lines.is_empty() {
            reporter.block(title, lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(version: &str) -> Record {
        Record {
            replicas: None,
            version: version.into(),
            image_id: String::new(),
            time: OffsetDateTime::UNIX_EPOCH,
            action: Action::Deploy,
            result: Outcome::Ok,
            who: "t".into(),
            target: "kubernetes".into(),
            port: 8000,
            image: format!("registry.example/infra-challenge:{version}"),
            revision: None,
            schema_version: None,
            purged_data: false,
            manifests: Some(format!("kind: Deployment # {version}")),
        }
    }

    #[test]
    fn a_failed_upgrade_restores_what_ran_before() {
        assert_eq!(
            restore_target(Some("1"), "2", &[ok("1")]).as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_failed_redeploy_of_the_running_version_restores_the_last_other_good_one() {
        let records = [ok("1"), ok("2")];
        assert_eq!(
            restore_target(Some("2"), "2", &records).as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_failed_first_deploy_has_nothing_to_restore() {
        assert_eq!(restore_target(None, "1", &[]), None);
    }

    #[test]
    fn a_restored_release_is_the_recorded_image_and_manifests() {
        let env = Environment {
            name: "qa".into(),
            app_repository: "elsewhere/infra-challenge".into(),
            db_image: "mysql:8.4".into(),
            proxy_image: "haproxy:2.8".into(),
            port: 8000,
            secrets_dir: "/s".into(),
        };
        let release = release_of(&env, "1", &[ok("1"), ok("2")]);
        assert_eq!(release.image, "registry.example/infra-challenge:1");
        assert_eq!(release.manifests.as_deref(), Some("kind: Deployment # 1"));
        let never = release_of(&env, "9", &[ok("1")]);
        assert_eq!(never.image, "elsewhere/infra-challenge:9");
        assert_eq!(never.manifests, None);
    }
}
