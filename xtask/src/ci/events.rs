//! A stage's start and end as OTLP log records (service.name `xtask-ci`), when the standard
//! OTLP variables name an endpoint, so the pipeline's stages land next to the deployer's events
//! and the service's logs. Each record carries the stage (`cicd.pipeline.task.name`), the
//! environment and version when the stage has them, and Jenkins' `BUILD_URL`. The deployer a
//! stage starts is handed the stage and version through its environment ([`Run::child_env`]),
//! so its own events carry them too. Sending is bounded the same way as the deployer's: a dead
//! collector costs a warning line, never the stage.

use std::time::Duration;

use otlp_events::{EventLog, Run, Severity};
use serde_json::{Map, Value, json};

/// The start and end records of one stage.
pub struct StageEvents {
    log: Option<EventLog>,
    stage: String,
}

impl StageEvents {
    /// Sends the `stage_started` record of `run`'s stage (nothing when no endpoint is set).
    pub fn start(log: Option<EventLog>, run: &Run) -> Self {
        let stage = run.stage.clone().unwrap_or_default();
        if let Some(log) = &log {
            log.emit(
                "stage_started",
                &fields(json!({ "message": format!("ci {stage}: started"), "stage": stage })),
            );
        }
        StageEvents { log, stage }
    }

    /// Sends the `stage_finished` record (ERROR when the stage failed) and flushes.
    pub fn finish(self, outcome: &anyhow::Result<String>, elapsed: Duration) {
        let Some(log) = self.log else { return };
        let (ok, summary) = match outcome {
            Ok(summary) => (true, summary.clone()),
            Err(error) => (false, format!("{error:#}")),
        };
        let mark = if ok { "ok" } else { "FAILED" };
        let record = json!({
            "message": format!("ci {}: {mark} - {summary} ({:.1}s)", self.stage, elapsed.as_secs_f64()),
            "stage": self.stage,
            "ok": ok,
            "summary": summary,
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        let severity = if ok { Severity::Info } else { Severity::Error };
        log.emit_at(severity, "stage_finished", &fields(record));
        log.shutdown();
    }
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use otlp_events::Config;
    use otlp_events::receiver::Receiver;

    use super::*;

    fn log_to(receiver: &Receiver, run: &Run) -> EventLog {
        let config = Config::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| receiver.endpoint.clone())
        })
        .unwrap()
        .unwrap();
        EventLog::start(&config, "xtask-ci", "0.1.0", run.clone()).unwrap()
    }

    fn deploy_qa() -> Run {
        Run {
            environment: Some("qa".into()),
            version: Some("0.1.0-abc1234".into()),
            stage: Some("deploy qa".into()),
            build_url: Some("https://jenkins.example/job/main/7/".into()),
        }
    }

    #[test]
    fn ci_stage_start_and_end_arrive_with_the_stage_environment_version_and_build() {
        let receiver = Receiver::start();
        let run = deploy_qa();
        let events = StageEvents::start(Some(log_to(&receiver, &run)), &run);
        events.finish(
            &Ok("deployed 0.1.0-abc1234".into()),
            Duration::from_millis(1500),
        );

        let records = receiver.wait_for_event("stage_finished");
        let kinds: Vec<_> = records.iter().filter_map(|r| r.event()).collect();
        assert_eq!(kinds, ["stage_started", "stage_finished"]);
        for record in &records {
            assert_eq!(
                record.resource_text("service.name").as_deref(),
                Some("xtask-ci")
            );
            for (key, value) in [
                ("cicd.pipeline.task.name", "deploy qa"),
                ("deployment.environment.name", "qa"),
                ("release.version", "0.1.0-abc1234"),
                (
                    "cicd.pipeline.run.url.full",
                    "https://jenkins.example/job/main/7/",
                ),
            ] {
                assert_eq!(record.text(key).as_deref(), Some(value), "{key}");
            }
        }
        let end = &records[1];
        assert_eq!(end.record.severity_text, "INFO");
        assert_eq!(
            end.body().as_deref(),
            Some("ci deploy qa: ok - deployed 0.1.0-abc1234 (1.5s)")
        );
        assert_eq!(
            end.text("summary").as_deref(),
            Some("deployed 0.1.0-abc1234")
        );
    }

    #[test]
    fn ci_stage_failure_is_an_error_record_with_the_reason() {
        let receiver = Receiver::start();
        let run = Run {
            stage: Some("lint".into()),
            ..Run::default()
        };
        let events = StageEvents::start(Some(log_to(&receiver, &run)), &run);
        events.finish(
            &Err(anyhow::anyhow!("clippy found 2 warnings")),
            Duration::from_secs(3),
        );

        let records = receiver.wait_for_event("stage_finished");
        let end = records
            .iter()
            .find(|r| r.event().as_deref() == Some("stage_finished"))
            .unwrap();
        assert_eq!(end.record.severity_text, "ERROR");
        assert_eq!(
            end.text("summary").as_deref(),
            Some("clippy found 2 warnings")
        );
        assert_eq!(end.text("cicd.pipeline.task.name").as_deref(), Some("lint"));
        assert_eq!(end.text("release.version"), None, "lint has no version");
        assert_eq!(end.text("deployment.environment.name"), None);
    }
}
