//! `deployer deploy`: the choices (from flags or prompts), a confirmation, then the release
//! procedure of `crate::ops::release`.

use std::time::Duration;

use dialoguer::Confirm;
use dialoguer::theme::ColorfulTheme;

use crate::cli::{DeployArgs, TargetKind};
use crate::commands::{build, diff, interactive};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ledger::Action;
use crate::ops::lock;
use crate::ops::release::release;
use crate::plan::{self, Environment, Release};
use crate::platform::Target;
use crate::report::one_line;

/// What a person chose (by flags or by answering the prompts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choices {
    pub target: TargetKind,
    pub env: String,
    pub version: String,
    pub build: bool,
    /// `--replicas` (Compose), else the target's default.
    pub replicas: Option<u32>,
}

/// The flags that `deploy` cannot do without, as a person would type them.
pub fn missing_flags(args: &DeployArgs) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if args.target.is_none() {
        missing.push("--target compose|kubernetes");
    }
    if args.version.is_none() {
        missing.push("--version V");
    }
    missing
}

pub fn run(ctx: &Context, args: DeployArgs) -> Result<()> {
    let missing = missing_flags(&args);
    if !missing.is_empty() {
        if !ctx.terminal {
            return Err(Error::usage(format!(
                "missing {}: without a terminal the deployer cannot ask (e.g. `deployer deploy --target compose \
                 --version {} --env {} --yes`)",
                missing.join(" and "),
                env!("CARGO_PKG_VERSION"),
                ctx.env_or_default()
            )));
        }
        // Ask only for what the flags left open.
        return interactive::ask_and_deploy(
            ctx,
            args.target,
            args.version,
            args.replicas,
            args.timeout,
            args.allow_dirty,
        );
    }
    let (Some(target), Some(version)) = (args.target, args.version) else {
        return Err(Error::usage("missing --target or --version"));
    };
    let choices = Choices {
        target,
        env: ctx.env_or_default(),
        version: plan::parse_version(&version)?,
        build: args.build,
        replicas: args.replicas,
    };
    execute(ctx, &choices, args.yes, args.timeout, args.allow_dirty)
}

/// Shows the plan, asks for confirmation unless `yes`, and deploys.
pub fn execute(
    ctx: &Context,
    choices: &Choices,
    yes: bool,
    timeout: Duration,
    allow_dirty: bool,
) -> Result<()> {
    let target = ctx.target(choices.target)?;
    let env = ctx.environment(&choices.env)?;
    let mut plan = env.release(&plan::parse_version(&choices.version)?);
    // Checked (and chosen when not given) before anything is shown or asked: a count the target
    // cannot run is a usage error (exit 2) that changes nothing.
    plan.replicas = target.replicas(&env, choices.replicas)?;
    if !yes {
        ctx.reporter
            .info(&summary(ctx, target.as_ref(), &env, &plan, choices.build));
    }
    // What the release would change, before it changes anything: for the person about to answer
    // "Deploy?", and as an event for a machine reading JSON (a `--yes` deploy on a terminal skips
    // the second of work it costs; `deployer diff` shows it).
    if !yes || ctx.reporter.is_json() {
        match target.diff(&env, &plan) {
            Ok(changes) => ctx
                .reporter
                .changes(&changes, &diff::text(&env.name, &plan.version, &changes)),
            Err(e) => ctx.reporter.info(&format!(
                "what deploying {} would change cannot be shown: {e}",
                plan.version
            )),
        }
    }
    if !yes {
        if !ctx.terminal {
            return Err(Error::usage(
                "no terminal to confirm on: pass --yes to deploy without confirmation",
            ));
        }
        let go = Confirm::with_theme(&ColorfulTheme::default())
            .with_prompt("Deploy?")
            .default(true)
            .interact()
            .map_err(|e| Error::Other(format!("reading the answer: {e}")))?;
        if !go {
            ctx.reporter.info("nothing deployed");
            return Ok(());
        }
    }
    if choices.build {
        build::build_image(ctx, &plan.version, allow_dirty, None)?;
    }
    // From the first change to the last (the automatic rollback included): one operation at a time.
    let _lock = lock::acquire(ctx, target.as_ref(), &env, "deploy", &plan.version)?;
    release(ctx, target.as_ref(), &env, &plan, Action::Deploy, timeout)
}

/// The plan in a few lines, for the confirmation prompt.
pub fn summary(
    ctx: &Context,
    target: &dyn Target,
    env: &Environment,
    plan: &Release,
    build: bool,
) -> String {
    let running = ctx
        .running_version(target, env)
        .ok()
        .flatten()
        .map(|v| format!(" (running now: {})", one_line(&v)))
        .unwrap_or_else(|| " (nothing running yet)".to_string());
    let replicas = plan
        .replicas
        .map(|n| format!("  replicas:    {n} app containers\n"))
        .unwrap_or_default();
    let image = if build {
        format!("{} (built from the work tree first)", plan.image)
    } else {
        plan.image.clone()
    };
    format!(
        "\n  platform:    {}\n  environment: {} (project {})\n  version:     {}{running}\n  image:       {image}\n  \
         {replicas}  database:    {}\n  where:       {}\n  state:       {}\n",
        target.title(),
        env.name,
        env.project(),
        plan.version,
        env.db_image,
        target.location(env),
        ctx.env_dir(&env.name).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: Option<TargetKind>, version: Option<&str>) -> DeployArgs {
        DeployArgs {
            target,
            version: version.map(String::from),
            build: false,
            allow_dirty: false,
            yes: true,
            timeout: Duration::from_secs(60),
            replicas: None,
        }
    }

    #[test]
    fn missing_flags_are_named() {
        assert_eq!(
            missing_flags(&args(None, None)),
            ["--target compose|kubernetes", "--version V"]
        );
        assert_eq!(
            missing_flags(&args(Some(TargetKind::Compose), None)),
            ["--version V"]
        );
        assert!(missing_flags(&args(Some(TargetKind::Compose), Some("1"))).is_empty());
    }
}
