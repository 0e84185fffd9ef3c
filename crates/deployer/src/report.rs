//! The one place that talks to the user: a person on a terminal (spinners, elapsed times, plain
//! sentences on stderr) or a machine (`--output json`: one JSON object per line on stdout).
//!
//! Commands describe what happens; the reporter decides how it looks. Data a command was asked for
//! (status, history, render) goes to stdout in both modes so it can be piped.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Sentences and spinners for a person.
    Text,
    /// One JSON event per line on stdout, for CI.
    Json,
}

pub struct Reporter {
    format: OutputFormat,
    /// Whether stderr is a terminal (spinners are drawn only then).
    fancy: bool,
}

impl Reporter {
    pub fn new(format: OutputFormat) -> Self {
        Reporter {
            format,
            fancy: format == OutputFormat::Text && std::io::stderr().is_terminal(),
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A line of JSON on stdout: `{"event": kind, ...fields}`.
    fn emit(&self, kind: &str, fields: Value) {
        let mut object = serde_json::Map::new();
        object.insert("event".into(), Value::from(kind));
        if let Value::Object(extra) = fields {
            object.extend(extra);
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not worth failing a deploy for.
        let _ = writeln!(out, "{}", Value::Object(object));
        let _ = out.flush();
    }

    pub fn info(&self, message: &str) {
        match self.format {
            OutputFormat::Json => self.emit("info", json!({ "message": message })),
            OutputFormat::Text => eprintln!("{message}"),
        }
    }

    pub fn warn(&self, message: &str) {
        match self.format {
            OutputFormat::Json => self.emit("warning", json!({ "message": message })),
            OutputFormat::Text => eprintln!("warning: {message}"),
        }
    }

    /// A titled block of lines (a log tail, a health log) shown as is.
    pub fn block(&self, title: &str, lines: &[String]) {
        match self.format {
            OutputFormat::Json => self.emit("block", json!({ "title": title, "lines": lines })),
            OutputFormat::Text => {
                eprintln!("--- {title} ---");
                for line in lines {
                    eprintln!("  {line}");
                }
                eprintln!("--- end of {title} ---");
            }
        }
    }

    /// The data a command was asked for: `human` on a terminal, `data` as a `result` event in JSON.
    pub fn result(&self, data: Value, human: impl FnOnce() -> String) {
        match self.format {
            OutputFormat::Json => self.emit("result", data),
            OutputFormat::Text => {
                let text = human();
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "{text}");
                if !text.ends_with('\n') {
                    let _ = writeln!(out);
                }
            }
        }
    }

    pub fn error(&self, error: &Error) {
        match self.format {
            OutputFormat::Json => self.emit(
                "error",
                json!({ "kind": error.kind(), "exit_code": error.exit_code(), "message": error.to_string() }),
            ),
            OutputFormat::Text => eprintln!("error: {error}"),
        }
    }

    /// Starts a step that takes a while: a spinner with elapsed time on a terminal.
    pub fn step(&self, name: &str) -> Step<'_> {
        let bar = if self.fancy {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            match self.format {
                OutputFormat::Json => self.emit("step_started", json!({ "step": name })),
                OutputFormat::Text => eprintln!("{name} ..."),
            }
            None
        };
        Step {
            reporter: self,
            name: name.to_string(),
            started: Instant::now(),
            bar,
            last_detail: String::new(),
        }
    }
}

/// A step in progress. Finish it with `ok` or `failed`; dropping it unfinished counts as failed.
pub struct Step<'a> {
    reporter: &'a Reporter,
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    last_detail: String,
}

impl Step<'_> {
    /// Updates what the step is waiting on (e.g. "health: starting").
    pub fn detail(&mut self, detail: &str) {
        if detail == self.last_detail {
            return;
        }
        self.last_detail = detail.to_string();
        match &self.bar {
            Some(bar) => bar.set_message(format!("{} ({detail})", self.name)),
            None if self.reporter.is_json() => self.reporter.emit(
                "step_progress",
                json!({ "step": self.name, "detail": detail, "elapsed_ms": self.elapsed_ms() }),
            ),
            None => {}
        }
    }

    fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    pub fn ok(self, summary: &str) {
        self.finish(true, summary);
    }

    pub fn failed(self, summary: &str) {
        self.finish(false, summary);
    }

    fn finish(mut self, ok: bool, summary: &str) {
        let elapsed = self.started.elapsed();
        let mark = if ok { "ok" } else { "FAILED" };
        let line = if summary.is_empty() {
            format!("{mark}: {} ({:.1}s)", self.name, elapsed.as_secs_f64())
        } else {
            format!(
                "{mark}: {} - {summary} ({:.1}s)",
                self.name,
                elapsed.as_secs_f64()
            )
        };
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match self.reporter.format {
            OutputFormat::Json => self.reporter.emit(
                "step_finished",
                json!({ "step": self.name, "ok": ok, "summary": summary, "elapsed_ms": elapsed.as_millis() }),
            ),
            OutputFormat::Text => eprintln!("{line}"),
        }
        // Mark as finished so Drop does not report it again.
        self.name.clear();
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.name.is_empty() && self.reporter.is_json() {
            self.reporter.emit(
                "step_finished",
                json!({ "step": self.name, "ok": false, "summary": "interrupted", "elapsed_ms": self.elapsed_ms() }),
            );
        }
    }
}
