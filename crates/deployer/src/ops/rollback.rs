//! Which release a rollback returns to, and whether the database lets it: an image whose embedded
//! migrations are older than the schema the database already has would run code that was never
//! run against that schema (its migrator skips the migrations it does not know, and a later one
//! may have changed or dropped what the old code reads), so such a rollback is refused with the
//! reason unless forced. Releases that keep the migration rule (docs/ARCHITECTURE.md, "Migrations
//! across releases") make the rollback to the release just before safe: `--force` says so.

use crate::error::{Error, Result};
use crate::ledger::{self, Action, Outcome, Record};

/// The newest schema the environment's database has: what the running service says, else the
/// newest schema a successful release brought since the data was last purged.
pub fn database_schema(live: Option<i64>, records: &[Record]) -> Option<i64> {
    live.or_else(|| {
        let since_purge = records
            .iter()
            .rposition(|r| r.purged_data)
            .map_or(0, |i| i + 1);
        records[since_purge..]
            .iter()
            .filter(|r| r.result == Outcome::Ok && r.action != Action::Down)
            .filter_map(|r| r.schema_version)
            .max()
    })
}

/// Refuses a rollback to `record` when its image's migrations are older than `database`'s schema.
/// With `force` it is allowed, and the returned warning says what to expect.
pub fn schema_guard(record: &Record, database: Option<i64>, force: bool) -> Result<Option<String>> {
    let (Some(database), Some(image)) = (database, record.schema_version) else {
        return Ok(None);
    };
    if image >= database {
        return Ok(None);
    }
    let why = format!(
        "{} embeds migrations up to {image}, but the database already has schema {database}: that code was \
         never run against this schema, and a newer migration may have changed or dropped what it reads",
        record.version
    );
    if force {
        Ok(Some(format!("{why}; going ahead because of --force")))
    } else {
        Err(Error::usage(format!(
            "refusing to roll back: {why}. Deploy a version with schema {database} or newer, restore the database \
             from a backup taken before that migration, or pass --force if the schema change is known to be \
             compatible"
        )))
    }
}

/// The record `rollback` returns to: the last good release of `to`, else the previous good one.
pub fn choose<'a>(
    records: &'a [Record],
    to: Option<&str>,
    running: Option<&str>,
    env: &str,
    target: &str,
) -> Result<&'a Record> {
    match to {
        Some(version) => ledger::last_good_of(records, version).ok_or_else(|| {
            Error::usage(format!(
                "{version} was never deployed successfully to {env}: see `deployer history --target {target} --env \
                 {env}`, or deploy it with `deployer deploy --target {target} --env {env} --version {version}`"
            ))
        }),
        None => ledger::previous_good(records, running).ok_or_else(|| {
            Error::usage(format!(
                "no earlier good release of {env} to return to (see `deployer history --target {target} --env {env}`)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn record(version: &str, schema: Option<i64>, action: Action, purged: bool) -> Record {
        Record {
            replicas: None,
            version: version.into(),
            image_id: String::new(),
            time: OffsetDateTime::UNIX_EPOCH,
            action,
            result: Outcome::Ok,
            who: "t".into(),
            target: "compose".into(),
            port: 8000,
            image: String::new(),
            revision: None,
            schema_version: schema,
            purged_data: purged,
            manifests: None,
        }
    }

    #[test]
    fn a_rollback_to_an_older_schema_is_refused_unless_forced() {
        let old = record("1.0.0", Some(1), Action::Deploy, false);
        let error = schema_guard(&old, Some(2), false).unwrap_err().to_string();
        assert!(
            error.contains("embeds migrations up to 1") && error.contains("schema 2"),
            "{error}"
        );
        assert!(error.contains("--force"), "{error}");
        let warning = schema_guard(&old, Some(2), true).unwrap().unwrap();
        assert!(warning.contains("--force"), "{warning}");
    }

    #[test]
    fn same_or_newer_or_unknown_schemas_pass() {
        let same = record("1.1.0", Some(2), Action::Deploy, false);
        assert_eq!(schema_guard(&same, Some(2), false).unwrap(), None);
        let unknown = record("0.9.0", None, Action::Deploy, false);
        assert_eq!(schema_guard(&unknown, Some(2), false).unwrap(), None);
        assert_eq!(schema_guard(&same, None, false).unwrap(), None);
    }

    #[test]
    fn the_database_schema_comes_from_the_service_else_from_releases_since_the_last_purge() {
        let records = [
            record("2", Some(5), Action::Deploy, false),
            record("2", None, Action::Down, true),
            record("1", Some(3), Action::Deploy, false),
        ];
        assert_eq!(database_schema(Some(7), &records), Some(7));
        assert_eq!(database_schema(None, &records), Some(3));
        assert_eq!(database_schema(None, &records[..1]), Some(5));
        assert_eq!(database_schema(None, &[]), None);
    }
}
