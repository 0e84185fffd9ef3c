//! A real OTLP/HTTP logs receiver for tests (feature `test-receiver`): it decodes the Collector's
//! own protobuf messages, so a test sees exactly what a Collector would be sent.
//!
//! It runs on a thread of its own, so blocking tests (which start a binary and wait) can use it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

/// One log record as received, with the attributes of the resource that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub resource: Vec<KeyValue>,
    pub record: LogRecord,
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

impl Received {
    /// A record attribute, as sent.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        find(&self.record.attributes, key)
    }

    /// A string record attribute.
    pub fn text(&self, key: &str) -> Option<String> {
        as_text(self.attribute(key))
    }

    /// A string resource attribute (service.name, service.version).
    pub fn resource_text(&self, key: &str) -> Option<String> {
        as_text(find(&self.resource, key))
    }

    /// The body, when it is a string.
    pub fn body(&self) -> Option<String> {
        as_text(self.record.body.as_ref().and_then(|b| b.value.as_ref()))
    }

    /// The `event.name` attribute.
    pub fn event(&self) -> Option<String> {
        self.text("event.name")
    }
}

type Records = Arc<Mutex<Vec<Received>>>;

/// The receiver; `endpoint` is its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
pub struct Receiver {
    pub endpoint: String,
    records: Records,
}

impl Receiver {
    /// Listens on a random loopback port, until the test process ends.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let records = Records::default();
        let app = axum::Router::new()
            .route("/v1/logs", post(receive))
            .with_state(records.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the receiver");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, app).await
            })
        });
        Receiver { endpoint, records }
    }

    /// Every record received so far.
    pub fn records(&self) -> Vec<Received> {
        self.records.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until a record with `event.name` = `event` arrives; returns all
    /// records received by then. Panics, naming what it waited for, when none comes.
    pub fn wait_for_event(&self, event: &str) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.records();
            if records.iter().any(|r| r.event().as_deref() == Some(event)) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "no record with event.name={event:?} arrived within 10 s; received: {records:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn receive(State(records): State<Records>, body: Bytes) -> &'static str {
    let request = ExportLogsServiceRequest::decode(body).expect("an OTLP protobuf logs export");
    let mut kept = records.lock().unwrap();
    for resource_logs in request.resource_logs {
        let resource = resource_logs
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        for scope in resource_logs.scope_logs {
            kept.extend(scope.log_records.into_iter().map(|record| Received {
                resource: resource.clone(),
                record,
            }));
        }
    }
    ""
}

/// An endpoint on which nothing listens (a port just released), for tests of a dead collector.
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    format!("http://{}", listener.local_addr().expect("its address"))
}
