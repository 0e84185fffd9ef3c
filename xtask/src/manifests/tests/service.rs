//! The service's own rules: probes, configuration, shutdown, egress.

use serde_json::{Value, json};

use super::{app_container, assert_reported, object, violations_after};

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
