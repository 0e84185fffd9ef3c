//! `deployer rollback [--to V]`: deploy an earlier good release again.

use crate::cli::RollbackArgs;
use crate::commands::release;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ledger::{self, Action};
use crate::report::one_line;

pub fn run(ctx: &Context, args: RollbackArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.env_or_default();
    let releases = ctx.ledger(&env).load()?;
    let running = ctx.running_version(target.as_ref(), &env)?;
    let release = match &args.to {
        Some(version) => ledger::last_good_of(&releases, version).ok_or_else(|| {
            Error::usage(format!(
                "{version} was never deployed successfully to {env}: see `deployer history --env {env}`, or deploy \
                 it with `deployer deploy --target {} --env {env} --version {version}`",
                target.name()
            ))
        })?,
        None => ledger::previous_good(&releases, running.as_deref()).ok_or_else(|| {
            Error::usage(format!(
                "no earlier good release of {env} to return to (see `deployer history --env {env}`)"
            ))
        })?,
    };
    let plan = ctx.plan(&env, &release.version, args.timeout)?;
    ctx.reporter.info(&format!(
        "rolling {env} back from {} to {} (deployed {} by {})",
        running.as_deref().unwrap_or("nothing"),
        release.version,
        crate::ledger::format_time(release.time),
        // The ledger is a file a person may edit: its login name is shown, never interpreted.
        one_line(&release.who)
    ));
    release::release(ctx, target.as_ref(), &plan, Action::Rollback)
}
