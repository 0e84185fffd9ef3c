//! `cargo xtask airgap-images`: base image stand-ins built from Debian packages
//! (docs/ARCHITECTURE.md, "Air-gapped builds").
//!
//! Machines without a container registry still build the image and run the Compose stack: the engine is
//! seeded with a Debian base, a Rust builder and a distroless-like runtime under the names the
//! `Dockerfile` uses (read from its `ARG` defaults, so the names live in one place), and with stand-ins
//! under honest local names built from Debian packages by a Dockerfile each under `xtask/airgap/`
//! ([`STANDINS`]): MariaDB 10.11 for the database (passed to Compose and the tests as `DB_IMAGE`),
//! HAProxy 2.6 for the reverse proxy in front of the service (`PROXY_IMAGE`), and Prometheus and
//! Alertmanager for the Compose `observability` profile (`PROMETHEUS_IMAGE`, `ALERTMANAGER_IMAGE`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::util;

/// The database stand-in's name; what `DB_IMAGE` is set to where `mysql:8.4` cannot be pulled.
pub const DB_STANDIN: &str = "infra-challenge/mariadb:10.11";
/// The database image users run (docs/ARCHITECTURE.md, "Names"), pulled where a registry answers.
pub const DB_UPSTREAM: &str = "mysql:8.4";
/// The reverse proxy stand-in's name; what `PROXY_IMAGE` is set to where `haproxy:2.8` cannot be pulled.
pub const PROXY_STANDIN: &str = "infra-challenge/haproxy:2.6";
/// The reverse proxy image users run (deploy/compose/compose.yaml's default).
pub const PROXY_UPSTREAM: &str = "haproxy:2.8";
/// The monitoring stand-ins' names: what `PROMETHEUS_IMAGE` and `ALERTMANAGER_IMAGE` are set to where the
/// upstream images (deploy/compose/compose.yaml's defaults) cannot be pulled.
pub const PROMETHEUS_STANDIN: &str = "infra-challenge/prometheus:2.42";
pub const ALERTMANAGER_STANDIN: &str = "infra-challenge/alertmanager:0.25";
const PROMETHEUS_UPSTREAM: &str = "prom/prometheus:v2.53.0";
const ALERTMANAGER_UPSTREAM: &str = "prom/alertmanager:v0.27.0";

/// An image built by `docker build` from a Dockerfile under `xtask/airgap/` on top of [`DEBIAN_IMAGE`].
struct StandIn {
    /// The local name it is tagged with.
    image: &'static str,
    /// The image it stands in for.
    upstream: &'static str,
    /// Its build context, relative to the repository root.
    context: &'static str,
}

/// Every Dockerfile stand-in: the Compose stack's (database, proxy), then the monitoring profile's.
const STANDINS: [StandIn; 4] = [
    StandIn {
        image: DB_STANDIN,
        upstream: DB_UPSTREAM,
        context: "xtask/airgap/mariadb",
    },
    StandIn {
        image: PROXY_STANDIN,
        upstream: PROXY_UPSTREAM,
        context: "xtask/airgap/haproxy",
    },
    StandIn {
        image: PROMETHEUS_STANDIN,
        upstream: PROMETHEUS_UPSTREAM,
        context: "xtask/airgap/prometheus",
    },
    StandIn {
        image: ALERTMANAGER_STANDIN,
        upstream: ALERTMANAGER_UPSTREAM,
        context: "xtask/airgap/alertmanager",
    },
];
/// The Debian base the stand-ins are built on (their Dockerfiles' `BASE_IMAGE` default).
const DEBIAN_IMAGE: &str = "debian:bookworm-slim";
const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// What a distroless `cc` image holds, minus what a Rust binary using rustls never loads.
const RUNTIME_PACKAGES: &[&str] = &["libc6", "libgcc-s1", "ca-certificates", "tzdata", "netbase"];
/// What the official `rust:*-slim` images add to Debian to link Rust programs.
const BUILDER_PACKAGES: &[&str] = &["gcc", "libc6-dev", "pkg-config", "ca-certificates"];

#[derive(clap::Args)]
pub struct Args {
    /// Rebuild images that are already present.
    #[arg(long)]
    force: bool,
    /// Do nothing when a registry answers (the real base images can be pulled).
    #[arg(long)]
    if_offline: bool,
}

impl Args {
    /// `--if-offline`, what `cargo xtask setup` runs.
    pub fn if_offline() -> Self {
        Self {
            force: false,
            if_offline: true,
        }
    }
}

/// The base images the Dockerfile builds from, as named by its `ARG` defaults.
pub struct BaseImages {
    pub builder: String,
    pub runtime: String,
}

impl BaseImages {
    pub fn from_dockerfile() -> anyhow::Result<Self> {
        let path = util::project_root().join("Dockerfile");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let arg = |name: &str| -> anyhow::Result<String> {
            let prefix = format!("ARG {name}=");
            text.lines()
                .find_map(|line| line.trim().strip_prefix(&prefix))
                .map(|value| value.trim().trim_matches('"').to_owned())
                .with_context(|| format!("{} has no `{prefix}<image>` line", path.display()))
        };
        Ok(Self {
            builder: arg("BUILDER_IMAGE")?,
            runtime: arg("RUNTIME_IMAGE")?,
        })
    }
}

pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    require_docker(sh)?;
    let base = BaseImages::from_dockerfile()?;
    if args.if_offline && registry_answers(sh, &base.runtime) {
        eprintln!(
            "a registry answers ({} was pulled): no stand-ins needed",
            base.runtime
        );
        return Ok(());
    }
    let wanted = |image: &str| args.force || !image_exists(sh, image);
    let plan = Plan {
        debian: wanted(DEBIAN_IMAGE),
        builder: wanted(&base.builder),
        runtime: wanted(&base.runtime),
        standins: STANDINS.iter().filter(|s| wanted(s.image)).collect(),
    };
    build(sh, &base, &plan)?;
    let mut images = vec![
        (DEBIAN_IMAGE, plan.debian),
        (base.builder.as_str(), plan.builder),
        (base.runtime.as_str(), plan.runtime),
    ];
    images.extend(
        STANDINS
            .iter()
            .map(|s| (s.image, plan.standins.iter().any(|p| p.image == s.image))),
    );
    report(sh, &images)
}

/// The images the Compose stack runs next to the service's, as [`ensure_images`] chose them.
#[derive(Debug)]
pub struct StackImages {
    /// `DB_IMAGE`: `mysql:8.4` or the MariaDB stand-in.
    pub db: String,
    /// `PROXY_IMAGE`: `haproxy:2.8` or the HAProxy stand-in.
    pub proxy: String,
}

/// Makes sure the base images, a database image, a proxy image and the monitoring images exist, seeding
/// stand-ins when no registry answers. Returns the database and proxy images to use (see [`choose`]);
/// the monitoring images are found by the tests themselves (the upstream one when present, else the
/// stand-in).
pub fn ensure_images(sh: &Shell) -> anyhow::Result<StackImages> {
    require_docker(sh)?;
    let base = BaseImages::from_dockerfile()?;
    let mut missing: Vec<&str> = [base.builder.as_str(), base.runtime.as_str()]
        .into_iter()
        .filter(|image| !image_exists(sh, image) && !registry_answers(sh, image))
        .collect();
    let images = StackImages {
        db: choose(sh, "DB_IMAGE", &STANDINS[0], &mut missing)?,
        proxy: choose(sh, "PROXY_IMAGE", &STANDINS[1], &mut missing)?,
    };
    // Prometheus and Alertmanager: the upstream image or the stand-in, whichever is here or can be had.
    for standin in &STANDINS[2..] {
        if !image_exists(sh, standin.upstream)
            && !image_exists(sh, standin.image)
            && !registry_answers(sh, standin.upstream)
        {
            missing.push(standin.image);
        }
    }
    if !missing.is_empty() {
        util::step(&format!("seeding stand-ins for {}", missing.join(", ")));
        let plan = Plan {
            debian: !image_exists(sh, DEBIAN_IMAGE),
            builder: missing.contains(&base.builder.as_str()),
            runtime: missing.contains(&base.runtime.as_str()),
            standins: STANDINS
                .iter()
                .filter(|s| missing.contains(&s.image))
                .collect(),
        };
        build(sh, &base, &plan)?;
    }
    Ok(images)
}

/// The image a Compose service runs: `variable` when set (it must be here or pullable), else the
/// upstream image when present, else the stand-in when present, else the upstream image when it can be
/// pulled, else the stand-in, which goes into `missing` to be built.
fn choose(
    sh: &Shell,
    variable: &str,
    standin: &StandIn,
    missing: &mut Vec<&str>,
) -> anyhow::Result<String> {
    if let Some(image) = std::env::var(variable)
        .ok()
        .filter(|image| !image.trim().is_empty())
    {
        anyhow::ensure!(
            image_exists(sh, &image) || registry_answers(sh, &image),
            "{variable}={image} is not in the local engine and cannot be pulled"
        );
        return Ok(image);
    }
    let standin_here = image_exists(sh, standin.image);
    if image_exists(sh, standin.upstream)
        || (!standin_here && registry_answers(sh, standin.upstream))
    {
        return Ok(standin.upstream.to_owned());
    }
    if !standin_here {
        missing.push(standin.image);
    }
    Ok(standin.image.to_owned())
}

/// Of the images the build and the stack need, those not in `present` (the engine's
/// `repository:tag` names): the Dockerfile's base images, and for each stand-in either it or the
/// image it stands in for.
pub fn missing_images(present: &[&str], base: &BaseImages) -> Vec<String> {
    let here = |image: &str| present.contains(&image);
    let mut missing: Vec<String> = [&base.builder, &base.runtime]
        .into_iter()
        .filter(|image| !here(image))
        .cloned()
        .collect();
    missing.extend(
        STANDINS
            .iter()
            .filter(|s| !here(s.upstream) && !here(s.image))
            .map(|s| s.upstream.to_owned()),
    );
    missing
}

/// Fails with an explanation when the Docker engine cannot be used.
pub fn require_docker(sh: &Shell) -> anyhow::Result<()> {
    util::require_program(
        "docker",
        "install Docker Engine (Debian package `docker.io`)",
    )?;
    cmd!(sh, "docker info --format").arg("{{.ServerVersion}}").quiet().ignore_stdout().run().context(
        "the Docker daemon is not reachable at the default socket: is it running? (`docker info`)",
    )?;
    Ok(())
}

pub fn image_exists(sh: &Shell, image: &str) -> bool {
    cmd!(sh, "docker image inspect --format")
        .args(["{{.Id}}", image])
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// Whether `image` can be pulled (pulling it is what the build or stack would do anyway).
fn registry_answers(sh: &Shell, image: &str) -> bool {
    cmd!(sh, "docker pull --quiet {image}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

struct Plan<'a> {
    debian: bool,
    builder: bool,
    runtime: bool,
    /// The Dockerfile stand-ins to build.
    standins: Vec<&'a StandIn>,
}

fn build(sh: &Shell, base: &BaseImages, plan: &Plan) -> anyhow::Result<()> {
    // The Dockerfile stand-ins build on the Debian image: import it first when it is missing.
    let debian = plan.debian || (!plan.standins.is_empty() && !image_exists(sh, DEBIAN_IMAGE));
    if debian || plan.builder || plan.runtime {
        let work = WorkDir::create()?;
        let root = work.path.join("root");
        debootstrap(sh, &root)?;
        if debian {
            import(
                sh,
                &root,
                &work.path.join("debian.tar"),
                DEBIAN_IMAGE,
                &["CMD [\"bash\"]"],
            )?;
        }
        if plan.builder || plan.runtime {
            chroot_apt(sh, &root, &["update", "-q"])?;
            let debs = root.join("debs");
            std::fs::create_dir_all(&debs)?;
            let names = RUNTIME_PACKAGES.join(" ");
            // The runtime takes the CA bundle that ca-certificates' maintainer script generates here.
            chroot_apt(
                sh,
                &root,
                &[
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "ca-certificates",
                ],
            )?;
            let download =
                format!("cd /debs && apt-get download -q -o APT::Sandbox::User=root {names}");
            cmd!(sh, "chroot {root} sh -c {download}")
                .run()
                .context("downloading the runtime's packages")?;
            if plan.runtime {
                runtime(sh, &root, &work.path, &base.runtime)?;
            }
            if plan.builder {
                builder(sh, &root, &work.path, &base.builder)?;
            }
        }
    }
    for standin in &plan.standins {
        let image = standin.image;
        util::step(&format!(
            "docker build {image} (stands in for {})",
            standin.upstream
        ));
        let dir = util::project_root().join(standin.context);
        cmd!(
            sh,
            "docker build --build-arg BASE_IMAGE={DEBIAN_IMAGE} --tag {image} {dir}"
        )
        .run()
        .with_context(|| format!("building {image}"))?;
    }
    Ok(())
}

/// A scratch directory for the roots, outside the repository (a Debian root must never be in a build
/// context or under the linters); removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let base = std::env::var_os("AIRGAP_WORK_DIR")
            .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let path = base.join(format!("infra-challenge-airgap-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {err}", self.path.display());
        }
    }
}

fn debootstrap(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let uid = cmd!(sh, "id -u").quiet().read()?;
    anyhow::ensure!(
        uid.trim() == "0",
        "building the Debian roots needs root (debootstrap, chroot): run as root"
    );
    // Installed here when missing (root with apt: apt-get install; else the command to run).
    crate::setup::ensure_packages(sh, &[&crate::setup::DEBOOTSTRAP])?;
    let mirror =
        std::env::var("AIRGAP_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.to_owned());
    util::step(&format!("debootstrap {SUITE} minbase from {mirror}"));
    cmd!(sh, "debootstrap --variant=minbase {SUITE} {root} {mirror}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("debootstrap failed (is Debian's mirror reachable?)")?;
    // Name resolution inside the chroot for apt; Docker replaces the file in containers.
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf")?;
    slim(root)
}

/// What debian:*-slim leaves out: documentation, manuals, apt's downloaded lists and archives.
fn slim(root: &Path) -> anyhow::Result<()> {
    remove_dirs(
        root,
        &[
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "var/lib/apt/lists",
            "var/cache/apt",
        ],
    )?;
    std::fs::create_dir_all(root.join("var/lib/apt/lists/partial"))?;
    std::fs::create_dir_all(root.join("var/cache/apt/archives/partial"))?;
    Ok(())
}

/// Removes these directories below `root`, those that exist.
fn remove_dirs(root: &Path, dirs: &[&str]) -> anyhow::Result<()> {
    for dir in dirs {
        let dir = root.join(dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

fn chroot_apt(sh: &Shell, root: &Path, args: &[&str]) -> anyhow::Result<()> {
    cmd!(sh, "chroot {root} apt-get {args...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("apt-get {} in the Debian root", args.join(" ")))
}

/// Tars `root` and imports it as `image` with the given Dockerfile instructions.
fn import(
    sh: &Shell,
    root: &Path,
    tar: &Path,
    image: &str,
    changes: &[&str],
) -> anyhow::Result<()> {
    util::step(&format!("docker import {image}"));
    cmd!(
        sh,
        "tar --numeric-owner --exclude=./debs -C {root} -cf {tar} ."
    )
    .quiet()
    .run()?;
    let changes: Vec<String> = changes
        .iter()
        .flat_map(|c| ["--change".to_owned(), (*c).to_owned()])
        .collect();
    cmd!(sh, "docker import {changes...} {tar} {image}")
        .quiet()
        .ignore_stdout()
        .run()?;
    std::fs::remove_file(tar)?;
    Ok(())
}

/// The distroless-like runtime: the runtime packages unpacked (no dpkg, no shell), a `nonroot` user.
fn runtime(sh: &Shell, root: &Path, work: &Path, image: &str) -> anyhow::Result<()> {
    let rt = work.join("runtime");
    std::fs::create_dir_all(&rt)?;
    for entry in std::fs::read_dir(root.join("debs"))? {
        let deb = entry?.path();
        cmd!(sh, "dpkg-deb -x {deb} {rt}").quiet().run()?;
    }
    remove_dirs(
        &rt,
        &[
            "usr/share/doc",
            "usr/share/man",
            "usr/share/lintian",
            "usr/share/ca-certificates",
            "usr/sbin",
        ],
    )?;
    // The bundle ca-certificates' maintainer script generates, taken from the root where it ran.
    std::fs::create_dir_all(rt.join("etc/ssl/certs"))?;
    std::fs::copy(
        root.join("etc/ssl/certs/ca-certificates.crt"),
        rt.join("etc/ssl/certs/ca-certificates.crt"),
    )?;
    std::fs::copy(root.join("usr/lib/os-release"), rt.join("etc/os-release"))?;
    std::fs::write(
        rt.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
         nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )?;
    std::fs::write(
        rt.join("etc/group"),
        "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
    )?;
    for dir in ["tmp", "root", "home/nonroot"] {
        std::fs::create_dir_all(rt.join(dir))?;
    }
    let (tmp, home, root_home) = (rt.join("tmp"), rt.join("home/nonroot"), rt.join("root"));
    cmd!(sh, "chmod 1777 {tmp}").run()?;
    cmd!(sh, "chmod 0700 {home} {root_home}").run()?;
    cmd!(sh, "chown 65532:65532 {home}").run()?;
    import(
        sh,
        &rt,
        &work.join("runtime.tar"),
        image,
        &[
            "USER 65532:65532",
            "WORKDIR /home/nonroot",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        ],
    )
}

/// The Rust builder: the Debian root with a C toolchain plus the host's Rust toolchain where the
/// official image keeps it, and the host's CA bundle so cargo can reach the crate registry.
fn builder(sh: &Shell, root: &Path, work: &Path, image: &str) -> anyhow::Result<()> {
    let version = rust_version(sh)?;
    let tag = image.rsplit(':').next().unwrap_or_default();
    let minor = version
        .rsplit_once('.')
        .map_or(version.as_str(), |(minor, _patch)| minor);
    anyhow::ensure!(
        tag.starts_with(&format!("{minor}-")) || tag.starts_with(&format!("{version}-")),
        "the Dockerfile builds with {image} but the host's Rust is {version}: install that toolchain \
         (`rustup toolchain install {}`) or change BUILDER_IMAGE",
        tag.split('-').next().unwrap_or(tag)
    );
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(BUILDER_PACKAGES);
    chroot_apt(sh, root, &install)?;
    chroot_apt(sh, root, &["clean"])?;
    slim(root)?;
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        root.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .context("copying the host's CA bundle")?;

    let sysroot = PathBuf::from(cmd!(sh, "rustc --print sysroot").quiet().read()?);
    let toolchain = format!("{version}-x86_64-unknown-linux-gnu");
    let dest = root.join("usr/local/rustup/toolchains").join(&toolchain);
    std::fs::create_dir_all(dest.join("share"))?;
    util::step(&format!(
        "copying the host's Rust {version} from {}",
        sysroot.display()
    ));
    for entry in std::fs::read_dir(&sysroot)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name == "share") {
            continue;
        }
        cmd!(sh, "cp -a {path} {dest}").quiet().run()?;
    }
    for entry in std::fs::read_dir(sysroot.join("share"))? {
        let path = entry?.path();
        if path.file_name().is_none_or(|name| name != "doc") {
            let share = dest.join("share");
            cmd!(sh, "cp -a {path} {share}").quiet().run()?;
        }
    }
    let bin = root.join("usr/local/cargo/bin");
    std::fs::create_dir_all(&bin)?;
    for tool in [
        "cargo",
        "rustc",
        "rustdoc",
        "cargo-clippy",
        "clippy-driver",
        "rustfmt",
        "cargo-fmt",
    ] {
        if dest.join("bin").join(tool).exists() {
            std::os::unix::fs::symlink(
                format!("/usr/local/rustup/toolchains/{toolchain}/bin/{tool}"),
                bin.join(tool),
            )?;
        }
    }
    let rust_version = format!("ENV RUST_VERSION={version}");
    import(
        sh,
        root,
        &work.join("builder.tar"),
        image,
        &[
            "ENV RUSTUP_HOME=/usr/local/rustup",
            "ENV CARGO_HOME=/usr/local/cargo",
            "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &rust_version,
            "CMD [\"bash\"]",
        ],
    )
}

/// `1.95.0` from `rustc 1.95.0 (59807616e 2026-04-14)`.
fn rust_version(sh: &Shell) -> anyhow::Result<String> {
    let out = cmd!(sh, "rustc --version").quiet().read()?;
    out.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("unexpected `rustc --version`: {out}"))
}

/// Prints each image, its size and whether it was built now or kept.
fn report(sh: &Shell, images: &[(&str, bool)]) -> anyhow::Result<()> {
    eprintln!();
    for &(image, built) in images {
        let size = cmd!(sh, "docker image inspect --format")
            .args(["{{.Size}}", image])
            .quiet()
            .read()?;
        let mb = size
            .trim()
            .parse::<u64>()
            .map(|b| b as f64 / 1e6)
            .unwrap_or(f64::NAN);
        let what = if built {
            "built"
        } else {
            "kept (present; --force rebuilds it)"
        };
        eprintln!("{image:<40} {mb:>7.1} MB  {what}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stacks_standins_come_first_and_each_has_its_dockerfile() {
        // ensure_images picks the database and the proxy by position.
        assert_eq!(STANDINS[0].image, DB_STANDIN);
        assert_eq!(STANDINS[1].image, PROXY_STANDIN);
        for standin in &STANDINS {
            let dockerfile = util::project_root()
                .join(standin.context)
                .join("Dockerfile");
            assert!(dockerfile.is_file(), "{} is missing", dockerfile.display());
        }
    }

    #[test]
    fn an_image_is_missing_when_neither_it_nor_its_standin_is_here() {
        let base = BaseImages {
            builder: "rust:1-slim".into(),
            runtime: "distroless:nonroot".into(),
        };
        let all = [
            "rust:1-slim",
            "distroless:nonroot",
            DB_STANDIN,
            PROXY_UPSTREAM,
            PROMETHEUS_STANDIN,
            ALERTMANAGER_UPSTREAM,
        ];
        assert!(missing_images(&all, &base).is_empty());
        assert_eq!(
            missing_images(&["rust:1-slim", DB_UPSTREAM, PROXY_STANDIN], &base),
            [
                "distroless:nonroot",
                PROMETHEUS_UPSTREAM,
                ALERTMANAGER_UPSTREAM
            ]
        );
    }

    #[test]
    fn each_upstream_image_is_the_compose_files_default() {
        let compose = util::project_root().join("deploy/compose/compose.yaml");
        let compose = std::fs::read_to_string(compose).expect("reading compose.yaml");
        for (variable, standin) in [
            ("DB_IMAGE", &STANDINS[0]),
            ("PROXY_IMAGE", &STANDINS[1]),
            ("PROMETHEUS_IMAGE", &STANDINS[2]),
            ("ALERTMANAGER_IMAGE", &STANDINS[3]),
        ] {
            let default = format!("image: ${{{variable}:-{}}}", standin.upstream);
            assert!(
                compose.contains(&default),
                "compose.yaml has no `{default}`"
            );
        }
    }
}
