//! Credentials: refused ones are an outage (503, retry later) whose details stay in the log, and an
//! account without a password can connect.

use secrecy::SecretString;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::{assert_problem, fresh_database, server_settings, spawn_app_with, start_app};

#[tokio::test]
async fn refused_credentials_are_503_with_retry_after_and_readyz_hides_the_driver_text() {
    let (app, _running) = start_app(
        |c| c.database.password = SecretString::from("not-the-password"),
        std::future::pending(),
    )
    .await;

    let response = app.get("/api/tasks").await;
    let retry_after = response.headers().get("retry-after").cloned();
    let problem = assert_problem(response, 503).await;
    assert_eq!(
        problem["type"],
        "urn:infra-challenge:problem:database-unavailable"
    );
    assert!(retry_after.is_some(), "503 without Retry-After");

    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    let body = readyz.text().await.unwrap();
    assert!(body.contains("refused the credentials"), "{body}");
    assert!(
        !body.contains("Access denied") && !body.contains(&app.settings.username),
        "readiness shows the driver's message to any caller: {body}"
    );
}

#[tokio::test]
async fn an_account_with_an_empty_password_connects() {
    let database = fresh_database().await;
    let user = format!("nopw_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = challenge::db::connect_options(&server_settings())
        .database("")
        .disable_statement_logging()
        .connect()
        .await
        .expect("connect to TEST_DATABASE_URL");
    for statement in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY ''"),
        format!(
            "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'%'",
            database.database
        ),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }

    let app = spawn_app_with(|c| {
        c.database = database.clone();
        c.database.username = user.clone();
        c.database.password = SecretString::from("");
    })
    .await;
    let created = app
        .post_json(serde_json::json!({"title": "no password"}))
        .await;
    assert_eq!(created.status(), 201);

    sqlx::query(&format!("DROP USER '{user}'@'%'"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
}

#[tokio::test]
async fn an_outage_under_load_logs_one_warning_per_cause_not_one_per_request() {
    let mut server = crate::helpers::Binary::start_until(
        &[("DB_PASSWORD", "not-the-password")],
        true,
        "/healthz",
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let response = client
            .get(format!("{}/api/tasks/1", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    server.terminate();
    assert_eq!(
        server.exit_code(std::time::Duration::from_secs(10)).await,
        Some(0)
    );
    let logs = server.logs().await;
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("database unavailable") && l.contains("access-denied"))
        .collect();
    // The migration's own retries log separately; the 300 refused API calls give one warning
    // (two if the run crossed a 10 s interval).
    assert!(
        (1..=2).contains(&warnings.len()),
        "{} warnings:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
}
