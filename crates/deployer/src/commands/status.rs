//! `deployer status` (read from the live deployment) and `deployer history` (the ledger).

use std::time::Duration;

use serde_json::json;

use crate::cli::{HistoryArgs, TargetArg};
use crate::context::Context;
use crate::error::Result;
use crate::ledger::{self, Outcome, Record};
use crate::platform::Live;
use crate::report::one_line;

pub fn status(ctx: &Context, args: TargetArg) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.env_or_default();
    crate::docker::engine_version()?;
    let probe = ctx.plan(&env, "probe", Duration::from_secs(1))?;
    let live = target.live(&probe)?;
    let releases = ctx.ledger(&env).load()?;
    let last = ledger::current(&releases);
    let app = live.app.as_ref();
    let health = app.map(|a| a.health.clone().unwrap_or_else(|| a.status.clone()));
    let since = app.map(|a| a.started_at.clone());
    ctx.reporter.result(
        json!({
            "env": env,
            "project": probe.project(),
            "target": target.name(),
            "running": app.is_some_and(|a| a.status == "running"),
            "version": live.version,
            "health": health,
            "state": app.map(|a| a.describe()),
            "url": live.url,
            "since": since,
            "services": live.services,
            "last_release": last,
        }),
        || status_text(&env, &probe.project(), &live, last),
    );
    Ok(())
}

pub fn history(ctx: &Context, args: HistoryArgs) -> Result<()> {
    let env = ctx.env_or_default();
    let releases = ctx.ledger(&env).load()?;
    let shown = &releases[releases
        .len()
        .saturating_sub(args.limit.unwrap_or(usize::MAX))..];
    ctx.reporter
        .result(json!({ "env": env, "releases": shown }), || {
            history_table(&env, shown)
        });
    Ok(())
}

/// `status` for a person. Every value read from the engine or the ledger is shown through
/// [`one_line`]: a hand-edited ledger or an odd label cannot send escape sequences to the terminal.
fn status_text(env: &str, project: &str, live: &Live, last: Option<&Record>) -> String {
    match &live.app {
        None => format!(
            "{env}: nothing is running (project {project}){}",
            last.map(|r| format!(
                "; last release {} at {}",
                one_line(&r.version),
                ledger::format_time(r.time)
            ))
            .unwrap_or_default()
        ),
        Some(app) => {
            let health = app.health.as_deref().unwrap_or(&app.status);
            format!(
                "environment: {env} (project {project})\nversion:     {}\nhealth:      {}\nstate:       {}\nURL:         {}\n\
                 since:       {}\nservices:    {}\n",
                one_line(live.version.as_deref().unwrap_or("unknown")),
                one_line(health),
                one_line(&app.describe()),
                one_line(live.url.as_deref().unwrap_or("not published")),
                one_line(&app.started_at),
                one_line(&live.services.join(", ")),
            )
        }
    }
}

/// `history` for a person: one release per line, every ledger field through [`one_line`] (the
/// ledger is a file a person may edit, and a field may hold a line break or an escape sequence).
fn history_table(env: &str, releases: &[Record]) -> String {
    if releases.is_empty() {
        return format!("{env}: no release yet");
    }
    let mut text = format!(
        "{:<20} {:<16} {:<14} {:<7} {:<10} {:<12} {}\n",
        "time", "version", "action", "result", "who", "image", "target"
    );
    for r in releases {
        let image = r.image_id.strip_prefix("sha256:").unwrap_or(&r.image_id);
        let image: String = image.chars().take(12).collect();
        text.push_str(&format!(
            "{:<20} {:<16} {:<14} {:<7} {:<10} {:<12} {}\n",
            ledger::format_time(r.time),
            one_line(&r.version),
            serde_json::to_value(r.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            if r.result == Outcome::Ok {
                "ok"
            } else {
                "FAILED"
            },
            one_line(&r.who),
            one_line(&image),
            one_line(&r.target)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::docker::ContainerState;
    use crate::ledger::Ledger;

    /// A ledger a person edited by hand: escape sequences, a carriage return, a bell, a C1 CSI and
    /// a line break in the fields a table shows.
    fn hostile_ledger() -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        let line = r#"{"version":"1.0.0\u001b[2J","image_id":"sha256:\u001b]0;pwned\u0007","time":"2026-01-02T03:04:05Z","action":"deploy","result":"ok","who":"eve\r\u009b31mroot\nfake row","target":"compose\u001b[1A","port":8000}"#;
        std::fs::File::create(dir.path().join("releases.jsonl"))
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        ledger.load().unwrap()
    }

    fn assert_no_terminal_controls(text: &str) {
        let bad: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(bad.is_empty(), "{bad:?} reach the terminal in {text:?}");
    }

    #[test]
    fn history_shows_escape_sequences_from_the_ledger_as_text() {
        let releases = hostile_ledger();
        let table = history_table("dev", &releases);
        assert_no_terminal_controls(&table);
        assert_eq!(
            table.lines().count(),
            2,
            "a line break in a field adds no row: {table}"
        );
        for shown in [
            r"1.0.0\u{1b}[2J",
            r"eve\u{d}\u{9b}31mroot\u{a}fake row",
            r"compose\u{1b}[1A",
        ] {
            assert!(table.contains(shown), "{shown} missing from {table}");
        }
        assert!(table.contains(r"\u{1b}]0;pwned"), "{table}");
    }

    #[test]
    fn status_shows_escape_sequences_from_the_ledger_and_engine_as_text() {
        let releases = hostile_ledger();
        let nothing = status_text(
            "dev",
            "infra-challenge-dev",
            &Live::default(),
            releases.last(),
        );
        assert_no_terminal_controls(&nothing);
        assert!(
            nothing.contains(r"last release 1.0.0\u{1b}[2J at"),
            "{nothing}"
        );

        let live = Live {
            version: Some("1.0.0".into()),
            app: Some(ContainerState {
                status: "running".into(),
                health: Some("healthy\u{1b}[2J".into()),
                started_at: "2026-01-02T03:04:05Z\r".into(),
                ..ContainerState::default()
            }),
            url: Some("http://127.0.0.1:8000".into()),
            services: vec!["app".into(), "db\u{7}".into()],
        };
        let running = status_text("dev", "infra-challenge-dev", &live, releases.last());
        assert_no_terminal_controls(&running);
        assert!(
            running.contains(r"health:      healthy\u{1b}[2J"),
            "{running}"
        );
        assert!(running.contains(r"services:    app, db\u{7}"), "{running}");
    }
}
