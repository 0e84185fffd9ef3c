//! Rules about the `challenge` service's own pods (those running the `infra-challenge` image):
//! its configuration reaches the database, its probes hit the endpoints it serves, its shutdown
//! fits in the grace period, and its egress is DNS and MySQL only, plus the OTLP Collector when the
//! observability component is in the set: then `OTEL_EXPORTER_OTLP_ENDPOINT` names the Collector's
//! Service on one of its ports, and the NetworkPolicies let the service's pods reach the port behind it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::{
    Container, Object, Selector, Workload, image_name, items, of_kind, resolve_port, str_at,
    workloads,
};

/// The service's image repository: `infra-challenge:<version>` (docs/ARCHITECTURE.md, "Names").
pub const APP_IMAGE: &str = "infra-challenge";
/// The database's image repository.
pub const DB_IMAGE: &str = "mysql";
/// The service's endpoints (docs/ARCHITECTURE.md, "HTTP API"): liveness without the database,
/// readiness with it.
const LIVENESS_PATH: &str = "/healthz";
const READINESS_PATH: &str = "/readyz";
/// The service's drain time when `SHUTDOWN_TIMEOUT` is not set
/// (docs/ARCHITECTURE.md, "Configuration").
const DEFAULT_SHUTDOWN_TIMEOUT_SECS: i64 = 20;
/// Kubernetes' grace period when the pod spec sets none.
const DEFAULT_GRACE_PERIOD_SECS: i64 = 30;
const MYSQL_PORT: i64 = 3306;
const DNS_PORT: i64 = 53;
/// Where the service sends its spans and log records (crates/challenge/src/traces.rs).
const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Variables the service cannot start without in a cluster.
const REQUIRED_ENV: &[&str] = &[
    "DB_HOST",
    "DB_PORT",
    "DB_DATABASE",
    "DB_USERNAME",
    "DB_PASSWORD_FILE",
];

/// `exports_otlp`: the observability component is in the set, so the service must export to it.
pub fn check(objects: &[Value], exports_otlp: bool, out: &mut Vec<String>) {
    let apps: Vec<Workload<'_>> = workloads(objects)
        .into_iter()
        .filter(|w| w.runs_image(APP_IMAGE))
        .collect();
    if apps.is_empty() {
        out.push(format!("no workload runs the `{APP_IMAGE}` image"));
    }
    for app in &apps {
        for container in app
            .containers()
            .filter(|c| image_name(c.image()) == APP_IMAGE)
        {
            configuration(objects, app, container, out);
            if !container.init {
                probes(app, container, out);
                shutdown(objects, app, container, out);
            }
        }
        let otlp = otlp_target(objects, app, exports_otlp, out);
        egress(objects, app, otlp.as_ref(), out);
        if let Some(otlp) = &otlp {
            collector_ingress(objects, app, otlp, out);
        }
    }
}

/// Probe ports (HTTP, TCP, gRPC) are ports the container declares, in every workload of the set.
pub fn probe_ports(objects: &[Value], out: &mut Vec<String>) {
    for workload in workloads(objects) {
        for container in workload.containers() {
            container_probe_ports(&workload, container, out);
        }
    }
}

/// The environment a container sees, as far as the manifests tell: literal values and ConfigMap
/// values are known (`Some`), values from Secrets or the downward API are not (`None`).
fn environment<'a>(
    objects: &'a [Value],
    container: Container<'a>,
) -> BTreeMap<&'a str, Option<&'a str>> {
    let mut env = BTreeMap::new();
    for source in items(container.value, "/envFrom") {
        if let Some(name) = source.pointer("/configMapRef/name").and_then(Value::as_str)
            && let Some(map) = of_kind(objects, "ConfigMap").find(|c| c.name() == name)
        {
            for (key, value) in map
                .get("/data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                env.insert(key.as_str(), value.as_str());
            }
        }
    }
    for var in items(container.value, "/env") {
        let Some(name) = str_at(var, "/name") else {
            continue;
        };
        let value = match var.get("value") {
            Some(value) => value.as_str(),
            None => var.pointer("/valueFrom/configMapKeyRef").and_then(|r| {
                let map =
                    of_kind(objects, "ConfigMap").find(|c| Some(c.name()) == str_at(r, "/name"))?;
                str_at(map.0, &format!("/data/{}", str_at(r, "/key")?))
            }),
        };
        env.insert(name, value);
    }
    env
}

/// The service's settings point at things that exist: the database Service and its port, its own
/// container port, and a password file inside a mounted Secret.
fn configuration(
    objects: &[Value],
    app: &Workload<'_>,
    container: Container<'_>,
    out: &mut Vec<String>,
) {
    let id = format!("{} container {}", app.object.id(), container.name());
    let env = environment(objects, container);
    for name in REQUIRED_ENV {
        if !env.contains_key(name) {
            out.push(format!("{id}: {name} is not set"));
        }
    }
    if env.contains_key("DB_PASSWORD") {
        out.push(format!(
            "{id}: DB_PASSWORD is an environment variable; mount a Secret and set DB_PASSWORD_FILE"
        ));
    }
    if let Some(Some(host)) = env.get("DB_HOST") {
        match of_kind(objects, "Service").find(|s| s.name() == *host) {
            None => out.push(format!(
                "{id}: DB_HOST `{host}` is not a Service in the set"
            )),
            Some(service) => {
                let port = env
                    .get("DB_PORT")
                    .copied()
                    .flatten()
                    .and_then(|p| p.parse::<i64>().ok());
                let ports: Vec<i64> = items(service.0, "/spec/ports")
                    .iter()
                    .filter_map(|p| p.get("port")?.as_i64())
                    .collect();
                if !port.is_some_and(|p| ports.contains(&p)) {
                    out.push(format!(
                        "{id}: DB_PORT {port:?} is not a port of Service `{host}` ({ports:?})"
                    ));
                }
            }
        }
    }
    if !container.init {
        let port = env.get("PORT").copied().flatten().unwrap_or("8000");
        let http = resolve_port(&container.ports(), &Value::from("http"));
        if http.map(|p| p.to_string()).as_deref() != Some(port) {
            out.push(format!(
                "{id}: listens on PORT {port}, but its port named `http` is {http:?}"
            ));
        }
    }
    if let Some(Some(file)) = env.get("DB_PASSWORD_FILE")
        && !secret_file_mounted(app, container, file)
    {
        out.push(format!(
            "{id}: DB_PASSWORD_FILE `{file}` is not a key of a mounted Secret"
        ));
    }
}

/// `path` is a file that a Secret volume mounted in `container` provides.
fn secret_file_mounted(app: &Workload<'_>, container: Container<'_>, path: &str) -> bool {
    let volumes = items(app.template, "/spec/volumes");
    items(container.value, "/volumeMounts").iter().any(|mount| {
        let (Some(name), Some(dir)) = (str_at(mount, "/name"), str_at(mount, "/mountPath")) else {
            return false;
        };
        let Some(file) = path
            .strip_prefix(dir.trim_end_matches('/'))
            .and_then(|p| p.strip_prefix('/'))
        else {
            return false;
        };
        let Some(secret) = volumes
            .iter()
            .find(|v| str_at(v, "/name") == Some(name))
            .and_then(|v| v.get("secret"))
        else {
            return false;
        };
        let listed = items(secret, "/items");
        // Without `items` every key becomes a file of its own name.
        listed.is_empty() || listed.iter().any(|i| str_at(i, "/path") == Some(file))
    })
}

/// Liveness is `/healthz` (never the database), readiness is `/readyz`, and every HTTP probe hits
/// one of the two.
fn probes(app: &Workload<'_>, container: Container<'_>, out: &mut Vec<String>) {
    let id = format!("{} container {}", app.object.id(), container.name());
    let path = |probe: &str| str_at(container.value, &format!("/{probe}/httpGet/path"));
    for (probe, wanted) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ] {
        if path(probe) != Some(wanted) {
            out.push(format!(
                "{id}: {probe} must be an HTTP GET of {wanted}, found {:?}",
                path(probe)
            ));
        }
    }
    if let Some(startup) = container.value.get("startupProbe")
        && !matches!(
            str_at(startup, "/httpGet/path"),
            Some(LIVENESS_PATH | READINESS_PATH)
        )
    {
        out.push(format!(
            "{id}: startupProbe must be an HTTP GET of {LIVENESS_PATH} or {READINESS_PATH}"
        ));
    }
}

fn container_probe_ports(workload: &Workload<'_>, container: Container<'_>, out: &mut Vec<String>) {
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        for handler in ["httpGet", "tcpSocket", "grpc"] {
            let Some(port) = container.value.pointer(&format!("/{probe}/{handler}/port")) else {
                continue;
            };
            if !container.declares_port(port) {
                out.push(format!(
                    "{} container {}: {probe} port {port} is not a declared container port",
                    workload.object.id(),
                    container.name()
                ));
            }
        }
    }
}

/// The grace period covers the preStop sleep plus the service's drain, and preStop needs no shell
/// (the runtime image has none).
fn shutdown(
    objects: &[Value],
    app: &Workload<'_>,
    container: Container<'_>,
    out: &mut Vec<String>,
) {
    let id = format!("{} container {}", app.object.id(), container.name());
    if container.value.pointer("/lifecycle/preStop/exec").is_some() {
        out.push(format!("{id}: preStop runs a command, but the image has no shell or sleep; use `preStop: sleep:`"));
    }
    let sleep = container
        .value
        .pointer("/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let drain = match environment(objects, container).get("SHUTDOWN_TIMEOUT") {
        None => Some(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
        Some(value) => value.and_then(|v| v.trim_end_matches('s').parse::<i64>().ok()),
    };
    let Some(drain) = drain else {
        out.push(format!("{id}: SHUTDOWN_TIMEOUT is not a number of seconds"));
        return;
    };
    let grace = app
        .pod_spec()
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECS);
    if grace < sleep + drain {
        out.push(format!(
            "{}: terminationGracePeriodSeconds {grace} < preStop sleep {sleep} + drain {drain}",
            app.object.id()
        ));
    }
}

/// The NetworkPolicies over the service's pods restrict egress, and allow exactly two things: DNS
/// (port 53) and the MySQL pods on 3306; and a third when the service exports OTLP: the Collector's
/// pods on the port its endpoint leads to.
fn egress(
    objects: &[Value],
    app: &Workload<'_>,
    otlp: Option<&OtlpTarget<'_>>,
    out: &mut Vec<String>,
) {
    let id = app.object.id();
    let labels = app.pod_labels();
    let policies: Vec<Object<'_>> = of_kind(objects, "NetworkPolicy")
        .filter(|p| Selector::from_value(p.get("/spec/podSelector")).matches(&labels))
        .collect();
    let restricting: Vec<&Object<'_>> = policies
        .iter()
        .filter(|p| {
            items(p.0, "/spec/policyTypes")
                .iter()
                .any(|t| t.as_str() == Some("Egress"))
        })
        .collect();
    if restricting.is_empty() {
        out.push(format!("{id}: no NetworkPolicy restricts its egress"));
        return;
    }
    let databases: Vec<Workload<'_>> = workloads(objects)
        .into_iter()
        .filter(|w| w.runs_image(DB_IMAGE))
        .collect();
    let (mut dns, mut mysql, mut collector) = (false, false, false);
    for policy in restricting {
        for rule in items(policy.0, "/spec/egress") {
            if is_dns_rule(rule) {
                dns = true;
            } else if is_mysql_rule(rule, &databases) {
                mysql = true;
            } else if otlp.is_some_and(|target| is_otlp_rule(rule, target)) {
                collector = true;
            } else {
                out.push(format!(
                    "{}: egress rule {rule} is neither DNS nor MySQL{}",
                    policy.id(),
                    if otlp.is_some() {
                        " nor the OTLP Collector"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    if let Some(target) = otlp.filter(|_| !collector) {
        out.push(format!(
            "{id}: egress does not allow the pods behind Service `{}` on port {} ({OTLP_ENDPOINT})",
            target.service, target.pod_port
        ));
    }
    if !dns {
        out.push(format!("{id}: egress does not allow DNS (port 53)"));
    }
    if !mysql {
        out.push(format!(
            "{id}: egress does not allow the MySQL pods on {MYSQL_PORT}"
        ));
    }
}

/// Every port is 53 over UDP or TCP, and no peer is an IP block.
fn is_dns_rule(rule: &Value) -> bool {
    let ports = items(rule, "/ports");
    !ports.is_empty()
        && ports.iter().all(|p| {
            p.get("port").and_then(Value::as_i64) == Some(DNS_PORT)
                && matches!(str_at(p, "/protocol").unwrap_or("TCP"), "UDP" | "TCP")
        })
        && items(rule, "/to")
            .iter()
            .all(|peer| peer.get("ipBlock").is_none())
}

/// Peers are only the MySQL pods of this namespace, and every port is MySQL's over TCP.
fn is_mysql_rule(rule: &Value, databases: &[Workload<'_>]) -> bool {
    let peers = items(rule, "/to");
    let ports = items(rule, "/ports");
    let peers_are_databases = !peers.is_empty()
        && peers.iter().all(|peer| {
            let selector = Selector::from_value(peer.get("podSelector"));
            peer.get("namespaceSelector").is_none()
                && peer.get("ipBlock").is_none()
                && !selector.is_empty()
                && databases
                    .iter()
                    .any(|db| selector.matches(&db.pod_labels()))
        });
    let ports_are_mysql = !ports.is_empty()
        && ports.iter().all(|p| {
            let port = p.get("port").unwrap_or(&Value::Null);
            let number = databases
                .iter()
                .find_map(|db| resolve_port(&db.ports(), port));
            number == Some(MYSQL_PORT) && str_at(p, "/protocol").unwrap_or("TCP") == "TCP"
        });
    peers_are_databases && ports_are_mysql
}

/// Where `OTEL_EXPORTER_OTLP_ENDPOINT` leads: a Service of the set, and the pods and container port
/// behind the Service port it names.
struct OtlpTarget<'a> {
    service: &'a str,
    collectors: Vec<Workload<'a>>,
    pod_port: i64,
}

/// Reads the service container's `OTEL_EXPORTER_OTLP_ENDPOINT` and follows it to the Collector's
/// pods: `http://<Service>[.<namespace>[.svc[.cluster.local]]]:<port>`, with a Service of the set
/// and one of its ports. Unset is fine unless `required` (the observability component is in the
/// set); anything that does not lead to pods of the set is a violation.
fn otlp_target<'a>(
    objects: &'a [Value],
    app: &Workload<'a>,
    required: bool,
    out: &mut Vec<String>,
) -> Option<OtlpTarget<'a>> {
    let container = app
        .containers()
        .find(|c| !c.init && image_name(c.image()) == APP_IMAGE)?;
    let id = format!("{} container {}", app.object.id(), container.name());
    let Some(endpoint) = environment(objects, container).get(OTLP_ENDPOINT).copied() else {
        if required {
            out.push(format!(
                "{id}: {OTLP_ENDPOINT} is not set, but the observability component is in the set"
            ));
        }
        return None;
    };
    let Some(endpoint) = endpoint else {
        out.push(format!(
            "{id}: {OTLP_ENDPOINT} must be a literal value, so it can be checked"
        ));
        return None;
    };
    let parsed = url::Url::parse(endpoint).ok();
    let host_port = parsed
        .as_ref()
        .filter(|u| u.scheme() == "http")
        .and_then(|u| Some((u.host_str()?, u.port()?)));
    let Some((host, port)) = host_port else {
        out.push(format!(
            "{id}: {OTLP_ENDPOINT} `{endpoint}` must be http://<Service>:<port>, the port written out"
        ));
        return None;
    };
    let (name, domain) = host.split_once('.').unwrap_or((host, ""));
    let service = of_kind(objects, "Service").find(|s| s.name() == name);
    let namespace = service.and_then(Object::namespace).unwrap_or("");
    let in_namespace = [
        "",
        namespace,
        &format!("{namespace}.svc"),
        &format!("{namespace}.svc.cluster.local"),
    ]
    .contains(&domain);
    let Some(service) = service.filter(|_| in_namespace) else {
        out.push(format!(
            "{id}: {OTLP_ENDPOINT} `{endpoint}` names `{host}`, which is not a Service in the set"
        ));
        return None;
    };
    let service_port = items(service.0, "/spec/ports")
        .iter()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)));
    let Some(target_port) = service_port.and_then(|p| p.get("targetPort")) else {
        out.push(format!(
            "{id}: {OTLP_ENDPOINT} `{endpoint}`: port {port} is not a port of Service `{name}`"
        ));
        return None;
    };
    let selector = Selector::from_map(service.get("/spec/selector"));
    let collectors: Vec<Workload<'a>> = workloads(objects)
        .into_iter()
        .filter(|w| !selector.is_empty() && selector.matches(&w.pod_labels()))
        .collect();
    // `services` reports a Service without pods or with an undeclared targetPort.
    let pod_port = collectors
        .iter()
        .find_map(|w| resolve_port(&w.ports(), target_port))?;
    Some(OtlpTarget {
        service: service.name(),
        collectors,
        pod_port,
    })
}

/// Peers are only the Collector's pods of this namespace, and every port leads to its OTLP port over TCP.
fn is_otlp_rule(rule: &Value, target: &OtlpTarget<'_>) -> bool {
    let peers = items(rule, "/to");
    let ports = items(rule, "/ports");
    let peers_are_collectors = !peers.is_empty()
        && peers.iter().all(|peer| {
            let selector = Selector::from_value(peer.get("podSelector"));
            peer.get("namespaceSelector").is_none()
                && peer.get("ipBlock").is_none()
                && !selector.is_empty()
                && target
                    .collectors
                    .iter()
                    .any(|c| selector.matches(&c.pod_labels()))
        });
    let ports_are_otlp = !ports.is_empty()
        && ports.iter().all(|p| {
            let port = p.get("port").unwrap_or(&Value::Null);
            let number = target
                .collectors
                .iter()
                .find_map(|c| resolve_port(&c.ports(), port));
            number == Some(target.pod_port) && str_at(p, "/protocol").unwrap_or("TCP") == "TCP"
        });
    peers_are_collectors && ports_are_otlp
}

/// The NetworkPolicies over the Collector's pods, if any restricts ingress, admit the service's pods
/// on the OTLP port its endpoint leads to.
fn collector_ingress(
    objects: &[Value],
    app: &Workload<'_>,
    target: &OtlpTarget<'_>,
    out: &mut Vec<String>,
) {
    let app_labels = app.pod_labels();
    for collector in &target.collectors {
        let labels = collector.pod_labels();
        let restricting: Vec<Object<'_>> = of_kind(objects, "NetworkPolicy")
            .filter(|p| Selector::from_value(p.get("/spec/podSelector")).matches(&labels))
            .filter(|p| {
                items(p.0, "/spec/policyTypes")
                    .iter()
                    .any(|t| t.as_str() == Some("Ingress"))
            })
            .collect();
        if restricting.is_empty() {
            continue;
        }
        let admitted = restricting.iter().any(|policy| {
            items(policy.0, "/spec/ingress").iter().any(|rule| {
                // No `from` admits every source.
                let peers = items(rule, "/from");
                let from_app = peers.is_empty()
                    || peers.iter().any(|peer| {
                        peer.get("namespaceSelector").is_none()
                            && peer.get("ipBlock").is_none()
                            && Selector::from_value(peer.get("podSelector")).matches(&app_labels)
                    });
                let ports = items(rule, "/ports");
                let on_port = ports.is_empty()
                    || ports.iter().any(|p| {
                        p.get("port")
                            .and_then(|port| resolve_port(&collector.ports(), port))
                            == Some(target.pod_port)
                    });
                from_app && on_port
            })
        });
        if !admitted {
            out.push(format!(
                "{}: no NetworkPolicy admits the pods of {} on port {} ({OTLP_ENDPOINT})",
                collector.object.id(),
                app.object.id(),
                target.pod_port
            ));
        }
    }
}
