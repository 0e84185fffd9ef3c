//! Migrations: exactly once under concurrency; a failure names the migration and frees the lock.

use challenge::db::{self, MigrationError};
use sqlx::migrate::Migrator;

use crate::helpers::fresh_database;

#[tokio::test]
async fn five_concurrent_migrators_apply_each_migration_once_and_seed_once() {
    let settings = fresh_database().await;
    let options = db::connect_options(&settings);
    let runs = (0..5).map(|_| {
        let options = options.clone();
        tokio::spawn(async move { db::apply(&options, &db::MIGRATOR, Some(50)).await })
    });
    let reports: Vec<_> = futures_join(runs).await;
    let mut applied: Vec<i64> = Vec::new();
    let mut seeded = 0;
    for report in reports {
        let report = report.expect("every migrator succeeds");
        applied.extend(report.applied);
        seeded += report.seeded;
        assert_eq!(report.schema_version, db::expected_schema_version());
    }
    let expected: Vec<i64> = db::MIGRATOR.iter().map(|m| m.version).collect();
    applied.sort_unstable();
    assert_eq!(
        applied, expected,
        "each migration applied by exactly one migrator"
    );
    assert_eq!(seeded, 50, "seeded once");

    let pool = sqlx::MySqlPool::connect_with(options).await.unwrap();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
    assert_eq!(rows.len(), expected.len());
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tasks, 50);
}

#[tokio::test]
async fn the_lock_serialises_one_database_and_leaves_the_others_alone() {
    use sqlx::Connection;
    use std::time::Duration;

    let (ours, other) = (fresh_database().await, fresh_database().await);
    // Another process migrating `ours` holds its lock.
    let mut holder = sqlx::MySqlConnection::connect_with(&db::connect_options(&ours))
        .await
        .unwrap();
    let held: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 5)")
        .bind(db::migration_lock(&ours.database))
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(held, Some(1));

    // A stack on another database of the same server migrates without waiting for it...
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        db::apply(&db::connect_options(&other), &db::MIGRATOR, None),
    )
    .await
    .expect("migrating another database does not wait for this database's lock")
    .unwrap();
    assert_eq!(report.schema_version, db::expected_schema_version());

    // ...while a migrator of `ours` waits until the holder lets go.
    let options = db::connect_options(&ours);
    let waiting = tokio::spawn(async move { db::apply(&options, &db::MIGRATOR, None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the migrator waits for the lock");
    holder.close().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the migrator proceeds once the lock is free")
        .unwrap()
        .unwrap();
    assert_eq!(report.schema_version, db::expected_schema_version());
}

#[tokio::test]
async fn seeding_a_non_empty_table_inserts_nothing() {
    let settings = fresh_database().await;
    let options = db::connect_options(&settings);
    let first = db::apply(&options, &db::MIGRATOR, Some(3)).await.unwrap();
    assert_eq!(first.seeded, 3);
    let again = db::apply(&options, &db::MIGRATOR, Some(3)).await.unwrap();
    assert_eq!((again.applied.len(), again.seeded), (0, 0));
}

#[tokio::test]
async fn failed_migration_is_named_and_never_leaves_the_lock_held() {
    let dir =
        std::env::temp_dir().join(format!("challenge-bad-migrations-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("1_create_things.sql"),
        "CREATE TABLE things (id INT PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        dir.join("2_broken_step.sql"),
        "ALTER TABLE no_such_table ADD COLUMN x INT;",
    )
    .unwrap();
    let migrator = Migrator::new(dir.as_path()).await.unwrap();
    let settings = fresh_database().await;
    let options = db::connect_options(&settings);

    let err = db::apply(&options, &migrator, None).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, MigrationError::Failed { version: 2, .. }),
        "{message}"
    );
    assert!(
        message.contains("broken step") && message.contains("no_such_table"),
        "{message}"
    );
    assert!(!err.is_retryable());

    let pool = sqlx::MySqlPool::connect_with(options).await.unwrap();
    let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK(?)")
        .bind(db::migration_lock(&settings.database))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(free, Some(1), "the migration lock was released");
    std::fs::remove_dir_all(dir).ok();
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("migrator task"));
    }
    out
}
