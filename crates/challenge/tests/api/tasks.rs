//! Every success and failure row of the tasks API.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, task_path};

#[tokio::test]
async fn post_creates_a_task_with_location_and_defaults() {
    let app = spawn_app().await;
    let response = app
        .post_json(json!({"title": "  Write the runbook  "}))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let task: serde_json::Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/tasks/{}", task["id"]));
    assert_eq!(task["title"], "Write the runbook");
    assert_eq!(task["description"], serde_json::Value::Null);
    assert_eq!(task["done"], false);
    assert!(task["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(task["created_at"], task["updated_at"]);

    let fetched: serde_json::Value = app.get_json(&location).await;
    assert_eq!(fetched, task, "what GET returns equals what POST returned");
}

#[tokio::test]
async fn post_with_description_and_done() {
    let app = spawn_app().await;
    let response = app
        .post_json(json!({"title": "t", "description": "d", "done": true}))
        .await;
    assert_eq!(response.status(), 201);
    let task: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (task["description"].as_str(), task["done"].as_bool()),
        (Some("d"), Some(true))
    );
}

#[tokio::test]
async fn post_malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app.post_raw("application/json", "{\"title\": ").await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        problem["type"],
        "urn:infra-challenge:problem:malformed-json"
    );
}

#[tokio::test]
async fn post_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let body = json!({"title": "t", "description": "x".repeat(65 * 1024)}).to_string();
    let response = app.post_raw("application/json", body).await;
    assert_problem(response, 413).await;
}

#[tokio::test]
async fn post_without_json_content_type_is_415() {
    let app = spawn_app().await;
    let response = app.post_raw("text/plain", "{\"title\":\"t\"}").await;
    assert_problem(response, 415).await;
    let missing = app
        .client
        .post(app.url("/api/tasks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(missing, 415).await;
}

#[tokio::test]
async fn post_with_blank_title_is_422_with_field_errors() {
    let app = spawn_app().await;
    let problem = assert_problem(app.post_json(json!({"title": "   "})).await, 422).await;
    assert_eq!(problem["type"], "urn:infra-challenge:problem:validation");
    assert!(
        problem["errors"]["title"][0]
            .as_str()
            .unwrap()
            .contains("blank")
    );
}

#[tokio::test]
async fn post_with_long_description_is_422() {
    let app = spawn_app().await;
    let body = json!({"title": "t", "description": "d".repeat(2001)});
    let problem = assert_problem(app.post_json(body).await, 422).await;
    assert!(problem["errors"]["description"].is_array());
}

#[tokio::test]
async fn get_unknown_task_is_404_and_non_numeric_id_is_400() {
    let app = spawn_app().await;
    let missing = app.get("/api/tasks/999999").await;
    assert_problem(missing, 404).await;
    let bad = app.get("/api/tasks/abc").await;
    assert_problem(bad, 400).await;
}

#[tokio::test]
async fn list_pages_with_a_keyset_cursor_and_filters_on_done() {
    let app = spawn_app().await;
    for i in 0..5 {
        let body = json!({"title": format!("task {i}"), "done": i % 2 == 0});
        assert_eq!(app.post_json(body).await.status(), 201);
    }
    let first: serde_json::Value = app.get_json("/api/tasks?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_u64().expect("a next cursor");
    let second: serde_json::Value = app
        .get_json(&format!("/api/tasks?limit=2&after={next}"))
        .await;
    assert_eq!(second["items"][0]["title"], "task 2");
    let last: serde_json::Value = app
        .get_json(&format!("/api/tasks?limit=2&after={}", second["next"]))
        .await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], serde_json::Value::Null);

    let done: serde_json::Value = app.get_json("/api/tasks?done=true").await;
    let titles: Vec<&str> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["task 0", "task 2", "task 4"]);
}

#[tokio::test]
async fn list_default_limit_is_20() {
    let app = spawn_app().await;
    let pool = app.pool().await;
    sqlx::query(
        "INSERT INTO tasks (title, done, created_at, updated_at) \
         SELECT CONCAT('t', seq), FALSE, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) \
         FROM (SELECT a.n * 10 + b.n AS seq FROM \
           (SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2) a, \
           (SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
            UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b) s",
    )
    .execute(&pool)
    .await
    .unwrap();
    let page: serde_json::Value = app.get_json("/api/tasks").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert!(page["next"].is_u64());
}

#[tokio::test]
async fn list_with_bad_query_is_400() {
    let app = spawn_app().await;
    for query in ["limit=abc", "after=-1", "done=maybe", "colour=red"] {
        let response = app.get(&format!("/api/tasks?{query}")).await;
        assert_problem(response, 400).await;
    }
}

#[tokio::test]
async fn patch_updates_given_fields_only() {
    let app = spawn_app().await;
    let created = app
        .post_json(json!({"title": "t", "description": "keep me"}))
        .await;
    let task: serde_json::Value = created.json().await.unwrap();
    let path = task_path(&task);
    let response = app.patch(&path, json!({"done": true})).await;
    assert_eq!(response.status(), 200);
    let patched: serde_json::Value = response.json().await.unwrap();
    assert_eq!(patched["done"], true);
    assert_eq!(patched["description"], "keep me");
    assert_eq!(patched["created_at"], task["created_at"]);
    assert_ne!(patched["updated_at"], task["updated_at"]);

    let cleared: serde_json::Value = app
        .patch(&path, json!({"description": null, "title": "renamed"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["description"], serde_json::Value::Null);
    assert_eq!(cleared["title"], "renamed");
    let stored: serde_json::Value = app.get_json(&path).await;
    assert_eq!(stored, cleared);
}

#[tokio::test]
async fn patch_unknown_task_is_404_and_invalid_patch_is_422() {
    let app = spawn_app().await;
    let missing = app.patch("/api/tasks/424242", json!({"done": true})).await;
    assert_problem(missing, 404).await;
    let task = app.create_task("t").await;
    let path = task_path(&task);
    let invalid = app.patch(&path, json!({"title": ""})).await;
    let problem = assert_problem(invalid, 422).await;
    assert!(problem["errors"]["title"].is_array());
}

#[tokio::test]
async fn delete_removes_the_task_then_404() {
    let app = spawn_app().await;
    let task = app.create_task("short-lived").await;
    let path = task_path(&task);
    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status(), 204);
    assert_problem(app.get(&path).await, 404).await;
    assert_problem(app.delete(&path).await, 404).await;
}
