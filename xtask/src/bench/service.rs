//! The service under load (wrk), next to the database's own ceiling (sysbench point select). With
//! `--baseline REV` the binary built at REV runs the same scenarios, interleaved with the working
//! tree's, on the same database server.

mod app;
mod binary;
mod report;
mod sysbench;
pub mod wrk;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use xshell::Shell;

pub use app::{App, ROWS};
pub use binary::target_dir;
use report::Measured;
pub use report::Summary;
use wrk::WrkResult;

use crate::testdb::{self, DbServer};
use crate::util;

/// How long wrk drives each scenario per run, and warms each binary up before the first.
const DURATION: &str = "10s";
const WARMUP: &str = "2s";

pub struct Options {
    /// A git revision to build and measure next to the working tree.
    pub baseline: Option<String>,
    /// wrk runs per scenario and binary; the report shows their median.
    pub rounds: u32,
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

/// Checks the load tools (wrk, the mariadb client, and `more` as program and Debian package) and
/// finds the database server (`TEST_DATABASE_URL`, else a container).
pub fn prerequisites(
    sh: &Shell,
    more: &[(&str, &str)],
) -> anyhow::Result<(testdb::TestDatabase, DbServer)> {
    for (program, package) in [("wrk", "wrk"), ("mariadb", "mariadb-client")]
        .iter()
        .chain(more)
    {
        util::require_program(
            program,
            &format!("install it with `apt-get install {package}`"),
        )?;
    }
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

/// One binary under measurement and its wrk results, per scenario one per round.
struct Contender {
    label: &'static str,
    binary: binary::Binary,
    app: App,
    runs: Vec<Vec<WrkResult>>,
}

pub fn measure(sh: &Shell, options: &Options) -> anyhow::Result<String> {
    let (_db, server) = prerequisites(sh, &[("sysbench", "sysbench")])?;
    let mut binaries = Vec::new();
    if let Some(rev) = &options.baseline {
        binaries.push(("baseline", binary::at_revision(sh, rev)?));
    }
    binaries.push(("current", binary::current(sh)?));

    let started = Instant::now();
    let busy_before = other_work("before the wrk runs");
    let scripts = Scripts::write(sh)?;
    let mut contenders = Vec::new();
    for (label, binary) in binaries {
        util::step(&format!(
            "{label}: seeding {ROWS} tasks, starting, warming up"
        ));
        let database = format!("bench_challenge_{label}");
        let app = App::start(&binary.path, &server, &database)?;
        run_scenario(sh, &scripts, HEADLINE, &app, WARMUP)?;
        contenders.push(Contender {
            label,
            binary,
            app,
            runs: vec![Vec::new(); SCENARIOS.len()],
        });
    }

    // Round-major and alternating: each round runs every scenario on every binary, the binaries'
    // order flipping from one round to the next, so drift on the machine hits both alike.
    let count = contenders.len();
    for round in 0..options.rounds {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            for turn in 0..count {
                let contender = &mut contenders[(turn + round as usize) % count];
                util::step(&format!(
                    "round {}/{}: {} on {}",
                    round + 1,
                    options.rounds,
                    scenario.name,
                    contender.label
                ));
                let result = run_scenario(sh, &scripts, index, &contender.app, DURATION)?;
                contender.runs[index].push(result);
            }
        }
    }

    // Each service stops once its peak RSS is read, before sysbench runs.
    let mut measured = Vec::new();
    for contender in contenders {
        measured.push(Measured {
            revision: contender.binary.revision,
            peak_rss_kib: contender.app.peak_rss_kib()?,
            scenarios: contender
                .runs
                .iter()
                .map(|runs| Summary::of(runs))
                .collect(),
        });
    }
    let current = measured
        .pop()
        .context("the current binary is always measured")?;
    let baseline = measured.pop();
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
        ceiling,
        busy: busy_before.zip(busy_after),
    }))
}
