//! `deployer render` (what would be applied) and `deployer doctor` (prerequisites).

use serde_json::json;

use crate::cli::{RenderArgs, TargetArg};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan;

pub fn render(ctx: &Context, args: RenderArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let environment = ctx.environment(&ctx.env_or_default())?;
    let env = environment.name.clone();
    let version = match args.version {
        Some(version) => plan::parse_version(&version)?,
        None => ctx
            .running_version(target.as_ref(), &environment)?
            .ok_or_else(|| {
                Error::usage(format!(
                    "nothing runs in {env}: pass --version V to render that version"
                ))
            })?,
    };
    let release = environment.release(&version);
    let text = target.render(&environment, &release)?;
    ctx.reporter.result(
        json!({ "env": env, "version": release.version, "target": target.name(), "config": text }),
        || text.clone(),
    );
    Ok(())
}

pub fn doctor(ctx: &Context, args: TargetArg) -> Result<()> {
    let target = ctx.target(args.target)?;
    let environment = ctx.environment(&ctx.env_or_default())?;
    let env = environment.name.clone();
    let checks = target.doctor(&environment);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    ctx.reporter.result(
        json!({ "env": env, "checks": checks, "ok": failed.is_empty() }),
        || {
            let mut text = String::new();
            for check in &checks {
                text.push_str(&format!(
                    "{} {:<15} {}\n",
                    if check.ok { "ok  " } else { "FAIL" },
                    check.name,
                    check.detail
                ));
                if let Some(fix) = &check.fix {
                    text.push_str(&format!("     {:<15} fix: {fix}\n", ""));
                }
            }
            text
        },
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::prerequisite(
            format!("{} check(s) failed: {}", failed.len(), failed.join(", ")),
            format!(
                "apply the fixes listed above, then run `deployer doctor --target {}` again",
                target.name()
            ),
        ))
    }
}
