//! wrk: one run of a Lua scenario against a URL, and what its report says.

use std::path::Path;
use std::process::{Child, Command, Stdio};

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
    parse(&report(sh, script, url, duration)?)
}

/// Like [`run`], with the number of requests completed (for figures per request).
pub fn run_counted(
    sh: &Shell,
    script: &Path,
    url: &str,
    duration: &str,
) -> anyhow::Result<(WrkResult, u64)> {
    let out = report(sh, script, url, duration)?;
    Ok((parse(&out)?, totals(&out)?.0))
}

/// wrk's report of one scripted run, echoed to stderr.
fn report(sh: &Shell, script: &Path, url: &str, duration: &str) -> anyhow::Result<String> {
    let (threads, connections) = (THREADS.to_string(), CONNECTIONS.to_string());
    let out = cmd!(
        sh,
        "wrk -t{threads} -c{connections} -d{duration} --latency -s {script} {url}"
    )
    .quiet()
    .read()?;
    eprintln!("{out}");
    Ok(out)
}

/// `wrk -t<threads> -c<connections> -d<duration> --latency <url>`: GETs of one URL, no script.
/// Returns wrk's report (echoed to stderr), for `parse` and `totals`.
pub fn get(
    sh: &Shell,
    url: &str,
    threads: u32,
    connections: u32,
    duration: &str,
) -> anyhow::Result<String> {
    let (threads, connections) = (threads.to_string(), connections.to_string());
    let out = cmd!(
        sh,
        "wrk -t{threads} -c{connections} -d{duration} --latency {url}"
    )
    .quiet()
    .read()?;
    eprintln!("{out}");
    Ok(out)
}

/// wrk running in the background for as long as something else takes: started with a duration far
/// beyond it and interrupted by `stop` (on SIGINT wrk stops its threads and prints its report for
/// the time it ran). Dropped without `stop`, the process is killed.
pub struct Background {
    child: Option<Child>,
}

impl Background {
    /// `wrk -t<threads> -c<connections> -d10m --timeout <timeout> --latency <url>`.
    pub fn start(
        url: &str,
        threads: u32,
        connections: u32,
        timeout: &str,
    ) -> anyhow::Result<Background> {
        let child = Command::new("wrk")
            .args([
                &format!("-t{threads}"),
                &format!("-c{connections}"),
                "-d10m",
                "--timeout",
                timeout,
                "--latency",
                url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting wrk")?;
        Ok(Background { child: Some(child) })
    }

    /// Interrupts wrk and returns its report, also echoed to stderr.
    pub fn stop(mut self, sh: &Shell) -> anyhow::Result<String> {
        let child = self.child.take().context("wrk already stopped")?;
        let pid = child.id().to_string();
        cmd!(sh, "kill -INT {pid}").quiet().run()?;
        let output = child.wait_with_output().context("waiting for wrk")?;
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("{out}");
        anyhow::ensure!(output.status.success(), "wrk failed ({})", output.status);
        Ok(out)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The slowest request's latency (ms), from the `Latency <avg> <stdev> <max> <+/- stdev>` line.
pub fn max_latency_ms(out: &str) -> anyhow::Result<f64> {
    let max = out
        .lines()
        .map(str::trim_start)
        .filter_map(|line| line.strip_prefix("Latency "))
        .find_map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.len() == 4).then(|| fields[2])
        })
        .context("wrk: no Latency avg/stdev/max line")?;
    Ok(humantime::parse_duration(max)
        .with_context(|| format!("wrk: unreadable maximum latency {max:?}"))?
        .as_secs_f64()
        * 1000.0)
}

/// The requests wrk completed and the seconds it ran: `2072 requests in 3.10s, 8.36MB read`.
pub fn totals(out: &str) -> anyhow::Result<(u64, f64)> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|line| line.contains(" requests in "))
        .context("wrk: no `N requests in T` line")?;
    let mut words = line.split_whitespace();
    let requests = words
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("wrk: unreadable request count in {line:?}"))?;
    let seconds = words
        .nth(2)
        .map(|t| t.trim_end_matches(','))
        .and_then(|t| humantime::parse_duration(t).ok())
        .with_context(|| format!("wrk: unreadable run time in {line:?}"))?
        .as_secs_f64();
    Ok((requests, seconds))
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
    use super::{max_latency_ms, parse, totals};

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
    fn the_maximum_latency_is_the_third_figure_of_the_latency_line() {
        assert!((max_latency_ms(CLEAN).unwrap() - 310.05).abs() < 1e-9);
        let slow = CLEAN.replace("310.05ms", "1.04s");
        assert!((max_latency_ms(&slow).unwrap() - 1040.0).abs() < 1e-9);
        assert!(max_latency_ms("Requests/sec: 5\n").is_err());
    }

    #[test]
    fn totals_are_the_requests_completed_and_the_time_run() {
        let (requests, seconds) = totals(CLEAN).unwrap();
        assert_eq!(requests, 91754);
        assert!((seconds - 10.09).abs() < 1e-9);
        // Interrupted (SIGINT) long runs report the time they ran, in minutes past 60 s.
        let interrupted = CLEAN.replace("91754 requests in 10.09s", "120345 requests in 1.02m");
        let (requests, seconds) = totals(&interrupted).unwrap();
        assert_eq!(requests, 120345);
        assert!((seconds - 61.2).abs() < 1e-9);
        assert!(totals("Requests/sec: 5\n").is_err());
    }

    #[test]
    fn output_without_latency_distribution_is_an_error() {
        assert!(parse("Requests/sec: 5\n").is_err());
    }
}
