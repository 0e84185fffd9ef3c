//! Each environment in a namespace of its own: within a rendering, and across the overlays.

use serde_json::{Value, json};

use super::{assert_reported, base_sources, in_namespace, invariants, model, placement};

/// The base as an overlay renders it: everything in `infra-challenge-<env>`.
fn overlay(env: &str) -> Vec<Value> {
    in_namespace(base_sources(), &placement::of_environment(env))
}

fn check_environments(overlays: &[(&str, Vec<Value>)]) -> Vec<String> {
    let borrowed: Vec<(&str, &[Value])> = overlays
        .iter()
        .map(|(env, objects)| (*env, objects.as_slice()))
        .collect();
    placement::check_environments(&borrowed)
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn config_map(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "challenge-config", "namespace": namespace}})
}

fn namespace_violations(objects: &[Value], namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    placement::check(objects, namespace, &mut out);
    out
}

#[test]
fn environment_namespaces_are_named_after_the_environment() {
    assert_eq!(placement::of_environment("qa"), "infra-challenge-qa");
    assert_eq!(
        placement::ENVIRONMENTS
            .iter()
            .map(|env| placement::of_environment(env))
            .collect::<Vec<_>>(),
        [
            "infra-challenge-dev",
            "infra-challenge-qa",
            "infra-challenge-prod"
        ]
    );
}

#[test]
fn each_overlay_sets_its_environments_namespace() {
    let overlays = [
        (
            "dev",
            include_str!("../../../../deploy/kubernetes/overlays/dev/kustomization.yaml"),
        ),
        (
            "qa",
            include_str!("../../../../deploy/kubernetes/overlays/qa/kustomization.yaml"),
        ),
        (
            "prod",
            include_str!("../../../../deploy/kubernetes/overlays/prod/kustomization.yaml"),
        ),
    ];
    for (env, text) in overlays {
        let kustomization = model::parse_documents(text, env).expect("the overlay parses");
        assert_eq!(
            kustomization[0]["namespace"],
            json!(placement::of_environment(env)),
            "overlays/{env}/kustomization.yaml"
        );
    }
}

#[test]
fn overlays_each_in_their_own_namespace_hold_every_invariant() {
    let overlays: Vec<(&str, Vec<Value>)> = placement::ENVIRONMENTS
        .iter()
        .map(|env| (*env, overlay(env)))
        .collect();
    assert_eq!(check_environments(&overlays), Vec::<String>::new());
    for (env, objects) in &overlays {
        assert_eq!(
            invariants::check(
                objects,
                &invariants::Expected::environment(&placement::of_environment(env))
            ),
            Vec::<String>::new(),
            "overlays/{env}"
        );
    }
}

#[test]
fn overlays_sharing_one_namespace_are_reported() {
    // What the overlays rendered to before each had its own: all of them in the base's namespace.
    let shared: Vec<(&str, Vec<Value>)> = placement::ENVIRONMENTS
        .iter()
        .map(|env| (*env, in_namespace(base_sources(), "infra-challenge")))
        .collect();
    let v = check_environments(&shared);
    assert_reported(
        &v,
        "overlays dev, qa, prod all render into namespace `infra-challenge`",
    );
    assert_reported(
        &v,
        "overlays/qa: ConfigMap/challenge-config: namespace is \"infra-challenge\", expected `infra-challenge-qa`",
    );
}

#[test]
fn an_overlay_rendering_into_another_environments_namespace_is_reported() {
    let v = check_environments(&[
        ("dev", overlay("dev")),
        ("qa", overlay("dev")),
        ("prod", overlay("prod")),
    ]);
    assert_reported(
        &v,
        "overlays dev, qa all render into namespace `infra-challenge-dev`",
    );
}

#[test]
fn a_missing_environment_is_reported() {
    let v = check_environments(&[("dev", overlay("dev")), ("prod", overlay("prod"))]);
    assert_eq!(v, ["overlays/qa: not rendered (no such overlay?)"]);
}

#[test]
fn an_object_in_another_namespace_is_reported() {
    let rendering = [
        namespace("infra-challenge-dev"),
        config_map("infra-challenge-qa"),
    ];
    assert_eq!(
        namespace_violations(&rendering, "infra-challenge-dev"),
        [
            "ConfigMap/challenge-config: namespace is \"infra-challenge-qa\", expected `infra-challenge-dev`"
        ]
    );
}

#[test]
fn a_namespace_object_not_renamed_is_reported() {
    // Objects moved into the environment's namespace while the Namespace object kept the base's name:
    // the apply would create the shared namespace and fail on everything else.
    let rendering = [
        namespace("infra-challenge"),
        config_map("infra-challenge-dev"),
    ];
    assert_eq!(
        namespace_violations(&rendering, "infra-challenge-dev"),
        ["Namespace/infra-challenge: only the `infra-challenge-dev` namespace belongs here"]
    );
}

#[test]
fn no_namespace_object_or_two_of_them_are_reported() {
    let v = namespace_violations(&[config_map("infra-challenge-dev")], "infra-challenge-dev");
    assert_eq!(
        v,
        ["0 Namespace objects in the set; expected exactly one, `infra-challenge-dev`"]
    );
    let v = namespace_violations(
        &[
            namespace("infra-challenge-dev"),
            namespace("infra-challenge-dev"),
            config_map("infra-challenge-dev"),
        ],
        "infra-challenge-dev",
    );
    assert_eq!(
        v,
        ["2 Namespace objects in the set; expected exactly one, `infra-challenge-dev`"]
    );
}
