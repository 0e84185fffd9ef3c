//! What an unusable database looks like from here: which errors mean "unavailable" (503, retry
//! later) rather than a bug (500), the words operators and clients see for each cause, and warnings
//! limited to one per cause per interval, so that an outage under load does not flood the logs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlDatabaseError;

/// Why the database cannot serve us. Stable words: they appear in `/readyz` and in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// No connection: refused, reset, TLS failure, server shutting down, session killed.
    Unreachable,
    /// The server answered but refused these credentials or this client host.
    AccessDenied,
    /// The server refuses more connections (global or per-user limits).
    TooManyConnections,
    /// The schema or its tables do not exist (yet): migrations have not run.
    SchemaMissing,
    /// No answer within the configured bound.
    Timeout,
}

const ALL: [Outage; 5] = [
    Outage::Unreachable,
    Outage::AccessDenied,
    Outage::TooManyConnections,
    Outage::SchemaMissing,
    Outage::Timeout,
];

impl Outage {
    /// The outage an error reveals, or `None` when the error is not about availability.
    pub fn of(err: &sqlx::Error) -> Option<Self> {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Some(Self::Unreachable),
            sqlx::Error::Database(db) => {
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map(MySqlDatabaseError::number);
                match number.and_then(Self::of_server_error) {
                    Some(outage) => Some(outage),
                    // SQLSTATE class 08: connection exceptions.
                    None if db.code().is_some_and(|c| c.starts_with("08")) => {
                        Some(Self::Unreachable)
                    }
                    None => None,
                }
            }
            _ => None,
        }
    }

    /// MySQL and MariaDB server error numbers that mean the database cannot serve us now.
    fn of_server_error(number: u16) -> Option<Self> {
        match number {
            // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_HOST_IS_BLOCKED,
            // ER_HOST_NOT_PRIVILEGED
            1044 | 1045 | 1129 | 1130 => Some(Self::AccessDenied),
            // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS, ER_USER_LIMIT_REACHED
            1040 | 1203 | 1226 => Some(Self::TooManyConnections),
            // ER_BAD_DB_ERROR, ER_NO_SUCH_TABLE
            1049 | 1146 => Some(Self::SchemaMissing),
            // ER_SERVER_SHUTDOWN, MariaDB ER_CONNECTION_KILLED, MySQL ER_SESSION_WAS_KILLED
            1053 | 1927 | 3169 => Some(Self::Unreachable),
            _ => None,
        }
    }

    /// A stable, short name (log field, metrics-friendly).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::AccessDenied => "access-denied",
            Self::TooManyConnections => "too-many-connections",
            Self::SchemaMissing => "schema-missing",
            Self::Timeout => "timeout",
        }
    }

    /// What it means and what to check, in words safe to show any caller (no host, user or SQL).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unreachable => "the database cannot be reached",
            Self::AccessDenied => {
                "the database refused the credentials (check DB_USERNAME and the password)"
            }
            Self::TooManyConnections => "the database refuses more connections",
            Self::SchemaMissing => "the database schema is missing (migrations have not run)",
            Self::Timeout => "the database did not answer in time",
        }
    }

    fn index(self) -> usize {
        ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// At most one warning per cause per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Per cause: when it was last logged (ms since `epoch()`, 0 = never) and how many reports were
/// held back since.
struct Limiter {
    last_logged_ms: [AtomicU64; ALL.len()],
    held_back: [AtomicU64; ALL.len()],
}

static LIMITER: Limiter = Limiter {
    last_logged_ms: [const { AtomicU64::new(0) }; ALL.len()],
    held_back: [const { AtomicU64::new(0) }; ALL.len()],
};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Logs a warning for `outage` unless one was logged for the same cause within [`WARN_INTERVAL`];
/// the next warning says how many were held back. `detail` (the driver's message) goes to the log
/// only, never to a client.
pub fn warn(outage: Outage, detail: &str) {
    // +1 so that a report in the very first millisecond is not mistaken for "never logged".
    let now_ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
    if let Some(held_back) = LIMITER.admit(outage.index(), now_ms) {
        tracing::warn!(
            cause = outage.name(),
            detail,
            similar_warnings_held_back = held_back,
            "database unavailable: {}",
            outage.describe()
        );
    }
}

impl Limiter {
    /// `Some(held back count)` when this report may be logged now, `None` when it is held back.
    fn admit(&self, slot: usize, now_ms: u64) -> Option<u64> {
        let interval = u64::try_from(WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_logged_ms[slot].load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= interval;
        // Of several requests racing past the check, only the one that moves the stamp logs.
        if due
            && self.last_logged_ms[slot]
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back[slot].swap(0, Ordering::Relaxed));
        }
        self.held_back[slot].fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter {
            last_logged_ms: [const { AtomicU64::new(0) }; ALL.len()],
            held_back: [const { AtomicU64::new(0) }; ALL.len()],
        }
    }

    #[test]
    fn one_warning_per_cause_per_interval_and_the_next_counts_the_rest() {
        let l = limiter();
        assert_eq!(l.admit(0, 1), Some(0));
        for ms in 2..1000 {
            assert_eq!(l.admit(0, ms), None);
        }
        // Another cause has its own budget.
        assert_eq!(l.admit(1, 500), Some(0));
        assert_eq!(l.admit(0, 10_001), Some(998));
        assert_eq!(l.admit(0, 10_002), None);
    }

    #[test]
    fn refused_credentials_and_missing_tables_are_outages_not_bugs() {
        assert_eq!(Outage::of_server_error(1045), Some(Outage::AccessDenied));
        assert_eq!(Outage::of_server_error(1146), Some(Outage::SchemaMissing));
        assert_eq!(
            Outage::of_server_error(1040),
            Some(Outage::TooManyConnections)
        );
        // ER_DUP_ENTRY is a statement's problem, not the database's availability.
        assert_eq!(Outage::of_server_error(1062), None);
        assert_eq!(
            Outage::of(&sqlx::Error::PoolTimedOut),
            Some(Outage::Unreachable)
        );
        assert_eq!(Outage::of(&sqlx::Error::RowNotFound), None);
    }

    #[test]
    fn words_shown_to_callers_name_no_host_user_or_driver_text() {
        for outage in ALL {
            let words = outage.describe();
            assert!(
                !words.contains("Access denied") && !words.contains('@'),
                "{words}"
            );
            assert_eq!(ALL[outage.index()], outage);
        }
    }
}
