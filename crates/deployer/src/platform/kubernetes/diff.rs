//! What a release would change in a cluster, and why the API would refuse it, decided before
//! anything is written. Both come from a server-side dry run (`dryRun=All`): the API server runs
//! defaulting, validation, admission and field ownership on the object and answers what it would
//! store, without storing it (what `kubectl diff` and `kubectl apply --dry-run=server` do).
//!
//! [`compare`] turns a live object and its dry-run result into field changes, marking the fields
//! another field manager owns; [`refusal`] words an API error of the dry run. Pure functions over
//! JSON shaped as the API returns it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::platform::{Change, ChangeAction, FieldChange};

use super::manifests::REDACTED;

/// Fields the API server maintains itself: they differ between any two reads and are not the
/// release's doing.
const SERVER_FIELDS: &[&str] = &[
    "metadata.managedFields",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.uid",
    "metadata.creationTimestamp",
    "metadata.selfLink",
    "status",
    "metadata.annotations.deployment.kubernetes.io/revision",
    "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration",
];

/// The change from `live` (absent: the object does not exist) to `dry_run` (what the API server
/// would store), or `None` when the release leaves the object as it is. `manager` is the
/// deployer's field manager: fields other managers own are marked with their names.
pub fn compare(
    object: &str,
    live: Option<&Value>,
    dry_run: &Value,
    manager: &str,
) -> Option<Change> {
    let Some(live) = live else {
        return Some(Change {
            object: object.to_string(),
            action: ChangeAction::Create,
            fields: Vec::new(),
        });
    };
    let secret = dry_run["kind"] == "Secret";
    let before = flatten(live);
    let after = flatten(dry_run);
    let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut fields = Vec::new();
    for path in paths {
        let (old, new) = (before.get(path), after.get(path));
        if old == new {
            continue;
        }
        let show = |value: Option<&String>| {
            value.map(|v| {
                if secret && (path.starts_with("data.") || path.starts_with("stringData.")) {
                    REDACTED.to_string()
                } else {
                    v.clone()
                }
            })
        };
        let owners = owners(live, path, manager);
        fields.push(FieldChange {
            path: path.clone(),
            before: show(old),
            after: show(new),
            owner: (!owners.is_empty()).then(|| owners.join(", ")),
        });
    }
    (!fields.is_empty()).then(|| Change {
        object: object.to_string(),
        action: ChangeAction::Update,
        fields,
    })
}

/// Leaf values by path: `spec.template.spec.containers[challenge].image`. Lists of named objects
/// are keyed by name (as server-side apply merges them), other lists by position.
pub fn flatten(value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

fn walk(value: &Value, path: String, out: &mut BTreeMap<String, String>) {
    if SERVER_FIELDS.contains(&path.as_str()) {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                walk(child, join(key), out);
            }
        }
        Value::Array(items) if items.is_empty() => {
            out.insert(path, "[]".to_string());
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let key = item
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| index.to_string(), String::from);
                walk(item, format!("{path}[{key}]"), out);
            }
        }
        Value::String(text) => {
            out.insert(path, text.clone());
        }
        Value::Null => {}
        other => {
            out.insert(path, other.to_string());
        }
    }
}

/// The field managers other than `manager` whose `managedFields` entry owns `path`.
fn owners(live: &Value, path: &str, manager: &str) -> Vec<String> {
    let Some(entries) = live["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    let segments = segments(path);
    let mut owners: Vec<String> = entries
        .iter()
        .filter(|entry| entry["manager"].as_str().is_some_and(|m| m != manager))
        .filter(|entry| owns(&entry["fieldsV1"], &segments))
        .filter_map(|entry| entry["manager"].as_str().map(String::from))
        .collect();
    owners.dedup();
    owners
}

/// A flattened path as `fieldsV1` keys: `f:spec`, `f:containers`, `k:{"name":"challenge"}`, ...
fn segments(path: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for part in path.split('.') {
        let (field, index) = match part.split_once('[') {
            Some((field, rest)) => (field, Some(rest.trim_end_matches(']'))),
            None => (part, None),
        };
        keys.push(format!("f:{field}"));
        if let Some(index) = index {
            keys.push(format!("k:{}", serde_json::json!({ "name": index })));
        }
    }
    keys
}

/// Whether a `fieldsV1` tree holds the field (or a parent of it, which owns it whole).
fn owns(fields: &Value, segments: &[String]) -> bool {
    let mut node = fields;
    for segment in segments {
        match node.get(segment) {
            Some(child) => node = child,
            // A map's key holding a dot (an annotation) was split above: try it joined.
            None => return false,
        }
    }
    true
}

/// Why the API server refused the dry run of `object`, in words that end "nothing was changed",
/// with the fix; `None` for an error that is not a refusal (the caller reports it as it is).
pub fn refusal(object: &str, code: u16, reason: &str, message: &str) -> Option<(String, String)> {
    let first = message.lines().next().unwrap_or("");
    let (what, fix) = match (code, reason) {
        (409, _) => (
            format!("server-side apply conflict on {object}: {first}"),
            "let the deployer own these fields with --force-conflicts (the other manager loses them), or stop \
             managing them with the other tool"
                .to_string(),
        ),
        (422, _) | (400, _) => (
            format!("the API server finds {object} invalid: {first}"),
            "fix the object in the overlay (`deployer render --target kubernetes` shows it)".to_string(),
        ),
        (403, _) if message.contains("admission webhook") || message.contains("denied the request") => (
            format!("an admission webhook denied {object}: {first}"),
            "change the object so the cluster's policy admits it, or ask the policy's owners".to_string(),
        ),
        (403, _) if message.contains("exceeded quota") || message.contains("quota") => (
            format!("a resource quota refuses {object}: {first}"),
            "lower the overlay's requests or replicas, or ask for a larger quota (`kubectl describe quota`)"
                .to_string(),
        ),
        (403, _) => (
            format!("the API forbids {object}: {first}"),
            "ask for the permissions `deployer doctor --target kubernetes` lists".to_string(),
        ),
        (404, "NotFound") => return None,
        _ if code >= 500 => return None,
        _ => (
            format!("the API server refused {object} ({code} {reason}): {first}"),
            "see the message; `deployer render --target kubernetes` shows the object".to_string(),
        ),
    };
    Some((format!("{what}; nothing was changed"), fix))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(image: &str, rust_log: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "challenge", "namespace": "infra-challenge-qa", "resourceVersion": "7",
                         "generation": 3, "annotations": {"deployment.kubernetes.io/revision": "3"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "challenge", "image": image,
                 "env": [{"name": "RUST_LOG", "value": rust_log}]}
            ]}}},
            "status": {"readyReplicas": 2}
        })
    }

    #[test]
    fn the_running_release_dry_run_again_is_no_change() {
        let live = deployment("infra-challenge:1", "info");
        let mut again = live.clone();
        again["metadata"]["resourceVersion"] = json!("8");
        assert_eq!(
            compare("Deployment qa/challenge", Some(&live), &again, "deployer"),
            None
        );
    }

    #[test]
    fn an_image_and_a_variable_change_are_listed_by_path() {
        let live = deployment("infra-challenge:1", "info");
        let next = deployment("infra-challenge:2", "debug");
        let change = compare("Deployment qa/challenge", Some(&live), &next, "deployer").unwrap();
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
                    "spec.template.spec.containers[challenge].env[RUST_LOG].value",
                    Some("info"),
                    Some("debug")
                ),
                (
                    "spec.template.spec.containers[challenge].image",
                    Some("infra-challenge:1"),
                    Some("infra-challenge:2")
                ),
            ]
        );
    }

    #[test]
    fn a_field_another_manager_owns_is_marked_with_its_name() {
        let mut live = deployment("infra-challenge:1", "info");
        let image = json!({"f:image": {}});
        let rust_log = json!({"f:env": {"k:{\"name\":\"RUST_LOG\"}": {"f:value": {}}}});
        let container = |fields: Value| {
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"challenge\"}": fields
            }}}}})
        };
        live["metadata"]["managedFields"] = json!([
            {"manager": "deployer", "operation": "Apply", "fieldsV1": container(image)},
            {"manager": "ops-oncall", "operation": "Apply", "fieldsV1": container(rust_log)}
        ]);
        let next = deployment("infra-challenge:2", "debug");
        let change = compare("Deployment qa/challenge", Some(&live), &next, "deployer").unwrap();
        let owner = |path: &str| {
            change
                .fields
                .iter()
                .find(|f| f.path.ends_with(path))
                .and_then(|f| f.owner.clone())
        };
        assert_eq!(owner("env[RUST_LOG].value").as_deref(), Some("ops-oncall"));
        assert_eq!(owner("image"), None, "the deployer's own field");
    }

    #[test]
    fn an_object_that_does_not_exist_would_be_created_and_secret_values_never_show() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "x"}, "data": {"password": "aHVudGVyMg=="}});
        let created = compare("Secret qa/x", None, &secret, "deployer").unwrap();
        assert_eq!(created.action, ChangeAction::Create);
        let mut changed = secret.clone();
        changed["data"]["password"] = json!("b3RoZXI=");
        let change = compare("Secret qa/x", Some(&secret), &changed, "deployer").unwrap();
        let text = format!("{change:?}");
        assert!(
            !text.contains("aHVudGVyMg==") && !text.contains("b3RoZXI="),
            "{text}"
        );
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn refusals_say_what_the_api_refused_and_that_nothing_was_changed() {
        let cases = [
            (
                409,
                "Conflict",
                "Apply failed with 1 conflict: conflict with \"ops-oncall\": .data.RUST_LOG",
                "conflict",
                "--force-conflicts",
            ),
            (
                422,
                "Invalid",
                "Deployment.apps \"challenge\" is invalid: spec.replicas: Invalid value: -1",
                "invalid",
                "overlay",
            ),
            (
                403,
                "Forbidden",
                "admission webhook \"policy.example\" denied the request: no latest tags",
                "admission webhook denied",
                "policy",
            ),
            (
                403,
                "Forbidden",
                "deployments.apps \"challenge\" is forbidden: exceeded quota: compute",
                "resource quota",
                "quota",
            ),
            (
                403,
                "Forbidden",
                "deployments.apps is forbidden: User \"ci\" cannot patch resource",
                "forbids",
                "permissions",
            ),
        ];
        for (code, reason, message, says, fix_says) in cases {
            let (what, fix) = refusal("Deployment qa/challenge", code, reason, message).unwrap();
            assert!(what.contains(says), "{code}: {what}");
            assert!(what.ends_with("; nothing was changed"), "{what}");
            assert!(fix.contains(fix_says), "{code}: {fix}");
        }
        assert_eq!(refusal("x", 503, "ServiceUnavailable", "try later"), None);
    }
}
