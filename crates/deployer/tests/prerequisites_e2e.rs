//! Prerequisites and usage errors fail fast, with the fix, and never wait for input.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{project_dir, run};

fn deployer(args: &[&str], dead_docker: bool) -> (i32, String, Duration) {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
    cmd.arg("--state-dir")
        .arg(state.path())
        .arg("--project-dir")
        .arg(project_dir());
    cmd.args(args).env_remove("DEPLOYER_ENV");
    if dead_docker {
        cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
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

#[test]
fn kubernetes_target_says_it_is_not_available_yet() {
    let (code, text, _) = deployer(
        &[
            "deploy",
            "--target",
            "kubernetes",
            "--version",
            "1.0.0",
            "--yes",
        ],
        false,
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("Kubernetes target is not available yet"),
        "{text}"
    );
}
