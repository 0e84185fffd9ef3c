//! Prerequisites and usage errors fail fast, with the fix, and never wait for input.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{project_dir, run};

fn deployer(args: &[&str], dead_docker: bool) -> (i32, String, Duration) {
    let mut env = Vec::new();
    if dead_docker {
        env.push(("DOCKER_HOST", "unix:///nonexistent.sock".to_string()));
    }
    deployer_with(args, &env)
}

/// The deployer with a fresh state directory, this checkout, and `env` set; its exit code,
/// everything it printed, and how long it took.
fn deployer_with(args: &[&str], env: &[(&str, String)]) -> (i32, String, Duration) {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
    cmd.arg("--state-dir")
        .arg(state.path())
        .arg("--project-dir")
        .arg(project_dir());
    cmd.args(args)
        .env_remove("DEPLOYER_ENV")
        .env_remove("DEPLOYER_KUBE_CONTEXT");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let started = Instant::now();
    let out = run(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text, started.elapsed())
}

#[test]
fn doctor_with_a_dead_docker_socket_fails_fast_with_the_fix() {
    let (code, text, took) = deployer(&["doctor"], true);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("not reachable at unix:///nonexistent.sock"),
        "{text}"
    );
    assert!(text.contains("fix: check DOCKER_HOST"), "{text}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn deploy_with_a_dead_docker_socket_fails_fast_with_the_fix() {
    let (code, text, took) = deployer(
        &[
            "deploy",
            "--target",
            "compose",
            "--version",
            "1.0.0",
            "--yes",
        ],
        true,
    );
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("not reachable"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn no_terminal_and_no_flags_is_a_usage_error_naming_them() {
    let (code, text, _) = deployer(&[], false);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("deployer deploy --target compose --version"),
        "{text}"
    );

    let (code, text, _) = deployer(&["deploy"], false);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("missing --target compose|kubernetes and --version V"),
        "{text}"
    );

    let (code, text, _) = deployer(
        &["deploy", "--target", "compose", "--version", "1.0.0"],
        false,
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("pass --yes"), "{text}");
}

/// `deployer` with a kubeconfig whose only cluster answers nothing (a closed port on loopback).
fn deployer_without_cluster(args: &[&str]) -> (i32, String, Duration) {
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), common::UNREACHABLE_KUBECONFIG).unwrap();
    deployer_with(
        args,
        &[("KUBECONFIG", kubeconfig.path().display().to_string())],
    )
}

#[test]
fn kubernetes_without_a_reachable_cluster_exits_3_within_5_seconds_naming_the_context() {
    let (code, text, took) = deployer_without_cluster(&[
        "deploy",
        "--target",
        "kubernetes",
        "--env",
        "qa",
        "--version",
        "1.2.3",
        "--yes",
    ]);
    assert_eq!(code, 3, "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {text}");
    assert!(
        text.contains("context unreachable-test at https://127.0.0.1:1"),
        "{text}"
    );
    assert!(
        text.contains("fix:") && text.contains("--context"),
        "{text}"
    );

    let (code, text, took) = deployer_without_cluster(&["doctor", "--target", "kubernetes"]);
    assert_eq!(code, 3, "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {text}");
    assert!(
        text.contains("FAIL api server") && text.contains("context unreachable-test"),
        "{text}"
    );
    // What doctor could check without the cluster passed.
    assert!(
        text.contains("ok   renderer") && text.contains("ok   overlay"),
        "{text}"
    );
}

#[test]
fn an_unknown_context_is_named_with_the_command_that_lists_them() {
    let (code, text, _) = deployer_without_cluster(&[
        "status",
        "--target",
        "kubernetes",
        "--context",
        "no-such-context",
    ]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("no usable context \"no-such-context\"")
            && text.contains("kubectl config get-contexts"),
        "{text}"
    );
}

#[test]
fn kubernetes_render_needs_no_cluster_and_sets_the_image() {
    let (code, text, _) = deployer_without_cluster(&[
        "render",
        "--target",
        "kubernetes",
        "--env",
        "prod",
        "--version",
        "1.2.3",
        "--repository",
        "registry.example:5000/team/infra-challenge",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.matches("image: registry.example:5000/team/infra-challenge:1.2.3")
            .count(),
        2,
        "the app container and the migrate init container: {text}"
    );
    assert!(
        text.contains("applyset.kubernetes.io/part-of: applyset-"),
        "{text}"
    );
    assert!(text.contains("name: deployer-applyset"), "{text}");
}
