//! The connection pool: deadpool managing sqlx MySQL connections.
//!
//! sqlx's own pool pings every connection as it goes back to the pool, one extra round trip per API
//! call. That ping guards against reusing a connection that a cancelled request left mid-statement
//! (or with a transaction's ROLLBACK still queued). Here the same guard costs nothing on the common
//! path: each use records whether it ran to completion, and a connection is checked with a round
//! trip (sqlx's `ping`, which first drains whatever a previous statement left and flushes queued
//! statements) only when its last use was cancelled or failed, or when it sat idle long enough for the
//! server to have dropped it.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

/// A connection idle for longer than this is checked before it is used again.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(15);
/// Idle connections are closed after this (the server would drop them after `wait_timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections are replaced after this, so server-side session state never grows without bound.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A pooled connection and whether its last use ran to completion.
pub struct PooledConnection {
    conn: MySqlConnection,
    clean: bool,
}

pub struct Manager {
    options: MySqlConnectOptions,
}

impl managed::Manager for Manager {
    type Type = PooledConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PooledConnection, sqlx::Error> {
        let conn = self.options.connect().await?;
        Ok(PooledConnection { conn, clean: true })
    }

    async fn recycle(
        &self,
        pooled: &mut PooledConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        if needs_check(pooled.clean, metrics.last_used()) {
            pooled.conn.ping().await?;
            pooled.clean = true;
        }
        Ok(())
    }
}

/// Whether a connection must prove it is usable before it is handed out.
fn needs_check(clean: bool, idle: Duration) -> bool {
    !clean || idle > CHECK_AFTER_IDLE
}

/// Whether a connection that ended with `result` is left in a known state: it read every packet
/// of what it sent. `RowNotFound` is decided after the whole (empty) result set was read; any other
/// error may come from the middle of an exchange.
fn leaves_connection_clean<T>(result: &Result<T, sqlx::Error>) -> bool {
    matches!(result, Ok(_) | Err(sqlx::Error::RowNotFound))
}

/// Lazy: no connection is opened until the first use, so the process starts (and answers
/// `/healthz`) while MySQL is down.
#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
}

/// What the pool holds now, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the connection pool is closed")]
    Closed,
}

impl Pool {
    pub fn new(options: MySqlConnectOptions, max_connections: u32) -> Self {
        let max_size = usize::try_from(max_connections).unwrap_or(usize::MAX);
        let inner = managed::Pool::builder(Manager { options })
            .max_size(max_size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            // Building fails only when a timeout is set without a runtime; the runtime is set.
            .expect("pool configuration is valid");
        Self { inner }
    }

    /// Runs `work` on a pooled connection. When `work` is cancelled (its future dropped by a
    /// timeout) or fails mid-exchange, the connection is marked so that it is checked before reuse.
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, PoolError> {
        let mut pooled = self.inner.get().await.map_err(|err| match err {
            managed::PoolError::Backend(e) => PoolError::Database(e),
            managed::PoolError::Closed => PoolError::Closed,
            // No timeouts are configured on the pool (callers bound whole operations instead),
            // and no hooks are installed: what remains can only be a closed pool.
            _ => PoolError::Closed,
        })?;
        pooled.clean = false;
        let result = work(&mut pooled.conn).await;
        pooled.clean = leaves_connection_clean(&result);
        Ok(result?)
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.inner.status();
        PoolStatus {
            max: s.max_size,
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    /// Closes connections unused for [`IDLE_TIMEOUT`], every minute, for as long as the pool lives.
    pub fn spawn_upkeep(&self) {
        let weak = self.inner.weak();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_used_to_completion_recently_is_reused_without_a_round_trip() {
        assert!(!needs_check(true, Duration::from_millis(5)));
    }

    #[test]
    fn a_cancelled_or_failed_use_or_a_long_idle_forces_a_check() {
        assert!(needs_check(false, Duration::ZERO));
        assert!(needs_check(true, CHECK_AFTER_IDLE + Duration::from_secs(1)));
    }

    #[test]
    fn only_complete_exchanges_leave_the_connection_clean() {
        assert!(leaves_connection_clean(&Ok::<_, sqlx::Error>(1)));
        assert!(leaves_connection_clean::<()>(&Err(
            sqlx::Error::RowNotFound
        )));
        assert!(!leaves_connection_clean::<()>(&Err(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!leaves_connection_clean::<()>(&Err(sqlx::Error::Protocol(
            "broken".into()
        ))));
    }
}
