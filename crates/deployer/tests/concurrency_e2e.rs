//! The deployer against the real Docker engine when more than one thing acts on an environment:
//! two deployers racing for it, a deployer killed or stopped by a signal halfway through a release,
//! an image whose tag names another build, a change made by hand outside the deployer, and two
//! environments on one engine. Every spawned deployer is time-boxed, so a hang fails the test
//! instead of the whole run.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Api, Run, TestEnv, V1, V2, deploy_args, run};
use serde_json::Value;

/// How long one spawned deploy may take (each has `--timeout 180s` of its own).
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// A version that was never built: the V1 build is tagged with it.
const MISLABELLED: &str = "3.0.0";

/// `deployer deploy --target compose --version V --yes` with extra global flags, as a child
/// process whose output is collected.
fn spawn_deploy(env: &TestEnv, version: &str, extra: &[&str]) -> Child {
    let mut cmd = env.command(&deploy_args(version));
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("starting the deployer")
}

/// Waits for a spawned deployer, at most `RUN_LIMIT`; past it the process is killed and the test
/// fails saying which run hung.
fn finish(child: Child, what: &str) -> Run {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let out = match receiver.recv_timeout(RUN_LIMIT) {
        Ok(out) => out.expect("waiting for the deployer"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("{what}: the deployer (pid {pid}) did not finish within {RUN_LIMIT:?}");
        }
    };
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ deployer ({what}, pid {pid}) -> exit {}\n{}",
        run.code,
        run.text().trim_end()
    );
    run
}

/// `kill -<name> <pid>`.
fn signal(pid: u32, name: &str) {
    let out = run(Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string()));
    assert!(
        out.status.success(),
        "kill -{name} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until an app container of `image` exists in the environment and Docker's healthcheck has
/// not passed yet: the deployer is then waiting for its health.
fn wait_for_starting_container(env: &TestEnv, image: &str) {
    let until = Instant::now() + Duration::from_secs(120);
    let filter = format!("label=com.docker.compose.project={}", env.project());
    loop {
        let out = run(Command::new("docker").args([
            "ps",
            "--filter",
            &filter,
            "--filter",
            "label=com.docker.compose.service=app",
            "--format",
            "{{.Image}} {{.Status}}",
        ]));
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let starting = listing.lines().any(|line| {
            line.starts_with(&format!("{image} ")) && line.contains("health: starting")
        });
        if starting {
            return;
        }
        assert!(
            Instant::now() < until,
            "no app container of {image} started within 120 s:\n{listing}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Ids of the environment's app containers running `image`, running or not.
fn containers_of(env: &TestEnv, image: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={}", env.project());
    let out = run(Command::new("docker").args([
        "ps",
        "--all",
        "--filter",
        &filter,
        "--format",
        "{{.ID}} {{.Image}}",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, i)| *i == image)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// (version, result) of every record of the environment, oldest first.
fn history(env: &TestEnv) -> Vec<(String, String)> {
    let history = env.deployer(&["history", "--output", "json"]).result();
    history["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&r["version"]), text(&r["result"]))
        })
        .collect()
}

#[test]
fn two_deployers_racing_for_one_environment() {
    let mut env = TestEnv::new("race");
    env.tag(V1);
    env.tag(V2);

    // Started together without waiting: one proceeds, the other exits 6 naming the holder.
    let first = spawn_deploy(&env, V1, &[]);
    let second = spawn_deploy(&env, V1, &[]);
    let pids = [first.id(), second.id()];
    let runs = [finish(first, "racer 1"), finish(second, "racer 2")];
    let codes = [runs[0].code, runs[1].code];
    let (winner, loser) = match codes {
        [0, 6] => (0, 1),
        [6, 0] => (1, 0),
        _ => panic!("racing deployers: expected one exit 0 and one exit 6, got {codes:?}"),
    };
    let message = runs[loser].text();
    for expected in [
        "is locked by ".to_string(),
        format!(":{}", pids[winner]),
        format!("deploy {V1} since"),
        "--wait-for-lock".to_string(),
    ] {
        assert!(
            message.contains(&expected),
            "the loser names the holder ({expected:?}):\n{message}"
        );
    }
    assert_eq!(
        history(&env),
        [(V1.to_string(), "ok".to_string())],
        "one release is recorded: the loser changed nothing"
    );

    // Both queued behind each other with --wait-for-lock: both succeed, one after the other.
    let upgrade = spawn_deploy(&env, V2, &["--wait-for-lock", "5m"]);
    let back = spawn_deploy(&env, V1, &["--wait-for-lock", "5m"]);
    let runs = [finish(upgrade, "queued V2"), finish(back, "queued V1")];
    assert_eq!(
        [runs[0].code, runs[1].code],
        [0, 0],
        "with --wait-for-lock both deploys succeed"
    );
    let waited: Vec<bool> = runs
        .iter()
        .map(|r| r.text().contains("waiting for the lock"))
        .collect();
    assert!(
        waited.iter().filter(|w| **w).count() == 1,
        "exactly one of them waited for the other: {waited:?}"
    );
    let (first, second) = if waited[0] { (V1, V2) } else { (V2, V1) };
    let records = history(&env);
    assert_eq!(
        records[1..],
        [
            (first.to_string(), "ok".to_string()),
            (second.to_string(), "ok".to_string())
        ],
        "history in the order the lock was held: {records:?}"
    );
    let status = env.status();
    assert_eq!(status["version"], second, "the last one serves: {status}");
    assert_eq!(
        status["lock"],
        Value::Null,
        "nobody holds the lock: {status}"
    );
    assert_eq!(Api::new(&env.url()).version(), second);
}

#[test]
fn a_deployer_killed_mid_deploy_does_not_block_the_next_one() {
    let mut env = TestEnv::new("kill");
    env.tag(V1);
    env.tag(V2);
    env.deploy_ok(V1);

    let doomed = spawn_deploy(&env, V2, &[]);
    let pid = doomed.id();
    wait_for_starting_container(&env, &env.image(V2));
    signal(pid, "KILL");
    let killed = finish(doomed, "killed deploy");
    assert_eq!(killed.code, -1, "SIGKILL ends it without an exit code");

    // The kernel released its lock with the process: the next one proceeds at once.
    let status = env.status();
    assert_eq!(
        status["lock"],
        Value::Null,
        "no lock after SIGKILL: {status}"
    );
    let started = Instant::now();
    let next = env.deploy_ok(V2);
    assert!(
        !next.text().contains("waiting for the lock") && !next.text().contains("is locked by"),
        "the next deploy did not wait:\n{}",
        next.text()
    );
    eprintln!(
        "the next deploy took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(env.status()["version"], V2);
    assert_eq!(Api::new(&env.url()).version(), V2);
}

#[test]
fn a_deploy_stopped_by_sigterm_mid_rollout_leaves_v1_serving_and_says_so() {
    let mut env = TestEnv::new("term");
    env.tag(V1);
    env.tag(V2);
    env.deploy_ok(V1);

    let deploy = spawn_deploy(&env, V2, &[]);
    let pid = deploy.id();
    wait_for_starting_container(&env, &env.image(V2));
    signal(pid, "TERM");
    let stopped = finish(deploy, "deploy stopped by SIGTERM");
    assert_eq!(
        stopped.code,
        7,
        "an interrupted deploy exits 7:\n{}",
        stopped.text()
    );
    let message = stopped.text();
    // Stopped in the health wait itself (not at a later step that also checks for a signal).
    for expected in [
        "while waiting for the new release's containers to become healthy",
        V1,
        "kept serving",
        "recorded as interrupted",
        "deployer status",
    ] {
        assert!(
            message.contains(expected),
            "the message says what state it leaves and what to run ({expected:?}):\n{message}"
        );
    }

    let records = history(&env);
    assert_eq!(
        records.last(),
        Some(&(V2.to_string(), "interrupted".to_string())),
        "the last record is the interrupted release: {records:?}"
    );
    let status = env.status();
    assert_eq!(
        status["lock"],
        Value::Null,
        "the lock was released: {status}"
    );
    assert_eq!(status["version"], V1, "V1 still runs: {status}");
    assert_eq!(
        Api::new(&env.url()).version(),
        V1,
        "V1 serves through the proxy"
    );
    assert_eq!(
        containers_of(&env, &env.image(V2)),
        Vec::<String>::new(),
        "the new release's containers were removed"
    );

    // Nothing is left behind that would stop the next deploy.
    env.deploy_ok(V2);
    assert_eq!(Api::new(&env.url()).version(), V2);
}

#[test]
fn an_image_whose_version_is_not_its_tag_fails_and_v1_keeps_serving() {
    let mut env = TestEnv::new("label");
    env.tag(V1);
    env.tag_as(V1, MISLABELLED);
    env.deploy_ok(V1);

    let run = env.deployer(&deploy_args(MISLABELLED));
    assert_eq!(run.code, 4, "a mislabelled release fails:\n{}", run.text());
    let text = run.text();
    for expected in [
        format!("says it is version {V1}"),
        format!("not {MISLABELLED}"),
        "the tag may point at another build".to_string(),
        format!("deployer build --version {MISLABELLED}"),
        "kept serving".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "the failure names both versions and the fix ({expected:?}):\n{text}"
        );
    }
    let status = env.status();
    assert_eq!(status["version"], V1, "V1 kept serving: {status}");
    assert_eq!(Api::new(&env.url()).version(), V1);
    assert_eq!(
        containers_of(&env, &env.image(MISLABELLED)),
        Vec::<String>::new(),
        "the mislabelled containers were removed"
    );
    let records = history(&env);
    assert_eq!(
        records.last(),
        Some(&(MISLABELLED.to_string(), "failed".to_string())),
        "{records:?}"
    );
}

/// `docker compose` (v2 plugin) or `docker-compose` (v1), whichever this machine has.
fn compose() -> Command {
    let plugin = run(Command::new("docker").args(["compose", "version"]));
    if plugin.status.success() {
        let mut cmd = Command::new("docker");
        cmd.arg("compose");
        cmd
    } else {
        Command::new("docker-compose")
    }
}

#[test]
fn status_reports_a_change_made_outside_the_deployer() {
    let mut env = TestEnv::new("drift");
    env.tag(V1);
    env.tag(V2);
    env.deploy_ok(V1);
    assert_eq!(
        env.status()["drift"],
        Value::Null,
        "no drift after a deploy"
    );

    // What a person might run by hand: the app service of V2, straight through Compose.
    let compose_file = common::project_dir().join("deploy/compose/compose.yaml");
    let out = run(compose()
        .arg("--project-name")
        .arg(env.project())
        .arg("--file")
        .arg(&compose_file)
        .args(["up", "-d", "--no-deps", "app"])
        .env("APP_IMAGE", &env.repository)
        .env("APP_VERSION", V2)
        .env("DB_IMAGE", &env.db_image)
        .env("PROXY_IMAGE", &env.proxy_image)
        .env("APP_PORT", env.port.to_string())
        .env(
            "SECRETS_DIR",
            env.state_dir().join(&env.name).join("secrets"),
        ));
    assert!(
        out.status.success(),
        "compose up by hand failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = env.status();
    assert_eq!(status["version"], V2, "V2 runs now: {status}");
    let drift = status["drift"].as_str().unwrap_or_default();
    assert!(
        drift.contains(&format!("{V2} runs")) && drift.contains(V1),
        "drift names what runs and what was recorded: {status}"
    );
}

#[test]
fn two_environments_on_one_engine_keep_their_own_release_and_history() {
    let mut qa = TestEnv::new("qa");
    let mut prod = TestEnv::beside(&qa, "prod");
    assert_ne!(qa.port, prod.port);
    qa.tag(V1);
    qa.tag(V2);
    prod.tag(V1);
    prod.tag(V2);

    // At the same time: each environment has its own lock, neither waits for the other.
    let qa_deploy = spawn_deploy(&qa, V1, &[]);
    let prod_deploy = spawn_deploy(&prod, V2, &[]);
    let runs = [
        finish(qa_deploy, "qa deploy"),
        finish(prod_deploy, "prod deploy"),
    ];
    assert_eq!(
        [runs[0].code, runs[1].code],
        [0, 0],
        "two environments deploy at once"
    );

    qa.deploy_ok(V2);
    for (env, version, records) in [
        (&qa, V2, vec![(V1, "ok"), (V2, "ok")]),
        (&prod, V2, vec![(V2, "ok")]),
    ] {
        let status = env.status();
        assert_eq!(status["version"], version, "{}: {status}", env.name);
        assert_eq!(status["drift"], Value::Null, "{}: {status}", env.name);
        assert_eq!(Api::new(&env.url()).version(), version, "{}", env.name);
        let expected: Vec<(String, String)> = records
            .iter()
            .map(|(v, r)| (v.to_string(), r.to_string()))
            .collect();
        assert_eq!(history(env), expected, "{}'s own history", env.name);
    }
    // Each keeps its own: stopping one leaves the other serving.
    let down = qa.deployer(&["down", "--yes"]);
    assert_eq!(down.code, 0, "down qa:\n{}", down.text());
    assert_eq!(Api::new(&prod.url()).version(), V2, "prod serves on");
    assert_eq!(prod.status()["version"], V2);
}
