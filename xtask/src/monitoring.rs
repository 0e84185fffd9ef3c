//! Monitoring checks (`cargo xtask monitoring`, and the `monitoring` suite of `cargo xtask test`),
//! and the generation of the Kubernetes PrometheusRule (`cargo xtask monitoring --write`).
//!
//! The Prometheus rules in `deploy/monitoring/prometheus/rules/` are the one source: promtool
//! checks them and runs their unit tests, our own conventions hold (severity, annotations, a
//! runbook per alert, tests that fire and stay silent), and the PrometheusRule of the Kubernetes
//! component is their exact copy. The Alertmanager example is checked by amtool, with routing
//! cases that pin which receiver each label set reaches. The Compose `observability` profile's
//! Collector, Jaeger, Loki and Grafana never run here (no image, no Debian package): `wiring` checks
//! from their files that they fit together.

mod conventions;
mod prometheusrule;
mod routes;
mod wiring;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{pytools, util};

const RULES_DIR: &str = "deploy/monitoring/prometheus/rules";
/// The rule files, in the order the PrometheusRule lists their groups.
const RULE_FILES: [&str; 2] = ["recording.yml", "alerts.yml"];
const RULE_TESTS_DIR: &str = "deploy/monitoring/prometheus/tests";
const ALERTMANAGER_CONFIG: &str = "deploy/monitoring/alertmanager/alertmanager.yml";
const COMPONENT_DIR: &str = "deploy/kubernetes/components/monitoring";
/// Every file under it is linted: rules, tests, routing, the profile's configurations, Grafana's.
const MONITORING_DIR: &str = "deploy/monitoring";
const PROMETHEUSRULE: &str = "deploy/kubernetes/components/monitoring/prometheusrule.yaml";
const RUNBOOKS_DIR: &str = "docs/runbooks";
/// What every `runbook_url` starts with: the repository's web address for files on `main`, a
/// placeholder until the repository has its home. The rest of the URL is the runbook's path.
const RUNBOOK_BASE: &str = "https://example.com/infra-challenge/blob/main/";

#[derive(clap::Args)]
pub struct Args {
    /// Regenerate the Kubernetes PrometheusRule from the rule files instead of checking.
    #[arg(long)]
    write: bool,
}

pub fn run(sh: &Shell, args: &Args) -> anyhow::Result<()> {
    if args.write {
        let root = util::project_root();
        let written = prometheusrule::write(&root)?;
        eprintln!("wrote {}", written.display());
        Ok(())
    } else {
        check(sh)
    }
}

pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = util::project_root();
    // Never skipped when missing: a monitoring suite that passes without its tools proves nothing.
    util::require_program(
        "promtool",
        "install Debian's `prometheus` package (apt-get install --no-install-recommends prometheus)",
    )?;
    util::require_program(
        "amtool",
        "install Debian's `prometheus-alertmanager` package \
         (apt-get install --no-install-recommends prometheus-alertmanager)",
    )?;
    let rule_files: Vec<PathBuf> = RULE_FILES
        .iter()
        .map(|f| root.join(RULES_DIR).join(f))
        .collect();
    let rule_tests = yaml_files(&root.join(RULE_TESTS_DIR))?;

    util::step("promtool check rules");
    let files = &rule_files;
    cmd!(sh, "promtool check rules {files...}").run()?;

    util::step("promtool test rules");
    let files = &rule_tests;
    cmd!(sh, "promtool test rules {files...}").run()?;

    util::step("rule conventions: labels, annotations, runbooks, test coverage");
    conventions::check(&root, &rule_files, &rule_tests)?;

    util::step("amtool check-config");
    let alertmanager = root.join(ALERTMANAGER_CONFIG);
    cmd!(sh, "amtool check-config {alertmanager}").run()?;

    util::step("amtool config routes test: where each label set goes");
    routes::check(sh, &alertmanager)?;

    util::step("the Kubernetes PrometheusRule matches the rule files");
    prometheusrule::check(&root)?;

    util::step("kubectl kustomize: an overlay with the monitoring component");
    render_component(sh, &root)?;

    util::step(
        "the observability profile's wiring: compose.yaml, Collector, Jaeger, Loki, Grafana",
    );
    wiring::check(sh, &root)?;

    util::step("yamllint --strict");
    let yamllint = pytools::tool(sh, "yamllint")?;
    let config = root.join(".yamllint");
    let lint_targets = [
        root.join(MONITORING_DIR),
        root.join(COMPONENT_DIR),
        root.join("deploy/compose/compose.yaml"),
    ];
    cmd!(
        sh,
        "{yamllint} --strict --format parsable --config-file {config} {lint_targets...}"
    )
    .run()
    .context("yamllint found problems (listed above)")?;

    // The live test: a real Prometheus scraping two running services under a known load, against a
    // database server from TEST_DATABASE_URL (else a throwaway container), after the offline checks.
    live(sh)?;

    eprintln!("monitoring checks passed in {:.1?}", started.elapsed());
    Ok(())
}

/// The `.yml` and `.yaml` files of a directory, sorted (promtool runs them in the order given).
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            files.push(path);
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no YAML files in {}", dir.display());
    Ok(files)
}

/// Renders the dev overlay with the component added, as an overlay that opts in would, and checks
/// that the ServiceMonitor selects the service's Service by its labels and port name, in its
/// namespace. The component's files name no namespace: the overlay that adds it sets one, which the
/// `namespace:` here stands for (the dev overlay's own, deploy/kubernetes/overlays/dev).
fn render_component(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    util::require_program(
        "kubectl",
        "install kubectl 1.27 or newer (it embeds kustomize, which renders the overlays offline)",
    )?;
    let dir = root.join(".xtask/monitoring/overlay");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         namespace: infra-challenge-dev\n\
         resources:\n  - ../../../deploy/kubernetes/overlays/dev\n\
         components:\n  - ../../../deploy/kubernetes/components/monitoring\n";
    fs::write(dir.join("kustomization.yaml"), kustomization)
        .with_context(|| format!("writing {}", dir.display()))?;
    let rendered = cmd!(sh, "kubectl kustomize {dir}")
        .read()
        .context("kubectl kustomize of the dev overlay with the monitoring component")?;
    conventions::service_monitor_selects_service(&rendered)
}

/// crates/e2e/tests/monitoring_live.rs (ignored by plain `cargo test`: it needs the database server and
/// `prometheus`).
fn live(sh: &Shell) -> anyhow::Result<()> {
    util::step(
        "live: Prometheus scraping the service under load (crates/e2e/tests/monitoring_live.rs)",
    );
    let db = crate::testdb::provide(sh)?;
    let _url = sh.push_env("TEST_DATABASE_URL", db.url());
    cmd!(sh, "cargo test -p e2e --test monitoring_live -- --ignored").run()?;
    Ok(())
}
