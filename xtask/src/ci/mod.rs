//! `cargo xtask ci <stage>`: the repository side of the CI/CD pipeline. Jenkins and GitHub Actions
//! call these stages; each one also runs on a laptop.
//!
//! Every stage writes its reports under `target/ci/` and ends with one summary line on stderr,
//! `ci <stage>: ok|FAILED - ... (12.3s)`. A stage that ran the deployer exits with the deployer's
//! exit code when it fails (for example 3 when the Kubernetes target finds no reachable cluster).
//!
//! The version every stage works on (image tag, deploy, smoke test, message) is one rule, see
//! [`version`]: `--version`, else `PIPELINE_VERSION`, else `<workspace version>-<short sha>` (with
//! `-dirty` when the work tree has uncommitted changes).
//!
//! When the standard OTLP variables name an endpoint, a stage's start and end are also sent as
//! OTLP log records, and so are the events of the deployer it runs (see [`events`]).

mod deploy;
mod events;
mod image;
mod notify;
mod quality;
mod sonar;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use xshell::{Shell, cmd};

use otlp_events::{EventLog, Run};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Subcommand)]
enum Stage {
    /// rustfmt, clippy (report: target/ci/clippy.json), cargo machete, hadolint, yamllint.
    Lint,
    /// `cargo xtask test` but its lint suite (the lint stage), the rust suite's results as JUnit XML
    /// (target/ci/junit.xml).
    Test(crate::test::Args),
    /// Line coverage of the workspace's tests as LCOV (target/ci/lcov.info), with cargo-llvm-cov.
    Coverage,
    /// SonarQube analysis (needs SONAR_HOST_URL, SONAR_TOKEN and sonar-scanner).
    Sonar(VersionArg),
    /// Build infra-challenge:<version>, lint the Dockerfile, check the image size.
    Image(VersionArg),
    /// Tag and push the image to $REGISTRY as <version> and sha-<short sha>.
    Push(VersionArg),
    /// Deploy the version with the deployer (dev: Compose; qa, prod: Kubernetes).
    Deploy(EnvArgs),
    /// Check the running release: deployer status, /readyz, /api/tasks, /version.
    Smoke(EnvArgs),
    /// One message about the run from the reports in target/ci/ (webhook: NOTIFY_WEBHOOK_URL).
    Notify,
}

#[derive(clap::Args)]
struct VersionArg {
    /// The version [default: <workspace version>-<short sha>, `-dirty` appended for a work tree
    /// with uncommitted changes].
    #[arg(long, env = "PIPELINE_VERSION")]
    version: Option<String>,
}

#[derive(clap::Args)]
struct EnvArgs {
    /// The environment: dev runs on Docker Compose, qa and prod on Kubernetes.
    #[arg(value_enum)]
    env: Env,
    #[command(flatten)]
    version: VersionArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Env {
    Dev,
    Qa,
    Prod,
}

impl Env {
    fn name(self) -> &'static str {
        match self {
            Env::Dev => "dev",
            Env::Qa => "qa",
            Env::Prod => "prod",
        }
    }

    /// The deployer target of the environment.
    fn target(self) -> &'static str {
        match self {
            Env::Dev => "compose",
            Env::Qa | Env::Prod => "kubernetes",
        }
    }
}

impl Stage {
    /// The version argument of a stage that works on a version.
    fn version_arg(&self) -> Option<&VersionArg> {
        match self {
            Stage::Sonar(v) | Stage::Image(v) | Stage::Push(v) => Some(v),
            Stage::Deploy(e) | Stage::Smoke(e) => Some(&e.version),
            Stage::Lint | Stage::Test(_) | Stage::Coverage | Stage::Notify => None,
        }
    }

    fn env(&self) -> Option<Env> {
        match self {
            Stage::Deploy(e) | Stage::Smoke(e) => Some(e.env),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Stage::Lint => "lint",
            Stage::Test(_) => "test",
            Stage::Coverage => "coverage",
            Stage::Sonar(_) => "sonar",
            Stage::Image(_) => "image",
            Stage::Push(_) => "push",
            Stage::Deploy(_) => "deploy",
            Stage::Smoke(_) => "smoke",
            Stage::Notify => "notify",
        }
    }
}

/// A stage failed because a program it ran exited with `code`; the stage exits with it too.
#[derive(Debug)]
pub struct ChildExit {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (exit code {})", self.message, self.code)
    }
}

impl std::error::Error for ChildExit {}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    let name = match &args.stage {
        Stage::Deploy(e) => format!("deploy {}", e.env.name()),
        Stage::Smoke(e) => format!("smoke {}", e.env.name()),
        stage => stage.name().to_owned(),
    };
    let started = Instant::now();
    let result = stage_run(sh, &args.stage, &name).and_then(|run| {
        let log = EventLog::from_env("xtask-ci", env!("CARGO_PKG_VERSION"), run.clone())?;
        let events = events::StageEvents::start(log, &run);
        for (variable, value) in run.child_env() {
            sh.set_var(variable, value);
        }
        let result = reports_dir().and_then(|dir| execute(sh, &dir, args.stage, run.version));
        events.finish(&result, started.elapsed());
        result
    });
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(summary) => {
            eprintln!("\nci {name}: ok - {summary} ({elapsed:.1}s)");
            Ok(())
        }
        Err(error) => {
            eprintln!("\nci {name}: FAILED - {error:#} ({elapsed:.1}s)");
            if let Some(child) = error.downcast_ref::<ChildExit>() {
                std::process::exit(child.code);
            }
            std::process::exit(1);
        }
    }
}

/// What the stage's events carry: its name, environment and version (resolved once, see
/// [`version`]) and Jenkins' `BUILD_URL`.
fn stage_run(sh: &Shell, stage: &Stage, name: &str) -> anyhow::Result<Run> {
    let version = match stage.version_arg() {
        Some(arg) => Some(version(sh, arg.version.clone())?),
        None => None,
    };
    Ok(Run {
        environment: stage.env().map(|env| env.name().to_owned()),
        version,
        stage: Some(name.to_owned()),
        ..Run::from_env()
    })
}

/// Runs the stage; `version` is the one [`stage_run`] resolved for the stages that take one.
fn execute(
    sh: &Shell,
    dir: &Path,
    stage: Stage,
    version: Option<String>,
) -> anyhow::Result<String> {
    let version = || {
        version
            .clone()
            .context("the stage's version was not resolved")
    };
    match stage {
        Stage::Lint => quality::lint(sh, dir),
        Stage::Test(test) => quality::test(sh, dir, test),
        Stage::Coverage => quality::coverage(sh, dir),
        Stage::Sonar(_) => sonar::run(sh, dir, &version()?),
        Stage::Image(_) => image::build(sh, dir, &version()?),
        Stage::Push(_) => image::push(sh, dir, &version()?),
        Stage::Deploy(e) => deploy::deploy(sh, dir, e.env, &version()?),
        Stage::Smoke(e) => deploy::smoke(sh, dir, e.env, &version()?),
        Stage::Notify => notify::run(dir),
    }
}

/// The coverage stage's work, for `cargo xtask test --coverage`: the unit and integration tests run
/// once, instrumented, and target/ci/lcov.info is written; returns the summary line.
pub fn coverage_in_test_run(sh: &Shell) -> anyhow::Result<String> {
    quality::coverage(sh, &reports_dir()?)
}

/// `target/ci/`, created when missing.
fn reports_dir() -> anyhow::Result<PathBuf> {
    let dir = util::project_root().join("target").join("ci");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The version of this run: `explicit` (`--version` or `PIPELINE_VERSION`), else the workspace
/// version and the commit, so two commits never build the same tag.
fn version(sh: &Shell, explicit: Option<String>) -> anyhow::Result<String> {
    let revision = revision(sh)?;
    Ok(version_rule(
        explicit.as_deref(),
        env!("CARGO_PKG_VERSION"),
        &revision.short,
        revision.dirty,
    ))
}

fn version_rule(explicit: Option<&str>, workspace: &str, short_sha: &str, dirty: bool) -> String {
    match explicit.map(str::trim).filter(|v| !v.is_empty()) {
        Some(version) => version.to_owned(),
        None if dirty => format!("{workspace}-{short_sha}-dirty"),
        None => format!("{workspace}-{short_sha}"),
    }
}

struct Revision {
    short: String,
    dirty: bool,
}

/// The commit the work tree is at (7 digits, as the deployer's `sha-` tag), and whether tracked
/// files have uncommitted changes (the deployer's rule too).
fn revision(sh: &Shell) -> anyhow::Result<Revision> {
    let short = cmd!(sh, "git rev-parse --short=7 HEAD")
        .quiet()
        .read()
        .context("git rev-parse: the pipeline runs in a git checkout")?;
    let status = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .read()?;
    Ok(Revision {
        short,
        dirty: !status.trim().is_empty(),
    })
}

/// The deployer, run from this checkout with `--output json`.
fn deployer<'a>(sh: &'a Shell, args: &[&str]) -> xshell::Cmd<'a> {
    cmd!(
        sh,
        "cargo run --quiet -p deployer -- --output json {args...}"
    )
}

/// Runs `command`, keeps its stdout (the JSON events) in `events` while showing it, and turns a
/// non-zero exit into a [`ChildExit`] with the message of the last `error` event.
fn run_events(command: xshell::Cmd<'_>, events: &std::path::Path) -> anyhow::Result<String> {
    let display = command.to_string();
    let output = std::process::Command::from(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {display}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprint!("{stdout}");
    std::fs::write(events, &stdout).with_context(|| format!("writing {}", events.display()))?;
    if output.status.success() {
        return Ok(stdout);
    }
    let message = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "error")
        .filter_map(|event| event["message"].as_str().map(str::to_owned))
        .next_back()
        .unwrap_or_else(|| format!("`{display}` failed"));
    Err(ChildExit {
        code: output.status.code().unwrap_or(1),
        message,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        stage: Stage,
    }

    fn parse(args: &[&str]) -> Result<Stage, clap::Error> {
        Cli::try_parse_from(std::iter::once("ci").chain(args.iter().copied())).map(|c| c.stage)
    }

    #[test]
    fn the_version_is_explicit_else_workspace_and_commit() {
        assert_eq!(
            version_rule(Some("1.4.0"), "0.1.0", "abc1234", true),
            "1.4.0"
        );
        assert_eq!(
            version_rule(Some(" "), "0.1.0", "abc1234", false),
            "0.1.0-abc1234"
        );
        assert_eq!(
            version_rule(None, "0.1.0", "abc1234", false),
            "0.1.0-abc1234"
        );
        assert_eq!(
            version_rule(None, "0.1.0", "abc1234", true),
            "0.1.0-abc1234-dirty"
        );
    }

    #[test]
    fn stages_parse_with_their_environment_and_version() {
        let Ok(Stage::Deploy(args)) = parse(&["deploy", "qa", "--version", "1.2.3"]) else {
            panic!("deploy qa did not parse");
        };
        assert_eq!((args.env, args.env.target()), (Env::Qa, "kubernetes"));
        assert_eq!(args.version.version.as_deref(), Some("1.2.3"));
        assert!(
            matches!(parse(&["smoke", "dev"]), Ok(Stage::Smoke(e)) if e.env.target() == "compose")
        );
        assert!(matches!(parse(&["image"]), Ok(Stage::Image(_))));
        assert!(matches!(parse(&["notify"]), Ok(Stage::Notify)));
        assert!(parse(&["deploy"]).is_err(), "an environment is required");
        assert!(
            parse(&["deploy", "staging"]).is_err(),
            "only dev, qa and prod"
        );
        assert!(parse(&["release"]).is_err());
    }
}
