//! The service under test: a `challenge` binary serving its own seeded database on a free port.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::service::{Output, Service};
use crate::testdb::DbServer;

/// Tasks seeded into every benchmark database (and sysbench's table size).
pub const ROWS: u32 = 10_000;
/// Serving an already seeded database is ready within a second or two.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `challenge serve`; dropping it stops the process.
pub struct App {
    service: Service,
}

impl App {
    /// Recreates `database` empty, migrates and seeds it with `binary`, then serves it and waits until
    /// the service is ready. The database is the binary's own, so two revisions with different
    /// migrations can be measured side by side.
    pub fn start(binary: &Path, db: &DbServer, database: &str) -> anyhow::Result<App> {
        db.recreate(database)?;
        let mut migrate = configured(binary, db, database);
        migrate.args(["migrate", "--seed"]).stdout(Stdio::null());
        let status = migrate
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        anyhow::ensure!(
            status.success(),
            "seeding {database} with {} failed",
            binary.display()
        );

        let mut serve = configured(binary, db, database);
        serve.arg("serve");
        let service = Service::start(serve, Output::Stderr, READY_TIMEOUT)?;
        Ok(App { service })
    }

    pub fn pid(&self) -> u32 {
        self.service.pid()
    }

    /// Where wrk sends its requests (the scripts set the rest of the path).
    pub fn tasks_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/tasks", self.service.port())
    }

    /// The process's peak resident set (VmHWM) so far.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        crate::bench::line_value(&status, "VmHWM:")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmHWM missing from /proc/<pid>/status")
    }
}

/// `binary` configured for `database` on `db`, seeding `ROWS` tasks.
fn configured(binary: &Path, db: &DbServer, database: &str) -> Command {
    let mut command = Command::new(binary);
    db.configure(&mut command, database);
    command.env("SEED_COUNT", ROWS.to_string());
    command
}
