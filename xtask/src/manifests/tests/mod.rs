//! The invariants hold for the real base manifests, and each one fails when the manifests are
//! broken in the way it guards against. Pure: no kubectl, no Python tools.

mod namespaces;
mod observability;
mod pod_security;
mod service;
mod wiring;

use serde_json::{Value, json};

use super::invariants;
use super::model::{self, Object};
use super::namespaces as placement;

/// The base's source files, namespaced the way kustomize's `namespace:` does it, plus the Secret
/// examples: what the base renders to, without kubectl.
const BASE_FILES: &[(&str, &str)] = &[
    (
        "app/namespace.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/namespace.yaml"),
    ),
    (
        "app/serviceaccount.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/serviceaccount.yaml"),
    ),
    (
        "app/configmap.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/configmap.yaml"),
    ),
    (
        "app/secret.example.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/secret.example.yaml"),
    ),
    (
        "app/deployment.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/deployment.yaml"),
    ),
    (
        "app/service.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/service.yaml"),
    ),
    (
        "app/poddisruptionbudget.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/poddisruptionbudget.yaml"),
    ),
    (
        "app/horizontalpodautoscaler.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/horizontalpodautoscaler.yaml"),
    ),
    (
        "app/networkpolicy.yaml",
        include_str!("../../../../deploy/kubernetes/base/app/networkpolicy.yaml"),
    ),
    (
        "db/secret.example.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/secret.example.yaml"),
    ),
    (
        "db/serviceaccount.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/serviceaccount.yaml"),
    ),
    (
        "db/service-headless.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/service-headless.yaml"),
    ),
    (
        "db/service.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/service.yaml"),
    ),
    (
        "db/statefulset.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/statefulset.yaml"),
    ),
    (
        "db/networkpolicy.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/networkpolicy.yaml"),
    ),
    (
        "db/poddisruptionbudget.yaml",
        include_str!("../../../../deploy/kubernetes/base/db/poddisruptionbudget.yaml"),
    ),
];

fn base() -> Vec<Value> {
    in_namespace(base_sources(), &placement::of_base())
}

/// The base's objects as they are written, without namespace (the Namespace object aside).
fn base_sources() -> Vec<Value> {
    let mut objects = Vec::new();
    for (name, text) in BASE_FILES {
        objects.extend(model::parse_documents(text, name).expect("base files parse"));
    }
    objects
}

/// What kustomize's `namespace:` does: every namespaced object moved into `namespace`, and the
/// Namespace object renamed to it.
fn in_namespace(mut objects: Vec<Value>, namespace: &str) -> Vec<Value> {
    for object in &mut objects {
        if object["kind"] == "Namespace" {
            object["metadata"]["name"] = json!(namespace);
        } else {
            object["metadata"]["namespace"] = json!(namespace);
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
    invariants::check(
        &objects,
        &invariants::Expected::environment(&placement::of_base()),
    )
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
    assert_eq!(
        invariants::check(
            &base(),
            &invariants::Expected::environment(&placement::of_base())
        ),
        Vec::<String>::new()
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
