//! `/version`: the schema version this build embeds and the one its database has, always 200 and
//! quickly, whatever the state of the database.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::helpers::{TestApp, newest_migration_file, spawn_app, start_app};

#[tokio::test]
async fn version_reports_the_newest_migration_as_embedded_and_as_applied() {
    let app = spawn_app().await;
    let body = app.get_json("/version").await;
    let newest = newest_migration_file();
    assert_eq!(body["schema_version"], newest, "{body}");
    assert_eq!(body["database_schema_version"], newest, "{body}");
}

#[tokio::test]
async fn version_is_200_with_a_null_database_version_when_the_database_is_unreachable() {
    // A port with nothing listening: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let (app, _running) = start_app(
        |c| {
            c.database.host = closed.ip().to_string();
            c.database.port = closed.port();
        },
        std::future::pending(),
    )
    .await;
    assert_answers_without_the_database(&app).await;
}

#[tokio::test]
async fn version_is_200_with_a_null_database_version_when_the_credentials_are_refused() {
    let (app, _running) = start_app(
        |c| c.database.password = SecretString::from("not-the-password"),
        std::future::pending(),
    )
    .await;
    assert_answers_without_the_database(&app).await;
}

#[tokio::test]
async fn version_has_a_null_database_version_when_no_migration_table_exists() {
    let app = spawn_app().await;
    let pool = app.pool().await;
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let body = app.get_json("/version").await;
    assert_eq!(body["schema_version"], newest_migration_file(), "{body}");
    assert!(body["database_schema_version"].is_null(), "{body}");
}

/// `/version` answers 200 within the bound it puts on the database, with the embedded version and a
/// null database version.
async fn assert_answers_without_the_database(app: &TestApp) {
    for _ in 0..2 {
        let started = Instant::now();
        let response = app.get("/version").await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert!(
            elapsed < Duration::from_secs(2),
            "/version took {elapsed:?}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["version"], challenge::build_info::BUILD.version);
        assert_eq!(body["schema_version"], newest_migration_file(), "{body}");
        assert!(body["database_schema_version"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn the_document_declares_both_versions_always_present_and_only_the_database_s_nullable() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    let schema = &doc["components"]["schemas"]["VersionInfo"];
    let required = schema["required"].as_array().unwrap();
    for field in ["schema_version", "database_schema_version"] {
        assert!(
            required.contains(&field.into()),
            "{field} not required: {schema}"
        );
    }
    let properties = &schema["properties"];
    assert_eq!(properties["schema_version"]["type"], "integer");
    assert_eq!(properties["schema_version"]["format"], "int64");
    assert_eq!(
        properties["database_schema_version"]["type"],
        serde_json::json!(["integer", "null"])
    );
    assert_eq!(properties["database_schema_version"]["format"], "int64");
}
