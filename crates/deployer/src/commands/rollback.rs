//! `deployer rollback [--to V]`: deploy an earlier good release again, exactly as it ran.

use crate::cli::RollbackArgs;
use crate::context::Context;
use crate::error::Result;
use crate::ledger::Action;
use crate::ops::{lock, release, rollback};
use crate::report::one_line;

pub fn run(ctx: &Context, args: RollbackArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.environment(&ctx.env_or_default())?;
    // Taken before the history is read: the release to return to is chosen from a history that
    // nobody else changes meanwhile.
    let _lock = lock::acquire(
        ctx,
        target.as_ref(),
        &env,
        "rollback",
        args.to.as_deref().unwrap_or("(the previous good release)"),
    )?;
    let records = target.history(&env)?;
    let running = ctx.running_version(target.as_ref(), &env)?;
    let record = rollback::choose(
        &records,
        args.to.as_deref(),
        running.as_deref(),
        &env.name,
        target.name(),
    )?;
    // The schema the database has: the running service says it; else the history does.
    let live_schema = target
        .smoke(&env)
        .ok()
        .and_then(|smoke| smoke.database_schema_version);
    let database = rollback::database_schema(live_schema, &records);
    if let Some(warning) = rollback::schema_guard(record, database, args.force)? {
        ctx.reporter.warn(&warning);
    }
    let plan = release::release_of(&env, &record.version, &records);
    ctx.reporter.info(&format!(
        "rolling {} back from {} to {} (deployed {} by {})",
        env.name,
        running.as_deref().unwrap_or("nothing"),
        one_line(&record.version),
        crate::ledger::format_time(record.time),
        // The history is data a person may edit: its login name is shown, never interpreted.
        one_line(&record.who)
    ));
    release::release(
        ctx,
        target.as_ref(),
        &env,
        &plan,
        Action::Rollback,
        args.timeout,
    )
}
