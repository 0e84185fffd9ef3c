//! `spawn_app()`: a fresh database and the real application on a random port.

use std::sync::Arc;
use std::time::Duration;

use challenge::config::{Config, DatabaseSettings, HttpSettings, LogFormat};
use challenge::health::Health;
use challenge::startup::{Application, StartOptions, StartupError};
use percent_encoding::percent_decode_str;
use secrecy::SecretString;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinHandle;

/// The server named by `TEST_DATABASE_URL`; fails loudly when it is missing.
pub fn server_settings() -> DatabaseSettings {
    let raw = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`, or export \
             TEST_DATABASE_URL=mysql://user:password@127.0.0.1:3306 for a server where the user may \
             create databases"
        )
    });
    let url = url::Url::parse(&raw).expect("TEST_DATABASE_URL must be a mysql:// URL");
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    DatabaseSettings {
        host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
        port: url.port().unwrap_or(3306),
        database: String::new(),
        username: decode(url.username()),
        password: SecretString::from(decode(url.password().unwrap_or(""))),
        max_connections: 4,
        timeout: Duration::from_secs(2),
    }
}

/// Creates an empty database with a unique name and returns settings pointing at it.
pub async fn fresh_database() -> DatabaseSettings {
    let mut settings = server_settings();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = challenge::db::connect_options(&settings).database("");
    let mut conn = admin
        .clone()
        .disable_statement_logging()
        .connect()
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    settings.database = name;
    settings
}

pub fn test_config(database: DatabaseSettings) -> Config {
    Config {
        port: 0,
        database,
        http: HttpSettings::default(),
        log_format: LogFormat::Text,
        otlp: Default::default(),
        seed_count: 5,
        shutdown_delay: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(5),
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: DatabaseSettings,
    pub health: Arc<Health>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A pool of our own on the test's database, to check what the API stored.
    pub async fn pool(&self) -> MySqlPool {
        MySqlPool::connect_with(self.connect_options())
            .await
            .expect("test pool")
    }

    pub fn connect_options(&self) -> MySqlConnectOptions {
        challenge::db::connect_options(&self.settings)
    }

    pub async fn post_json(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/tasks"))
            .json(&body)
            .send()
            .await
            .expect("POST /api/tasks")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// GETs `path`, expecting a 2xx JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON body")
    }

    /// POSTs a raw body with the given content type to /api/tasks.
    pub async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/tasks"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /api/tasks")
    }

    /// Creates a task and returns its JSON.
    pub async fn create_task(&self, title: &str) -> serde_json::Value {
        let response = self.post_json(serde_json::json!({ "title": title })).await;
        assert_eq!(response.status(), 201, "creating a task");
        response.json().await.expect("task JSON")
    }
}

/// The version of the newest file in `migrations/`: the number its name starts with, before `_`.
pub fn newest_migration_file() -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::read_dir(&dir)
        .expect("read migrations/")
        .filter_map(|entry| {
            let name = entry.expect("a directory entry").file_name();
            name.to_str()?.split_once('_')?.0.parse::<i64>().ok()
        })
        .max()
        .expect("a migration file in migrations/")
}

/// The path of a task the API returned.
pub fn task_path(task: &serde_json::Value) -> String {
    format!("/api/tasks/{}", task["id"])
}

/// A fresh database and the real application (with `--migrate`), ready to serve.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    let (app, _running) = start_app(customise, std::future::pending()).await;
    wait_ready(&app).await;
    app
}

/// A fresh database and the real application, without waiting for it to be ready. It stops when
/// `shutdown` resolves; the handle tells how `run_until_stopped` ended.
pub async fn start_app(
    customise: impl FnOnce(&mut Config),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, JoinHandle<Result<(), StartupError>>) {
    let settings = fresh_database().await;
    let mut config = test_config(settings.clone());
    customise(&mut config);
    let settings = config.database.clone();
    let app = Application::build(
        config,
        StartOptions {
            migrate: true,
            seed: false,
        },
    )
    .await
    .expect("build application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let health = app.health();
    let running = tokio::spawn(app.run_until_stopped(shutdown));
    let test_app = TestApp {
        address,
        client: reqwest::Client::new(),
        settings,
        health,
    };
    (test_app, running)
}

pub async fn wait_ready(app: &TestApp) {
    for _ in 0..100 {
        if let Ok(r) = app.client.get(app.url("/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the application did not become ready within 10 s");
}

/// Asserts a problem+json response with the given status and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("urn:infra-challenge:problem:")
    );
    assert!(!body["detail"].as_str().unwrap_or_default().is_empty());
    body
}

/// The real `challenge` binary, serving a fresh database on a free port.
pub struct Binary {
    pub child: tokio::process::Child,
    pub base: String,
    pub settings: DatabaseSettings,
    /// Reads stdout while the process runs (a full pipe would block its logging), when captured.
    stdout: Option<JoinHandle<String>>,
}

impl Binary {
    /// Starts `challenge serve --migrate --seed` (one seeded task) with `env` added, and waits
    /// until it is ready. Its stdout is piped when `capture_stdout`, else discarded.
    pub async fn start(env: &[(&str, &str)], capture_stdout: bool) -> Self {
        Self::start_until(env, capture_stdout, "/readyz").await
    }

    /// Like [`Binary::start`], but waits only until `probe` answers 200 (`/healthz` for a server
    /// that cannot become ready).
    pub async fn start_until(env: &[(&str, &str)], capture_stdout: bool, probe: &str) -> Self {
        let settings = fresh_database().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
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
            .envs(env.iter().copied())
            .stdout(if capture_stdout {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start challenge");
        let stdout = child.stdout.take().map(|mut out| {
            tokio::spawn(async move {
                let mut logs = String::new();
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut out, &mut logs).await;
                logs
            })
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{base}{probe}"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Self {
                    child,
                    base,
                    settings,
                    stdout,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not become ready");
    }

    /// Sends SIGTERM, as Docker and Kubernetes do.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("child pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Everything the process wrote on stdout, once it has exited (started with `capture_stdout`).
    pub async fn logs(&mut self) -> String {
        let reader = self.stdout.take().expect("stdout was captured");
        reader.await.expect("the stdout reader")
    }

    /// Waits for the exit, at most `within`, and returns the exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the process did not exit in time")
            .expect("wait for the process")
            .code()
    }
}
