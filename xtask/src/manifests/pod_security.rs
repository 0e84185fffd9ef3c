//! Pod Security Standards, "restricted" profile (Kubernetes 1.30), checked offline: the
//! namespace enforces it, and every pod template would be admitted by it. checkov covers some of
//! these one by one; this is the profile as the admission controller applies it, so a pod that
//! passes here is not rejected at deploy time.
//!
//! One named exception, and only one: the log agent (deploy/kubernetes/log-agent/), a DaemonSet that
//! reads the kubelet's log files through a read-only hostPath volume as uid 0, which `restricted`
//! (and `baseline`) forbid. It may do exactly that, and only as `DaemonSet/log-agent` in its own
//! namespace, which enforces a lower level but audits and warns at `restricted` and holds no other
//! workload. Every other rule still applies to it, and every other pod gets no exception at all.

use serde_json::Value;

use super::model::{Container, Object, Workload, items, of_kind, str_at, workloads};

/// The log agent's namespace (deploy/kubernetes/log-agent/namespace.yaml).
pub const LOG_AGENT_NAMESPACE: &str = "infra-challenge-logs";
/// The one workload allowed a hostPath volume and uid 0, as `Kind/name`.
const LOG_AGENT: &str = "DaemonSet/log-agent";
/// The one host directory it may mount, read-only: the kubelet's pod logs.
const LOG_AGENT_HOST_PATH: &str = "/var/log/pods";

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
    // `namespaces` makes sure the one Namespace object is the rendering's.
    for namespace in of_kind(objects, "Namespace") {
        namespace_level(namespace, out);
    }
    for workload in workloads(objects) {
        let exempt = is_log_agent(&workload);
        if workload.object.namespace() == Some(LOG_AGENT_NAMESPACE) && !exempt {
            out.push(format!(
                "{}: only {LOG_AGENT} may run in namespace `{LOG_AGENT_NAMESPACE}`, which does not enforce `restricted`",
                workload.object.id()
            ));
        }
        pod_level(&workload, exempt, out);
        for container in workload.containers() {
            container_level(&workload, container, exempt, out);
        }
    }
}

/// The exception: the log agent, in its own namespace.
fn is_log_agent(workload: &Workload<'_>) -> bool {
    workload.object.id() == LOG_AGENT && workload.object.namespace() == Some(LOG_AGENT_NAMESPACE)
}

/// Every namespace enforces `restricted`; the log agent's may enforce less, but still audits and
/// warns at `restricted`, so what the exception allows is never silent.
fn namespace_level(namespace: Object<'_>, out: &mut Vec<String>) {
    let labels = namespace.labels();
    let modes: &[&str] = if namespace.name() == LOG_AGENT_NAMESPACE {
        &["audit", "warn"]
    } else {
        &["enforce"]
    };
    for mode in modes {
        if labels.get(format!("pod-security.kubernetes.io/{mode}").as_str()) != Some(&"restricted")
        {
            out.push(format!(
                "{}: does not {mode} the `restricted` Pod Security Standard",
                namespace.id()
            ));
        }
    }
}

fn pod_level(workload: &Workload<'_>, exempt: bool, out: &mut Vec<String>) {
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
        if exempt && kinds == ["hostPath"] {
            log_agent_host_path(workload, volume, name, out);
        } else if kinds.iter().any(|k| !ALLOWED_VOLUMES.contains(k)) {
            out.push(format!(
                "{id}: volume `{name}` is of type {kinds:?}, not allowed"
            ));
        }
    }
}

/// The log agent's hostPath: the kubelet's pod log directory, mounted read-only everywhere.
fn log_agent_host_path(workload: &Workload<'_>, volume: &Value, name: &str, out: &mut Vec<String>) {
    let id = workload.object.id();
    let path = str_at(volume, "/hostPath/path");
    if path != Some(LOG_AGENT_HOST_PATH) {
        out.push(format!(
            "{id}: hostPath volume `{name}` is {path:?}; only {LOG_AGENT_HOST_PATH} may be mounted"
        ));
    }
    for container in workload.containers() {
        for mount in items(container.value, "/volumeMounts") {
            let read_only = mount.get("readOnly").and_then(Value::as_bool) == Some(true);
            if str_at(mount, "/name") == Some(name) && !read_only {
                out.push(format!(
                    "{id} container {}: hostPath volume `{name}` must be mounted readOnly",
                    container.name()
                ));
            }
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

/// `exempt`: the log agent, which may run as uid 0 (the kubelet's log files are root's).
fn container_level(
    workload: &Workload<'_>,
    container: Container<'_>,
    exempt: bool,
    out: &mut Vec<String>,
) {
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
    if !exempt {
        if setting(workload, container, "/runAsNonRoot").and_then(Value::as_bool) != Some(true) {
            out.push(format!(
                "{id}: runAsNonRoot must be true (on the container or the pod)"
            ));
        }
        if setting(workload, container, "/runAsUser").and_then(Value::as_i64) == Some(0) {
            out.push(format!("{id}: runs as uid 0"));
        }
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
