//! The database cut off mid-run: quick 503s, liveness intact, recovery without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{assert_problem, spawn_app_with, task_path};

/// A TCP proxy that can stop forwarding (bytes are held, new connections are not passed on),
/// like a network partition, and resume.
struct Proxy {
    port: u16,
    running: Arc<watch::Sender<bool>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let running = Arc::new(watch::channel(true).0);
        let state = running.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    wait_running(&state).await;
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pipe(cr, sw, state.clone()));
                    tokio::spawn(pipe(sr, cw, state));
                });
            }
        });
        Self { port, running }
    }

    fn pause(&self) {
        self.running.send_replace(false);
    }

    fn resume(&self) {
        self.running.send_replace(true);
    }
}

async fn wait_running(state: &watch::Sender<bool>) {
    let mut rx = state.subscribe();
    let _ = rx.wait_for(|running| *running).await;
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<watch::Sender<bool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        wait_running(&state).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn database_outage_gives_fast_503_then_recovers_in_the_same_process() {
    let direct = crate::helpers::server_settings();
    let proxy = Proxy::start(format!("{}:{}", direct.host, direct.port)).await;
    let app = spawn_app_with(|config| {
        config.database.host = "127.0.0.1".into();
        config.database.port = proxy.port;
    })
    .await;
    let task = app.create_task("survives the outage").await;
    let path = task_path(&task);
    assert_eq!(app.get(&path).await.status(), 200);

    proxy.pause();
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.get(&path).await;
        let elapsed = started.elapsed();
        assert_problem(response, 503).await;
        assert!(
            elapsed < Duration::from_millis(2500),
            "503 took {elapsed:?}"
        );
    }
    let started = Instant::now();
    let listed = app.get("/api/tasks").await;
    assert_eq!(listed.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 503);

    proxy.resume();
    let resumed = Instant::now();
    loop {
        let status = app.get(&path).await.status();
        if status == 200 {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "not recovered 5 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn version_answers_within_its_bound_while_the_database_hangs() {
    let direct = crate::helpers::server_settings();
    let proxy = Proxy::start(format!("{}:{}", direct.host, direct.port)).await;
    let app = spawn_app_with(|config| {
        config.database.host = "127.0.0.1".into();
        config.database.port = proxy.port;
    })
    .await;
    let newest = crate::helpers::newest_migration_file();
    assert_eq!(
        app.get_json("/version").await["database_schema_version"],
        newest
    );

    proxy.pause();
    // Twice: the second call meets the connection the first one abandoned, checked before reuse.
    for _ in 0..2 {
        let started = Instant::now();
        let response = app.get("/version").await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert!(
            elapsed < Duration::from_millis(2500),
            "/version took {elapsed:?}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["schema_version"], newest, "{body}");
        assert!(body["database_schema_version"].is_null(), "{body}");
    }

    proxy.resume();
    let resumed = Instant::now();
    while app.get_json("/version").await["database_schema_version"] != newest {
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "/version still without the database 5 s after it came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
