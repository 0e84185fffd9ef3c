//! The deployer's events as OTLP log records: the real binary sends to a real OTLP/HTTP receiver
//! (the Collector's protobuf messages). With the collector dead, the command's exit code and
//! stdout are unchanged and it still ends within a few seconds.
//!
//! Needs no Docker engine: a deploy against a dead Docker socket fails at its first check with
//! events of its own, and `history` of an empty state directory answers from the ledger.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use otlp_events::receiver::{Receiver, closed_endpoint};

const BUILD_URL: &str = "https://jenkins.example/job/infra-challenge/job/main/42/";

/// A deploy to qa that fails with exit code 3 at its first check (Docker unreachable).
const DEPLOY: &[&str] = &[
    "--output",
    "json",
    "--env",
    "qa",
    "deploy",
    "--target",
    "compose",
    "--version",
    "1.2.0",
    "--yes",
];

/// The deployer with a fresh state directory, a dead Docker socket and no OTLP or CI variables
/// of the caller's, then `env`; its output and how long it took.
fn deployer(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let state = tempfile::tempdir().unwrap();
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
    cmd.arg("--state-dir")
        .arg(state.path())
        .arg("--project-dir")
        .arg(project)
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name.starts_with("DEPLOYER_") || name == "BUILD_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    let started = Instant::now();
    let output = cmd.output().expect("the deployer runs");
    (output, started.elapsed())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `event` of each JSON line on stdout.
fn event_kinds(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
            event["event"].as_str().expect("an event kind").to_owned()
        })
        .collect()
}

#[test]
fn a_failing_deploy_sends_each_event_with_the_runs_attributes() {
    let receiver = Receiver::start();
    let (output, _) = deployer(
        DEPLOY,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("BUILD_URL", BUILD_URL),
            ("DEPLOYER_CI_STAGE", "deploy qa"),
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));

    let records = receiver.wait_for_event("error");
    let sent: Vec<String> = records.iter().filter_map(|r| r.event()).collect();
    assert_eq!(
        sent,
        event_kinds(&stdout(&output)),
        "every JSON event, in order"
    );

    let error = records.last().unwrap();
    assert_eq!(error.record.severity_text, "ERROR");
    assert!(error.body().unwrap().contains("not reachable"), "{error:?}");
    assert_eq!(error.text("kind").as_deref(), Some("prerequisite"));
    assert!(matches!(
        error.attribute("exit_code"),
        Some(Value::IntValue(3))
    ));
    for record in &records {
        for (key, value) in [
            ("deployment.environment.name", "qa"),
            ("release.version", "1.2.0"),
            ("cicd.pipeline.task.name", "deploy qa"),
            ("cicd.pipeline.run.url.full", BUILD_URL),
        ] {
            assert_eq!(
                record.text(key).as_deref(),
                Some(value),
                "{key} of {record:?}"
            );
        }
        assert_eq!(
            record.resource_text("service.name").as_deref(),
            Some("deployer")
        );
        assert_eq!(
            record.resource_text("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn text_output_sends_the_same_events_with_the_version_passed_down() {
    let receiver = Receiver::start();
    let (output, _) = deployer(
        &["history"],
        &[
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &format!("{}/v1/logs", receiver.endpoint),
            ),
            ("DEPLOYER_RELEASE_VERSION", "1.3.0"),
            ("OTEL_SERVICE_NAME", "deployer-ci"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stdout(&output).starts_with('{'),
        "text output: {}",
        stdout(&output)
    );

    let records = receiver.wait_for_event("result");
    let result = records
        .iter()
        .find(|r| r.event().as_deref() == Some("result"))
        .unwrap();
    assert_eq!(result.record.severity_text, "INFO");
    assert_eq!(result.body().as_deref(), Some("result"));
    assert_eq!(result.text("env").as_deref(), Some("dev"));
    assert_eq!(
        result.text("releases").as_deref(),
        Some("[]"),
        "nested values as JSON text"
    );
    assert_eq!(
        result.text("deployment.environment.name").as_deref(),
        Some("dev")
    );
    assert_eq!(result.text("release.version").as_deref(), Some("1.3.0"));
    assert_eq!(
        result.text("cicd.pipeline.run.url.full"),
        None,
        "no BUILD_URL"
    );
    assert_eq!(
        result.resource_text("service.name").as_deref(),
        Some("deployer-ci"),
        "OTEL_SERVICE_NAME wins"
    );
}

/// stdout with the timings taken out (they differ from run to run).
fn without_timings(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            event.as_object_mut().unwrap().remove("elapsed_ms");
            event
        })
        .collect()
}

#[test]
fn a_dead_collector_changes_neither_the_exit_code_nor_stdout_and_costs_seconds_at_most() {
    let (plain, plain_took) = deployer(DEPLOY, &[]);
    let dead = closed_endpoint();
    let (output, took) = deployer(DEPLOY, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &dead)]);
    assert_eq!(output.status.code(), plain.status.code());
    assert_eq!(
        without_timings(&stdout(&output)),
        without_timings(&stdout(&plain))
    );
    assert!(
        took < plain_took + Duration::from_secs(4),
        "took {took:?}, {plain_took:?} without export"
    );
    let warnings = stderr(&output)
        .lines()
        .filter(|line| line.starts_with("warning: events could not be sent to"))
        .count();
    assert_eq!(warnings, 1, "one warning line: {}", stderr(&output));
}

#[test]
fn a_bad_otlp_variable_is_a_usage_error_naming_it() {
    let (output, _) = deployer(
        &["history"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let text = stderr(&output);
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4318\""),
        "{text}"
    );
    assert!(text.contains("http://127.0.0.1:4318"), "{text}");
}

#[test]
fn a_disabled_sdk_sends_nothing() {
    let receiver = Receiver::start();
    let (output, _) = deployer(
        &["history"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.records().is_empty(), "{:?}", receiver.records());
}
