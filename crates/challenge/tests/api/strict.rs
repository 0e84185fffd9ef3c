//! The server accepts exactly what its OpenAPI document says: strict content types, ids judged
//! before bodies, titles without control characters, and a document that states those bounds.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, task_path};

const TASK: &str = r#"{"title": "strict"}"#;

async fn post_with(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/tasks")).body(TASK);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("POST /api/tasks")
}

#[tokio::test]
async fn post_with_utf8_charset_in_any_case_is_201() {
    let app = spawn_app().await;
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; Charset=\"UTF-8\"",
    ] {
        let response = app.post_raw(content_type, TASK).await;
        assert_eq!(response.status(), 201, "{content_type}");
    }
    let identity = post_with(
        &app,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "identity"),
        ],
    )
    .await;
    assert_eq!(identity.status(), 201);
}

#[tokio::test]
async fn post_with_latin1_charset_is_415() {
    let app = spawn_app().await;
    let response = app.post_raw("application/json; charset=latin1", TASK).await;
    assert_problem(response, 415).await;
}

#[tokio::test]
async fn post_and_patch_with_merge_patch_json_are_415() {
    let app = spawn_app().await;
    let response = app.post_raw("application/merge-patch+json", TASK).await;
    assert_problem(response, 415).await;

    let task = app.create_task("t").await;
    let patch = app
        .client
        .patch(app.url(&task_path(&task)))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"done": true}"#)
        .send()
        .await
        .expect("PATCH");
    assert_problem(patch, 415).await;
    assert_eq!(app.get_json(&task_path(&task)).await["done"], false);
}

#[tokio::test]
async fn post_with_gzip_content_encoding_is_415_naming_the_accepted_coding() {
    let app = spawn_app().await;
    let response = post_with(
        &app,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
    )
    .await;
    assert_eq!(
        response
            .headers()
            .get("accept-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"identity"[..])
    );
    let problem = assert_problem(response, 415).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Content-Encoding"),
        "{problem}"
    );
}

#[tokio::test]
async fn patch_with_bad_id_is_400_before_the_body_is_read() {
    let app = spawn_app().await;
    for id in ["abc", "-1", "1.5", "18446744073709551616"] {
        let response = app
            .client
            .patch(app.url(&format!("/api/tasks/{id}")))
            .header("content-type", "text/plain")
            .body("not even JSON")
            .send()
            .await
            .expect("PATCH");
        assert_problem(response, 400).await;
    }
}

#[tokio::test]
async fn largest_id_is_404_and_one_more_is_400() {
    let app = spawn_app().await;
    let largest = app.get(&format!("/api/tasks/{}", u64::MAX)).await;
    assert_problem(largest, 404).await;
    let beyond = app.delete("/api/tasks/18446744073709551616").await;
    assert_problem(beyond, 400).await;
}

#[tokio::test]
async fn post_with_control_characters_in_title_is_422() {
    let app = spawn_app().await;
    for title in [
        "bell\u{7}",
        "line\nbreak",
        "\ttabbed",
        "nul\u{0}",
        "c1\u{85}",
    ] {
        let problem = assert_problem(app.post_json(json!({ "title": title })).await, 422).await;
        let message = problem["errors"]["title"][0].as_str().unwrap_or_default();
        assert!(
            message.contains("control characters"),
            "{title:?}: {problem}"
        );
    }
    let task = app.create_task("fine").await;
    let patch = app
        .patch(&task_path(&task), json!({ "title": "still\u{1b}bad" }))
        .await;
    assert_problem(patch, 422).await;
}

/// The operation object of `method path` in the served document.
fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> &'d Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

fn parameter<'o>(operation: &'o Value, name: &str) -> &'o Value {
    operation["parameters"]
        .as_array()
        .and_then(|parameters| parameters.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("parameter {name} is not documented"))
}

#[tokio::test]
async fn openapi_document_states_the_bounds_the_server_enforces() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json").await;

    let list = operation(&doc, "get", "/api/tasks");
    let limit = &parameter(list, "limit")["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(100))
    );
    assert_eq!(parameter(list, "done")["schema"]["type"], "boolean");
    let after = &parameter(list, "after")["schema"];
    assert_eq!(
        (&after["minimum"], &after["maximum"]),
        (&json!(0), &json!(u64::MAX))
    );
    for method in ["get", "patch", "delete"] {
        let id = &parameter(operation(&doc, method, "/api/tasks/{id}"), "id")["schema"];
        assert_eq!(id["maximum"], json!(u64::MAX), "{method}");
        assert_eq!(id["minimum"], 0, "{method}");
        assert_ne!(id["format"], "int64", "{method}: int64 stops at 2^63-1");
    }

    let schemas = &doc["components"]["schemas"];
    for request in ["CreateTaskRequest", "UpdateTaskRequest"] {
        assert_eq!(schemas[request]["additionalProperties"], false, "{request}");
        assert_eq!(
            schemas[request]["properties"]["description"]["maxLength"], 2000,
            "{request}"
        );
    }
    assert!(schemas["TaskTitle"]["pattern"].is_string());

    for (method, path) in [
        ("get", "/api/tasks"),
        ("post", "/api/tasks"),
        ("get", "/api/tasks/{id}"),
        ("patch", "/api/tasks/{id}"),
        ("delete", "/api/tasks/{id}"),
    ] {
        let responses = &operation(&doc, method, path)["responses"];
        for status in ["500", "503"] {
            assert!(
                responses[status]["content"]["application/problem+json"].is_object(),
                "{method} {path}: {status} problem+json is not documented"
            );
        }
    }
}
