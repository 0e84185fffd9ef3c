//! Image benchmarks for docs/BENCHMARKS.md: runtime image size, cold build, rebuild after editing one
//! service source file, and Compose `up` to healthy.
//!
//! The builds run on a copy of the committed tree (`git archive HEAD`) in a scratch directory, so the
//! edit that triggers the rebuild never touches the working tree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{airgap, containers, util};

const TAG: &str = "infra-challenge:bench";
/// The service file the rebuild edits (any file of the service would do: the dependency layer must
/// stay cached, only the service's own compile and link are redone).
const EDITED: &str = "crates/challenge/src/main.rs";
const SIZE_GOAL_MB: f64 = 40.0;
const REBUILD_GOAL_PERCENT: f64 = 35.0;

/// Runs the measurements and returns the Markdown section.
pub fn measure(sh: &Shell) -> anyhow::Result<String> {
    util::require_program(
        "docker-compose",
        "install Docker Compose (Debian package `docker-compose`)",
    )?;
    let images = airgap::ensure_images(sh)?;
    let context = Scratch::create("bench-context")?;
    let archive = context.path.join("head.tar");
    cmd!(sh, "git archive --format=tar --output {archive} HEAD").run()?;
    let tree = context.path.join("tree");
    std::fs::create_dir_all(&tree)?;
    cmd!(sh, "tar -xf {archive} -C {tree}").run()?;
    let _image = ImageGuard(TAG);

    util::step("bench: cold image build (docker build --no-cache)");
    let cold = timed(|| build(sh, &tree, &["--no-cache"]))?;
    let size_mb = image_size_mb(sh, TAG)?;

    util::step(&format!("bench: rebuild after editing {EDITED}"));
    let edited = tree.join(EDITED);
    let mut source =
        std::fs::read_to_string(&edited).with_context(|| format!("reading {EDITED}"))?;
    source.push_str("\n// benchmark edit: forces the service to be recompiled\n");
    std::fs::write(&edited, source)?;
    let rebuild = timed(|| build(sh, &tree, &[]))?;
    let ratio = 100.0 * rebuild.as_secs_f64() / cold.as_secs_f64();

    util::step("bench: Compose up to healthy");
    let up = up_to_healthy(sh, &images)?;

    let nproc = cmd!(sh, "nproc")
        .quiet()
        .read()
        .unwrap_or_else(|_| "?".into());
    let engine = cmd!(sh, "docker version --format")
        .arg("{{.Server.Version}}")
        .quiet()
        .read()?;
    let mut md = String::new();
    writeln!(md, "## Container image\n")?;
    writeln!(md, "| measure | value | goal |")?;
    writeln!(md, "| --- | --- | --- |")?;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    writeln!(
        md,
        "| runtime image size | {size_mb:.1} MB | <= {SIZE_GOAL_MB} MB ({}) |",
        verdict(size_mb <= SIZE_GOAL_MB)
    )?;
    writeln!(
        md,
        "| cold build (`docker build --no-cache`) | {:.0} s | |",
        cold.as_secs_f64()
    )?;
    writeln!(
        md,
        "| rebuild after editing `{EDITED}` | {:.0} s ({ratio:.0} % of cold) | <= {REBUILD_GOAL_PERCENT} % ({}) |",
        rebuild.as_secs_f64(),
        verdict(ratio <= REBUILD_GOAL_PERCENT)
    )?;
    writeln!(
        md,
        "| Compose `up -d` to app `healthy` (fresh volume) | {:.1} s | |",
        up.as_secs_f64()
    )?;
    writeln!(
        md,
        "\n{nproc} CPUs, Docker Engine {engine}, `docker build` as the engine runs it; database image \
         `{}`, proxy image `{}`. Up to healthy includes the database's first initialisation and is \
         rounded up to the app's healthcheck interval in compose.yaml (5 s).",
        images.db, images.proxy
    )?;
    Ok(md)
}

fn build(sh: &Shell, tree: &Path, extra: &[&str]) -> anyhow::Result<()> {
    containers::build_image(sh, tree, TAG, extra)
}

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn image_size_mb(sh: &Shell, image: &str) -> anyhow::Result<f64> {
    let bytes = cmd!(sh, "docker image inspect --format")
        .args(["{{.Size}}", image])
        .quiet()
        .read()?;
    let bytes: f64 = bytes
        .trim()
        .parse()
        .with_context(|| format!("image size {bytes:?}"))?;
    Ok(bytes / 1e6)
}

/// `up -d` of deploy/compose on a fresh project until the app container reports healthy.
fn up_to_healthy(sh: &Shell, images: &airgap::StackImages) -> anyhow::Result<Duration> {
    let secrets = Scratch::create("bench-secrets")?;
    cmd!(sh, "chmod 0700").arg(&secrets.path).run()?;
    for name in ["db_password", "db_root_password"] {
        let path = secrets.path.join(name);
        std::fs::write(&path, format!("bench-{name}-{}", std::process::id()))?;
        // Readable by the app's uid 65532 through the bind mount; the directory keeps others out.
        cmd!(sh, "chmod 0644 {path}").run()?;
    }
    let project = format!("bench{}", std::process::id());
    let file = util::project_root().join("deploy/compose/compose.yaml");
    let port = util::free_port()?;
    let (image, tag) = TAG.split_once(':').context("tag")?;
    let env: Vec<(&str, String)> = vec![
        ("APP_IMAGE", image.to_owned()),
        ("APP_VERSION", tag.to_owned()),
        ("DB_IMAGE", images.db.clone()),
        ("PROXY_IMAGE", images.proxy.clone()),
        ("APP_PORT", port.to_string()),
        ("SECRETS_DIR", secrets.path.display().to_string()),
    ];
    let _env: Vec<_> = env
        .iter()
        .map(|(key, value)| sh.push_env(key, value))
        .collect();
    // Removes the project also when the measurement fails; it needs the same variables to interpolate.
    let _down = ComposeDown {
        project: project.clone(),
        file: file.clone(),
        env: env.clone(),
    };
    let start = Instant::now();
    cmd!(sh, "docker-compose -p {project} -f {file} up -d")
        .quiet()
        .run()?;
    let app = cmd!(sh, "docker-compose -p {project} -f {file} ps -q app")
        .quiet()
        .read()?;
    let deadline = start + Duration::from_secs(300);
    loop {
        let status = cmd!(sh, "docker inspect --format")
            .args(["{{.State.Health.Status}}", &app])
            .quiet()
            .read()?;
        if status == "healthy" {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the app did not turn healthy within 300 s ({status})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct ComposeDown {
    project: String,
    file: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let down = std::process::Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(["down", "-v", "--timeout", "5"])
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .output();
        if !down.is_ok_and(|out| out.status.success()) {
            eprintln!(
                "warning: `docker-compose -p {} down -v` failed",
                self.project
            );
        }
    }
}

struct ImageGuard(&'static str);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", "-f", self.0])
            .output();
    }
}

/// A scratch directory under the system's temporary directory, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(prefix: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("infra-challenge-{prefix}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
