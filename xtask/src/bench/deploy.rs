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

use crate::containers::{self, E2E_RELEASE_REPOSITORY, RELEASE_VERSIONS};
use crate::{airgap, util};

/// Database images tried in order: what users run, then the air-gapped stand-in.
const DB_IMAGES: [&str; 2] = [airgap::DB_UPSTREAM, airgap::DB_STANDIN];
/// Reverse proxy images tried in order, likewise.
const PROXY_IMAGES: [&str; 2] = [airgap::PROXY_UPSTREAM, airgap::PROXY_STANDIN];
/// Repetitions of each warm measurement (the median is reported).
const ROUNDS: usize = 3;
/// What the original spent in `sleep` on its Kubernetes path (seconds), checking nothing.
const ORIGINAL_SLEEPS_S: f64 = 31.0;
/// The releases deployed: real builds whose `/version` says so (the deployer checks it), the
/// ones the container tests build.
pub(super) const V1: &str = RELEASE_VERSIONS[0];
pub(super) const V2: &str = RELEASE_VERSIONS[1];

/// A throwaway deployer environment (its own Compose project, state directory, port and image
/// tags); `Drop` removes its containers, volume and image tags. The proxy part runs in one too.
pub(super) struct Environment<'a> {
    sh: &'a Shell,
    /// Holds the state directory; removed when the bench ends.
    _temp: xshell::TempDir,
    deployer: PathBuf,
    state: PathBuf,
    env: String,
    repository: String,
    /// The published port (the proxy's).
    pub port: u16,
    /// The repository the releases are built in ([`E2E_RELEASE_REPOSITORY`]).
    pub app_image: String,
    pub db_image: String,
    /// Passed as DEPLOYER_PROXY_IMAGE: the deployer reads the proxy image from there.
    pub proxy_image: String,
}

impl<'a> Environment<'a> {
    /// Finds the images, builds the releases `V1` and `V2` of the current tree (quick when the
    /// build cache has them) and the deployer (release), and tags the releases in a repository of
    /// its own. `name` tells environments of different parts apart.
    pub(super) fn create(sh: &'a Shell, name: &str) -> anyhow::Result<Environment<'a>> {
        let db_image = local_image(sh, "DB_IMAGE", DB_IMAGES)?;
        let proxy_image = local_image(sh, "PROXY_IMAGE", PROXY_IMAGES)?;
        containers::build_releases(sh)?;
        let app_image = E2E_RELEASE_REPOSITORY.to_owned();
        util::step("building the deployer");
        cmd!(sh, "cargo build --quiet --release --package deployer").run()?;
        let deployer = util::project_root().join("target/release/deployer");

        let port = util::free_port()?;
        let temp = sh.create_temp_dir()?;
        let state = temp.path().join("state");
        let pid = std::process::id();
        let environment = Environment {
            sh,
            _temp: temp,
            deployer,
            state,
            env: format!("bench-{name}-{pid}"),
            repository: format!("deployer-bench-{name}-{pid}"),
            port,
            app_image,
            db_image,
            proxy_image,
        };
        // Tagged once `environment` exists, so its `Drop` removes the tags even when this fails.
        for version in [V1, V2] {
            let image = format!("{}:{version}", environment.app_image);
            let tag = environment.image(version);
            cmd!(sh, "docker tag {image} {tag}").quiet().run()?;
        }
        Ok(environment)
    }

    /// The app image of `version`, as the deployer names it.
    pub(super) fn image(&self, version: &str) -> String {
        format!("{}:{version}", self.repository)
    }

    pub(super) fn deployer(&self, args: &[&str]) -> xshell::Cmd<'_> {
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

    /// Seconds from starting the deployer with `args` to its successful return; a failure carries
    /// the end of what it printed (the environment is gone by the time anyone could look).
    pub(super) fn timed(&self, args: &[&str]) -> anyhow::Result<f64> {
        let started = Instant::now();
        let output = self.deployer(args).ignore_status().output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr).into_owned()
                + &String::from_utf8_lossy(&output.stdout);
            let lines: Vec<&str> = text.lines().collect();
            bail!(
                "`deployer {}` failed ({}):\n{}",
                args.join(" "),
                output.status,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        Ok(seconds)
    }

    /// Seconds from starting `deployer deploy` to its return with the release healthy.
    pub(super) fn deploy(&self, version: &str) -> anyhow::Result<f64> {
        self.timed(&[
            "deploy",
            "--target",
            "compose",
            "--version",
            version,
            "--yes",
            "--timeout",
            "180s",
        ])
        .with_context(|| format!("deploying {version}"))
    }

    /// The ids of the running containers of a Compose `service` of this environment.
    pub(super) fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let project = format!(
            "label=com.docker.compose.project=infra-challenge-{}",
            self.env
        );
        let service = format!("label=com.docker.compose.service={service}");
        let ids = cmd!(
            self.sh,
            "docker ps --quiet --filter {project} --filter {service}"
        )
        .quiet()
        .read()?;
        Ok(ids.split_whitespace().map(str::to_owned).collect())
    }

    /// The running app containers (a release runs the deployer's default replica count), at least
    /// one.
    pub(super) fn app_containers(&self) -> anyhow::Result<Vec<String>> {
        let ids = self.containers("app")?;
        if ids.is_empty() {
            bail!("no app container running");
        }
        Ok(ids)
    }
}

impl Drop for Environment<'_> {
    fn drop(&mut self) {
        let _ = self
            .deployer(&["down", "--purge-data", "--yes"])
            .ignore_stdout()
            .ignore_stderr()
            .run();
        for version in [V1, V2] {
            let tag = self.image(version);
            let _ = cmd!(self.sh, "docker image rm {tag}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

/// The Compose the deployer drives: `docker-compose <version>` or `docker compose <version>`.
pub(super) fn compose_flavour(sh: &Shell) -> String {
    cmd!(sh, "docker-compose version --short")
        .quiet()
        .read()
        .map(|v| format!("docker-compose {v}"))
        .or_else(|_| {
            cmd!(sh, "docker compose version --short")
                .quiet()
                .read()
                .map(|v| format!("docker compose {v}"))
        })
        .unwrap_or_else(|_| "unknown Compose".into())
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
    let bench = Environment::create(sh, "deploy")?;

    util::step("bench: first deploy (empty database volume)");
    let first = bench.deploy(V1)?;

    util::step("bench: deploy on a warm database (app container only)");
    let mut warm = Vec::new();
    for _ in 0..ROUNDS {
        let ids = bench.app_containers()?;
        cmd!(sh, "docker rm --force {ids...}")
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

    let flavour = compose_flavour(sh);
    let mut out = String::new();
    writeln!(out, "## Deploy with `deployer` (Docker Compose)\n")?;
    writeln!(
        out,
        "{}; {flavour}; app images `{}:{V1}` and `:{V2}` (release builds of the tree), database `{}`, proxy `{}`. Wall-clock time of `deployer deploy --target \
         compose --version V --yes` (release build), from the command's start to its return with the release \
         healthy: Docker's healthcheck passed (`challenge healthcheck`, first run one 5 s interval after the \
         container starts) and the smoke test through the published port passed. Warm rows: median of {ROUNDS} \
         runs.\n",
        super::machine(sh),
        bench.app_image,
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
