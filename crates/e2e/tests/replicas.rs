//! Several replicas starting at once on an empty database apply each migration exactly once.

use std::time::Duration;

use e2e::{Container, Network, app_database_args, app_image, sql, start_database, wait_for_health};

const SEED_COUNT: &str = "7";

#[test]
fn three_replicas_on_an_empty_database_all_turn_healthy_and_apply_each_migration_once() {
    let image = app_image();
    let network = Network::create("e2e-replicas");
    let db = start_database(&network, "app-password", "root-password");

    let mut args = app_database_args(&network, "app-password");
    args.extend(
        [
            "-e",
            &format!("SEED_COUNT={SEED_COUNT}"),
            "--health-interval",
            "2s",
            &image,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Started from three threads so their migrations race for real.
    let replicas: Vec<Container> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| Container::run("e2e-replica", &args)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("docker run thread"))
            .collect()
    });
    for replica in &replicas {
        wait_for_health(&replica.name, "healthy", Duration::from_secs(120));
    }

    let rows = sql(
        &db,
        "root-password",
        "SELECT version, COUNT(*), MIN(success) FROM _sqlx_migrations GROUP BY version",
    );
    assert!(!rows.is_empty(), "no migration recorded");
    for row in rows.lines() {
        let fields: Vec<&str> = row.split('\t').collect();
        assert_eq!(
            fields.get(1),
            Some(&"1"),
            "migration applied more than once: {row}"
        );
        assert_eq!(fields.get(2), Some(&"1"), "migration not successful: {row}");
    }
    let embedded = std::fs::read_dir(e2e::project_root().join("crates/challenge/migrations"))
        .expect("migrations folder")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".sql") && !name.ends_with(".down.sql")
        })
        .count();
    assert_eq!(
        rows.lines().count(),
        embedded,
        "recorded migrations:\n{rows}"
    );
    assert_eq!(
        sql(&db, "root-password", "SELECT COUNT(*) FROM tasks"),
        SEED_COUNT,
        "seeded more than once"
    );
    drop(replicas);
}
