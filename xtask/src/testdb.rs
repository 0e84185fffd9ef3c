//! Where the integration tests find their MySQL-compatible server: `TEST_DATABASE_URL` when set, else
//! the MariaDB `cargo xtask setup` starts (its `ci` user on 127.0.0.1:3306, [`LOCAL_URL`]) when it
//! answers, else a throwaway container of the database image.
//! The tasks that run the service on it (schemathesis, the benchmarks) read that URL as a [`DbServer`]
//! and create their databases there.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use percent_encoding::percent_decode_str;
use xshell::{Shell, cmd};

use crate::{airgap, util};

/// How long a fresh container may take to initialise its data directory and listen.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A server the tests may create databases on; dropping it removes the container started for it.
pub struct TestDatabase {
    url: String,
    container: Option<String>,
}

impl TestDatabase {
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.container {
            let removed = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
            if !removed.is_ok_and(|out| out.status.success()) {
                eprintln!(
                    "warning: could not remove the test database container {name} (`docker rm -f {name}`)"
                );
            }
        }
    }
}

/// The server `cargo xtask setup` starts as root: MariaDB from Debian's packages with a `ci` user
/// allowed to create databases.
pub const LOCAL_URL: &str = "mysql://ci:ci@127.0.0.1:3306";

/// Whether the `ci` user of [`LOCAL_URL`] logs in (one `mariadb` client call; false without the
/// client).
pub fn local_server_answers() -> bool {
    DbServer::parse(LOCAL_URL).is_ok_and(|server| server.sql("SELECT 1").is_ok())
}

pub fn provide(sh: &Shell) -> anyhow::Result<TestDatabase> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(TestDatabase { url, container: None }),
        _ if local_server_answers() => Ok(TestDatabase {
            url: LOCAL_URL.to_owned(),
            container: None,
        }),
        _ => throwaway(sh).context(
            "TEST_DATABASE_URL is not set, no server answers as the `ci` user on 127.0.0.1:3306 (`cargo \
             xtask setup` starts one as root), and starting a throwaway database container failed; either \
             fix the error above or point the tests at a MySQL 8 / MariaDB 10.11 server whose user may \
             create databases, e.g. export TEST_DATABASE_URL=mysql://root:secret@127.0.0.1:3306",
        ),
    }
}

/// A container of the database image on a Docker-chosen free port of 127.0.0.1, with a random root
/// password, ready once the server sends its handshake.
fn throwaway(sh: &Shell) -> anyhow::Result<TestDatabase> {
    let image = airgap::ensure_images(sh)?.db;
    let name = format!(
        "infra-challenge-testdb-{}-{:08x}",
        std::process::id(),
        random_u32()
    );
    let password = format!("{:08x}{:08x}", random_u32(), random_u32());
    util::step(&format!("throwaway test database: {image} as {name}"));
    let root_password = format!("MYSQL_ROOT_PASSWORD={password}");
    cmd!(
        sh,
        "docker run -d --rm --name {name} -p 127.0.0.1::3306 -e {root_password} {image}"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    // From here on the guard removes the container, whatever happens next.
    let mut db = TestDatabase {
        url: String::new(),
        container: Some(name.clone()),
    };
    let mapping = cmd!(sh, "docker port {name} 3306/tcp").quiet().read()?;
    let port: u16 = mapping
        .lines()
        .find_map(|line| line.strip_prefix("127.0.0.1:"))
        .and_then(|port| port.trim().parse().ok())
        .with_context(|| format!("unexpected `docker port` output: {mapping:?}"))?;
    wait_for_handshake(port, START_TIMEOUT).with_context(|| {
        let logs = cmd!(sh, "docker logs --tail 20 {name}")
            .quiet()
            .ignore_status()
            .read_stderr();
        format!(
            "the database container {name} did not accept connections; its log:\n{}",
            logs.unwrap_or_default()
        )
    })?;
    db.url = format!("mysql://root:{password}@127.0.0.1:{port}");
    Ok(db)
}

/// The MySQL-compatible server of a `mysql://user:password@host:port` URL (`TEST_DATABASE_URL`).
pub struct DbServer {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl DbServer {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
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
    pub fn sql(&self, statements: &str) -> anyhow::Result<()> {
        let output = Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "--connect-timeout=5",
                "-h",
                &self.host,
                "-P",
            ])
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

    /// Drops `database` if it exists and creates it empty.
    pub fn recreate(&self, database: &str) -> anyhow::Result<()> {
        self.sql(&format!(
            "DROP DATABASE IF EXISTS `{database}`; CREATE DATABASE `{database}`;"
        ))
    }

    /// The service's configuration (`DB_*`) for `database` on this server.
    pub fn configure(&self, command: &mut Command, database: &str) {
        command
            .env("DB_HOST", &self.host)
            .env("DB_PORT", self.port.to_string())
            .env("DB_USERNAME", &self.user)
            .env("DB_PASSWORD", &self.password)
            .env("DB_DATABASE", database);
    }
}

/// A database of its own for one run, created empty and dropped with the guard.
pub struct ScratchDatabase<'s> {
    server: &'s DbServer,
    pub name: String,
}

impl<'s> ScratchDatabase<'s> {
    pub fn create(server: &'s DbServer, name: String) -> anyhow::Result<Self> {
        server.recreate(&name)?;
        Ok(Self { server, name })
    }
}

impl Drop for ScratchDatabase<'_> {
    fn drop(&mut self) {
        if let Err(err) = self
            .server
            .sql(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
        {
            eprintln!(
                "warning: could not drop the database {}: {err:#}",
                self.name
            );
        }
    }
}

/// Waits until the server on `port` sends a MySQL protocol 10 handshake. Docker's port proxy accepts
/// connections before the server listens (and while the entrypoint's initialisation server runs without
/// TCP), so an accepted connection alone proves nothing.
fn wait_for_handshake(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut header = [0u8; 5];
        let greeted = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.read_exact(&mut header)
        });
        // 3 bytes length, 1 byte sequence, then the protocol version.
        if greeted.is_ok() && header[4] == 10 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no MySQL handshake on 127.0.0.1:{port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Random bits for unique names and passwords, from the standard library's randomly keyed hasher.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::DbServer;

    #[test]
    fn database_url_credentials_are_percent_decoded() {
        let server = DbServer::parse("mysql://app%40x:p+w%2Fd@db.local:3307").unwrap();
        assert_eq!(
            (server.user.as_str(), server.password.as_str()),
            ("app@x", "p+w/d")
        );
        assert_eq!((server.host.as_str(), server.port), ("db.local", 3307));
    }

    #[test]
    fn database_url_without_port_or_password_means_3306_and_no_password() {
        let server = DbServer::parse("mysql://ci@127.0.0.1").unwrap();
        assert_eq!((server.host.as_str(), server.port), ("127.0.0.1", 3306));
        assert_eq!((server.user.as_str(), server.password.as_str()), ("ci", ""));
    }
}
