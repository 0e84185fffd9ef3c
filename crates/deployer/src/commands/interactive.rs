//! The interactive mode (no subcommand, on a terminal): the questions the original `build.py`
//! asked (platform, then version, offering to keep the running one), plus the environment; then a
//! summary, a confirmation, the deploy, and the equivalent command for next time.

use std::time::Duration;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Select};

use crate::cli::TargetKind;
use crate::commands::deploy::{self, Choices};
use crate::context::Context;
use crate::docker;
use crate::error::{Error, Result};
use crate::plan::{self, SUGGESTED_ENVS};
use crate::report::one_line;

/// What the first question offers, in order (the first is the default).
const PLATFORMS: [(&str, Option<TargetKind>); 3] = [
    ("[D]ocker Compose", Some(TargetKind::Compose)),
    ("[K]ubernetes", Some(TargetKind::Kubernetes)),
    ("[S] quit", None),
];

/// `deployer` alone.
pub fn run(ctx: &Context) -> Result<()> {
    if !ctx.terminal {
        return Err(Error::usage(format!(
            "no subcommand, and no terminal to ask on: pass the choices as flags, e.g. `deployer deploy --target \
             compose --version {} --env {} --yes` (see `deployer --help`)",
            env!("CARGO_PKG_VERSION"),
            ctx.env_or_default()
        )));
    }
    ask_and_deploy(ctx, None, None, None, Duration::from_secs(120), false)
}

fn prompt_error(e: dialoguer::Error) -> Error {
    Error::Other(format!("reading the answer: {e}"))
}

/// Asks what `target` and `version` leave open, then deploys like `deploy` would.
pub fn ask_and_deploy(
    ctx: &Context,
    target: Option<TargetKind>,
    version: Option<String>,
    replicas: Option<u32>,
    timeout: Duration,
    allow_dirty: bool,
) -> Result<()> {
    let theme = ColorfulTheme::default();
    let target = match target {
        Some(target) => target,
        None => {
            let labels: Vec<&str> = PLATFORMS.iter().map(|(label, _)| *label).collect();
            let chosen = Select::with_theme(&theme)
                .with_prompt("Deploy on which platform?")
                .items(&labels)
                .default(0)
                .interact_opt()
                .map_err(prompt_error)?;
            match chosen.and_then(|i| PLATFORMS[i].1) {
                Some(target) => target,
                None => {
                    ctx.reporter.info("nothing deployed");
                    return Ok(());
                }
            }
        }
    };
    let target_impl = ctx.target(target)?;

    let env = match &ctx.env {
        Some(env) => env.clone(),
        None => Input::<String>::with_theme(&theme)
            .with_prompt(format!(
                "Environment ({} or a name of your own)",
                SUGGESTED_ENVS.join(", ")
            ))
            .default(crate::context::DEFAULT_ENV.to_string())
            .validate_with(|name: &String| {
                plan::parse_env(name).map(|_| ()).map_err(|e| e.to_string())
            })
            .interact_text()
            .map_err(prompt_error)?,
    };

    let (version, build) = match version {
        Some(version) => (plan::parse_version(&version)?, false),
        None => ask_version(ctx, target_impl.as_ref(), &env, &theme)?,
    };

    let choices = Choices {
        target,
        env,
        version,
        build,
        replicas,
    };
    deploy::execute(ctx, &choices, false, timeout, allow_dirty)?;
    ctx.reporter.info(&format!(
        "next time, without questions: {}",
        equivalent_command(ctx, &choices)
    ));
    Ok(())
}

fn ask_version(
    ctx: &Context,
    target: &dyn crate::platform::Target,
    env: &str,
    theme: &ColorfulTheme,
) -> Result<(String, bool)> {
    let environment = ctx.environment(env)?;
    let running = ctx.running_version(target, &environment)?;
    let local = target.known_versions(&environment)?;
    let choices = plan::version_choices(running.as_deref(), &local);
    let mut labels: Vec<String> = choices
        .iter()
        .map(|v| {
            // The running version may come from the ledger, a file a person may edit: shown, never
            // interpreted by the terminal (dialoguer prints labels as they are).
            let shown = one_line(v);
            if Some(v) == running.as_ref() {
                format!("{shown}  (running now: keep it)")
            } else {
                format!("{shown}  (local image)")
            }
        })
        .collect();
    labels.push("another version (build it from this work tree)".to_string());
    let chosen = Select::with_theme(theme)
        .with_prompt("Which version?")
        .items(&labels)
        .default(0)
        .interact()
        .map_err(prompt_error)?;
    if let Some(version) = choices.get(chosen) {
        return Ok((version.clone(), false));
    }
    let version: String = Input::with_theme(theme)
        .with_prompt("Version to build and deploy")
        .default(env!("CARGO_PKG_VERSION").to_string())
        .validate_with(|v: &String| {
            plan::parse_version(v)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .interact_text()
        .map_err(prompt_error)?;
    let exists = docker::image_id(&format!("{}:{version}", ctx.global.repository))?.is_some();
    let build = !exists
        || Confirm::with_theme(theme)
            .with_prompt(format!(
                "{version} exists locally; rebuild it from this work tree?"
            ))
            .default(false)
            .interact()
            .map_err(prompt_error)?;
    Ok((version, build))
}

/// The `deploy` command line that does the same without questions.
pub fn equivalent_command(ctx: &Context, choices: &Choices) -> String {
    let mut words = vec!["deployer".to_string()];
    words.extend(ctx.global_flags());
    words.push("deploy".into());
    words.push(format!("--target {}", choices.target.flag()));
    words.push(format!("--env {}", choices.env));
    words.push(format!("--version {}", choices.version));
    if let Some(replicas) = choices.replicas {
        words.push(format!("--replicas {replicas}"));
    }
    if choices.build {
        words.push("--build".into());
    }
    words.push("--yes".into());
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn equivalent_command_repeats_the_explicit_global_flags() {
        let cli = Cli::parse_from([
            "deployer",
            "--state-dir",
            "/tmp/state dir",
            "--project-dir",
            "/src",
            "--port",
            "8081",
            "--db-image",
            "infra-challenge/mariadb:10.11",
        ]);
        let ctx = Context::new(cli.global).unwrap();
        let choices = Choices {
            target: TargetKind::Compose,
            env: "qa".into(),
            version: "1.2.0".into(),
            build: true,
            replicas: Some(3),
        };
        assert_eq!(
            equivalent_command(&ctx, &choices),
            "deployer --state-dir '/tmp/state dir' --project-dir /src --port 8081 --db-image \
             infra-challenge/mariadb:10.11 deploy --target compose --env qa --version 1.2.0 --replicas 3 --build --yes"
        );
    }
}
