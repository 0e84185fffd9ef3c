//! Zero-downtime releases on Compose, proven under load: a steady client (keep-alive requests and
//! a new connection per request, together over 100 requests per second) runs through the
//! proxy's published port across an upgrade, a rollback and a failed release, and every request
//! must succeed: no connection error, no non-2xx answer. The releases run several app containers
//! each (`--replicas`), and change the count on the way: all of a release's containers must be up
//! before any old one goes, and a rollback runs as many as the release it returns to.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{BROKEN, TestEnv, V1, V2};

/// Requests per second each of the three clients aims at (two keep-alive, one opening a connection
/// per request); together 180, so that even while a failed release slows a few requests down the
/// total stays above [`MIN_TOTAL_RATE`].
const RATE_PER_CLIENT: u32 = 60;
/// The lowest total rate a phase must have achieved to count as "under load".
const MIN_TOTAL_RATE: f64 = 100.0;

/// What the clients saw since the last `take`.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// The first failures, for the assertion message.
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn success(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn failure(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < 10 {
            examples.push(what);
        }
    }

    /// (successes, failures, examples) since the last call.
    fn take(&self) -> (u64, u64, Vec<String>) {
        (
            self.ok.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
            std::mem::take(&mut *self.examples.lock().unwrap()),
        )
    }
}

/// The steady client: two threads against `port`, until dropped.
struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    since: Instant,
}

impl Load {
    fn start(port: u16) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pace = Duration::from_secs(1) / RATE_PER_CLIENT;
        let keep_alive = |path: &'static str| {
            let (tally, stop) = (tally.clone(), stop.clone());
            thread::spawn(move || {
                // One agent per client: its connection is reused from request to request.
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                let url = format!("http://127.0.0.1:{port}{path}");
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match agent.get(&url).call() {
                        Ok(mut response) if response.status().is_success() => {
                            let _ = response.body_mut().read_to_string();
                            tally.success();
                        }
                        Ok(response) => {
                            tally.failure(format!("keep-alive {path}: {}", response.status()))
                        }
                        Err(e) => tally.failure(format!("keep-alive {path}: {e}")),
                    }
                    thread::sleep(pace.saturating_sub(started.elapsed()));
                }
            })
        };
        let new_connections = {
            let (tally, stop) = (tally.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match one_connection(port) {
                        Ok(status) if (200..300).contains(&status) => tally.success(),
                        Ok(status) => tally.failure(format!("new connection: {status}")),
                        Err(e) => tally.failure(format!("new connection: {e}")),
                    }
                    thread::sleep(pace.saturating_sub(started.elapsed()));
                }
            })
        };
        let threads = vec![
            keep_alive("/api/tasks?limit=1"),
            keep_alive("/version"),
            new_connections,
        ];
        Load {
            tally,
            stop,
            threads,
            since: Instant::now(),
        }
    }

    /// The tally of the phase that ends now: (requests, failures, examples, requests per second).
    fn phase(&mut self) -> (u64, u64, Vec<String>, f64) {
        let (ok, failed, examples) = self.tally.take();
        let seconds = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        let total = ok + failed;
        (total, failed, examples, total as f64 / seconds)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One request on a connection of its own (`Connection: close`); the answer's status code.
fn one_connection(port: u16) -> Result<u16, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", answer.lines().next()))
}

/// Runs a deployer command under load and asserts no request failed during it.
fn under_load(env: &TestEnv, load: &mut Load, what: &str, args: &[&str], expect_code: i32) {
    load.phase();
    let run = env.deployer(args);
    // A little more load after the command returns: the old release's drain is over by now.
    thread::sleep(Duration::from_secs(1));
    let (requests, failures, examples, rate) = load.phase();
    eprintln!("{what}: {requests} requests at {rate:.0}/s, {failures} failed");
    assert_eq!(run.code, expect_code, "{what}:\n{}", run.text());
    assert_eq!(
        failures, 0,
        "{what}: {failures} of {requests} requests failed, e.g. {examples:#?}"
    );
    assert!(
        rate >= MIN_TOTAL_RATE,
        "{what}: the client reached only {rate:.0} requests/s"
    );
}

#[test]
fn upgrade_rollback_and_a_failed_release_lose_no_request() {
    let mut env = TestEnv::new("zero");
    env.tag(V1);
    env.tag(V2);
    env.build_broken(BROKEN);
    let deploy = |version: &'static str, replicas: &'static str| {
        [
            "deploy",
            "--target",
            "compose",
            "--version",
            version,
            "--replicas",
            replicas,
            "--yes",
            "--timeout",
            "180s",
        ]
    };
    let first = env.deployer(&deploy(V1, "2"));
    assert_eq!(first.code, 0, "deploying V1:\n{}", first.text());
    // db, proxy and the release's app containers.
    assert_eq!(env.containers().len(), 2 + 2, "V1 runs two app containers");
    let mut load = Load::start(env.port);
    thread::sleep(Duration::from_secs(1));

    // Two old containers, three new: all three are up before either old one drains.
    under_load(
        &env,
        &mut load,
        "upgrade to V2 (3 replicas)",
        &deploy(V2, "3"),
        0,
    );
    let status = env.status();
    assert_eq!(status["version"], V2);
    assert_eq!(status["last_release"]["replicas"], 3, "{status}");
    assert_eq!(env.containers().len(), 2 + 3, "the old containers are gone");

    under_load(
        &env,
        &mut load,
        "rollback to V1",
        &["rollback", "--timeout", "120s"],
        0,
    );
    let status = env.status();
    assert_eq!(status["version"], V1);
    assert_eq!(
        status["last_release"]["replicas"], 2,
        "the rollback runs V1's recorded count: {status}"
    );
    assert_eq!(env.containers().len(), 2 + 2);

    under_load(
        &env,
        &mut load,
        "failed release (2 replicas)",
        &deploy(BROKEN, "2"),
        4,
    );
    let status = env.status();
    assert_eq!(status["version"], V1, "V1 kept serving: {status}");
    assert_eq!(status["health"], "healthy", "{status}");
    // db, proxy and V1's two app containers: the failed release's are gone.
    assert_eq!(
        env.containers().len(),
        2 + 2,
        "the failed release left containers behind"
    );
}

#[test]
fn a_replica_count_the_proxy_cannot_hold_is_refused_before_anything_changes() {
    let env = TestEnv::new("replicas");
    let run = env.deployer(&[
        "deploy",
        "--target",
        "compose",
        "--version",
        V1,
        "--replicas",
        "9",
        "--yes",
    ]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.text().contains("at most 8 replicas"), "{}", run.text());
    assert!(env.containers().is_empty(), "nothing was started");
}
