//! `deployer diff` and the refusals before a change, on Compose against the real Docker engine:
//! what a deploy would change is listed field by field (a new image, a changed variable), nothing
//! differs right after a deploy (exit 0), and a release that cannot start is refused before
//! anything changes (a configuration that does not resolve, a port taken, an image missing).

mod common;

use std::net::TcpListener;

use serde_json::Value;

use common::{Run, TestEnv, V1, V2, deploy_args, run_deployer};

/// `deployer <args>` with RUST_LOG set as given (compose.yaml passes it to the app).
fn deployer_with_log(env: &TestEnv, rust_log: &str, args: &[&str]) -> Run {
    run_deployer(
        env.command(args).env("RUST_LOG", rust_log),
        &format!("{} (RUST_LOG={rust_log})", args.join(" ")),
    )
}

fn fields(change: &Value) -> Vec<(String, String, String)> {
    change["fields"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| {
            let text = |v: &Value| v.as_str().unwrap_or("(absent)").to_string();
            (text(&f["path"]), text(&f["before"]), text(&f["after"]))
        })
        .collect()
}

#[test]
fn diff_lists_a_new_image_and_a_changed_variable_and_nothing_after_a_deploy() {
    let mut env = TestEnv::new("diff");
    env.tag(V1);
    env.tag(V2);

    // Nothing runs yet: every service of the stack would be created (exit 8).
    let first = deployer_with_log(&env, "info", &["diff", "--version", V1, "--output", "json"]);
    assert_eq!(
        first.code,
        8,
        "a first deploy changes everything:\n{}",
        first.text()
    );
    let result = first.result();
    let created: Vec<&str> = result["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["action"], "create", "{c}");
            c["object"].as_str().unwrap()
        })
        .collect();
    assert_eq!(created, ["service app", "service db", "service proxy"]);

    let deployed = deployer_with_log(
        &env,
        "info",
        &[
            "deploy",
            "--target",
            "compose",
            "--version",
            V1,
            "--yes",
            "--timeout",
            "180s",
        ],
    );
    assert_eq!(deployed.code, 0, "deploying {V1}:\n{}", deployed.text());

    // Right after the deploy of V1, a deploy of V1 changes nothing: exit 0.
    let same = deployer_with_log(&env, "info", &["diff", "--version", V1, "--output", "json"]);
    assert_eq!(same.code, 0, "nothing differs:\n{}", same.text());
    assert_eq!(same.result()["changed"], false, "{}", same.text());
    assert_eq!(
        same.result()["unchanged"],
        serde_json::json!(["service app", "service db", "service proxy"])
    );

    // V2 with another log filter: exactly the app's image and that variable (exit 8).
    let next = deployer_with_log(
        &env,
        "debug",
        &["diff", "--version", V2, "--output", "json"],
    );
    assert_eq!(next.code, 8, "{}", next.text());
    let changes = next.result()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "only the app changes: {changes:?}");
    assert_eq!(changes[0]["object"], "service app");
    assert_eq!(
        fields(&changes[0]),
        [
            ("image".to_string(), env.image(V1), env.image(V2)),
            (
                "environment.RUST_LOG".to_string(),
                "info".to_string(),
                "debug".to_string()
            ),
        ]
    );
    // For a person: the same, one line per field; no secret value anywhere.
    let text = deployer_with_log(&env, "debug", &["diff", "--version", V2]);
    assert_eq!(text.code, 8);
    assert!(text.stdout.contains("~ service app"), "{}", text.stdout);
    assert!(
        text.stdout.contains(&format!(
            "    image: {} -> {}",
            env.image(V1),
            env.image(V2)
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("    environment.RUST_LOG: info -> debug"),
        "{}",
        text.stdout
    );
    for secret in env.secret_values() {
        assert!(!next.text().contains(&secret) && !text.text().contains(&secret));
    }
    // Diff changed nothing: V1 still runs.
    assert_eq!(env.status()["version"], V1);
}

#[test]
fn a_release_that_cannot_start_is_refused_before_anything_changes() {
    let mut env = TestEnv::new("refuse");
    env.tag(V1);

    // An image that is not in the engine.
    let missing = env.deployer(&[
        "deploy",
        "--target",
        "compose",
        "--version",
        "7.7.7",
        "--yes",
    ]);
    assert_eq!(missing.code, 3, "{}", missing.text());
    assert!(
        missing.stderr.contains("nothing was changed"),
        "{}",
        missing.stderr
    );

    // The port taken by another program.
    let holder = TcpListener::bind(("0.0.0.0", env.port)).expect("the test's port");
    let taken = env.deployer(&["deploy", "--target", "compose", "--version", V1, "--yes"]);
    drop(holder);
    assert_eq!(taken.code, 3, "{}", taken.text());
    assert!(taken.stderr.contains("in use") && taken.stderr.contains("nothing was changed"));

    // A Compose file that does not resolve (a key Compose does not know).
    let project = tempfile::tempdir().expect("a project directory");
    let compose = project.path().join("deploy/compose");
    std::fs::create_dir_all(&compose).unwrap();
    let source = common::project_dir().join("deploy/compose");
    for file in ["compose.yaml", "haproxy.cfg"] {
        std::fs::copy(source.join(file), compose.join(file)).unwrap();
    }
    let yaml = std::fs::read_to_string(compose.join("compose.yaml")).unwrap();
    std::fs::write(
        compose.join("compose.yaml"),
        yaml.replacen("  app:\n", "  app:\n    no_such_setting: true\n", 1),
    )
    .unwrap();
    let broken = run_deployer(
        &mut env.command_in(project.path(), &deploy_args(V1)),
        "deploy (a Compose file that does not resolve)",
    );
    assert_eq!(broken.code, 3, "{}", broken.text());
    assert!(
        broken.stderr.contains("does not resolve") && broken.stderr.contains("nothing was changed"),
        "{}",
        broken.stderr
    );

    // None of the three started a container or wrote a record.
    assert!(env.containers().is_empty(), "containers were started");
    let history = env.deployer(&["history", "--output", "json"]);
    assert_eq!(history.result()["releases"], serde_json::json!([]));
}
