//! Repository automation: `cargo xtask <task>` (see `cargo xtask --help`).
//!
//! Tasks are plain functions; each module owns one task or one group of checks.

mod airgap;
mod bench;
mod ci;
mod containers;
mod image_version;
mod manifests;
mod monitoring;
mod pipeline;
mod pytools;
mod schemathesis;
mod service;
mod setup;
mod test;
mod testdb;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "infra-challenge repository automation")]
struct Cli {
    /// On failure, print where the error came from (a backtrace) after its causes. Also
    /// `XTASK_BACKTRACE=1`; RUST_BACKTRACE alone does not (it is for the programs xtask runs).
    #[arg(long, global = true, env = "XTASK_BACKTRACE", value_parser = clap::builder::BoolishValueParser::new())]
    backtrace: bool,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install and start what the tests and the pipeline's local stages need on this machine
    /// (Debian packages, pinned cargo tools, the Python tools, MariaDB, air-gapped base images).
    Setup(setup::Args),
    /// Run every test: unit, integration (real MySQL/MariaDB), containers, manifests. Runs the part
    /// of `setup` its suites need first (unless --no-setup).
    Test(test::Args),
    /// Run the benchmarks and rewrite docs/BENCHMARKS.md.
    Bench(bench::Args),
    /// Seed the local Docker engine with base images built from Debian packages.
    AirgapImages(airgap::Args),
    /// Only the Kubernetes manifest checks (also part of `test`).
    Manifests,
    /// Only the monitoring checks (also part of `test`); `--write` regenerates the Kubernetes
    /// PrometheusRule from the Prometheus rule files.
    Monitoring(monitoring::Args),
    /// One stage of the CI/CD pipeline (what Jenkins and GitHub Actions run); reports in target/ci/.
    Ci(ci::Args),
}

/// Runs the task; a failure is printed once, as its chain of causes (`error: a: b: c`), with a
/// backtrace only when `--backtrace` / `XTASK_BACKTRACE=1` asks for one, and exits 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.backtrace {
        // SAFETY: no other thread exists yet. anyhow captures a backtrace when this is set.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "1") };
    }
    match run(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if cli.backtrace {
                eprintln!("error: {error:?}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    let sh = util::shell()?;
    match task {
        Task::Setup(args) => setup::run(&sh, &args),
        Task::Test(args) => test::run(&sh, &args),
        Task::Bench(args) => bench::run(&sh, &args),
        Task::AirgapImages(args) => airgap::run(&sh, &args),
        Task::Manifests => manifests::check(&sh),
        Task::Monitoring(args) => monitoring::run(&sh, &args),
        Task::Ci(args) => ci::run(&sh, args),
    }
}
