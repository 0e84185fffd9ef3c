//! The observability component (its Collector, the service's OTLP endpoint and the NetworkPolicies
//! between them) and the log agent, the one exception to Pod Security `restricted`.

use serde_json::{Value, json};

use super::{
    Object, app_container, assert_reported, base, in_namespace, invariants, model, object,
};
use crate::manifests::namespaces as placement;
use crate::manifests::pod_security::LOG_AGENT_NAMESPACE;

/// The component's resource files (components/observability/kustomization.yaml, `resources:`).
const COMPONENT_FILES: &[(&str, &str)] = &[
    (
        "serviceaccount.yaml",
        include_str!("../../../../deploy/kubernetes/components/observability/serviceaccount.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../../../deploy/kubernetes/components/observability/deployment.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../../../deploy/kubernetes/components/observability/service.yaml"),
    ),
    (
        "poddisruptionbudget.yaml",
        include_str!(
            "../../../../deploy/kubernetes/components/observability/poddisruptionbudget.yaml"
        ),
    ),
    (
        "networkpolicy.yaml",
        include_str!("../../../../deploy/kubernetes/components/observability/networkpolicy.yaml"),
    ),
];
/// The component's patch of the service's Deployment.
const COMPONENT_PATCH: &str = include_str!(
    "../../../../deploy/kubernetes/components/observability/challenge-deployment.yaml"
);

/// The log agent's resource files (log-agent/kustomization.yaml, `resources:`).
const LOG_AGENT_FILES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../../deploy/kubernetes/log-agent/namespace.yaml"),
    ),
    (
        "serviceaccount.yaml",
        include_str!("../../../../deploy/kubernetes/log-agent/serviceaccount.yaml"),
    ),
    (
        "daemonset.yaml",
        include_str!("../../../../deploy/kubernetes/log-agent/daemonset.yaml"),
    ),
    (
        "networkpolicy.yaml",
        include_str!("../../../../deploy/kubernetes/log-agent/networkpolicy.yaml"),
    ),
];

fn parse(files: &[(&str, &str)]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|(name, text)| model::parse_documents(text, name).expect("files parse"))
        .collect()
}

/// A ConfigMap the kustomizations generate (configMapGenerator), without kustomize's hash suffix,
/// which kustomize also appends to every reference.
fn generated_config_map(name: &str, component: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_string(), json!("x")))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {
               "app.kubernetes.io/name": component,
               "app.kubernetes.io/part-of": "infra-challenge"}},
           "data": data})
}

/// The base with the component added, as an overlay that lists it under `components:` renders it.
fn observed() -> Vec<Value> {
    let mut objects = base();
    let patch = model::parse_documents(COMPONENT_PATCH, "challenge-deployment.yaml")
        .expect("the patch parses");
    let env = patch[0]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the patch sets env")
        .clone();
    app_container(&mut objects)["env"]
        .as_array_mut()
        .expect("the service container has env")
        .extend(env);
    let mut added = parse(COMPONENT_FILES);
    added.push(generated_config_map(
        "otel-collector-config",
        "otel-collector",
        &["config.yaml"],
    ));
    added.push(generated_config_map(
        "otel-collector-backends",
        "otel-collector",
        &["TRACES_OTLP_ENDPOINT", "LOGS_OTLP_ENDPOINT"],
    ));
    objects.extend(in_namespace(added, &placement::of_base()));
    objects
}

fn observed_violations(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut objects = observed();
    change(&mut objects);
    invariants::check(
        &objects,
        &invariants::Expected::observed_environment(&placement::of_base()),
    )
}

/// The log agent's kustomization, rendered into `namespace`.
fn log_agent_in(namespace: &str) -> Vec<Value> {
    let mut objects = parse(LOG_AGENT_FILES);
    objects.push(generated_config_map(
        "log-agent-config",
        "log-agent",
        &["config.yaml"],
    ));
    objects.push(generated_config_map(
        "log-agent-backends",
        "log-agent",
        &["LOGS_OTLP_ENDPOINT"],
    ));
    in_namespace(objects, namespace)
}

fn log_agent_violations(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut objects = log_agent_in(LOG_AGENT_NAMESPACE);
    change(&mut objects);
    invariants::check(&objects, &invariants::Expected::log_agent())
}

fn set_endpoint(objects: &mut [Value], url: &str) {
    let env = app_container(objects)["env"]
        .as_array_mut()
        .expect("the service container has env");
    let var = env
        .iter_mut()
        .find(|v| v["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
        .expect("the component sets the endpoint");
    var["value"] = json!(url);
}

fn log_agent_pod(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "DaemonSet", "log-agent")["spec"]["template"]["spec"]
}

#[test]
fn base_with_the_component_holds_every_invariant() {
    assert_eq!(observed_violations(|_| {}), Vec::<String>::new());
}

#[test]
fn log_agent_holds_every_invariant() {
    assert_eq!(log_agent_violations(|_| {}), Vec::<String>::new());
}

#[test]
fn endpoint_naming_no_service_of_the_set_is_reported() {
    let v = observed_violations(|o| set_endpoint(o, "http://collector:4318"));
    assert_reported(&v, "names `collector`, which is not a Service in the set");
    let v = observed_violations(|o| set_endpoint(o, "http://otel-collector.monitoring:4318"));
    assert_reported(
        &v,
        "names `otel-collector.monitoring`, which is not a Service in the set",
    );
}

#[test]
fn endpoint_with_the_namespace_spelled_out_is_accepted() {
    let url = format!("http://otel-collector.{}.svc:4318", placement::of_base());
    assert_eq!(
        observed_violations(|o| set_endpoint(o, &url)),
        Vec::<String>::new()
    );
}

#[test]
fn endpoint_on_a_port_the_service_does_not_expose_is_reported() {
    let v = observed_violations(|o| set_endpoint(o, "http://otel-collector:4319"));
    assert_reported(&v, "port 4319 is not a port of Service `otel-collector`");
    let v = observed_violations(|o| set_endpoint(o, "http://otel-collector"));
    assert_reported(&v, "must be http://<Service>:<port>, the port written out");
}

#[test]
fn component_without_the_endpoint_is_reported() {
    let v = observed_violations(|o| {
        app_container(o)["env"]
            .as_array_mut()
            .expect("env")
            .retain(|v| v["name"] != "OTEL_EXPORTER_OTLP_ENDPOINT");
    });
    assert_reported(
        &v,
        "OTEL_EXPORTER_OTLP_ENDPOINT is not set, but the observability component is in the set",
    );
}

#[test]
fn egress_not_reaching_the_collector_is_reported() {
    let v = observed_violations(|o| {
        o.retain(|x| Object(x).name() != "challenge-to-otel-collector");
    });
    assert_reported(
        &v,
        "Deployment/challenge: egress does not allow the pods behind Service `otel-collector` on port 4318",
    );
    // The gRPC port is the Collector's too, but not where the endpoint leads.
    let v = observed_violations(|o| {
        object(o, "NetworkPolicy", "challenge-to-otel-collector")["spec"]["egress"][0]["ports"]
            [0]["port"] = json!("otlp-grpc");
    });
    assert_reported(&v, "is neither DNS nor MySQL nor the OTLP Collector");
    assert_reported(
        &v,
        "egress does not allow the pods behind Service `otel-collector`",
    );
}

#[test]
fn collector_not_admitting_the_service_is_reported() {
    let v = observed_violations(|o| {
        object(o, "NetworkPolicy", "otel-collector")["spec"]["ingress"][0]["ports"][0]["port"] =
            json!("otlp-grpc");
    });
    assert_reported(
        &v,
        "Deployment/otel-collector: no NetworkPolicy admits the pods of Deployment/challenge on port 4318",
    );
    let v = observed_violations(|o| {
        object(o, "NetworkPolicy", "otel-collector")["spec"]["ingress"][0]["from"][0]["podSelector"]
            ["matchLabels"]["app.kubernetes.io/name"] = json!("mysql");
    });
    assert_reported(
        &v,
        "no NetworkPolicy admits the pods of Deployment/challenge",
    );
}

#[test]
fn collector_skip_counts_only_where_the_component_is() {
    let v = invariants::check(
        &observed(),
        &invariants::Expected::environment(&placement::of_base()),
    );
    assert_eq!(
        v,
        ["4 scanner skips in the set; at most 3 are allowed".to_string()]
    );
}

#[test]
fn collector_running_as_root_is_reported() {
    let v = observed_violations(|o| {
        object(o, "Deployment", "otel-collector")["spec"]["template"]["spec"]["securityContext"]
            ["runAsUser"] = json!(0);
        object(o, "Deployment", "otel-collector")["spec"]["template"]["spec"]["containers"][0]["securityContext"]
            .as_object_mut()
            .map(|s| s.remove("runAsUser"));
    });
    assert_reported(
        &v,
        "Deployment/otel-collector container otel-collector: runs as uid 0",
    );
}

#[test]
fn log_agent_outside_its_namespace_gets_no_exception() {
    let namespace = placement::of_environment("dev");
    let objects = log_agent_in(&namespace);
    let v = invariants::check(
        &objects,
        &invariants::Expected {
            namespace: &namespace,
            ..invariants::Expected::log_agent()
        },
    );
    assert_reported(
        &v,
        "Namespace/infra-challenge-dev: does not enforce the `restricted` Pod Security Standard",
    );
    assert_reported(
        &v,
        "DaemonSet/log-agent: volume `pod-logs` is of type [\"hostPath\"], not allowed",
    );
    assert_reported(
        &v,
        "DaemonSet/log-agent container log-agent: runAsNonRoot must be true",
    );
    assert_reported(&v, "DaemonSet/log-agent container log-agent: runs as uid 0");
}

#[test]
fn other_workload_in_the_log_agent_namespace_is_reported() {
    let v = log_agent_violations(|o| {
        let mut other = object(o, "DaemonSet", "log-agent").clone();
        other["metadata"]["name"] = json!("other");
        o.push(other);
    });
    assert_reported(
        &v,
        "DaemonSet/other: only DaemonSet/log-agent may run in namespace `infra-challenge-logs`",
    );
    assert_reported(&v, "DaemonSet/other container log-agent: runs as uid 0");
    assert_reported(
        &v,
        "DaemonSet/other: volume `pod-logs` is of type [\"hostPath\"], not allowed",
    );
}

#[test]
fn log_agent_mounting_more_or_writable_host_paths_is_reported() {
    let v = log_agent_violations(|o| {
        log_agent_pod(o)["volumes"][1]["hostPath"]["path"] = json!("/var/lib");
    });
    assert_reported(
        &v,
        "DaemonSet/log-agent: hostPath volume `pod-logs` is Some(\"/var/lib\"); only /var/log/pods may be mounted",
    );
    let v = log_agent_violations(|o| {
        log_agent_pod(o)["containers"][0]["volumeMounts"][1]["readOnly"] = json!(false);
    });
    assert_reported(
        &v,
        "DaemonSet/log-agent container log-agent: hostPath volume `pod-logs` must be mounted readOnly",
    );
}

#[test]
fn log_agent_keeps_every_other_restricted_rule() {
    let v = log_agent_violations(|o| {
        let pod = log_agent_pod(o);
        pod["hostNetwork"] = json!(true);
        let container = &mut pod["containers"][0]["securityContext"];
        container["allowPrivilegeEscalation"] = json!(true);
        container["capabilities"] = json!({"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]});
    });
    assert_reported(&v, "DaemonSet/log-agent: hostNetwork is not allowed");
    assert_reported(
        &v,
        "DaemonSet/log-agent container log-agent: allowPrivilegeEscalation must be false",
    );
    assert_reported(
        &v,
        "DaemonSet/log-agent container log-agent: adds capability \"DAC_READ_SEARCH\"",
    );
}

#[test]
fn log_agent_namespace_not_warning_at_restricted_is_reported() {
    let v = log_agent_violations(|o| {
        object(o, "Namespace", LOG_AGENT_NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/warn"] =
            json!("privileged");
    });
    assert_reported(
        &v,
        "Namespace/infra-challenge-logs: does not warn the `restricted` Pod Security Standard",
    );
}
