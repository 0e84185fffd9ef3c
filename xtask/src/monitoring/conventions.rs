//! What promtool does not check: every alert has a severity we route on, the annotations a
//! responder needs and a runbook that exists; every alert has a unit test where it fires and one
//! where it stays silent; every recording rule is evaluated by a unit test; the ServiceMonitor
//! selects the service's Service.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::{RUNBOOK_BASE, RUNBOOKS_DIR};
use crate::manifests::model::string_map;

const SEVERITIES: [&str; 2] = ["page", "ticket"];
const ANNOTATIONS: [&str; 3] = ["summary", "description", "runbook_url"];

pub fn check(root: &Path, rule_files: &[PathBuf], test_files: &[PathBuf]) -> anyhow::Result<()> {
    let mut alerts = BTreeSet::new();
    let mut records = BTreeSet::new();
    let mut problems = Vec::new();
    for file in rule_files {
        let origin = relative(root, file);
        for rule in rules(&read_yaml(file)?) {
            if let Some(record) = rule.get("record").and_then(Value::as_str) {
                records.insert(record.to_owned());
            } else if let Some(alert) = rule.get("alert").and_then(Value::as_str) {
                alerts.insert(alert.to_owned());
                problems.extend(
                    alert_problems(root, alert, rule)
                        .into_iter()
                        .map(|p| format!("{origin}: {alert}: {p}")),
                );
            }
        }
    }

    let coverage = Coverage::read(test_files)?;
    for alert in &alerts {
        if !coverage.firing.contains(alert) {
            problems.push(format!("{alert}: no promtool test where it fires"));
        }
        if !coverage.silent.contains(alert) {
            problems.push(format!("{alert}: no promtool test where it stays silent"));
        }
    }
    for record in &records {
        if !coverage.exprs.iter().any(|expr| mentions(expr, record)) {
            problems.push(format!("{record}: no promql_expr_test evaluates it"));
        }
    }
    for tested in coverage.firing.union(&coverage.silent) {
        if !alerts.contains(tested) {
            problems.push(format!(
                "the tests name {tested}, which no rule file defines"
            ));
        }
    }

    anyhow::ensure!(
        problems.is_empty(),
        "the monitoring rules break the repository's conventions:\n  {}",
        problems.join("\n  ")
    );
    eprintln!(
        "{} alerts, {} recording rules: labels, annotations, runbooks and tests in place",
        alerts.len(),
        records.len()
    );
    Ok(())
}

fn alert_problems(root: &Path, alert: &str, rule: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let severity = rule.pointer("/labels/severity").and_then(Value::as_str);
    if !severity.is_some_and(|s| SEVERITIES.contains(&s)) {
        problems.push(format!(
            "label severity is {severity:?}; Alertmanager routes only {SEVERITIES:?}"
        ));
    }
    for name in ANNOTATIONS {
        let text = rule
            .pointer(&format!("/annotations/{name}"))
            .and_then(Value::as_str);
        if text.is_none_or(|t| t.trim().is_empty()) {
            problems.push(format!("annotation {name} is missing or empty"));
        }
    }
    if let Some(url) = rule
        .pointer("/annotations/runbook_url")
        .and_then(Value::as_str)
    {
        let wanted = format!("{RUNBOOKS_DIR}/{alert}.md");
        match url.strip_prefix(RUNBOOK_BASE) {
            Some(path) if path == wanted => {
                if !root.join(&wanted).is_file() {
                    problems.push(format!("runbook {wanted} does not exist"));
                }
            }
            _ => problems.push(format!(
                "runbook_url is {url}; expected {RUNBOOK_BASE}{wanted}"
            )),
        }
    }
    problems
}

/// Which alerts the promtool tests see firing and silent, and the expressions they evaluate.
#[derive(Default)]
struct Coverage {
    firing: BTreeSet<String>,
    silent: BTreeSet<String>,
    exprs: Vec<String>,
}

impl Coverage {
    fn read(test_files: &[PathBuf]) -> anyhow::Result<Coverage> {
        let mut coverage = Coverage::default();
        for file in test_files {
            let doc = read_yaml(file)?;
            for test in array(doc.get("tests")) {
                for case in array(test.get("alert_rule_test")) {
                    let Some(name) = case.get("alertname").and_then(Value::as_str) else {
                        continue;
                    };
                    let fires = !array(case.get("exp_alerts")).is_empty();
                    let set = if fires {
                        &mut coverage.firing
                    } else {
                        &mut coverage.silent
                    };
                    set.insert(name.to_owned());
                }
                for case in array(test.get("promql_expr_test")) {
                    if let Some(expr) = case.get("expr").and_then(Value::as_str) {
                        coverage.exprs.push(expr.to_owned());
                    }
                }
            }
        }
        Ok(coverage)
    }
}

/// The ServiceMonitor of a rendering selects a Service whose labels it matches, on a port that
/// Service names.
pub fn service_monitor_selects_service(rendered: &str) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(rendered) {
        objects.push(Value::deserialize(document).context("the rendering does not parse")?);
    }
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
            .collect()
    };
    let monitors = of_kind("ServiceMonitor");
    anyhow::ensure!(
        monitors.len() == 1,
        "expected one ServiceMonitor in the rendering, found {}",
        monitors.len()
    );
    anyhow::ensure!(
        of_kind("PrometheusRule").len() == 1,
        "expected one PrometheusRule in the rendering"
    );
    let monitor = monitors[0];
    let selector = string_map(monitor.pointer("/spec/selector/matchLabels"));
    let ports: Vec<&str> = array(monitor.pointer("/spec/endpoints"))
        .iter()
        .filter_map(|e| e.get("port").and_then(Value::as_str))
        .collect();
    let services = of_kind("Service");
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|s| {
            let labels = string_map(s.pointer("/metadata/labels"));
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    anyhow::ensure!(
        selected.len() == 1,
        "the ServiceMonitor's selector {selector:?} matches {} Services, not exactly one",
        selected.len()
    );
    let service_ports: Vec<&str> = array(selected[0].pointer("/spec/ports"))
        .iter()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect();
    for port in &ports {
        anyhow::ensure!(
            service_ports.contains(port),
            "the ServiceMonitor scrapes port {port:?}, which the Service does not name ({service_ports:?})"
        );
    }
    anyhow::ensure!(!ports.is_empty(), "the ServiceMonitor has no endpoint port");
    // Without a namespaceSelector a ServiceMonitor looks for Services in its own namespace only, and
    // the rules belong with the environment they alert on: both must sit in the Service's namespace.
    let service_namespace = namespace(selected[0]);
    for object in monitors.iter().chain(of_kind("PrometheusRule").iter()) {
        anyhow::ensure!(
            service_namespace.is_some() && namespace(object) == service_namespace,
            "the {} is in namespace {:?}, the Service it goes with in {:?}",
            object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object"),
            namespace(object),
            service_namespace
        );
    }
    eprintln!("the ServiceMonitor selects the Service and scrapes its port {ports:?}");
    Ok(())
}

fn namespace(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
}

fn read_yaml(file: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{} does not parse", file.display()))
}

/// Every rule of a Prometheus rule file, across its groups.
fn rules(doc: &Value) -> impl Iterator<Item = &Value> {
    array(doc.get("groups"))
        .iter()
        .flat_map(|group| array(group.get("rules")).iter())
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `expr` names the metric `name` as a whole word (not as part of a longer name).
fn mentions(expr: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.match_indices(name).any(|(at, _)| {
        let before = expr[..at].chars().next_back();
        let after = expr[at + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_matches_whole_metric_names_only() {
        assert!(mentions("job:a:rate5m", "job:a:rate5m"));
        assert!(mentions("sum(job:a:rate5m{x=\"1\"})", "job:a:rate5m"));
        assert!(!mentions("job:a:rate5m_total", "job:a:rate5m"));
        assert!(!mentions("job:a:rate5", "job:a:rate5m"));
    }

    #[test]
    fn an_alert_without_severity_or_runbook_is_reported() {
        let rule: Value = serde_json::json!({
            "alert": "X",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "s", "description": "", "runbook_url": "https://elsewhere/X.md"},
        });
        let problems = alert_problems(Path::new("/nonexistent"), "X", &rule);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    /// A Service, and the component's two objects in the namespace `monitors_in`.
    fn rendering(monitors_in: &str) -> String {
        format!(
            "kind: Service\nmetadata:\n  name: challenge\n  namespace: infra-challenge-dev\n  \
             labels: {{app.kubernetes.io/name: challenge}}\nspec:\n  ports: [{{name: http}}]\n\
             ---\nkind: ServiceMonitor\nmetadata:\n  name: challenge\n  namespace: {monitors_in}\n\
             spec:\n  selector: {{matchLabels: {{app.kubernetes.io/name: challenge}}}}\n  \
             endpoints: [{{port: http}}]\n\
             ---\nkind: PrometheusRule\nmetadata:\n  name: challenge\n  namespace: {monitors_in}\n"
        )
    }

    #[test]
    fn a_service_monitor_beside_its_service_passes() {
        let checked = service_monitor_selects_service(&rendering("infra-challenge-dev"));
        assert!(checked.is_ok(), "{checked:?}");
    }

    #[test]
    fn a_service_monitor_in_another_namespace_than_its_service_is_reported() {
        let error = service_monitor_selects_service(&rendering("infra-challenge"))
            .expect_err("the ServiceMonitor would find no Service");
        assert!(
            error.to_string().contains(
                "the ServiceMonitor is in namespace Some(\"infra-challenge\"), the Service it goes \
                 with in Some(\"infra-challenge-dev\")"
            ),
            "{error}"
        );
    }
}
