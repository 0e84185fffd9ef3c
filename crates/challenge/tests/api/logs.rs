//! Logs over OTLP: the real binary sends its log records to a real OTLP/HTTP receiver (the one of
//! `traces.rs`) beside its stdout lines; a request's record carries the request's trace and the
//! fields of its JSON line, no record holds a task's title or a password, and an endpoint whose
//! name does not resolve exports nothing.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use secrecy::ExposeSecret;

use crate::helpers::Binary;
use crate::traces::{Receiver, hex};

const POST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const GET_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";
const TITLE: &str = "a title that must stay out of the exported logs";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{CALLER_SPAN_ID}-01")
}

/// Every log record received so far.
fn records(receiver: &Receiver) -> Vec<LogRecord> {
    let received = receiver.received.lock().unwrap();
    received
        .logs
        .iter()
        .flat_map(|resource| &resource.scope_logs)
        .flat_map(|scope| scope.log_records.clone())
        .collect()
}

/// Waits until records satisfying `done` arrive, and returns all records received by then.
async fn wait_for_records(
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[LogRecord]) -> bool,
) -> Vec<LogRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let received = records(receiver);
        if done(&received) {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what} not exported within 10 s; received:\n{:#?}",
        records(receiver)
    );
}

fn body(record: &LogRecord) -> Option<&str> {
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

/// An attribute value as the JSON value the stdout line writes for it.
fn json(value: &AnyValue) -> serde_json::Value {
    match value.value.as_ref() {
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(d)) => (*d).into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        other => panic!("an attribute of an unexpected type: {other:?}"),
    }
}

fn attributes(record: &LogRecord) -> serde_json::Map<String, serde_json::Value> {
    record
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), json(kv.value.as_ref().expect("a value"))))
        .collect()
}

/// The "request" records of the trace `trace_id` (the record's own trace id, not an attribute).
fn request_records<'a>(records: &'a [LogRecord], trace_id: &str) -> Vec<&'a LogRecord> {
    records
        .iter()
        .filter(|r| body(r) == Some("request") && hex(&r.trace_id) == trace_id)
        .collect()
}

/// The fields of the stdout JSON line of the request `request_id`, as the record's attributes
/// should hold them (without the line's own timestamp, level, message and target).
fn json_line_fields(stdout: &str, request_id: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["target"] == "http" && l["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no JSON line for request {request_id} in:\n{stdout}"));
    let fields = line.as_object_mut().expect("a JSON object");
    for own in ["timestamp", "level", "message", "target"] {
        fields.remove(own);
    }
    fields.clone()
}

/// No string anywhere in the exported records (bodies, attributes, resources) contains a secret.
fn assert_nothing_holds(receiver: &Receiver, secrets: &[&str]) {
    let everything = format!("{:?}", receiver.received.lock().unwrap().logs);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !everything.contains(secret),
            "{secret:?} was exported: {everything}"
        );
    }
}

#[tokio::test]
async fn request_records_carry_the_callers_trace_and_the_fields_of_the_json_line() {
    let receiver = Receiver::start().await;
    let mut server = Binary::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ],
        true,
    )
    .await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/api/tasks", server.base))
        .header("traceparent", traceparent(POST_TRACE))
        .json(&serde_json::json!({ "title": TITLE }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let task: serde_json::Value = created.json().await.unwrap();
    let got = client
        .get(format!("{}/api/tasks/{}", server.base, task["id"]))
        .header("traceparent", traceparent(GET_TRACE))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);

    let records = wait_for_records(&receiver, "the two request records", |records| {
        [POST_TRACE, GET_TRACE]
            .iter()
            .all(|trace| !request_records(records, trace).is_empty())
    })
    .await;
    let spans = receiver.wait_for("GET /api/tasks/{id}").await;
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    let stdout = server.logs().await;

    for (trace, span_name, route) in [
        (POST_TRACE, "POST /api/tasks", "/api/tasks"),
        (GET_TRACE, "GET /api/tasks/{id}", "/api/tasks/{id}"),
    ] {
        let found = request_records(&records, trace);
        assert_eq!(found.len(), 1, "one record for {span_name}: {found:#?}");
        let record = found[0];
        let span = spans
            .iter()
            .find(|s| s.name == span_name)
            .unwrap_or_else(|| panic!("no span {span_name}"));
        assert_eq!(
            hex(&record.span_id),
            hex(&span.span_id),
            "the record is stamped with the request's server span"
        );
        assert_eq!(record.severity_text, "INFO");
        let fields = attributes(record);
        assert_eq!(fields["route"], route);
        assert_eq!(fields["trace_id"], trace);
        let request_id = fields["request_id"].as_str().expect("a request id");
        assert_eq!(
            fields,
            json_line_fields(&stdout, request_id),
            "the record and the stdout line of {span_name}"
        );
    }

    let resource = receiver.received.lock().unwrap().logs[0].resource.clone();
    let service_name = resource
        .expect("a resource")
        .attributes
        .into_iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value)
        .map(|v| json(&v));
    assert_eq!(service_name, Some("challenge".into()));
    let password = server.settings.password.expose_secret().to_owned();
    assert_nothing_holds(&receiver, &[TITLE, &password]);
}

#[tokio::test]
async fn no_record_holds_the_password_the_database_refuses() {
    const PASSWORD: &str = "refused-password-that-must-stay-secret";
    let receiver = Receiver::start().await;
    let mut server = Binary::start_until(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ("DB_PASSWORD", PASSWORD),
        ],
        false,
        "/healthz",
    )
    .await;
    let refused = reqwest::Client::new()
        .post(format!("{}/api/tasks", server.base))
        .json(&serde_json::json!({ "title": TITLE }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);

    wait_for_records(&receiver, "a warning and the 503's record", |records| {
        let warned = records.iter().any(|r| r.severity_text == "WARN");
        let request = records
            .iter()
            .any(|r| body(r) == Some("request") && attributes(r)["status"] == 503);
        warned && request
    })
    .await;
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    assert_nothing_holds(&receiver, &[TITLE, PASSWORD]);
}

#[tokio::test]
async fn an_endpoint_whose_name_does_not_resolve_gets_nothing_built_nor_sent() {
    let receiver = Receiver::start().await;
    let logs_endpoint = format!("{}/v1/logs", receiver.endpoint);
    let mut server = Binary::start(
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://otel-collector.invalid:4318/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &logs_endpoint),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ],
        true,
    )
    .await;
    let got = reqwest::Client::new()
        .get(format!("{}/api/tasks/1", server.base))
        .header("traceparent", traceparent(GET_TRACE))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);

    let records = wait_for_records(&receiver, "the request record", |records| {
        records.iter().any(|r| body(r) == Some("request"))
    })
    .await;
    let record = records.iter().find(|r| body(r) == Some("request")).unwrap();
    // Traces are paused, so no span was built: the record has no trace context of its own, and
    // the line's trace id is the caller's.
    assert!(
        record.trace_id.is_empty() && record.span_id.is_empty(),
        "{record:?}"
    );
    assert_eq!(attributes(record)["trace_id"], GET_TRACE);
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    let stdout = server.logs().await;
    assert!(
        stdout
            .contains("OTLP endpoint otel-collector.invalid:4318 does not resolve: export paused"),
        "{stdout}"
    );
    let receiver_authority = receiver.endpoint.trim_start_matches("http://");
    assert!(
        stdout.contains(&format!(
            "OTLP endpoint {receiver_authority} resolves: exporting"
        )),
        "{stdout}"
    );
}

/// Without an export, a request's line carries the trace id of the caller's `traceparent`, or a new
/// one of its own (worked out only when the line is written).
#[tokio::test]
async fn without_an_export_the_line_carries_the_callers_trace_id_or_a_new_one() {
    let mut server = Binary::start(&[], true).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/tasks/1", server.base);
    let mut request_ids = Vec::new();
    for traceparent in [None, Some(traceparent(GET_TRACE))] {
        let mut request = client.get(&url);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let got = request.send().await.unwrap();
        assert_eq!(got.status(), 200);
        request_ids.push(got.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
    let stdout = server.logs().await;

    let new = json_line_fields(&stdout, &request_ids[0])["trace_id"].clone();
    let new = new.as_str().expect("a trace id");
    assert!(
        new.len() == 32 && new.bytes().all(|b| b.is_ascii_hexdigit()) && new != GET_TRACE,
        "{new}"
    );
    assert_eq!(
        json_line_fields(&stdout, &request_ids[1])["trace_id"],
        GET_TRACE
    );
}

/// The `http` line of the request `request_id` on stdout, as JSON.
fn request_line(stdout: &str, request_id: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["target"] == "http" && line["request_id"] == request_id)
}

/// A failed request (5xx) is logged as a warning, one that went well as info, so that
/// `RUST_LOG=info,http=warn` keeps the failures' lines only (what docs/BENCHMARKS.md offers for the
/// Compose stack); probes stay debug whatever they answer.
#[tokio::test]
async fn failed_requests_are_warnings_so_a_filter_can_keep_them_alone() {
    // The database refuses this password: every database-backed request fails with 503.
    let refused = [("DB_PASSWORD", "a-password-the-database-refuses")];
    for (filter, expect_ok_line) in [("info", true), ("info,http=warn", false)] {
        let env = [refused[0], ("RUST_LOG", filter), ("LOG_FORMAT", "json")];
        let mut server = Binary::start_until(&env, true, "/healthz").await;
        let client = reqwest::Client::new();
        // (path, request id, expected status): a failure, a probe, a client error.
        for (path, id, status) in [
            ("/api/tasks/1", "failed-request", 503),
            ("/healthz", "probe-request", 200),
            ("/no/such/route", "client-error", 404),
        ] {
            let response = client
                .get(format!("{}{path}", server.base))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "GET {path}");
        }
        server.terminate();
        assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
        let stdout = server.logs().await;

        let line = request_line(&stdout, "failed-request")
            .unwrap_or_else(|| panic!("RUST_LOG={filter}: no line for the 503 in:\n{stdout}"));
        assert_eq!(line["level"], "WARN", "RUST_LOG={filter}: {line}");
        assert_eq!(line["status"], 503);
        assert!(
            request_line(&stdout, "probe-request").is_none(),
            "RUST_LOG={filter}: a probe logged at info or above:\n{stdout}"
        );
        match request_line(&stdout, "client-error") {
            Some(line) if expect_ok_line => assert_eq!(line["level"], "INFO", "{line}"),
            None if !expect_ok_line => {}
            other => panic!("RUST_LOG={filter}: the 404's line: {other:?}\n{stdout}"),
        }
    }
}
