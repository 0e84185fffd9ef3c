//! The service under load (wrk), next to the database's own ceiling (sysbench point select).

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use percent_encoding::percent_decode_str;
use xshell::{Shell, cmd};

use crate::{testdb, util};

const CONNECTIONS: &str = "64";
const DURATION: &str = "10s";
const ROWS: u32 = 10_000;
const BENCH_DB: &str = "bench_challenge";

/// The server to measure against, from the URL the tests use.
struct Server {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl Server {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).with_context(|| format!("not a mysql:// URL: {raw}"))?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Ok(Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(3306),
            user: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        })
    }

    /// Runs SQL with the mariadb client; the password goes through the environment, not argv.
    fn sql(&self, sh: &Shell, statements: &str) -> anyhow::Result<()> {
        let (host, port, user) = (&self.host, self.port.to_string(), &self.user);
        let _pwd = sh.push_env("MYSQL_PWD", &self.password);
        cmd!(
            sh,
            "mariadb --protocol=TCP -h {host} -P {port} -u {user} -e {statements}"
        )
        .quiet()
        .run()?;
        Ok(())
    }
}

struct WrkResult {
    name: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

pub fn measure(sh: &Shell) -> anyhow::Result<String> {
    for (program, package) in [
        ("wrk", "wrk"),
        ("sysbench", "sysbench"),
        ("mariadb", "mariadb-client"),
    ] {
        util::require_program(
            program,
            &format!("install it with `apt-get install {package}`"),
        )?;
    }
    let db = testdb::provide(sh)?;
    let server = Server::parse(db.url())?;
    server.sql(
        sh,
        &format!(
            "DROP DATABASE IF EXISTS {BENCH_DB}; CREATE DATABASE {BENCH_DB}; \
             DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest;"
        ),
    )?;

    util::step("building the release binary");
    cmd!(sh, "cargo build --release -p challenge").run()?;
    let binary = util::project_root().join("target/release/challenge");

    util::step(&format!("seeding {ROWS} tasks"));
    let env = |command: &mut Command| {
        command
            .env("DB_HOST", &server.host)
            .env("DB_PORT", server.port.to_string())
            .env("DB_USERNAME", &server.user)
            .env("DB_PASSWORD", &server.password)
            .env("DB_DATABASE", BENCH_DB)
            .env("SEED_COUNT", ROWS.to_string());
    };
    let mut migrate = Command::new(&binary);
    migrate.args(["migrate", "--seed"]).stdout(Stdio::null());
    env(&mut migrate);
    anyhow::ensure!(
        migrate.status()?.success(),
        "seeding the benchmark database failed"
    );

    let port = util::free_port()?;
    let mut serve = Command::new(&binary);
    serve
        .arg("serve")
        .env("PORT", port.to_string())
        .stdout(Stdio::null());
    env(&mut serve);
    let child = ServerProcess(serve.spawn().context("starting challenge")?);
    wait_ready(&binary, port)?;

    let scripts = sh.create_temp_dir()?;
    let script = |name: &str, lua: &str| -> anyhow::Result<String> {
        let path = scripts.path().join(name);
        std::fs::write(&path, lua)?;
        Ok(path.display().to_string())
    };
    let get_one = script(
        "get_one.lua",
        &format!(
            "math.randomseed(42)\nrequest = function()\n  return wrk.format('GET', '/api/tasks/' .. math.random(1, {ROWS}))\nend\n"
        ),
    )?;
    let get_page = script(
        "get_page.lua",
        &format!(
            "math.randomseed(7)\nrequest = function()\n  return wrk.format('GET', '/api/tasks?limit=20&after=' .. math.random(0, {}))\nend\n",
            ROWS - 20
        ),
    )?;
    let post = script(
        "post.lua",
        "wrk.method = 'POST'\nwrk.body = '{\"title\":\"benchmark task\",\"description\":\"created by wrk\"}'\n\
         wrk.headers['Content-Type'] = 'application/json'\n",
    )?;
    let base = format!("http://127.0.0.1:{port}");

    util::step("warming up");
    cmd!(sh, "wrk -t2 -c{CONNECTIONS} -d2s -s {get_one} {base}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let mut results = Vec::new();
    let tasks_url = format!("{base}/api/tasks");
    for (name, script) in [
        ("GET one random task", &get_one),
        ("GET a page of 20", &get_page),
        ("POST a task", &post),
    ] {
        util::step(&format!("wrk: {name}"));
        let out = cmd!(
            sh,
            "wrk -t2 -c{CONNECTIONS} -d{DURATION} --latency -s {script} {tasks_url}"
        )
        .read()?;
        eprintln!("{out}");
        results.push(parse_wrk(name, &out)?);
    }
    let peak_rss_kib = peak_rss_kib(child.0.id())?;
    drop(child);

    util::step("sysbench oltp_point_select (the database ceiling)");
    let sysbench = sysbench(sh, &server)?;

    let mut md = String::new();
    let _ = writeln!(md, "## Service throughput and latency\n");
    let _ = writeln!(md, "Machine: {}.", super::machine(sh));
    let _ = writeln!(
        md,
        "Database: the server of `TEST_DATABASE_URL` ({}:{}), {ROWS} seeded tasks. The service, wrk \
         and the database share the same CPUs. Service built with `cargo build --release`, default \
         configuration (JSON request logs at `info`, to /dev/null).\n",
        server.host, server.port
    );
    let _ = writeln!(
        md,
        "Command: `cargo xtask bench --only service`, i.e. `wrk -t2 -c{CONNECTIONS} -d{DURATION} --latency -s <script>` per row.\n"
    );
    let _ = writeln!(md, "| scenario | requests/s | p50 | p99 | errors |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for r in &results {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            r.name, r.rps, r.p50_ms, r.p99_ms, r.errors
        );
    }
    let _ = writeln!(
        md,
        "| sysbench `oltp_point_select`, 64 threads, 10 s, one {ROWS}-row table | {:.0} queries/s | | {:.2} ms | {} |",
        sysbench.qps, sysbench.p99_ms, sysbench.errors
    );
    let get_one = &results[0];
    let ratio = get_one.rps / sysbench.qps * 100.0;
    let _ = writeln!(
        md,
        "\nPeak RSS of the service (VmHWM): {:.1} MiB.\n",
        peak_rss_kib as f64 / 1024.0
    );
    let _ = writeln!(md, "| goal | target | measured | met |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    let goal = |ok: bool| if ok { "yes" } else { "no" };
    let _ = writeln!(
        md,
        "| GET one task vs point-select ceiling | >= 50 % | {ratio:.0} % | {} |",
        goal(ratio >= 50.0)
    );
    let _ = writeln!(
        md,
        "| p99 at 64 connections (GET one) | <= 10 ms | {:.2} ms | {} |",
        get_one.p99_ms,
        goal(get_one.p99_ms <= 10.0)
    );
    let _ = writeln!(
        md,
        "| peak RSS | <= 40 MiB | {:.1} MiB | {} |",
        peak_rss_kib as f64 / 1024.0,
        goal(peak_rss_kib <= 40 * 1024)
    );
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let _ = writeln!(md, "| errors | 0 | {errors} | {} |", goal(errors == 0));
    Ok(md)
}

/// Kills the server when the benchmark ends, also on error.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn wait_ready(binary: &std::path::Path, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let ok = Command::new(binary)
            .arg("healthcheck")
            .env("PORT", port.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the service did not become ready within 30 s")
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    super::line_value(&status, "VmHWM:")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM missing from /proc/<pid>/status")
}

fn parse_wrk(name: &'static str, out: &str) -> anyhow::Result<WrkResult> {
    let field = |prefix: &str| super::line_value(out, prefix);
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("wrk: no Requests/sec")?;
    let p50_ms = field("50%")
        .and_then(latency_ms)
        .context("wrk: no p50 (was --latency given?)")?;
    let p99_ms = field("99%").and_then(latency_ms).context("wrk: no p99")?;
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket: u64 = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(WrkResult {
        name,
        rps,
        p50_ms,
        p99_ms,
        errors: non_2xx + socket,
    })
}

/// wrk prints latencies as `812.00us`, `1.23ms` or `1.05s`.
fn latency_ms(value: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

struct Sysbench {
    qps: f64,
    p99_ms: f64,
    errors: u64,
}

fn sysbench(sh: &Shell, server: &Server) -> anyhow::Result<Sysbench> {
    let (host, port, user, password) = (
        &server.host,
        server.port.to_string(),
        &server.user,
        &server.password,
    );
    let common = &[
        "oltp_point_select".to_owned(),
        "--db-driver=mysql".to_owned(),
        format!("--mysql-host={host}"),
        format!("--mysql-port={port}"),
        format!("--mysql-user={user}"),
        format!("--mysql-password={password}"),
        "--mysql-db=sbtest".to_owned(),
        "--tables=1".to_owned(),
        format!("--table-size={ROWS}"),
    ];
    cmd!(sh, "sysbench {common...} prepare")
        .quiet()
        .ignore_stdout()
        .run()?;
    let out = cmd!(
        sh,
        "sysbench {common...} --threads=64 --time=10 --percentile=99 run"
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
    let after = |prefix: &str| super::line_value(&out, prefix);
    // "queries: 123456 (12345.67 per sec.)"
    let qps = after("queries:")
        .and_then(|v| v.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .context("sysbench: no queries per second")?;
    let p99_ms = after("99th percentile:")
        .and_then(|v| v.parse().ok())
        .context("sysbench: no 99th percentile")?;
    let errors = after("errors:")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(Sysbench {
        qps,
        p99_ms,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8000
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.00ms  30.00ms   90.00%
  Latency Distribution
     50%  812.00us
     75%    2.00ms
     90%    3.00ms
     99%    1.05s
  120000 requests in 10.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  12000.50
Transfer/sec:      3.00MB
";

    #[test]
    fn database_url_credentials_are_percent_decoded() {
        let server = Server::parse("mysql://app%40x:p+w%2Fd@db.local:3307").unwrap();
        assert_eq!(
            (server.user.as_str(), server.password.as_str()),
            ("app@x", "p+w/d")
        );
        assert_eq!((server.host.as_str(), server.port), ("db.local", 3307));
    }

    #[test]
    fn parses_wrk_output() {
        let r = parse_wrk("x", WRK).unwrap();
        assert!((r.rps - 12000.5).abs() < 1e-9);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 1050.0).abs() < 1e-9);
        assert_eq!(r.errors, 9);
    }

    #[test]
    fn wrk_output_without_latency_is_an_error() {
        assert!(parse_wrk("x", "Requests/sec: 5\n").is_err());
    }
}
