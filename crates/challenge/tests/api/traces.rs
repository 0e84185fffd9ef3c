//! Traces: the real binary exports spans over OTLP/HTTP to a real receiver (the collector's own
//! protobuf messages, decoded here); with the receiver gone, requests, log export and shutdown are
//! unaffected. The receiver takes log records too, for the tests in `logs.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::helpers::Binary;

/// What an OTLP/HTTP receiver was sent: every span, and every log record with its resource.
#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    pub logs: Vec<ResourceLogs>,
}

type Shared = Arc<Mutex<Received>>;

/// An OTLP/HTTP receiver (`/v1/traces` and `/v1/logs`) on a random port.
pub struct Receiver {
    pub endpoint: String,
    pub received: Shared,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Shared::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(receive_spans))
            .route("/v1/logs", post(receive_logs))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, received }
    }

    /// Waits until a span named `name` arrives, and returns all spans received by then.
    pub async fn wait_for(&self, name: &str) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let spans = self.received.lock().unwrap().spans.clone();
            if spans.iter().any(|s| s.name == name) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no span named {name:?} was exported within 10 s");
    }
}

async fn receive_spans(State(received): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf trace export");
    let mut received = received.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            received.spans.extend(scope.spans);
        }
    }
    ""
}

async fn receive_logs(State(received): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportLogsServiceRequest::decode(body).expect("an OTLP protobuf log export");
    received.lock().unwrap().logs.extend(request.resource_logs);
    ""
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key} of span {:?}: {other:?}", span.name),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_request_is_a_server_span_under_the_callers_traceparent_with_a_db_span_under_it() {
    let receiver = Receiver::start().await;
    let mut server = Binary::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        true,
    )
    .await;
    let title = "a title that must stay out of traces";
    let response = reqwest::Client::new()
        .post(format!("{}/api/tasks", server.base))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let spans = receiver.wait_for("POST /api/tasks").await;
    let server_span = spans.iter().find(|s| s.name == "POST /api/tasks").unwrap();
    assert_eq!(hex(&server_span.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    assert_eq!(text(server_span, "http.request.method"), "POST");
    assert_eq!(text(server_span, "http.route"), "/api/tasks");
    assert!(
        matches!(
            attribute(server_span, "http.response.status_code"),
            Some(Value::IntValue(201))
        ),
        "{:?}",
        server_span.attributes
    );

    let db_span = spans
        .iter()
        .find(|s| s.name == "INSERT tasks")
        .expect("a span for the INSERT");
    assert_eq!(db_span.trace_id, server_span.trace_id);
    assert_eq!(
        db_span.parent_span_id, server_span.span_id,
        "child of the request"
    );
    assert_eq!(db_span.kind, SpanKind::Client as i32);
    assert_eq!(text(db_span, "db.system.name"), "mysql");
    assert_eq!(text(db_span, "db.operation.name"), "INSERT");
    for span in &spans {
        for kv in &span.attributes {
            assert!(
                !format!("{:?}", kv.value).contains(title),
                "a parameter value reached span {:?} as {}",
                span.name,
                kv.key
            );
        }
    }

    // The request's log line carries the same trace id.
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    let logs = server.logs().await;
    let line = logs
        .lines()
        .find(|l| l.contains("\"route\":\"/api/tasks\"") && l.contains("\"status\":201"))
        .unwrap_or_else(|| panic!("no log line for the POST in:\n{logs}"));
    assert!(
        line.contains(&format!("\"trace_id\":\"{TRACE_ID}\"")),
        "{line}"
    );
    // Readiness was polled until the server was ready: probes log at debug, below the default info.
    assert!(!logs.contains("\"route\":\"/readyz\""), "{logs}");
}

#[tokio::test]
async fn a_quieter_log_filter_keeps_every_span() {
    // RUST_LOG filters log lines only: at `warn` the request and database spans are still exported.
    let receiver = Receiver::start().await;
    let server = Binary::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "warn"),
        ],
        false,
    )
    .await;
    let response = reqwest::get(format!("{}/api/tasks/1", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver.wait_for("GET /api/tasks/{id}").await;
    let request = spans
        .iter()
        .find(|s| s.name == "GET /api/tasks/{id}")
        .unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "SELECT tasks" && s.parent_span_id == request.span_id),
        "no database span under the request: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_collector_that_is_down_neither_slows_requests_nor_holds_the_shutdown() {
    // A port with nothing listening: every export, of spans and of log records, fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut server = Binary::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{closed}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
            ("SHUTDOWN_TIMEOUT", "2s"),
        ],
        false,
    )
    .await;
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let started = Instant::now();
        let response = client
            .get(format!("{}/api/tasks/1", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}"
    );

    let started = Instant::now();
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    // The drain (2 s at most, nothing in flight here) plus the bounded flush of pending spans and
    // log records, which run side by side.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
}
