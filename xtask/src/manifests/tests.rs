//! The invariants hold for the real base manifests, and each one fails when the manifests are
//! broken in the way it guards against. Pure: no kubectl, no Python tools.

use serde_json::{Value, json};

use super::invariants::{self, NAMESPACE};
use super::model::{self, Object};

/// The base's source files, namespaced the way kustomize's `namespace:` does it, plus the Secret
/// examples: what the base renders to, without kubectl.
const BASE_FILES: &[(&str, &str)] = &[
    (
        "app/namespace.yaml",
        include_str!("../../../deploy/kubernetes/base/app/namespace.yaml"),
    ),
    (
        "app/serviceaccount.yaml",
        include_str!("../../../deploy/kubernetes/base/app/serviceaccount.yaml"),
    ),
    (
        "app/configmap.yaml",
        include_str!("../../../deploy/kubernetes/base/app/configmap.yaml"),
    ),
    (
        "app/secret.example.yaml",
        include_str!("../../../deploy/kubernetes/base/app/secret.example.yaml"),
    ),
    (
        "app/deployment.yaml",
        include_str!("../../../deploy/kubernetes/base/app/deployment.yaml"),
    ),
    (
        "app/service.yaml",
        include_str!("../../../deploy/kubernetes/base/app/service.yaml"),
    ),
    (
        "app/poddisruptionbudget.yaml",
        include_str!("../../../deploy/kubernetes/base/app/poddisruptionbudget.yaml"),
    ),
    (
        "app/horizontalpodautoscaler.yaml",
        include_str!("../../../deploy/kubernetes/base/app/horizontalpodautoscaler.yaml"),
    ),
    (
        "app/networkpolicy.yaml",
        include_str!("../../../deploy/kubernetes/base/app/networkpolicy.yaml"),
    ),
    (
        "db/secret.example.yaml",
        include_str!("../../../deploy/kubernetes/base/db/secret.example.yaml"),
    ),
    (
        "db/serviceaccount.yaml",
        include_str!("../../../deploy/kubernetes/base/db/serviceaccount.yaml"),
    ),
    (
        "db/service-headless.yaml",
        include_str!("../../../deploy/kubernetes/base/db/service-headless.yaml"),
    ),
    (
        "db/service.yaml",
        include_str!("../../../deploy/kubernetes/base/db/service.yaml"),
    ),
    (
        "db/statefulset.yaml",
        include_str!("../../../deploy/kubernetes/base/db/statefulset.yaml"),
    ),
    (
        "db/networkpolicy.yaml",
        include_str!("../../../deploy/kubernetes/base/db/networkpolicy.yaml"),
    ),
    (
        "db/poddisruptionbudget.yaml",
        include_str!("../../../deploy/kubernetes/base/db/poddisruptionbudget.yaml"),
    ),
];

fn base() -> Vec<Value> {
    let mut objects = Vec::new();
    for (name, text) in BASE_FILES {
        for mut object in model::parse_documents(text, name).expect("base files parse") {
            if object["kind"] != "Namespace" {
                object["metadata"]["namespace"] = json!(NAMESPACE);
            }
            objects.push(object);
        }
    }
    objects
}

fn object<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| Object(o).kind() == kind && Object(o).name() == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is in the base"))
}

/// Breaks the base with `change` and returns the violations found.
fn violations_after(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut objects = base();
    change(&mut objects);
    invariants::check(&objects)
}

#[track_caller]
fn assert_reported(violations: &[String], expected: &str) {
    assert!(
        violations.iter().any(|v| v.contains(expected)),
        "expected a violation containing {expected:?}, got {violations:#?}"
    );
}

fn app_container(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "Deployment", "challenge")["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn base_manifests_hold_every_invariant() {
    assert_eq!(invariants::check(&base()), Vec::<String>::new());
}

#[test]
fn selector_not_matching_pod_labels_is_reported() {
    let v = violations_after(|o| {
        object(o, "Deployment", "challenge")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] =
            json!("other");
    });
    assert_reported(
        &v,
        "Deployment/challenge: spec.selector does not match the pod template's labels",
    );
}

#[test]
fn selector_matching_another_workloads_pods_is_reported() {
    let v = violations_after(|o| {
        object(o, "Deployment", "challenge")["spec"]["selector"] =
            json!({"matchLabels": {"app.kubernetes.io/instance": "infra-challenge"}});
    });
    assert_reported(&v, "also matches the pods of StatefulSet/mysql");
}

#[test]
fn service_selecting_no_pods_is_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "challenge")["spec"]["selector"]["app.kubernetes.io/name"] =
            json!("chalenge");
    });
    assert_reported(
        &v,
        "Service/challenge: spec.selector matches no pod template",
    );
}

#[test]
fn service_target_port_not_declared_is_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "challenge")["spec"]["ports"][0]["targetPort"] = json!("web")
    });
    assert_reported(
        &v,
        "Service/challenge: targetPort `web` is not a container port of Deployment/challenge",
    );
}

#[test]
fn numeric_target_port_is_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "mysql")["spec"]["ports"][0]["targetPort"] = json!(3306)
    });
    assert_reported(&v, "Service/mysql: port 3306 must name its targetPort");
}

#[test]
fn statefulset_without_headless_service_is_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "mysql-headless")["spec"]
            .as_object_mut()
            .map(|s| s.remove("clusterIP"));
    });
    assert_reported(
        &v,
        "StatefulSet/mysql: serviceName `mysql-headless` is not a headless Service",
    );
}

#[test]
fn missing_configmap_key_is_reported() {
    let v = violations_after(|o| {
        let env = &mut object(o, "StatefulSet", "mysql")["spec"]["template"]["spec"]["containers"]
            [0]["env"];
        let user = env
            .as_array_mut()
            .and_then(|e| e.iter_mut().find(|v| v["name"] == "MYSQL_USER"));
        user.expect("MYSQL_USER is set")["valueFrom"]["configMapKeyRef"]["key"] = json!("DB_USER");
    });
    assert_reported(&v, "ConfigMap `challenge-config` has no key `DB_USER`");
}

#[test]
fn missing_secret_key_is_reported() {
    let v = violations_after(|o| {
        object(o, "Secret", "challenge-db")["stringData"] = json!({"db-password": "x"});
    });
    assert_reported(&v, "Secret `challenge-db` has no key `password`");
}

#[test]
fn missing_configmap_is_reported() {
    let v = violations_after(|o| o.retain(|x| Object(x).kind() != "ConfigMap"));
    assert_reported(
        &v,
        "refers to ConfigMap `challenge-config`, which is not in the set",
    );
}

#[test]
fn missing_secret_is_reported() {
    let v = violations_after(|o| {
        o.retain(|x| Object(x).name() != "mysql" || Object(x).kind() != "Secret")
    });
    assert_reported(
        &v,
        "StatefulSet/mysql: refers to Secret `mysql`, which is not in the set",
    );
}

#[test]
fn liveness_probe_on_readyz_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["livenessProbe"]["httpGet"]["path"] = json!("/readyz")
    });
    assert_reported(&v, "livenessProbe must be an HTTP GET of /healthz");
}

#[test]
fn readiness_probe_on_another_path_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["readinessProbe"]["httpGet"]["path"] = json!("/ready")
    });
    assert_reported(&v, "readinessProbe must be an HTTP GET of /readyz");
}

#[test]
fn probe_on_undeclared_port_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["startupProbe"]["httpGet"]["port"] = json!("metrics")
    });
    assert_reported(
        &v,
        "startupProbe port \"metrics\" is not a declared container port",
    );
}

#[test]
fn latest_or_missing_image_tag_is_reported() {
    let v = violations_after(|o| app_container(o)["image"] = json!("infra-challenge:latest"));
    assert_reported(&v, "image `infra-challenge:latest` has no fixed tag");
    let v = violations_after(|o| {
        object(o, "StatefulSet", "mysql")["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("mysql");
    });
    assert_reported(&v, "image `mysql` has no fixed tag");
}

#[test]
fn object_outside_the_namespace_is_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "mysql")["metadata"]["namespace"] = json!("default")
    });
    assert_reported(&v, "Service/mysql: namespace is \"default\"");
    let v = violations_after(|o| {
        object(o, "ConfigMap", "challenge-config")["metadata"]
            .as_object_mut()
            .map(|m| m.remove("namespace"));
    });
    assert_reported(&v, "ConfigMap/challenge-config: namespace is \"(none)\"");
}

#[test]
fn missing_recommended_labels_are_reported() {
    let v = violations_after(|o| {
        object(o, "Service", "mysql")["metadata"]["labels"]
            .as_object_mut()
            .map(|l| l.remove("app.kubernetes.io/part-of"));
    });
    assert_reported(
        &v,
        "Service/mysql: label `app.kubernetes.io/part-of` is not `infra-challenge`",
    );
}

fn app_egress(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "NetworkPolicy", "challenge")["spec"]["egress"]
}

#[test]
fn egress_beyond_dns_and_mysql_is_reported() {
    let v = violations_after(|o| {
        if let Some(rules) = app_egress(o).as_array_mut() {
            rules.push(json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}));
        }
    });
    assert_reported(&v, "NetworkPolicy/challenge: egress rule");
    assert_reported(&v, "is neither DNS nor MySQL");
}

#[test]
fn egress_to_all_ports_of_the_database_is_reported() {
    let v = violations_after(|o| {
        app_egress(o)[1]
            .as_object_mut()
            .map(|rule| rule.remove("ports"));
    });
    assert_reported(&v, "is neither DNS nor MySQL");
}

#[test]
fn unrestricted_egress_is_reported() {
    let v = violations_after(|o| {
        object(o, "NetworkPolicy", "challenge")["spec"]["policyTypes"] = json!(["Ingress"])
    });
    assert_reported(
        &v,
        "Deployment/challenge: no NetworkPolicy restricts its egress",
    );
}

#[test]
fn egress_without_dns_or_mysql_is_reported() {
    let v = violations_after(|o| *app_egress(o) = json!([]));
    assert_reported(&v, "egress does not allow DNS");
    assert_reported(&v, "egress does not allow the MySQL pods on 3306");
}

#[test]
fn network_policy_port_not_declared_is_reported() {
    let v = violations_after(|o| {
        object(o, "NetworkPolicy", "mysql")["spec"]["ingress"][0]["ports"][0]["port"] =
            json!("sql");
    });
    assert_reported(
        &v,
        "NetworkPolicy/mysql: ingress port `sql` is not a container port of StatefulSet/mysql",
    );
}

#[test]
fn disruption_budget_selecting_nothing_is_reported() {
    let v = violations_after(|o| {
        object(o, "PodDisruptionBudget", "mysql")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] =
            json!("mariadb");
    });
    assert_reported(
        &v,
        "PodDisruptionBudget/mysql: spec.selector matches no pod template",
    );
}

#[test]
fn replicas_next_to_an_autoscaler_are_reported() {
    let v =
        violations_after(|o| object(o, "Deployment", "challenge")["spec"]["replicas"] = json!(3));
    assert_reported(
        &v,
        "Deployment/challenge: sets spec.replicas, which fights HorizontalPodAutoscaler/challenge",
    );
}

#[test]
fn autoscaler_without_target_is_reported() {
    let v = violations_after(|o| {
        object(o, "HorizontalPodAutoscaler", "challenge")["spec"]["scaleTargetRef"]["name"] =
            json!("api");
    });
    assert_reported(&v, "scaleTargetRef Deployment/api is not in the set");
}

#[test]
fn grace_period_shorter_than_the_drain_is_reported() {
    let v = violations_after(|o| {
        object(o, "Deployment", "challenge")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] =
            json!(25);
    });
    assert_reported(
        &v,
        "terminationGracePeriodSeconds 25 < preStop sleep 10 + drain 20",
    );
}

#[test]
fn shell_prestop_hook_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["lifecycle"]["preStop"] =
            json!({"exec": {"command": ["sh", "-c", "sleep 10"]}});
    });
    assert_reported(&v, "preStop runs a command");
}

#[test]
fn password_in_an_environment_variable_is_reported() {
    let v = violations_after(|o| {
        if let Some(env) = app_container(o)["env"].as_array_mut() {
            env.push(json!({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "challenge-db", "key": "password"}}}));
        }
    });
    assert_reported(&v, "DB_PASSWORD is an environment variable");
}

#[test]
fn password_file_outside_the_secret_mount_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["env"][0]["value"] = json!("/run/secrets/db/password")
    });
    assert_reported(
        &v,
        "DB_PASSWORD_FILE `/run/secrets/db/password` is not a key of a mounted Secret",
    );
}

#[test]
fn database_host_that_is_no_service_is_reported() {
    let v = violations_after(|o| {
        object(o, "ConfigMap", "challenge-config")["data"]["DB_HOST"] = json!("db")
    });
    assert_reported(&v, "DB_HOST `db` is not a Service in the set");
    let v = violations_after(|o| {
        object(o, "ConfigMap", "challenge-config")["data"]["DB_PORT"] = json!("3307")
    });
    assert_reported(&v, "DB_PORT Some(3307) is not a port of Service `mysql`");
}

#[test]
fn listen_port_differing_from_the_http_port_is_reported() {
    let v = violations_after(|o| {
        object(o, "ConfigMap", "challenge-config")["data"]["PORT"] = json!("9000")
    });
    assert_reported(
        &v,
        "listens on PORT 9000, but its port named `http` is Some(8000)",
    );
}

#[test]
fn too_many_or_unexplained_scanner_skips_are_reported() {
    let v = violations_after(|o| {
        let annotations = &mut object(o, "Service", "mysql")["metadata"]["annotations"];
        *annotations = json!({"checkov.io/skip1": "CKV_K8S_21=it is in a namespace, the scanner cannot see it"});
    });
    assert_reported(&v, "4 scanner skips in the set; at most 3 are allowed");
    let v = violations_after(|o| {
        object(o, "Deployment", "challenge")["metadata"]["annotations"]["checkov.io/skip1"] =
            json!("CKV_K8S_43");
    });
    assert_reported(
        &v,
        "Deployment/challenge: skip `checkov.io/skip1` must read `CKV_ID=reason`",
    );
    let v = violations_after(|o| {
        object(o, "Deployment", "challenge")["metadata"]["annotations"]["checkov.io/skip1"] =
            json!("CKV_K8S_43=pinned at deploy time with image=repo@sha256");
    });
    assert_reported(
        &v,
        "Deployment/challenge: skip `checkov.io/skip1` must read `CKV_ID=reason`",
    );
}

#[test]
fn parse_documents_skips_empty_documents_and_rejects_scalars() {
    let objects =
        model::parse_documents("---\n---\nkind: A\n---\nkind: B\n", "test").expect("parses");
    assert_eq!(objects.len(), 2);
    assert!(model::parse_documents("kind: A\n---\njust text\n", "test").is_err());
}

#[test]
fn image_references_split_into_repository_and_tag() {
    assert_eq!(
        model::image_repository("infra-challenge:0.1.0"),
        "infra-challenge"
    );
    assert_eq!(model::image_tag("infra-challenge:0.1.0"), Some("0.1.0"));
    assert_eq!(
        model::image_repository("localhost:5000/infra-challenge"),
        "localhost:5000/infra-challenge"
    );
    assert_eq!(model::image_tag("localhost:5000/infra-challenge"), None);
    assert_eq!(
        model::image_tag("registry:5000/mysql:8.4@sha256:abc"),
        Some("8.4")
    );
    assert_eq!(model::image_tag("mysql:"), None);
}

fn mysql_pod(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "StatefulSet", "mysql")["spec"]["template"]["spec"]
}

#[test]
fn namespace_not_enforcing_restricted_is_reported() {
    let v = violations_after(|o| {
        object(o, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] =
            json!("baseline");
    });
    assert_reported(
        &v,
        "Namespace/infra-challenge: does not enforce the `restricted` Pod Security Standard",
    );
}

#[test]
fn privilege_escalation_is_reported() {
    let v = violations_after(|o| {
        app_container(o)["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    });
    assert_reported(
        &v,
        "Deployment/challenge container challenge: allowPrivilegeEscalation must be false",
    );
}

#[test]
fn capabilities_not_dropped_or_added_are_reported() {
    let v = violations_after(|o| {
        mysql_pod(o)["containers"][0]["securityContext"]["capabilities"] =
            json!({"add": ["SYS_ADMIN"]});
    });
    assert_reported(
        &v,
        "StatefulSet/mysql container mysql: capabilities must drop ALL",
    );
    assert_reported(
        &v,
        "StatefulSet/mysql container mysql: adds capability \"SYS_ADMIN\"",
    );
}

#[test]
fn root_user_or_missing_seccomp_is_reported() {
    let v = violations_after(|o| {
        let pod = mysql_pod(o);
        pod["securityContext"]
            .as_object_mut()
            .map(|s| s.remove("seccompProfile"));
        let container = &mut pod["containers"][0]["securityContext"];
        container
            .as_object_mut()
            .map(|s| s.remove("seccompProfile"));
        container["runAsUser"] = json!(0);
    });
    assert_reported(&v, "StatefulSet/mysql container mysql: runs as uid 0");
    assert_reported(
        &v,
        "StatefulSet/mysql container mysql: seccompProfile must be RuntimeDefault or Localhost",
    );
}

#[test]
fn host_namespaces_and_host_path_volumes_are_reported() {
    let v = violations_after(|o| {
        let pod = mysql_pod(o);
        pod["hostNetwork"] = json!(true);
        if let Some(volumes) = pod["volumes"].as_array_mut() {
            volumes.push(json!({"name": "host", "hostPath": {"path": "/var/lib/mysql"}}));
        }
    });
    assert_reported(&v, "StatefulSet/mysql: hostNetwork is not allowed");
    assert_reported(
        &v,
        "StatefulSet/mysql: volume `host` is of type [\"hostPath\"], not allowed",
    );
}
