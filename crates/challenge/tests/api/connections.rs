//! Slow, idle and too many clients: what a hostile or careless client can hold, and for how long.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::helpers::{spawn_app_with, start_app, wait_ready};
use crate::raw_http::{self, closed_within};

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off_at_the_header_timeout() {
    let app = spawn_app_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = raw_http::connect(&app.address).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    // One header line every 300 ms, never the blank line that ends the head.
    let mut cut_off = false;
    for i in 0..20 {
        if closed_within(&mut stream, Duration::from_millis(300)).await {
            cut_off = true;
            break;
        }
        let line = format!("X-Slow-{i}: x\r\n");
        if stream.write_all(line.as_bytes()).await.is_err() {
            cut_off = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut_off, "the connection was still open after {took:?}");
    assert!(
        took < Duration::from_millis(2500),
        "cut off after {took:?}, expected about the 1 s header timeout"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_past_the_header_timeout_until_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.http.header_timeout = Duration::from_millis(500);
        c.http.idle_timeout = Duration::from_millis(2000);
    })
    .await;
    let mut stream = raw_http::connect(&app.address).await;
    assert_eq!(
        raw_http::get(&mut stream, "/healthz").await.unwrap().status,
        200
    );
    // Idle for twice the header timeout: still open, and it serves the next request.
    assert!(!closed_within(&mut stream, Duration::from_millis(1000)).await);
    assert_eq!(
        raw_http::get(&mut stream, "/healthz").await.unwrap().status,
        200
    );
    // Then idle past the idle timeout: closed.
    let started = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(4)).await,
        "an idle connection must not stay open"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "closed after {took:?}: too early for a 2 s idle timeout"
    );
}

#[tokio::test]
async fn clients_beyond_the_connection_cap_wait_until_a_connection_closes() {
    // Not waiting for readiness: its keep-alive connection would hold one of the two slots.
    let (app, _running) = start_app(|c| c.http.max_connections = 2, std::future::pending()).await;
    let client = reqwest::Client::new();
    let first = raw_http::connect(&app.address).await;
    let mut second = raw_http::connect(&app.address).await;
    assert_eq!(
        raw_http::get(&mut second, "/healthz").await.unwrap().status,
        200
    );

    let waiting = tokio::spawn({
        let url = app.url("/healthz");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open with a cap of 2"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("served once a slot was free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_never_finished_its_request() {
    let (stop, stopped) = oneshot::channel::<()>();
    let (app, running) = start_app(
        |c| {
            c.http.header_timeout = Duration::from_secs(30);
            c.shutdown_timeout = Duration::from_secs(20);
        },
        async move {
            let _ = stopped.await;
        },
    )
    .await;
    wait_ready(&app).await;
    let mut half_sent = raw_http::connect(&app.address).await;
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("shutdown waited for the half-sent request")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(closed_within(&mut half_sent, Duration::from_secs(1)).await);
}
