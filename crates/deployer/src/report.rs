//! The one place that talks to the user: a person on a terminal (spinners, elapsed times, plain
//! sentences on stderr) or a machine (`--output json`: one JSON object per line on stdout).
//!
//! Commands describe what happens; the reporter decides how it looks. Data a command was asked for
//! (status, history, render) goes to stdout in both modes so it can be piped.
//!
//! Text read from outside the deployer (the ledger, which a person may edit by hand; labels and
//! states the engine reports) may hold terminal escape sequences. Everything the text reporter
//! prints goes through [`printable`], which shows control characters as `\u{1b}`-style escapes, so
//! such a value cannot clear the screen, move the cursor or rewrite a line it did not write. In JSON
//! events serde escapes the C0 controls and [`json_line`] the rest, so a JSON line is safe to read on
//! a terminal too.
//!
//! Whatever the output format, every event is also built as JSON and, when the standard OTLP
//! variables name an endpoint, sent as an OTLP log record (see [`event_log`] and the otlp-events
//! crate), so a pipeline's deploys can be searched next to the service's logs.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use otlp_events::{EventLog, Run};

use crate::cli::{Cli, Command};
use crate::context::DEFAULT_ENV;
use crate::error::Error;
use crate::interrupt::Stop;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Sentences and spinners for a person.
    Text,
    /// One JSON event per line on stdout, for CI.
    Json,
}

/// Whether a terminal would act on `c` instead of showing it: C0 and C1 controls and DEL (ESC, CR,
/// BEL, CSI, ...) and the bidirectional controls that reorder how the rest of a line is shown.
fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value shown inside a line (a version, a login name, a table cell): every control character
/// escaped, line breaks and tabs included, so the value stays on its line and in its column.
pub fn one_line(value: &str) -> Cow<'_, str> {
    escape_where(value, is_terminal_control)
}

/// Text as the text reporter prints it: the line breaks and tabs the deployer writes are kept,
/// every other control character is escaped.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| {
        is_terminal_control(c) && !matches!(c, '\n' | '\t')
    })
}

/// One JSON event as text. serde escapes the C0 controls inside strings, as JSON requires; DEL,
/// the C1 controls (a terminal may read U+009B as CSI) and the bidirectional controls are escaped
/// here too, as `\u009b`, which JSON reads back as the same character.
fn json_line(value: &Value) -> String {
    let text = value.to_string();
    if !text.chars().any(is_terminal_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        // Outside strings JSON has only ASCII punctuation and spaces: these can only be in a string.
        if is_terminal_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

pub struct Reporter {
    format: OutputFormat,
    /// Whether stderr is a terminal (spinners are drawn only then).
    fancy: bool,
    /// Whether a signal asked the operation to stop: every step's waits check it.
    stop: Stop,
    /// Where events go as OTLP log records too, when the variables configure an endpoint.
    events: Option<EventLog>,
}

/// The OTLP export of this run's events, when the standard variables configure one; a variable
/// that cannot be used (or an endpoint the exporter refuses) is a usage error naming it. The records carry the environment, the version
/// (the command's, else the one a parent `cargo xtask ci` passed down), the ci stage and Jenkins'
/// `BUILD_URL`.
pub fn event_log(cli: &Cli) -> Result<Option<EventLog>, Error> {
    let inherited = Run::from_env();
    let run = Run {
        environment: run_environment(cli),
        version: command_version(cli.command.as_ref()).or(inherited.version.clone()),
        ..inherited
    };
    EventLog::from_env("deployer", env!("CARGO_PKG_VERSION"), run)
        .map_err(|e| Error::usage(format!("{e} (OTLP export of the deployer's events)")))
}

/// The environment a command acts on: `--env`, else the default; a build has none, and the
/// interactive mode asks for it later.
fn run_environment(cli: &Cli) -> Option<String> {
    match &cli.command {
        Some(Command::Build(_)) => None,
        None => cli.global.env.clone(),
        Some(_) => Some(
            cli.global
                .env
                .clone()
                .unwrap_or_else(|| DEFAULT_ENV.to_owned()),
        ),
    }
}

/// The version the command names, if it names one.
fn command_version(command: Option<&Command>) -> Option<String> {
    match command? {
        Command::Build(args) => args.version.clone(),
        Command::Deploy(args) => args.version.clone(),
        Command::Render(args) => args.version.clone(),
        Command::Rollback(args) => args.to.clone(),
        Command::Diff(args) => Some(args.version.clone()),
        _ => None,
    }
}

impl Reporter {
    pub fn new(format: OutputFormat) -> Self {
        Reporter {
            format,
            fancy: format == OutputFormat::Text && std::io::stderr().is_terminal(),
            stop: Stop::process(),
            events: None,
        }
    }

    /// Sends every event to `events` too, from now on.
    pub fn send_events_to(&mut self, events: EventLog) {
        self.events = Some(events);
    }

    /// A reporter whose steps answer to `stop` instead of the process's signals (tests).
    #[cfg(test)]
    pub fn with_stop(format: OutputFormat, stop: Stop) -> Self {
        Reporter {
            stop,
            ..Reporter::new(format)
        }
    }

    /// The stop request the steps check.
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// An event: an OTLP log record when events are exported, and in JSON a line on stdout,
    /// `{"event": kind, ...fields}`.
    fn emit(&self, kind: &str, fields: Value) {
        // Every caller builds its fields with `json!({ ... })`.
        let fields = match fields {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        if let Some(events) = &self.events {
            events.emit(kind, &fields);
        }
        if self.format != OutputFormat::Json {
            return;
        }
        let mut object = serde_json::Map::new();
        object.insert("event".into(), Value::from(kind));
        object.extend(fields);
        let line = json_line(&Value::Object(object));
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not worth failing a deploy for.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn is_text(&self) -> bool {
        self.format == OutputFormat::Text
    }

    pub fn info(&self, message: &str) {
        self.emit("info", json!({ "message": message }));
        if self.is_text() {
            eprintln!("{}", printable(message));
        }
    }

    pub fn warn(&self, message: &str) {
        self.emit("warning", json!({ "message": message }));
        if self.is_text() {
            eprintln!("warning: {}", printable(message));
        }
    }

    /// A titled block of lines (a log tail, a health log) shown as is.
    pub fn block(&self, title: &str, lines: &[String]) {
        self.emit("block", json!({ "title": title, "lines": lines }));
        if self.is_text() {
            let title = one_line(title);
            eprintln!("--- {title} ---");
            for line in lines {
                eprintln!("  {}", printable(line));
            }
            eprintln!("--- end of {title} ---");
        }
    }

    /// What a deploy is about to change: an event of its own in JSON, the sentence on a terminal.
    pub fn changes(&self, changes: &crate::platform::Changes, human: &str) {
        self.emit(
            "diff",
            json!({ "changes": changes.changes, "unchanged": changes.unchanged }),
        );
        if self.is_text() {
            eprintln!("{}", printable(human));
        }
    }

    /// The data a command was asked for: `human` on a terminal, `data` as a `result` event in JSON.
    pub fn result(&self, data: Value, human: impl FnOnce() -> String) {
        self.emit("result", data);
        if self.is_text() {
            let human = human();
            let text = printable(&human);
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{text}");
            if !text.ends_with('\n') {
                let _ = writeln!(out);
            }
        }
    }

    pub fn error(&self, error: &Error) {
        if let Error::Changes(_) = error {
            // Not a failure: the result already said what would change; the exit code tells.
            return;
        }
        let mut fields = json!({ "kind": error.kind(), "exit_code": error.exit_code(), "message": error.to_string() });
        if let Error::DeployFailed { restore, .. } = error {
            fields["restore"] = json!(restore.name());
        }
        self.emit("error", fields);
        if self.is_text() {
            eprintln!("error: {}", printable(&error.to_string()));
        }
    }

    /// Starts a step that takes a while: a spinner with elapsed time on a terminal.
    pub fn step(&self, name: &str) -> Step<'_> {
        self.emit("step_started", json!({ "step": name }));
        let bar = if self.fancy {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(one_line(name).into_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            if self.is_text() {
                eprintln!("{} ...", one_line(name));
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
        if let Some(bar) = &self.bar {
            bar.set_message(one_line(&format!("{} ({detail})", self.name)).into_owned());
        }
        self.reporter.emit(
            "step_progress",
            json!({ "step": self.name, "detail": detail, "elapsed_ms": self.elapsed_ms() }),
        );
    }

    fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    /// Whether a signal asked the operation to stop: a wait that sees it returns at once.
    pub fn interrupted(&self) -> bool {
        self.reporter.stop.requested()
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
        self.reporter.emit(
            "step_finished",
            json!({ "step": self.name, "ok": ok, "summary": summary, "elapsed_ms": elapsed.as_millis() }),
        );
        if self.reporter.is_text() {
            eprintln!("{}", one_line(&line));
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
        if !self.name.is_empty() {
            self.reporter.emit(
                "step_finished",
                json!({ "step": self.name, "ok": false, "summary": "interrupted", "elapsed_ms": self.elapsed_ms() }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_every_control_character() {
        assert_eq!(one_line("1.0.0"), "1.0.0");
        assert!(matches!(one_line("plain text"), Cow::Borrowed(_)));
        assert_eq!(one_line("\u{1b}[2Jroot"), r"\u{1b}[2Jroot");
        assert_eq!(one_line("a\rb\u{7}c\nd\te"), r"a\u{d}b\u{7}c\u{a}d\u{9}e");
        // C1 CSI, DEL, NUL, and a right-to-left override.
        assert_eq!(
            one_line("\u{9b}2J\u{7f}\u{0}\u{202e}x"),
            r"\u{9b}2J\u{7f}\u{0}\u{202e}x"
        );
        assert_eq!(one_line("déjà vu ✔"), "déjà vu ✔");
    }

    #[test]
    fn json_events_escape_c1_and_bidi_controls_and_read_back_the_same() {
        let value = json!({ "who": "eve\r\u{9b}31m\u{7f}\u{202e}x\u{1b}" });
        let line = json_line(&value);
        assert!(!line.chars().any(is_terminal_control), "{line:?}");
        assert!(line.contains(r"\u009b31m\u007f\u202ex\u001b"), "{line}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), value);
    }

    #[test]
    fn printable_keeps_line_breaks_and_tabs_but_escapes_the_rest() {
        assert_eq!(printable("a\n\tb\n"), "a\n\tb\n");
        assert_eq!(
            printable("ok\n\u{1b}]0;owned\u{7}\r"),
            r"ok
\u{1b}]0;owned\u{7}\u{d}"
        );
    }
}
