//! SIGTERM: readiness drops, in-flight requests complete, no keep-alive request is lost, exit code 0.
//! Uses the real binary.

use std::time::Duration;

use sqlx::Connection;

use crate::helpers::Binary;
use crate::raw_http;

#[tokio::test]
async fn sigterm_drains_a_slow_in_flight_request_and_exits_zero() {
    let mut server = Binary::start(
        &[
            ("DB_TIMEOUT", "30s"),
            ("SHUTDOWN_DELAY", "1s"),
            ("SHUTDOWN_TIMEOUT", "20s"),
        ],
        false,
    )
    .await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Hold a row lock so that the PATCH below stays in flight until we let it go.
    let mut blocker =
        sqlx::MySqlConnection::connect_with(&challenge::db::connect_options(&server.settings))
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

    server.terminate();
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
    assert_eq!(
        server.exit_code(Duration::from_secs(10)).await,
        Some(0),
        "graceful exit"
    );
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
    let mut server = Binary::start(
        &[("SHUTDOWN_DELAY", "1s"), ("SHUTDOWN_TIMEOUT", "5s")],
        false,
    )
    .await;

    // 32 clients, each sending requests back to back on one keep-alive connection.
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let address = server.base.clone();
            tokio::spawn(async move {
                let mut tally = ClientTally::default();
                let mut stream = raw_http::connect(&address).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
                while tokio::time::Instant::now() < deadline {
                    match raw_http::get(&mut stream, "/api/tasks/1").await {
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
    server.terminate();

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
    assert_eq!(
        server.exit_code(Duration::from_secs(10)).await,
        Some(0),
        "graceful exit"
    );
}
