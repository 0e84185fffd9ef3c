//! Connection pool, migrations (under a MySQL named lock) and seed data.

use std::sync::LazyLock;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{Connection, Executor};

use crate::config::DatabaseSettings;
use crate::pool::Pool;

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The schema version this build expects (the newest embedded migration, 0 with none), computed
/// once: `/readyz` and `/version` ask for it on every call.
pub fn expected_schema_version() -> i64 {
    static EXPECTED: LazyLock<i64> = LazyLock::new(|| newest(MIGRATOR.iter().map(|m| m.version)));
    *EXPECTED
}

/// The newest of migration `versions`, 0 when there are none.
fn newest(versions: impl IntoIterator<Item = i64>) -> i64 {
    versions.into_iter().max().unwrap_or(0)
}

/// Prefix of the MySQL named lock that serialises migrations and seeding across replicas.
pub const MIGRATION_LOCK_PREFIX: &str = "infra-challenge.migrate:";

/// MySQL and MariaDB refuse named locks longer than this.
const LOCK_NAME_MAX: usize = 64;

/// The named lock for one database. Named locks are server-wide, so the database is part of the
/// name: stacks that share a server migrate without waiting for each other. A name that would be
/// too long ends in a digest of the database name instead.
pub fn migration_lock(database: &str) -> String {
    let name = format!("{MIGRATION_LOCK_PREFIX}{database}");
    if name.len() <= LOCK_NAME_MAX {
        return name;
    }
    let room = LOCK_NAME_MAX - MIGRATION_LOCK_PREFIX.len();
    let digest: String = Sha256::digest(database.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{MIGRATION_LOCK_PREFIX}{}", &digest[..room])
}

pub fn connect_options(settings: &DatabaseSettings) -> MySqlConnectOptions {
    let options = MySqlConnectOptions::new()
        .host(&settings.host)
        .port(settings.port)
        .username(&settings.username)
        .database(&settings.database)
        // Times are stored and read as UTC.
        .timezone(Some("+00:00".into()));
    // An account without a password expects an empty authentication response; given an empty
    // password, sqlx would send the scramble of "" instead, which the server refuses.
    match settings.password.expose_secret() {
        "" => options,
        password => options.password(password),
    }
}

/// The pool behind the API: lazy, so the process starts (and answers /healthz) while MySQL is down.
pub fn pool(settings: &DatabaseSettings) -> Pool {
    Pool::new(connect_options(settings), settings.max_connections)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The server could not be reached or refused us: worth retrying.
    #[error("cannot reach the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration ran and failed: retrying will not help.
    #[error("migration {version} ({description}) failed: {source}")]
    Failed {
        version: i64,
        description: String,
        source: MigrateError,
    },
    #[error("migration bookkeeping failed: {0}")]
    Bookkeeping(#[source] MigrateError),
    #[error("seeding failed: {0}")]
    Seed(#[source] sqlx::Error),
}

impl MigrationError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    /// The server's error number when the server itself refused us (e.g. 1045: access denied).
    pub fn server_error_number(&self) -> Option<u16> {
        match self {
            Self::Connect(sqlx::Error::Database(e)) | Self::Seed(sqlx::Error::Database(e)) => e
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number),
            _ => None,
        }
    }
}

/// What `apply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub seeded: u64,
    pub schema_version: i64,
}

/// Applies pending migrations of `migrator` and, with `seed_count`, seeds an empty table, all while
/// holding the named lock, on a dedicated connection that is closed afterwards whatever happens
/// (closing a MySQL session always releases its named locks).
pub async fn apply(
    options: &MySqlConnectOptions,
    migrator: &Migrator,
    seed_count: Option<u32>,
) -> Result<MigrationReport, MigrationError> {
    let mut conn = MySqlConnection::connect_with(options)
        .await
        .map_err(MigrationError::Connect)?;
    let lock = migration_lock(options.get_database().unwrap_or_default());
    let result = apply_locked(&mut conn, &lock, migrator, seed_count).await;
    match &result {
        Ok(_) => {
            // Graceful close; the lock was released explicitly already.
            let _ = conn.close().await;
        }
        Err(_) => {
            // Best effort: release explicitly, then drop the session, which releases it for sure.
            let _ = sqlx::query("DO RELEASE_LOCK(?)")
                .bind(&lock)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
    result
}

async fn apply_locked(
    conn: &mut MySqlConnection,
    lock: &str,
    migrator: &Migrator,
    seed_count: Option<u32>,
) -> Result<MigrationReport, MigrationError> {
    // Wait as long as it takes: another replica is migrating and will finish or die (its session,
    // and so its lock, ends with it). A year rather than -1, which MariaDB answers with NULL.
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 31536000)")
        .bind(lock)
        .fetch_one(&mut *conn)
        .await
        .map_err(MigrationError::Connect)?;
    if locked != Some(1) {
        return Err(MigrationError::Connect(sqlx::Error::Protocol(
            "GET_LOCK did not grant the migration lock".into(),
        )));
    }
    let mut report = MigrationReport::default();
    conn.ensure_migrations_table()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    if let Some(version) = conn
        .dirty_version()
        .await
        .map_err(MigrationError::Bookkeeping)?
    {
        return Err(MigrationError::Bookkeeping(MigrateError::Dirty(version)));
    }
    let applied = conn
        .list_applied_migrations()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    for migration in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(done) if done.checksum != migration.checksum => {
                return Err(MigrationError::Bookkeeping(MigrateError::VersionMismatch(
                    migration.version,
                )));
            }
            Some(_) => {}
            None => {
                conn.apply(migration)
                    .await
                    .map_err(|source| MigrationError::Failed {
                        version: migration.version,
                        description: migration.description.to_string(),
                        source,
                    })?;
                report.applied.push(migration.version);
            }
        }
    }
    report.schema_version = newest(migrator.iter().map(|m| m.version));
    if let Some(count) = seed_count {
        report.seeded = seed(conn, count).await.map_err(MigrationError::Seed)?;
    }
    conn.execute(sqlx::query("DO RELEASE_LOCK(?)").bind(lock))
        .await
        .map_err(MigrationError::Connect)?;
    Ok(report)
}

/// Inserts `count` sample tasks when the table is empty; returns how many rows it inserted.
async fn seed(conn: &mut MySqlConnection, count: u32) -> Result<u64, sqlx::Error> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(&mut *conn)
        .await?;
    if existing > 0 || count == 0 {
        return Ok(0);
    }
    let mut inserted = 0;
    let mut tx = conn.begin().await?;
    // Batches keep each statement well under max_allowed_packet.
    for chunk_start in (0..count).step_by(500) {
        let chunk_end = (chunk_start + 500).min(count);
        let mut builder = sqlx::QueryBuilder::new(
            "INSERT INTO tasks (title, description, done, created_at, updated_at) ",
        );
        builder.push_values(chunk_start..chunk_end, |mut row, i| {
            row.push_bind(format!("Sample task {}", i + 1))
                .push_bind(format!(
                    "Seeded by `challenge --seed` ({} of {count})",
                    i + 1
                ))
                .push_bind(i % 3 == 0)
                .push("UTC_TIMESTAMP(6)")
                .push("UTC_TIMESTAMP(6)");
        });
        inserted += builder.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The newest successfully applied migration, for readiness; `None` before any migration ran.
pub async fn applied_schema_version(
    conn: &mut MySqlConnection,
) -> Result<Option<i64>, sqlx::Error> {
    match sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE",
    )
    .fetch_one(conn)
    .await
    {
        Ok(v) => Ok(v),
        // 1146: table doesn't exist (no migration ever ran). The database is reachable nonetheless.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42S02") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_is_the_largest_whatever_the_order_and_0_without_any() {
        assert_eq!(
            newest([20_240_101_000_002, 20_240_101_000_001]),
            20_240_101_000_002
        );
        assert_eq!(newest([]), 0);
    }

    #[test]
    fn the_expected_version_is_the_newest_migration_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let newest_file = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.split_once('_')?.0.parse::<i64>().ok()
            })
            .max()
            .expect("a migration file");
        assert_eq!(expected_schema_version(), newest_file);
    }

    #[test]
    fn the_lock_names_its_database() {
        assert_eq!(
            migration_lock("challenge"),
            "infra-challenge.migrate:challenge"
        );
    }

    #[test]
    fn a_long_database_name_gives_a_distinct_lock_within_mysql_s_limit() {
        let long_a = "a".repeat(64);
        let long_b = format!("{}b", "a".repeat(63));
        let lock_a = migration_lock(&long_a);
        assert_eq!(lock_a.len(), LOCK_NAME_MAX);
        assert!(lock_a.starts_with(MIGRATION_LOCK_PREFIX));
        assert_eq!(lock_a, migration_lock(&long_a), "the same name every time");
        assert_ne!(lock_a, migration_lock(&long_b));
    }
}
