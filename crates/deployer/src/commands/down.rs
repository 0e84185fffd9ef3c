//! `deployer down`, `deployer unlock` and `deployer logs`.

use dialoguer::Confirm;
use dialoguer::theme::ColorfulTheme;
use serde_json::json;

use crate::cli::{DownArgs, LogsArgs, TargetArg};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{lock, release};
use crate::platform::LogOptions;

pub fn down(ctx: &Context, args: DownArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let plan = ctx.environment(&ctx.env_or_default())?;
    let env = plan.name.clone();
    if args.purge_data && !args.yes && !ctx.terminal {
        return Err(Error::usage(
            "--purge-data deletes the database for good: pass --yes as well to confirm without a terminal",
        ));
    }
    let running = ctx.running_version(target.as_ref(), &plan)?;
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
    let _lock = lock::acquire(
        ctx,
        target.as_ref(),
        &plan,
        "down",
        running.as_deref().unwrap_or("none"),
    )?;
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
    target.record(
        &plan,
        release::down_record(
            target.as_ref(),
            &plan,
            running.as_deref().unwrap_or("none"),
            args.purge_data,
        ),
    )?;
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

/// Breaks a lock whose holder is known dead, saying whose it was.
pub fn unlock(ctx: &Context, args: TargetArg) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.environment(&ctx.env_or_default())?;
    let broken = target.break_lock(&env)?;
    ctx.reporter.result(
        json!({ "env": env.name, "broken": broken }),
        || match &broken {
            Some(holder) => format!(
                "broke the lock of {}: it was {}",
                env.name,
                lock::describe(holder)
            ),
            None => format!("{} was not locked", env.name),
        },
    );
    Ok(())
}

pub fn logs(ctx: &Context, args: LogsArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.environment(&ctx.env_or_default())?;
    let options = LogOptions {
        follow: args.follow,
        tail: args.tail,
        previous: args.previous,
        service: args.service,
    };
    let code = target.logs(&env, &options)?;
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "the logs command exited with code {code}"
        )))
    }
}
