//! Task persistence. Every call is bounded by the configured database timeout, so an unreachable
//! database turns into a quick `Unavailable` instead of a hung request.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlPool;
use sqlx::types::time::PrimitiveDateTime;
use time::OffsetDateTime;

use crate::task::{NewTask, Task, TaskPatch};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task not found")]
    NotFound,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.to_string()),
            // 08xxx: connection exceptions; HY000 with these numbers: server going away, read-only, ...
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("08")) => {
                Self::Unavailable(err.to_string())
            }
            other => Self::Query(other),
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
    pool: MySqlPool,
    timeout: Duration,
}

impl TaskStore {
    pub fn new(pool: MySqlPool, timeout: Duration) -> Self {
        Self { pool, timeout }
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, work).await;
        metrics::histogram!("db_client_operation_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        outcome.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer from the database within {:?}",
                self.timeout
            )))
        })
    }

    pub async fn list(
        &self,
        limit: u16,
        after: u64,
        done: Option<bool>,
    ) -> Result<Page, StoreError> {
        self.bounded(async {
            // One extra row tells whether a next page exists without a COUNT.
            let fetch = i64::from(limit) + 1;
            let rows: Vec<TaskRow> = match done {
                Some(done) => {
                    sqlx::query_as(select_tasks!(
                        "WHERE done = ? AND id > ? ORDER BY id LIMIT ?"
                    ))
                    .bind(done)
                    .bind(after)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query_as(select_tasks!("WHERE id > ? ORDER BY id LIMIT ?"))
                        .bind(after)
                        .bind(fetch)
                        .fetch_all(&self.pool)
                        .await?
                }
            };
            let mut items: Vec<Task> = rows.into_iter().map(Task::from).collect();
            let next = if items.len() > usize::from(limit) {
                items.truncate(usize::from(limit));
                items.last().map(|t| t.id)
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    pub async fn get(&self, id: u64) -> Result<Task, StoreError> {
        self.bounded(async {
            let row: TaskRow = sqlx::query_as(select_tasks!("WHERE id = ?"))
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.into())
        })
        .await
    }

    pub async fn create(&self, new: &NewTask) -> Result<Task, StoreError> {
        self.bounded(async {
            let now = now_utc();
            let description = new.description.as_ref().map(|d| d.as_str());
            let result = sqlx::query(
                "INSERT INTO tasks (title, description, done, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(new.title.as_str())
            .bind(description)
            .bind(new.done)
            .bind(primitive(now))
            .bind(primitive(now))
            .execute(&self.pool)
            .await?;
            Ok(Task {
                id: result.last_insert_id(),
                title: new.title.as_str().to_owned(),
                description: description.map(str::to_owned),
                done: new.done,
                created_at: now,
                updated_at: now,
            })
        })
        .await
    }

    pub async fn update(&self, id: u64, patch: &TaskPatch) -> Result<Task, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            let row: TaskRow =
                sqlx::query_as(select_tasks!("WHERE id = ? FOR UPDATE"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut task = Task::from(row);
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
        self.bounded(async {
            let result = sqlx::query("DELETE FROM tasks WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
            if result.rows_affected() == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
    }
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
