//! Pipeline checks (the `pipeline` suite of `cargo xtask test`): the Jenkinsfile and the GitHub
//! Actions workflow. Neither Jenkins nor a GitHub runner exists on the machines this runs on, so
//! the files are proven by parsing and by rules, not by a run:
//!
//! - the Jenkinsfile parses with Groovy 2.4 (Debian's `groovy`, the Groovy line Jenkins runs);
//! - its structure (`jenkins`): `agent none` on top, each stage one `cargo xtask ci` call of the
//!   contract, no double-quoted `sh`, credentials only inside their wrappers, PROD behind an
//!   approval with a submitter and a timeout;
//! - the workflow (`workflow`) runs the same stages in the same order, and passes yamllint.

mod groovy;
mod jenkins;
#[cfg(test)]
mod tests;
mod workflow;

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{pytools, util};

const JENKINSFILE: &str = "Jenkinsfile";
const WORKFLOW: &str = ".github/workflows/pipeline.yml";

/// The `cargo xtask ci` subcommands (xtask/src/ci/): `check` also compares this list with what
/// the `ci` task itself lists in its help, so the two cannot drift apart.
const CONTRACT: [&str; 9] = [
    "lint", "test", "coverage", "sonar", "image", "push", "deploy", "smoke", "notify",
];
const ENVIRONMENTS: [&str; 3] = ["dev", "qa", "prod"];
/// The pipeline's stages, in order (notify runs after them, in `post`).
const SEQUENCE: [&str; 12] = [
    "lint",
    "test",
    "coverage",
    "sonar",
    "image",
    "push",
    "deploy dev",
    "smoke dev",
    "deploy qa",
    "smoke qa",
    "deploy prod",
    "smoke prod",
];

/// One stage's call: the stage's name and its `cargo xtask ci` arguments (`deploy qa`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageCall {
    pub name: String,
    pub command: String,
}

pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let root = util::project_root();

    util::step("Jenkinsfile parses with Groovy 2.4");
    groovy_parse(sh, &root.join(JENKINSFILE))?;

    util::step("`cargo xtask ci` has the contract's subcommands");
    let listed = ci_subcommands()?;
    for command in CONTRACT {
        anyhow::ensure!(
            listed.iter().any(|l| l == command),
            "`cargo xtask ci {command}` does not exist (it lists: {})",
            listed.join(", ")
        );
    }

    util::step("Jenkinsfile and workflow structure");
    let jenkinsfile = read(&root, JENKINSFILE)?;
    let workflow = read(&root, WORKFLOW)?;
    let jenkins = jenkins::check(&jenkinsfile).map_err(|e| {
        anyhow::anyhow!(
            "{JENKINSFILE} breaks {} rule(s):\n  {}",
            e.len(),
            e.join("\n  ")
        )
    })?;
    let actions = workflow::check(&workflow).map_err(|e| {
        anyhow::anyhow!(
            "{WORKFLOW} breaks {} rule(s):\n  {}",
            e.len(),
            e.join("\n  ")
        )
    })?;
    same_stages(&jenkins, &actions)?;
    eprintln!("{} stages, the same in both files", jenkins.len());

    util::step("yamllint --strict (workflow)");
    let yamllint = pytools::tool(sh, "yamllint")?;
    let config = root.join(".yamllint");
    let file = root.join(WORKFLOW);
    cmd!(sh, "{yamllint} --strict -c {config} {file}").run()?;
    eprintln!("pipeline: all checks passed");
    Ok(())
}

fn read(root: &Path, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("reading {path}"))
}

/// Both files run the contract's stages in order, under the same names.
fn same_stages(jenkins: &[StageCall], actions: &[StageCall]) -> anyhow::Result<()> {
    let commands: Vec<&str> = jenkins.iter().map(|c| c.command.as_str()).collect();
    anyhow::ensure!(
        commands == SEQUENCE,
        "the Jenkinsfile's stages run {commands:?}, expected {SEQUENCE:?}"
    );
    anyhow::ensure!(
        jenkins == actions,
        "the workflow's steps differ from the Jenkinsfile's stages:\n  Jenkinsfile: {jenkins:?}\n  workflow:    {actions:?}"
    );
    Ok(())
}

/// `cargo xtask ci <stage> [env]` as `<stage> [env]`, checked against the contract.
fn ci_command(script: &str) -> Result<String, String> {
    let words: Vec<&str> = script.split_whitespace().collect();
    let ["cargo", "xtask", "ci", stage, rest @ ..] = words.as_slice() else {
        return Err(format!(
            "`{script}` is not one `cargo xtask ci <stage>` call"
        ));
    };
    if !CONTRACT.contains(stage) {
        return Err(format!(
            "`cargo xtask ci {stage}` is not a stage (stages: {})",
            CONTRACT.join(", ")
        ));
    }
    match (*stage, rest) {
        ("deploy" | "smoke", [env]) if ENVIRONMENTS.contains(env) => Ok(format!("{stage} {env}")),
        ("deploy" | "smoke", _) => Err(format!(
            "`{script}`: {stage} takes one environment ({})",
            ENVIRONMENTS.join("|")
        )),
        (_, []) => Ok(stage.to_string()),
        _ => Err(format!(
            "`{script}` is not one `cargo xtask ci <stage>` call (no extra arguments, shell operators or lines)"
        )),
    }
}

/// The subcommands `cargo xtask ci --help` lists, asked of this very binary.
fn ci_subcommands() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let output = std::process::Command::new(exe)
        .args(["ci", "--help"])
        .output()
        .context("running `cargo xtask ci --help`")?;
    anyhow::ensure!(
        output.status.success(),
        "`cargo xtask ci --help` failed: the pipeline calls a `ci` task that xtask does not have\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let help = String::from_utf8_lossy(&output.stdout);
    Ok(help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect())
}

/// Parses (never runs) the Jenkinsfile with the `groovy` on PATH, up to Groovy's CONVERSION
/// phase: the syntax tree is built, no class is resolved (Jenkins' steps are unknown here).
fn groovy_parse(sh: &Shell, file: &Path) -> anyhow::Result<()> {
    util::require_program(
        "groovy",
        "install Debian's `groovy` package (apt-get install --no-install-recommends groovy; Groovy 2.4, what Jenkins runs)",
    )?;
    const SCRIPT: &str = "import org.codehaus.groovy.control.*; \
        def unit = new CompilationUnit(); unit.addSource(new File(args[0])); \
        unit.compile(Phases.CONVERSION); println \"parsed with Groovy ${GroovySystem.version}: ${args[0]}\"";
    // Debian's groovy looks for /usr/lib/jvm/default-java, which only the default-jre package
    // provides: point JAVA_HOME at the JDK behind `java` when it is not set.
    let _java_home = match std::env::var_os("JAVA_HOME") {
        Some(_) => None,
        None => Some(sh.push_env("JAVA_HOME", java_home()?)),
    };
    cmd!(sh, "groovy -e {SCRIPT} {file}")
        .run()
        .context("the Jenkinsfile is not valid Groovy")?;
    Ok(())
}

fn java_home() -> anyhow::Result<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let java = std::env::split_paths(&paths)
        .map(|dir| dir.join("java"))
        .find(|p| p.is_file())
        .context("`java` is not on PATH: groovy needs a JDK (Debian: openjdk-17-jdk-headless)")?;
    let real =
        std::fs::canonicalize(&java).with_context(|| format!("resolving {}", java.display()))?;
    real.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("`java` is not inside a JDK's bin directory")
}
