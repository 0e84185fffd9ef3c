//! `sonar`: SonarQube analysis with `sonar-scanner`, which reads sonar-project.properties and the
//! reports the `lint` and `coverage` stages left in target/ci/.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use super::quality::relative;

/// What the analysis needs from the environment, as read from it.
struct Environment<'a> {
    host: Option<&'a str>,
    token: Option<&'a str>,
    scanner_installed: bool,
}

/// Whether the analysis can run; else every missing piece, each with how to provide it.
fn decide(env: &Environment<'_>) -> Result<(), String> {
    let set = |value: Option<&str>| value.is_some_and(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    if !set(env.host) {
        missing.push(
            "SONAR_HOST_URL is not set (the SonarQube server, e.g. https://sonar.example.com)",
        );
    }
    if !set(env.token) {
        missing.push("SONAR_TOKEN is not set (a token with the Execute Analysis permission)");
    }
    if !env.scanner_installed {
        missing.push(
            "sonar-scanner is not installed or not on PATH (SonarScanner CLI: \
             https://docs.sonarsource.com/sonarqube/latest/analyzing-source-code/scanners/sonarscanner/)",
        );
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot run the analysis: {}", missing.join("; ")))
    }
}

/// The analysis, labelled with this run's version (`sonar.projectVersion`).
pub fn run(sh: &Shell, reports: &Path, version: &str) -> anyhow::Result<String> {
    let host = std::env::var("SONAR_HOST_URL").ok();
    let token = std::env::var("SONAR_TOKEN").ok();
    decide(&Environment {
        host: host.as_deref(),
        token: token.as_deref(),
        scanner_installed: on_path("sonar-scanner"),
    })
    .map_err(anyhow::Error::msg)?;
    for report in ["clippy.json", "lcov.info"] {
        let path = reports.join(report);
        if !path.is_file() {
            eprintln!(
                "warning: {} is missing: run `cargo xtask ci lint` and `cargo xtask ci coverage` first, \
                 or the analysis lacks it",
                relative(&path)
            );
        }
    }
    // sonar-scanner reads SONAR_HOST_URL and SONAR_TOKEN from the environment itself.
    let project_version = format!("-Dsonar.projectVersion={version}");
    cmd!(sh, "sonar-scanner {project_version}")
        .run()
        .context("sonar-scanner failed (its log is above)")?;
    Ok(format!(
        "analysis of {version} sent to {}",
        host.unwrap_or_default()
    ))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        host: Option<&'static str>,
        token: Option<&'static str>,
        scanner: bool,
    ) -> Environment<'static> {
        Environment {
            host,
            token,
            scanner_installed: scanner,
        }
    }

    #[test]
    fn analysis_runs_only_with_host_token_and_scanner() {
        assert_eq!(decide(&env(Some("https://sonar"), Some("t"), true)), Ok(()));
    }

    #[test]
    fn each_missing_piece_is_named() {
        let error = decide(&env(None, Some(""), false)).unwrap_err();
        assert!(error.contains("SONAR_HOST_URL is not set"), "{error}");
        assert!(error.contains("SONAR_TOKEN is not set"), "{error}");
        assert!(error.contains("sonar-scanner is not installed"), "{error}");

        let error = decide(&env(Some("https://sonar"), None, true)).unwrap_err();
        assert!(
            error.contains("SONAR_TOKEN") && !error.contains("SONAR_HOST_URL"),
            "{error}"
        );

        let error = decide(&env(Some("https://sonar"), Some("t"), false)).unwrap_err();
        assert!(
            error.contains("sonar-scanner") && !error.contains("SONAR_TOKEN"),
            "{error}"
        );
    }
}
