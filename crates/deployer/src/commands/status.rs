//! `deployer status` (read from the live deployment) and `deployer history` (the ledger).

use serde_json::json;

use crate::cli::{HistoryArgs, TargetArg};
use crate::context::Context;
use crate::error::Result;
use crate::ledger::{self, Outcome, Record};
use crate::ops::lock;
use crate::platform::Live;
use crate::report::one_line;

pub fn status(ctx: &Context, args: TargetArg) -> Result<()> {
    let target = ctx.target(args.target)?;
    let environment = ctx.environment(&ctx.env_or_default())?;
    let env = environment.name.clone();
    let live = target.live(&environment)?;
    let releases = target.history(&environment)?;
    let last = ledger::current(&releases);
    let app = live.app.as_ref();
    // A status that cannot read the lock still tells what runs.
    let lock = target.lock_holder(&environment).unwrap_or_else(|e| {
        ctx.reporter
            .warn(&format!("cannot read the lock of {env}: {e}"));
        None
    });
    let drift = drift(&live, &releases);
    ctx.reporter.result(
        json!({
            "env": env,
            "project": environment.project(),
            "target": target.name(),
            "running": app.is_some_and(|a| a.running),
            "version": live.version,
            "health": app.map(|a| a.health.clone()),
            "state": app.map(|a| a.state.clone()),
            "url": live.url,
            "since": app.map(|a| a.since.clone()),
            "services": live.services,
            "units": live.units,
            "last_release": last.map(without_manifests),
            "last_operation": releases.last().map(without_manifests),
            "lock": lock,
            "drift": drift,
        }),
        || {
            let mut text = status_text(&env, &environment.project(), &live, last);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if let Some(lock) = &lock {
                text.push_str(&format!("lock:        {}\n", lock::describe(lock)));
            }
            if let Some(drift) = &drift {
                text.push_str(&format!("WARNING:     {}\n", one_line(drift)));
            }
            text
        },
    );
    Ok(())
}

/// Whether what runs differs from what the records say runs, in one sentence: a change made
/// outside the deployer (`kubectl set image`, `docker compose up` by hand), or a release that was
/// interrupted and went on by itself.
pub fn drift(live: &Live, releases: &[Record]) -> Option<String> {
    let running = live.app.as_ref().and(live.version.as_deref());
    let recorded = ledger::current(releases);
    let last = releases.last();
    let interrupted = last
        .filter(|r| r.result == Outcome::Interrupted)
        .map(|r| {
            format!(
                " (the last operation, {} of {} at {}, was interrupted)",
                action_name(r),
                one_line(&r.version),
                ledger::format_time(r.time)
            )
        })
        .unwrap_or_default();
    match (running, recorded) {
        (Some(running), Some(record)) if running != record.version => Some(format!(
            "{} runs, but the newest good release recorded is {} ({} at {} by {}){interrupted}: it was changed \
             outside the deployer or by an unfinished release; deploy the version you want, or `deployer \
             rollback`",
            one_line(running),
            one_line(&record.version),
            action_name(record),
            ledger::format_time(record.time),
            one_line(&record.who)
        )),
        (Some(running), None) if last.is_some() => Some(format!(
            "{} runs, but no good release of it is recorded{interrupted}: it was started outside the deployer or \
             by an unfinished release",
            one_line(running)
        )),
        (None, Some(record)) => {
            let what = if live.app.is_none() {
                "nothing runs"
            } else {
                "the running app's version is unknown"
            };
            Some(format!(
                "{what}, but the newest record says {} is deployed ({} at {}): it was stopped or changed \
                 outside the deployer; deploy it again, or `deployer down` to record that it is gone",
                one_line(&record.version),
                action_name(record),
                ledger::format_time(record.time)
            ))
        }
        _ => None,
    }
}

fn action_name(record: &Record) -> String {
    serde_json::to_value(record.action)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A record as `status` and `history` show it: the manifests it applied are long and belong to
/// `render`, so they are left out.
fn without_manifests(record: &Record) -> Record {
    Record {
        manifests: None,
        ..record.clone()
    }
}

pub fn history(ctx: &Context, args: HistoryArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let environment = ctx.environment(&ctx.env_or_default())?;
    let env = environment.name.clone();
    let releases: Vec<Record> = target
        .history(&environment)?
        .iter()
        .map(without_manifests)
        .collect();
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
            let mut text = format!(
                "environment: {env} (project {project})\nversion:     {}\nhealth:      {}\nstate:       {}\nURL:         {}\n\
                 since:       {}\nservices:    {}\n",
                one_line(live.version.as_deref().unwrap_or("unknown")),
                one_line(&app.health),
                one_line(&app.state),
                one_line(live.url.as_deref().unwrap_or("not published")),
                one_line(&app.since),
                one_line(&live.services.join(", ")),
            );
            if let Some(replicas) = last.and_then(|r| r.replicas) {
                // Compose: the release's count (its record) against the app containers there.
                let ready = live.units.iter().filter(|u| u.ready).count();
                text.push_str(&format!(
                    "replicas:    {replicas} (app containers: {} running, {ready} ready)\n",
                    live.units.iter().filter(|u| u.state == "running").count()
                ));
            }
            for unit in live.units.iter().filter(|u| u.name.contains('-')) {
                // Pods (Kubernetes) by name; Compose's one container is the state line above.
                text.push_str(&format!(
                    "pod:         {} {}{}, restarts {}\n",
                    one_line(&unit.name),
                    one_line(&unit.state),
                    if unit.ready { ", ready" } else { "" },
                    unit.restarts
                ));
            }
            text
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
            action_name(r),
            r.result.label(),
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
    use crate::ledger::Ledger;
    use crate::platform::{AppState, Unit};

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

    fn record(version: &str, result: Outcome) -> Record {
        Record {
            replicas: None,
            version: version.into(),
            image_id: String::new(),
            time: time::OffsetDateTime::UNIX_EPOCH,
            action: crate::ledger::Action::Deploy,
            result,
            who: "alice".into(),
            target: "kubernetes".into(),
            port: 0,
            image: String::new(),
            revision: None,
            schema_version: None,
            purged_data: false,
            manifests: None,
        }
    }

    fn running(version: &str) -> Live {
        Live {
            version: Some(version.into()),
            app: Some(AppState {
                running: true,
                ..AppState::default()
            }),
            ..Live::default()
        }
    }

    #[test]
    fn what_runs_as_recorded_is_no_drift() {
        let releases = [record("1", Outcome::Ok), record("2", Outcome::Ok)];
        assert_eq!(drift(&running("2"), &releases), None);
        assert_eq!(drift(&Live::default(), &[]), None);
    }

    #[test]
    fn a_version_changed_outside_the_deployer_is_drift_naming_both() {
        let releases = [record("1", Outcome::Ok), record("2", Outcome::Ok)];
        let text = drift(&running("9.9.9"), &releases).unwrap();
        assert!(
            text.starts_with("9.9.9 runs, but the newest good release recorded is 2 (deploy at"),
            "{text}"
        );
        assert!(
            text.contains("by alice") && text.contains("outside the deployer"),
            "{text}"
        );
    }

    #[test]
    fn an_interrupted_release_that_went_on_is_drift_that_says_so() {
        let releases = [record("1", Outcome::Ok), record("2", Outcome::Interrupted)];
        let text = drift(&running("2"), &releases).unwrap();
        assert!(
            text.starts_with("2 runs, but the newest good release recorded is 1"),
            "{text}"
        );
        assert!(
            text.contains("deploy of 2 at 1970-01-01T00:00:00Z, was interrupted"),
            "{text}"
        );
    }

    #[test]
    fn a_recorded_release_that_no_longer_runs_is_drift() {
        let text = drift(&Live::default(), &[record("1", Outcome::Ok)]).unwrap();
        assert!(
            text.starts_with("nothing runs, but the newest record says 1 is deployed"),
            "{text}"
        );
        let unrecorded = drift(&running("3"), &[record("3", Outcome::Failed)]).unwrap();
        assert!(
            unrecorded.starts_with("3 runs, but no good release of it is recorded"),
            "{unrecorded}"
        );
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
            app: Some(AppState {
                running: true,
                health: "healthy\u{1b}[2J".into(),
                state: "running".into(),
                since: "2026-01-02T03:04:05Z\r".into(),
            }),
            url: Some("http://127.0.0.1:8000".into()),
            services: vec!["app".into(), "db\u{7}".into()],
            units: vec![Unit {
                name: "challenge-7d9f-x\u{1b}[1A".into(),
                state: "Running".into(),
                ready: true,
                restarts: 1,
            }],
        };
        let running = status_text("dev", "infra-challenge-dev", &live, releases.last());
        assert_no_terminal_controls(&running);
        assert!(
            running.contains(r"health:      healthy\u{1b}[2J"),
            "{running}"
        );
        assert!(running.contains(r"services:    app, db\u{7}"), "{running}");
        assert!(
            running.contains(r"pod:         challenge-7d9f-x\u{1b}[1A Running, ready, restarts 1"),
            "{running}"
        );
    }

    #[test]
    fn status_shows_the_recorded_replica_count_beside_the_containers_there() {
        let mut release = record("1.0.0", Outcome::Ok);
        release.replicas = Some(3);
        let unit = |ready: bool| Unit {
            name: "0123456789ab".into(),
            state: "running".into(),
            ready,
            restarts: 0,
        };
        let live = Live {
            units: vec![unit(true), unit(true), unit(false)],
            ..running("1.0.0")
        };
        let text = status_text("dev", "infra-challenge-dev", &live, Some(&release));
        assert!(
            text.contains("replicas:    3 (app containers: 3 running, 2 ready)"),
            "{text}"
        );
        let unrecorded = status_text(
            "dev",
            "infra-challenge-dev",
            &live,
            Some(&record("1.0.0", Outcome::Ok)),
        );
        assert!(!unrecorded.contains("replicas:"), "{unrecorded}");
    }
}
