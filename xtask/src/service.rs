//! A `challenge serve` run by a task (schemathesis, the benchmarks): started on a free port, waited
//! for until `challenge healthcheck` passes, stopped when dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util;

/// Where the service's output goes.
pub enum Output {
    /// Standard output and error both into this file (created afresh); its tail explains a failed start.
    File(PathBuf),
    /// Standard output discarded, standard error on the task's own.
    Stderr,
}

/// A running service; dropping it stops the process (SIGTERM, then waits).
pub struct Service {
    child: Child,
    port: u16,
}

impl Service {
    /// Starts `serve` (the `challenge` binary with its arguments and configuration) with `PORT` set
    /// to a free port, and waits until it is ready: `challenge healthcheck` passes (`/readyz` answers
    /// 200). Fails as soon as the process exits, and when `ready_timeout` passes first.
    pub fn start(
        serve: Command,
        output: Output,
        ready_timeout: Duration,
    ) -> anyhow::Result<Service> {
        let binary = PathBuf::from(serve.get_program());
        let healthcheck = move |port: u16| {
            Command::new(&binary)
                .arg("healthcheck")
                .env("PORT", port.to_string())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        Service::start_probed(
            serve,
            output,
            ready_timeout,
            "answer 200 on /readyz",
            &healthcheck,
        )
    }

    /// Like [`Service::start`] for a server that is not `challenge` (the benchmark's Go peer): ready
    /// once `ready(port)` says so; `readiness` says what it checks, for the error.
    pub fn start_probed(
        mut serve: Command,
        output: Output,
        ready_timeout: Duration,
        readiness: &str,
        ready: &dyn Fn(u16) -> bool,
    ) -> anyhow::Result<Service> {
        let binary = PathBuf::from(serve.get_program());
        let port = util::free_port()?;
        serve.env("PORT", port.to_string());
        let log = match output {
            Output::File(path) => {
                let file =
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                serve.stdout(file.try_clone()?).stderr(file);
                Some(path)
            }
            Output::Stderr => {
                serve.stdout(Stdio::null());
                None
            }
        };
        let child = serve
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut service = Service { child, port };
        service.wait_ready(&binary, log.as_deref(), ready_timeout, readiness, ready)?;
        Ok(service)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(
        &mut self,
        binary: &Path,
        log: Option<&Path>,
        timeout: Duration,
        readiness: &str,
        ready: &dyn Fn(u16) -> bool,
    ) -> anyhow::Result<()> {
        let its_log = || match log {
            Some(path) => format!(
                "; its log:\n{}",
                tail(&fs::read_to_string(path).unwrap_or_default())
            ),
            None => " (its log is above)".to_owned(),
        };
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready{}",
                    binary.display(),
                    its_log()
                );
            }
            if ready(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "{} did not {readiness} (port {}) within {timeout:?}{}",
            binary.display(),
            self.port,
            its_log()
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

/// The last lines of a log, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tail_keeps_the_last_twenty_lines() {
        let log: String = (1..=25).map(|n| format!("line {n}\n")).collect();
        let kept = tail(&log);
        assert_eq!(kept.lines().count(), 20);
        assert!(kept.starts_with("line 6\n") && kept.ends_with("line 25"));
        assert_eq!(tail("only\n"), "only");
    }
}
