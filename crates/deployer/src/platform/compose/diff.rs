//! What a Compose release would change, per service: the configuration Compose resolves for the
//! release (`compose config`) against the running containers (`docker inspect`): image,
//! environment (the keys compose.yaml sets; the image's own variables are not the release's),
//! memory and CPU limits, published ports. Pure functions over both documents; the target runs the
//! commands.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::platform::{Change, ChangeAction, Changes, FieldChange, redact};

/// The services of a release, as the comparison sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub image: Option<String>,
    pub environment: BTreeMap<String, String>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Billionths of a CPU, as the engine counts them.
    pub nano_cpus: Option<u64>,
    /// `host_ip:host_port->target/protocol`; the host port is `*` when the engine picks it.
    pub ports: Vec<String>,
}

/// The services `compose config` declares (the YAML Compose prints, read as JSON), by name.
pub fn desired(config: &Value) -> BTreeMap<String, Settings> {
    let mut services = BTreeMap::new();
    let Some(declared) = config.get("services").and_then(Value::as_object) else {
        return services;
    };
    for (name, service) in declared {
        let environment = match service.get("environment") {
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|item| item.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let limits = &service["deploy"]["resources"]["limits"];
        let memory = service
            .get("mem_limit")
            .or_else(|| limits.get("memory"))
            .and_then(bytes);
        let nano_cpus = service
            .get("cpus")
            .or_else(|| limits.get("cpus"))
            .and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .map(|cpus| (cpus * 1e9).round() as u64);
        let mut ports: Vec<String> = service
            .get("ports")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(port).collect())
            .unwrap_or_default();
        ports.sort();
        services.insert(
            name.clone(),
            Settings {
                image: service
                    .get("image")
                    .and_then(Value::as_str)
                    .map(String::from),
                environment,
                memory,
                nano_cpus,
                ports,
            },
        );
    }
    services
}

/// What a running container has, from `docker inspect` (one element of its array).
pub fn live(inspect: &Value) -> Settings {
    let environment = inspect["Config"]["Env"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter_map(|item| item.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let positive = |v: &Value| v.as_u64().filter(|n| *n > 0);
    let mut ports = Vec::new();
    if let Some(bindings) = inspect["HostConfig"]["PortBindings"].as_object() {
        for (target, hosts) in bindings {
            for host in hosts.as_array().into_iter().flatten() {
                let ip = host["HostIp"].as_str().unwrap_or("");
                let port = host["HostPort"].as_str().filter(|p| !p.is_empty());
                ports.push(format!(
                    "{}:{}->{target}",
                    if ip.is_empty() { "0.0.0.0" } else { ip },
                    port.unwrap_or("*")
                ));
            }
        }
    }
    ports.sort();
    Settings {
        image: inspect["Config"]["Image"].as_str().map(String::from),
        environment,
        memory: positive(&inspect["HostConfig"]["Memory"]),
        nano_cpus: positive(&inspect["HostConfig"]["NanoCpus"]),
        ports,
    }
}

/// The changes from `live` (running containers by service) to `desired`; `secrets` are the
/// environment's secret values, shown as `[redacted]` wherever they appear.
pub fn compare(
    desired: &BTreeMap<String, Settings>,
    live: &BTreeMap<String, Settings>,
    secrets: &[String],
) -> Changes {
    let mut changes = Changes::default();
    for (service, want) in desired {
        let object = format!("service {service}");
        let Some(have) = live.get(service) else {
            changes.changes.push(Change {
                object,
                action: ChangeAction::Create,
                fields: Vec::new(),
            });
            continue;
        };
        let mut fields = Vec::new();
        let mut field = |path: String, before: Option<String>, after: Option<String>| {
            if before != after {
                let shown = |v: Option<String>| v.map(|v| shown(&path, &v, secrets));
                fields.push(FieldChange {
                    before: shown(before),
                    after: shown(after),
                    path,
                    owner: None,
                });
            }
        };
        field("image".into(), have.image.clone(), want.image.clone());
        for (key, value) in &want.environment {
            field(
                format!("environment.{key}"),
                have.environment.get(key).cloned(),
                Some(value.clone()),
            );
        }
        field(
            "memory limit".into(),
            have.memory.map(human_bytes),
            want.memory.map(human_bytes),
        );
        field(
            "cpu limit".into(),
            have.nano_cpus.map(cpus),
            want.nano_cpus.map(cpus),
        );
        // A port the engine picks (`127.0.0.1::8404`) is the same port whatever it picked.
        let have_ports: Vec<String> = have
            .ports
            .iter()
            .map(|p| match want.ports.iter().find(|w| w.contains(":*->")) {
                Some(w) if same_but_host_port(w, p) => w.clone(),
                _ => p.clone(),
            })
            .collect();
        field(
            "ports".into(),
            Some(have_ports.join(", ")).filter(|p| !p.is_empty()),
            Some(want.ports.join(", ")).filter(|p| !p.is_empty()),
        );
        if fields.is_empty() {
            changes.unchanged.push(object);
        } else {
            changes.changes.push(Change {
                object,
                action: ChangeAction::Update,
                fields,
            });
        }
    }
    changes
}

/// A value as `diff` shows it: secret values and the values of password-like keys redacted.
fn shown(path: &str, value: &str, secrets: &[String]) -> String {
    let key = path.rsplit('.').next().unwrap_or(path);
    redact(&format!("{key}: {value}"), secrets)
        .trim_end()
        .split_once(": ")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn same_but_host_port(wanted: &str, live: &str) -> bool {
    let (Some((w_ip, w_target)), Some((l_ip, l_target))) = (
        wanted.split_once(":*->"),
        live.rsplit_once("->")
            .map(|(host, target)| (host.rsplit_once(':').map_or(host, |(ip, _)| ip), target)),
    ) else {
        return false;
    };
    w_ip == l_ip && w_target == l_target
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A Compose port, short (`127.0.0.1:8000:8080`, `127.0.0.1::8404`, `8000:8080/udp`) or long
/// (`{target, published, host_ip, protocol}`), as `ip:port->target/protocol`.
fn port(value: &Value) -> Option<String> {
    let (ip, published, target, protocol) = match value {
        Value::String(text) => {
            let (text, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                [ip, published, target] => (
                    ip.to_string(),
                    published.to_string(),
                    target.to_string(),
                    protocol,
                ),
                [published, target] => (
                    String::new(),
                    published.to_string(),
                    target.to_string(),
                    protocol,
                ),
                [target] => (String::new(), String::new(), target.to_string(), protocol),
                _ => return None,
            }
        }
        Value::Object(map) => (
            map.get("host_ip").map(scalar).unwrap_or_default(),
            map.get("published").map(scalar).unwrap_or_default(),
            map.get("target").map(scalar)?,
            map.get("protocol").and_then(Value::as_str).unwrap_or("tcp"),
        ),
        _ => return None,
    };
    Some(format!(
        "{}:{}->{target}/{protocol}",
        if ip.is_empty() { "0.0.0.0" } else { &ip },
        if published.is_empty() {
            "*"
        } else {
            &published
        }
    ))
}

/// `256m`, `1g`, `1073741824`, `512M`, `1gb` -> bytes.
fn bytes(value: &Value) -> Option<u64> {
    let text = scalar(value).trim().to_ascii_lowercase();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    Some((number * factor as f64).round() as u64)
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b => b.to_string(),
    }
}

fn cpus(nano: u64) -> String {
    format!("{}", nano as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What `docker-compose config` (v1) prints for the app and proxy, read as JSON.
    fn config(version: &str, rust_log: &str) -> Value {
        json!({
            "services": {
                "app": {
                    "image": format!("infra-challenge:{version}"),
                    "environment": {"DB_HOST": "db", "DB_PORT": "3306", "RUST_LOG": rust_log,
                                    "DB_PASSWORD_FILE": "/run/secrets/db_password"},
                    "mem_limit": "256m",
                    "cpus": 1.0,
                    "expose": ["8000"]
                },
                "proxy": {
                    "image": "haproxy:2.8",
                    "ports": ["127.0.0.1:8000:8080/tcp", "127.0.0.1::8404/tcp"],
                    "mem_limit": "128m",
                    "cpus": 0.5
                }
            }
        })
    }

    /// A `docker inspect` element as the engine returns it (the fields read here).
    fn inspect(image: &str, env: &[&str], memory: u64, nano_cpus: u64, ports: Value) -> Value {
        json!({
            "Config": {"Image": image, "Env": env},
            "HostConfig": {"Memory": memory, "NanoCpus": nano_cpus, "PortBindings": ports}
        })
    }

    fn running(version: &str, rust_log: &str) -> BTreeMap<String, Settings> {
        let rust_log = format!("RUST_LOG={rust_log}");
        BTreeMap::from([
            (
                "app".to_string(),
                live(&inspect(
                    &format!("infra-challenge:{version}"),
                    &[
                        "PATH=/usr/local/bin",
                        "DB_HOST=db",
                        "DB_PORT=3306",
                        &rust_log,
                        "DB_PASSWORD_FILE=/run/secrets/db_password",
                    ],
                    256 << 20,
                    1_000_000_000,
                    json!(null),
                )),
            ),
            (
                "proxy".to_string(),
                live(&inspect(
                    "haproxy:2.8",
                    &[],
                    128 << 20,
                    500_000_000,
                    json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}],
                           "8404/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}),
                )),
            ),
        ])
    }

    #[test]
    fn the_running_release_is_no_change() {
        let changes = compare(
            &desired(&config("1.0.0", "info")),
            &running("1.0.0", "info"),
            &[],
        );
        assert!(changes.changes.is_empty(), "{changes:?}");
        assert_eq!(changes.unchanged, ["service app", "service proxy"]);
    }

    #[test]
    fn a_new_image_and_a_changed_variable_are_listed_field_by_field() {
        let changes = compare(
            &desired(&config("2.0.0", "debug")),
            &running("1.0.0", "info"),
            &[],
        );
        assert_eq!(changes.unchanged, ["service proxy"]);
        let [change] = changes.changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(change.object, "service app");
        assert_eq!(change.action, ChangeAction::Update);
        let fields: Vec<(&str, Option<&str>, Option<&str>)> = change
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.before.as_deref(), f.after.as_deref()))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "image",
                    Some("infra-challenge:1.0.0"),
                    Some("infra-challenge:2.0.0")
                ),
                ("environment.RUST_LOG", Some("info"), Some("debug")),
            ]
        );
    }

    #[test]
    fn a_service_that_does_not_run_would_be_created_and_limits_and_ports_are_compared() {
        let mut live = running("1.0.0", "info");
        live.remove("app");
        live.get_mut("proxy").unwrap().memory = Some(64 << 20);
        live.get_mut("proxy").unwrap().ports[0] = "127.0.0.1:9000->8080/tcp".into();
        let changes = compare(&desired(&config("1.0.0", "info")), &live, &[]);
        assert_eq!(changes.changes[0].object, "service app");
        assert_eq!(changes.changes[0].action, ChangeAction::Create);
        let proxy = &changes.changes[1];
        assert_eq!(proxy.fields[0].path, "memory limit");
        assert_eq!(proxy.fields[0].before.as_deref(), Some("64m"));
        assert_eq!(proxy.fields[0].after.as_deref(), Some("128m"));
        assert_eq!(proxy.fields[1].path, "ports");
        assert!(
            proxy.fields[1]
                .before
                .as_deref()
                .unwrap()
                .contains("127.0.0.1:9000->8080/tcp"),
            "{proxy:?}"
        );
    }

    #[test]
    fn secret_values_and_password_variables_are_redacted() {
        let mut want = desired(&config("1.0.0", "info"));
        let app = want.get_mut("app").unwrap();
        app.environment
            .insert("DB_PASSWORD".into(), "hunter2hunter2".into());
        app.environment
            .insert("GREETING".into(), "s3cret-value".into());
        let changes = compare(&want, &running("1.0.0", "info"), &["s3cret-value".into()]);
        let text = format!("{changes:?}");
        assert!(
            !text.contains("hunter2hunter2") && !text.contains("s3cret-value"),
            "{text}"
        );
        assert_eq!(text.matches("[redacted]").count(), 2, "{text}");
    }

    #[test]
    fn sizes_and_ports_read_every_compose_spelling() {
        assert_eq!(bytes(&json!("256m")), Some(256 << 20));
        assert_eq!(bytes(&json!("1g")), Some(1 << 30));
        assert_eq!(bytes(&json!("512MB")), Some(512 << 20));
        assert_eq!(bytes(&json!(1073741824)), Some(1 << 30));
        assert_eq!(
            port(&json!("8000:8080")).as_deref(),
            Some("0.0.0.0:8000->8080/tcp")
        );
        assert_eq!(
            port(&json!({"target": 8080, "published": "8000", "host_ip": "127.0.0.1", "protocol": "tcp"}))
                .as_deref(),
            Some("127.0.0.1:8000->8080/tcp")
        );
        assert_eq!(
            port(&json!("127.0.0.1::8404")).as_deref(),
            Some("127.0.0.1:*->8404/tcp")
        );
    }
}
