//! The release procedure `deploy` and `rollback` share: check, create secrets, apply, wait for
//! health, smoke test, record in the ledger; when the release is not healthy, explain why and
//! restore what ran before.

use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use crate::context::Context;
use crate::docker;
use crate::error::{Error, Result};
use crate::http;
use crate::ledger::{self, Action, Outcome, Record};
use crate::plan::Plan;
use crate::platform::{Diagnosis, Target};
use crate::process::Cmd;

/// Brings the plan's release up, or explains why not and restores what ran before.
pub fn release(ctx: &Context, target: &dyn Target, plan: &Plan, action: Action) -> Result<()> {
    let reporter = &ctx.reporter;
    let started = Instant::now();
    let step = reporter.step("checking prerequisites");
    let checked = check_release(ctx, target, plan);
    let (image_id, before, releases) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            step.failed("");
            return Err(e);
        }
    };
    step.ok(&format!(
        "{}, running now: {}",
        target.name(),
        before.as_deref().unwrap_or("nothing")
    ));

    let created = target.ensure_secrets(plan)?;
    if !created.is_empty() {
        reporter.info(&format!(
            "created secrets {} in {} (mode 0600, never printed)",
            created.join(", "),
            plan.secrets_dir.display()
        ));
    }

    match bring_up(
        ctx,
        target,
        plan,
        &format!("{} {}", verb(action), plan.version),
    ) {
        Ok(smoke) => {
            record(ctx, target, plan, &image_id, action, Outcome::Ok)?;
            let elapsed = started.elapsed();
            reporter.result(
                json!({
                    "env": plan.env, "version": plan.version, "image_id": image_id, "url": plan.url(),
                    "reported_version": smoke.version, "elapsed_ms": elapsed.as_millis(), "action": action,
                }),
                || {
                    format!(
                        "{} {} is healthy at {} ({:.1}s)",
                        plan.project(),
                        plan.version,
                        plan.url(),
                        elapsed.as_secs_f64()
                    )
                },
            );
            Ok(())
        }
        Err(diagnosis) => {
            report_diagnosis(ctx, plan, &diagnosis);
            record(ctx, target, plan, &image_id, action, Outcome::Failed)?;
            let message = format!(
                "{} {} did not become healthy: {}",
                plan.project(),
                plan.version,
                diagnosis.cause
            );
            match restore_target(before.as_deref(), &plan.version, &releases) {
                None => Err(Error::DeployFailed {
                    message: format!(
                        "{message}; there was no earlier release to restore, so the failed one is left in place \
                         for inspection (`deployer logs`, then `deployer down`)"
                    ),
                    restored: true,
                }),
                Some(previous) => {
                    let previous_plan = plan.with_version(&previous);
                    let restored = restore(ctx, target, &previous_plan);
                    Err(Error::DeployFailed {
                        message: match &restored {
                            Ok(()) => format!("{message}; rolled back: {previous} serves again"),
                            Err(e) => {
                                format!("{message}; rolling back to {previous} failed too: {e}")
                            }
                        },
                        restored: restored.is_ok(),
                    })
                }
            }
        }
    }
}

/// The release to restore after `failed` did not become healthy: what ran before (unless it was
/// the failed version itself), else the last good release of another version.
pub fn restore_target(before: Option<&str>, failed: &str, releases: &[Record]) -> Option<String> {
    before
        .filter(|v| *v != failed)
        .map(str::to_string)
        .or_else(|| ledger::previous_good(releases, Some(failed)).map(|r| r.version.clone()))
}

/// Everything checked before a release changes anything: the target's prerequisites, both images,
/// what runs now (`before`) and the ledger.
fn check_release(
    ctx: &Context,
    target: &dyn Target,
    plan: &Plan,
) -> Result<(String, Option<String>, Vec<Record>)> {
    target.preflight(plan)?;
    let image_id = docker::image_id(&plan.app_image())?.ok_or_else(|| {
        Error::prerequisite(
            format!("the image {} is not in the local engine", plan.app_image()),
            format!(
                "build it: `deployer build --version {}`, or add --build to the deploy",
                plan.version
            ),
        )
    })?;
    ensure_db_image(plan)?;
    let live = target.live(plan)?;
    let releases = ctx.ledger(&plan.env).load()?;
    // What serves now: the live app (if any), else nothing.
    let before = live.version.clone().filter(|_| live.app.is_some());
    Ok((image_id, before, releases))
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Deploy => "deploying",
        Action::Rollback | Action::AutoRollback => "rolling back to",
        Action::Down => "stopping",
    }
}

/// Apply, wait for health, smoke test: all within the plan's timeout.
fn bring_up(
    ctx: &Context,
    target: &dyn Target,
    plan: &Plan,
    what: &str,
) -> Result<http::Smoke, Diagnosis> {
    let deadline = Instant::now() + plan.timeout;
    let mut step = ctx.reporter.step(what);
    let outcome = target
        .apply(plan, deadline, &mut step)
        .and_then(|()| target.wait_healthy(plan, deadline, &mut step))
        .and_then(|()| {
            step.detail("smoke test");
            http::smoke_test(&plan.url()).map_err(|e| Diagnosis {
                cause: format!(
                    "healthy, but the smoke test through {} failed: {e}",
                    plan.url()
                ),
                ..Diagnosis::default()
            })
        });
    match &outcome {
        Ok(smoke) => step.ok(&format!(
            "healthy, /readyz 200, API answers, /version says {}",
            smoke.version
        )),
        Err(diagnosis) => step.failed(&diagnosis.cause),
    }
    outcome
}

/// After a failed deploy: bring the previous release back and record it.
fn restore(ctx: &Context, target: &dyn Target, plan: &Plan) -> Result<()> {
    let image_id = docker::image_id(&plan.app_image())?.ok_or_else(|| {
        Error::prerequisite(
            format!(
                "the image {} of the previous release is gone",
                plan.app_image()
            ),
            format!(
                "rebuild it (`deployer build --version {}`) and run `deployer rollback`",
                plan.version
            ),
        )
    })?;
    match bring_up(
        ctx,
        target,
        plan,
        &format!("rolling back to {}", plan.version),
    ) {
        Ok(_) => record(
            ctx,
            target,
            plan,
            &image_id,
            Action::AutoRollback,
            Outcome::Ok,
        ),
        Err(diagnosis) => {
            report_diagnosis(ctx, plan, &diagnosis);
            record(
                ctx,
                target,
                plan,
                &image_id,
                Action::AutoRollback,
                Outcome::Failed,
            )?;
            Err(Error::Other(diagnosis.cause))
        }
    }
}

pub fn record(
    ctx: &Context,
    target: &dyn Target,
    plan: &Plan,
    image_id: &str,
    action: Action,
    result: Outcome,
) -> Result<()> {
    ctx.ledger(&plan.env).append(&Record {
        version: plan.version.clone(),
        image_id: image_id.to_string(),
        time: OffsetDateTime::now_utc(),
        action,
        result,
        who: ledger::who(),
        target: target.name().to_string(),
        port: plan.port,
        image: String::new(),
        revision: None,
        schema_version: None,
        purged_data: false,
        manifests: None,
    })
}

fn report_diagnosis(ctx: &Context, plan: &Plan, diagnosis: &Diagnosis) {
    let reporter = &ctx.reporter;
    reporter.warn(&format!(
        "{} {}: {}",
        plan.project(),
        plan.version,
        diagnosis.cause
    ));
    if !diagnosis.state.is_empty() {
        reporter.info(&format!("app container: {}", diagnosis.state));
    }
    if !diagnosis.health_log.is_empty() {
        reporter.block("last healthcheck results", &diagnosis.health_log);
    }
    if !diagnosis.log_tail.is_empty() {
        reporter.block(
            &format!("last {} log lines of the app", diagnosis.log_tail.len()),
            &diagnosis.log_tail,
        );
    }
}

/// The database stand-in `cargo xtask airgap-images` builds where no registry serves `mysql:8.4`.
pub const AIRGAP_DB_IMAGE: &str = "infra-challenge/mariadb:10.11";

/// The database image must be local; pull it when a registry can provide it.
fn ensure_db_image(plan: &Plan) -> Result<()> {
    if docker::image_id(&plan.db_image)?.is_some() {
        return Ok(());
    }
    let pulled = Cmd::new("docker")
        .args(["pull", "--quiet", &plan.db_image])
        .output(Duration::from_secs(600))?;
    if pulled.success {
        Ok(())
    } else {
        let standin_here = docker::image_id(AIRGAP_DB_IMAGE).ok().flatten().is_some();
        Err(Error::prerequisite(
            format!(
                "the database image {} is not in the local engine and could not be pulled ({})",
                plan.db_image,
                pulled.explanation().lines().last().unwrap_or("")
            ),
            if standin_here {
                format!(
                    "the air-gapped stand-in is here: pass --db-image {AIRGAP_DB_IMAGE} (or DEPLOYER_DB_IMAGE)"
                )
            } else {
                format!(
                    "where no registry is reachable, seed a stand-in with `cargo xtask airgap-images` and pass \
                     --db-image {AIRGAP_DB_IMAGE}"
                )
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(version: &str) -> Record {
        Record {
            version: version.into(),
            image_id: String::new(),
            time: OffsetDateTime::UNIX_EPOCH,
            action: Action::Deploy,
            result: Outcome::Ok,
            who: "t".into(),
            target: "compose".into(),
            port: 8000,
            image: String::new(),
            revision: None,
            schema_version: None,
            purged_data: false,
            manifests: None,
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
        let releases = [ok("1"), ok("2")];
        assert_eq!(
            restore_target(Some("2"), "2", &releases).as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_failed_first_deploy_has_nothing_to_restore() {
        assert_eq!(restore_target(None, "1", &[]), None);
    }
}
