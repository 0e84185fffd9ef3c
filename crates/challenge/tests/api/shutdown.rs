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

/// Starts the real binary on a fresh database, with `SHUTDOWN_DELAY=1s`, and waits until it is ready.
async fn start_binary(port: u16) -> tokio::process::Child {
    let settings = fresh_database().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_challenge"))
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
        .env("SHUTDOWN_DELAY", "1s")
        .env("SHUTDOWN_TIMEOUT", "5s")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start challenge");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not become ready");
}

/// What one keep-alive client saw across the shutdown.
#[derive(Debug, Default)]
struct ClientTally {
    ok: u32,
    /// Requests sent on an open connection that got no answer or a non-2xx answer.
    lost: u32,
    /// Whether the server asked to close the connection (then the client stops, as a load balancer
    /// takes a draining backend out of rotation).
    told_to_close: bool,
}

#[tokio::test]
async fn keep_alive_clients_lose_no_request_at_sigterm() {
    let port = free_port();
    let mut child = start_binary(port).await;
    let address = format!("127.0.0.1:{port}");

    // 32 clients, each sending requests back to back on one keep-alive connection.
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let mut tally = ClientTally::default();
                let mut stream = crate::raw_http::connect(&address).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
                while tokio::time::Instant::now() < deadline {
                    match crate::raw_http::get(&mut stream, "/api/tasks/1").await {
                        Ok(r) if r.status == 200 => {
                            tally.ok += 1;
                            if r.closes {
                                tally.told_to_close = true;
                                break;
                            }
                        }
                        Ok(_) | Err(_) => {
                            tally.lost += 1;
                            break;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().expect("child pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());

    let mut tallies = Vec::new();
    for client in clients {
        tallies.push(client.await.unwrap());
    }
    let lost: u32 = tallies.iter().map(|t| t.lost).sum();
    let served: u32 = tallies.iter().map(|t| t.ok).sum();
    assert_eq!(lost, 0, "requests lost at SIGTERM: {tallies:?}");
    assert!(served > 100, "too little load to prove anything: {served}");
    assert!(
        tallies.iter().all(|t| t.told_to_close),
        "every keep-alive client is told to close while draining: {tallies:?}"
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "graceful exit");
}
