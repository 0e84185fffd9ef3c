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
mod test;
mod testdb;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "infra-challenge repository automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test: unit, integration (real MySQL/MariaDB), containers, manifests.
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = util::shell()?;
    match cli.task {
        Task::Test(args) => test::run(&sh, &args),
        Task::Bench(args) => bench::run(&sh, &args),
        Task::AirgapImages(args) => airgap::run(&sh, &args),
        Task::Manifests => manifests::check(&sh),
        Task::Monitoring(args) => monitoring::run(&sh, &args),
        Task::Ci(args) => ci::run(&sh, args),
    }
}
