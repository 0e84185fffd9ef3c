//! Running external tools (`docker`, `docker-compose`, `git`) with their output captured and a
//! deadline, so a hung engine can never hang the deployer.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A command to run: program, arguments, extra environment, working directory.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<OsString>,
    envs: Vec<(String, OsString)>,
    dir: Option<PathBuf>,
}

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stderr when there is one, else stdout: the part that explains a failure.
    pub fn explanation(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.trim().to_string()
    }
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Program and arguments: what the command would run, as a value a unit test can assert.
    #[cfg(test)]
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    /// The value the command would get for an environment variable it sets.
    #[cfg(test)]
    pub fn env_value(&self, key: &str) -> Option<String> {
        self.envs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    /// The command as a person would type it (environment left out: it may hold paths to secrets).
    pub fn display(&self) -> String {
        let mut text = self.program.clone();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        text
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    fn spawn_error(&self, error: std::io::Error) -> Error {
        if error.kind() == std::io::ErrorKind::NotFound {
            Error::prerequisite(
                format!("`{}` is not installed or not on PATH", self.program),
                match self.program.as_str() {
                    "docker" => "install Docker Engine (Debian: `apt-get install docker.io`)",
                    "docker-compose" => {
                        "install Compose (`apt-get install docker-compose`, or the `docker compose` plugin)"
                    }
                    "git" => "install git (`apt-get install git`)",
                    _ => "install it and make sure it is on PATH",
                },
            )
        } else {
            Error::Command {
                command: self.display(),
                detail: error.to_string(),
            }
        }
    }

    /// Runs to completion (killed after `timeout`) and captures stdout and stderr.
    pub fn output(&self, timeout: Duration) -> Result<Output> {
        self.output_watched(timeout, &mut |_| {})
    }

    /// Like `output`, and hands every line printed (stdout or stderr) to `on_line` as it comes,
    /// e.g. to show a long build's progress.
    pub fn output_watched(
        &self,
        timeout: Duration,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Output> {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let (lines_tx, lines) = mpsc::channel();
        let stdout = drain(child.stdout.take(), lines_tx.clone());
        let stderr = drain(child.stderr.take(), lines_tx);
        let deadline = Instant::now() + timeout;
        let status = loop {
            while let Ok(line) = lines.try_recv() {
                on_line(&line);
            }
            match child.try_wait().map_err(|e| self.spawn_error(e))? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Command {
                        command: self.display(),
                        detail: format!("no answer within {}s", timeout.as_secs()),
                    });
                }
                None => thread::sleep(Duration::from_millis(25)),
            }
        };
        let output = Output {
            success: status.success(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        for line in lines.try_iter() {
            on_line(&line);
        }
        Ok(output)
    }

    /// Like `output`, but a non-zero exit is an error carrying the tool's explanation.
    pub fn checked(&self, timeout: Duration) -> Result<String> {
        let output = self.output(timeout)?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(Error::Command {
                command: self.display(),
                detail: output.explanation(),
            })
        }
    }

    /// Runs attached to the user's terminal (e.g. `logs --follow`); returns the exit code.
    pub fn interactive(&self) -> Result<i32> {
        let status = self
            .command()
            .stdin(Stdio::null())
            .status()
            .map_err(|e| self.spawn_error(e))?;
        Ok(status.code().unwrap_or(1))
    }
}

/// Reads a pipe to its end on a thread: returns everything, and sends each line as it arrives.
fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
    lines: mpsc::Sender<String>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = Vec::new();
        if let Some(pipe) = pipe {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                // The receiver may be gone (the command timed out): the text is still collected.
                let _ = lines.send(String::from_utf8_lossy(&line).trim_end().to_string());
                all.append(&mut line);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_a_prerequisite_error_with_a_fix() {
        let error = Cmd::new("surely-not-installed-tool")
            .output(Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::PREREQUISITE);
    }

    #[test]
    fn a_command_past_its_deadline_is_killed() {
        let started = Instant::now();
        let error = Cmd::new("sleep")
            .arg("5")
            .output(Duration::from_millis(200))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(error.to_string().contains("no answer"), "{error}");
    }

    #[test]
    fn watched_output_hands_over_every_line() {
        let mut seen = Vec::new();
        let output = Cmd::new("sh")
            .args(["-c", "echo one; echo two >&2; echo three"])
            .output_watched(Duration::from_secs(5), &mut |line| {
                seen.push(line.to_string())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, ["one", "three", "two"]);
        assert_eq!(output.stdout, "one\nthree\n");
    }

    #[test]
    fn checked_reports_stderr_of_a_failing_command() {
        let error = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .checked(Duration::from_secs(5))
            .unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");
    }
}
