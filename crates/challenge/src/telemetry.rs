//! Logs, metrics and per-request observation.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::attribution::{self, Part};
use crate::build_info::BUILD;
use crate::config::{LogFormat, OtlpSettings};
use crate::exemplars;
use crate::logs::Logs;
use crate::otlp::{Export, ExportSetupError};
use crate::pool::PoolStatus;
use crate::traces::{self, Traces};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber: logs as JSON (default) or text on stdout, filtered by `RUST_LOG`,
/// and, for the signals `otlp` names, spans (see [`crate::traces`]) and the same log events (see
/// [`crate::logs`]) to their OTLP exporters, behind the gate of [`crate::otlp`]. The export's handle
/// is returned for a flush at exit. Safe to call more than once (later calls keep the first
/// subscriber and export nothing).
pub fn init(format: LogFormat, otlp: &OtlpSettings) -> Result<Option<Export>, ExportSetupError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};

    // `RUST_LOG` filters the log lines (stdout and OTLP alike), never the spans: a quieter log must
    // not switch traces and their exemplars off. Spans have a filter of their own.
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Text => fmt::layer().with_writer(std::io::stdout).boxed(),
    };
    let (traces, spans) = match otlp.traces {
        Some(_) => {
            let (traces, layer) = Traces::start()?;
            (Some(traces), Some(layer))
        }
        None => (None, None),
    };
    let (records, records_layer) = match otlp.logs {
        Some(_) => {
            let (records, layer) = Logs::start()?;
            (Some(records), Some(layer))
        }
        None => (None, None),
    };
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(log_filter()))
        .with(spans.with_filter(traces::span_filter()))
        .with(records_layer.with_filter(log_filter()))
        .try_init()
        .is_ok();
    // The gate starts once the subscriber is in place, so that its first verdict is logged.
    let exporting = installed && (traces.is_some() || records.is_some());
    Ok(exporting.then(|| Export::start(otlp, traces, records)))
}

/// Bucket bounds (seconds) of the duration histograms, as the OpenTelemetry HTTP semantic
/// conventions recommend; [`crate::exemplars`] files its exemplars under the same buckets.
pub const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The process-wide Prometheus recorder (a recorder is global, so it is installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("wait_time_seconds".into()),
                        &HTTP_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                // Only fails on an empty bucket list, which the constant above is not.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Another recorder may exist in tests that embed the app; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_server_request_duration_seconds",
        Unit::Seconds,
        "Duration of HTTP server requests."
    );
    describe_gauge!(
        "http_server_active_requests",
        "Number of active HTTP server requests."
    );
    describe_gauge!(
        "http_server_open_connections",
        "Open client connections (HTTP_MAX_CONNECTIONS at most)."
    );
    describe_histogram!(
        "db_client_operation_duration_seconds",
        Unit::Seconds,
        "Duration of database work for one API call, connection wait included."
    );
    describe_gauge!(
        "db_client_connection_count",
        "Connections in the pool by state (idle, used)."
    );
    describe_gauge!(
        "db_client_connection_max",
        "Largest number of connections the pool opens."
    );
    describe_gauge!(
        "db_client_connection_pending_requests",
        "Requests waiting for a pooled connection."
    );
    describe_gauge!(
        "challenge_ready",
        "1 when the last readiness check (/readyz) found the service ready, else 0."
    );
    process_collector().describe();
    describe_gauge!(
        "challenge_build_info",
        "Build metadata of the running binary; always 1."
    );
    metrics::gauge!("challenge_build_info", "version" => BUILD.version, "git_sha" => BUILD.git_sha)
        .set(1.0);
}

/// Keeps histogram memory bounded between scrapes.
pub fn spawn_metrics_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Refreshes the gauges that are read rather than counted, right before a scrape renders them.
pub fn before_scrape(pool: PoolStatus) {
    record_pool_gauges(pool);
    process_collector().collect();
}

/// The last readiness verdict, as `challenge_ready` (1 ready, 0 not), for alerting.
pub fn record_readiness(ready: bool) {
    metrics::gauge!("challenge_ready").set(if ready { 1.0 } else { 0.0 });
}

/// CPU seconds, resident memory, open and max fds, start time: the standard `process_*` metrics.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

fn record_pool_gauges(pool: PoolStatus) {
    let used = pool.open.saturating_sub(pool.idle);
    metrics::gauge!("db_client_connection_count", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("db_client_connection_count", "state" => "used").set(used as f64);
    metrics::gauge!("db_client_connection_max").set(pool.max as f64);
    metrics::gauge!("db_client_connection_pending_requests").set(pool.waiting as f64);
}

/// Request id (accepted from `x-request-id` or generated, echoed back), trace id, the request
/// metrics, the request's server span when traces are exported, and one log line per request
/// (`debug` for the probes, whose callers poll every few seconds; `info` for the rest).
pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (ids, metered, traced) = (
        attribution::on(Part::RequestId),
        attribution::on(Part::Metrics),
        attribution::on(Part::Tracing),
    );
    let request_id = if ids { request_id(&mut req) } else { None };
    let method = req.method().clone();
    // Every label value comes from a closed set, never from the request as sent: the method is one
    // of the standard ones or `_OTHER`, the route is the matched template (never the raw path) or
    // `unmatched`, the status is one this server produced.
    let method_label = method_label(&method);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = if traced {
        traces::server_span(req.headers(), method_label, &route, req.uri().path())
    } else {
        tracing::Span::none()
    };
    // The exported span's trace id when there is one (also the latency exemplar's); else the log
    // line's trace id is the caller's `traceparent`, or new, worked out only when the line is
    // written (not at all when RUST_LOG leaves it out).
    let exported_trace_id = traces::trace_id(&span);
    let traceparent = match exported_trace_id {
        None if ids => req.headers().get("traceparent").cloned(),
        _ => None,
    };

    let active =
        metrics::gauge!("http_server_active_requests", "http_request_method" => method_label);
    if metered {
        active.increment(1.0);
    }
    let mut response = if traced {
        next.run(req).instrument(span.clone()).await
    } else {
        next.run(req).await
    };
    if metered {
        active.decrement(1.0);
    }

    let status = response.status().as_u16();
    traces::record_status(&span, status);
    let elapsed = started.elapsed();
    if metered {
        metrics::histogram!(
            "http_server_request_duration_seconds",
            "http_request_method" => method_label,
            "http_route" => route.clone(),
            "http_response_status_code" => status.to_string(),
        )
        .record(elapsed.as_secs_f64());
    }
    if let Some(value) = &request_id {
        response.headers_mut().insert(REQUEST_ID, value.clone());
    }
    if traced {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let request_id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The fields are evaluated only when RUST_LOG lets the line through.
        let trace_id = || match (&exported_trace_id, ids) {
            (Some(exported), _) => exported.clone(),
            (None, true) => traceparent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(trace_id_of)
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            (None, false) => String::new(),
        };
        macro_rules! log_request {
            ($level:ident) => {
                tracing::$level!(target: "http", method = %method, route = %route, status,
                    latency_ms, request_id, trace_id = %trace_id(), "request")
            };
        }
        // Inside the request's span, so that its OTLP log record carries the span's trace and span
        // ids. Probes are debug, whatever they answer (a readiness check fails every second while
        // the database is away). A failed request (5xx) is a warning: `RUST_LOG=info,http=warn`
        // keeps its line and drops those of the requests that went well (a line costs the Compose
        // stack as much CPU as the request itself: docs/BENCHMARKS.md, "The log path").
        span.in_scope(|| {
            if PROBES.contains(&route.as_str()) {
                log_request!(debug);
            } else if status >= 500 {
                log_request!(warn);
            } else {
                log_request!(info);
            }
        });
    }
    if metered && let Some(exported) = exported_trace_id {
        exemplars::record(exported, method_label, &route, status, elapsed);
    }
    response
}

/// The request's id: the caller's `x-request-id` when it is 1 to 128 visible ASCII characters,
/// else a new UUID, set on the request for the handlers. Echoed on the response.
fn request_id(req: &mut Request) -> Option<HeaderValue> {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok());
    if let Some(given) = given {
        return Some(given.clone());
    }
    let mut buffer = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    let value = HeaderValue::from_str(id).ok()?;
    req.headers_mut().insert(REQUEST_ID, value.clone());
    Some(value)
}

/// Routes polled by health checks and scrapers.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The `http.request.method` attribute of the OpenTelemetry HTTP conventions: the method when it is
/// one of the nine standard ones, `_OTHER` for anything else a client may invent.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::{Method, method_label, trace_id_of};

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        for invented in ["FOOBAR1", "get", "PROPFIND"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "_OTHER", "{invented}");
        }
    }

    #[test]
    fn traceparent_gives_its_trace_id() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }
}
