//! `deployer down` and `deployer logs`.

use std::time::Duration;

use dialoguer::Confirm;
use dialoguer::theme::ColorfulTheme;
use serde_json::json;

use crate::cli::{DownArgs, LogsArgs};
use crate::commands::release;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ledger::{Action, Outcome};

pub fn down(ctx: &Context, args: DownArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.env_or_default();
    if args.purge_data && !args.yes && !ctx.terminal {
        return Err(Error::usage(
            "--purge-data deletes the database for good: pass --yes as well to confirm without a terminal",
        ));
    }
    crate::docker::engine_version()?;
    let running = ctx.running_version(target.as_ref(), &env)?;
    let plan = ctx.plan(
        &env,
        running.as_deref().unwrap_or("none"),
        Duration::from_secs(180),
    )?;
    if args.purge_data && !args.yes {
        let confirmed = Confirm::with_theme(&ColorfulTheme::default())
            .with_prompt(format!(
                "Delete the database of {env} ({}) for good?",
                plan.project()
            ))
            .default(false)
            .interact()
            .map_err(|e| Error::Other(format!("reading the answer: {e}")))?;
        if !confirmed {
            ctx.reporter.info("nothing stopped");
            return Ok(());
        }
    }
    let step = ctx.reporter.step(&format!("stopping {}", plan.project()));
    if let Err(e) = target.down(&plan, args.purge_data) {
        step.failed("");
        return Err(e);
    }
    step.ok(if args.purge_data {
        "containers and data removed"
    } else {
        "containers removed, data kept"
    });
    release::record(ctx, target.as_ref(), &plan, "", Action::Down, Outcome::Ok)?;
    ctx.reporter.result(
        json!({ "env": env, "project": plan.project(), "purged_data": args.purge_data }),
        || {
            if args.purge_data {
                format!("{env} is down; its data is deleted")
            } else {
                format!("{env} is down; its data is kept (`deployer down --purge-data` deletes it)")
            }
        },
    );
    Ok(())
}

pub fn logs(ctx: &Context, args: LogsArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.env_or_default();
    let running = ctx.running_version(target.as_ref(), &env)?;
    let plan = ctx.plan(
        &env,
        running.as_deref().unwrap_or("none"),
        Duration::from_secs(1),
    )?;
    let code = target.logs(&plan, args.follow, args.tail, args.service.as_deref())?;
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "the logs command exited with code {code}"
        )))
    }
}
