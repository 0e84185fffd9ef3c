//! Where each environment lives (docs/ARCHITECTURE.md, "Names"): every overlay renders into a
//! namespace of its own, `infra-challenge-<env>`, so that deploying one environment never replaces
//! another's release in a shared cluster. Within one rendering: every namespaced object sits in
//! that namespace, and the rendering holds exactly one Namespace object, of that name (kustomize's
//! `namespace:` renames it; a rendering that kept the base's would create the shared one again).
//! Across renderings: each environment is rendered, and no two share a namespace.

use std::collections::BTreeMap;

use serde_json::Value;

use super::invariants::PRODUCT;
use super::model::Object;

/// The environments with an overlay (deploy/kubernetes/overlays/<env>), each in its own namespace.
pub const ENVIRONMENTS: &[&str] = &["dev", "qa", "prod"];

/// Kinds that have no namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// The namespace of an environment: `infra-challenge-<env>`.
pub fn of_environment(env: &str) -> String {
    format!("{PRODUCT}-{env}")
}

/// The base's namespace, a placeholder every overlay replaces (deploy/kubernetes/base/kustomization.yaml).
/// The base is rendered to be checked, never applied.
pub fn of_base() -> String {
    PRODUCT.to_string()
}

/// Every namespaced object sits in `namespace`, and there is exactly one Namespace object: that one.
pub fn check(objects: &[Value], namespace: &str, out: &mut Vec<String>) {
    let mut namespace_objects = 0;
    for object in objects.iter().map(Object) {
        if object.kind() == "Namespace" {
            namespace_objects += 1;
            if object.name() != namespace {
                out.push(format!(
                    "{}: only the `{namespace}` namespace belongs here",
                    object.id()
                ));
            }
        } else if !CLUSTER_SCOPED.contains(&object.kind()) && object.namespace() != Some(namespace)
        {
            out.push(format!(
                "{}: namespace is {:?}, expected `{namespace}`",
                object.id(),
                object.namespace().unwrap_or("(none)")
            ));
        }
    }
    if namespace_objects != 1 {
        out.push(format!(
            "{namespace_objects} Namespace objects in the set; expected exactly one, `{namespace}`"
        ));
    }
}

/// The overlays side by side, `(env, its rendered objects)`: every environment of `ENVIRONMENTS`
/// is there, each in `infra-challenge-<env>`, and no two environments share a namespace.
pub fn check_environments(overlays: &[(&str, &[Value])]) -> Vec<String> {
    let mut out = Vec::new();
    for env in ENVIRONMENTS {
        if !overlays.iter().any(|(rendered, _)| rendered == env) {
            out.push(format!("overlays/{env}: not rendered (no such overlay?)"));
        }
    }
    // Which environments put objects in which namespace: one namespace per environment, none shared.
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (env, objects) in overlays {
        let mut own = Vec::new();
        check(objects, &of_environment(env), &mut own);
        out.extend(own.into_iter().map(|v| format!("overlays/{env}: {v}")));
        for namespace in namespaces_used(objects) {
            let envs = users.entry(namespace).or_default();
            if !envs.contains(env) {
                envs.push(env);
            }
        }
    }
    for (namespace, envs) in users {
        if envs.len() > 1 {
            out.push(format!(
                "overlays {} all render into namespace `{namespace}`: each environment needs its own",
                envs.join(", ")
            ));
        }
    }
    out
}

/// The namespaces a set of objects names: those of its Namespace objects and of its namespaced
/// objects.
fn namespaces_used(objects: &[Value]) -> Vec<&str> {
    let mut used: Vec<&str> = objects
        .iter()
        .map(Object)
        .filter_map(|o| {
            if o.kind() == "Namespace" {
                Some(o.name())
            } else {
                o.namespace()
            }
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}
