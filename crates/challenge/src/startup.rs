//! Start-up in one place: `Application::build` binds the listener (port 0 allowed) and prepares the
//! pool; `run_until_stopped` serves, migrates in the background, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use sqlx::mysql::MySqlConnectOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::db::{self, MigrationError};
use crate::health::Health;
use crate::routes::{self, AppState};
use crate::server;
use crate::store::TaskStore;
use crate::telemetry;

/// How long a readiness probe waits for the database.
pub const READINESS_DB_TIMEOUT: Duration = Duration::from_secs(1);

/// What to do at start besides serving.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    pub migrate: bool,
    pub seed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Migration(#[from] MigrationError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    config: Config,
    options: StartOptions,
}

impl Application {
    pub async fn build(config: Config, options: StartOptions) -> Result<Self, StartupError> {
        let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind {
                port: config.port,
                source,
            })?;
        let pool = db::pool(&config.database);
        pool.spawn_upkeep();
        let metrics = telemetry::metrics_handle();
        let state = AppState {
            store: TaskStore::new(pool, config.database.timeout),
            health: Arc::new(Health::default()),
            metrics,
        };
        Ok(Self {
            listener,
            state,
            config,
            options,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(self.config.port)
    }

    pub fn health(&self) -> Arc<Health> {
        self.state.health.clone()
    }

    /// Serves until `shutdown` resolves, then: `/readyz` turns 503, new requests are still served for
    /// `SHUTDOWN_DELAY`, the listener closes, and in-flight requests get `SHUTDOWN_TIMEOUT` to finish.
    /// Returns an error only for a failed migration or a broken listener.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Self {
            listener,
            state,
            config,
            options,
        } = self;
        let health = state.health.clone();
        telemetry::spawn_metrics_upkeep(state.metrics.clone());
        tracing::info!(
            port = config.port,
            version = crate::build_info::BUILD.version,
            "listening"
        );

        let (fatal_tx, fatal_rx) = oneshot::channel();
        if options.migrate {
            let connect = db::connect_options(&config.database);
            let seed = options.seed.then_some(config.seed_count);
            let health = health.clone();
            tokio::spawn(async move {
                match migrate_with_retry(&connect, seed, None).await {
                    Ok(()) => health.mark_started(),
                    Err(err) => {
                        let _ = fatal_tx.send(err);
                    }
                }
            });
        } else {
            health.mark_started();
        }

        let delay = config.shutdown_delay;
        let signal_health = health.clone();
        let stop_accepting = async move {
            shutdown.await;
            signal_health.start_draining();
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "shutdown requested: not ready any more"
            );
            tokio::time::sleep(delay).await;
            tracing::info!("closing the listener, draining in-flight requests");
        };
        let app = routes::router(state).layer(middleware::map_response_with_state(
            health,
            close_when_draining,
        ));
        let serving = server::serve(listener, app, config.http, stop_accepting);

        // A pattern that does not match (the migration task ended without error and dropped its
        // sender) disables that branch; select! keeps waiting on the other.
        tokio::select! {
            draining = serving => {
                match tokio::time::timeout(config.shutdown_timeout, draining.finished()).await {
                    Ok(()) => tracing::info!("stopped"),
                    Err(_) => tracing::warn!(timeout_ms = config.shutdown_timeout.as_millis() as u64,
                        "drain timeout reached: closing the remaining connections"),
                }
                Ok(())
            }
            Ok(err) = fatal_rx => Err(err.into()),
        }
    }
}

/// While draining, every response asks its client to close the connection: a keep-alive client
/// then opens its next connection elsewhere (through its load balancer) instead of sending a request
/// on a connection this process is about to close.
async fn close_when_draining(
    State(health): State<Arc<Health>>,
    mut response: Response,
) -> Response {
    if health.draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Applies migrations (and seeds), retrying while the database is unreachable; gives up after
/// `deadline` when one is given. A migration that runs and fails is never retried.
pub async fn migrate_with_retry(
    connect: &MySqlConnectOptions,
    seed: Option<u32>,
    deadline: Option<Duration>,
) -> Result<(), MigrationError> {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        match db::apply(connect, &db::MIGRATOR, seed).await {
            Ok(report) => {
                tracing::info!(
                    applied = ?report.applied,
                    seeded = report.seeded,
                    schema_version = report.schema_version,
                    "database schema is up to date"
                );
                return Ok(());
            }
            Err(err) if err.is_retryable() => {
                if deadline.is_some_and(|d| started.elapsed() + backoff > d) {
                    return Err(err);
                }
                tracing::warn!(error = %describe(&err), retry_in_ms = backoff.as_millis() as u64,
                    "database not usable yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(error = %err, "migration failed");
                return Err(err);
            }
        }
    }
}

/// Adds what to do about the common start-up failures.
pub fn describe(err: &MigrationError) -> String {
    // MySQL and MariaDB server error numbers: ER_ACCESS_DENIED_ERROR, ER_BAD_DB_ERROR.
    match err.server_error_number() {
        Some(1045) => {
            format!(
                "{err} (the database refused the credentials: check DB_USERNAME and the password)"
            )
        }
        Some(1049) => format!("{err} (create the schema named by DB_DATABASE, or fix DB_DATABASE)"),
        _ => err.to_string(),
    }
}
