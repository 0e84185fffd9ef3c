//! `deployer status` (read from the live deployment) and `deployer history` (the ledger).

use std::time::Duration;

use serde_json::json;

use crate::cli::{HistoryArgs, TargetArg};
use crate::context::Context;
use crate::error::Result;
use crate::ledger::{self, Outcome};

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
        || match app {
            None => format!(
                "{env}: nothing is running (project {}){}",
                probe.project(),
                last.map(|r| format!("; last release {} at {}", r.version, ledger::format_time(r.time)))
                    .unwrap_or_default()
            ),
            Some(app) => format!(
                "environment: {env} (project {})\nversion:     {}\nhealth:      {}\nstate:       {}\nURL:         {}\nsince:       {}\nservices:    {}\n",
                probe.project(),
                live.version.as_deref().unwrap_or("unknown"),
                health.as_deref().unwrap_or("unknown"),
                app.describe(),
                live.url.as_deref().unwrap_or("not published"),
                since.as_deref().unwrap_or("unknown"),
                live.services.join(", "),
            ),
        },
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
            if shown.is_empty() {
                return format!("{env}: no release yet");
            }
            let mut text = format!(
                "{:<20} {:<16} {:<14} {:<7} {:<10} {:<12} {}\n",
                "time", "version", "action", "result", "who", "image", "target"
            );
            for r in shown {
                let image = r.image_id.strip_prefix("sha256:").unwrap_or(&r.image_id);
                text.push_str(&format!(
                    "{:<20} {:<16} {:<14} {:<7} {:<10} {:<12} {}\n",
                    ledger::format_time(r.time),
                    r.version,
                    serde_json::to_value(r.action)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    if r.result == Outcome::Ok {
                        "ok"
                    } else {
                        "FAILED"
                    },
                    r.who,
                    image.chars().take(12).collect::<String>(),
                    r.target
                ));
            }
            text
        });
    Ok(())
}
