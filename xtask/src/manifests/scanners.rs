//! The third-party checks, run from the pinned tools virtualenv (`pytools`): yamllint,
//! kubernetes-validate and checkov. Each turns the tool's verdict into an error that says what
//! failed; none passes silently when a tool could not look at something.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::pytools;

/// The oldest Kubernetes the manifests must apply to (the `preStop: sleep` action is on by
/// default from 1.30).
const OLDEST_KUBERNETES: &str = "1.30.0";

pub fn yamllint(sh: &Shell, config: &Path, targets: &[PathBuf]) -> anyhow::Result<()> {
    let yamllint = pytools::tool(sh, "yamllint")?;
    cmd!(
        sh,
        "{yamllint} --strict --format parsable --config-file {config} {targets...}"
    )
    .run()
    .context("yamllint found problems (listed above)")?;
    eprintln!("yamllint: clean");
    Ok(())
}

/// Strict schema validation (unknown fields are errors) against the oldest supported Kubernetes
/// and the newest one the package has schemas for.
pub fn kubernetes_validate(sh: &Shell, files: &[PathBuf]) -> anyhow::Result<()> {
    let python = pytools::tool(sh, "python")?;
    let newest = cmd!(
        sh,
        "{python} -c 'import kubernetes_validate; print(kubernetes_validate.latest_version())'"
    )
    .read()
    .context("asking kubernetes-validate for the newest Kubernetes version it knows")?;
    let validate = pytools::tool(sh, "kubernetes-validate")?;
    for version in [OLDEST_KUBERNETES, newest.trim()] {
        let output = cmd!(
            sh,
            "{validate} --strict --quiet --kubernetes-version {version} {files...}"
        )
        .ignore_status()
        .output()
        .context("running kubernetes-validate")?;
        let report = String::from_utf8_lossy(&output.stdout);
        eprint!("{report}{}", String::from_utf8_lossy(&output.stderr));
        anyhow::ensure!(
            output.status.success() && !report.contains("ERROR") && !report.contains("FATAL"),
            "kubernetes-validate --strict failed for Kubernetes {version} (see above)"
        );
        // A WARN means no schema was found for an object: it was not validated at all.
        anyhow::ensure!(
            !report.contains("WARN"),
            "kubernetes-validate could not validate some objects for Kubernetes {version} (see above)"
        );
        eprintln!(
            "kubernetes-validate --strict: {} file(s) valid for Kubernetes {version}",
            files.len()
        );
    }
    Ok(())
}

/// checkov's Kubernetes policies: no failed check, at most `max_skips` skips, each with a reason,
/// and something was actually scanned.
pub fn checkov(sh: &Shell, name: &str, files: &[PathBuf], max_skips: usize) -> anyhow::Result<()> {
    let checkov = pytools::tool(sh, "checkov")?;
    let file_args = files
        .iter()
        .flat_map(|f| [PathBuf::from("--file"), f.clone()]);
    // --skip-download: use the pinned package's policies only, never fetch any at run time.
    let output = cmd!(
        sh,
        "{checkov} --framework kubernetes --skip-download --output json {file_args...}"
    )
    .ignore_status()
    .output()
    .with_context(|| format!("running checkov on {name}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "checkov gave no JSON report for {name} (exit {:?}):\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    // One framework gives one report object; some versions wrap it in a list.
    let report = match &report {
        Value::Array(reports) => reports.first().unwrap_or(&Value::Null),
        other => other,
    };
    let count = |field: &str| {
        report
            .pointer(&format!("/summary/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (passed, failed, skipped) = (count("passed"), count("failed"), count("skipped"));
    let parsing_errors = count("parsing_errors");
    eprintln!("checkov {name}: {passed} passed, {failed} failed, {skipped} skipped");

    let checks = |kind: &str| {
        report
            .pointer(&format!("/results/{kind}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    for check in checks("failed_checks") {
        eprintln!(
            "  FAILED {} {} ({}, {})",
            check["check_id"].as_str().unwrap_or("?"),
            check["check_name"].as_str().unwrap_or("?"),
            check["resource"].as_str().unwrap_or("?"),
            check["guideline"].as_str().unwrap_or("no guideline")
        );
    }
    let mut unexplained = Vec::new();
    for check in checks("skipped_checks") {
        let id = check["check_id"].as_str().unwrap_or("?");
        let resource = check["resource"].as_str().unwrap_or("?");
        let reason = check
            .pointer("/check_result/suppress_comment")
            .and_then(Value::as_str)
            .unwrap_or("");
        eprintln!("  skipped {id} on {resource}: {reason}");
        if reason.trim().is_empty() {
            unexplained.push(format!("{id} on {resource}"));
        }
    }
    anyhow::ensure!(
        parsing_errors == 0,
        "checkov could not parse {parsing_errors} file(s) of {name}"
    );
    anyhow::ensure!(
        passed > 0,
        "checkov checked nothing in {name}: did it parse the files?"
    );
    anyhow::ensure!(
        failed == 0,
        "checkov: {failed} failed check(s) in {name} (listed above)"
    );
    anyhow::ensure!(
        skipped as usize <= max_skips,
        "checkov: {skipped} skipped checks in {name}; at most {max_skips} are allowed"
    );
    anyhow::ensure!(
        unexplained.is_empty(),
        "checkov skips without a reason: {}",
        unexplained.join(", ")
    );
    Ok(())
}
