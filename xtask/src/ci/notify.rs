//! `notify`: one message for people about what the pipeline did, built from the events the other
//! stages left in target/ci/ (image.json, deploy-<env>.jsonl, smoke-<env>.jsonl), printed, written to
//! target/ci/notification.txt and, when NOTIFY_WEBHOOK_URL is set, POSTed there as `{"text": ...}`
//! (the shape Slack, Mattermost and Teams incoming webhooks accept).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::quality::relative;

/// What one deploy or smoke test did, read from its events.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `deploy` or `smoke`.
    what: &'static str,
    env: String,
    version: Option<String>,
    url: Option<String>,
    ok: bool,
    /// Why it failed (the deployer's error, or the failed checks).
    detail: Option<String>,
}

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn last<'a>(events: &'a [Value], kind: &str) -> Option<&'a Value> {
    events.iter().rev().find(|e| e["event"] == kind)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A deploy: its `result` event, else its `error` event.
fn deploy_outcome(env: &str, events: &[Value]) -> Outcome {
    let result = last(events, "result");
    let error = last(events, "error");
    Outcome {
        what: "deploy",
        env: env.to_owned(),
        version: result.and_then(|r| text(&r["version"])),
        url: result.and_then(|r| text(&r["url"])),
        ok: result.is_some() && error.is_none(),
        detail: error.and_then(|e| text(&e["message"])),
    }
}

/// A smoke test: its closing `smoke` event and the failed `check`s, else the deployer's `error`.
fn smoke_outcome(env: &str, events: &[Value]) -> Outcome {
    let smoke = last(events, "smoke");
    let failed: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "check" && e["ok"] == false)
        .map(|e| {
            format!(
                "{}: {}",
                e["name"].as_str().unwrap_or("?"),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    let error = last(events, "error").and_then(|e| text(&e["message"]));
    Outcome {
        what: "smoke",
        env: env.to_owned(),
        version: smoke.and_then(|s| text(&s["version"])),
        url: smoke.and_then(|s| text(&s["url"])),
        ok: smoke.is_some_and(|s| s["ok"] == true),
        detail: error.or_else(|| (!failed.is_empty()).then(|| failed.join("; "))),
    }
}

/// The link to this run: Jenkins' BUILD_URL, else the GitHub Actions run.
fn run_link(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("BUILD_URL").or_else(|| {
        Some(format!(
            "{}/{}/actions/runs/{}",
            set("GITHUB_SERVER_URL")?.trim_end_matches('/'),
            set("GITHUB_REPOSITORY")?,
            set("GITHUB_RUN_ID")?
        ))
    })
}

/// The message: one headline (what, which version, where, outcome), one line per stage, the link.
fn message(image: Option<&Value>, outcomes: &[Outcome], link: Option<&str>) -> String {
    let version = outcomes
        .iter()
        .find_map(|o| o.version.clone())
        .or_else(|| image.and_then(|i| text(&i["version"])))
        .unwrap_or_else(|| "an unknown version".to_owned());
    let failed = outcomes.iter().any(|o| !o.ok);
    let mut envs: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if !envs.contains(&outcome.env.as_str()) {
            envs.push(&outcome.env);
        }
    }
    let headline = match (outcomes.is_empty(), failed) {
        (true, _) => match image {
            Some(_) => format!("infra-challenge {version}: image built, not deployed"),
            None => "infra-challenge: nothing was built or deployed in this run".to_owned(),
        },
        (false, false) => format!(
            "infra-challenge {version} deployed to {}: succeeded",
            envs.join(", ")
        ),
        (false, true) => format!(
            "infra-challenge {version} deploy to {}: FAILED",
            envs.join(", ")
        ),
    };
    let mut lines = vec![headline];
    if let Some(image) = image {
        lines.push(format!(
            "- image: {} ({:.1} MB)",
            image["tags"][0].as_str().unwrap_or("infra-challenge"),
            image["size_bytes"].as_f64().unwrap_or(0.0) / 1_000_000.0
        ));
    }
    for outcome in outcomes {
        let mut line = format!(
            "- {} {}: {}",
            outcome.what,
            outcome.env,
            if outcome.ok { "ok" } else { "FAILED" }
        );
        if let Some(url) = outcome.url.as_deref().filter(|_| outcome.ok) {
            line.push_str(&format!(", {url}"));
        }
        if let Some(detail) = outcome.detail.as_deref().filter(|_| !outcome.ok) {
            line.push_str(&format!(": {detail}"));
        }
        lines.push(line);
    }
    if let Some(link) = link {
        lines.push(format!("run: {link}"));
    }
    lines.join("\n")
}

/// The outcomes recorded in `reports`, deploys first, then smoke tests, each in dev, qa, prod order.
fn outcomes(reports: &Path) -> Vec<Outcome> {
    let mut found = Vec::new();
    for (what, read) in [
        ("deploy", deploy_outcome as fn(&str, &[Value]) -> Outcome),
        ("smoke", smoke_outcome),
    ] {
        for env in ["dev", "qa", "prod"] {
            if let Ok(text) = std::fs::read_to_string(reports.join(format!("{what}-{env}.jsonl"))) {
                found.push(read(env, &events(&text)));
            }
        }
    }
    found
}

pub fn run(reports: &Path) -> anyhow::Result<String> {
    let image = std::fs::read_to_string(reports.join("image.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let outcomes = outcomes(reports);
    let link = run_link(|name| std::env::var(name).ok());
    let text = message(image.as_ref(), &outcomes, link.as_deref());
    println!("{text}");
    let file = reports.join("notification.txt");
    std::fs::write(&file, format!("{text}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    let sent = match std::env::var("NOTIFY_WEBHOOK_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => {
            post(&url, &text)?;
            "posted to NOTIFY_WEBHOOK_URL"
        }
        None => "not posted (NOTIFY_WEBHOOK_URL is not set)",
    };
    Ok(format!(
        "message from {} report(s) in {}, {sent}",
        outcomes.len() + usize::from(image.is_some()),
        relative(&file)
    ))
}

fn post(url: &str, text: &str) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    // The URL holds the webhook's secret: it is never printed.
    agent
        .post(url)
        .send_json(json!({ "text": text }))
        .map_err(|e| anyhow::anyhow!("posting the message to NOTIFY_WEBHOOK_URL failed: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(lines: &[Value]) -> Vec<Value> {
        events(&lines.iter().map(|v| format!("{v}\n")).collect::<String>())
    }

    fn deploy_ok() -> Vec<Value> {
        jsonl(&[
            json!({"event": "step_started", "step": "deploying 0.1.0-abc1234"}),
            json!({"event": "step_finished", "step": "deploying 0.1.0-abc1234", "ok": true, "summary": "healthy", "elapsed_ms": 6700}),
            json!({"event": "result", "env": "dev", "version": "0.1.0-abc1234", "image_id": "sha256:1",
                   "url": "http://127.0.0.1:8000", "reported_version": "0.1.0-abc1234", "elapsed_ms": 6900, "action": "deploy"}),
        ])
    }

    fn smoke_ok() -> Vec<Value> {
        jsonl(&[
            json!({"event": "result", "env": "dev", "version": "0.1.0-abc1234", "health": "healthy"}),
            json!({"event": "check", "name": "/readyz", "ok": true, "detail": "200 ready"}),
            json!({"event": "smoke", "env": "dev", "version": "0.1.0-abc1234", "url": "http://127.0.0.1:8000", "ok": true}),
        ])
    }

    #[test]
    fn a_successful_deploy_says_version_where_and_link() {
        let image = json!({"version": "0.1.0-abc1234", "tags": ["infra-challenge:0.1.0-abc1234"], "size_bytes": 19_300_000});
        let outcomes = [
            deploy_outcome("dev", &deploy_ok()),
            smoke_outcome("dev", &smoke_ok()),
        ];
        assert_eq!(
            message(Some(&image), &outcomes, Some("https://ci.example/job/7/")),
            "infra-challenge 0.1.0-abc1234 deployed to dev: succeeded\n\
             - image: infra-challenge:0.1.0-abc1234 (19.3 MB)\n\
             - deploy dev: ok, http://127.0.0.1:8000\n\
             - smoke dev: ok, http://127.0.0.1:8000\n\
             run: https://ci.example/job/7/"
        );
    }

    #[test]
    fn a_failed_deploy_says_why() {
        let kubernetes = jsonl(&[
            json!({"event": "error", "kind": "prerequisite", "exit_code": 3,
            "message": "the Kubernetes API is not reachable: context ci at https://10.0.0.1:6443"}),
        ]);
        let outcomes = [
            deploy_outcome("dev", &deploy_ok()),
            deploy_outcome("qa", &kubernetes),
            smoke_outcome("dev", &smoke_ok()),
        ];
        let text = message(None, &outcomes, None);
        assert!(
            text.starts_with("infra-challenge 0.1.0-abc1234 deploy to dev, qa: FAILED\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n- deploy qa: FAILED: the Kubernetes API is not reachable: context ci at https://10.0.0.1:6443\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_smoke_test_lists_the_failed_checks() {
        let failed = jsonl(&[
            json!({"event": "check", "name": "/readyz", "ok": true, "detail": "200 ready"}),
            json!({"event": "check", "name": "/version", "ok": false, "detail": "reports version 1.0.0, expected 1.1.0"}),
            json!({"event": "smoke", "env": "dev", "version": "1.1.0", "url": "http://127.0.0.1:8000", "ok": false}),
        ]);
        let outcome = smoke_outcome("dev", &failed);
        assert!(!outcome.ok);
        assert_eq!(
            outcome.detail.as_deref(),
            Some("/version: reports version 1.0.0, expected 1.1.0")
        );
    }

    #[test]
    fn without_reports_the_message_says_nothing_happened() {
        assert_eq!(
            message(None, &[], None),
            "infra-challenge: nothing was built or deployed in this run"
        );
    }

    #[test]
    fn the_link_is_jenkins_else_github_actions() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            run_link(vars(&[("BUILD_URL", "https://jenkins/job/1/")])).as_deref(),
            Some("https://jenkins/job/1/")
        );
        assert_eq!(
            run_link(vars(&[
                ("GITHUB_SERVER_URL", "https://github.com"),
                ("GITHUB_REPOSITORY", "acme/infra-challenge"),
                ("GITHUB_RUN_ID", "42"),
            ]))
            .as_deref(),
            Some("https://github.com/acme/infra-challenge/actions/runs/42")
        );
        assert_eq!(run_link(vars(&[("GITHUB_RUN_ID", "42")])), None);
    }
}
