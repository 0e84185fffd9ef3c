//! The service section of docs/BENCHMARKS.md, from the figures measured.

use std::fmt::Write as _;

use super::attribution::{Reference, Variant};
use super::sysbench::{self, Sysbench};
use super::wrk::{self, WrkResult};
use super::{HEADLINE, ROWS, SCENARIOS};
use crate::bench::median;

/// The goals the service is held to, on the headline scenario (GET one task) of the current binary.
const CEILING_SHARE_GOAL: f64 = 50.0;
const P99_GOAL_MS: f64 = 10.0;
const PEAK_RSS_GOAL_MIB: f64 = 40.0;
/// GET one task: requests/s of the service over the Go peer's, in the same run.
const PEER_RATIO_GOAL: f64 = 1.10;

pub struct Context {
    pub machine: String,
    /// host:port of the database server.
    pub database: String,
    pub command: String,
    pub rounds: u32,
    pub duration: &'static str,
    pub baseline: Option<Measured>,
    pub current: Measured,
    /// The Go peer (bench/go-peer), measured in the same rounds.
    pub peer: Measured,
    /// The attribution variants (`--attribution`), GET one task only.
    pub attribution: Option<Vec<VariantRow>>,
    pub ceiling: Sysbench,
    /// How busy the CPUs were (percent) just before and just after the wrk runs, with no benchmark
    /// process running: other work on the machine.
    pub busy: Option<(f64, f64)>,
}

/// One attribution variant's figures on GET one task.
pub struct VariantRow {
    pub variant: Variant,
    pub summary: Summary,
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
    /// The server's own CPU time (user + system) per request, µs, median of the runs; None when
    /// not measured.
    pub cpu_us: Option<f64>,
}

impl Summary {
    /// Each run's requests/s, in the order they ran: `9644, 8017, 8849`.
    pub fn runs_list(&self) -> String {
        self.runs_rps
            .iter()
            .map(|rps| format!("{rps:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn of(runs: &[WrkResult]) -> Summary {
        let figure = |f: fn(&WrkResult) -> f64| median(runs.iter().map(f).collect());
        Summary {
            rps: figure(|r| r.rps),
            p50_ms: figure(|r| r.p50_ms),
            p99_ms: figure(|r| r.p99_ms),
            errors: runs.iter().map(WrkResult::errors).sum(),
            runs_rps: runs.iter().map(|r| r.rps).collect(),
            cpu_us: None,
        }
    }

    /// With the CPU time per request of each run (µs), as their median.
    pub fn with_cpu(self, cpu_us: Vec<f64>) -> Summary {
        Summary {
            cpu_us: (!cpu_us.is_empty()).then(|| median(cpu_us)),
            ..self
        }
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
        "Database: the server of `TEST_DATABASE_URL` ({}), {ROWS} seeded tasks in a database of each \
         server's own. The service, the Go peer, wrk and the database share the same CPUs. Service \
         built with `cargo build --release`, default configuration except request logs off \
         (`RUST_LOG=warn`), as the Go peer logs nothing.",
        cx.database,
    );
    let _ = writeln!(
        md,
        "Go peer: {}: `net/http`, `database/sql` and github.com/go-sql-driver/mysql (Debian's \
         packages), a pool of 16 connections, one prepared statement per route, \
         `json.NewEncoder(w).Encode`; no metrics, request ids, timeouts or logs, not tuned. Its \
         database is seeded by the current `challenge migrate --seed`.\n",
        cx.peer.revision
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
    peer_table(&mut md, cx.rounds, current, &cx.peer);
    if let Some(rows) = &cx.attribution {
        attribution_table(&mut md, rows, current, &cx.peer);
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
        ", the servers running side by side: each round runs every scenario on baseline, current \
         and the Go peer, their order turning from one round to the next"
    } else {
        ", both servers running side by side: each round runs every scenario on current and the \
         Go peer, the order flipping from one round to the next"
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
            let _ = writeln!(md, "| {} | {} |", scenario.name, s.runs_list());
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
        runs_table(
            md,
            ("baseline", &baseline.scenarios),
            ("current", &current.scenarios),
        );
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Peak RSS of the service (VmHWM): baseline {:.1} MiB, current {:.1} MiB.\n",
        baseline.peak_rss_mib(),
        current.peak_rss_mib()
    );
}

/// The service beside the Go peer, scenario by scenario.
fn peer_table(md: &mut String, rounds: u32, current: &Measured, peer: &Measured) {
    let _ = writeln!(md, "### Beside the Go peer\n");
    let _ = writeln!(
        md,
        "| scenario | challenge req/s | Go peer req/s | challenge / Go | p50 challenge / Go | p99 challenge / Go | errors challenge / Go | CPU per request challenge / Go |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let (c, g) = (&current.scenarios[index], &peer.scenarios[index]);
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {} / {} | {} / {} |",
            scenario.name,
            c.rps,
            g.rps,
            c.rps / g.rps,
            c.p50_ms,
            g.p50_ms,
            c.p99_ms,
            g.p99_ms,
            c.errors,
            g.errors,
            micros(c.cpu_us),
            micros(g.cpu_us),
        );
    }
    if rounds > 1 {
        md.push('\n');
        runs_table(
            md,
            ("challenge", &current.scenarios),
            ("Go peer", &peer.scenarios),
        );
    }
    let _ = writeln!(
        md,
        "\nCPU per request: the server process's own CPU time (user + system, all threads, from \
         /proc/<pid>/stat) over the run, divided by the requests wrk completed; the database's and \
         wrk's time are not in it. Peak RSS (VmHWM): challenge {:.1} MiB, Go peer {:.1} MiB.\n",
        current.peak_rss_mib(),
        peer.peak_rss_mib()
    );
}

/// What each feature costs GET one task: the attribution variants against their reference.
fn attribution_table(md: &mut String, rows: &[VariantRow], current: &Measured, peer: &Measured) {
    let peer_rps = peer.scenarios[HEADLINE].rps;
    let nothing_off = rows
        .iter()
        .find(|row| row.variant.reference == Reference::Itself)
        .map(|row| &row.summary);
    let current_headline = &current.scenarios[HEADLINE];
    let _ = writeln!(md, "### What the service's features cost (GET one task)\n");
    let _ = writeln!(
        md,
        "The service built with `cargo build --release -p challenge --features attribution`, which \
         switches off the features named in `CHALLENGE_ATTRIBUTION_OFF` (`metrics`, `request-id`, \
         `tracing`, `limits`), request logs off (`RUST_LOG=warn`) like the comparison; then the \
         normal build with its request logs on (`RUST_LOG` unset: a JSON line per request, to \
         /dev/null). Each variant is started on its own, warmed up, and runs the same wrk load in \
         the same rounds as the Go peer. The difference is in CPU time per request against the \
         reference: the attribution build with nothing off, or for the log line the normal build \
         with logs off (current, above); negative: the variant spends less, i.e. what the \
         feature costs.\n"
    );
    let _ = writeln!(
        md,
        "| variant | GET one req/s | ratio to the Go peer | CPU per request | difference to its reference |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let reference = match row.variant.reference {
            Reference::Itself => None,
            Reference::NothingOff => nothing_off,
            Reference::Current => Some(current_headline),
        };
        let difference = match (reference.and_then(|r| r.cpu_us), row.summary.cpu_us) {
            (Some(reference), Some(cpu)) => format!("{:+.1} µs", cpu - reference),
            _ => "(reference)".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2}x | {} | {} |",
            row.variant.name,
            row.summary.rps,
            row.summary.rps / peer_rps,
            micros(row.summary.cpu_us),
            difference
        );
    }
    md.push('\n');
}

fn micros(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |us| format!("{us:.0} µs"))
}

/// Each scenario's runs (requests/s) of two servers side by side.
fn runs_table(md: &mut String, left: (&str, &[Summary]), right: (&str, &[Summary])) {
    let _ = writeln!(
        md,
        "| scenario | {} runs (req/s) | {} runs (req/s) |",
        left.0, right.0
    );
    let _ = writeln!(md, "| --- | --- | --- |");
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            scenario.name,
            left.1[index].runs_list(),
            right.1[index].runs_list()
        );
    }
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
    let ratio = headline.rps / cx.peer.scenarios[HEADLINE].rps;
    let _ = writeln!(
        md,
        "| GET one task vs the Go peer (same run) | >= {PEER_RATIO_GOAL:.2}x | {ratio:.2}x | {} |",
        met(ratio >= PEER_RATIO_GOAL)
    );
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
    use super::super::attribution;
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
            peer: measured("`bench/go-peer/main.go` built with go1.19.8", 12_000.0),
            attribution: None,
            ceiling: Sysbench {
                qps: 60_000.0,
                p99_ms: 4.0,
                errors: 0,
            },
            busy: Some((1.0, 2.0)),
        }
    }

    /// GET one task at `rps`, `cpu_us` of CPU per request.
    fn headline(rps: f64, cpu_us: f64) -> Summary {
        Summary::of(&[run(rps, 6.0, 0)]).with_cpu(vec![cpu_us])
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

    #[test]
    fn summary_cpu_is_the_median_of_the_runs_and_absent_when_unmeasured() {
        let s = Summary::of(&[run(1.0, 1.0, 0)]);
        assert_eq!(s.cpu_us, None);
        assert_eq!(s.with_cpu(vec![90.0, 70.0, 80.0]).cpu_us, Some(80.0));
    }

    #[test]
    fn the_go_peer_table_shows_both_servers_the_ratio_and_peak_rss() {
        let mut current = measured("`abc1234`", 15_000.0);
        current.scenarios[HEADLINE] = headline(15_000.0, 95.0);
        current.peak_rss_kib = 12 * 1024;
        let mut cx = context(None, current);
        cx.peer.scenarios[HEADLINE] = headline(12_000.0, 70.0);
        cx.peer.peak_rss_kib = 9 * 1024 + 512;
        let md = render(&cx);
        assert!(md.contains("Go peer: `bench/go-peer/main.go` built with go1.19.8:"));
        assert!(md.contains("request logs off (`RUST_LOG=warn`), as the Go peer logs nothing"));
        assert!(md.contains(
            "| GET one random task | 15000 | 12000 | 1.25x | 3.00 / 3.00 ms | 6.00 / 6.00 ms | 0 / 0 | 95 µs / 70 µs |"
        ));
        assert!(md.contains("| GET a page of 20 | 15005 | 12005 | 1.25x |"));
        assert!(md.contains("Peak RSS (VmHWM): challenge 12.0 MiB, Go peer 9.5 MiB."));
        // Two rounds: each server's runs, in the order measured.
        assert!(md.contains("| GET a page of 20 | 15000, 15010 | 12000, 12010 |"));
        assert!(md.contains("| GET one task vs the Go peer (same run) | >= 1.10x | 1.25x | yes |"));
    }

    #[test]
    fn the_go_peer_goal_is_missed_below_1_10x() {
        let mut cx = context(None, measured("`abc1234`", 10_500.0));
        cx.peer = measured("peer", 10_000.0);
        let md = render(&cx);
        assert!(md.contains("| GET one task vs the Go peer (same run) | >= 1.10x | 1.05x | no |"));
    }

    #[test]
    fn attribution_rows_show_the_ratio_and_the_cpu_difference_to_their_reference() {
        let mut current = measured("`abc1234`", 15_000.0);
        current.scenarios[HEADLINE] = headline(15_000.0, 95.0);
        let mut cx = context(None, current);
        cx.peer.scenarios[HEADLINE] = headline(12_000.0, 70.0);
        let cpu = [100.0, 96.6, 90.0, 99.0, 100.0, 80.0, 110.0];
        let rps = [
            14_000.0, 14_400.0, 15_600.0, 14_100.0, 14_000.0, 18_000.0, 12_600.0,
        ];
        cx.attribution = Some(
            attribution::variants()
                .into_iter()
                .zip(cpu.iter().zip(rps))
                .map(|(variant, (cpu, rps))| VariantRow {
                    variant,
                    summary: headline(rps, *cpu),
                })
                .collect(),
        );
        let md = render(&cx);
        assert!(
            md.contains(
                "| attribution build, nothing off | 14000 | 1.17x | 100 µs | (reference) |"
            )
        );
        assert!(
            md.contains("| attribution build, `metrics` off | 14400 | 1.20x | 97 µs | -3.4 µs |")
        );
        assert!(md.contains(
            "| attribution build, `request-id` off | 15600 | 1.30x | 90 µs | -10.0 µs |"
        ));
        assert!(
            md.contains("| attribution build, all four off | 18000 | 1.50x | 80 µs | -20.0 µs |")
        );
        // The log line is set against the normal build with logs off (95 µs), not nothing off.
        assert!(md.contains(
            "| normal build, request logs on (`RUST_LOG` unset) | 12600 | 1.05x | 110 µs | +15.0 µs |"
        ));
    }

    #[test]
    fn without_attribution_there_is_no_attribution_table() {
        let md = render(&context(None, measured("`abc1234`", 15_000.0)));
        assert!(!md.contains("What the service's features cost"));
    }
}
