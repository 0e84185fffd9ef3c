//! The export, in process, against a real OTLP/HTTP receiver: what arrives, and that a dead
//! collector costs a bounded time.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use otlp_events::receiver::{Receiver, closed_endpoint};
use otlp_events::{Config, EventLog, Run};
use serde_json::{Map, json};

fn fields(value: serde_json::Value) -> Map<String, serde_json::Value> {
    value.as_object().expect("an object").clone()
}

fn config(base: &str) -> Config {
    Config::from_lookup(|name| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| base.to_owned()))
        .expect("a valid endpoint")
        .expect("an export")
}

fn run() -> Run {
    Run {
        environment: Some("qa".into()),
        version: Some("1.2.0".into()),
        stage: Some("deploy qa".into()),
        build_url: Some("https://jenkins.example/job/infra/42/".into()),
    }
}

#[test]
fn events_arrive_as_log_records_with_the_runs_attributes() {
    let receiver = Receiver::start();
    let events = EventLog::start(&config(&receiver.endpoint), "deployer", "0.1.0", run()).unwrap();
    events.emit(
        "step_finished",
        &fields(json!({ "step": "health", "ok": true, "elapsed_ms": 12 })),
    );
    events.emit(
        "error",
        &fields(json!({ "message": "not healthy", "exit_code": 4 })),
    );
    events.shutdown();

    let records = receiver.wait_for_event("error");
    let step = records
        .iter()
        .find(|r| r.event().as_deref() == Some("step_finished"))
        .unwrap();
    assert_eq!(step.body().as_deref(), Some("step_finished"));
    assert_eq!(step.record.severity_text, "INFO");
    assert_eq!(step.text("step").as_deref(), Some("health"));
    assert!(matches!(step.attribute("ok"), Some(Value::BoolValue(true))));
    assert!(matches!(
        step.attribute("elapsed_ms"),
        Some(Value::IntValue(12))
    ));

    let error = records
        .iter()
        .find(|r| r.event().as_deref() == Some("error"))
        .unwrap();
    assert_eq!(error.body().as_deref(), Some("not healthy"));
    assert_eq!(error.record.severity_text, "ERROR");
    assert_eq!(error.record.severity_number, 17, "SEVERITY_NUMBER_ERROR");
    assert!(error.record.time_unix_nano > 0);
    for (key, value) in [
        ("deployment.environment.name", "qa"),
        ("release.version", "1.2.0"),
        ("cicd.pipeline.task.name", "deploy qa"),
        (
            "cicd.pipeline.run.url.full",
            "https://jenkins.example/job/infra/42/",
        ),
    ] {
        assert_eq!(error.text(key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(
        error.resource_text("service.name").as_deref(),
        Some("deployer")
    );
    assert_eq!(
        error.resource_text("service.version").as_deref(),
        Some("0.1.0")
    );
}

#[test]
fn a_dead_collector_costs_at_most_the_flush_timeout() {
    let events = EventLog::start(
        &config(&closed_endpoint()),
        "deployer",
        "0.1.0",
        Run::default(),
    )
    .unwrap();
    let started = Instant::now();
    for step in 0..50 {
        events.emit("step_started", &fields(json!({ "step": step })));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "emitting only queues"
    );
    events.shutdown();
    assert!(
        started.elapsed() < otlp_events::FLUSH_TIMEOUT + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}
