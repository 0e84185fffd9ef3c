//! `cargo xtask bench`: measures, then rewrites the measured sections of docs/BENCHMARKS.md.
//!
//! Each part writes one section between `<!-- bench:NAME -->` markers, so `--only` refreshes a part
//! and keeps the others' last figures.

mod deploy;
mod host_cpu;
mod image;
mod instructions;
mod profile;
mod proxy;
mod service;

use std::fmt::Write as _;

use anyhow::Context;
use clap::ValueEnum;
use xshell::{Shell, cmd};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Run only these parts (repeatable). Default: all.
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Service: also build the service at this git revision (in a temporary worktree) and run the
    /// same scenarios against both binaries, interleaved, on the same database server.
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
    /// Service: wrk runs per scenario and binary, reported as their median [default: 3 with
    /// --baseline, else 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Service: also build the service with the cargo feature `attribution` and measure GET one
    /// task with each of its features switched off in turn (CHALLENGE_ATTRIBUTION_OFF), and with
    /// request logs on: what each costs per request.
    #[arg(long)]
    attribution: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Part {
    /// The service under wrk, beside a plain Go peer of the same routes (bench/go-peer), next to
    /// sysbench's point-select ceiling of the same server.
    Service,
    /// The runtime image: size, cold build, rebuild after one edit, Compose up to healthy.
    Image,
    /// `deployer deploy` on Compose: prebuilt image to healthy, version upgrade.
    Deploy,
    /// The Compose stack's reverse proxy: its cost per request (through it vs the app container
    /// directly) and the requests lost while `deployer` upgrades and rolls back under load.
    Proxy,
    /// Instructions the service executes per GET one task (callgrind), with each part of the
    /// request path switched off in turn, and by crate. Not part of the default run.
    Instructions,
    /// Where the service and the Go peer spend CPU time serving GET one task (perf): printed and
    /// written under target/, not to the document. Not part of the default run.
    Profile,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Service => "service",
            Part::Image => "image",
            Part::Deploy => "deploy",
            Part::Proxy => "proxy",
            Part::Instructions => "instructions",
            Part::Profile => "profile",
        }
    }
}

const ALL: [Part; 4] = [Part::Service, Part::Image, Part::Deploy, Part::Proxy];
const DOC: &str = "docs/BENCHMARKS.md";

pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    let parts: Vec<Part> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only.clone()
    };
    anyhow::ensure!(
        parts.contains(&Part::Service)
            || (args.baseline.is_none() && args.rounds.is_none() && !args.attribution),
        "--baseline, --rounds and --attribution apply to the service part: add `--only service`"
    );
    let service = service::Options {
        baseline: args.baseline.clone(),
        rounds: args
            .rounds
            .unwrap_or(if args.baseline.is_some() { 3 } else { 1 }),
        attribution: args.attribution,
        command: invocation(),
    };
    let mut wrote = false;
    for part in parts {
        util::step(&format!("bench: {}", part.name()));
        let section = match part {
            Part::Service => service::measure(sh, &service)?,
            Part::Image => image::measure(sh)?,
            Part::Deploy => deploy::measure(sh)?,
            Part::Proxy => proxy::measure(sh, &invocation())?,
            Part::Instructions => instructions::measure(sh, &invocation())?,
            Part::Profile => {
                profile::run(sh)?;
                continue;
            }
        };
        write_section(sh, part.name(), &section)?;
        wrote = true;
    }
    if wrote {
        eprintln!("\nwrote {DOC}");
    }
    Ok(())
}

/// The command line as typed (`cargo xtask bench ...`), for the record.
fn invocation() -> String {
    std::iter::once("cargo xtask".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

fn skeleton() -> String {
    let mut doc = String::from(
        "# Benchmarks\n\nMeasured by `cargo xtask bench` (or `cargo xtask bench --only <part>`), which rewrites \
         the sections below. Figures are from one run on the machine described in each section; \
         they are not tests and nothing fails when a goal is missed.\n",
    );
    for part in ALL {
        let _ = write!(
            doc,
            "\n<!-- bench:{0} -->\n(not measured yet)\n<!-- /bench:{0} -->\n",
            part.name()
        );
    }
    doc
}

/// Writes one part's section into DOC as the file is now: a part runs for many minutes, and what
/// was written meanwhile (another part's run, an edit of the prose around the sections) stays.
fn write_section(sh: &Shell, name: &str, section: &str) -> anyhow::Result<()> {
    let doc = sh.read_file(DOC).unwrap_or_else(|_| skeleton());
    sh.write_file(DOC, replace_section(&doc, name, section))
        .with_context(|| format!("writing {DOC}"))
}

/// Replaces the text between the markers of `name`, appending the section when it is missing.
fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let block = format!("{open}\n{}\n{close}", body.trim_end());
    match (doc.find(&open), doc.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{}{}", &doc[..start], block, &doc[end + close.len()..])
        }
        _ => format!("{}\n{}\n", doc.trim_end(), block),
    }
}

/// What follows `prefix` on the first line (leading blanks ignored) that starts with it, trimmed:
/// how wrk, sysbench and /proc print their figures.
pub fn line_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim_start)
        .find_map(|line| line.strip_prefix(prefix))
        .map(str::trim)
}

/// One line describing the machine, for every section.
pub fn machine(sh: &Shell) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = sh
        .read_file("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            line_value(&c, "model name").map(|m| m.trim_start_matches(':').trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = sh
        .read_file("/proc/meminfo")
        .ok()
        .and_then(|m| {
            line_value(&m, "MemTotal:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let date = cmd!(sh, "date -u +%Y-%m-%dT%H:%MZ")
        .read()
        .unwrap_or_default();
    let rev = cmd!(sh, "git rev-parse --short HEAD")
        .read()
        .unwrap_or_default();
    format!("{date}, commit `{rev}`, {cpus} CPUs ({model}), {mem_gib:.0} GiB RAM")
}

/// How busy all CPUs are over `window` (percent), from /proc/stat: taken while the benchmark itself
/// is idle, it is what other work on the machine takes from the measurement.
pub fn cpu_busy(window: std::time::Duration) -> Option<f64> {
    let read = || cpu_times(&std::fs::read_to_string("/proc/stat").ok()?);
    let (busy_before, total_before) = read()?;
    std::thread::sleep(window);
    let (busy, total) = read()?;
    let total = total.checked_sub(total_before)?.max(1);
    Some(busy.checked_sub(busy_before)? as f64 / total as f64 * 100.0)
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none. Every
/// figure the bench reports over several runs is this.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Busy and total time of all CPUs from the `cpu` line of /proc/stat (user nice system idle iowait
/// irq softirq steal; guest time is already part of user).
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let fields = line_value(stat, "cpu ")?
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()
        .ok()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::{DOC, cpu_times, line_value, median, replace_section, write_section};

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn cpu_times_count_iowait_as_idle_and_guest_not_twice() {
        let stat = "cpu  100 5 20 800 50 1 2 3 40 0\ncpu0 50 2 10 400 25 0 1 1 20 0\nintr 1\n";
        assert_eq!(cpu_times(stat), Some((131, 981)));
    }

    #[test]
    fn line_value_is_what_follows_the_first_matching_prefix() {
        let text = "Running 10s test\n  Requests/sec:  14810.12\nVmHWM:\t  11468 kB\n";
        assert_eq!(line_value(text, "Requests/sec:"), Some("14810.12"));
        assert_eq!(line_value(text, "VmHWM:"), Some("11468 kB"));
        assert_eq!(line_value(text, "Transfer/sec:"), None);
    }

    #[test]
    fn replaces_only_the_named_section() {
        let doc = "head\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\n<!-- bench:b -->\nold b\n<!-- /bench:b -->\n";
        let out = replace_section(doc, "a", "new a\n");
        assert!(out.contains("new a") && !out.contains("old a") && out.contains("old b"));
        assert!(out.starts_with("head\n"));
    }

    #[test]
    fn a_section_is_written_into_the_file_as_it_is_then() {
        let sh = xshell::Shell::new().unwrap();
        let dir = sh.create_temp_dir().unwrap();
        sh.change_dir(dir.path());
        sh.create_dir("docs").unwrap();
        sh.write_file(DOC, "head\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\n")
            .unwrap();
        // Edited while a part measured: the edit stays when the part writes its section.
        sh.write_file(
            DOC,
            "head, edited\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\nprose added\n",
        )
        .unwrap();
        write_section(&sh, "a", "new a").unwrap();
        assert_eq!(
            sh.read_file(DOC).unwrap(),
            "head, edited\n<!-- bench:a -->\nnew a\n<!-- /bench:a -->\nprose added\n"
        );
    }

    #[test]
    fn appends_a_missing_section() {
        let out = replace_section("head\n", "c", "c body");
        assert!(out.ends_with("<!-- bench:c -->\nc body\n<!-- /bench:c -->\n"));
    }
}
