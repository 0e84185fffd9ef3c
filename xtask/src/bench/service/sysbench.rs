//! The database's own ceiling: sysbench's `oltp_point_select` on the same server, one table of as
//! many rows as the service's benchmark database.

use anyhow::Context;
use xshell::{Shell, cmd};

use super::app::ROWS;
use crate::bench::line_value;
use crate::testdb::DbServer;

pub const THREADS: u32 = 64;
pub const SECONDS: u32 = 10;
const DATABASE: &str = "sbtest";

#[derive(Debug)]
pub struct Sysbench {
    pub qps: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// Prepares the table, runs the point selects, drops the table again.
pub fn point_select(sh: &Shell, db: &DbServer) -> anyhow::Result<Sysbench> {
    db.recreate(DATABASE)?;
    let common = &[
        "oltp_point_select".to_owned(),
        "--db-driver=mysql".to_owned(),
        format!("--mysql-host={}", db.host),
        format!("--mysql-port={}", db.port),
        format!("--mysql-user={}", db.user),
        format!("--mysql-password={}", db.password),
        format!("--mysql-db={DATABASE}"),
        "--tables=1".to_owned(),
        format!("--table-size={ROWS}"),
    ];
    cmd!(sh, "sysbench {common...} prepare")
        .quiet()
        .ignore_stdout()
        .run()?;
    let (threads, seconds) = (THREADS.to_string(), SECONDS.to_string());
    let out = cmd!(
        sh,
        "sysbench {common...} --threads={threads} --time={seconds} --percentile=99 run"
    )
    .quiet()
    .read();
    let cleanup = cmd!(sh, "sysbench {common...} cleanup")
        .quiet()
        .ignore_stdout()
        .run();
    let out = out?;
    cleanup?;
    eprintln!("{out}");
    parse(&out)
}

fn parse(out: &str) -> anyhow::Result<Sysbench> {
    let after = |prefix: &str| line_value(out, prefix);
    // "queries:  37758  (18683.50 per sec.)"
    let qps = after("queries:")
        .and_then(|v| v.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .context("sysbench: no queries per second")?;
    let p99_ms = after("99th percentile:")
        .and_then(|v| v.parse().ok())
        .context("sysbench: no 99th percentile")?;
    // Without --mysql-ignore-errors any other error stops sysbench with a failing exit status.
    let errors = after("ignored errors:")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("sysbench: no ignored errors count")?;
    Ok(Sysbench {
        qps,
        p99_ms,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// sysbench 1.0.20's output, as printed on the test machine.
    const OUTPUT: &str = "\
sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 8
Initializing random number generator from current time


Initializing worker threads...

Threads started!

SQL statistics:
    queries performed:
        read:                            37758
        write:                           0
        other:                           0
        total:                           37758
    transactions:                        37758  (18683.50 per sec.)
    queries:                             37758  (18683.50 per sec.)
    ignored errors:                      0      (0.00 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          2.0206s
    total number of events:              37758

Latency (ms):
         min:                                    0.03
         avg:                                    0.43
         max:                                  370.71
         99th percentile:                       12.08
         sum:                                16097.62

Threads fairness:
    events (avg/stddev):           4719.7500/4533.53
    execution time (avg/stddev):   2.0122/0.01

";

    #[test]
    fn parses_queries_per_second_p99_and_errors() {
        let s = parse(OUTPUT).unwrap();
        assert!((s.qps - 18683.5).abs() < 1e-9);
        assert!((s.p99_ms - 12.08).abs() < 1e-9);
        assert_eq!(s.errors, 0);
    }

    #[test]
    fn ignored_errors_are_counted() {
        let out = OUTPUT.replace(
            "ignored errors:                      0 ",
            "ignored errors:                      7 ",
        );
        assert_eq!(parse(&out).unwrap().errors, 7);
    }
}
