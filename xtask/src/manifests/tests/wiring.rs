//! How objects refer to each other, where they live, labels, images, scanner skips.

use serde_json::json;

use super::{Object, app_container, assert_reported, object, violations_after};

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
