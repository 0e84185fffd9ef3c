//! Schemathesis against the real service: `challenge serve --migrate --seed` on a fresh database of
//! the test server, then a bounded property-based run of every operation of the service's own
//! `/openapi.json`, so the document and the server cannot disagree unnoticed.
//!
//! The run uses every phase (the document's examples, boundary values, random fuzzing, and stateful
//! sequences whose links schemathesis infers from `Location` headers: create, then read, update,
//! delete), both positive data (the server must accept it) and negative data (it must refuse it), and
//! every check. Two of the checks have nothing to act on here: `ignored_auth` and
//! `object_level_authorization` test security schemes, and the API declares none (it has no
//! authentication).

use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use percent_encoding::percent_decode_str;
use xshell::{Shell, cmd};

use crate::{pytools, util};

/// Test cases per operation in each generating phase: every documented response is reached, and
/// the step stays around half a minute.
const MAX_EXAMPLES: &str = "100";
/// A single request slower than this is an error (the API's own budget is 2 s per call).
const REQUEST_TIMEOUT_SECS: &str = "10";
/// Migrating and seeding an empty database takes about a second.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the service's log of the last run is kept, to explain a failure.
const WORK_DIR: &str = ".xtask/schemathesis";

pub fn run(sh: &Shell, database_url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let st = pytools::tool(sh, "st")?;
    util::require_program(
        "mariadb",
        "it creates the database the service runs on (Debian: apt-get install mariadb-client)",
    )?;
    util::step("cargo build -p challenge (the service schemathesis tests)");
    cmd!(sh, "cargo build -p challenge").run()?;
    let binary = util::project_root().join("target/debug/challenge");

    let server = DbServer::parse(database_url)?;
    let database = Database::create(
        &server,
        format!("xtask_schemathesis_{}", std::process::id()),
    )?;
    let work = util::project_root().join(WORK_DIR);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log = work.join("service.log");
    let port = util::free_port()?;
    let mut service = Service::start(&binary, &server, &database.name, port, &log)?;
    service.wait_ready(&binary, &log)?;

    let version = cmd!(sh, "{st} --version").quiet().read()?;
    util::step(&format!(
        "{version}: all phases and checks, positive and negative data, {MAX_EXAMPLES} examples per operation"
    ));
    let schema = format!("http://127.0.0.1:{port}/openapi.json");
    // Examples are not kept between runs (`--generation-database none`): each run starts from the
    // seed it prints, which is what reproduces a failure. Hypothesis and schemathesis still cache
    // data in the working directory (`.hypothesis/`, `.schemathesis/`): ours, not the repository.
    let _cwd = sh.push_dir(&work);
    let outcome = cmd!(
        sh,
        "{st} run {schema} --phases examples,coverage,fuzzing,stateful --mode all --checks all
            --max-examples {MAX_EXAMPLES} --request-timeout {REQUEST_TIMEOUT_SECS}
            --generation-database none"
    )
    .run();
    drop(service);
    drop(database);
    outcome.with_context(|| {
        format!(
            "schemathesis found requests and responses that disagree with the OpenAPI document (failures \
             above). Fix the server or the document, never the check. To reproduce, run the service \
             (`challenge serve --migrate --seed`) and `{} run http://127.0.0.1:8000/openapi.json --mode all \
             --checks all --seed <the Seed printed above>`; the service's log of this run is {}",
            st.display(),
            log.display()
        )
    })?;
    eprintln!("schemathesis step passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The MySQL-compatible server of `TEST_DATABASE_URL`.
struct DbServer {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl DbServer {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).with_context(|| format!("not a mysql:// URL: {raw}"))?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Ok(Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(3306),
            user: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        })
    }

    /// Runs SQL with the mariadb client; the password goes through the environment, not argv.
    fn sql(&self, statements: &str) -> anyhow::Result<()> {
        let output = Command::new("mariadb")
            .args(["--protocol=TCP", "-h", &self.host, "-P"])
            .arg(self.port.to_string())
            .args(["-u", &self.user, "-e", statements])
            .env("MYSQL_PWD", &self.password)
            .output()
            .context("running the mariadb client")?;
        anyhow::ensure!(
            output.status.success(),
            "`{statements}` failed on {}:{}: {}",
            self.host,
            self.port,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }
}

/// A database of its own for the run, dropped afterwards.
struct Database<'s> {
    server: &'s DbServer,
    name: String,
}

impl<'s> Database<'s> {
    fn create(server: &'s DbServer, name: String) -> anyhow::Result<Self> {
        server.sql(&format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;"
        ))?;
        Ok(Self { server, name })
    }
}

impl Drop for Database<'_> {
    fn drop(&mut self) {
        if let Err(err) = self
            .server
            .sql(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
        {
            eprintln!("warning: could not drop the schemathesis database: {err:#}");
        }
    }
}

/// `challenge serve --migrate --seed` on `port`; dropping it stops the process (SIGTERM, then waits).
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(
        binary: &Path,
        db: &DbServer,
        database: &str,
        port: u16,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .args(["serve", "--migrate", "--seed"])
            .env("PORT", port.to_string())
            .env("DB_HOST", &db.host)
            .env("DB_PORT", db.port.to_string())
            .env("DB_USERNAME", &db.user)
            .env("DB_PASSWORD", &db.password)
            .env("DB_DATABASE", database)
            .env("LOG_FORMAT", "text")
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child, port })
    }

    /// Waits until `/readyz` answers 200 (`challenge healthcheck`), failing early when the process exits.
    fn wait_ready(&mut self, binary: &Path, log: &Path) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the service exited ({status}) before it was ready; its log:\n{}",
                    tail(log)
                );
            }
            let ready = Command::new(binary)
                .arg("healthcheck")
                .env("PORT", self.port.to_string())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the service did not answer 200 on /readyz within {READY_TIMEOUT:?}; its log:\n{}",
            tail(log)
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
