//! The monitoring assets against a live service: a real Prometheus (Debian's `prometheus` binary on the
//! host) scrapes two real `challenge` processes every second with deploy/monitoring's rules loaded,
//! while a known load runs (2xx, 4xx, 5xx from an instance given a wrong database password, requests
//! made slow by a client sending its body slowly). Then, through Prometheus' HTTP API: the raw counters
//! equal what was sent, `increase()` agrees within extrapolation, every recording rule and every
//! dashboard query has data, and the SLO ratios match the load. A second test proves the exemplars:
//! a Prometheus with `--enable-feature=exemplar-storage` scraping (in OpenMetrics, as it asks by default)
//! a service that exports its spans stores the trace ids of the requests sent on the latency buckets.
//!
//! Needs no Docker: `TEST_DATABASE_URL` (a server where the user may create databases), the `prometheus`
//! and `mysql` (or `mariadb`) programs; it builds the debug `challenge` binary itself. Ignored by a plain
//! `cargo test` (the containers suite runs this crate without those); the monitoring suite of
//! `cargo xtask test` runs it, alone: `cargo test -p e2e --test monitoring_live -- --ignored`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{free_port, http, project_root, unique_name, wait_for_200};
use serde_json::{Value, json};

/// The label values the dashboards' `$job` and `$env` variables take here.
const JOB: &str = "challenge";
const ENV: &str = "live-test";
const PROBES: &str = "/healthz|/readyz|/metrics";
/// The latency SLO's threshold (the histogram bucket the rules read).
const SLOW: Duration = Duration::from_millis(250);
/// How long the slow requests' clients pause in the middle of their body.
const BODY_PAUSE: Duration = Duration::from_millis(400);

/// (instance port, method, route template, status).
type Key = (u16, &'static str, &'static str, u16);

#[test]
#[ignore = "needs TEST_DATABASE_URL and `prometheus`: run by the monitoring suite of `cargo xtask test`, \
            or with `-- --ignored`"]
fn prometheus_scraping_the_service_gives_every_rule_and_dashboard_panel_the_numbers_sent() {
    let started = Instant::now();
    let prometheus_bin = require_program(
        "prometheus",
        "install Debian's package: apt-get install --no-install-recommends prometheus",
    );
    let server = DatabaseServer::from_env();
    let database = server.create_database();
    let binary = challenge_binary();

    let good = Service::start(&binary, &server, &database.name, &server.password);
    let broken = Service::start(&binary, &server, &database.name, "not-the-password");
    wait_for_200(&good.url("/readyz"), Duration::from_secs(60));
    wait_for_200(&broken.url("/healthz"), Duration::from_secs(30));
    let prometheus = Prometheus::start(&prometheus_bin, &[good.port, broken.port]);
    prometheus.wait_for_targets_up(2);

    let mut load = Load::new(&good, &broken);
    // Warm-up: one request of each kind creates its series. rate() and increase() only see what a
    // series gains after its first sample, so the counted load starts once that sample is scraped.
    load.round(1, 1, 1, 1, 1, 0);
    std::thread::sleep(Duration::from_millis(2500));
    let phase_start = Instant::now();
    let phase = load.round(20, 30, 10, 5, 8, 3);

    // 1. The raw counters, exactly: every (instance, method, route, status) series of a non-probe
    // route holds the number of requests sent, and nothing else was counted.
    let sent = load.sent.clone();
    let counted = prometheus.wait_for(
        "the raw request counters to reach the numbers sent",
        &format!(
            "http_server_request_duration_seconds_count{{job=\"{JOB}\", http_route!~\"{PROBES}\"}}"
        ),
        |result| counters_by_key(result, &load.ports) == sent,
    );
    assert_eq!(counters_by_key(&counted, &load.ports), sent);

    // 2. Slow requests: the le="0.25" bucket misses the slow ones and only those a loaded machine
    // may have made slow (answered in more than 0.25 s by the client's clock).
    let total: u64 = sent.values().sum();
    let fast_bucket = prometheus.scalar(&format!(
        "sum(http_server_request_duration_seconds_bucket{{job=\"{JOB}\", http_route!~\"{PROBES}\", le=\"0.25\"}})"
    ));
    let slow_counted = total - fast_bucket as u64;
    assert!(
        (load.slow..=load.slow + load.ambiguous).contains(&slow_counted),
        "{slow_counted} requests counted slower than 0.25 s; sent {} slow ones and {} that took more than \
         0.25 s by the client's clock",
        load.slow,
        load.ambiguous
    );

    // 3. Let the rules evaluate on the final samples, then increase() per series over the load phase.
    std::thread::sleep(Duration::from_millis(2500));
    let window = phase_start.elapsed().as_secs() + 2;
    let increases = prometheus.query(&format!(
        "sum by (instance, http_request_method, http_route, http_response_status_code) \
         (increase(http_server_request_duration_seconds_count{{job=\"{JOB}\", http_route!~\"{PROBES}\"}}[{window}s]))"
    ));
    let increases = counters_by_key(&increases, &load.ports);
    for (key, want) in &phase {
        let got = increases.get(key).copied().unwrap_or(0);
        // Extrapolation to the window's ends stretches an increase by a few intervals' worth.
        let tolerance = (*want as f64 * 0.3).max(1.5);
        assert!(
            (got as f64 - *want as f64).abs() <= tolerance,
            "increase() of {key:?} over {window}s is {got}, sent {want}"
        );
    }

    // 4. Every recording rule has data, and the SLO ratios match the load of the counted phase.
    let rules = recorded_names();
    assert!(
        rules.len() >= 13,
        "only {} recording rules found: {rules:?}",
        rules.len()
    );
    for rule in &rules {
        let result = prometheus.query(&format!("{rule}{{job=\"{JOB}\", env=\"{ENV}\"}}"));
        assert!(
            !result.is_empty(),
            "recording rule {rule} has no data for job {JOB}"
        );
    }
    let phase_total: u64 = phase.values().sum();
    let phase_5xx: u64 = phase
        .iter()
        .filter(|(k, _)| k.3 >= 500)
        .map(|(_, n)| n)
        .sum();
    let errors = prometheus.scalar(&format!(
        "job:slo_availability_errors:ratio_rate5m{{job=\"{JOB}\", env=\"{ENV}\"}}"
    ));
    let expected = phase_5xx as f64 / phase_total as f64;
    assert!(
        (errors - expected).abs() <= expected * 0.2,
        "availability error ratio {errors}, sent {phase_5xx} 5xx of {phase_total}"
    );
    let slow_ratio = prometheus.scalar(&format!(
        "job:slo_latency_slow:ratio_rate5m{{job=\"{JOB}\", env=\"{ENV}\"}}"
    ));
    let (low, high) = (
        load.slow as f64 / phase_total as f64,
        (load.slow + load.ambiguous) as f64 / phase_total as f64,
    );
    assert!(
        slow_ratio >= low * 0.8 && slow_ratio <= high * 1.2,
        "slow ratio {slow_ratio}, sent {} slow of {phase_total} ({} ambiguous)",
        load.slow,
        load.ambiguous
    );

    // 5. The dashboards' variables resolve, and every panel query (variables substituted) has data.
    assert!(
        prometheus
            .label_values("job", "challenge_build_info")
            .contains(&JOB.to_owned())
    );
    assert!(
        prometheus
            .label_values("env", "challenge_build_info")
            .contains(&ENV.to_owned())
    );
    let panels = dashboard_queries();
    assert!(
        panels.len() >= 20,
        "only {} panel queries found",
        panels.len()
    );
    let mut empty = Vec::new();
    for (title, expr) in &panels {
        let expr = expr.replace("$job", JOB).replace("$env", ENV);
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n  {}",
        empty.join("\n  ")
    );
    // Spot checks of what the panels show against what is known.
    let versions = prometheus.scalar(&format!(
        "sum(count by (version, git_sha) (challenge_build_info{{job=\"{JOB}\", env=\"{ENV}\"}}))"
    ));
    assert_eq!(versions, 2.0, "two instances run one version");
    let ready = prometheus.scalar(&format!(
        "sum(challenge_ready{{job=\"{JOB}\", env=\"{ENV}\"}})"
    ));
    assert_eq!(
        ready, 1.0,
        "the instance with a wrong password is not ready"
    );
    let budget = prometheus.scalar(&format!(
        "1 - ((sum(rate(http_server_request_duration_seconds_count{{job=\"{JOB}\", env=\"{ENV}\", \
         http_route!~\"{PROBES}\", http_response_status_code=~\"5..\"}}[30d])) or vector(0)) / \
         sum(rate(http_server_request_duration_seconds_count{{job=\"{JOB}\", env=\"{ENV}\", \
         http_route!~\"{PROBES}\"}}[30d]))) / 0.001"
    ));
    assert!(
        budget < 0.0,
        "{phase_5xx} 5xx in {phase_total} requests overspend a 0.1 % budget, yet {budget} is left"
    );
    eprintln!(
        "monitoring live test: {} rules and {} panel queries checked in {:.1?}",
        rules.len(),
        panels.len(),
        started.elapsed()
    );
}

#[test]
#[ignore = "needs TEST_DATABASE_URL and `prometheus`: run by the monitoring suite of `cargo xtask test`, \
            or with `-- --ignored`"]
fn prometheus_stores_the_trace_ids_of_requests_as_exemplars_of_the_latency_buckets() {
    let prometheus_bin = require_program(
        "prometheus",
        "install Debian's package: apt-get install --no-install-recommends prometheus",
    );
    let server = DatabaseServer::from_env();
    let database = server.create_database();
    let binary = challenge_binary();
    let receiver = TraceReceiver::start();
    let service = Service::start_with(
        &binary,
        &server,
        &database.name,
        &server.password,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            // Quiet logs, as in the other tests: RUST_LOG filters log lines, never the spans.
            ("RUST_LOG", "warn"),
        ],
    );
    wait_for_200(&service.url("/readyz"), Duration::from_secs(60));
    let prometheus = Prometheus::start_with(
        &prometheus_bin,
        &[service.port],
        &["--enable-feature=exemplar-storage"],
    );
    prometheus.wait_for_targets_up(1);

    // Requests under known traces: each sends a `traceparent`, so its server span (and exemplar)
    // carries the caller's trace id.
    let agent = http();
    let sent: Vec<String> = (1..=5u128)
        .map(|i| format!("{:032x}", 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4700 + i))
        .collect();
    for trace_id in &sent {
        let response = agent
            .get(service.url("/api/tasks"))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .call()
            .expect("GET /api/tasks");
        assert_eq!(response.status().as_u16(), 200, "GET /api/tasks");
        std::thread::sleep(Duration::from_millis(300));
    }

    let exemplars = prometheus.wait_for_exemplars(&format!(
        "http_server_request_duration_seconds_bucket{{job=\"{JOB}\", http_route=\"/api/tasks\"}}"
    ));
    for (le, exemplar) in &exemplars {
        let trace_id = exemplar["labels"]["trace_id"].as_str().unwrap_or_default();
        assert!(
            sent.iter().any(|id| id == trace_id),
            "exemplar {exemplar} of bucket le={le} names a trace none of the requests sent: {sent:?}"
        );
        let value: f64 = exemplar["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        let bound: f64 = le.parse().unwrap_or(f64::NAN);
        assert!(
            value <= bound,
            "exemplar {exemplar} lies above its bucket's bound {le}"
        );
        assert!(
            receiver.received(trace_id),
            "trace {trace_id} of an exemplar never reached the OTLP receiver"
        );
    }

    // The OpenMetrics scrape stays healthy.
    prometheus.wait_for_targets_up(1);
    let targets = prometheus.get("/api/v1/targets", &[("state", "active")]);
    for target in targets["activeTargets"].as_array().into_iter().flatten() {
        assert_eq!(target["health"], "up", "{target}");
        assert_eq!(target["lastError"], "", "{target}");
    }
}

/// An OTLP/HTTP endpoint that answers 200 to every export and keeps the (protobuf) bodies, so the
/// test can tell which trace ids reached it. HTTP/1.1 with keep-alive, as the exporter speaks it.
struct TraceReceiver {
    endpoint: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TraceReceiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the OTLP receiver");
        let address = listener.local_addr().expect("the receiver's address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || answer_exports(stream, &kept));
            }
        });
        Self {
            endpoint: format!("http://{address}"),
            bodies,
        }
    }

    /// Whether an export held `trace_id` (32 hex digits; protobuf carries its 16 bytes as they are).
    fn received(&self, trace_id: &str) -> bool {
        let bytes: Vec<u8> = (0..trace_id.len() / 2)
            .filter_map(|i| u8::from_str_radix(trace_id.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        assert_eq!(bytes.len(), 16, "{trace_id:?} is not 32 hex digits");
        let bodies = self.bodies.lock().expect("the receiver's bodies");
        bodies
            .iter()
            .any(|body| body.windows(16).any(|window| window == bytes.as_slice()))
    }
}

/// Reads requests (head, then `content-length` bytes of body) off one connection until it closes.
fn answer_exports(stream: TcpStream, kept: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        kept.lock().expect("the receiver's bodies").push(body);
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

/// The full path of `program` on PATH; panics with the install hint when it is missing.
fn require_program(program: &str, hint: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("`{program}` is not installed or not on PATH: {hint}"))
}

/// The server of `TEST_DATABASE_URL` (`mysql://user:password@host:port`).
struct DatabaseServer {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl DatabaseServer {
    fn from_env() -> Self {
        let raw = std::env::var("TEST_DATABASE_URL").unwrap_or_default();
        let parsed = raw.strip_prefix("mysql://").and_then(|rest| {
            let (credentials, address) = rest.trim_end_matches('/').rsplit_once('@')?;
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            let (host, port) = address.split_once(':').unwrap_or((address, "3306"));
            Some(Self {
                host: host.to_owned(),
                port: port.parse().ok()?,
                user: user.to_owned(),
                password: password.to_owned(),
            })
        });
        parsed.unwrap_or_else(|| {
            panic!(
                "TEST_DATABASE_URL is not set or not mysql://user:password@host:port (got {raw:?}): run \
                 through `cargo xtask test --only monitoring`, or export it for a server where the user \
                 may create databases"
            )
        })
    }

    /// Runs SQL with the command-line client (`mysql`, else `mariadb`).
    fn sql(&self, statement: &str) {
        let client = ["mysql", "mariadb"]
            .into_iter()
            .find(|name| {
                Command::new(name)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("neither `mysql` nor `mariadb` is installed: apt-get install mariadb-client");
        let out = Command::new(client)
            .args([
                "--protocol=tcp",
                &format!("--host={}", self.host),
                &format!("--port={}", self.port),
                &format!("--user={}", self.user),
                "-e",
                statement,
            ])
            .env("MYSQL_PWD", &self.password)
            .output()
            .expect("running the database client");
        assert!(
            out.status.success(),
            "`{statement}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn create_database(&self) -> Database<'_> {
        let name = unique_name("monitoring").replace('-', "_");
        self.sql(&format!("CREATE DATABASE `{name}`"));
        Database { server: self, name }
    }
}

/// A database of its own, dropped with the guard.
struct Database<'a> {
    server: &'a DatabaseServer,
    name: String,
}

impl Drop for Database<'_> {
    fn drop(&mut self) {
        self.server
            .sql(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

/// The debug `challenge` binary of the working tree: `CHALLENGE_BIN` when set, else built now (a no-op
/// when it is current; cargo releases its lock before running tests, so this does not wait on itself).
fn challenge_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHALLENGE_BIN") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-p", "challenge", "--bin", "challenge"])
        .current_dir(project_root())
        .status()
        .expect("running cargo build -p challenge");
    assert!(status.success(), "cargo build -p challenge failed");
    // This test runs from <target>/debug/deps/; the binary sits in <target>/debug/.
    let exe = std::env::current_exe().expect("the test binary's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/debug/deps")
        .join("challenge");
    assert!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}

/// A `challenge serve --migrate` process on a free port, killed when dropped.
struct Service {
    port: u16,
    child: Child,
}

impl Service {
    fn start(binary: &Path, server: &DatabaseServer, database: &str, password: &str) -> Self {
        Self::start_with(binary, server, database, password, &[])
    }

    /// Like [`Service::start`], with `env` added to the process' environment.
    fn start_with(
        binary: &Path,
        server: &DatabaseServer,
        database: &str,
        password: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let child = Command::new(binary)
            .args(["serve", "--migrate"])
            .env("PORT", port.to_string())
            .env("DB_HOST", &server.host)
            .env("DB_PORT", server.port.to_string())
            .env("DB_DATABASE", database)
            .env("DB_USERNAME", &server.user)
            .env("DB_PASSWORD", password)
            .env_remove("DB_PASSWORD_FILE")
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "text")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        Self { port, child }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends requests of known kinds and keeps count per series, as the service should.
struct Load<'a> {
    good: &'a Service,
    broken: &'a Service,
    ports: [u16; 2],
    agent: ureq::Agent,
    sent: BTreeMap<Key, u64>,
    /// Requests made slow on purpose (their body arrives in two parts, `BODY_PAUSE` apart).
    slow: u64,
    /// Other requests the client saw take longer than 0.25 s (the server may have too).
    ambiguous: u64,
}

impl<'a> Load<'a> {
    fn new(good: &'a Service, broken: &'a Service) -> Self {
        Self {
            good,
            broken,
            ports: [good.port, broken.port],
            agent: http(),
            sent: BTreeMap::new(),
            slow: 0,
            ambiguous: 0,
        }
    }

    /// One round: `created` POSTs (201), `read` GETs of one task (200), `missing` GETs of an unknown
    /// id (404), `invalid` POSTs with a blank title (422), `unavailable` GET lists from the broken
    /// instance (503), `slow` POSTs whose body arrives slowly (201). Returns this round's counts.
    fn round(
        &mut self,
        created: u32,
        read: u32,
        missing: u32,
        invalid: u32,
        unavailable: u32,
        slow: u32,
    ) -> BTreeMap<Key, u64> {
        let before = self.sent.clone();
        let mut id = 0;
        for i in 0..created {
            let (status, body) = self.call(
                self.good,
                "POST",
                "/api/tasks",
                Some(json!({"title": format!("task {i}")})),
            );
            assert_eq!(status, 201, "POST /api/tasks");
            id = body["id"].as_u64().expect("numeric id");
        }
        for _ in 0..read {
            let (status, _) = self.call(self.good, "GET", &format!("/api/tasks/{id}"), None);
            assert_eq!(status, 200);
        }
        for _ in 0..missing {
            let (status, _) = self.call(self.good, "GET", "/api/tasks/999999999", None);
            assert_eq!(status, 404);
        }
        for _ in 0..invalid {
            let (status, _) =
                self.call(self.good, "POST", "/api/tasks", Some(json!({"title": " "})));
            assert_eq!(status, 422);
        }
        for _ in 0..unavailable {
            let (status, _) = self.call(self.broken, "GET", "/api/tasks", None);
            assert_eq!(
                status, 503,
                "the instance with a wrong password answers 503"
            );
        }
        for _ in 0..slow {
            self.slow_post();
        }
        self.sent
            .iter()
            .map(|(key, n)| (*key, n - before.get(key).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn call(
        &mut self,
        service: &Service,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = service.url(path);
        let started = Instant::now();
        let result = match (method, body) {
            ("POST", Some(body)) => self.agent.post(&url).send_json(body),
            ("GET", None) => self.agent.get(&url).call(),
            _ => unreachable!("only GET and POST are sent"),
        };
        let mut response = result.unwrap_or_else(|err| panic!("{method} {url}: {err}"));
        if started.elapsed() >= SLOW {
            self.ambiguous += 1;
        }
        let status = response.status().as_u16();
        let body = response.body_mut().read_json().unwrap_or(Value::Null);
        let route = if path.starts_with("/api/tasks/") {
            "/api/tasks/{id}"
        } else {
            "/api/tasks"
        };
        *self
            .sent
            .entry((service.port, method, route, status))
            .or_default() += 1;
        (status, body)
    }

    /// A POST whose head and first half of the body arrive at once, the rest `BODY_PAUSE` later: the
    /// service reads the body inside the request it times, so it counts at least that long.
    fn slow_post(&mut self) {
        let body = br#"{"title": "a slow client's task"}"#;
        let (first, rest) = body.split_at(body.len() / 2);
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.good.port)).expect("connect for a slow POST");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let head = format!(
            "POST /api/tasks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send head");
        stream.write_all(first).expect("send half the body");
        stream.flush().expect("flush");
        std::thread::sleep(BODY_PAUSE);
        stream.write_all(rest).expect("send the rest");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        assert!(
            response.starts_with("HTTP/1.1 201"),
            "slow POST answered: {response}"
        );
        self.slow += 1;
        *self
            .sent
            .entry((self.good.port, "POST", "/api/tasks", 201))
            .or_default() += 1;
    }
}

/// Sample values of an instant vector keyed like [`Load::sent`] (series with other labels, or a
/// value of 0, left out).
fn counters_by_key(result: &[Value], ports: &[u16; 2]) -> BTreeMap<Key, u64> {
    let mut counts = BTreeMap::new();
    for series in result {
        let metric = &series["metric"];
        let label = |name: &str| metric[name].as_str().unwrap_or_default().to_owned();
        let port: Option<u16> = label("instance")
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok());
        let value = sample_value(series);
        let (Some(port), Some(method), Some(route)) = (
            port.filter(|p| ports.contains(p)),
            ["GET", "POST"]
                .into_iter()
                .find(|m| *m == label("http_request_method")),
            ["/api/tasks", "/api/tasks/{id}"]
                .into_iter()
                .find(|r| *r == label("http_route")),
        ) else {
            counts.insert((0, "?", "?", 0), value.round() as u64);
            continue;
        };
        let status = label("http_response_status_code").parse().unwrap_or(0);
        let value = value.round() as u64;
        if value > 0 {
            counts.insert((port, method, route, status), value);
        }
    }
    counts
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The `record:` names of deploy/monitoring/prometheus/rules/recording.yml.
fn recorded_names() -> Vec<String> {
    let text = std::fs::read_to_string(rules_dir().join("recording.yml"))
        .expect("reading the recording rules");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("- record:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

fn rules_dir() -> PathBuf {
    project_root().join("deploy/monitoring/prometheus/rules")
}

/// (panel title, expression) of every Prometheus query of every dashboard under
/// deploy/monitoring/grafana. Queries of other data sources (the Loki logs panel: LogQL, which this
/// Prometheus cannot run) are left out; a query names its data source, else its panel does.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let source = if target["datasource"].is_object() {
                    &target["datasource"]
                } else {
                    &panel["datasource"]
                };
                if source["type"] != "prometheus" {
                    continue;
                }
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.to_owned(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let dir = project_root().join("deploy/monitoring/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("listing the dashboards")
        .map(|entry| entry.expect("dashboard entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("reading a dashboard");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", file.display()));
        walk(&dashboard["panels"], &mut out);
    }
    out
}

/// A Prometheus process on a free loopback port with its own data directory, killed when dropped.
struct Prometheus {
    url: String,
    agent: ureq::Agent,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, ports: &[u16]) -> Self {
        Self::start_with(binary, ports, &[])
    }

    /// Like [`Prometheus::start`], with `flags` added to its command line.
    fn start_with(binary: &Path, ports: &[u16], flags: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("monitoring-live")
            .tempdir()
            .expect("temp dir");
        let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let rules = rules_dir();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n        \
             labels:\n          env: {ENV}\n",
            rules.join("recording.yml").display(),
            rules.join("alerts.yml").display(),
            targets.join(", ")
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("writing prometheus.yml");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let prometheus = Self {
            url: format!("http://127.0.0.1:{port}"),
            agent: http(),
            child,
            _dir: dir,
        };
        wait_for_200(&prometheus.api("/-/ready"), Duration::from_secs(30));
        prometheus.assert_rules_loaded();
        prometheus
    }

    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut request = self.agent.get(self.api(path));
        for (name, value) in params {
            request = request.query(*name, *value);
        }
        let mut response = request
            .call()
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        let body: Value = response.body_mut().read_json().expect("Prometheus JSON");
        assert_eq!(body["status"], "success", "GET {path} {params:?}: {body}");
        body["data"].clone()
    }

    /// The instant vector `expr` evaluates to now.
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.get("/api/v1/query", &[("query", expr)]);
        match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![json!({"metric": {}, "value": data["result"]})],
            other => panic!("{expr} gives a {other:?}, not an instant vector"),
        }
    }

    /// The single value `expr` evaluates to; panics when it has none or several.
    fn scalar(&self, expr: &str) -> f64 {
        let result = self.query(expr);
        assert_eq!(
            result.len(),
            1,
            "{expr} gives {} series: {result:?}",
            result.len()
        );
        sample_value(&result[0])
    }

    fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let data = self.get(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector)],
        );
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// Polls `expr` until `done` accepts its result; panics with the last result after 20 s.
    fn wait_for(&self, what: &str, expr: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let result = self.query(expr);
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {expr} gives:\n{result:#?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// (bucket bound `le`, exemplar) of every exemplar stored for `selector`, once there is one;
    /// panics after 20 s without any.
    fn wait_for_exemplars(&self, selector: &str) -> Vec<(String, Value)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let (start, end) = ((now - 600).to_string(), (now + 600).to_string());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let data = self.get(
                "/api/v1/query_exemplars",
                &[("query", selector), ("start", &start), ("end", &end)],
            );
            let found: Vec<(String, Value)> = data
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|series| {
                    let le = series["seriesLabels"]["le"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let exemplars = series["exemplars"].as_array().cloned().unwrap_or_default();
                    exemplars.into_iter().map(move |e| (le.clone(), e))
                })
                .collect();
            if !found.is_empty() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no exemplar for {selector} within 20 s: {data}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_for_targets_up(&self, count: usize) {
        self.wait_for(
            &format!("{count} `{JOB}` targets up"),
            &format!("up{{job=\"{JOB}\"}} == 1"),
            |result| result.len() == count,
        );
    }

    /// Both rule files loaded, every group evaluating without error.
    fn assert_rules_loaded(&self) {
        let data = self.get("/api/v1/rules", &[]);
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let files: Vec<&str> = groups.iter().filter_map(|g| g["file"].as_str()).collect();
        for file in ["recording.yml", "alerts.yml"] {
            assert!(
                files.iter().any(|f| f.ends_with(file)),
                "Prometheus did not load {file}: {files:?}"
            );
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
