//! Task persistence. Every call is bounded by the configured database timeout, so an unreachable
//! database turns into a quick `Unavailable` instead of a hung request.

use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::types::time::PrimitiveDateTime;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::attribution::{self, Part};
use crate::outage::Outage;
use crate::pool::{Pool, PoolError, PoolStatus};
use crate::task::{NewTask, Task, TaskPatch};
use crate::traces;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task not found")]
    NotFound,
    /// The database cannot serve now; `detail` is the driver's message, for logs only.
    #[error("database unavailable ({}): {detail}", outage.name())]
    Unavailable { outage: Outage, detail: String },
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if matches!(err, sqlx::Error::RowNotFound) {
            return Self::NotFound;
        }
        match Outage::of(&err) {
            Some(outage) => Self::Unavailable {
                outage,
                detail: err.to_string(),
            },
            None => Self::Query(err),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Database(e) => e.into(),
            PoolError::Closed => Self::Unavailable {
                outage: Outage::Unreachable,
                detail: err.to_string(),
            },
        }
    }
}

/// A page of tasks and the cursor of the next one.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Task>,
    pub next: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: u64,
    title: String,
    description: Option<String>,
    done: bool,
    created_at: PrimitiveDateTime,
    updated_at: PrimitiveDateTime,
}

impl From<TaskRow> for Task {
    fn from(r: TaskRow) -> Self {
        Task {
            id: r.id,
            title: r.title,
            description: r.description,
            done: r.done,
            created_at: r.created_at.assume_utc(),
            updated_at: r.updated_at.assume_utc(),
        }
    }
}

/// `SELECT <the columns of a TaskRow> FROM tasks <rest>`, joined at compile time: the hot paths
/// hand sqlx a `&'static str` instead of formatting the statement on every request.
macro_rules! select_tasks {
    ($rest:literal) => {
        concat!(
            "SELECT id, title, description, done, created_at, updated_at FROM tasks ",
            $rest
        )
    };
}

#[derive(Clone)]
pub struct TaskStore {
    pool: Pool,
    timeout: Duration,
}

impl TaskStore {
    pub fn new(pool: Pool, timeout: Duration) -> Self {
        Self { pool, timeout }
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.pool.status()
    }

    /// The newest successfully applied migration (`None` before any ran), within `within`.
    pub async fn schema_version(&self, within: Duration) -> Result<Option<i64>, StoreError> {
        let work = self
            .pool
            .run(async |conn| crate::db::applied_schema_version(conn).await);
        match tokio::time::timeout(within, work).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(timed_out(within)),
        }
    }

    /// Runs `work` on a pooled connection, bounded by the database timeout as a whole (waiting for
    /// a connection included), and records how long it took.
    /// `operation` names the statement kind (`SELECT`, ...) for the call's trace span.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let span = if attribution::on(Part::Tracing) {
            traces::db_span(operation)
        } else {
            tracing::Span::none()
        };
        let call = self.pool.run(work).instrument(span);
        let outcome = if attribution::on(Part::Limits) {
            tokio::time::timeout(self.timeout, call).await
        } else {
            Ok(call.await)
        };
        if attribution::on(Part::Metrics) {
            metrics::histogram!("db_client_operation_duration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        match outcome {
            Ok(result) => Ok(result?),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    pub async fn list(
        &self,
        limit: u16,
        after: u64,
        done: Option<bool>,
    ) -> Result<Page, StoreError> {
        // One extra row tells whether a next page exists without a COUNT.
        let fetch = i64::from(limit) + 1;
        let rows: Vec<TaskRow> = self
            .bounded("SELECT", async |conn| match done {
                Some(done) => {
                    sqlx::query_as(select_tasks!(
                        "WHERE done = ? AND id > ? ORDER BY id LIMIT ?"
                    ))
                    .bind(done)
                    .bind(after)
                    .bind(fetch)
                    .fetch_all(conn)
                    .await
                }
                None => {
                    sqlx::query_as(select_tasks!("WHERE id > ? ORDER BY id LIMIT ?"))
                        .bind(after)
                        .bind(fetch)
                        .fetch_all(conn)
                        .await
                }
            })
            .await?;
        let mut items: Vec<Task> = rows.into_iter().map(Task::from).collect();
        let next = if items.len() > usize::from(limit) {
            items.truncate(usize::from(limit));
            items.last().map(|t| t.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub async fn get(&self, id: u64) -> Result<Task, StoreError> {
        let row: TaskRow = self
            .bounded("SELECT", async |conn| {
                sqlx::query_as(select_tasks!("WHERE id = ?"))
                    .bind(id)
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok(row.into())
    }

    pub async fn create(&self, new: &NewTask) -> Result<Task, StoreError> {
        let now = now_utc();
        let description = new.description.as_ref().map(|d| d.as_str());
        let result = self
            .bounded("INSERT", async |conn| {
                sqlx::query(
                    "INSERT INTO tasks (title, description, done, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(new.title.as_str())
                .bind(description)
                .bind(new.done)
                .bind(primitive(now))
                .bind(primitive(now))
                .execute(conn)
                .await
            })
            .await?;
        Ok(Task {
            id: result.last_insert_id(),
            title: new.title.as_str().to_owned(),
            description: description.map(str::to_owned),
            done: new.done,
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn update(&self, id: u64, patch: &TaskPatch) -> Result<Task, StoreError> {
        self.bounded("UPDATE", async |conn| {
            let mut tx = conn.begin().await?;
            let row: TaskRow = sqlx::query_as(select_tasks!("WHERE id = ? FOR UPDATE"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let task = patched(row.into(), patch);
            sqlx::query(
                "UPDATE tasks SET title = ?, description = ?, done = ?, updated_at = ? WHERE id = ?",
            )
            .bind(&task.title)
            .bind(&task.description)
            .bind(task.done)
            .bind(primitive(task.updated_at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(task)
        })
        .await
    }

    pub async fn delete(&self, id: u64) -> Result<(), StoreError> {
        let result = self
            .bounded("DELETE", async |conn| {
                sqlx::query("DELETE FROM tasks WHERE id = ?")
                    .bind(id)
                    .execute(conn)
                    .await
            })
            .await?;
        if result.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }
}

fn timed_out(bound: Duration) -> StoreError {
    StoreError::Unavailable {
        outage: Outage::Timeout,
        detail: format!("no answer from the database within {bound:?}"),
    }
}

/// `task` with the fields `patch` sets, stamped now.
fn patched(mut task: Task, patch: &TaskPatch) -> Task {
    if let Some(title) = &patch.title {
        task.title = title.as_str().to_owned();
    }
    if let Some(description) = &patch.description {
        task.description = description.as_ref().map(|d| d.as_str().to_owned());
    }
    if let Some(done) = patch.done {
        task.done = done;
    }
    task.updated_at = now_utc();
    task
}

/// Now, at the microsecond precision DATETIME(6) stores, so what we return equals what we read later.
fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

fn primitive(t: OffsetDateTime) -> PrimitiveDateTime {
    PrimitiveDateTime::new(t.date(), t.time())
}
