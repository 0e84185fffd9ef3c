//! `cargo xtask setup`: everything the test suites and the pipeline's local stages need on this
//! machine, installed or started when missing, one line per step saying what and why: Debian
//! packages, the pinned cargo tools, the Python tools' virtualenv, a MariaDB server for the
//! integration tests, and the air-gapped base images when no registry answers.
//!
//! `cargo xtask test` runs the part its suites need first; with `--no-setup` (or
//! `XTASK_NO_SETUP=1`) it refuses instead, listing everything missing at once.
//!
//! Finding what is missing is cheap when nothing is: file checks on well-known paths, two
//! `--version` calls, one `docker image ls`, one login attempt on the database. The decisions
//! (which packages are missing, which command a non-root user is told to run, which steps a suite
//! needs) are pure functions, unit-tested below.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::test::Suite;
use crate::{airgap, pytools, testdb};

#[derive(clap::Args)]
pub struct Args {
    /// Install and start nothing: list what is missing (exit 1 when something is).
    #[arg(long)]
    pub check: bool,
}

/// A Debian package a suite needs, and how its presence is seen without asking dpkg: one of these
/// files exists (a bare name: on `PATH` or in /usr/sbin, /sbin, which a non-root `PATH` may lack).
pub struct Package {
    pub name: &'static str,
    probes: &'static [&'static str],
    why: &'static str,
}

pub const MARIADB_SERVER: Package = Package {
    name: "mariadb-server",
    probes: &["mariadbd"],
    why: "the MySQL-compatible server of the integration tests",
};
pub const MARIADB_CLIENT: Package = Package {
    name: "mariadb-client",
    probes: &["mariadb"],
    why: "creates the tests' databases",
};
pub const DEBOOTSTRAP: Package = Package {
    name: "debootstrap",
    probes: &["debootstrap"],
    why: "`cargo xtask airgap-images` builds the base image stand-ins from Debian packages",
};
const PROMETHEUS: Package = Package {
    name: "prometheus",
    probes: &["promtool"],
    why: "promtool checks and unit-tests the Prometheus rules; the live monitoring test",
};
const ALERTMANAGER: Package = Package {
    name: "prometheus-alertmanager",
    probes: &["amtool"],
    why: "amtool checks the Alertmanager routing",
};
const LLVM: Package = Package {
    name: "llvm-19",
    probes: &["/usr/lib/llvm-19/bin/llvm-cov"],
    why: "llvm-cov and llvm-profdata for coverage",
};
const GROOVY: Package = Package {
    name: "groovy",
    probes: &["groovy"],
    why: "the pipeline suite parses the Jenkinsfile with Groovy 2.4",
};
const PYTHON_VENV: Package = Package {
    name: "python3-venv",
    probes: &[],
    why: "creates the Python tools' virtualenv",
};
const COMPOSE: Package = Package {
    name: "docker-compose",
    probes: &["docker-compose"],
    why: "a Compose for the container tests and the deploy (no `docker compose` plugin here)",
};

// What `cargo xtask bench` needs (not part of `cargo xtask setup`: only the benchmarks use them);
// the bench installs them with `ensure_packages` when missing.
pub const WRK: Package = Package {
    name: "wrk",
    probes: &["wrk"],
    why: "drives the service under load in `cargo xtask bench`",
};
pub const SYSBENCH: Package = Package {
    name: "sysbench",
    probes: &["sysbench"],
    why: "the database's point-select ceiling in `cargo xtask bench --only service`",
};
pub const LINUX_PERF: Package = Package {
    name: "linux-perf",
    probes: &["perf"],
    why: "samples where CPU time goes in `cargo xtask bench --only profile`",
};
pub const VALGRIND: Package = Package {
    name: "valgrind",
    probes: &["valgrind", "callgrind_control"],
    why: "counts the service's instructions per request in `cargo xtask bench --only instructions`",
};
pub const GOLANG: Package = Package {
    name: "golang-go",
    probes: &["go"],
    why: "builds the Go peer the service is measured against (bench/go-peer)",
};
pub const GO_MYSQL_DRIVER: Package = Package {
    name: "golang-github-go-sql-driver-mysql-dev",
    probes: &["/usr/share/gocode/src/github.com/go-sql-driver/mysql/driver.go"],
    why: "the Go peer's MySQL driver, in GOPATH /usr/share/gocode (no module download)",
};

/// A cargo tool installed with `cargo install --locked --version`.
pub struct CargoTool {
    pub krate: &'static str,
    /// The cargo subcommand (`cargo <subcommand> --version`).
    subcommand: &'static str,
    pub version: &'static str,
    why: &'static str,
}

pub const MACHETE: CargoTool = CargoTool {
    krate: "cargo-machete",
    subcommand: "machete",
    version: "0.9.2",
    why: "the lint suite's unused-dependency check",
};
pub const LLVM_COV: CargoTool = CargoTool {
    krate: "cargo-llvm-cov",
    subcommand: "llvm-cov",
    version: "0.9.1",
    why: "`--coverage` and `cargo xtask ci coverage`",
};

/// What a suite needs, in the order setup provides it (packages before what runs them).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Need {
    Package(&'static str),
    CargoTool(&'static str),
    /// A Compose: the `docker compose` plugin or `docker-compose` (Debian's package otherwise).
    Compose,
    PythonTools,
    /// A MySQL-compatible server for the tests: `TEST_DATABASE_URL`, or MariaDB on 127.0.0.1:3306
    /// with the `ci` user.
    Database,
    /// The base images (or their stand-ins) of the Dockerfile and the Compose stack.
    BaseImages,
}

const PACKAGES: [&Package; 9] = [
    &MARIADB_SERVER,
    &MARIADB_CLIENT,
    &DEBOOTSTRAP,
    &PROMETHEUS,
    &ALERTMANAGER,
    &LLVM,
    &GROOVY,
    &PYTHON_VENV,
    &COMPOSE,
];
const CARGO_TOOLS: [&CargoTool; 2] = [&MACHETE, &LLVM_COV];

fn package(name: &str) -> &'static Package {
    PACKAGES
        .iter()
        .copied()
        .find(|p| p.name == name)
        .expect("a known package")
}

fn cargo_tool(krate: &str) -> &'static CargoTool {
    CARGO_TOOLS
        .iter()
        .copied()
        .find(|t| t.krate == krate)
        .expect("a known cargo tool")
}

/// What these suites need (`coverage`: the rust suite under cargo-llvm-cov), sorted and without
/// repeats. `cargo xtask setup` asks for every suite with coverage: the pipeline's stages too.
pub fn needs(suites: &[Suite], coverage: bool) -> Vec<Need> {
    let mut needs = BTreeSet::new();
    let database = [
        Need::Package(MARIADB_SERVER.name),
        Need::Package(MARIADB_CLIENT.name),
        Need::Database,
    ];
    for suite in suites {
        match suite {
            Suite::Lint => {
                needs.insert(Need::CargoTool(MACHETE.krate));
            }
            Suite::Rust => {
                needs.extend(database);
                needs.insert(Need::PythonTools);
                if coverage {
                    needs.insert(Need::Package(LLVM.name));
                    needs.insert(Need::CargoTool(LLVM_COV.krate));
                }
            }
            Suite::Schemathesis => {
                needs.extend(database);
                needs.insert(Need::PythonTools);
            }
            Suite::Containers => {
                needs.extend([
                    Need::Package(DEBOOTSTRAP.name),
                    Need::Compose,
                    Need::PythonTools,
                    Need::BaseImages,
                ]);
            }
            Suite::Manifests => {
                needs.insert(Need::PythonTools);
            }
            Suite::Monitoring => {
                needs.extend(database);
                needs.extend([
                    Need::Package(PROMETHEUS.name),
                    Need::Package(ALERTMANAGER.name),
                    // `docker-compose config` of the observability profile (monitoring/wiring.rs).
                    Need::Compose,
                    Need::PythonTools,
                ]);
            }
            Suite::Pipeline => {
                needs.extend([Need::Package(GROOVY.name), Need::PythonTools]);
            }
        }
    }
    needs.into_iter().collect()
}

/// Who runs xtask, as far as installing goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Privileges {
    pub root: bool,
    pub apt: bool,
}

impl Privileges {
    pub fn of_this_process() -> Self {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| effective_uid(&status))
            .is_some_and(|uid| uid == 0);
        Self {
            root,
            apt: on_path("apt-get"),
        }
    }
}

/// The effective uid from /proc/self/status's `Uid:` line (real, effective, saved, filesystem).
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

/// How missing packages get installed.
#[derive(Debug, PartialEq, Eq)]
pub enum Install {
    /// Root with apt: this `apt-get install` (after `apt-get update`).
    Apt(Vec<String>),
    /// Anyone else: the command to run, for all of them at once.
    Tell(String),
}

/// The one install of `missing` (non-empty) for these privileges.
pub fn install_plan(missing: &[&str], privileges: Privileges) -> Install {
    let apt_args = || -> Vec<String> {
        ["install", "-y", "-q", "--no-install-recommends"]
            .into_iter()
            .chain(missing.iter().copied())
            .map(str::to_owned)
            .collect()
    };
    match privileges {
        Privileges {
            root: true,
            apt: true,
        } => Install::Apt(apt_args()),
        Privileges {
            root: false,
            apt: true,
        } => Install::Tell(format!(
            "sudo apt-get update && sudo apt-get {}",
            apt_args().join(" ")
        )),
        Privileges { apt: false, .. } => Install::Tell(format!(
            "install with your system's package manager (Debian names): {}",
            missing.join(" ")
        )),
    }
}

/// The packages of `wanted` none of whose probes `present` sees (a package without probes is
/// never missing by itself: something else asks for it).
pub fn missing_packages<'p>(
    wanted: &[&'p Package],
    present: &dyn Fn(&str) -> bool,
) -> Vec<&'p Package> {
    wanted
        .iter()
        .copied()
        .filter(|p| !p.probes.is_empty() && !p.probes.iter().any(|probe| present(probe)))
        .collect()
}

/// Whether `cargo <tool> --version` output (None: it did not run) shows another version than
/// `wanted`: the last word is the version (`0.9.2`, `cargo-llvm-cov 0.9.1`).
pub fn cargo_tool_outdated(version_output: Option<&str>, wanted: &str) -> bool {
    version_output
        .and_then(|out| out.split_whitespace().last())
        .is_none_or(|version| version.trim_start_matches('v') != wanted)
}

/// A program on `PATH`, or an absolute path that exists; bare names are also looked for in the
/// sbin directories a non-root `PATH` often lacks.
fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return Path::new(probe).is_file();
    }
    on_path(probe)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(probe).is_file())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// One thing missing, what providing it does, and whether xtask can do it here.
struct Missing {
    need: Need,
    /// What is missing and why it is needed, for the list.
    what: String,
}

/// What of `needs` this machine lacks, in order.
fn find_missing(sh: &Shell, needs: &[Need]) -> Vec<Missing> {
    let mut missing = Vec::new();
    let wanted: Vec<&Package> = needs
        .iter()
        .filter_map(|need| match need {
            Need::Package(name) => Some(package(name)),
            _ => None,
        })
        .collect();
    for p in missing_packages(&wanted, &present) {
        missing.push(Missing {
            need: Need::Package(p.name),
            what: format!("Debian package {} ({})", p.name, p.why),
        });
    }
    for need in needs {
        let what = match *need {
            Need::Package(_) => continue,
            Need::CargoTool(krate) => {
                let tool = cargo_tool(krate);
                let sub = tool.subcommand;
                let out = cmd!(sh, "cargo {sub} --version")
                    .quiet()
                    .ignore_stderr()
                    .read()
                    .ok();
                if !cargo_tool_outdated(out.as_deref(), tool.version) {
                    continue;
                }
                let found = out.map_or("not installed".to_owned(), |o| {
                    format!("found {}", o.trim())
                });
                format!("{} {} ({}; {found})", tool.krate, tool.version, tool.why)
            }
            Need::Compose => {
                if present("docker-compose") || compose_plugin(sh) {
                    continue;
                }
                format!(
                    "a Compose (Debian package {}: {})",
                    COMPOSE.name, COMPOSE.why
                )
            }
            Need::PythonTools => {
                if pytools::is_ready(sh) {
                    continue;
                }
                "the Python tools' virtualenv .venv (xtask/requirements.txt: yamllint, checkov, \
                 hadolint, kubernetes-validate, schemathesis)"
                    .to_owned()
            }
            Need::Database => {
                // Not root: setup cannot start MariaDB, and the tests start a throwaway database
                // container instead (testdb::provide).
                if std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty())
                    || !Privileges::of_this_process().root
                    || testdb::local_server_answers()
                {
                    continue;
                }
                format!(
                    "a MariaDB server with the `ci` user on 127.0.0.1:3306 (the integration tests' \
                     server, {}; or set TEST_DATABASE_URL)",
                    testdb::LOCAL_URL
                )
            }
            Need::BaseImages => match missing_images(sh) {
                Ok(images) if images.is_empty() => continue,
                Ok(images) => format!(
                    "base images {} (the image build and the Compose stack; seeded from Debian \
                     packages when no registry answers)",
                    images.join(", ")
                ),
                Err(e) => format!("the Docker engine ({e:#})"),
            },
        };
        missing.push(Missing { need: *need, what });
    }
    missing
}

fn compose_plugin(sh: &Shell) -> bool {
    cmd!(sh, "docker compose version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// The base images and stack images not in the local engine, from one `docker image ls`.
fn missing_images(sh: &Shell) -> anyhow::Result<Vec<String>> {
    let listed = cmd!(sh, "docker image ls --format")
        .arg("{{.Repository}}:{{.Tag}}")
        .quiet()
        .ignore_stderr()
        .read()
        .context("the Docker engine does not answer (`docker info`)")?;
    let base = airgap::BaseImages::from_dockerfile()?;
    let present: Vec<&str> = listed.lines().collect();
    Ok(airgap::missing_images(&present, &base))
}

/// `cargo xtask setup`.
pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    let all = needs(&crate::test::ALL, true);
    if args.check {
        return refuse_if_missing(sh, &all, "cargo xtask setup");
    }
    provide(sh, &all)
}

/// Fails listing everything of `needs` this machine lacks (nothing installed or started).
pub fn refuse_if_missing(sh: &Shell, needs: &[Need], fix: &str) -> anyhow::Result<()> {
    let missing = find_missing(sh, needs);
    if missing.is_empty() {
        eprintln!("setup: nothing missing");
        return Ok(());
    }
    let list: Vec<String> = missing.iter().map(|m| format!("  - {}", m.what)).collect();
    anyhow::bail!(
        "{} missing (`{fix}` provides them):\n{}",
        missing.len(),
        list.join("\n")
    )
}

/// Installs and starts what `needs` lacks, one line per step; says so in one line when nothing is.
pub fn provide(sh: &Shell, needs: &[Need]) -> anyhow::Result<()> {
    let started = Instant::now();
    let missing = find_missing(sh, needs);
    if missing.is_empty() {
        eprintln!(
            "setup: nothing to install or start ({} checked in {:.1?})",
            describe(needs),
            started.elapsed()
        );
        return Ok(());
    }
    let privileges = Privileges::of_this_process();
    let mut packages: Vec<&Package> = Vec::new();
    for m in &missing {
        match m.need {
            Need::Package(name) => packages.push(package(name)),
            Need::Compose => packages.push(&COMPOSE),
            // The virtualenv needs python3's venv module; Debian ships it apart.
            Need::PythonTools if !python_venv_works(sh) => packages.push(&PYTHON_VENV),
            _ => {}
        }
    }
    if !packages.is_empty() {
        install_packages(sh, &packages, privileges)?;
    }
    for m in &missing {
        match m.need {
            Need::Package(_) | Need::Compose => {}
            Need::CargoTool(krate) => {
                let tool = cargo_tool(krate);
                let (krate, version) = (tool.krate, tool.version);
                eprintln!("setup: cargo install {krate} {version} ({})", tool.why);
                cmd!(
                    sh,
                    "cargo install --locked --quiet {krate} --version {version}"
                )
                .run()
                .with_context(|| format!("installing {krate} {version}"))?;
            }
            Need::PythonTools => {
                eprintln!("setup: the Python tools into .venv (xtask/requirements.txt)");
                pytools::ensure(sh)?;
            }
            Need::Database => start_database(sh, privileges)?,
            Need::BaseImages => {
                eprintln!(
                    "setup: cargo xtask airgap-images --if-offline (base images missing; built from \
                     Debian packages when no registry answers)"
                );
                airgap::run(sh, &airgap::Args::if_offline())?;
            }
        }
    }
    eprintln!("setup: done in {:.0?}", started.elapsed());
    Ok(())
}

fn describe(needs: &[Need]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for kind in needs.iter().map(|need| match need {
        Need::Package(_) | Need::Compose => "packages",
        Need::CargoTool(_) => "cargo tools",
        Need::PythonTools => "Python tools",
        Need::Database => "database",
        Need::BaseImages => "base images",
    }) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.join(", ")
}

fn python_venv_works(sh: &Shell) -> bool {
    cmd!(sh, "python3 -c 'import ensurepip, venv'")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// Installs those of `packages` that are missing (see [`install_packages`]).
pub fn ensure_packages(sh: &Shell, packages: &[&Package]) -> anyhow::Result<()> {
    let missing = missing_packages(packages, &present);
    if missing.is_empty() {
        return Ok(());
    }
    install_packages(sh, &missing, Privileges::of_this_process())
}

/// Installs `packages` with one `apt-get install` as root, else fails with the command to run.
pub fn install_packages(
    sh: &Shell,
    packages: &[&Package],
    privileges: Privileges,
) -> anyhow::Result<()> {
    let names: Vec<&str> = packages.iter().map(|p| p.name).collect();
    let why: Vec<String> = packages
        .iter()
        .map(|p| format!("{} ({})", p.name, p.why))
        .collect();
    match install_plan(&names, privileges) {
        Install::Apt(args) => {
            eprintln!("setup: apt-get install {}", why.join(", "));
            let started = Instant::now();
            cmd!(sh, "apt-get update -q")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .quiet()
                .ignore_stdout()
                .run()
                .context("apt-get update")?;
            cmd!(sh, "apt-get {args...}")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("apt-get install {}", names.join(" ")))?;
            eprintln!("setup: packages installed in {:.0?}", started.elapsed());
            Ok(())
        }
        Install::Tell(command) => anyhow::bail!(
            "missing Debian packages: {}; install them, then run this again:\n  {command}",
            why.join(", ")
        ),
    }
}

/// The tests' MariaDB as `.ci/run` started it: mariadbd as the mysql user (no init system needed),
/// its socket in /run/mysqld, a `ci` user over TCP. Root only; anyone else is told how.
fn start_database(sh: &Shell, privileges: Privileges) -> anyhow::Result<()> {
    anyhow::ensure!(
        privileges.root,
        "no MySQL-compatible server for the tests: run `cargo xtask setup` as root (it starts \
         MariaDB with a `ci` user), or set TEST_DATABASE_URL=mysql://user:password@host:port \
         (a user allowed to create databases)"
    );
    let alive = || {
        cmd!(sh, "mariadb-admin ping --silent")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    if !alive() {
        eprintln!(
            "setup: starting mariadbd as the mysql user (the integration tests' server; log in \
             /tmp/ci-mariadb.log)"
        );
        cmd!(sh, "mkdir -p /run/mysqld").quiet().run()?;
        cmd!(sh, "chown mysql:mysql /run/mysqld").quiet().run()?;
        let log =
            std::fs::File::create("/tmp/ci-mariadb.log").context("creating /tmp/ci-mariadb.log")?;
        // Its own process group: it outlives this xtask and a Ctrl-C of it.
        use std::os::unix::process::CommandExt;
        Command::new("mariadbd")
            .arg("--user=mysql")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting mariadbd")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !alive() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string("/tmp/ci-mariadb.log").unwrap_or_default();
                anyhow::bail!("MariaDB did not start within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!(
        "setup: the `ci` user on 127.0.0.1:3306 (the tests use {} when TEST_DATABASE_URL is unset)",
        testdb::LOCAL_URL
    );
    // Root over the socket stays as Debian set it up.
    let sql = "CREATE USER IF NOT EXISTS 'ci'@'127.0.0.1' IDENTIFIED BY 'ci'; \
               GRANT ALL PRIVILEGES ON *.* TO 'ci'@'127.0.0.1' WITH GRANT OPTION; \
               FLUSH PRIVILEGES;";
    cmd!(sh, "mariadb -uroot -e {sql}")
        .quiet()
        .run()
        .context("creating the `ci` user")?;
    anyhow::ensure!(
        testdb::local_server_answers(),
        "MariaDB runs but the `ci` user cannot log in over TCP on 127.0.0.1:3306 (is another server \
         on that port?)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Privileges = Privileges {
        root: true,
        apt: true,
    };
    const USER: Privileges = Privileges {
        root: false,
        apt: true,
    };

    #[test]
    fn only_packages_whose_programs_are_absent_are_missing() {
        let here = |probe: &str| ["mariadb", "promtool"].contains(&probe);
        let missing = missing_packages(
            &[
                &MARIADB_SERVER,
                &MARIADB_CLIENT,
                &PROMETHEUS,
                &GROOVY,
                &PYTHON_VENV,
            ],
            &here,
        );
        let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
        assert_eq!(names, ["mariadb-server", "groovy"]);
        assert!(missing_packages(&[&MARIADB_CLIENT], &|_| true).is_empty());
    }

    #[test]
    fn root_with_apt_installs_all_missing_packages_at_once() {
        assert_eq!(
            install_plan(&["groovy", "debootstrap"], ROOT),
            Install::Apt(
                [
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "groovy",
                    "debootstrap"
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }

    #[test]
    fn anyone_else_is_told_one_command_with_every_package() {
        assert_eq!(
            install_plan(&["groovy", "debootstrap"], USER),
            Install::Tell(
                "sudo apt-get update && sudo apt-get install -y -q --no-install-recommends groovy \
                 debootstrap"
                    .into()
            )
        );
        let Install::Tell(text) = install_plan(
            &["groovy"],
            Privileges {
                root: true,
                apt: false,
            },
        ) else {
            panic!("without apt nothing is installed");
        };
        assert!(text.ends_with(": groovy"), "{text}");
    }

    #[test]
    fn a_cargo_tool_is_installed_when_absent_or_of_another_version() {
        assert!(!cargo_tool_outdated(Some("0.9.2\n"), "0.9.2"));
        assert!(!cargo_tool_outdated(Some("cargo-llvm-cov 0.9.1"), "0.9.1"));
        assert!(cargo_tool_outdated(Some("cargo-llvm-cov 0.8.4"), "0.9.1"));
        assert!(cargo_tool_outdated(None, "0.9.2"));
        assert!(cargo_tool_outdated(Some(""), "0.9.2"));
    }

    #[test]
    fn each_suite_needs_only_its_own_tools() {
        assert_eq!(
            needs(&[Suite::Lint], false),
            [Need::CargoTool("cargo-machete")]
        );
        assert_eq!(
            needs(&[Suite::Pipeline], false),
            [Need::Package("groovy"), Need::PythonTools]
        );
        let rust = needs(&[Suite::Rust], false);
        assert!(rust.contains(&Need::Database) && rust.contains(&Need::Package("mariadb-client")));
        assert!(!rust.contains(&Need::CargoTool("cargo-llvm-cov")));
        let coverage = needs(&[Suite::Rust], true);
        assert!(coverage.contains(&Need::CargoTool("cargo-llvm-cov")));
        assert!(coverage.contains(&Need::Package("llvm-19")));
        let containers = needs(&[Suite::Containers], false);
        assert!(containers.contains(&Need::BaseImages) && containers.contains(&Need::Compose));
    }

    #[test]
    fn setup_covers_every_package_and_tool_once_packages_first() {
        let all = needs(&crate::test::ALL, true);
        for p in PACKAGES
            .iter()
            .filter(|p| !p.probes.is_empty() && p.name != COMPOSE.name)
        {
            assert!(
                all.contains(&Need::Package(p.name)),
                "{} is never needed",
                p.name
            );
        }
        for t in CARGO_TOOLS {
            assert!(all.contains(&Need::CargoTool(t.krate)));
        }
        let first_other = all
            .iter()
            .position(|n| !matches!(n, Need::Package(_)))
            .unwrap();
        assert!(
            all[first_other..]
                .iter()
                .all(|n| !matches!(n, Need::Package(_)))
        );
        let mut deduped = all.clone();
        deduped.dedup();
        assert_eq!(deduped, all);
    }

    #[test]
    fn the_effective_uid_is_read_from_proc_status() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name: x\n"), None);
    }
}
