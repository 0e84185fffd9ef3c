//! The reverse proxy of the Compose stack (HAProxy, service `proxy`): what it costs a request, and
//! whether releases through it lose any.
//!
//! One stack, deployed by the deployer binary with its default replica count in a throwaway
//! environment (deploy.rs's, removed afterwards even when a step fails). First the stack against
//! the same binary natively: the `challenge` binary copied out of the deployed image runs on the
//! host against the service bench's database server (TEST_DATABASE_URL), and wrk GETs one task
//! through the published port and from the native process in alternating runs; their ratio is the
//! stack's throughput goal. Then wrk GETs the same URLs through the published port, at HAProxy's
//! container address and at one app container's address (container addresses are reachable from
//! the host on Linux), in alternating rounds. Then wrk keeps a steady load on the published port
//! while `deployer deploy` upgrades V1 -> V2 and `deployer rollback` returns to V1, and counts the
//! requests that failed.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::deploy::{Environment, V1, V2, compose_flavour};
use super::host_cpu;
use super::service::Summary;
use super::service::wrk::{self, WrkResult};
use crate::service::{Output, Service};
use crate::testdb::{self, DbServer, ScratchDatabase};
use crate::util;

/// The stack's GET-one-task throughput through the published port, as a share of the same binary's
/// natively: the goal of issue 20.
const RATIO_GOAL: f64 = 0.5;
/// How long the native binary may take to be ready on its freshly seeded database.
const NATIVE_READY: Duration = Duration::from_secs(60);

/// Rounds of the cost measurement; each runs every scenario on every route once.
const ROUNDS: usize = 3;
const DURATION: &str = "10s";
const WARMUP: &str = "2s";
/// The steady load during releases: a few keep-alive connections, so the two CPUs keep room for
/// the containers' health checks and the proxy's /readyz checks.
const LOAD_THREADS: u32 = 2;
const LOAD_CONNECTIONS: u32 = 8;
/// A request unanswered for this long counts as failed (wrk's socket error "timeout").
const LOAD_TIMEOUT: &str = "2s";
/// Load before each deployer command starts and after it returns.
const MARGIN: Duration = Duration::from_secs(3);
/// How long the steady load runs alone (between its margins), for comparison with the releases.
const STEADY: Duration = Duration::from_secs(8);
const STEADY_ROW: &str = "none: the steady load alone";
/// Upgrade-and-rollback cycles under load.
const CYCLES: usize = 2;
/// What the steady load requests.
const LOAD_PATH: &str = "/api/tasks/1";

/// A wrk run of the cost measurement, the same on every route.
struct Scenario {
    name: &'static str,
    path: &'static str,
    threads: u32,
    connections: u32,
}

/// At the service bench's load (wrk::THREADS, wrk::CONNECTIONS) requests queue, so latency follows
/// throughput; one connection shows what the extra hop adds to a request that does not wait.
const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "GET one task",
        path: "/api/tasks/1",
        threads: wrk::THREADS,
        connections: wrk::CONNECTIONS,
    },
    Scenario {
        name: "GET a page of 20",
        path: "/api/tasks?limit=20",
        threads: wrk::THREADS,
        connections: wrk::CONNECTIONS,
    },
    Scenario {
        name: "GET one task, one connection",
        path: "/api/tasks/1",
        threads: 1,
        connections: 1,
    },
];

/// Where wrk sends the requests of the cost measurement.
struct Route {
    name: String,
    base: String,
}

/// The figures of one route for one scenario.
struct RouteFigures {
    route: String,
    summary: Summary,
    /// Medians over the runs; `None` where the containers' cgroups could not be read.
    cpu: Option<CpuUse>,
}

/// What one container's cgroup says: CPU time used, and CFS quota periods (all, throttled).
#[derive(Clone, Copy, Debug, PartialEq)]
struct CpuSample {
    usage_ns: u64,
    periods: u64,
    throttled: u64,
}

/// What the proxy and app containers used during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
struct CpuUse {
    proxy_us_per_request: f64,
    proxy_cpus: f64,
    /// Share of the CFS periods in which the proxy's CPU quota ran out (percent).
    proxy_throttled_pct: f64,
    app_us_per_request: f64,
    app_cpus: f64,
}

impl CpuUse {
    /// From samples of (proxy, app) before and after a run of `seconds` that completed `requests`.
    fn between(
        before: (CpuSample, CpuSample),
        after: (CpuSample, CpuSample),
        seconds: f64,
        requests: u64,
    ) -> CpuUse {
        let used_us =
            |b: CpuSample, a: CpuSample| a.usage_ns.saturating_sub(b.usage_ns) as f64 / 1e3;
        let (proxy_us, app_us) = (used_us(before.0, after.0), used_us(before.1, after.1));
        let periods = after.0.periods.saturating_sub(before.0.periods).max(1);
        let throttled = after.0.throttled.saturating_sub(before.0.throttled);
        let requests = requests.max(1) as f64;
        CpuUse {
            proxy_us_per_request: proxy_us / requests,
            proxy_cpus: proxy_us / 1e6 / seconds,
            proxy_throttled_pct: throttled as f64 / periods as f64 * 100.0,
            app_us_per_request: app_us / requests,
            app_cpus: app_us / 1e6 / seconds,
        }
    }

    /// Each figure's median over the runs.
    fn median(runs: &[CpuUse]) -> Option<CpuUse> {
        let figure = |f: fn(&CpuUse) -> f64| super::median(runs.iter().map(f).collect());
        (!runs.is_empty()).then(|| CpuUse {
            proxy_us_per_request: figure(|c| c.proxy_us_per_request),
            proxy_cpus: figure(|c| c.proxy_cpus),
            proxy_throttled_pct: figure(|c| c.proxy_throttled_pct),
            app_us_per_request: figure(|c| c.app_us_per_request),
            app_cpus: figure(|c| c.app_cpus),
        })
    }
}

/// A container's CPU accounting: cgroup v2 (`cpu.stat` has `usage_usec`) or v1 (`cpuacct.usage`
/// and the `cpu` controller's `cpu.stat`), with the engine's cgroupfs or systemd layout.
fn cpu_sample(full_id: &str) -> Option<CpuSample> {
    let read = |path: String| std::fs::read_to_string(path).ok();
    let parents = [
        format!("docker/{full_id}"),
        format!("system.slice/docker-{full_id}.scope"),
    ];
    for parent in &parents {
        if let Some(stat) = read(format!("/sys/fs/cgroup/{parent}/cpu.stat"))
            && let Some(usage_us) = stat_field(&stat, "usage_usec")
        {
            return Some(CpuSample {
                usage_ns: usage_us * 1000,
                periods: stat_field(&stat, "nr_periods").unwrap_or(0),
                throttled: stat_field(&stat, "nr_throttled").unwrap_or(0),
            });
        }
        if let Some(usage) = read(format!("/sys/fs/cgroup/cpuacct/{parent}/cpuacct.usage"))
            && let Ok(usage_ns) = usage.trim().parse()
        {
            let stat = read(format!("/sys/fs/cgroup/cpu/{parent}/cpu.stat")).unwrap_or_default();
            return Some(CpuSample {
                usage_ns,
                periods: stat_field(&stat, "nr_periods").unwrap_or(0),
                throttled: stat_field(&stat, "nr_throttled").unwrap_or(0),
            });
        }
    }
    None
}

/// The number after `name` in a `cpu.stat` file (`name value` lines).
fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// One release under the steady load.
struct Release {
    what: String,
    /// The deployer command's wall-clock time; `None` for the steady load alone.
    command_s: Option<f64>,
    /// How long the load ran: from `MARGIN` before the command to `MARGIN` after it.
    window_s: f64,
    requests: u64,
    load: WrkResult,
    /// The slowest request's latency.
    max_ms: f64,
    /// What the proxy did to hide the switch: retries and redispatches of its app backends.
    retried: Retried,
}

/// HAProxy's `wretr` and `wredis` counters, summed over the backends of `PROXY_BACKENDS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Retried {
    retries: u64,
    redispatches: u64,
}

impl Retried {
    fn since(self, before: Retried) -> Retried {
        Retried {
            retries: self.retries.saturating_sub(before.retries),
            redispatches: self.redispatches.saturating_sub(before.redispatches),
        }
    }
}

/// The backends of deploy/compose/haproxy.cfg that send requests to the app containers.
const PROXY_BACKENDS: [&str; 2] = ["app", "app-writes"];

/// The retry counters of the backend rows in HAProxy's CSV statistics (`/stats;csv`), found by
/// the header's column names.
fn parse_retried(csv: &str) -> Option<Retried> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|c| *c == name);
    let (proxy, server) = (column("pxname")?, column("svname")?);
    let (retries, redispatches) = (column("wretr")?, column("wredis")?);
    let mut total = Retried::default();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        if PROXY_BACKENDS.contains(&field(proxy)) && field(server) == "BACKEND" {
            total.retries += field(retries).parse().unwrap_or(0);
            total.redispatches += field(redispatches).parse().unwrap_or(0);
        }
    }
    Some(total)
}

/// The proxy's retry counters now, from its statistics page.
fn retried(stats_url: &str) -> anyhow::Result<Retried> {
    let csv = agent()
        .get(stats_url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .with_context(|| format!("reading the proxy's statistics at {stats_url}"))?;
    parse_retried(&csv).with_context(|| format!("{stats_url}: not HAProxy's CSV statistics"))
}

/// The stack against the same binary natively, GET one task at the service bench's load.
struct Versus {
    /// App containers the deployer ran by default, and each one's CPU limit.
    replicas: usize,
    app_cpus: String,
    stack: Summary,
    native: Summary,
    /// The whole machine's CPU per request (stack, native), medians of the runs; `None` without
    /// /proc.
    cpu: Option<(host_cpu::PerRequest, host_cpu::PerRequest)>,
}

impl Versus {
    fn ratio(&self) -> f64 {
        self.stack.rps / self.native.rps
    }
}

/// Everything the section says.
struct Report {
    machine: String,
    command: String,
    setting: String,
    forwarding: String,
    port: u16,
    versus: Versus,
    busy: Option<(f64, f64)>,
    /// Per scenario (in the order of `SCENARIOS`), per route; the last route is the app container.
    cost: Vec<Vec<RouteFigures>>,
    releases: Vec<Release>,
}

pub fn measure(sh: &Shell, command: &str) -> anyhow::Result<String> {
    util::require_program("wrk", "install it with `apt-get install wrk`")?;
    let stack = Environment::create(sh, "proxy")?;

    util::step("bench: deploying V1 (the deployer's default replica count)");
    stack.deploy(V1)?;
    let apps = stack.app_containers()?;
    let app = apps[0].clone();
    let proxy = match stack.containers("proxy")?.as_slice() {
        [id] => id.clone(),
        ids => bail!("{} proxy containers running, expected one", ids.len()),
    };
    let proxy_address = address(sh, &proxy)?;
    let routes = [
        Route {
            name: "published port (HAProxy)".into(),
            base: format!("http://127.0.0.1:{}", stack.port),
        },
        Route {
            name: "HAProxy's container address".into(),
            base: format!("http://{proxy_address}:8080"),
        },
        Route {
            name: "one app container directly".into(),
            base: format!("http://{}:8000", address(sh, &app)?),
        },
    ];
    for route in &routes {
        for scenario in &SCENARIOS {
            answers_200(&format!("{}{}", route.base, scenario.path))?;
        }
    }
    let app_cpus = cpus(sh, &app)?;
    let setting = format!(
        "{}; app images `{}:{V1}` and `:{V2}` (release builds of the tree), database `{}`, proxy `{}`; {}. The \
         deployer's default replica count on this engine: {} app containers. Limits as the engine applied \
         them (compose.yaml's APP_CPUS and PROXY_CPUS, set by the deployer): each app container {} CPU, \
         proxy {} CPU; wrk, the engine and the database share the machine's CPUs",
        compose_flavour(sh),
        stack.app_image,
        stack.db_image,
        stack.proxy_image,
        wrk_version(sh),
        apps.len(),
        app_cpus,
        cpus(sh, &proxy)?,
    );
    let forwarding = forwarding(sh, stack.port);

    let proxy_id = full_id(sh, &proxy)?;
    let app_ids = apps
        .iter()
        .map(|id| full_id(sh, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The proxy's cgroup, and the app containers' summed: requests are spread over all of them.
    let sample = || {
        let proxy = cpu_sample(&proxy_id)?;
        let mut app = CpuSample {
            usage_ns: 0,
            periods: 0,
            throttled: 0,
        };
        for id in &app_ids {
            let one = cpu_sample(id)?;
            app.usage_ns += one.usage_ns;
            app.periods += one.periods;
            app.throttled += one.throttled;
        }
        Some((proxy, app))
    };
    if sample().is_none() {
        eprintln!("warning: the containers' cgroups are not readable: no CPU figures");
    }

    let versus = versus(sh, &stack, apps.len(), app_cpus)?;

    let busy_before = super::service::other_work("before the wrk runs");
    util::step("bench: warming up every route");
    for route in &routes {
        let url = format!("{}{}", route.base, SCENARIOS[0].path);
        wrk::get(sh, &url, wrk::THREADS, wrk::CONNECTIONS, WARMUP)?;
    }
    // Round-major and alternating: each round runs every scenario on every route, the routes'
    // order turning from one round to the next, so drift on the machine hits them alike.
    let mut runs: Vec<Vec<(Vec<WrkResult>, Vec<CpuUse>)>> = SCENARIOS
        .iter()
        .map(|_| routes.iter().map(|_| Default::default()).collect())
        .collect();
    for round in 0..ROUNDS {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            for turn in 0..routes.len() {
                let which = (turn + round) % routes.len();
                let route = &routes[which];
                util::step(&format!(
                    "round {}/{ROUNDS}: {} via {}",
                    round + 1,
                    scenario.name,
                    route.name
                ));
                let url = format!("{}{}", route.base, scenario.path);
                let (before, started) = (sample(), Instant::now());
                let out = wrk::get(sh, &url, scenario.threads, scenario.connections, DURATION)?;
                let (after, seconds) = (sample(), started.elapsed().as_secs_f64());
                let (results, cpu) = &mut runs[index][which];
                results.push(wrk::parse(&out)?);
                if let (Some(before), Some(after)) = (before, after) {
                    cpu.push(CpuUse::between(
                        before,
                        after,
                        seconds,
                        wrk::totals(&out)?.0,
                    ));
                }
            }
        }
    }
    let busy_after = super::service::other_work("after the wrk runs");
    let cost = runs
        .iter()
        .map(|per_route| {
            per_route
                .iter()
                .zip(&routes)
                .map(|((results, cpu), route)| RouteFigures {
                    route: route.name.clone(),
                    summary: Summary::of(results),
                    cpu: CpuUse::median(cpu),
                })
                .collect()
        })
        .collect();

    let load_url = format!("http://127.0.0.1:{}{LOAD_PATH}", stack.port);
    let rollback = ["rollback", "--timeout", "180s"];
    let upgrade = [
        "deploy",
        "--target",
        "compose",
        "--version",
        V2,
        "--yes",
        "--timeout",
        "180s",
    ];
    util::step("bench: the steady load alone, no release");
    let stats_url = format!("http://{proxy_address}:8404/stats;csv");
    let urls = (load_url.as_str(), stats_url.as_str());
    let mut releases = vec![under_load(sh, &stack, urls, STEADY_ROW, None)?];
    for cycle in 1..=CYCLES {
        for (what, args, serving) in [
            (format!("upgrade {V1} -> {V2}"), &upgrade[..], V2),
            (format!("rollback {V2} -> {V1}"), &rollback[..], V1),
        ] {
            util::step(&format!("bench: {what} under load ({cycle}/{CYCLES})"));
            let release = under_load(sh, &stack, urls, &what, Some(args))?;
            let running = stack.app_containers()?;
            anyhow::ensure!(
                running.len() == apps.len(),
                "after {what}, {} app containers run, not the {} of the default replica count",
                running.len(),
                apps.len()
            );
            for id in running {
                let format = "{{.Config.Image}}";
                let image = cmd!(sh, "docker inspect --format {format} {id}")
                    .quiet()
                    .read()?;
                anyhow::ensure!(
                    image.trim() == stack.image(serving),
                    "after {what}, app container {id} runs {image}, not {}",
                    stack.image(serving)
                );
            }
            releases.push(release);
        }
    }

    Ok(render(&Report {
        machine: super::machine(sh),
        command: command.to_owned(),
        setting,
        forwarding,
        port: stack.port,
        versus,
        busy: busy_before.zip(busy_after),
        cost,
        releases,
    }))
}

/// The stack (published port) against the `challenge` binary of its image run natively, GET one
/// task at the service bench's load, in alternating runs: stack, native, stack, native, ...
fn versus(
    sh: &Shell,
    stack: &Environment<'_>,
    replicas: usize,
    app_cpus: String,
) -> anyhow::Result<Versus> {
    util::step("bench: the same binary natively (copied out of the deployed image)");
    let dir = sh.create_temp_dir()?;
    let binary = dir.path().join("challenge");
    let image = stack.image(V1);
    let created = cmd!(sh, "docker create {image}").quiet().read()?;
    let created = created.trim();
    let copied = cmd!(sh, "docker cp {created}:/usr/local/bin/challenge {binary}")
        .quiet()
        .run();
    cmd!(sh, "docker rm {created}")
        .quiet()
        .ignore_stdout()
        .run()?;
    copied.with_context(|| format!("copying the challenge binary out of {image}"))?;

    // The service bench's database server: TEST_DATABASE_URL, else the local `ci` user.
    let db = testdb::provide(sh)?;
    let server = DbServer::parse(db.url())?;
    let database = ScratchDatabase::create(&server, format!("bench_proxy_{}", std::process::id()))?;
    // Configured as compose.yaml configures the container (JSON logs at info); seeded like the
    // stack's empty database (the service's default seed), so task 1 is the same row.
    let configured = || {
        let mut command = std::process::Command::new(&binary);
        server.configure(&mut command, &database.name);
        command
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("OTEL_SDK_DISABLED", "true");
        command
    };
    let status = configured()
        .args(["migrate", "--seed"])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running the native binary's migrations")?;
    anyhow::ensure!(status.success(), "seeding {} failed", database.name);
    let mut serve = configured();
    serve.arg("serve");
    let native = Service::start(
        serve,
        Output::File(dir.path().join("native.log")),
        NATIVE_READY,
    )?;

    let scenario = &SCENARIOS[0];
    let urls = [
        format!("http://127.0.0.1:{}{}", stack.port, scenario.path),
        format!("http://127.0.0.1:{}{}", native.port(), scenario.path),
    ];
    for url in &urls {
        answers_200(url)?;
        wrk::get(sh, url, scenario.threads, scenario.connections, WARMUP)?;
    }
    let mut runs: [Vec<WrkResult>; 2] = Default::default();
    let mut machine: [Vec<host_cpu::PerRequest>; 2] = Default::default();
    for round in 0..ROUNDS {
        for (which, url) in urls.iter().enumerate() {
            util::step(&format!(
                "round {}/{ROUNDS}: {} via {}",
                round + 1,
                scenario.name,
                ["the stack's published port", "the native binary"][which]
            ));
            let before = host_cpu::Sample::now();
            let out = wrk::get(sh, url, scenario.threads, scenario.connections, DURATION)?;
            if let (Some(before), Some(after)) = (before, host_cpu::Sample::now()) {
                machine[which].push(after.since(&before, wrk::totals(&out)?.0));
            }
            runs[which].push(wrk::parse(&out)?);
        }
    }
    drop(native);
    let [stack_cpu, native_cpu] = machine.map(|runs| host_cpu::PerRequest::median(&runs));
    Ok(Versus {
        replicas,
        app_cpus,
        stack: Summary::of(&runs[0]),
        native: Summary::of(&runs[1]),
        cpu: stack_cpu.zip(native_cpu),
    })
}

/// Runs the deployer with `args` (none: the load alone, for `STEADY`) while wrk loads `url`, from
/// `MARGIN` before to `MARGIN` after; the proxy's statistics at `stats_url` tell its retries.
fn under_load(
    sh: &Shell,
    stack: &Environment<'_>,
    (url, stats_url): (&str, &str),
    what: &str,
    args: Option<&[&str]>,
) -> anyhow::Result<Release> {
    let before = retried(stats_url)?;
    let load = wrk::Background::start(url, LOAD_THREADS, LOAD_CONNECTIONS, LOAD_TIMEOUT)?;
    std::thread::sleep(MARGIN);
    let command_s = match args {
        Some(args) => Some(
            stack
                .timed(args)
                .with_context(|| format!("{what} under load"))?,
        ),
        None => {
            std::thread::sleep(STEADY);
            None
        }
    };
    std::thread::sleep(MARGIN);
    let out = load.stop(sh)?;
    let (requests, window_s) = wrk::totals(&out)?;
    Ok(Release {
        what: what.to_owned(),
        command_s,
        window_s,
        requests,
        load: wrk::parse(&out)?,
        max_ms: wrk::max_latency_ms(&out)?,
        retried: retried(stats_url)?.since(before),
    })
}

/// The container's address on its Compose project's network.
fn address(sh: &Shell, container: &str) -> anyhow::Result<String> {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
    let addresses = cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .read()?;
    addresses
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .with_context(|| format!("container {container} has no network address"))
}

/// A container's full id (its cgroup's name).
fn full_id(sh: &Shell, container: &str) -> anyhow::Result<String> {
    let format = "{{.Id}}";
    Ok(cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .read()?
        .trim()
        .to_owned())
}

/// The CPU limit of a container (`cpus:` in compose.yaml), or "no limit".
fn cpus(sh: &Shell, container: &str) -> anyhow::Result<String> {
    let format = "{{.HostConfig.NanoCpus}}";
    let nano: u64 = cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .read()?
        .trim()
        .parse()
        .context("reading a container's CPU limit")?;
    Ok(if nano == 0 {
        "no limit".into()
    } else {
        format!("{:.1}", nano as f64 / 1e9)
    })
}

/// Fails unless `url` answers 200: every route must serve the scenarios before they are measured
/// (a container address the host cannot reach, as on Docker Desktop, stops here).
fn answers_200(url: &str) -> anyhow::Result<()> {
    let status = agent()
        .get(url)
        .call()
        .with_context(|| {
            format!("GET {url}: container addresses must be reachable from the host (Linux)")
        })?
        .status();
    anyhow::ensure!(status == 200, "GET {url} answered {status}, not 200");
    Ok(())
}

/// An HTTP client that reads any status and gives up after 5 s.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// How the engine forwards the published port to the proxy container: its userland proxy
/// process, or NAT rules alone.
fn forwarding(sh: &Shell, port: u16) -> String {
    let processes = cmd!(sh, "ps -eo args").quiet().read().unwrap_or_default();
    let userland = processes
        .lines()
        .any(|p| p.contains("docker-proxy") && p.contains(&format!("-host-port {port} ")));
    if userland {
        "the engine's userland proxy (`docker-proxy`), then HAProxy".into()
    } else {
        "the engine's NAT rules, then HAProxy".into()
    }
}

/// `wrk <version>`, from the first line of `wrk -v` (which exits 1).
fn wrk_version(sh: &Shell) -> String {
    let out = cmd!(sh, "wrk -v")
        .quiet()
        .ignore_status()
        .read()
        .unwrap_or_default();
    out.lines()
        .next()
        .map(|line| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "wrk".into())
}

/// The whole machine's CPU per request during the stack's and the native binary's runs.
fn render_machine_cpu(
    md: &mut String,
    stack: &host_cpu::PerRequest,
    native: &host_cpu::PerRequest,
) {
    let _ = writeln!(
        md,
        "\nWhere the machine's CPU time went during those runs, per request answered (µs; from /proc: \
         each process's user and system time by its command name, inside containers or not, and the \
         machine's busy time; medians of the runs). \"other\" is the busy time of no listed process: \
         interrupts and network processing the kernel charges to no process, the containers' health \
         checks, everything else.\n"
    );
    let mut header = String::from("| run |");
    let mut rule = String::from("| --- |");
    for group in &host_cpu::GROUPS {
        let _ = write!(header, " {} |", group.label);
        rule.push_str(" ---: |");
    }
    let _ = writeln!(md, "{header} other | all |");
    let _ = writeln!(md, "{rule} ---: | ---: |");
    for (name, cpu) in [
        ("stack (published port)", stack),
        ("same binary natively", native),
    ] {
        let mut row = format!("| {name} |");
        for us in &cpu.groups {
            let _ = write!(row, " {us:.0} |");
        }
        let _ = writeln!(md, "{row} {:.0} | {:.0} |", cpu.other, cpu.total);
    }
}

fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Reverse proxy (HAProxy) in the Compose stack\n");
    let _ = writeln!(
        md,
        "Machine: {}. {}. One stack deployed by the deployer binary (release build, `deployer \
         deploy --target compose`) in a throwaway environment, removed afterwards.\n",
        report.machine, report.setting
    );
    let _ = writeln!(md, "Command: `{}`.", report.command);
    if let Some((before, after)) = report.busy {
        let _ = writeln!(
            md,
            "Other work on the machine: the CPUs were {before:.0} % busy in the 3 s before the cost \
             runs and {after:.0} % in the 3 s after, with no benchmark process running (near 0 % on \
             an otherwise idle machine)."
        );
    }

    let v = &report.versus;
    let _ = writeln!(md, "\n### The stack against the same binary natively\n");
    let _ = writeln!(
        md,
        "GET one task (`{}`), `wrk -t{} -c{} -d{DURATION} --latency`, {ROUNDS} runs each after a {WARMUP} \
         warm-up, alternating: the stack through its published port `127.0.0.1:{}` ({} app containers of \
         {} CPU each, the deployer's default here), then the `challenge` binary copied out of the same image, \
         run natively on the host against the service bench's database server (TEST_DATABASE_URL, else \
         the local `ci` user; the stack's database is its own container), configured like the container \
         (JSON logs at info), then the stack again, ... Figures are medians of the runs.\n",
        SCENARIOS[0].path,
        SCENARIOS[0].threads,
        SCENARIOS[0].connections,
        report.port,
        v.replicas,
        v.app_cpus,
    );
    let _ = writeln!(
        md,
        "| route | requests/s | p50 | p99 | errors | runs (requests/s) |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | --- |");
    for (name, s) in [
        ("stack (published port)", &v.stack),
        ("same binary natively", &v.native),
    ] {
        let runs = s.runs_list();
        let _ = writeln!(
            md,
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {runs} |",
            s.rps, s.p50_ms, s.p99_ms, s.errors
        );
    }
    let met = v.ratio() >= RATIO_GOAL && v.stack.errors == 0;
    let _ = writeln!(
        md,
        "\nThe stack serves **{:.2}x** the native binary's requests/s, with {} errors (goal: >= {RATIO_GOAL}x, \
         0 errors: {}).",
        v.ratio(),
        v.stack.errors,
        if met { "met" } else { "NOT met" }
    );

    if let Some((stack, native)) = &v.cpu {
        render_machine_cpu(&mut md, stack, native);
    }

    let _ = writeln!(md, "\n### What the proxy costs a request\n");
    let _ = writeln!(
        md,
        "`wrk -t<threads> -c<connections> -d{DURATION} --latency <url>` per run, the same for every \
         route: the published port `127.0.0.1:{}` (what clients use: {}), HAProxy's own container \
         address (port 8080, HAProxy alone), and one app container's address (port 8000, no \
         proxy). Scenarios: {}. {ROUNDS} rounds after a {WARMUP} warm-up of each route; each round \
         runs every scenario on every route, the routes' order turning from one round to the next; \
         figures are the median of the {ROUNDS} runs (requests/s, p50 and p99 each taken \
         separately). Errors are wrk's non-2xx/3xx responses plus socket errors, summed over the \
         runs. Task 1 and the first page come from the 100 tasks the service seeds into an empty \
         database.\n",
        report.port,
        report.forwarding,
        SCENARIOS
            .iter()
            .map(|s| format!(
                "{} (`{}`, `-t{} -c{}`)",
                s.name, s.path, s.threads, s.connections
            ))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let _ = writeln!(
        md,
        "| scenario | route | requests/s | p50 | p99 | errors | runs (requests/s) |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: | ---: | ---: | --- |");
    for (scenario, routes) in SCENARIOS.iter().zip(&report.cost) {
        for figures in routes {
            let s = &figures.summary;
            let runs = s.runs_list();
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {runs} |",
                scenario.name, figures.route, s.rps, s.p50_ms, s.p99_ms, s.errors
            );
        }
    }
    let _ = writeln!(
        md,
        "\nThe difference to the app container reached directly:\n\n\
         | scenario | route | requests/s, share of direct | added p50 | added p99 |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: | ---: |");
    for (scenario, routes) in SCENARIOS.iter().zip(&report.cost) {
        let Some((direct, proxied)) = routes.split_last() else {
            continue;
        };
        for figures in proxied {
            let (p, d) = (&figures.summary, &direct.summary);
            let _ = writeln!(
                md,
                "| {} | {} | {:.2}x | {:+.2} ms | {:+.2} ms |",
                scenario.name,
                figures.route,
                p.rps / d.rps,
                p.p50_ms - d.p50_ms,
                p.p99_ms - d.p99_ms
            );
        }
    }

    if report.cost.iter().flatten().all(|f| f.cpu.is_some()) {
        let _ = writeln!(
            md,
            "\nCPU time of the containers during the runs (their cgroups' accounting, medians of the \
             runs): per request answered, and in CPUs busy over the run; \"throttled\" is the share \
             of 100 ms scheduler periods in which the proxy used up its CPU limit. HAProxy's CPU on \
             the direct route is its health checks alone. Not counted: wrk, the engine's forwarding \
             of the published port, the database.\n"
        );
        let _ = writeln!(
            md,
            "| scenario | route | HAProxy CPU per request | HAProxy CPUs busy | HAProxy throttled | app CPU per request | app CPUs busy |"
        );
        let _ = writeln!(md, "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        for (scenario, routes) in SCENARIOS.iter().zip(&report.cost) {
            for figures in routes {
                let Some(c) = figures.cpu else { continue };
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} µs | {:.2} | {:.0} % | {:.0} µs | {:.2} |",
                    scenario.name,
                    figures.route,
                    c.proxy_us_per_request,
                    c.proxy_cpus,
                    c.proxy_throttled_pct,
                    c.app_us_per_request,
                    c.app_cpus
                );
            }
        }
    }

    let _ = writeln!(md, "\n### Releases under load\n");
    let _ = writeln!(
        md,
        "wrk `-t{LOAD_THREADS} -c{LOAD_CONNECTIONS} --timeout {LOAD_TIMEOUT} --latency \
         http://127.0.0.1:{}{LOAD_PATH}` (keep-alive connections, each sending its next request as \
         soon as the last is answered: a moderate load, which leaves the CPUs room for the health \
         checks) runs from {} s before each deployer command starts to {} s after it returns, and \
         is then interrupted (SIGINT: wrk reports the time it ran). The commands: `deployer deploy \
         --target compose --version {V2} --yes` with {V1} running, then `deployer rollback`, \
         {CYCLES} times; both versions are release builds of the tree. After each one as many app \
         containers run as before (the default replica count), all of the expected version. A request failed when wrk counted a socket error \
         (connect, read, write, or no answer within {LOAD_TIMEOUT}) or a non-2xx/3xx response. \
         \"Retried by HAProxy\": its statistics' `wretr`/`wredis` counters of the app backends over \
         the window, requests it sent again (to another container) instead of failing them. The \
         first row, measured before the releases, is the same load for {} s with no command, for \
         comparison.\n",
        report.port,
        MARGIN.as_secs(),
        MARGIN.as_secs(),
        (MARGIN * 2 + STEADY).as_secs(),
    );
    let _ = writeln!(
        md,
        "| release under load | command (s) | load window (s) | requests | requests/s | p50 | p99 | max | socket errors | non-2xx | failed | retried by HAProxy (retries / redispatches) |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &report.releases {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} ms | {} | {} | {} | {} / {} |",
            r.what,
            r.command_s.map_or("-".into(), |s| format!("{s:.1}")),
            r.window_s,
            r.requests,
            r.load.rps,
            r.load.p50_ms,
            r.load.p99_ms,
            r.max_ms,
            r.load.socket_errors,
            r.load.non_2xx,
            r.load.errors(),
            r.retried.retries,
            r.retried.redispatches
        );
    }
    let releases: Vec<&Release> = report
        .releases
        .iter()
        .filter(|r| r.command_s.is_some())
        .collect();
    let requests: u64 = releases.iter().map(|r| r.requests).sum();
    let failed: u64 = releases.iter().map(|r| r.load.errors()).sum();
    let _ = writeln!(
        md,
        "\nFailed requests over all {} releases: {failed} of {requests}.",
        releases.len()
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rps: f64, p50_ms: f64, p99_ms: f64) -> WrkResult {
        WrkResult {
            rps,
            p50_ms,
            p99_ms,
            non_2xx: 0,
            socket_errors: 0,
        }
    }

    fn figures(route: &str, rps: f64, p50_ms: f64, p99_ms: f64) -> RouteFigures {
        RouteFigures {
            route: route.into(),
            summary: Summary::of(&[result(rps, p50_ms, p99_ms)]),
            cpu: Some(CpuUse {
                proxy_us_per_request: 120.0,
                proxy_cpus: 0.5,
                proxy_throttled_pct: 80.0,
                app_us_per_request: 90.0,
                app_cpus: 0.4,
            }),
        }
    }

    fn report() -> Report {
        let mut failing = result(700.0, 5.0, 20.0);
        failing.socket_errors = 2;
        failing.non_2xx = 1;
        Report {
            machine: "a machine".into(),
            command: "cargo xtask bench --only proxy".into(),
            setting: "docker-compose 1.29.2".into(),
            forwarding: "the engine's NAT rules, then HAProxy".into(),
            port: 41000,
            versus: Versus {
                replicas: 2,
                app_cpus: "1.0".into(),
                stack: Summary::of(&[
                    result(6000.0, 9.0, 25.0),
                    result(7000.0, 8.0, 22.0),
                    result(6500.0, 8.5, 24.0),
                ]),
                native: Summary::of(&[
                    result(12000.0, 4.0, 10.0),
                    result(13000.0, 4.0, 9.0),
                    result(12500.0, 4.0, 9.5),
                ]),
                cpu: Some((
                    host_cpu::PerRequest {
                        groups: vec![90.0, 40.0, 30.0, 25.0, 45.0, 20.0],
                        other: 50.0,
                        total: 300.0,
                    },
                    host_cpu::PerRequest {
                        groups: vec![70.0, 0.0, 0.0, 1.0, 40.0, 18.0],
                        other: 11.0,
                        total: 140.0,
                    },
                )),
            },
            busy: Some((1.0, 2.0)),
            cost: SCENARIOS
                .iter()
                .map(|_| {
                    vec![
                        figures("published port (HAProxy)", 4000.0, 10.0, 30.0),
                        figures("app container directly", 8000.0, 6.0, 20.0),
                    ]
                })
                .collect(),
            releases: vec![
                Release {
                    what: STEADY_ROW.into(),
                    command_s: None,
                    window_s: 14.0,
                    requests: 14000,
                    load: result(1000.0, 3.0, 9.0),
                    max_ms: 30.0,
                    retried: Retried::default(),
                },
                Release {
                    what: "upgrade 1.0.0 -> 2.0.0".into(),
                    command_s: Some(9.04),
                    window_s: 15.1,
                    requests: 12000,
                    load: result(794.7, 5.0, 12.5),
                    max_ms: 80.4,
                    retried: Retried {
                        retries: 3,
                        redispatches: 2,
                    },
                },
                Release {
                    what: "rollback 2.0.0 -> 1.0.0".into(),
                    command_s: Some(8.0),
                    window_s: 14.0,
                    requests: 9800,
                    load: failing,
                    max_ms: 1990.0,
                    retried: Retried::default(),
                },
            ],
        }
    }

    #[test]
    fn the_stack_is_compared_with_the_native_binary_against_the_goal() {
        let mut report = report();
        let md = render(&report);
        assert!(
            md.contains(
                "| stack (published port) | 6500 | 8.50 ms | 24.00 ms | 0 | 6000, 7000, 6500 |"
            ),
            "{md}"
        );
        assert!(md.contains("| same binary natively | 12500 |"), "{md}");
        assert!(
            md.contains("serves **0.52x** the native binary's requests/s, with 0 errors (goal: >= 0.5x, 0 errors: met)"),
            "{md}"
        );
        assert!(md.contains("2 app containers of 1.0 CPU each"), "{md}");
        report.versus.stack.errors = 1;
        assert!(render(&report).contains("0 errors: NOT met"));
        report.versus.stack.errors = 0;
        report.versus.native.rps = 20000.0;
        assert!(render(&report).contains("**0.33x**"));
        assert!(render(&report).contains("NOT met"));
    }

    #[test]
    fn the_machines_cpu_per_request_is_shown_for_both_runs() {
        let mut report = report();
        let md = render(&report);
        assert!(
            md.contains(
                "| run | service (`challenge`) | HAProxy | port forwarding (`docker-proxy`) | engine \
                 (`dockerd`, `containerd`, shims) | database (`mariadbd`) | load (`wrk`) | other | all |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| stack (published port) | 90 | 40 | 30 | 25 | 45 | 20 | 50 | 300 |"),
            "{md}"
        );
        assert!(
            md.contains("| same binary natively | 70 | 0 | 0 | 1 | 40 | 18 | 11 | 140 |"),
            "{md}"
        );
        report.versus.cpu = None;
        assert!(!render(&report).contains("| run | service"));
    }

    #[test]
    fn the_difference_is_against_the_app_container_reached_directly() {
        let md = render(&report());
        assert!(md.contains(
            "| GET one task | published port (HAProxy) | 0.50x | +4.00 ms | +10.00 ms |"
        ));
        assert!(md.contains(
            "| GET a page of 20 | app container directly | 8000 | 6.00 ms | 20.00 ms | 0 | 8000 |"
        ));
        assert!(!md.contains("| GET one task | app container directly | 1.00x"));
        assert!(md.contains(
            "| GET one task | published port (HAProxy) | 120 µs | 0.50 | 80 % | 90 µs | 0.40 |"
        ));
        assert!(md.contains("GET one task, one connection (`/api/tasks/1`, `-t1 -c1`)"));
    }

    #[test]
    fn cpu_use_is_per_request_per_second_and_throttled_periods() {
        let sample = |usage_ns, periods, throttled| CpuSample {
            usage_ns,
            periods,
            throttled,
        };
        let before = (sample(1_000_000_000, 100, 10), sample(0, 0, 0));
        let after = (sample(6_000_000_000, 200, 60), sample(8_000_000_000, 0, 0));
        let cpu = CpuUse::between(before, after, 10.0, 50_000);
        assert_eq!(cpu.proxy_us_per_request, 100.0);
        assert_eq!(cpu.proxy_cpus, 0.5);
        assert_eq!(cpu.proxy_throttled_pct, 50.0);
        assert_eq!(cpu.app_us_per_request, 160.0);
        assert_eq!(cpu.app_cpus, 0.8);
        assert_eq!(CpuUse::median(&[cpu, cpu, cpu]), Some(cpu));
        assert_eq!(CpuUse::median(&[]), None);
    }

    #[test]
    fn retries_are_summed_over_the_app_backends_rows_only() {
        let csv = "# pxname,svname,qcur,wretr,wredis,status\n\
                   http,FRONTEND,0,,,OPEN\n\
                   app,app-1,0,4,1,UP\n\
                   app,BACKEND,0,5,2,UP\n\
                   app-writes,BACKEND,0,1,1,UP\n\
                   internal,BACKEND,0,9,9,UP\n";
        let now = parse_retried(csv).unwrap();
        assert_eq!(
            now,
            Retried {
                retries: 6,
                redispatches: 3
            }
        );
        let before = Retried {
            retries: 2,
            redispatches: 3,
        };
        assert_eq!(
            now.since(before),
            Retried {
                retries: 4,
                redispatches: 0
            }
        );
        assert_eq!(parse_retried("not,statistics\n1,2"), None);
    }

    #[test]
    fn cpu_stat_fields_of_cgroup_v1_and_v2() {
        let v1 = "nr_periods 2\nnr_throttled 1\nthrottled_time 0\n";
        let v2 = "usage_usec 3759\nuser_usec 2000\nnr_periods 7\nnr_throttled 0\n";
        assert_eq!(stat_field(v1, "nr_throttled"), Some(1));
        assert_eq!(stat_field(v1, "usage_usec"), None);
        assert_eq!(stat_field(v2, "usage_usec"), Some(3759));
        assert_eq!(stat_field(v2, "nr_periods"), Some(7));
    }

    #[test]
    fn releases_count_socket_errors_and_non_2xx_as_failed() {
        let md = render(&report());
        assert!(md.contains(
            "| upgrade 1.0.0 -> 2.0.0 | 9.0 | 15.1 | 12000 | 795 | 5.00 ms | 12.50 ms | 80 ms | 0 | 0 | 0 | 3 / 2 |"
        ));
        assert!(md.contains(
            "| rollback 2.0.0 -> 1.0.0 | 8.0 | 14.0 | 9800 | 700 | 5.00 ms | 20.00 ms | 1990 ms | 2 | 1 | 3 | 0 / 0 |"
        ));
        assert!(md.contains(
            "| none: the steady load alone | - | 14.0 | 14000 | 1000 | 3.00 ms | 9.00 ms | 30 ms | 0 | 0 | 0 | 0 / 0 |"
        ));
        assert!(md.contains("Failed requests over all 2 releases: 3 of 21800."));
        assert!(md.contains("Command: `cargo xtask bench --only proxy`."));
    }
}
