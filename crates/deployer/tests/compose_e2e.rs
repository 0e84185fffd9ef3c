//! The deployer against the real Docker engine, with the Compose target: the release lifecycle a
//! team goes through (first deploy, upgrade, rollback, a broken release rolled back by itself,
//! down keeping the data, purge). One environment walks through all of it in order, because each
//! step starts from the state the previous one left; each assertion names its step.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Api, BROKEN, TestEnv, V1, V2};

fn assert_serves(env: &TestEnv, step: &str, version: &str, titles: &[&str]) {
    // The deployer returns once Docker's own healthcheck has passed: `status` agrees at once.
    let status = env.status();
    assert_eq!(status["version"], version, "{step}: status shows {status}");
    assert_eq!(status["health"], "healthy", "{step}: status shows {status}");
    assert_eq!(status["url"], env.url(), "{step}: status shows {status}");
    let api = Api::new(&env.url());
    assert!(api.ready(), "{step}: /readyz is not 200");
    let have = api.titles();
    for title in titles {
        assert!(
            have.iter().any(|t| t == title),
            "{step}: task {title:?} is missing"
        );
    }
}

#[test]
fn release_lifecycle_on_compose() {
    let mut env = TestEnv::new("life");
    env.tag(V1);
    env.tag(V2);
    env.build_broken(BROKEN);

    // deploy V1 fresh: healthy, tasks created through the API, status shows V1.
    let run = env.deploy_ok(V1);
    assert!(
        run.text().contains("created secrets"),
        "first deploy creates the secrets"
    );
    let secrets = env.secret_values();
    assert_eq!(secrets.len(), 2, "two secret files");
    for entry in std::fs::read_dir(env.state.path().join(&env.name).join("secrets")).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secret files are 0600");
    }
    let api = Api::new(&env.url());
    let titles = ["first task", "second task", "third task"];
    for title in titles {
        api.create_task(title);
    }
    assert_serves(&env, "deploy V1", V1, &titles);

    // deploy V2: healthy, earlier tasks intact; status, history and render show V2; secrets unchanged.
    // (through --output json, as CI runs it: every stdout line is one JSON event)
    let run = env.deployer(&[
        "deploy",
        "--target",
        "compose",
        "--version",
        V2,
        "--yes",
        "--timeout",
        "180s",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "deploying {V2} failed:\n{}", run.text());
    for line in run.stdout.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["event"].is_string(), "no event name: {line}");
    }
    assert_eq!(run.result()["version"], V2);
    assert!(
        !run.text().contains("created secrets"),
        "secrets are never recreated"
    );
    assert_eq!(
        env.secret_values(),
        secrets,
        "secrets are never overwritten"
    );
    assert_serves(&env, "deploy V2", V2, &titles);
    let history = env.deployer(&["history", "--output", "json"]).result();
    let releases = history["releases"].as_array().expect("releases");
    let last = releases.last().expect("a release");
    assert_eq!(last["version"], V2, "history: {history}");
    assert_eq!(last["result"], "ok", "history: {history}");
    assert!(
        last["image_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:"))
    );
    let render = env.deployer(&["render"]);
    assert_eq!(render.code, 0, "render: {}", render.text());
    assert!(
        render.stdout.contains(&env.image(V2)),
        "render shows V2:\n{}",
        render.stdout
    );

    // rollback: V1 running again, tasks intact.
    let run = env.deployer(&["rollback", "--timeout", "180s"]);
    assert_eq!(run.code, 0, "rollback failed:\n{}", run.text());
    assert_serves(&env, "rollback", V1, &titles);

    // rollback --to a named good release, and back.
    let run = env.deployer(&["rollback", "--to", V2, "--timeout", "180s"]);
    assert_eq!(run.code, 0, "rollback --to {V2} failed:\n{}", run.text());
    assert_eq!(env.status()["version"], V2, "rollback --to {V2}");
    let run = env.deployer(&["rollback", "--to", "7.7.7"]);
    assert_eq!(
        run.code,
        2,
        "rollback to a version never deployed is a usage error:\n{}",
        run.text()
    );
    let run = env.deployer(&["rollback", "--timeout", "180s"]);
    assert_eq!(run.code, 0, "rollback failed:\n{}", run.text());
    assert_serves(&env, "rollback again", V1, &titles);

    // A broken release: fails within its timeout, names the cause, shows the log tail, and is
    // removed; the previous release (V1) never stopped serving (it ran beside it, behind the proxy).
    let started = Instant::now();
    let run = env.deployer(&[
        "deploy",
        "--target",
        "compose",
        "--version",
        BROKEN,
        "--yes",
        "--timeout",
        "90s",
    ]);
    let took = started.elapsed();
    assert_eq!(run.code, 4, "a broken release exits 4:\n{}", run.text());
    let text = run.text();
    assert!(
        text.contains("exits at start"),
        "the cause is named:\n{text}"
    );
    assert!(
        text.contains("log lines of the app"),
        "the log tail is shown:\n{text}"
    );
    assert!(
        text.contains("no-such-subcommand"),
        "the log tail is the app's:\n{text}"
    );
    assert!(
        text.contains(&format!("{V1}, which it would have replaced, kept serving")),
        "the broken release ran beside V1, which never stopped serving:\n{text}"
    );
    // A crash is detected without waiting for the timeout: failure and rollback together stay below it.
    assert!(
        took < Duration::from_secs(90),
        "the crash was detected early ({took:?})"
    );
    assert_serves(&env, "broken release", V1, &titles);
    let history = env.deployer(&["history", "--output", "json"]).result();
    let results: Vec<(String, String, String)> = history["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        results[results.len() - 2..],
        [
            (V1.into(), "rollback".into(), "ok".into()),
            (BROKEN.into(), "deploy".into(), "failed".into()),
        ],
        "history records the failure, and no rollback: nothing was switched"
    );

    // No output ever contained a secret value.
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret value was printed"
        );
        assert!(
            !render.text().contains(secret.as_str()),
            "render printed a secret value"
        );
    }

    // down keeps the data: a later deploy still sees the tasks.
    let run = env.deployer(&["down"]);
    assert_eq!(run.code, 0, "down failed:\n{}", run.text());
    assert!(env.containers().is_empty(), "down removes the containers");
    assert!(!env.volumes().is_empty(), "down keeps the data volume");
    let status = env.status();
    assert_eq!(status["running"], false, "status after down: {status}");
    env.deploy_ok(V1);
    assert_serves(&env, "deploy after down", V1, &titles);

    // down --purge-data --yes removes the data.
    let run = env.deployer(&["down", "--purge-data", "--yes"]);
    assert_eq!(run.code, 0, "down --purge-data failed:\n{}", run.text());
    assert!(env.containers().is_empty(), "purge removes the containers");
    assert!(env.volumes().is_empty(), "purge removes the data volume");
}

#[test]
fn purge_without_yes_and_without_terminal_is_refused() {
    let env = TestEnv::new("purge");
    let run = env.deployer(&["down", "--purge-data"]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.text().contains("--yes"), "{}", run.text());
}
