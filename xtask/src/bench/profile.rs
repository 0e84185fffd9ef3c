//! `cargo xtask bench --only profile`: where the service spends its CPU time while wrk drives
//! GET /api/tasks/{id}, sampled with `perf record` and summarised with `perf report`.
//!
//! perf samples the `cpu-clock` software event, so it also works in virtual machines that expose no
//! hardware counters (where `perf stat -e instructions` says "not supported"). The binary is the
//! working tree's release build with symbols, line tables and frame pointers (for `-g` call
//! stacks), built in its own target directory so the plain release build stays cached.

use std::process::{Command, Stdio};

use anyhow::Context;
use xshell::{Shell, cmd};

use super::service::{self, App, HEADLINE, SCENARIOS, Scripts};
use crate::{setup, util};

/// Sampling frequency (Hz) and how long wrk drives the service while perf samples it.
const FREQUENCY: &str = "999";
const DURATION: &str = "10s";

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let (_db, server) = service::prerequisites(sh, &[&setup::LINUX_PERF])?;

    let home = service::target_dir().join("bench-profile");
    let target = home.join("target");
    util::step("building the release binary with symbols and frame pointers");
    {
        let _target = sh.push_env("CARGO_TARGET_DIR", &target);
        let _strip = sh.push_env("CARGO_PROFILE_RELEASE_STRIP", "none");
        let _debug = sh.push_env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
        let _flags = sh.push_env("RUSTFLAGS", "-C force-frame-pointers=yes");
        cmd!(sh, "cargo build --release -p challenge").run()?;
    }
    let binary = target.join("release/challenge");

    util::step(&format!(
        "seeding {} tasks, starting, warming up",
        service::ROWS
    ));
    let app = App::start(&binary, &server, "bench_profile")?;
    let scripts = Scripts::write(sh)?;
    service::run_scenario(sh, &scripts, HEADLINE, &app, "2s")?;

    util::step(&format!(
        "perf record while wrk runs {} for {DURATION}",
        SCENARIOS[HEADLINE].name
    ));
    let data = home.join("perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", FREQUENCY, "-g", "-o"])
        .arg(&data)
        .args(["-p", &app.pid().to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    let load = service::run_scenario(sh, &scripts, HEADLINE, &app, DURATION);
    // perf record writes its data when interrupted, as on Ctrl-C.
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let recorded = perf.wait()?;
    let load = load?;
    // It then ends by re-raising the SIGINT: that too is success.
    let interrupted = std::os::unix::process::ExitStatusExt::signal(&recorded) == Some(2);
    anyhow::ensure!(
        recorded.success() || interrupted,
        "perf record failed (see above); as a user other than root, lower \
         kernel.perf_event_paranoid (`sysctl kernel.perf_event_paranoid=1`)"
    );
    drop(app);

    eprintln!(
        "\n{} on the profiled binary: {:.0} requests/s, p99 {:.2} ms (perf's sampling included).",
        SCENARIOS[HEADLINE].name, load.rps, load.p99_ms
    );
    let mut whole = String::new();
    for view in VIEWS {
        let args = view.args.split_whitespace();
        let report = cmd!(
            sh,
            "perf report -i {data} --stdio -g none --percent-limit 0.5 {args...}"
        )
        .quiet()
        .read()?;
        eprintln!("\n{} (`perf report {}`):\n", view.title, view.args);
        for line in report
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(view.top)
        {
            eprintln!("{}", truncate(line, 160));
        }
        whole.push_str(&format!(
            "## {} (perf report {})\n{report}\n",
            view.title, view.args
        ));
    }
    let report_path = home.join("report.txt");
    sh.write_file(&report_path, &whole)?;
    eprintln!(
        "\nwhole reports: {}; explore the call graphs with `perf report -i {}`",
        report_path.display(),
        data.display()
    );
    Ok(())
}

/// A summary of the samples, printed (its first `top` lines) and written to the report.
struct View {
    title: &'static str,
    args: &'static str,
    top: usize,
}

const VIEWS: [View; 3] = [
    View {
        title: "Where the samples fall: kernel, the binary, libc",
        args: "--no-children --sort dso",
        top: 5,
    },
    View {
        title: "Inclusive cost (Children: the function and what it calls; then Self)",
        args: "--children --sort symbol",
        top: 30,
    },
    View {
        title: "Self cost (the function's own code)",
        args: "--no-children --sort symbol",
        top: 20,
    },
];

fn truncate(line: &str, chars: usize) -> &str {
    line.char_indices()
        .nth(chars)
        .map_or(line, |(at, _)| &line[..at])
}
