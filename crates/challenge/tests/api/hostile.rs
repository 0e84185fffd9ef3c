//! Hostile input never gets a 5xx: each case has the 4xx it deserves.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, task_path};

#[tokio::test]
async fn wrong_json_types_are_422_per_field() {
    let app = spawn_app().await;
    let body = json!({"title": 12, "description": ["x"], "done": "yes"});
    let problem = assert_problem(app.post_json(body).await, 422).await;
    for field in ["title", "description", "done"] {
        assert!(
            problem["errors"][field].is_array(),
            "{field} reported: {problem}"
        );
    }
    let not_object = app.post_json(json!(["title"])).await;
    assert_problem(not_object, 422).await;
}

#[tokio::test]
async fn unknown_fields_are_422() {
    let app = spawn_app().await;
    let problem = assert_problem(
        app.post_json(json!({"title": "t", "owner": "me"})).await,
        422,
    )
    .await;
    assert_eq!(problem["errors"]["owner"][0], "unknown field");
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let app = spawn_app().await;
    let response = app
        .post_raw("application/json", b"{\"title\": \"\xff\xfe\"}".to_vec())
        .await;
    assert_problem(response, 400).await;
}

#[tokio::test]
async fn one_mebibyte_body_is_413() {
    let app = spawn_app().await;
    let response = app
        .post_raw("application/json", vec![b' '; 1024 * 1024])
        .await;
    assert_problem(response, 413).await;
}

#[tokio::test]
async fn limits_out_of_range_are_400() {
    let app = spawn_app().await;
    for limit in ["abc", "0", "101", "-5", "99999999999", ""] {
        let response = app.get(&format!("/api/tasks?limit={limit}")).await;
        assert_problem(response, 400).await;
    }
    let ok = app.get("/api/tasks?limit=100").await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn ids_past_u64_and_nul_bytes_are_400() {
    let app = spawn_app().await;
    for path in [
        "/api/tasks/18446744073709551616",
        "/api/tasks/%00",
        "/api/tasks/1%00",
        "/api/tasks/-1",
    ] {
        let response = app.get(path).await;
        assert_problem(response, 400).await;
    }
    // The largest u64 is a valid id that does not exist.
    let max = app.get("/api/tasks/18446744073709551615").await;
    assert_problem(max, 404).await;
}

#[tokio::test]
async fn title_of_201_characters_after_trim_is_422() {
    let app = spawn_app().await;
    let title = format!("   {}   ", "a".repeat(201));
    assert_problem(app.post_json(json!({"title": title})).await, 422).await;
}

#[tokio::test]
async fn title_of_200_multibyte_characters_is_accepted_and_stored_intact() {
    let app = spawn_app().await;
    // Mixes 2-, 3- and 4-byte UTF-8 characters: 200 characters, 600 bytes.
    let title: String = "é€😀".repeat(66) + "é€";
    assert_eq!(title.chars().count(), 200);
    let response = app.post_json(json!({"title": title})).await;
    assert_eq!(response.status(), 201);
    let task: serde_json::Value = response.json().await.unwrap();
    let path = task_path(&task);
    let stored = app.get_json(&path).await;
    assert_eq!(stored["title"], title);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_are_405_problems() {
    let app = spawn_app().await;
    assert_problem(app.get("/nope").await, 404).await;
    assert_problem(
        app.client.put(app.url("/api/tasks")).send().await.unwrap(),
        405,
    )
    .await;
}
