//! References from pods to ConfigMaps and Secrets: every object named exists in the set, and so
//! does every key. The Secret examples stand in for the real Secrets, which are never committed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::model::{items, of_kind, str_at, workloads};

/// The keys each ConfigMap or Secret of the set provides.
fn keys_by_name<'a>(
    objects: &'a [Value],
    kind: &'a str,
    fields: &[&str],
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    of_kind(objects, kind)
        .map(|object| {
            let keys = fields
                .iter()
                .filter_map(|field| object.0.get(*field).and_then(Value::as_object))
                .flat_map(|map| map.keys().map(String::as_str))
                .collect();
            (object.name(), keys)
        })
        .collect()
}

/// Every ConfigMap and Secret a pod refers to exists, and so does every key it names.
pub fn check(objects: &[Value], out: &mut Vec<String>) {
    let config_maps = keys_by_name(objects, "ConfigMap", &["data", "binaryData"]);
    let secrets = keys_by_name(objects, "Secret", &["data", "stringData"]);
    let lookup = |kind: &str| {
        if kind == "ConfigMap" {
            &config_maps
        } else {
            &secrets
        }
    };
    let mut require =
        |id: &str, kind: &str, name: Option<&str>, key: Option<&str>, optional: bool| {
            if optional {
                return;
            }
            let name = name.unwrap_or("");
            match (lookup(kind).get(name), key) {
                (None, _) => out.push(format!(
                    "{id}: refers to {kind} `{name}`, which is not in the set"
                )),
                (Some(keys), Some(key)) if !keys.contains(key) => {
                    out.push(format!("{id}: {kind} `{name}` has no key `{key}`"))
                }
                _ => {}
            }
        };
    let optional = |v: &Value| v.get("optional").and_then(Value::as_bool).unwrap_or(false);
    for workload in workloads(objects) {
        for container in workload.containers() {
            let id = format!("{} container {}", workload.object.id(), container.name());
            for source in items(container.value, "/envFrom") {
                for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
                    if let Some(r) = source.get(field) {
                        require(&id, kind, str_at(r, "/name"), None, optional(r));
                    }
                }
            }
            for var in items(container.value, "/env") {
                for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")]
                {
                    if let Some(r) = var.pointer(&format!("/valueFrom/{field}")) {
                        require(
                            &id,
                            kind,
                            str_at(r, "/name"),
                            str_at(r, "/key"),
                            optional(r),
                        );
                    }
                }
            }
        }
        let id = workload.object.id();
        let volumes = items(workload.template, "/spec/volumes");
        let projected = volumes.iter().flat_map(|v| items(v, "/projected/sources"));
        for source in volumes.iter().chain(projected) {
            for (field, name_field, kind) in [
                ("configMap", "name", "ConfigMap"),
                ("secret", "secretName", "Secret"),
                ("secret", "name", "Secret"),
            ] {
                let Some(r) = source.get(field) else { continue };
                let Some(name) = str_at(r, &format!("/{name_field}")) else {
                    continue;
                };
                require(&id, kind, Some(name), None, optional(r));
                for item in items(r, "/items") {
                    require(&id, kind, Some(name), str_at(item, "/key"), optional(r));
                }
            }
        }
    }
}
