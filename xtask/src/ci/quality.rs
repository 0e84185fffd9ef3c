//! The code stages: `lint`, `test` and `coverage`.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::test::Suite;
use crate::{containers, pytools, testdb, util};

/// LLVM's tools from Debian's `llvm-19` (rustup's llvm-tools component is not needed): 19 reads
/// the coverage profiles rustc 1.95 writes.
const LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
/// The cargo-llvm-cov version `cargo xtask setup` installs.
const LLVM_COV_VERSION: &str = crate::setup::LLVM_COV.version;

/// `cargo xtask test`'s lint suite (clippy's diagnostics kept as JSON for SonarQube), then hadolint
/// and yamllint over the whole repository.
pub fn lint(sh: &Shell, reports: &Path) -> anyhow::Result<String> {
    let clippy = reports.join("clippy.json");
    crate::test::lint(sh, Some(&clippy))?;
    containers::hadolint(sh, Some(&reports.join("hadolint.json")))?;
    util::step("yamllint --strict (every YAML file of the repository)");
    let yamllint = pytools::tool(sh, "yamllint")?;
    cmd!(
        sh,
        "{yamllint} --strict --format parsable --config-file .yamllint ."
    )
    .run()
    .context("yamllint found problems (listed above)")?;
    Ok(format!(
        "rustfmt, clippy, machete, hadolint, yamllint clean; clippy report {}",
        relative(&clippy)
    ))
}

/// The suites of `cargo xtask test` but lint (the `lint` stage runs it), or those of `--only`; the
/// rust suite under nextest with JUnit XML.
pub fn test(sh: &Shell, reports: &Path, args: crate::test::Args) -> anyhow::Result<String> {
    let junit = reports.join("junit.xml");
    // A report of an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(&junit);
    anyhow::ensure!(
        !args.coverage,
        "`ci test` reports JUnit XML; coverage is its own stage: `cargo xtask ci coverage`"
    );
    let args = if args.only.is_empty() {
        crate::test::Args {
            only: crate::test::ALL
                .into_iter()
                .filter(|suite| *suite != Suite::Lint)
                .collect(),
            coverage: false,
            no_setup: args.no_setup,
        }
    } else {
        args
    };
    crate::test::run_with_reports(sh, &args, Some(&junit))?;
    let tests = std::fs::read_to_string(&junit)
        .ok()
        .and_then(|xml| junit_count(&xml));
    Ok(match tests {
        Some(count) => format!("{count} tests passed; JUnit report {}", relative(&junit)),
        None => "the requested suites passed (no rust suite: no JUnit report)".to_owned(),
    })
}

/// Unit and integration tests (against a real database) of every crate but the container tests,
/// instrumented by cargo-llvm-cov in its own target directory (target/llvm-cov-target), as LCOV.
pub fn coverage(sh: &Shell, reports: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        cmd!(sh, "cargo llvm-cov --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok(),
        "cargo-llvm-cov is not installed: `cargo install cargo-llvm-cov --locked --version \
         {LLVM_COV_VERSION}` (what `cargo xtask setup` does)"
    );
    let llvm_cov = Path::new(LLVM_BIN).join("llvm-cov");
    let llvm_profdata = Path::new(LLVM_BIN).join("llvm-profdata");
    // An LLVM_COV already set (another LLVM of version 19 or newer) is kept.
    let tools_set = std::env::var_os("LLVM_COV").is_some();
    anyhow::ensure!(
        tools_set || llvm_cov.is_file(),
        "{} is missing: `cargo xtask setup` installs it (Debian's llvm-19), or set LLVM_COV and LLVM_PROFDATA to LLVM 19+ tools",
        llvm_cov.display()
    );
    let _cov = (!tools_set).then(|| sh.push_env("LLVM_COV", &llvm_cov));
    let _profdata = (!tools_set).then(|| sh.push_env("LLVM_PROFDATA", &llvm_profdata));
    let db = testdb::provide(sh)?;
    let _db = sh.push_env("TEST_DATABASE_URL", db.url());
    let lcov = reports.join("lcov.info");
    let root = util::project_root();
    let profiles = root.join("target").join("llvm-cov-target");
    // A leftover of an interrupted run would count twice.
    move_stray_profiles(&root, None)?;
    util::step("cargo llvm-cov --no-report --workspace --exclude e2e");
    cmd!(
        sh,
        "cargo llvm-cov --no-report --workspace --exclude e2e --no-fail-fast"
    )
    .run()
    .context("the tests failed under coverage instrumentation")?;
    // The service's tests start the `challenge` binary with a cleared environment, so it writes its
    // profile as default_*.profraw into its working directory instead of where LLVM_PROFILE_FILE
    // says: moved to where cargo-llvm-cov merges profiles, they count too (and leave no litter).
    let moved = move_stray_profiles(&root, Some(&profiles))?;
    util::step(&format!(
        "cargo llvm-cov report --lcov ({moved} profiles of the spawned service binary added)"
    ));
    cmd!(sh, "cargo llvm-cov report --lcov --output-path {lcov}")
        .run()
        .context("cargo llvm-cov report")?;
    let text =
        std::fs::read_to_string(&lcov).with_context(|| format!("reading {}", lcov.display()))?;
    let (hit, found) = lcov_lines(&text);
    anyhow::ensure!(found > 0, "{} holds no line records", lcov.display());
    Ok(format!(
        "line coverage {:.1} % ({hit} of {found} lines); LCOV report {}",
        percent(hit, found),
        relative(&lcov)
    ))
}

/// Moves the `default_*.profraw` files a process without LLVM_PROFILE_FILE wrote into the workspace
/// root or a member's directory to `into` (deletes them without it); returns how many.
fn move_stray_profiles(root: &Path, into: Option<&Path>) -> anyhow::Result<usize> {
    let mut dirs = vec![root.to_path_buf(), root.join("xtask")];
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        dirs.extend(crates.filter_map(Result::ok).map(|entry| entry.path()));
    }
    let mut moved = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.starts_with("default_") && name.ends_with(".profraw")) {
                continue;
            }
            match into {
                Some(into) => std::fs::rename(&path, into.join(name)),
                None => std::fs::remove_file(&path),
            }
            .with_context(|| format!("moving {}", path.display()))?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// Lines hit and lines found over every file of an LCOV report (`LH:` and `LF:` records).
fn lcov_lines(lcov: &str) -> (u64, u64) {
    let sum = |prefix: &str| {
        lcov.lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum::<u64>()
    };
    (sum("LH:"), sum("LF:"))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The `tests` attribute of a JUnit report's root `<testsuites>` element.
fn junit_count(xml: &str) -> Option<u64> {
    let root = &xml[xml.find("<testsuites")?..];
    let attribute = &root[root.find(" tests=\"")? + 8..];
    attribute[..attribute.find('"')?].parse().ok()
}

/// A report's path as the pipeline files name it (relative to the workspace).
pub fn relative(path: &Path) -> String {
    path.strip_prefix(util::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcov_lines_add_up_every_file() {
        let lcov = "TN:\nSF:/a.rs\nDA:1,1\nLF:10\nLH:7\nend_of_record\nSF:/b.rs\nLF:30\nLH:3\nend_of_record\n";
        assert_eq!(lcov_lines(lcov), (10, 40));
        assert_eq!(percent(10, 40), 25.0);
        assert_eq!(percent(0, 0), 0.0);
    }

    #[test]
    fn junit_count_reads_the_root_element() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="182" failures="0" errors="0" uuid="x" timestamp="t" time="12.3">
    <testsuite name="challenge" tests="40" disabled="0" errors="0" failures="0">"#;
        assert_eq!(junit_count(xml), Some(182));
        assert_eq!(junit_count("<testsuite tests=\"3\">"), None);
    }
}
