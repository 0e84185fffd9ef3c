//! `cargo xtask bench --only instructions`: the instructions the service executes per GET one task,
//! counted by valgrind's callgrind, with each part of the request path switched off in turn (the
//! `attribution` build, crates/challenge/src/attribution.rs) and, for the full service, split by
//! the crate or library that executes them.
//!
//! Instruction counts hardly depend on what else the machine does (they vary by about 2 % from run
//! to run: thread timing changes how often the runtime polls), so they attribute the cost of a
//! feature where requests per second, on two CPUs shared with wrk and MariaDB, move by more than it. They count user space only: the system calls' work in the kernel, which is most of
//! a request's CPU time (the profile part), is not in them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::service::{self, ROWS};
use crate::service::{Output, Service};
use crate::setup;
use crate::testdb::DbServer;
use crate::util;

/// Requests sent before counting (connections opened, statement prepared, pool filled) and counted.
const WARMUP: u32 = 500;
const COUNTED: u32 = 2_000;
/// Keep-alive connections the requests are spread over.
const CONNECTIONS: u32 = 4;
/// Starting under valgrind is about 50 times slower than natively.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The variants measured: what `CHALLENGE_ATTRIBUTION_OFF` is set to, and how the report names it.
pub const VARIANTS: [(&str, &str); 6] = [
    ("", "the service as shipped (nothing off)"),
    ("metrics", "metrics off"),
    ("request-id", "request ids off"),
    ("tracing", "tracing off (spans, the log call)"),
    ("limits", "limits off (connection cap, timeouts)"),
    ("metrics,request-id,tracing,limits", "all four off"),
];

/// Who executes an instruction: the crate that owns the function (see [`owner`]), or for C
/// functions a prefix of their name. The first rule that matches wins.
const CATEGORIES: [(&str, &[&str]); 14] = [
    (
        "allocator (mimalloc)",
        &["mimalloc", "libmimalloc_sys", "mi_", "_mi_"],
    ),
    ("MySQL driver (sqlx)", &["sqlx"]),
    (
        "HTTP/1 (hyper, http, httparse)",
        &["hyper", "http", "httparse", "httpdate"],
    ),
    (
        "routing and middleware (axum, tower)",
        &["axum", "tower", "matchit", "utoipa"],
    ),
    (
        "JSON and timestamps (serde_json, time)",
        &["serde", "time", "itoa", "ryu"],
    ),
    (
        "async runtime (tokio)",
        &["tokio", "futures", "pin_project"],
    ),
    ("metrics", &["metrics", "quanta", "sketches"]),
    ("tracing", &["tracing", "opentelemetry"]),
    ("connection pool (deadpool)", &["deadpool"]),
    ("ids (uuid, rand)", &["uuid", "rand", "chacha", "getrandom"]),
    ("buffers (bytes)", &["bytes"]),
    ("the service's own code", &["challenge"]),
    (
        "Rust's standard library (core, alloc, std, hashbrown)",
        &["core", "alloc", "std", "hashbrown"],
    ),
    (
        "C library (copies, clock, syscall wrappers)",
        &[
            "__mem",
            "mem",
            "clock_gettime",
            "__",
            "syscall",
            "epoll",
            "recv",
            "send",
            "write",
            "read",
        ],
    ),
];

/// The crate a Rust function belongs to, from its demangled name: `tokio` for
/// `tokio::runtime::task::raw::poll` and `<tokio::time::sleep::Sleep as Future>::poll`, the trait's
/// crate for a generic type (`axum` for `<F as axum::handler::Handler<..>>::call`). A C function's
/// name is returned whole.
fn owner(function: &str) -> &str {
    let Some(inner) = function.strip_prefix('<') else {
        return function.split("::").next().unwrap_or(function);
    };
    let inner = inner
        .trim_start_matches("&mut ")
        .trim_start_matches('&')
        .trim_start_matches("dyn ");
    let head = inner.split("::").next().unwrap_or(inner);
    match head.split_once(" as ") {
        // `<F as axum::...>`: a type parameter, no crate of its own.
        Some((_, trait_crate)) => trait_crate,
        None => head,
    }
}

pub fn measure(sh: &Shell, command: &str) -> anyhow::Result<String> {
    let (_db, server) = service::prerequisites(sh, &[&setup::VALGRIND])?;
    let binary = build(sh)?;
    let database = "bench_instructions";
    util::step(&format!("seeding {ROWS} tasks into {database}"));
    seed(&binary, &server, database)?;

    let mut counts = Vec::new();
    let mut split = BTreeMap::new();
    for (off, name) in VARIANTS {
        util::step(&format!("callgrind: {name}"));
        let profile = count(&binary, &server, database, off)?;
        if off.is_empty() {
            split = categorise(&profile.self_cost);
        }
        counts.push((name, profile.total));
    }
    Ok(render(&Report {
        machine: super::machine(sh),
        command: command.to_owned(),
        valgrind: cmd!(sh, "valgrind --version").read().unwrap_or_default(),
        counts,
        split,
    }))
}

/// The `attribution` build with symbols (for callgrind's function names), in its own target
/// directory so the plain release build stays cached.
fn build(sh: &Shell) -> anyhow::Result<PathBuf> {
    let target = service::target_dir().join("bench-instructions");
    util::step("building the release binary with the `attribution` feature and symbols");
    let _target = sh.push_env("CARGO_TARGET_DIR", &target);
    let _strip = sh.push_env("CARGO_PROFILE_RELEASE_STRIP", "none");
    let _debug = sh.push_env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    cmd!(
        sh,
        "cargo build --release -p challenge --features attribution"
    )
    .run()?;
    Ok(target.join("release/challenge"))
}

fn configured(binary: &Path, server: &DbServer, database: &str) -> Command {
    let mut command = Command::new(binary);
    server.configure(&mut command, database);
    command.env("SEED_COUNT", ROWS.to_string());
    command
}

fn seed(binary: &Path, server: &DbServer, database: &str) -> anyhow::Result<()> {
    server.recreate(database)?;
    let status = configured(binary, server, database)
        .args(["migrate", "--seed"])
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    anyhow::ensure!(status.success(), "seeding {database} failed ({status})");
    Ok(())
}

/// What callgrind counted over the measured requests.
struct Profile {
    total: u64,
    /// Instructions executed in each function's own body (callees excluded).
    self_cost: BTreeMap<String, u64>,
}

/// Serves `database` under callgrind with `off` switched off, sends the warm-up requests, zeroes
/// the counters, sends the counted requests and has callgrind write what it counted.
fn count(binary: &Path, server: &DbServer, database: &str, off: &str) -> anyhow::Result<Profile> {
    let dir = service::target_dir().join("bench-instructions");
    let out = dir.join("callgrind.out");
    let dump = dir.join("callgrind.out.1");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&dump);
    let mut serve = Command::new("valgrind");
    serve
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        // Every record names its function, so a dump taken mid-run reads on its own.
        .args(["--compress-strings=no", "--compress-pos=no"])
        .arg(binary)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .env("CHALLENGE_ATTRIBUTION_OFF", off)
        .stderr(Stdio::null());
    server.configure(&mut serve, database);
    // The program is valgrind: the binary's own healthcheck tells when the service is ready.
    let healthcheck = |port: u16| {
        Command::new(binary)
            .arg("healthcheck")
            .env("PORT", port.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let app = Service::start_probed(
        serve,
        Output::Stderr,
        READY_TIMEOUT,
        "answer 200 on /readyz",
        &healthcheck,
    )?;
    let pid = app.pid().to_string();
    send(app.port(), WARMUP)?;
    cmd_status("callgrind_control", &["--zero", &pid])?;
    send(app.port(), COUNTED)?;
    cmd_status("callgrind_control", &["--dump", &pid])?;
    drop(app);
    let text = std::fs::read_to_string(&dump)
        .with_context(|| format!("callgrind wrote no dump at {}", dump.display()))?;
    let self_cost = self_costs(&text);
    Ok(Profile {
        total: self_cost.values().sum(),
        self_cost,
    })
}

fn cmd_status(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        status.success(),
        "{program} {} failed ({status})",
        args.join(" ")
    );
    Ok(())
}

/// Sends `total` GETs of tasks spread over the seeded ids, over [`CONNECTIONS`] keep-alive
/// connections in parallel; every answer must be 200.
fn send(port: u16, total: u32) -> anyhow::Result<()> {
    let per_connection = total / CONNECTIONS;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|worker| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let agent = ureq::Agent::new_with_config(
                        ureq::Agent::config_builder()
                            .http_status_as_error(false)
                            .timeout_global(Some(Duration::from_secs(60)))
                            .build(),
                    );
                    for request in 0..per_connection {
                        let id = spread(worker * per_connection + request);
                        let url = format!("http://127.0.0.1:{port}/api/tasks/{id}");
                        let mut response = agent.get(&url).call()?;
                        let _ = response.body_mut().read_to_vec()?;
                        if response.status() != 200 {
                            bail!("GET {url} answered {}", response.status());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().expect("a load thread panicked"))
    })
}

/// The `n`th id of a fixed walk over 1..=ROWS that visits them in a scattered order (a stride
/// coprime with ROWS), so that requests do not read neighbouring rows only.
fn spread(n: u32) -> u32 {
    (n.wrapping_mul(7_919) % ROWS) + 1
}

/// The instructions of each function's own body in a callgrind dump written with
/// `--compress-strings=no`: cost lines count for the current `fn=`, except the line after a
/// `calls=` line, which is the inclusive cost of that call.
fn self_costs(dump: &str) -> BTreeMap<String, u64> {
    let mut costs = BTreeMap::new();
    let mut function = String::new();
    let mut after_call = false;
    for line in dump.lines() {
        if let Some(name) = line.strip_prefix("fn=") {
            function = name.to_owned();
        } else if line.starts_with("calls=") {
            after_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            let cost = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u64>().ok());
            if std::mem::take(&mut after_call) {
                continue;
            }
            if let Some(cost) = cost {
                *costs.entry(function.clone()).or_insert(0) += cost;
            }
        }
    }
    costs
}

/// Instructions by category (see [`CATEGORIES`]); what matches none is "other".
fn categorise(self_cost: &BTreeMap<String, u64>) -> BTreeMap<&'static str, u64> {
    let mut split = BTreeMap::new();
    for (function, cost) in self_cost {
        let owner = owner(function);
        let category = CATEGORIES
            .iter()
            .find(|(_, prefixes)| prefixes.iter().any(|p| owner.starts_with(p)))
            .map_or("other", |(name, _)| name);
        *split.entry(category).or_insert(0) += cost;
    }
    split
}

struct Report {
    machine: String,
    command: String,
    valgrind: String,
    /// Per variant, in [`VARIANTS`] order: instructions over the counted requests.
    counts: Vec<(&'static str, u64)>,
    split: BTreeMap<&'static str, u64>,
}

fn render(report: &Report) -> String {
    let per_request = |total: u64| total as f64 / f64::from(COUNTED);
    let mut out = String::from("## Instructions per request\n\n");
    let _ = writeln!(
        out,
        "Machine: {}. {}, tool callgrind, on the release build with the `attribution` feature and symbols \
         (`cargo build --release -p challenge --features attribution`, not stripped).\n",
        report.machine,
        report.valgrind.trim()
    );
    let _ = writeln!(
        out,
        "Command: `{}`. The service serves its seeded database ({ROWS} tasks) under callgrind with \
         `RUST_LOG=warn`; {WARMUP} GETs of one task warm it up, the counters are zeroed, and the figure is \
         what it executed in user space for the next {COUNTED} (GET one task, {CONNECTIONS} keep-alive \
         connections), divided by {COUNTED}. The counts vary by about 2 % from run to run, whatever \
         else the machine does (thread timing changes how often the runtime polls); the kernel's work for the \
         system calls is not in them.\n",
        report.command
    );
    out.push_str("| service | instructions per request | difference to the service as shipped |\n");
    out.push_str("| --- | ---: | ---: |\n");
    let shipped = report.counts.first().map_or(0, |(_, total)| *total);
    for (name, total) in &report.counts {
        let difference = per_request(*total) - per_request(shipped);
        let share = difference / per_request(shipped).max(1.0) * 100.0;
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {} |",
            per_request(*total),
            if *total == shipped {
                "-".to_owned()
            } else {
                format!("{difference:+.0} ({share:+.1} %)")
            }
        );
    }
    out.push_str("\nWhere the service as shipped executes them (each function's own instructions, by the crate or library it belongs to):\n\n");
    out.push_str("| who | instructions per request | share |\n| --- | ---: | ---: |\n");
    let mut split: Vec<_> = report.split.iter().collect();
    split.sort_by(|a, b| b.1.cmp(a.1));
    let total: u64 = report.split.values().sum();
    for (name, cost) in split {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.1} % |",
            per_request(*cost),
            *cost as f64 / total.max(1) as f64 * 100.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
# callgrind format
events: Ir
summary: 1000

fn=challenge::telemetry::observe
15 100
+2 20
cfn=sqlx_mysql::connection::fetch
calls=3 40
* 700
fn=sqlx_mysql::connection::fetch
40 600
fn=mi_free
* 80
";

    #[test]
    fn self_cost_leaves_out_the_inclusive_cost_of_calls() {
        let costs = self_costs(DUMP);
        assert_eq!(costs["challenge::telemetry::observe"], 120);
        assert_eq!(costs["sqlx_mysql::connection::fetch"], 600);
        assert_eq!(costs["mi_free"], 80);
        assert_eq!(costs.values().sum::<u64>(), 800);
    }

    #[test]
    fn a_function_belongs_to_the_crate_of_its_path_or_of_its_type() {
        assert_eq!(owner("tokio::runtime::task::raw::poll"), "tokio");
        assert_eq!(
            owner("<tokio::time::sleep::Sleep as core::future::Future>::poll"),
            "tokio"
        );
        assert_eq!(
            owner(
                "<&mut serde_json::ser::Serializer<W,F> as serde_core::ser::Serializer>::serialize_str"
            ),
            "serde_json"
        );
        assert_eq!(
            owner("<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}"),
            "axum"
        );
        assert_eq!(owner("<alloc::string::String>::from_utf8_lossy"), "alloc");
        assert_eq!(
            owner("__memcpy_avx_unaligned_erms"),
            "__memcpy_avx_unaligned_erms"
        );
    }

    #[test]
    fn functions_are_filed_by_their_crate() {
        let mut costs = self_costs(DUMP);
        costs.insert(
            "<challenge::store::TaskRow as sqlx_core::FromRow>::from_row".into(),
            5,
        );
        costs.insert(
            "<tokio::time::sleep::Sleep as core::future::Future>::poll".into(),
            3,
        );
        costs.insert("core::fmt::write".into(), 7);
        costs.insert("__memcpy_avx_unaligned_erms".into(), 9);
        costs.insert("_start".into(), 1);
        let split = categorise(&costs);
        assert_eq!(split["MySQL driver (sqlx)"], 600);
        // The service's type, with the driver's trait: the service's code.
        assert_eq!(split["the service's own code"], 125);
        assert_eq!(split["allocator (mimalloc)"], 80);
        // `tokio::time`, not the `time` crate.
        assert_eq!(split["async runtime (tokio)"], 3);
        assert_eq!(
            split["Rust's standard library (core, alloc, std, hashbrown)"],
            7
        );
        assert_eq!(split["C library (copies, clock, syscall wrappers)"], 9);
        assert_eq!(split["other"], 1);
    }

    #[test]
    fn the_walk_visits_every_seeded_id_once_per_round() {
        let mut seen: Vec<u32> = (0..ROWS).map(spread).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), ROWS as usize);
        assert_eq!((seen[0], seen[seen.len() - 1]), (1, ROWS));
    }

    #[test]
    fn the_report_gives_each_variant_its_difference_to_the_shipped_service() {
        let report = Report {
            machine: "m".into(),
            command: "cargo xtask bench --only instructions".into(),
            valgrind: "valgrind-3.19.0".into(),
            counts: vec![
                ("the service as shipped (nothing off)", 120_000_000),
                ("metrics off", 117_000_000),
            ],
            split: BTreeMap::from([
                ("MySQL driver (sqlx)", 30_000_000),
                ("allocator (mimalloc)", 10_000_000),
            ]),
        };
        let text = render(&report);
        assert!(
            text.contains("| the service as shipped (nothing off) | 60000 | - |"),
            "{text}"
        );
        assert!(
            text.contains("| metrics off | 58500 | -1500 (-2.5 %) |"),
            "{text}"
        );
        assert!(
            text.contains("| MySQL driver (sqlx) | 15000 | 75.0 % |"),
            "{text}"
        );
        let driver = text.find("MySQL driver").unwrap();
        let allocator = text.rfind("allocator").unwrap();
        assert!(driver < allocator, "largest first: {text}");
    }
}
