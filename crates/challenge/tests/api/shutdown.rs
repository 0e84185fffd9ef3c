//! SIGTERM: readiness drops, in-flight requests complete, exit code 0. Uses the real binary.

use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;

use crate::helpers::fresh_database;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn sigterm_drains_a_slow_in_flight_request_and_exits_zero() {
    let settings = fresh_database().await;
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_challenge"))
        .args(["serve", "--migrate", "--seed"])
        .env_clear()
        .env("PORT", port.to_string())
        .env("DB_HOST", &settings.host)
        .env("DB_PORT", settings.port.to_string())
        .env("DB_DATABASE", &settings.database)
        .env("DB_USERNAME", &settings.username)
        .env(
            "DB_PASSWORD",
            secrecy::ExposeSecret::expose_secret(&settings.password),
        )
        .env("SEED_COUNT", "1")
        .env("DB_TIMEOUT", "30s")
        .env("SHUTDOWN_DELAY", "1s")
        .env("SHUTDOWN_TIMEOUT", "20s")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start challenge");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not become ready");

    // Hold a row lock so that the PATCH below stays in flight until we let it go.
    let mut blocker =
        sqlx::MySqlConnection::connect_with(&challenge::db::connect_options(&settings))
            .await
            .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT id FROM tasks WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/api/tasks/1");
        async move {
            client
                .patch(url)
                .json(&serde_json::json!({"done": false}))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !slow.is_finished(),
        "the request should be blocked on the row lock"
    );

    let pid = child.id().expect("child pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503, "not ready once SIGTERM arrived");

    // Past SHUTDOWN_DELAY the listener is closed; the in-flight request must still complete.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!slow.is_finished());
    tx.rollback().await.unwrap();
    let response = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);

    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "graceful exit");
}
