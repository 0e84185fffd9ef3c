//! The `containers` suite of `cargo xtask test`: the Dockerfile's linters, then the image, the Compose
//! stack and the deployer end to end on the local Docker engine.
//!
//! The service image is built once here (as [`E2E_IMAGE`]) and handed to the test processes through
//! `E2E_APP_IMAGE`, with the database image in `E2E_DB_IMAGE` and the reverse proxy's in
//! `E2E_PROXY_IMAGE` (the upstream images, or the air-gapped stand-ins where no registry answers).
//!
//! The deployer's tests upgrade between releases, and the deployer checks that a release's
//! containers answer `/version` with the release's version: one image tagged twice no longer
//! deploys as two releases. So two real releases are built from the same tree with their own
//! `VERSION` ([`RELEASE_VERSIONS`], tagged in [`E2E_RELEASE_REPOSITORY`] and handed over as
//! `E2E_RELEASE_REPOSITORY`). The dependency layer is shared with [`E2E_IMAGE`]; only the service
//! crate is compiled again for each version.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{airgap, pytools, util};

/// The tag the container tests run.
pub const E2E_IMAGE: &str = "infra-challenge:e2e";
/// The repository of the releases the deployer's tests and the deploy benchmarks upgrade between.
pub const E2E_RELEASE_REPOSITORY: &str = "infra-challenge-e2e-release";
/// The releases built there (the tests' V1 and V2).
pub const RELEASE_VERSIONS: [&str; 2] = ["1.0.0", "2.0.0"];

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    lint_dockerfile(sh)?;
    util::step("base images (seeded from Debian packages when no registry answers)");
    let images = airgap::ensure_images(sh)?;
    util::step(&format!("docker build --tag {E2E_IMAGE}"));
    build_image(sh, &util::project_root(), E2E_IMAGE, &[])?;
    build_releases(sh)?;

    let _app = sh.push_env("E2E_APP_IMAGE", E2E_IMAGE);
    let _releases = sh.push_env("E2E_RELEASE_REPOSITORY", E2E_RELEASE_REPOSITORY);
    let _db = sh.push_env("E2E_DB_IMAGE", &images.db);
    let _proxy = sh.push_env("E2E_PROXY_IMAGE", &images.proxy);
    // Each failing assertion of these tests names its step; a backtrace of the test harness after
    // it only pushes that message out of a CI log's tail.
    let _backtrace = sh.push_env("RUST_BACKTRACE", "0");
    // Both test sets run even when the first fails, so one run reports every failure.
    util::step("cargo test -p e2e (image, Compose stack, replicas)");
    let e2e = cmd!(sh, "cargo test -p e2e --no-fail-fast").run();
    util::step("cargo test -p deployer --features e2e");
    let deployer = cmd!(sh, "cargo test -p deployer --features e2e --no-fail-fast").run();
    e2e.context("container tests (crates/e2e) failed")?;
    deployer.context("deployer end-to-end tests failed")?;
    Ok(())
}

/// hadolint and checkov's dockerfile framework, from the pinned tools virtualenv.
fn lint_dockerfile(sh: &Shell) -> anyhow::Result<()> {
    hadolint(sh, None)?;
    checkov(sh)
}

/// The Dockerfiles this repository builds.
const DOCKERFILES: [&str; 5] = [
    "Dockerfile",
    "xtask/airgap/mariadb/Dockerfile",
    "xtask/airgap/haproxy/Dockerfile",
    "xtask/airgap/prometheus/Dockerfile",
    "xtask/airgap/alertmanager/Dockerfile",
];

/// hadolint over the Dockerfiles; with `report`, its findings are also written there in SonarQube's
/// external-issues format (`cargo xtask ci`).
pub fn hadolint(sh: &Shell, report: Option<&Path>) -> anyhow::Result<()> {
    util::step("hadolint Dockerfile");
    let hadolint = pytools::tool(sh, "hadolint")?;
    if let Some(report) = report {
        let issues = cmd!(
            sh,
            "{hadolint} --no-fail --format sonarqube {DOCKERFILES...}"
        )
        .quiet()
        .read()?;
        std::fs::write(report, issues).with_context(|| format!("writing {}", report.display()))?;
    }
    cmd!(sh, "{hadolint} {DOCKERFILES...}").run()?;
    Ok(())
}

/// checkov's dockerfile framework over the Dockerfiles.
pub fn checkov(sh: &Shell) -> anyhow::Result<()> {
    util::step("checkov --framework dockerfile");
    let checkov = pytools::tool(sh, "checkov")?;
    let files: Vec<&str> = DOCKERFILES.iter().flat_map(|f| ["--file", f]).collect();
    cmd!(
        sh,
        "{checkov} --quiet --compact --skip-download --framework dockerfile {files...}"
    )
    .run()?;
    Ok(())
}

/// Builds [`RELEASE_VERSIONS`] of the service from this tree as `E2E_RELEASE_REPOSITORY:version`,
/// saying how long each took (the build cache makes a build of an unchanged tree quick).
pub fn build_releases(sh: &Shell) -> anyhow::Result<()> {
    let root = util::project_root();
    for version in RELEASE_VERSIONS {
        let tag = format!("{E2E_RELEASE_REPOSITORY}:{version}");
        util::step(&format!(
            "docker build --build-arg VERSION={version} --tag {tag}"
        ));
        let started = std::time::Instant::now();
        build_release(sh, &root, &tag, version, &[])?;
        util::step(&format!(
            "built {tag} in {:.0} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// `docker build` of the service image from `context` with the version, revision and date build
/// arguments taken from this repository.
///
/// The date is the commit's, not the wall clock's: the same commit builds the same image, and the
/// build cache keeps working between runs.
pub fn build_image(sh: &Shell, context: &Path, tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    // The workspace version, which xtask shares with `challenge` (and the deployer).
    build_release(sh, context, tag, env!("CARGO_PKG_VERSION"), extra)
}

/// [`build_image`] with the version the image says it is (`challenge version`, `GET /version`).
pub fn build_release(
    sh: &Shell,
    context: &Path,
    tag: &str,
    version: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    let root = util::project_root();
    let sha = cmd!(sh, "git -C {root} rev-parse HEAD")
        .quiet()
        .read()
        .context("git rev-parse HEAD")?;
    let date = cmd!(
        sh,
        "git -C {root} log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ"
    )
    .env("TZ", "UTC")
    .quiet()
    .read()?;
    let args = [
        format!("VERSION={version}"),
        format!("GIT_SHA={sha}"),
        format!("BUILD_DATE={date}"),
    ];
    let build_args: Vec<&str> = args
        .iter()
        .flat_map(|a| ["--build-arg", a.as_str()])
        .collect();
    cmd!(
        sh,
        "docker build {build_args...} {extra...} --tag {tag} {context}"
    )
    .run()
    .with_context(|| format!("building {tag}"))?;
    Ok(())
}
