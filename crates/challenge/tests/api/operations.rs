//! Probes, metrics (both formats, and exemplars), version, OpenAPI, request ids.

use axum::routing::post;

use crate::helpers::{Binary, spawn_app, task_path};

/// What Prometheus 2.42 sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[tokio::test]
async fn healthz_and_readyz_are_200_when_ready() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(
        body["checks"]["schema"]["version"],
        challenge::db::expected_schema_version()
    );
}

#[tokio::test]
async fn readyz_is_503_while_draining() {
    let app = spawn_app().await;
    app.health.start_draining();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");
}

#[tokio::test]
async fn metrics_use_route_templates_and_otel_names() {
    let app = spawn_app().await;
    let task = app.create_task("measured").await;
    let path = task_path(&task);
    assert_eq!(app.get(&path).await.status(), 200);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("http_route=\"/api/tasks/{id}\"")
                && l.contains("http_request_method=\"GET\"")
                && l.contains("http_response_status_code=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request histogram for the route template in:\n{text}"));
    assert!(
        !line.contains(&format!("/api/tasks/{}", task["id"])),
        "raw path leaked: {line}"
    );
    for name in [
        "http_server_active_requests",
        "db_client_connection_count",
        "db_client_connection_max",
        "db_client_operation_duration_seconds_bucket",
        "challenge_build_info{",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn metrics_are_openmetrics_when_the_scraper_asks_and_the_old_text_otherwise() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/tasks").await.status(), 200);
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("\n# EOF\n"), "no final # EOF:\n{text}");
    assert!(
        !text.lines().any(|l| l.trim().is_empty()),
        "blank line in:\n{text}"
    );
    assert!(
        text.contains("# TYPE process_cpu_seconds counter\n")
            && text.contains("\nprocess_cpu_seconds_total "),
        "the counter family is not named as OpenMetrics wants:\n{text}"
    );
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));

    let plain = app.get("/metrics").await;
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("# TYPE process_cpu_seconds_total counter\n"));
    assert!(!plain.contains("# EOF") && !plain.contains("trace_id"));
}

#[tokio::test]
async fn latency_buckets_carry_the_trace_id_of_an_exported_request_as_exemplar() {
    // An OTLP/HTTP endpoint that accepts every export.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = axum::Router::new().route("/v1/traces", post(|| async { "" }));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let mut server = Binary::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)], false).await;
    let client = reqwest::Client::new();
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .get(format!("{}/api/tasks", server.base))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let metrics = |accept: &'static str| {
        client
            .get(format!("{}/metrics", server.base))
            .header("accept", accept)
            .send()
    };
    let text = metrics(PROMETHEUS_ACCEPT)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!(" # {{trace_id=\"{trace_id}\"}} ")))
        .collect();
    assert_eq!(marked.len(), 1, "one bucket holds the request:\n{text}");
    assert!(
        marked[0].starts_with(
            "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",\
             http_route=\"/api/tasks\",http_response_status_code=\"200\",le="
        ),
        "{}",
        marked[0]
    );
    // `<count> # {trace_id="..."} <seconds> <unix time>`: the duration fits under the bucket's bound.
    let (bucket, exemplar) = marked[0].split_once(" # ").unwrap();
    let le: f64 = bucket
        .rsplit_once("le=\"")
        .unwrap()
        .1
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let fields: Vec<&str> = exemplar.split(' ').collect();
    let seconds: f64 = fields[1].parse().unwrap();
    let at: f64 = fields[2].parse().unwrap();
    assert!(seconds > 0.0 && seconds <= le, "{}", marked[0]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 60.0, "exemplar time {at}, now {now}");

    // The 0.0.4 text has no place for exemplars.
    let plain = metrics("text/plain").await.unwrap().text().await.unwrap();
    assert!(!plain.contains(trace_id), "{plain}");
    server.terminate();
    assert_eq!(
        server.exit_code(std::time::Duration::from_secs(10)).await,
        Some(0)
    );
}

#[tokio::test]
async fn version_reports_the_build() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get_json("/version").await;
    assert_eq!(body["version"], challenge::build_info::BUILD.version);
    assert!(body["git_sha"].is_string() && body["build_date"].is_string());
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/tasks",
        "/api/tasks/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/version",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    for method in ["get", "patch", "delete"] {
        assert!(
            paths["/api/tasks/{id}"].get(method).is_some(),
            "{method} /api/tasks/{{id}} missing"
        );
    }
    assert!(
        paths["/api/tasks"]["post"]["responses"]
            .get("422")
            .is_some()
    );
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = app.get("/healthz").await;
    assert_eq!(
        generated.headers()["x-request-id"].to_str().unwrap().len(),
        36
    );
}

#[tokio::test]
async fn thousands_of_invented_methods_add_no_metric_series() {
    let app = spawn_app().await;
    for i in 0..2000 {
        let method = reqwest::Method::from_bytes(format!("FOOBAR{i}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/api/tasks/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let exposition = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !exposition.contains("FOOBAR"),
        "a client-chosen method became a label"
    );
    assert!(exposition.contains("http_request_method=\"_OTHER\""));
    // The metrics recorder is process-wide: other tests' requests are in it too, yet every method
    // label comes from the nine standard methods and _OTHER.
    let methods: std::collections::BTreeSet<&str> = exposition
        .match_indices("http_request_method=\"")
        .filter_map(|(at, key)| exposition[at + key.len()..].split('"').next())
        .collect();
    assert!(methods.len() <= 10, "{methods:?}");
}
