//! Pod Security Standards, "restricted" profile (Kubernetes 1.30), checked offline: the
//! namespace enforces it, and every pod template would be admitted by it. checkov covers some of
//! these one by one; this is the profile as the admission controller applies it, so a pod that
//! passes here is not rejected at deploy time.

use serde_json::Value;

use super::model::{Container, Workload, items, of_kind, str_at, workloads};

/// The volume types the restricted profile allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

pub fn check(objects: &[Value], out: &mut Vec<String>) {
    // `namespaces` makes sure the one Namespace object is the environment's.
    for namespace in of_kind(objects, "Namespace") {
        let labels = namespace.labels();
        if labels.get("pod-security.kubernetes.io/enforce") != Some(&"restricted") {
            out.push(format!(
                "{}: does not enforce the `restricted` Pod Security Standard",
                namespace.id()
            ));
        }
    }
    for workload in workloads(objects) {
        pod_level(&workload, out);
        for container in workload.containers() {
            container_level(&workload, container, out);
        }
    }
}

fn pod_level(workload: &Workload<'_>, out: &mut Vec<String>) {
    let id = workload.object.id();
    let Some(spec) = workload.pod_spec() else {
        return;
    };
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(host).and_then(Value::as_bool) == Some(true) {
            out.push(format!("{id}: {host} is not allowed"));
        }
    }
    for volume in items(spec, "/volumes") {
        let name = str_at(volume, "/name").unwrap_or("?");
        let kinds: Vec<&str> = volume
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "name")
            .collect();
        if kinds.iter().any(|k| !ALLOWED_VOLUMES.contains(k)) {
            out.push(format!(
                "{id}: volume `{name}` is of type {kinds:?}, not allowed"
            ));
        }
    }
}

/// A security setting from the container, else from the pod (where the pod may set it).
fn setting<'a>(
    workload: &Workload<'a>,
    container: Container<'a>,
    pointer: &str,
) -> Option<&'a Value> {
    container
        .value
        .pointer(&format!("/securityContext{pointer}"))
        .or_else(|| {
            workload
                .pod_spec()?
                .pointer(&format!("/securityContext{pointer}"))
        })
}

fn container_level(workload: &Workload<'_>, container: Container<'_>, out: &mut Vec<String>) {
    let id = format!("{} container {}", workload.object.id(), container.name());
    let own = |pointer: &str| {
        container
            .value
            .pointer(&format!("/securityContext{pointer}"))
    };
    if own("/privileged").and_then(Value::as_bool) == Some(true) {
        out.push(format!("{id}: privileged"));
    }
    if own("/allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
        out.push(format!("{id}: allowPrivilegeEscalation must be false"));
    }
    let drop = items(container.value, "/securityContext/capabilities/drop");
    if !drop.iter().any(|c| c.as_str() == Some("ALL")) {
        out.push(format!("{id}: capabilities must drop ALL"));
    }
    for added in items(container.value, "/securityContext/capabilities/add") {
        if added.as_str() != Some("NET_BIND_SERVICE") {
            out.push(format!("{id}: adds capability {added}"));
        }
    }
    if setting(workload, container, "/runAsNonRoot").and_then(Value::as_bool) != Some(true) {
        out.push(format!(
            "{id}: runAsNonRoot must be true (on the container or the pod)"
        ));
    }
    if setting(workload, container, "/runAsUser").and_then(Value::as_i64) == Some(0) {
        out.push(format!("{id}: runs as uid 0"));
    }
    let seccomp = setting(workload, container, "/seccompProfile/type").and_then(Value::as_str);
    if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
        out.push(format!(
            "{id}: seccompProfile must be RuntimeDefault or Localhost, found {seccomp:?}"
        ));
    }
    for port in items(container.value, "/ports") {
        if port
            .get("hostPort")
            .and_then(Value::as_i64)
            .is_some_and(|p| p != 0)
        {
            out.push(format!("{id}: hostPort is not allowed"));
        }
    }
}
