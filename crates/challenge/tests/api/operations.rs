//! Probes, metrics, version, OpenAPI, request ids.

use crate::helpers::{spawn_app, task_path};

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
