//! The service under test: a `challenge` binary serving its own seeded database on a free port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use percent_encoding::percent_decode_str;
use xshell::{Shell, cmd};

/// Tasks seeded into every benchmark database (and sysbench's table size).
pub const ROWS: u32 = 10_000;

/// The MySQL-compatible server to measure against, from the URL the tests use.
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
    pub fn sql(&self, sh: &Shell, statements: &str) -> anyhow::Result<()> {
        let (host, port, user) = (&self.host, self.port.to_string(), &self.user);
        let _pwd = sh.push_env("MYSQL_PWD", &self.password);
        cmd!(
            sh,
            "mariadb --protocol=TCP -h {host} -P {port} -u {user} -e {statements}"
        )
        .quiet()
        .run()?;
        Ok(())
    }

    /// The service's configuration for `database` on this server.
    fn configure(&self, command: &mut Command, database: &str) {
        command
            .env("DB_HOST", &self.host)
            .env("DB_PORT", self.port.to_string())
            .env("DB_USERNAME", &self.user)
            .env("DB_PASSWORD", &self.password)
            .env("DB_DATABASE", database)
            .env("SEED_COUNT", ROWS.to_string());
    }
}

/// A running `challenge serve`; dropping it stops the process (SIGTERM, then waits).
pub struct App {
    child: Child,
    port: u16,
}

impl App {
    /// Recreates `database` empty, migrates and seeds it with `binary`, then serves it and waits until
    /// the service is ready. The database is the binary's own, so two revisions with different
    /// migrations can be measured side by side.
    pub fn start(sh: &Shell, binary: &Path, db: &DbServer, database: &str) -> anyhow::Result<App> {
        db.sql(
            sh,
            &format!("DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database};"),
        )?;
        let mut migrate = Command::new(binary);
        migrate.args(["migrate", "--seed"]).stdout(Stdio::null());
        db.configure(&mut migrate, database);
        let status = migrate
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        anyhow::ensure!(
            status.success(),
            "seeding {database} with {} failed",
            binary.display()
        );

        let port = crate::util::free_port()?;
        let mut serve = Command::new(binary);
        serve
            .arg("serve")
            .env("PORT", port.to_string())
            .stdout(Stdio::null());
        db.configure(&mut serve, database);
        let app = App {
            child: serve
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?,
            port,
        };
        wait_ready(binary, port)?;
        Ok(app)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where wrk sends its requests (the scripts set the rest of the path).
    pub fn tasks_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/tasks", self.port)
    }

    /// The process's peak resident set (VmHWM) so far.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        crate::bench::line_value(&status, "VmHWM:")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmHWM missing from /proc/<pid>/status")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_ready(binary: &Path, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let ok = Command::new(binary)
            .arg("healthcheck")
            .env("PORT", port.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "{} did not become ready on port {port} within 30 s",
        binary.display()
    )
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
}
