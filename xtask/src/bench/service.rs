//! The service under load (wrk), beside a plain Go peer serving the same routes (bench/go-peer) and
//! next to the database's own ceiling (sysbench point select). With `--baseline REV` the binary
//! built at REV runs the same scenarios, interleaved with the working tree's and the peer's, on the
//! same database server. With `--attribution` the build with the cargo feature `attribution` serves
//! GET one task with each of the service's own features switched off in turn.

mod app;
mod attribution;
mod binary;
mod peer;
mod report;
mod sysbench;
pub mod wrk;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use xshell::Shell;

pub use app::{App, ROWS, seed};
pub use binary::target_dir;
pub use peer::build as build_go_peer;
use report::Measured;
pub use report::Summary;
use wrk::WrkResult;

use crate::testdb::{self, DbServer};
use crate::{setup, util};

/// How long wrk drives each scenario per run, and warms each binary up before the first.
const DURATION: &str = "10s";
const WARMUP: &str = "2s";

pub struct Options {
    /// A git revision to build and measure next to the working tree.
    pub baseline: Option<String>,
    /// wrk runs per scenario and binary; the report shows their median.
    pub rounds: u32,
    /// Also measure the attribution build's variants (see `attribution`).
    pub attribution: bool,
    /// The command line that was run, for the report.
    pub command: String,
}

/// A wrk scenario: a Lua script, run after `ROWS = <seeded rows>` is defined.
pub struct Scenario {
    pub name: &'static str,
    file: &'static str,
    lua: &'static str,
}

/// The scenarios; the goals are about the headline one.
pub const HEADLINE: usize = 0;
pub const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "GET one random task",
        file: "get_one.lua",
        lua: "math.randomseed(42)
request = function()
  return wrk.format('GET', '/api/tasks/' .. math.random(1, ROWS))
end
",
    },
    Scenario {
        name: "GET a page of 20",
        file: "get_page.lua",
        lua: "math.randomseed(7)
request = function()
  return wrk.format('GET', '/api/tasks?limit=20&after=' .. math.random(0, ROWS - 20))
end
",
    },
    Scenario {
        name: "POST a task",
        file: "post.lua",
        lua: "wrk.method = 'POST'
wrk.body = '{\"title\":\"benchmark task\",\"description\":\"created by wrk\"}'
wrk.headers['Content-Type'] = 'application/json'
",
    },
];

/// The scenarios' scripts, written to a temporary directory.
pub struct Scripts {
    _dir: xshell::TempDir,
    paths: Vec<PathBuf>,
}

impl Scripts {
    pub fn write(sh: &Shell) -> anyhow::Result<Scripts> {
        let dir = sh.create_temp_dir()?;
        let paths = SCENARIOS
            .iter()
            .map(|scenario| {
                let path = dir.path().join(scenario.file);
                std::fs::write(&path, format!("ROWS = {ROWS}\n{}", scenario.lua))?;
                Ok(path)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Scripts { _dir: dir, paths })
    }

    pub fn path(&self, scenario: usize) -> &Path {
        &self.paths[scenario]
    }
}

/// Runs one scenario against one running service.
pub fn run_scenario(
    sh: &Shell,
    scripts: &Scripts,
    scenario: usize,
    app: &App,
    duration: &str,
) -> anyhow::Result<WrkResult> {
    wrk::run(sh, scripts.path(scenario), &app.tasks_url(), duration)
}

/// Installs the load tools when missing (wrk, the mariadb client and `more`, as `cargo xtask setup`
/// installs its packages: as root with apt-get, else a clear error with the command to run) and
/// finds the database server (`TEST_DATABASE_URL`, else a container).
pub fn prerequisites(
    sh: &Shell,
    more: &[&setup::Package],
) -> anyhow::Result<(testdb::TestDatabase, DbServer)> {
    let mut packages = vec![&setup::WRK, &setup::MARIADB_CLIENT];
    packages.extend_from_slice(more);
    setup::ensure_packages(sh, &packages)?;
    let db = testdb::provide(sh)?;
    let server = DbServer::parse(db.url())?;
    Ok((db, server))
}

/// Samples how busy the CPUs are while no benchmark process runs, and warns when other work would
/// take a visible share of the measurement.
pub fn other_work(when: &str) -> Option<f64> {
    let busy = super::cpu_busy(Duration::from_secs(3));
    if let Some(busy) = busy.filter(|busy| *busy > 10.0) {
        eprintln!(
            "warning: {when}, the CPUs are {busy:.0} % busy with other work; the figures will be low and noisy"
        );
    }
    busy
}

/// A server under measurement and its runs: per scenario, one per round.
struct Contender {
    label: &'static str,
    /// How the report names what ran.
    revision: String,
    app: App,
    runs: Vec<Vec<Run>>,
}

/// One wrk run and the server's own CPU time per request over it.
struct Run {
    wrk: WrkResult,
    cpu_us: f64,
}

/// The service's database for the Go peer: seeded by the working tree's `challenge`, so both serve
/// the same rows.
const PEER_DATABASE: &str = "bench_go_peer";
/// The attribution build's database, seeded once and served by each of its variants in turn.
const ATTRIBUTION_DATABASE: &str = "bench_challenge_attribution";

pub fn measure(sh: &Shell, options: &Options) -> anyhow::Result<String> {
    let (_db, server) = prerequisites(sh, &[&setup::SYSBENCH])?;
    let mut binaries = Vec::new();
    if let Some(rev) = &options.baseline {
        binaries.push(("baseline", binary::at_revision(sh, rev)?));
    }
    let current = binary::current(sh)?;
    let go_peer = peer::build(sh)?;
    let attribution_binary = if options.attribution {
        Some(attribution::build(sh)?)
    } else {
        None
    };
    let ticks_per_second = app::clock_ticks_per_second()?;

    let started = Instant::now();
    let busy_before = other_work("before the wrk runs");
    let scripts = Scripts::write(sh)?;
    let mut contenders = Vec::new();
    for (label, binary) in binaries
        .iter()
        .map(|(label, binary)| (*label, binary))
        .chain([("current", &current)])
    {
        util::step(&format!(
            "{label}: seeding {ROWS} tasks, starting, warming up"
        ));
        let database = format!("bench_challenge_{label}");
        let app = App::start(&binary.path, &server, &database)?;
        run_scenario(sh, &scripts, HEADLINE, &app, WARMUP)?;
        contenders.push(Contender {
            label,
            revision: binary.revision.clone(),
            app,
            runs: (0..SCENARIOS.len()).map(|_| Vec::new()).collect(),
        });
    }
    util::step(&format!(
        "Go peer: seeding {ROWS} tasks with the current `challenge`, starting, warming up"
    ));
    app::seed(&current.path, &server, PEER_DATABASE)?;
    let peer_app = App::go_peer(&go_peer.path, &server, PEER_DATABASE)?;
    run_scenario(sh, &scripts, HEADLINE, &peer_app, WARMUP)?;
    contenders.push(Contender {
        label: "Go peer",
        revision: go_peer.description.clone(),
        app: peer_app,
        runs: (0..SCENARIOS.len()).map(|_| Vec::new()).collect(),
    });
    if let Some(binary) = &attribution_binary {
        util::step(&format!("attribution build: seeding {ROWS} tasks"));
        app::seed(binary, &server, ATTRIBUTION_DATABASE)?;
    }
    let variants = attribution::variants();
    let mut variant_runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();

    // Round-major and alternating: each round runs every scenario on every server, their order
    // turning from one round to the next, so drift on the machine hits all alike.
    let count = contenders.len();
    let measured_run = |app: &App, scenario: usize| -> anyhow::Result<Run> {
        let before = app.cpu_ticks()?;
        let (wrk, requests) =
            wrk::run_counted(sh, scripts.path(scenario), &app.tasks_url(), DURATION)?;
        let ticks = app.cpu_ticks()?.saturating_sub(before);
        Ok(Run {
            wrk,
            cpu_us: cpu_us_per_request(ticks, ticks_per_second, requests),
        })
    };
    for round in 0..options.rounds as usize {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            for turn in 0..count {
                let contender = &mut contenders[(turn + round) % count];
                util::step(&format!(
                    "round {}/{}: {} on {}",
                    round + 1,
                    options.rounds,
                    scenario.name,
                    contender.label
                ));
                let run = measured_run(&contender.app, index)?;
                contender.runs[index].push(run);
            }
        }
        // The attribution variants, one at a time (each started, warmed up, measured, stopped),
        // their order turning too.
        let Some(attribution_binary) = &attribution_binary else {
            continue;
        };
        for turn in 0..variants.len() {
            let index = (turn + round) % variants.len();
            let variant = &variants[index];
            util::step(&format!(
                "round {}/{}: {} on {}",
                round + 1,
                options.rounds,
                SCENARIOS[HEADLINE].name,
                variant.name
            ));
            let (binary, database) = match variant.build {
                attribution::Build::Attribution => (attribution_binary, ATTRIBUTION_DATABASE),
                attribution::Build::Normal => (&current.path, "bench_challenge_current"),
            };
            let app = App::serve(
                binary,
                &server,
                database,
                &[
                    ("RUST_LOG", variant.rust_log),
                    (attribution::OFF_VARIABLE, variant.off.as_deref()),
                ],
            )?;
            run_scenario(sh, &scripts, HEADLINE, &app, WARMUP)?;
            variant_runs[index].push(measured_run(&app, HEADLINE)?);
        }
    }

    // Each server stops once its peak RSS is read, before sysbench runs.
    let mut measured = Vec::new();
    for contender in contenders {
        measured.push(Measured {
            revision: contender.revision,
            peak_rss_kib: contender.app.peak_rss_kib()?,
            scenarios: contender.runs.iter().map(|runs| summary(runs)).collect(),
        });
    }
    let peer = measured.pop().context("the Go peer is always measured")?;
    let current = measured
        .pop()
        .context("the current binary is always measured")?;
    let baseline = measured.pop();
    let attribution = attribution_binary.map(|_| {
        variants
            .into_iter()
            .zip(&variant_runs)
            .map(|(variant, runs)| report::VariantRow {
                summary: summary(runs),
                variant,
            })
            .collect()
    });
    let busy_after = other_work("after the wrk runs");

    util::step("sysbench oltp_point_select (the database ceiling)");
    let ceiling = sysbench::point_select(sh, &server)?;
    eprintln!(
        "measuring took {:.0} s (builds excluded)",
        started.elapsed().as_secs_f64()
    );
    Ok(report::render(&report::Context {
        machine: super::machine(sh),
        database: format!("{}:{}", server.host, server.port),
        command: options.command.clone(),
        rounds: options.rounds,
        duration: DURATION,
        baseline,
        current,
        peer,
        attribution,
        ceiling,
        busy: busy_before.zip(busy_after),
    }))
}

/// Medians of the runs' figures and of their CPU time per request.
fn summary(runs: &[Run]) -> Summary {
    let wrk: Vec<WrkResult> = runs.iter().map(|run| run.wrk.clone()).collect();
    Summary::of(&wrk).with_cpu(runs.iter().map(|run| run.cpu_us).collect())
}

/// A server's CPU time per request (µs) from the clock ticks it used over a run of `requests`.
pub fn cpu_us_per_request(ticks: u64, ticks_per_second: u64, requests: u64) -> f64 {
    ticks as f64 / ticks_per_second as f64 * 1e6 / requests.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::cpu_us_per_request;

    #[test]
    fn cpu_per_request_is_the_ticks_in_microseconds_over_the_requests() {
        // 10 s of CPU (1000 ticks of 10 ms) for 100 000 requests: 100 µs each.
        assert_eq!(cpu_us_per_request(1000, 100, 100_000), 100.0);
        // No request completed: the time is not divided by zero.
        assert_eq!(cpu_us_per_request(5, 100, 0), 50_000.0);
    }
}
