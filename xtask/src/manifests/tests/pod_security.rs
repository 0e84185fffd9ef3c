//! The restricted Pod Security Standard.

use serde_json::{Value, json};

use super::{app_container, assert_reported, object, placement, violations_after};

fn mysql_pod(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "StatefulSet", "mysql")["spec"]["template"]["spec"]
}

#[test]
fn namespace_not_enforcing_restricted_is_reported() {
    let v = violations_after(|o| {
        object(o, "Namespace", &placement::of_base())["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] =
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
