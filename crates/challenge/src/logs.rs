//! Log records over OTLP/HTTP (protobuf), beside the stdout lines, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`) is set, while the
//! endpoint's host name resolves (the gate in [`crate::otlp`]). Stdout stays the default and the
//! only output without an endpoint.
//!
//! Every event that passes `RUST_LOG` becomes a record with the same fields as attributes and the
//! message as body. An event inside a request's span (the request log line) carries that span's
//! trace and span ids: tracing-opentelemetry activates the span's OpenTelemetry context while the
//! span is entered, and the SDK stamps records with the active context.
//!
//! Records go to a bounded queue drained by a background thread; records that do not fit are
//! dropped. The batch processor reads `OTEL_BLRP_MAX_QUEUE_SIZE`, `OTEL_BLRP_SCHEDULE_DELAY` and
//! `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`; the exporter reads the `OTEL_EXPORTER_OTLP_(LOGS_)*`
//! variables. At exit, pending records get [`FLUSH_TIMEOUT`], no more.
//!
//! The events of the exporter's own crates (HTTP client, OpenTelemetry SDK) never enter this
//! pipeline: exporting them would produce more of them, in a loop.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter};

use crate::otlp::{self, ExportSetupError, FLUSH_TIMEOUT};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether log records are being exported over OTLP (stdout lines are written regardless).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The switch behind [`enabled`], which the export gate turns.
pub(crate) fn switch() -> &'static AtomicBool {
    &ENABLED
}

/// Crates whose events the export itself causes: the HTTP stack of the exporter and the SDK.
const EXPORTER_CRATES: [&str; 6] = ["opentelemetry", "reqwest", "hyper", "h2", "tower", "rustls"];

/// The running export; flushes on [`Logs::shutdown`].
pub struct Logs {
    provider: SdkLoggerProvider,
}

impl Logs {
    /// Builds the exporter from the `OTEL_*` variables and the tracing layer that feeds it (idle
    /// until the gate turns [`enabled`] on).
    pub fn start<S>() -> Result<(Self, impl Layer<S>), ExportSetupError>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| ExportSetupError::new("log", e))?;
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(otlp::resource())
            .build();
        let layer = OpenTelemetryTracingBridge::new(&provider).with_filter(ExportFilter);
        Ok((Self { provider }, layer))
    }

    /// Sends what is queued, waiting at most [`FLUSH_TIMEOUT`].
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(error = %err, "pending log records were not all exported");
        }
    }
}

/// Lets an event into the OTLP pipeline while the gate is open, unless the exporter's own crates
/// emitted it. `RUST_LOG` has already filtered it, as for stdout.
struct ExportFilter;

impl<S> Filter<S> for ExportFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        enabled() && !from_exporter(metadata.target())
    }

    /// Never for the exporter's crates; for the rest, asked at each event, as the gate may turn.
    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        match from_exporter(metadata.target()) {
            true => Interest::never(),
            false => Interest::sometimes(),
        }
    }
}

/// Whether `target` (`crate::module` by default) belongs to one of [`EXPORTER_CRATES`], including
/// their companions such as `hyper_util` or `opentelemetry-otlp`.
fn from_exporter(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    EXPORTER_CRATES.iter().any(|name| {
        krate
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-']))
    })
}

#[cfg(test)]
mod tests {
    use super::from_exporter;

    #[test]
    fn the_exporters_own_events_are_recognised() {
        for target in [
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "opentelemetry",
            "reqwest::blocking::client",
            "hyper_util::client::legacy::pool",
            "hyper::proto::h1::conn",
            "h2::codec",
            "tower::buffer",
            "rustls::client::hs",
        ] {
            assert!(from_exporter(target), "{target}");
        }
    }

    #[test]
    fn the_services_events_are_exported() {
        for target in [
            "http",
            "challenge::startup",
            "sqlx::query",
            "hyperion",
            "towers",
        ] {
            assert!(!from_exporter(target), "{target}");
        }
    }
}
