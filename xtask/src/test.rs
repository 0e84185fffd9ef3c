//! `cargo xtask test`: the one test command.

use std::path::Path;

use anyhow::Context;
use clap::ValueEnum;
use xshell::{Shell, cmd};

use crate::{containers, image_version, manifests, monitoring, setup, testdb, util};

#[derive(clap::Args)]
pub struct Args {
    /// Run only these suites (repeatable). Default: all of them, in the order listed.
    #[arg(long, value_enum)]
    pub only: Vec<Suite>,
    /// Run the rust suite's tests under coverage instrumentation (cargo-llvm-cov with Debian's
    /// llvm-19), writing target/ci/lcov.info as `cargo xtask ci coverage` does, instead of a plain
    /// `cargo test`: coverage measured without running the tests twice (what .ci/run does).
    #[arg(long)]
    pub coverage: bool,
    /// Install and start nothing first: when something the suites need is missing, fail listing all
    /// of it (`cargo xtask setup` provides it). Also `XTASK_NO_SETUP=1`.
    #[arg(long, env = "XTASK_NO_SETUP", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_setup: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// rustfmt, clippy (warnings are errors), the image's default version, unused dependencies.
    Lint,
    /// Unit and integration tests of every crate, against a real MySQL-compatible server, then
    /// schemathesis against the running service.
    Rust,
    /// The image, the Compose stack and the deployer end to end, on the local Docker engine.
    Containers,
    /// Kubernetes manifest checks.
    Manifests,
    /// Prometheus rules and their unit tests, the Alertmanager routing, the Kubernetes monitoring
    /// component (promtool and amtool from Debian's prometheus and prometheus-alertmanager).
    Monitoring,
    /// The Jenkinsfile (parsed by Groovy 2.4, from Debian's `groovy`) and the GitHub Actions
    /// workflow: the same `cargo xtask ci` stages, credentials and approvals in place; yamllint.
    Pipeline,
    /// Only the schemathesis run of the rust suite (not in the default list: rust runs it).
    Schemathesis,
}

pub const ALL: [Suite; 6] = [
    Suite::Lint,
    Suite::Rust,
    Suite::Containers,
    Suite::Manifests,
    Suite::Monitoring,
    Suite::Pipeline,
];

pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    run_with_reports(sh, args, None)
}

/// `run`, with the rust suite's results also written as JUnit XML to `junit` when given (`cargo
/// xtask ci test`): the tests then run under cargo-nextest instead of `cargo test`.
pub fn run_with_reports(sh: &Shell, args: &Args, junit: Option<&Path>) -> anyhow::Result<()> {
    let suites: Vec<Suite> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only.clone()
    };
    // What these suites need from the machine, provided first (or only listed with --no-setup).
    let needs = setup::needs(&suites, args.coverage);
    if args.no_setup {
        setup::refuse_if_missing(sh, &needs, "cargo xtask setup")?;
    } else {
        setup::provide(sh, &needs)?;
    }
    for suite in suites {
        match suite {
            Suite::Lint => lint(sh, None)?,
            Suite::Rust => rust(sh, junit, args.coverage)?,
            Suite::Containers => containers::run(sh)?,
            Suite::Manifests => manifests::check(sh)?,
            Suite::Monitoring => monitoring::check(sh)?,
            Suite::Pipeline => crate::pipeline::check(sh)?,
            Suite::Schemathesis => crate::schemathesis::run(sh, testdb::provide(sh)?.url())?,
        }
    }
    eprintln!("\nall requested suites passed");
    Ok(())
}

/// The lint suite. With `clippy_report`, clippy's diagnostics are also written there as JSON lines
/// (`--message-format=json`, what SonarQube's clippy import reads); warnings fail the suite either way.
pub fn lint(sh: &Shell, clippy_report: Option<&Path>) -> anyhow::Result<()> {
    util::step("cargo fmt --check");
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    util::step("cargo clippy --all-targets -- -D warnings");
    let mut report = String::new();
    // The deployer's end-to-end tests (Docker; a kind cluster) sit behind features; lint them too.
    for selection in [
        &["--workspace"][..],
        &["-p", "deployer", "--features", "e2e,kind-e2e"][..],
    ] {
        let clippy = cmd!(sh, "cargo clippy {selection...} --all-targets");
        match clippy_report {
            None => clippy.args(["--", "-D", "warnings"]).run()?,
            Some(_) => report.push_str(&clippy_json(clippy)?),
        }
    }
    if let Some(path) = clippy_report {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    image_version::check()?;
    // Unused dependencies: each one costs build time and audit surface. A false positive (a crate
    // used only through a macro or a feature) goes to `[package.metadata.cargo-machete] ignored`
    // in that crate's Cargo.toml, with a comment saying why.
    util::step("cargo machete");
    let machete = setup::MACHETE.version;
    anyhow::ensure!(
        cmd!(sh, "cargo machete --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok(),
        "cargo-machete is not installed: `cargo xtask setup` installs it (`cargo install cargo-machete \
         --locked --version {machete}`)"
    );
    // Runs without the CARGO_PKG_* variables `cargo run` set for xtask (see util::shell).
    cmd!(sh, "cargo machete").run()?;
    Ok(())
}

/// clippy with `--message-format=json -D warnings`: the JSON lines on stdout are returned, each
/// diagnostic is shown as rustc renders it, and a warning fails like it does without the report.
fn clippy_json(clippy: xshell::Cmd<'_>) -> anyhow::Result<String> {
    let mut command =
        std::process::Command::from(clippy.args(["--message-format=json", "--", "-D", "warnings"]));
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo clippy")?;
    let json = String::from_utf8_lossy(&output.stdout).into_owned();
    for line in json.lines() {
        let message = serde_json::from_str::<serde_json::Value>(line).ok();
        if let Some(rendered) = message
            .as_ref()
            .and_then(|m| m.pointer("/message/rendered"))
            .and_then(|r| r.as_str())
        {
            eprint!("{rendered}");
        }
    }
    anyhow::ensure!(
        output.status.success(),
        "cargo clippy found problems (shown above; warnings are errors)"
    );
    Ok(json)
}

fn rust(sh: &Shell, junit: Option<&Path>, coverage: bool) -> anyhow::Result<()> {
    let db = testdb::provide(sh)?;
    let _env = sh.push_env("TEST_DATABASE_URL", db.url());
    match (junit, coverage) {
        (_, true) => eprintln!("{}", crate::ci::coverage_in_test_run(sh)?),
        (None, false) => {
            util::step("cargo test --workspace --exclude e2e");
            cmd!(sh, "cargo test --workspace --exclude e2e --no-fail-fast").run()?;
        }
        (Some(path), false) => nextest_with_junit(sh, path)?,
    }
    crate::schemathesis::run(sh, db.url())?;
    Ok(())
}

/// The same tests under cargo-nextest's `ci` profile (.config/nextest.toml), which writes JUnit XML
/// to `target/nextest/ci/junit.xml`; copied to `junit`. nextest does not run doctests: `cargo test
/// --doc` does.
fn nextest_with_junit(sh: &Shell, junit: &Path) -> anyhow::Result<()> {
    util::step("cargo nextest run --profile ci --workspace --exclude e2e");
    anyhow::ensure!(
        cmd!(sh, "cargo nextest --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok(),
        "cargo-nextest is not installed: `cargo install cargo-nextest --locked` (JUnit XML for the CI)"
    );
    let tests = cmd!(
        sh,
        "cargo nextest run --profile ci --workspace --exclude e2e --no-fail-fast"
    )
    .run();
    // The report exists after failing tests too, and is what the CI shows about them.
    let written = util::project_root().join("target/nextest/ci/junit.xml");
    if written.is_file() {
        std::fs::copy(&written, junit)
            .with_context(|| format!("copying {} to {}", written.display(), junit.display()))?;
    }
    tests.context("tests failed (see target/ci/junit.xml)")?;
    util::step("cargo test --doc --workspace --exclude e2e");
    cmd!(sh, "cargo test --doc --workspace --exclude e2e").run()?;
    Ok(())
}
