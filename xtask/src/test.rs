//! `cargo xtask test`: the one test command.

use clap::ValueEnum;
use xshell::{Shell, cmd};

use crate::{containers, image_version, manifests, monitoring, testdb, util};

#[derive(clap::Args)]
pub struct Args {
    /// Run only these suites (repeatable). Default: all of them, in the order listed.
    #[arg(long, value_enum)]
    only: Vec<Suite>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
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

const ALL: [Suite; 6] = [
    Suite::Lint,
    Suite::Rust,
    Suite::Containers,
    Suite::Manifests,
    Suite::Monitoring,
    Suite::Pipeline,
];

pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    let suites: Vec<Suite> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only.clone()
    };
    for suite in suites {
        match suite {
            Suite::Lint => lint(sh)?,
            Suite::Rust => rust(sh)?,
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

fn lint(sh: &Shell) -> anyhow::Result<()> {
    util::step("cargo fmt --check");
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    util::step("cargo clippy --all-targets -- -D warnings");
    cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?;
    // The deployer's Docker end-to-end tests sit behind a feature; lint them too.
    cmd!(
        sh,
        "cargo clippy -p deployer --all-targets --features e2e -- -D warnings"
    )
    .run()?;
    image_version::check()?;
    // Unused dependencies: each one costs build time and audit surface. A false positive (a crate
    // used only through a macro or a feature) goes to `[package.metadata.cargo-machete] ignored`
    // in that crate's Cargo.toml, with a comment saying why.
    util::step("cargo machete");
    const MACHETE: &str = "0.9.2";
    anyhow::ensure!(
        cmd!(sh, "cargo machete --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok(),
        "cargo-machete is not installed: `cargo install cargo-machete --locked --version {MACHETE}` \
         (what .ci/run does)"
    );
    cmd!(sh, "cargo machete").run()?;
    Ok(())
}

fn rust(sh: &Shell) -> anyhow::Result<()> {
    let db = testdb::provide(sh)?;
    util::step("cargo test --workspace --exclude e2e");
    let _env = sh.push_env("TEST_DATABASE_URL", db.url());
    cmd!(sh, "cargo test --workspace --exclude e2e --no-fail-fast").run()?;
    crate::schemathesis::run(sh, db.url())?;
    Ok(())
}
