//! wrk: one run of a Lua scenario against a URL, and what its report says.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::bench::line_value;

pub const THREADS: u32 = 2;
pub const CONNECTIONS: u32 = 64;

/// One wrk run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses with a status of 400 or more ("Non-2xx or 3xx responses").
    pub non_2xx: u64,
    /// Connect, read and write errors and timeouts ("Socket errors").
    pub socket_errors: u64,
}

impl WrkResult {
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// `wrk -t2 -c64 -d<duration> --latency -s <script> <url>`, echoed to stderr and parsed.
pub fn run(sh: &Shell, script: &Path, url: &str, duration: &str) -> anyhow::Result<WrkResult> {
    let (threads, connections) = (THREADS.to_string(), CONNECTIONS.to_string());
    let out = cmd!(
        sh,
        "wrk -t{threads} -c{connections} -d{duration} --latency -s {script} {url}"
    )
    .quiet()
    .read()?;
    eprintln!("{out}");
    parse(&out)
}

/// Reads wrk 4's report. Latencies come as `812.00us`, `3.38ms`, `1.05s` or `2.00m`, which
/// humantime reads (fractions included).
pub fn parse(out: &str) -> anyhow::Result<WrkResult> {
    let field = |prefix: &str| line_value(out, prefix);
    let latency_ms = |prefix: &str| -> anyhow::Result<f64> {
        let value = field(prefix)
            .with_context(|| format!("wrk: no {prefix} latency (was --latency given?)"))?;
        let duration = humantime::parse_duration(value)
            .with_context(|| format!("wrk: unreadable {prefix} latency {value:?}"))?;
        Ok(duration.as_secs_f64() * 1000.0)
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("wrk: no Requests/sec")?;
    let non_2xx = match field("Non-2xx or 3xx responses:") {
        Some(v) => v
            .parse()
            .with_context(|| format!("wrk: unreadable Non-2xx count {v:?}"))?,
        None => 0,
    };
    // "Socket errors: connect 0, read 0, write 0, timeout 7"
    let socket_errors = match field("Socket errors:") {
        Some(v) => v
            .split(',')
            .map(|part| {
                part.split_whitespace()
                    .last()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum::<Option<u64>>()
            .with_context(|| format!("wrk: unreadable socket errors {v:?}"))?,
        None => 0,
    };
    Ok(WrkResult {
        rps,
        p50_ms: latency_ms("50%")?,
        p99_ms: latency_ms("99%")?,
        non_2xx,
        socket_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// wrk 4.1.0 against a server answering 404, with `--timeout 1s`: both error lines.
    const WITH_ERRORS: &str = "\
Running 3s test @ http://127.0.0.1:18080/missing
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.61ms   59.50ms 826.74ms   97.98%
    Req/Sec   551.28    257.92     1.12k    61.67%
  Latency Distribution
     50%    3.38ms
     75%    6.82ms
     90%   13.50ms
     99%  292.29ms
  3313 requests in 3.03s, 1.64MB read
  Socket errors: connect 0, read 0, write 0, timeout 7
  Non-2xx or 3xx responses: 3313
Requests/sec:   1093.92
Transfer/sec:    555.51KB
";

    /// wrk 4.1.0 against the service (GET one task): no error lines at all.
    const CLEAN: &str = "\
Running 10s test @ http://127.0.0.1:36681/api/tasks
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.27ms    6.74ms 310.05ms   92.02%
    Req/Sec     4.58k     2.51k   16.72k    84.50%
  Latency Distribution
     50%    6.05ms
     75%    9.95ms
     90%   13.20ms
     99%   22.80ms
  91754 requests in 10.09s, 31.34MB read
Requests/sec:   9094.33
Transfer/sec:      3.11MB
";

    #[test]
    fn a_report_without_error_lines_has_no_errors() {
        let r = parse(CLEAN).unwrap();
        assert!((r.rps - 9094.33).abs() < 1e-9);
        assert!((r.p50_ms - 6.05).abs() < 1e-9);
        assert!((r.p99_ms - 22.80).abs() < 1e-9);
        assert_eq!(r.errors(), 0);
    }

    #[test]
    fn parses_throughput_and_latency_percentiles() {
        let r = parse(WITH_ERRORS).unwrap();
        assert!((r.rps - 1093.92).abs() < 1e-9);
        assert!((r.p50_ms - 3.38).abs() < 1e-9);
        assert!((r.p99_ms - 292.29).abs() < 1e-9);
    }

    #[test]
    fn non_2xx_responses_and_socket_errors_are_errors() {
        let r = parse(WITH_ERRORS).unwrap();
        assert_eq!((r.non_2xx, r.socket_errors), (3313, 7));
        assert_eq!(r.errors(), 3320);
    }

    #[test]
    fn every_kind_of_socket_error_is_summed() {
        let out = WITH_ERRORS.replace(
            "connect 0, read 0, write 0, timeout 7",
            "connect 1, read 2, write 3, timeout 4",
        );
        assert_eq!(parse(&out).unwrap().socket_errors, 10);
    }

    #[test]
    fn latencies_in_microseconds_seconds_and_minutes_are_read() {
        let out = WITH_ERRORS
            .replace("50%    3.38ms", "50%  812.00us")
            .replace("99%  292.29ms", "99%    2.00m");
        let r = parse(&out).unwrap();
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 120_000.0).abs() < 1e-9);
    }

    #[test]
    fn output_without_latency_distribution_is_an_error() {
        assert!(parse("Requests/sec: 5\n").is_err());
    }
}
