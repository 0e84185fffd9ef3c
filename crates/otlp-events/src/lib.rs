//! The deployer's and `cargo xtask ci`'s events as OTLP log records, so a pipeline's logs land
//! where the service's do (an OpenTelemetry Collector in front of Loki) and can be searched by
//! release, environment and Jenkins build.
//!
//! Nothing happens unless the standard variables name an endpoint (see [`config`]). Records go
//! through the OpenTelemetry SDK's batch processor: [`EventLog::emit`] only queues, a background
//! thread sends. A dead or slow collector therefore never fails or slows the command: an export
//! waits [`config::DEFAULT_TIMEOUT`] at most, the flush at exit [`FLUSH_TIMEOUT`] at most, and
//! the first failure prints one warning line on stderr (stdout, where `--output json` events go,
//! is left alone).
//!
//! Every record carries the run's attributes ([`Run`]): `deployment.environment.name`,
//! `release.version`, `cicd.pipeline.task.name` (the ci stage) and `cicd.pipeline.run.url.full`
//! (Jenkins' `BUILD_URL`), next to `event.name` and the event's own fields.

mod client;
pub mod config;
#[cfg(feature = "test-receiver")]
pub mod receiver;
mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogger, SdkLoggerProvider};
use serde_json::{Map, Value};

pub use config::{Config, ConfigError};
/// The severity of a record, for [`EventLog::emit_at`].
pub use opentelemetry::logs::Severity;
pub use record::severity;

/// How long queued records may take to leave at exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The ci stage a parent `cargo xtask ci` runs, passed to the deployer it starts.
pub const STAGE_VAR: &str = "DEPLOYER_CI_STAGE";
/// The version a parent `cargo xtask ci` works on, for deployer commands that take none (status).
pub const VERSION_VAR: &str = "DEPLOYER_RELEASE_VERSION";
/// Set by Jenkins to the build's page.
const BUILD_URL_VAR: &str = "BUILD_URL";

/// What a run is about: put on every record it sends, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    pub environment: Option<String>,
    pub version: Option<String>,
    /// The ci stage, e.g. `deploy dev`.
    pub stage: Option<String>,
    /// The CI build's page (Jenkins' `BUILD_URL`).
    pub build_url: Option<String>,
}

impl Run {
    /// What the process's environment says: `BUILD_URL`, and the stage and version a parent
    /// `cargo xtask ci` passed down ([`STAGE_VAR`], [`VERSION_VAR`]).
    pub fn from_env() -> Run {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Run {
            environment: None,
            version: var(VERSION_VAR),
            stage: var(STAGE_VAR),
            build_url: var(BUILD_URL_VAR),
        }
    }

    /// The variables that hand this run's stage and version to a child deployer.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        [(STAGE_VAR, &self.stage), (VERSION_VAR, &self.version)]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.clone()?)))
            .collect()
    }

    fn attributes(&self) -> impl Iterator<Item = (&'static str, String)> {
        [
            ("deployment.environment.name", &self.environment),
            ("release.version", &self.version),
            ("cicd.pipeline.task.name", &self.stage),
            ("cicd.pipeline.run.url.full", &self.build_url),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.clone()?)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set up the OTLP export of events: {0}")]
    Setup(String),
}

/// A running export of events; cheap to clone (the clones share one queue).
#[derive(Clone, Debug)]
pub struct EventLog {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
    run: Run,
    warning: Arc<Warning>,
}

impl EventLog {
    /// The export the process's environment configures, `None` when it configures none.
    /// `service` is the resource's service.name unless `OTEL_SERVICE_NAME` or
    /// `OTEL_RESOURCE_ATTRIBUTES` name one.
    pub fn from_env(service: &'static str, version: &str, run: Run) -> Result<Option<Self>, Error> {
        Config::from_env()?
            .map(|config| Self::start(&config, service, version, run))
            .transpose()
    }

    /// Starts the export to `config`'s endpoint.
    pub fn start(
        config: &Config,
        service: &'static str,
        version: &str,
        run: Run,
    ) -> Result<Self, Error> {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            .with_http_client(client::UreqClient::new(config.timeout))
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        let warning = Arc::new(Warning::new(&config.endpoint));
        let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            version.to_owned(),
        ));
        if !service_name_given(|name| std::env::var(name).ok()) {
            resource = resource.with_service_name(service);
        }
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(Warned {
                inner: exporter,
                warning: warning.clone(),
            })
            .with_resource(resource.build())
            .build();
        Ok(EventLog {
            logger: provider.logger(service),
            provider,
            run,
            warning,
        })
    }

    /// Queues the event `kind` with its `fields`, at the severity of its kind.
    pub fn emit(&self, kind: &str, fields: &Map<String, Value>) {
        self.emit_at(severity(kind), kind, fields);
    }

    /// Queues the event `kind` at `severity` (a failed stage's end is an error).
    pub fn emit_at(&self, severity: Severity, kind: &str, fields: &Map<String, Value>) {
        let now = SystemTime::now();
        let mut log = self.logger.create_log_record();
        log.set_timestamp(now);
        log.set_observed_timestamp(now);
        log.set_severity_number(severity);
        log.set_severity_text(severity.name());
        log.set_body(record::body(kind, fields).into());
        log.add_attribute("event.name", kind.to_owned());
        log.add_attributes(self.run.attributes());
        log.add_attributes(record::attributes(fields));
        self.logger.emit(log);
    }

    /// Sends what is queued, waiting at most [`FLUSH_TIMEOUT`]; says once if that failed.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            self.warning
                .show(&format!("{error}; events not sent by then are lost"));
        }
    }
}

/// The user named the service through the standard variables.
fn service_name_given(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        })
}

/// One warning line on stderr for the first export problem; later ones are not repeated.
#[derive(Debug)]
struct Warning {
    endpoint: String,
    shown: AtomicBool,
}

impl Warning {
    fn new(endpoint: &str) -> Self {
        Warning {
            endpoint: endpoint.to_owned(),
            shown: AtomicBool::new(false),
        }
    }

    fn show(&self, problem: &str) {
        if !self.shown.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: events could not be sent to {} ({problem}); the command goes on, later failures are not shown",
                self.endpoint
            );
        }
    }
}

/// The OTLP exporter, with a failed export reported through [`Warning`].
#[derive(Debug)]
struct Warned<E> {
    inner: E,
    warning: Arc<Warning>,
}

impl<E: LogExporter> LogExporter for Warned<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.warning.show(&error.to_string());
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_gets_the_stage_and_version_only_when_known() {
        let run = Run {
            environment: Some("qa".into()),
            version: Some("1.2.0".into()),
            stage: Some("deploy qa".into()),
            build_url: Some("https://ci.example/job/1/".into()),
        };
        assert_eq!(
            run.child_env(),
            [
                (STAGE_VAR, "deploy qa".to_owned()),
                (VERSION_VAR, "1.2.0".to_owned())
            ]
        );
        let attributes: Vec<_> = run.attributes().map(|(key, _)| key).collect();
        assert_eq!(
            attributes,
            [
                "deployment.environment.name",
                "release.version",
                "cicd.pipeline.task.name",
                "cicd.pipeline.run.url.full"
            ]
        );
        assert_eq!(Run::default().child_env(), []);
        assert_eq!(Run::default().attributes().count(), 0);
    }

    #[test]
    fn a_service_name_in_the_standard_variables_wins() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert!(!service_name_given(vars(&[])));
        assert!(service_name_given(vars(&[("OTEL_SERVICE_NAME", "ci")])));
        assert!(service_name_given(vars(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=infra, service.name=ci"
        )])));
        assert!(!service_name_given(vars(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=infra"
        )])));
    }
}
