//! `cargo xtask bench --only profile`: where the service, and then the Go peer of the comparison
//! (bench/go-peer), spend their CPU time while wrk drives GET /api/tasks/{id}, sampled with
//! `perf record` and summarised with `perf report`; then both side by side, by category (kernel,
//! HTTP, JSON, database driver, runtime, malloc/GC, ...).
//!
//! perf samples the `cpu-clock` software event, so it also works in virtual machines that expose no
//! hardware counters (where `perf stat -e instructions` says "not supported"). The binary is the
//! working tree's release build with symbols, line tables and frame pointers (for `-g` call
//! stacks), built in its own target directory so the plain release build stays cached.

use std::path::Path;
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
    // Go keeps its symbols and, on amd64, frame pointers: the plain build profiles as it is.
    let peer = service::build_go_peer(sh)?;
    let scripts = Scripts::write(sh)?;

    util::step(&format!(
        "challenge: seeding {} tasks, starting (request logs off, as in the comparison)",
        service::ROWS
    ));
    let app = App::start(&binary, &server, "bench_profile")?;
    let challenge = profile(sh, &scripts, app, "challenge", &home)?;

    util::step(&format!(
        "Go peer: seeding {} tasks with `challenge`, starting",
        service::ROWS
    ));
    service::seed(&binary, &server, "bench_profile_go")?;
    let app = App::go_peer(&peer.path, &server, "bench_profile_go")?;
    let go = profile(sh, &scripts, app, "go-peer", &home)?;

    eprintln!(
        "\nWhere the CPU samples of each server fall, by the function a sample was in (its own \
         code, not what it calls), {} under wrk:\n",
        SCENARIOS[HEADLINE].name
    );
    eprintln!("{}", side_by_side(&challenge, &go));
    Ok(())
}

/// One profiled server: its load's figures and its samples' shares by category.
struct Profiled {
    rps: f64,
    shares: Vec<(Category, f64)>,
}

/// Warms `app` up, samples it with perf while wrk drives GET one task, prints and writes perf's
/// views (`<home>/report-<name>.txt`), and sums its samples by category.
fn profile(
    sh: &Shell,
    scripts: &Scripts,
    app: App,
    name: &str,
    home: &Path,
) -> anyhow::Result<Profiled> {
    service::run_scenario(sh, scripts, HEADLINE, &app, "2s")?;
    util::step(&format!(
        "{name}: perf record while wrk runs {} for {DURATION}",
        SCENARIOS[HEADLINE].name
    ));
    let data = home.join(format!("perf-{name}.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", FREQUENCY, "-g", "-o"])
        .arg(&data)
        .args(["-p", &app.pid().to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    let load = service::run_scenario(sh, scripts, HEADLINE, &app, DURATION);
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
        "\n{name}, {} while profiled: {:.0} requests/s, p99 {:.2} ms (perf's sampling included).",
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
        eprintln!("\n{name}: {} (`perf report {}`):\n", view.title, view.args);
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
    let self_by_symbol = cmd!(
        sh,
        "perf report -i {data} --stdio -g none --no-children --sort dso,symbol --percent-limit 0"
    )
    .quiet()
    .read()?;
    let report_path = home.join(format!("report-{name}.txt"));
    sh.write_file(&report_path, &whole)?;
    eprintln!(
        "\nwhole reports: {}; explore the call graphs with `perf report -i {}`",
        report_path.display(),
        data.display()
    );
    Ok(Profiled {
        rps: load.rps,
        shares: shares(&self_by_symbol),
    })
}

/// Where a sample's function belongs. Self time: a sample counts for the function it was in, not
/// for its callers, so `memcpy` called by the JSON encoder is "other", and the socket writes of
/// HTTP and of the database driver alike are "kernel".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Kernel,
    Http,
    Json,
    Database,
    Telemetry,
    /// The async runtime or Go's scheduler, with the I/O plumbing under both (tokio and mio;
    /// Go's `runtime`, `internal/poll`, `syscall`), locks and libc's system call wrappers.
    Runtime,
    /// malloc and free (glibc's, the service's allocator), Go's allocator and garbage collector.
    Alloc,
    /// The server's own code: `challenge::` in Rust, package `main` in Go.
    OwnCode,
    Other,
}

impl Category {
    const ALL: [Category; 9] = [
        Category::Kernel,
        Category::Http,
        Category::Json,
        Category::Database,
        Category::Telemetry,
        Category::Runtime,
        Category::Alloc,
        Category::OwnCode,
        Category::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            Category::Kernel => "kernel",
            Category::Http => "HTTP",
            Category::Json => "JSON",
            Category::Database => "database driver and pool",
            Category::Telemetry => "tracing, metrics, logs",
            Category::Runtime => "runtime/scheduler, I/O plumbing",
            Category::Alloc => "malloc/free, GC",
            Category::OwnCode => "the server's own code",
            Category::Other => "other (std, libc mem*, reflect, time, ...)",
        }
    }
}

/// The category of a sample in `symbol` of `dso` (perf's `--sort dso,symbol` columns, the symbol
/// after its `[k]`/`[.]` marker).
fn categorize(dso: &str, kernel: bool, symbol: &str) -> Category {
    if kernel || dso.starts_with("[kernel") {
        return Category::Kernel;
    }
    const GO_GC: [&str; 16] = [
        "mallocgc",
        "gcBgMarkWorker",
        "gcDrain",
        "scanobject",
        "greyobject",
        "markroot",
        "sweep",
        "mspan",
        "mheap",
        "mcache",
        "heapBits",
        "findObject",
        "gcWriteBarrier",
        "wbBuf",
        "memclrNoHeapPointers",
        "nextFreeFast",
    ];
    const C_ALLOC: [&str; 9] = [
        "malloc",
        "_int_malloc",
        "_int_free",
        "free",
        "cfree",
        "realloc",
        "_int_realloc",
        "calloc",
        "malloc_consolidate",
    ];
    let bare = symbol
        .trim_start_matches(['<', '&', '*', '('])
        .trim_start_matches("mut ");
    let bare = bare.trim_start_matches("dyn ");
    // glibc's names, without its prefixes and symbol version (`cfree@GLIBC_2.2.5`).
    let c_name = bare
        .trim_start_matches("__libc_")
        .trim_start_matches("__GI_");
    let c_name = c_name.split('@').next().unwrap_or(c_name);
    if C_ALLOC.contains(&c_name)
        || bare.starts_with("__rust_alloc")
        || bare.starts_with("__rust_dealloc")
        || bare.starts_with("__rust_realloc")
        || bare.starts_with("alloc::alloc::")
        || bare.starts_with("alloc::raw_vec::")
        || (bare.starts_with("runtime.") && GO_GC.iter().any(|gc| bare.contains(gc)))
    {
        return Category::Alloc;
    }
    // Go's memmove and memequal are libc's mem* functions of Go: "other", as those are.
    if bare.starts_with("runtime.mem") {
        return Category::Other;
    }
    // Dropping a value is counted where the value's type comes from.
    if let Some(inner) = bare.strip_prefix("core::ptr::drop_in_place<") {
        return categorize(dso, kernel, inner);
    }
    // Rust: the crate before the first `::`; of `<F as axum::handler::Handler<..>>::call`, the
    // trait's (`axum`), F being generic. Go: the package.
    let krate = bare
        .contains("::")
        .then(|| bare.split("::").next())
        .flatten()
        .map(|first| first.rsplit(" as ").next().unwrap_or(first));
    let package = go_package(bare);
    let by_library = LIBRARIES.iter().find(|(_, crates, packages)| {
        krate.is_some_and(|k| crates.contains(&k)) || packages.contains(&package)
    });
    match by_library {
        Some((category, _, _)) => *category,
        // libc's system call wrappers and locks; its mem* functions go with the rest.
        None if dso.starts_with("libc")
            && !bare.starts_with("__mem")
            && !bare.starts_with("mem") =>
        {
            Category::Runtime
        }
        None => Category::Other,
    }
}

/// The Rust crates and Go packages of each category, looked up in this order.
const LIBRARIES: [(Category, &[&str], &[&str]); 6] = [
    (
        Category::Json,
        &["serde_json", "serde", "serde_core", "itoa", "ryu"],
        &["encoding/json"],
    ),
    (
        Category::Database,
        &["sqlx", "sqlx_core", "sqlx_mysql", "deadpool"],
        &[
            "database/sql",
            "database/sql/driver",
            "github.com/go-sql-driver/mysql",
        ],
    ),
    (
        Category::Http,
        &[
            "hyper",
            "hyper_util",
            "http",
            "http_body",
            "http_body_util",
            "httparse",
            "httpdate",
            "axum",
            "axum_core",
            "matchit",
            "tower",
            "tower_http",
            "tower_layer",
            "tower_service",
        ],
        &[
            "net/http",
            "net/textproto",
            "net/url",
            "bufio",
            "net",
            "mime",
        ],
    ),
    (
        Category::Telemetry,
        &[
            "tracing",
            "tracing_core",
            "tracing_subscriber",
            "tracing_opentelemetry",
            "metrics",
            "metrics_exporter_prometheus",
            "metrics_util",
            "opentelemetry",
            "opentelemetry_sdk",
        ],
        &[],
    ),
    (
        Category::Runtime,
        &[
            "tokio",
            "mio",
            "parking_lot",
            "parking_lot_core",
            "crossbeam_utils",
        ],
        &[
            "runtime",
            "runtime/internal/syscall",
            "internal/poll",
            "syscall",
            "sync",
            "sync/atomic",
        ],
    ),
    (Category::OwnCode, &["challenge"], &["main"]),
];

/// The package of a Go symbol (`net/http` of `net/http.(*conn).serve`,
/// `github.com/go-sql-driver/mysql` of `github.com/go-sql-driver/mysql.(*mysqlConn).readPacket`):
/// up to the first `.` after the path's last `/`. Empty for a symbol without a dot (C, most Rust).
fn go_package(symbol: &str) -> &str {
    let head = &symbol[..symbol.find(['(', '[', '<', ' ']).unwrap_or(symbol.len())];
    let name_start = head.rfind('/').map_or(0, |slash| slash + 1);
    head[name_start..]
        .find('.')
        .map_or("", |dot| &symbol[..name_start + dot])
}

/// The share of samples per category from `perf report --no-children --sort dso,symbol` lines
/// (`  12.34%  challenge  [.] hyper::proto::h1::...`), in the order of `Category::ALL`.
fn shares(report: &str) -> Vec<(Category, f64)> {
    let mut sums = std::collections::BTreeMap::new();
    for line in report.lines().filter(|l| !l.trim_start().starts_with('#')) {
        // The symbol follows its `[k]` (kernel) or `[.]` (user space) marker; further columns
        // (perf adds some, `-` when empty, when its output is not a terminal) follow after two or
        // more spaces, which no symbol holds.
        let (at, kernel) = match (line.find(" [k] "), line.find(" [.] ")) {
            (Some(at), _) => (at, true),
            (None, Some(at)) => (at, false),
            (None, None) => continue,
        };
        let mut head = line[..at].split_whitespace();
        let Some(percent) = head
            .next()
            .and_then(|p| p.strip_suffix('%'))
            .and_then(|p| p.parse::<f64>().ok())
        else {
            continue;
        };
        let dso = head.next().unwrap_or("");
        let symbol = line[at + 5..].trim_start();
        let symbol = symbol.split("  ").next().unwrap_or(symbol).trim_end();
        *sums.entry(categorize(dso, kernel, symbol)).or_insert(0.0) += percent;
    }
    Category::ALL
        .iter()
        .map(|c| (*c, sums.get(c).copied().unwrap_or(0.0)))
        .collect()
}

/// The two servers' shares in one table, with the throughput each had while sampled.
fn side_by_side(challenge: &Profiled, go: &Profiled) -> String {
    let mut table =
        String::from("| where the samples fall | challenge | Go peer |\n| --- | ---: | ---: |\n");
    for ((category, c), (_, g)) in challenge.shares.iter().zip(&go.shares) {
        table.push_str(&format!("| {} | {c:.1} % | {g:.1} % |\n", category.name()));
    }
    table.push_str(&format!(
        "| requests/s while sampled | {:.0} | {:.0} |\n",
        challenge.rps, go.rps
    ));
    table
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

#[cfg(test)]
mod tests {
    use super::{Category, categorize, go_package, shares};

    #[test]
    fn go_packages_are_read_up_to_the_dot_after_the_last_slash() {
        assert_eq!(go_package("net/http.(*conn).serve"), "net/http");
        assert_eq!(
            go_package("github.com/go-sql-driver/mysql.(*mysqlConn).readPacket"),
            "github.com/go-sql-driver/mysql"
        );
        assert_eq!(go_package("runtime.mallocgc"), "runtime");
        assert_eq!(go_package("main.(*server).task"), "main");
        assert_eq!(go_package("hyper::proto::h1::role::parse_headers"), "");
        assert_eq!(go_package("epoll_wait"), "");
    }

    #[test]
    fn rust_symbols_go_by_their_crate_go_symbols_by_their_package() {
        let user = |symbol| categorize("challenge", false, symbol);
        assert_eq!(
            user("hyper::proto::h1::role::parse_headers"),
            Category::Http
        );
        assert_eq!(
            user(
                "<&mut serde_json::ser::Serializer<W,F> as serde::ser::Serializer>::serialize_str"
            ),
            Category::Json
        );
        assert_eq!(
            user("sqlx_mysql::connection::stream::MySqlStream::recv_packet"),
            Category::Database
        );
        assert_eq!(
            user("tokio::runtime::scheduler::multi_thread::worker::Context::run"),
            Category::Runtime
        );
        assert_eq!(
            user("tracing_subscriber::registry::sharded::Registry::new_span"),
            Category::Telemetry
        );
        assert_eq!(
            user("challenge::store::Store::get::{{closure}}"),
            Category::OwnCode
        );
        assert_eq!(
            user("core::ptr::drop_in_place<hyper::body::Incoming>"),
            Category::Http
        );
        assert_eq!(
            user("<F as axum::handler::Handler<(M,T1,T2),S>>::call::{{closure}}"),
            Category::Http
        );
        assert_eq!(user("core::str::converts::from_utf8"), Category::Other);
        let go = |symbol| categorize("go-peer", false, symbol);
        assert_eq!(go("net/http.(*conn).serve"), Category::Http);
        assert_eq!(go("bufio.(*Reader).Read"), Category::Http);
        assert_eq!(
            go("encoding/json.(*encodeState).reflectValue"),
            Category::Json
        );
        assert_eq!(
            go("github.com/go-sql-driver/mysql.(*mysqlConn).readPacket"),
            Category::Database
        );
        assert_eq!(go("database/sql.(*DB).conn"), Category::Database);
        assert_eq!(go("runtime.findRunnable"), Category::Runtime);
        assert_eq!(go("runtime/internal/syscall.Syscall6"), Category::Runtime);
        assert_eq!(go("runtime.memmove"), Category::Other);
        assert_eq!(go("internal/poll.(*FD).Read"), Category::Runtime);
        assert_eq!(go("main.(*server).task"), Category::OwnCode);
        assert_eq!(go("reflect.Value.Field"), Category::Other);
    }

    #[test]
    fn allocation_and_garbage_collection_are_one_category() {
        assert_eq!(
            categorize("libc.so.6", false, "_int_malloc"),
            Category::Alloc
        );
        assert_eq!(
            categorize("libc.so.6", false, "__libc_free"),
            Category::Alloc
        );
        assert_eq!(
            categorize("challenge", false, "alloc::raw_vec::RawVec<T,A>::grow_one"),
            Category::Alloc
        );
        assert_eq!(
            categorize("go-peer", false, "runtime.mallocgc"),
            Category::Alloc
        );
        assert_eq!(
            categorize("go-peer", false, "runtime.gcBgMarkWorker"),
            Category::Alloc
        );
        assert_eq!(
            categorize("go-peer", false, "runtime.scanobject"),
            Category::Alloc
        );
    }

    #[test]
    fn kernel_samples_and_libc_wrappers_are_told_apart_from_mem_functions() {
        assert_eq!(
            categorize("[kernel.kallsyms]", true, "do_syscall_64"),
            Category::Kernel
        );
        assert_eq!(
            categorize("libc.so.6", false, "__libc_recv"),
            Category::Runtime
        );
        assert_eq!(
            categorize("libc.so.6", false, "__memmove_avx_unaligned_erms"),
            Category::Other
        );
    }

    #[test]
    fn shares_sum_perf_report_lines_by_category() {
        let report = "\
# Overhead  Shared Object      Symbol
# ........  .................  ......
#
    40.00%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
    10.00%  [kernel.kallsyms]  [k] do_syscall_64
    12.50%  challenge          [.] <hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode
     7.50%  challenge          [.] serde_json::ser::format_escaped_str
     3.00%  libc.so.6          [.] _int_malloc                          -      -
     2.00%  libc.so.6          [.] cfree@GLIBC_2.2.5                    -      -
     5.00%  challenge          [.] core::fmt::write
";
        let shares = shares(report);
        let share = |c: Category| shares.iter().find(|(k, _)| *k == c).unwrap().1;
        assert_eq!(shares.len(), Category::ALL.len());
        assert!((share(Category::Kernel) - 50.0).abs() < 1e-9);
        assert!((share(Category::Http) - 12.5).abs() < 1e-9);
        assert!((share(Category::Json) - 7.5).abs() < 1e-9);
        assert!((share(Category::Alloc) - 5.0).abs() < 1e-9);
        assert!((share(Category::Other) - 5.0).abs() < 1e-9);
        assert_eq!(share(Category::Database), 0.0);
    }
}
