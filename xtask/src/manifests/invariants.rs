//! Invariants of the manifests that schema validation and scanners do not check: how the objects
//! refer to each other (selectors, ports, the HPA's target) and how images are named. Where they
//! live is checked in `namespaces`, ConfigMap and Secret references in `references`, the
//! service-specific rules in `service_rules`.
//!
//! Each rule appends human-readable violations (`Kind/name: what is wrong`) to a list; an empty
//! list means the set of objects holds together.

use serde_json::Value;

use super::model::{
    Object, Selector, Workload, image_tag, items, of_kind, resolve_port, str_at, string_map,
    workloads,
};

/// The product: the `app.kubernetes.io/part-of` label of every object, and the prefix of every
/// environment's namespace (docs/ARCHITECTURE.md, "Names").
pub const PRODUCT: &str = "infra-challenge";
/// At most this many scanner findings may be skipped in an environment's set (the service and its
/// database), each with a reason.
pub const MAX_SCANNER_SKIPS: usize = 3;
/// What the observability component adds to that budget: the Collector image's digest
/// (components/observability/deployment.yaml).
pub const OBSERVABILITY_SCANNER_SKIPS: usize = 1;
/// The log agent's budget (log-agent/daemonset.yaml): its image's digest, and uid 0 twice over.
pub const LOG_AGENT_SCANNER_SKIPS: usize = 3;

/// What one rendering is, and so what it must hold.
pub struct Expected<'a> {
    /// Every namespaced object of the set sits here (see `namespaces`).
    pub namespace: &'a str,
    /// The set is an environment's (base, overlay, deployer rendering): the service's own rules
    /// (`service_rules`) apply. The log agent's set holds no service.
    pub environment: bool,
    /// The observability component is in the set: the service must export OTLP to its Collector.
    pub exports_otlp: bool,
    /// The most scanner skips the set may hold.
    pub max_scanner_skips: usize,
}

impl<'a> Expected<'a> {
    /// An environment's set without the observability component, in `namespace`.
    pub fn environment(namespace: &'a str) -> Self {
        Expected {
            namespace,
            environment: true,
            exports_otlp: false,
            max_scanner_skips: MAX_SCANNER_SKIPS,
        }
    }

    /// An environment's set with the observability component added, in `namespace`.
    pub fn observed_environment(namespace: &'a str) -> Self {
        Expected {
            exports_otlp: true,
            max_scanner_skips: MAX_SCANNER_SKIPS + OBSERVABILITY_SCANNER_SKIPS,
            ..Self::environment(namespace)
        }
    }

    /// The log agent's set (deploy/kubernetes/log-agent/), in its own namespace.
    pub fn log_agent() -> Self {
        Expected {
            namespace: super::pod_security::LOG_AGENT_NAMESPACE,
            environment: false,
            exports_otlp: false,
            max_scanner_skips: LOG_AGENT_SCANNER_SKIPS,
        }
    }
}

/// Runs every rule over one set of objects (a rendering, plus the Secret examples for an
/// environment's).
pub fn check(objects: &[Value], expected: &Expected<'_>) -> Vec<String> {
    let mut violations = Vec::new();
    super::namespaces::check(objects, expected.namespace, &mut violations);
    recommended_labels(objects, &mut violations);
    workload_selectors(objects, &mut violations);
    services(objects, &mut violations);
    disruption_budgets(objects, &mut violations);
    autoscalers(objects, &mut violations);
    network_policy_targets(objects, &mut violations);
    super::references::check(objects, &mut violations);
    image_tags(objects, &mut violations);
    scanner_skips(objects, expected.max_scanner_skips, &mut violations);
    super::service_rules::probe_ports(objects, &mut violations);
    if expected.environment {
        super::service_rules::check(objects, expected.exports_otlp, &mut violations);
    }
    super::pod_security::check(objects, &mut violations);
    violations
}

/// `app.kubernetes.io/name` and `part-of` on every object and every pod template.
pub fn recommended_labels(objects: &[Value], out: &mut Vec<String>) {
    for object in objects.iter().map(Object) {
        let labels = object.labels();
        if !labels.contains_key("app.kubernetes.io/name") {
            out.push(format!(
                "{}: no `app.kubernetes.io/name` label",
                object.id()
            ));
        }
        if labels.get("app.kubernetes.io/part-of") != Some(&PRODUCT) {
            out.push(format!(
                "{}: label `app.kubernetes.io/part-of` is not `{PRODUCT}`",
                object.id()
            ));
        }
    }
    for workload in workloads(objects) {
        if !workload.pod_labels().contains_key("app.kubernetes.io/name") {
            let id = workload.object.id();
            out.push(format!(
                "{id}: pod template has no `app.kubernetes.io/name` label"
            ));
        }
    }
}

/// The workloads whose pods a selector picks.
fn selected<'a>(objects: &'a [Value], selector: &Selector<'_>) -> Vec<Workload<'a>> {
    workloads(objects)
        .into_iter()
        .filter(|w| selector.matches(&w.pod_labels()))
        .collect()
}

/// A selector that is evaluated by the rules below: not empty, and without expressions.
fn usable_selector(id: &str, what: &str, selector: &Selector<'_>, out: &mut Vec<String>) -> bool {
    if selector.has_expressions {
        out.push(format!(
            "{id}: {what} uses matchExpressions, which these checks do not evaluate"
        ));
        return false;
    }
    if selector.is_empty() {
        out.push(format!("{id}: {what} is empty"));
        return false;
    }
    true
}

/// Each workload's selector matches its own pod template, and no other workload's pods.
pub fn workload_selectors(objects: &[Value], out: &mut Vec<String>) {
    let all = workloads(objects);
    for workload in all.iter().filter(|w| w.object.kind() != "Pod") {
        let id = workload.object.id();
        let selector = Selector::from_value(workload.object.get("/spec/selector"));
        if !usable_selector(&id, "spec.selector", &selector, out) {
            continue;
        }
        if !selector.matches(&workload.pod_labels()) {
            out.push(format!(
                "{id}: spec.selector does not match the pod template's labels"
            ));
        }
        for other in all.iter().filter(|o| o.object.id() != id) {
            if selector.matches(&other.pod_labels()) {
                out.push(format!(
                    "{id}: spec.selector also matches the pods of {}",
                    other.object.id()
                ));
            }
        }
    }
}

/// Services select pods, and every `targetPort` names a port those pods declare. A StatefulSet's
/// `serviceName` is a headless Service over its pods.
pub fn services(objects: &[Value], out: &mut Vec<String>) {
    for service in of_kind(objects, "Service") {
        let id = service.id();
        let selector = Selector::from_map(service.get("/spec/selector"));
        if !usable_selector(&id, "spec.selector", &selector, out) {
            continue;
        }
        let targets = selected(objects, &selector);
        if targets.is_empty() {
            out.push(format!("{id}: spec.selector matches no pod template"));
            continue;
        }
        for port in items(service.0, "/spec/ports") {
            let Some(target) = port.get("targetPort").and_then(Value::as_str) else {
                out.push(format!(
                    "{id}: port {} must name its targetPort (a container port's name)",
                    port.get("port").unwrap_or(&Value::Null)
                ));
                continue;
            };
            for workload in &targets {
                if resolve_port(&workload.ports(), &Value::from(target)).is_none() {
                    out.push(format!(
                        "{id}: targetPort `{target}` is not a container port of {}",
                        workload.object.id()
                    ));
                }
            }
        }
    }
    for statefulset in of_kind(objects, "StatefulSet") {
        let id = statefulset.id();
        let Some(name) = str_at(statefulset.0, "/spec/serviceName") else {
            continue;
        };
        let headless = of_kind(objects, "Service")
            .find(|s| s.name() == name && str_at(s.0, "/spec/clusterIP") == Some("None"));
        let Some(headless) = headless else {
            out.push(format!(
                "{id}: serviceName `{name}` is not a headless Service in the set"
            ));
            continue;
        };
        let pod_labels = string_map(statefulset.get("/spec/template/metadata/labels"));
        if !Selector::from_map(headless.get("/spec/selector")).matches(&pod_labels) {
            out.push(format!("{id}: Service `{name}` does not select its pods"));
        }
    }
}

/// PodDisruptionBudgets protect pods that exist.
pub fn disruption_budgets(objects: &[Value], out: &mut Vec<String>) {
    for pdb in of_kind(objects, "PodDisruptionBudget") {
        let id = pdb.id();
        let selector = Selector::from_value(pdb.get("/spec/selector"));
        if usable_selector(&id, "spec.selector", &selector, out)
            && selected(objects, &selector).is_empty()
        {
            out.push(format!("{id}: spec.selector matches no pod template"));
        }
    }
}

/// The HPA scales a workload of the set, with sane bounds, and that workload sets no `replicas`
/// of its own (every apply would reset what the HPA decided).
pub fn autoscalers(objects: &[Value], out: &mut Vec<String>) {
    for hpa in of_kind(objects, "HorizontalPodAutoscaler") {
        let id = hpa.id();
        let kind = str_at(hpa.0, "/spec/scaleTargetRef/kind").unwrap_or("");
        let name = str_at(hpa.0, "/spec/scaleTargetRef/name").unwrap_or("");
        match of_kind(objects, kind).find(|o| o.name() == name) {
            None => out.push(format!(
                "{id}: scaleTargetRef {kind}/{name} is not in the set"
            )),
            Some(target) if target.get("/spec/replicas").is_some() => out.push(format!(
                "{}: sets spec.replicas, which fights {id} (leave the count to the autoscaler)",
                target.id()
            )),
            Some(_) => {}
        }
        let min = hpa
            .get("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let max = hpa
            .get("/spec/maxReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if !(1..=max).contains(&min) {
            out.push(format!("{id}: replica bounds {min}..{max} are empty"));
        }
    }
}

/// NetworkPolicies apply to pods of the set, peers in the namespace are pods of the set, and named
/// ports are declared by the pods they refer to.
pub fn network_policy_targets(objects: &[Value], out: &mut Vec<String>) {
    for policy in of_kind(objects, "NetworkPolicy") {
        let id = policy.id();
        let selector = Selector::from_value(policy.get("/spec/podSelector"));
        if !usable_selector(&id, "spec.podSelector", &selector, out) {
            continue;
        }
        let own = selected(objects, &selector);
        if own.is_empty() {
            out.push(format!("{id}: spec.podSelector matches no pod template"));
        }
        for (direction, peers_key) in [("ingress", "from"), ("egress", "to")] {
            for rule in items(policy.0, &format!("/spec/{direction}")) {
                let mut port_owners = Vec::new();
                for peer in items(rule, &format!("/{peers_key}")) {
                    // A peer in another namespace (namespaceSelector) is outside the set.
                    if peer.get("namespaceSelector").is_some() || peer.get("ipBlock").is_some() {
                        continue;
                    }
                    let peer_selector = Selector::from_value(peer.get("podSelector"));
                    if !usable_selector(
                        &id,
                        &format!("a {direction} podSelector"),
                        &peer_selector,
                        out,
                    ) {
                        continue;
                    }
                    let peers = selected(objects, &peer_selector);
                    if peers.is_empty() {
                        out.push(format!(
                            "{id}: a {direction} podSelector matches no pod template"
                        ));
                    }
                    port_owners.extend(peers);
                }
                // Ingress ports are the policy's own pods' ports; egress ports are the peers'.
                let owners = if direction == "ingress" {
                    &own
                } else {
                    &port_owners
                };
                for port in items(rule, "/ports") {
                    let Some(name) = port.get("port").and_then(Value::as_str) else {
                        continue;
                    };
                    for owner in owners {
                        if resolve_port(&owner.ports(), &Value::from(name)).is_none() {
                            out.push(format!(
                                "{id}: {direction} port `{name}` is not a container port of {}",
                                owner.object.id()
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Every image names a fixed version: a tag other than `latest`, or a digest.
pub fn image_tags(objects: &[Value], out: &mut Vec<String>) {
    for workload in workloads(objects) {
        for container in workload.containers() {
            let image = container.image();
            let pinned =
                image.contains("@sha256:") || image_tag(image).is_some_and(|tag| tag != "latest");
            if !pinned {
                out.push(format!(
                    "{} container {}: image `{image}` has no fixed tag (missing or `latest`)",
                    workload.object.id(),
                    container.name()
                ));
            }
        }
    }
}

/// Scanner skips are few (at most `max` in the set) and each says why: `checkov.io/skipN: CKV_ID=reason`.
pub fn scanner_skips(objects: &[Value], max: usize, out: &mut Vec<String>) {
    let mut count = 0;
    for object in objects.iter().map(Object) {
        for (key, value) in object.annotations() {
            if !key.starts_with("checkov.io/skip") {
                continue;
            }
            count += 1;
            let reason = value.split_once('=').map(|(_, r)| r.trim()).unwrap_or("");
            // checkov splits the value on `=` and fails outright when there is more than one.
            if !value.starts_with("CKV") || value.matches('=').count() != 1 || reason.len() < 20 {
                out.push(format!(
                    "{}: skip `{key}` must read `CKV_ID=reason`, with a real reason",
                    object.id()
                ));
            }
        }
    }
    if count > max {
        out.push(format!(
            "{count} scanner skips in the set; at most {max} are allowed"
        ));
    }
}
