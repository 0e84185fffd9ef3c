//! The servers under test: a `challenge` binary, or the Go peer, serving its own seeded database on a
//! free port.

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

/// How `challenge` logs under measurement. The Go peer writes no log line at all, so the comparison
/// (and every row measured beside it) runs `challenge` at `warn`: no request log lines.
pub const QUIET_LOG: &str = "warn";

/// A running server; dropping it stops the process.
pub struct App {
    service: Service,
}

impl App {
    /// Recreates `database` empty, migrates and seeds it with `binary`, then serves it with request
    /// logs off (`RUST_LOG=warn`) and waits until the service is ready. The database is the binary's
    /// own, so two revisions with different migrations can be measured side by side.
    pub fn start(binary: &Path, db: &DbServer, database: &str) -> anyhow::Result<App> {
        seed(binary, db, database)?;
        App::serve(binary, db, database, &[("RUST_LOG", Some(QUIET_LOG))])
    }

    /// Serves an already seeded `database` with `binary` (`challenge serve`), `env` set (`None`:
    /// removed, so the service's default applies whatever this process has set).
    pub fn serve(
        binary: &Path,
        db: &DbServer,
        database: &str,
        env: &[(&str, Option<&str>)],
    ) -> anyhow::Result<App> {
        let mut serve = configured(binary, db, database);
        for (name, value) in env {
            match value {
                Some(value) => serve.env(name, value),
                None => serve.env_remove(name),
            };
        }
        serve.arg("serve");
        let service = Service::start(serve, Output::Stderr, READY_TIMEOUT)?;
        Ok(App { service })
    }

    /// Serves `database` (seeded by `challenge`, see [`seed`]) with the Go peer: ready once
    /// `GET /api/tasks/1` answers 200.
    pub fn go_peer(binary: &Path, db: &DbServer, database: &str) -> anyhow::Result<App> {
        let mut serve = Command::new(binary);
        db.configure(&mut serve, database);
        let ready = |port: u16| {
            ureq::get(&format!("http://127.0.0.1:{port}/api/tasks/1"))
                .call()
                .is_ok_and(|response| response.status() == 200)
        };
        let service = Service::start_probed(
            serve,
            Output::Stderr,
            READY_TIMEOUT,
            "answer 200 on /api/tasks/1",
            &ready,
        )?;
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

    /// CPU time the process (all its threads) has used so far, user and system, in clock ticks.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        cpu_ticks(&stat).with_context(|| format!("no utime and stime in {path}: {stat:?}"))
    }
}

/// Recreates `database` empty, then migrates and seeds it with the `challenge` binary `binary`.
pub fn seed(binary: &Path, db: &DbServer, database: &str) -> anyhow::Result<()> {
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
    Ok(())
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted after the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is field 14, the 12th of these.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux in practice).
pub fn clock_ticks_per_second() -> anyhow::Result<u64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running `getconf CLK_TCK`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .ok()
        .filter(|ticks| *ticks > 0)
        .with_context(|| format!("`getconf CLK_TCK` printed {text:?}, not a positive number"))
}

/// `binary` configured for `database` on `db`, seeding `ROWS` tasks.
fn configured(binary: &Path, db: &DbServer, database: &str) -> Command {
    let mut command = Command::new(binary);
    db.configure(&mut command, database);
    command.env("SEED_COUNT", ROWS.to_string());
    command
}

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    /// /proc/<pid>/stat of a `challenge serve`, as Linux 6.1 prints it (utime 1234, stime 567).
    const STAT: &str = "4242 (challenge) S 4200 4242 4200 0 -1 4194560 1883 0 0 0 1234 567 0 0 20 0 \
                        5 0 123456 123456789 3072 18446744073709551615 1 1 0 0 0 0 0 4096 17638 0 0 \
                        0 17 1 0 0 0 0 0\n";

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        assert_eq!(cpu_ticks(STAT), Some(1801));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let odd = STAT.replace("(challenge)", "(go peer (x) 1 2)");
        assert_eq!(cpu_ticks(&odd), Some(1801));
    }

    #[test]
    fn a_truncated_or_garbled_line_has_no_cpu_time() {
        assert_eq!(cpu_ticks("4242 (challenge) S 4200 4242"), None);
        assert_eq!(cpu_ticks("no parenthesis at all"), None);
        assert_eq!(cpu_ticks(&STAT.replace(" 1234 ", " x ")), None);
    }
}
