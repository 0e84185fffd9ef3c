//! The service section of docs/BENCHMARKS.md, from the figures measured.

use std::fmt::Write as _;

use super::sysbench::{self, Sysbench};
use super::wrk::{self, WrkResult};
use super::{HEADLINE, ROWS, SCENARIOS};

/// The goals the service is held to, on the headline scenario (GET one task) of the current binary.
const CEILING_SHARE_GOAL: f64 = 50.0;
const P99_GOAL_MS: f64 = 10.0;
const PEAK_RSS_GOAL_MIB: f64 = 40.0;

pub struct Context {
    pub machine: String,
    /// host:port of the database server.
    pub database: String,
    pub command: String,
    pub rounds: u32,
    pub duration: &'static str,
    pub baseline: Option<Measured>,
    pub current: Measured,
    pub ceiling: Sysbench,
    /// How busy the CPUs were (percent) just before and just after the wrk runs, with no benchmark
    /// process running: other work on the machine.
    pub busy: Option<(f64, f64)>,
}

/// One binary's figures.
pub struct Measured {
    pub revision: String,
    pub peak_rss_kib: u64,
    /// In the order of `SCENARIOS`.
    pub scenarios: Vec<Summary>,
}

impl Measured {
    fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }

    fn ceiling_share(&self, ceiling: &Sysbench) -> f64 {
        self.scenarios[HEADLINE].rps / ceiling.qps * 100.0
    }
}

/// The runs of one scenario on one binary: medians of each figure, errors summed.
#[derive(Debug)]
pub struct Summary {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Every run's requests/s, in the order measured.
    pub runs_rps: Vec<f64>,
}

impl Summary {
    pub fn of(runs: &[WrkResult]) -> Summary {
        let figure = |f: fn(&WrkResult) -> f64| median(runs.iter().map(f).collect());
        Summary {
            rps: figure(|r| r.rps),
            p50_ms: figure(|r| r.p50_ms),
            p99_ms: figure(|r| r.p99_ms),
            errors: runs.iter().map(WrkResult::errors).sum(),
            runs_rps: runs.iter().map(|r| r.rps).collect(),
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn render(cx: &Context) -> String {
    let (baseline, current) = (cx.baseline.as_ref(), &cx.current);
    let mut md = String::new();
    let _ = writeln!(md, "## Service throughput and latency\n");
    let _ = writeln!(md, "Machine: {}.", cx.machine);
    match baseline {
        Some(baseline) => {
            let _ = writeln!(
                md,
                "Revisions: baseline {}, current {}.",
                baseline.revision, current.revision
            );
        }
        None => {
            let _ = writeln!(md, "Revision: {}.", current.revision);
        }
    }
    let _ = writeln!(
        md,
        "Database: the server of `TEST_DATABASE_URL` ({}), {ROWS} seeded tasks{}. The service, wrk \
         and the database share the same CPUs. Service built with `cargo build --release`, default \
         configuration (JSON request logs at `info`, to /dev/null).\n",
        cx.database,
        if baseline.is_some() {
            " in a database of each binary's own"
        } else {
            ""
        },
    );
    let _ = writeln!(
        md,
        "Command: `{}`, i.e. `wrk -t{} -c{} -d{} --latency -s <script>` per run.",
        cx.command,
        wrk::THREADS,
        wrk::CONNECTIONS,
        cx.duration
    );
    let _ = writeln!(md, "{}", method(cx.rounds, baseline.is_some()));
    if let Some((before, after)) = cx.busy {
        let _ = writeln!(
            md,
            "Other work on the machine: the CPUs were {before:.0} % busy in the 3 s before the wrk \
             runs and {after:.0} % in the 3 s after, with no benchmark process running (near 0 % on \
             an otherwise idle machine)."
        );
    }
    md.push('\n');

    match baseline {
        Some(baseline) => compare_tables(&mut md, cx, baseline, current),
        None => single_table(&mut md, cx, current),
    }
    goals(&mut md, cx, baseline, current);
    md
}

fn method(rounds: u32, compared: bool) -> String {
    let runs = if rounds == 1 {
        "One run per scenario".to_owned()
    } else {
        format!(
            "{rounds} runs per scenario{}; figures are the median of the {rounds} (requests/s, p50 \
             and p99 each taken separately)",
            if compared { " and binary" } else { "" }
        )
    };
    let order = if compared {
        ", both binaries running side by side: each round runs every scenario on baseline and \
         current, the order flipping from one round to the next"
    } else {
        ""
    };
    format!(
        "{runs}{order}. Errors are wrk's non-2xx/3xx responses plus socket errors (connect, read, \
         write, timeout), summed over all runs. The sysbench ceiling runs once, after the wrk runs."
    )
}

fn ceiling_row() -> String {
    format!(
        "sysbench `oltp_point_select`, {} threads, {} s, one {ROWS}-row table",
        sysbench::THREADS,
        sysbench::SECONDS
    )
}

fn single_table(md: &mut String, cx: &Context, current: &Measured) {
    let _ = writeln!(md, "| scenario | requests/s | p50 | p99 | errors |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for (scenario, s) in SCENARIOS.iter().zip(&current.scenarios) {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            scenario.name, s.rps, s.p50_ms, s.p99_ms, s.errors
        );
    }
    let _ = writeln!(
        md,
        "| {} | {:.0} queries/s | | {:.2} ms | {} |",
        ceiling_row(),
        cx.ceiling.qps,
        cx.ceiling.p99_ms,
        cx.ceiling.errors
    );
    if cx.rounds > 1 {
        let _ = writeln!(md, "\n| scenario | runs (requests/s) |");
        let _ = writeln!(md, "| --- | --- |");
        for (scenario, s) in SCENARIOS.iter().zip(&current.scenarios) {
            let _ = writeln!(md, "| {} | {} |", scenario.name, runs(s));
        }
    }
    let _ = writeln!(
        md,
        "\nPeak RSS of the service (VmHWM): {:.1} MiB.\n",
        current.peak_rss_mib()
    );
}

fn compare_tables(md: &mut String, cx: &Context, baseline: &Measured, current: &Measured) {
    let _ = writeln!(
        md,
        "| scenario | baseline req/s | current req/s | current / baseline | baseline p99 | current p99 | errors baseline / current |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let (b, c) = (&baseline.scenarios[index], &current.scenarios[index]);
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2} ms | {:.2} ms | {} / {} |",
            scenario.name,
            b.rps,
            c.rps,
            c.rps / b.rps,
            b.p99_ms,
            c.p99_ms,
            b.errors,
            c.errors
        );
    }
    let _ = writeln!(
        md,
        "\nDatabase ceiling, {}: {:.0} queries/s, p99 {:.2} ms, {} errors. {} as a share of it: \
         baseline {:.0} %, current {:.0} %.\n",
        ceiling_row(),
        cx.ceiling.qps,
        cx.ceiling.p99_ms,
        cx.ceiling.errors,
        SCENARIOS[HEADLINE].name,
        baseline.ceiling_share(&cx.ceiling),
        current.ceiling_share(&cx.ceiling)
    );
    if cx.rounds > 1 {
        let _ = writeln!(
            md,
            "| scenario | baseline runs (req/s) | current runs (req/s) |"
        );
        let _ = writeln!(md, "| --- | --- | --- |");
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                scenario.name,
                runs(&baseline.scenarios[index]),
                runs(&current.scenarios[index])
            );
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Peak RSS of the service (VmHWM): baseline {:.1} MiB, current {:.1} MiB.\n",
        baseline.peak_rss_mib(),
        current.peak_rss_mib()
    );
}

fn runs(summary: &Summary) -> String {
    summary
        .runs_rps
        .iter()
        .map(|rps| format!("{rps:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn goals(md: &mut String, cx: &Context, baseline: Option<&Measured>, current: &Measured) {
    let met = |ok: bool| if ok { "yes" } else { "no" };
    let headline = &current.scenarios[HEADLINE];
    let share = current.ceiling_share(&cx.ceiling);
    let errors: u64 = current.scenarios.iter().map(|s| s.errors).sum();
    let _ = writeln!(
        md,
        "| goal ({}) | target | measured | met |",
        if baseline.is_some() {
            "current binary"
        } else {
            "service"
        }
    );
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    let _ = writeln!(
        md,
        "| GET one task vs point-select ceiling | >= {CEILING_SHARE_GOAL:.0} % | {share:.0} % | {} |",
        met(share >= CEILING_SHARE_GOAL)
    );
    let _ = writeln!(
        md,
        "| p99 at {} connections (GET one) | <= {P99_GOAL_MS:.0} ms | {:.2} ms | {} |",
        wrk::CONNECTIONS,
        headline.p99_ms,
        met(headline.p99_ms <= P99_GOAL_MS)
    );
    let _ = writeln!(
        md,
        "| peak RSS | <= {PEAK_RSS_GOAL_MIB:.0} MiB | {:.1} MiB | {} |",
        current.peak_rss_mib(),
        met(current.peak_rss_mib() <= PEAK_RSS_GOAL_MIB)
    );
    let _ = writeln!(md, "| errors | 0 | {errors} | {} |", met(errors == 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64, p99_ms: f64, non_2xx: u64) -> WrkResult {
        WrkResult {
            rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            non_2xx,
            socket_errors: 0,
        }
    }

    fn measured(revision: &str, rps: f64) -> Measured {
        Measured {
            revision: revision.to_owned(),
            peak_rss_kib: 11 * 1024,
            scenarios: SCENARIOS
                .iter()
                .map(|_| Summary::of(&[run(rps, 6.0, 0), run(rps + 10.0, 5.0, 0)]))
                .collect(),
        }
    }

    fn context(baseline: Option<Measured>, current: Measured) -> Context {
        Context {
            machine: "a machine".into(),
            database: "127.0.0.1:3306".into(),
            command: match baseline {
                Some(_) => "cargo xtask bench --only service --baseline e27a5ab".into(),
                None => "cargo xtask bench --only service".into(),
            },
            rounds: 2,
            duration: "10s",
            baseline,
            current,
            ceiling: Sysbench {
                qps: 60_000.0,
                p99_ms: 4.0,
                errors: 0,
            },
            busy: Some((1.0, 2.0)),
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn summary_takes_medians_and_sums_errors() {
        let s = Summary::of(&[run(100.0, 9.0, 1), run(300.0, 3.0, 0), run(200.0, 5.0, 2)]);
        assert_eq!((s.rps, s.p99_ms, s.errors), (200.0, 5.0, 3));
        assert_eq!(s.runs_rps, [100.0, 300.0, 200.0]);
    }

    #[test]
    fn comparison_shows_both_revisions_the_ratio_and_ceiling_shares() {
        let md = render(&context(
            Some(measured("`e27a5ab`", 15_000.0)),
            measured("`abc1234` + uncommitted changes (working tree)", 19_500.0),
        ));
        assert!(md.contains(
            "Revisions: baseline `e27a5ab`, current `abc1234` + uncommitted changes (working tree)."
        ));
        assert!(md.contains("Command: `cargo xtask bench --only service --baseline e27a5ab`"));
        assert!(md.contains(
            "| GET one random task | 15005 | 19505 | 1.30x | 5.50 ms | 5.50 ms | 0 / 0 |"
        ));
        assert!(md.contains("baseline 25 %, current 33 %"));
        assert!(md.contains("| GET one random task | 15000, 15010 | 19500, 19510 |"));
    }

    #[test]
    fn without_baseline_the_table_is_the_current_binary_alone() {
        let md = render(&context(None, measured("`abc1234`", 15_000.0)));
        assert!(md.contains("| GET one random task | 15005 | 2.75 ms | 5.50 ms | 0 |"));
        assert!(md.contains("| sysbench `oltp_point_select`, 64 threads, 10 s, one 10000-row table | 60000 queries/s | | 4.00 ms | 0 |"));
        assert!(!md.contains("baseline"));
    }
}
