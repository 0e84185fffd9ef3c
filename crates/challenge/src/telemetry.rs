//! Logs, metrics and per-request observation.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::build_info::BUILD;
use crate::config::LogFormat;
use crate::pool::PoolStatus;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global log subscriber: JSON (default) or text on stdout, filtered by `RUST_LOG`.
/// Safe to call more than once (later calls keep the first subscriber).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder (a recorder is global, so it is installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Bucket bounds recommended by the OpenTelemetry HTTP semantic conventions.
            let http_buckets = [
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &http_buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("wait_time_seconds".into()),
                        &http_buckets,
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

pub fn record_pool_gauges(pool: PoolStatus) {
    let used = pool.open.saturating_sub(pool.idle);
    metrics::gauge!("db_client_connection_count", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("db_client_connection_count", "state" => "used").set(used as f64);
    metrics::gauge!("db_client_connection_max").set(pool.max as f64);
    metrics::gauge!("db_client_connection_pending_requests").set(pool.waiting as f64);
}

/// Request id (accepted from `x-request-id` or generated, echoed back), trace id (from a W3C
/// `traceparent` or generated), the request metrics, and one log line per request.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let trace_id = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_of)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID, value);
    }
    let method = req.method().clone();
    // Every label value comes from a closed set, never from the request as sent: the method is one
    // of the standard ones or `_OTHER`, the route is the matched template (never the raw path) or
    // `unmatched`, the status is one this server produced.
    let method_label = method_label(&method);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());

    let active =
        metrics::gauge!("http_server_active_requests", "http_request_method" => method_label);
    active.increment(1.0);
    let mut response = next.run(req).await;
    active.decrement(1.0);

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "http_request_method" => method_label,
        "http_route" => route.clone(),
        "http_response_status_code" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        target: "http",
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id,
        trace_id = %trace_id,
        "request"
    );
    response
}

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
