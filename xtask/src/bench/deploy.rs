//! How long `deployer deploy --target compose` takes to bring a prebuilt image to healthy, next to
//! the 31 s of fixed `sleep`s the original `build.py` spent on Kubernetes without checking anything.
//!
//! Runs the deployer binary against the local engine in a throwaway environment (its own Compose
//! project, state directory, port and image tags), removed afterwards even when a step fails.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::{airgap, util};

/// The service image measured: the one the container tests build from the current tree.
const DEFAULT_APP_IMAGE: &str = "infra-challenge:e2e";
/// Database images tried in order: what users run, then the air-gapped stand-in.
const DB_IMAGES: [&str; 2] = [airgap::DB_UPSTREAM, airgap::DB_STANDIN];
/// Reverse proxy images tried in order, likewise.
const PROXY_IMAGES: [&str; 2] = [airgap::PROXY_UPSTREAM, airgap::PROXY_STANDIN];
/// Repetitions of each warm measurement (the median is reported).
const ROUNDS: usize = 3;
/// What the original spent in `sleep` on its Kubernetes path (seconds), checking nothing.
const ORIGINAL_SLEEPS_S: f64 = 31.0;
const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// The throwaway environment; `Drop` removes its containers, volume and image tags.
struct Bench<'a> {
    sh: &'a Shell,
    /// Holds the state directory; removed when the bench ends.
    _temp: xshell::TempDir,
    deployer: PathBuf,
    state: PathBuf,
    env: String,
    repository: String,
    port: u16,
    db_image: String,
    /// Passed as DEPLOYER_PROXY_IMAGE: the deployer reads the proxy image from there.
    proxy_image: String,
}

impl Bench<'_> {
    fn deployer(&self, args: &[&str]) -> xshell::Cmd<'_> {
        let (bin, state, env, repo, db) = (
            &self.deployer,
            &self.state,
            &self.env,
            &self.repository,
            &self.db_image,
        );
        let port = self.port.to_string();
        cmd!(
            self.sh,
            "{bin} --state-dir {state} --env {env} --port {port} --repository {repo} --db-image {db} {args...}"
        )
        .env("DEPLOYER_PROXY_IMAGE", &self.proxy_image)
        .quiet()
    }

    /// Seconds from starting `deployer deploy` to its return with the release healthy.
    fn deploy(&self, version: &str) -> anyhow::Result<f64> {
        let started = Instant::now();
        self.deployer(&[
            "deploy",
            "--target",
            "compose",
            "--version",
            version,
            "--yes",
            "--timeout",
            "180s",
        ])
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .with_context(|| format!("deploying {version} (rerun by hand to see why)"))?;
        Ok(started.elapsed().as_secs_f64())
    }

    fn app_container(&self) -> anyhow::Result<String> {
        let label = format!(
            "label=com.docker.compose.project=infra-challenge-{}",
            self.env
        );
        let id = cmd!(
            self.sh,
            "docker ps --quiet --filter {label} --filter label=com.docker.compose.service=app"
        )
        .quiet()
        .read()?;
        anyhow::ensure!(!id.trim().is_empty(), "no app container running");
        Ok(id.trim().to_owned())
    }
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let _ = self
            .deployer(&["down", "--purge-data", "--yes"])
            .ignore_stdout()
            .ignore_stderr()
            .run();
        for version in [V1, V2] {
            let tag = format!("{}:{version}", self.repository);
            let _ = cmd!(self.sh, "docker image rm {tag}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `variable` when set, else the first of `candidates` (the upstream image, the air-gapped stand-in) the
/// local engine has.
fn local_image(sh: &Shell, variable: &str, candidates: [&str; 2]) -> anyhow::Result<String> {
    if let Some(image) = std::env::var(variable)
        .ok()
        .filter(|i| !i.trim().is_empty())
    {
        return Ok(image);
    }
    for image in candidates {
        if cmd!(sh, "docker image inspect {image}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            return Ok(image.to_owned());
        }
    }
    bail!(
        "none of {} is in the local engine: pull one, or seed the stand-in with `cargo xtask \
         airgap-images`, or set {variable}",
        candidates.join(", ")
    )
}

pub fn measure(sh: &Shell) -> anyhow::Result<String> {
    let db_image = local_image(sh, "DB_IMAGE", DB_IMAGES)?;
    let proxy_image = local_image(sh, "PROXY_IMAGE", PROXY_IMAGES)?;
    let app_image =
        std::env::var("BENCH_APP_IMAGE").unwrap_or_else(|_| DEFAULT_APP_IMAGE.to_owned());
    if cmd!(sh, "docker image inspect {app_image}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        bail!(
            "{app_image} is not in the local engine: build it first (`cargo xtask test --only containers` does), \
             or point BENCH_APP_IMAGE at an image of the service"
        );
    }
    util::step("building the deployer");
    cmd!(sh, "cargo build --quiet --release --package deployer").run()?;
    let deployer = util::project_root().join("target/release/deployer");

    let port = util::free_port()?;
    let temp = sh.create_temp_dir()?;
    let state = temp.path().join("state");
    let bench = Bench {
        sh,
        _temp: temp,
        deployer,
        state,
        env: format!("bench-{}", std::process::id()),
        repository: format!("deployer-bench-{}", std::process::id()),
        port,
        db_image,
        proxy_image,
    };
    for version in [V1, V2] {
        let tag = format!("{}:{version}", bench.repository);
        cmd!(sh, "docker tag {app_image} {tag}").quiet().run()?;
    }

    util::step("bench: first deploy (empty database volume)");
    let first = bench.deploy(V1)?;

    util::step("bench: deploy on a warm database (app container only)");
    let mut warm = Vec::new();
    for _ in 0..ROUNDS {
        let id = bench.app_container()?;
        cmd!(sh, "docker rm --force {id}")
            .quiet()
            .ignore_stdout()
            .run()?;
        warm.push(bench.deploy(V1)?);
    }

    util::step("bench: version upgrades (V1 -> V2 -> V1 ...)");
    let mut upgrades = Vec::new();
    for round in 0..ROUNDS {
        upgrades.push(bench.deploy(if round % 2 == 0 { V2 } else { V1 })?);
    }

    util::step("bench: deploy after `down` (database restarts on its kept volume)");
    bench
        .deployer(&["down"])
        .ignore_stdout()
        .ignore_stderr()
        .run()?;
    let after_down = bench.deploy(V1)?;

    let flavour = cmd!(sh, "docker-compose version --short")
        .quiet()
        .read()
        .map(|v| format!("docker-compose {v}"))
        .or_else(|_| {
            cmd!(sh, "docker compose version --short")
                .quiet()
                .read()
                .map(|v| format!("docker compose {v}"))
        })
        .unwrap_or_else(|_| "unknown Compose".into());
    let mut out = String::new();
    writeln!(out, "## Deploy with `deployer` (Docker Compose)\n")?;
    writeln!(
        out,
        "{}; {flavour}; app image `{app_image}`, database `{}`, proxy `{}`. Wall-clock time of `deployer deploy --target \
         compose --version V --yes` (release build), from the command's start to its return with the release \
         healthy: Docker's healthcheck passed (`challenge healthcheck`, first run one 5 s interval after the \
         container starts) and the smoke test through the published port passed. Warm rows: median of {ROUNDS} \
         runs.\n",
        super::machine(sh),
        bench.db_image,
        bench.proxy_image
    )?;
    writeln!(out, "| deploy | time (s) | runs (s) | goal |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    writeln!(
        out,
        "| prebuilt image to healthy, warm database (app container only) | {:.1} | {} | <= 10 s |",
        median(&warm),
        list(&warm)
    )?;
    writeln!(
        out,
        "| version upgrade (V1 -> V2, database running) | {:.1} | {} | <= 10 s |",
        median(&upgrades),
        list(&upgrades)
    )?;
    writeln!(
        out,
        "| first deploy, empty database volume (initialisation included) | {first:.1} | {first:.1} | |"
    )?;
    writeln!(
        out,
        "| after `down`, database restarting on its kept volume | {after_down:.1} | {after_down:.1} | |"
    )?;
    writeln!(
        out,
        "| original `build.py` on Kubernetes: fixed `sleep`s, nothing checked | {ORIGINAL_SLEEPS_S:.0} | | |"
    )?;
    Ok(out)
}
