//! Traces (APM): OpenTelemetry spans exported over OTLP/HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, while the
//! endpoint's host name resolves (the gate in [`crate::otlp`]).
//!
//! The standard variables configure it, read by the OpenTelemetry SDK itself: `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES` (the service name defaults to `challenge`), `OTEL_TRACES_SAMPLER`
//! and `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, and the batch processor's `OTEL_BSP_*` (queue size, delay, batch).
//!
//! Export never slows a request: spans go to a bounded queue drained by a background thread, and
//! spans that do not fit are dropped. At exit, pending spans get [`FLUSH_TIMEOUT`], no more.
//! The resource (`service.name`, `service.version`) is the one the log records carry too.
//!
//! Each request is a server span named like `GET /api/tasks/{id}` with the HTTP semantic-convention
//! attributes, whose parent is the caller's W3C `traceparent` when it sends one; each database call is
//! a client span under it (`db.system.name`, `db.operation.name`, never parameter values).

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::otlp::{self, ExportSetupError, FLUSH_TIMEOUT};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported; without export no span is built at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The switch behind [`enabled`], which the export gate turns.
pub(crate) fn switch() -> &'static AtomicBool {
    &ENABLED
}

/// The running export; flushes on [`Traces::shutdown`].
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter from the `OTEL_*` variables and the tracing layer that feeds it (idle
    /// until the gate turns [`enabled`] on).
    pub fn start<S>() -> Result<(Self, impl tracing_subscriber::Layer<S>), ExportSetupError>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| ExportSetupError::new("trace", e))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(otlp::resource())
            .build();
        // Only the conventions' attributes: no source location, thread, target or busy/idle times.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("challenge"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false);
        Ok((Self { provider }, layer))
    }

    /// Sends what is queued, waiting at most [`FLUSH_TIMEOUT`].
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(error = %err, "pending spans were not all exported");
        }
    }
}

/// What the span exporter takes: the request and database spans built here, whatever `RUST_LOG`
/// says (it filters log lines only), and no span of a dependency.
pub fn span_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target(module_path!(), tracing::Level::INFO)
}

/// The server span of a request: named by method and route template, child of the caller's
/// `traceparent` when there is one. `Span::none()` when traces are off.
pub fn server_span(headers: &HeaderMap, method: &str, route: &str, path: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled by the filter; then there is nothing to parent.
    let _ = span.set_parent(parent);
    span
}

/// Records the outcome on a server span (5xx marks it as an error, as the conventions say).
pub fn record_status(span: &Span, status: u16) {
    // As i64: the exporter turns unsigned values into strings, the conventions want an int.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// A client span for one database call, child of the current (request) span. `Span::none()` when
/// traces are off.
pub fn db_span(operation: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "db",
        otel.name = %format_args!("{operation} tasks"),
        otel.kind = "client",
        db.system.name = "mysql",
        db.operation.name = operation,
        db.collection.name = "tasks",
    )
}

/// The trace id of `span` as 32 hex digits, when the span is exported.
pub fn trace_id(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
