//! The inventory of what a release applied, in the form of KEP-3659 ApplySets, so that `kubectl`
//! and other tools recognise it: they see which objects belong together and which tool manages
//! them (and kubectl declines to prune a set whose tooling annotation names another tool).
//!
//! The parent is a ConfigMap, [`PARENT_NAME`] in the app's namespace, labelled with the set's id
//! ([`ID_LABEL`]) and annotated with the tool that manages it ([`TOOLING_ANNOTATION`]) and the
//! kinds its members have ([`CONTAINS_GROUP_KINDS_ANNOTATION`]). Every member carries
//! [`PART_OF_LABEL`] with the same id ([`member_label`]). After an apply, the members found in
//! the cluster that the overlay no longer has are deleted: [`prune_set`] says which, and in what
//! order.
//!
//! The id is computed as kubectl computes it (`ApplySet.ID` in kubectl's
//! `pkg/cmd/apply/applyset.go`): `applyset-` + unpadded URL-safe base64 of the SHA-256 of
//! `<name>.<namespace>.<kind>.<group>` + `-v1`, the group empty for the core group (so the
//! deployer's parent hashes `deployer-applyset.<namespace>.ConfigMap.`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::api::DynamicObject;
use kube::core::{ObjectMeta, TypeMeta};
use sha2::{Digest, Sha256};

use super::manifests::{self, ObjectKey};

/// Label on every member of the set; its value is the set's id.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
/// Label on the parent; its value is the set's id.
pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
/// Annotation on the parent naming the tool that manages the set (`<tool>/<version>`).
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
/// The value of [`TOOLING_ANNOTATION`]: kubectl refuses to change a set another tool manages.
pub const TOOLING: &str = "deployer/v1";
/// Annotation on the parent listing the kinds of its members: `Kind.group` for named groups,
/// `Kind` alone for the core group, sorted, comma-separated (`ConfigMap,Deployment.apps`).
pub const CONTAINS_GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";

/// Annotation on the parent naming the environment whose release the set is: one namespace holds
/// one environment, and a deploy of another one there is refused.
pub const ENVIRONMENT_ANNOTATION: &str = "deployer.infra-challenge.dev/environment";

/// Name of the parent ConfigMap, in the app's namespace.
pub const PARENT_NAME: &str = "deployer-applyset";
/// Kind of the parent.
pub const PARENT_KIND: &str = "ConfigMap";
/// API group of the parent (the core group).
pub const PARENT_GROUP: &str = "";
/// `apiVersion` of the parent.
const PARENT_API_VERSION: &str = "v1";

/// Joins name, namespace, kind and group before hashing them into the id.
const ID_PART_SEPARATOR: &str = ".";
/// Before the hash in an id (label values must start with a letter or digit).
const ID_PREFIX: &str = "applyset-";
/// After the hash in an id: the version of the id format.
const ID_SUFFIX: &str = "-v1";
/// Separates the entries of [`CONTAINS_GROUP_KINDS_ANNOTATION`].
const GROUP_KINDS_SEPARATOR: char = ',';
/// Separates kind and group in one entry of [`CONTAINS_GROUP_KINDS_ANNOTATION`].
const KIND_GROUP_SEPARATOR: char = '.';

/// Kinds in the order they are created, as Helm installs them; pruning deletes in the reverse
/// order, so what depends on an object goes before it (a Deployment before its ConfigMap and
/// ServiceAccount). Kinds not listed (custom resources such as a ServiceMonitor) go first.
const CREATION_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Core-group kinds that hold data that cannot be made again: pruned only when the data is to
/// be purged.
const DATA_KINDS: &[&str] = &["PersistentVolumeClaim", "Secret"];

/// The id of the ApplySet whose parent is the object `kind` (of API `group`, `""` for core)
/// `name` in `namespace` (`""` for a cluster-scoped parent), exactly as kubectl computes it.
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let parent = [name, namespace, kind, group].join(ID_PART_SEPARATOR);
    let hash = Sha256::digest(parent.as_bytes());
    format!("{ID_PREFIX}{}{ID_SUFFIX}", URL_SAFE_NO_PAD.encode(hash))
}

/// The id of the deployer's ApplySet in `namespace` (its parent is [`PARENT_NAME`] there).
pub fn parent_id(namespace: &str) -> String {
    applyset_id(PARENT_NAME, namespace, PARENT_KIND, PARENT_GROUP)
}

/// The label (key, value) that makes an object a member of the deployer's ApplySet in
/// `namespace`.
pub fn member_label(namespace: &str) -> (String, String) {
    (PART_OF_LABEL.to_string(), parent_id(namespace))
}

/// The parent ConfigMap of the deployer's ApplySet in `namespace`, a release of `env`, listing
/// `group_kinds` (pairs of group and kind) as its members' kinds. It holds no data: the labels
/// and annotations are the inventory.
pub fn parent(
    namespace: &str,
    env: &str,
    group_kinds: &BTreeSet<(String, String)>,
) -> DynamicObject {
    DynamicObject {
        types: Some(TypeMeta {
            api_version: PARENT_API_VERSION.to_string(),
            kind: PARENT_KIND.to_string(),
        }),
        metadata: ObjectMeta {
            name: Some(PARENT_NAME.to_string()),
            namespace: Some(namespace.to_string()),
            // The ApplySet id, and the labels every object of the product carries.
            labels: Some(BTreeMap::from([
                (ID_LABEL.to_string(), parent_id(namespace)),
                ("app.kubernetes.io/name".to_string(), "deployer".to_string()),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "infra-challenge".to_string(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "deployer".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (TOOLING_ANNOTATION.to_string(), TOOLING.to_string()),
                (ENVIRONMENT_ANNOTATION.to_string(), env.to_string()),
                (
                    CONTAINS_GROUP_KINDS_ANNOTATION.to_string(),
                    format_group_kinds(group_kinds),
                ),
            ])),
            ..ObjectMeta::default()
        },
        data: serde_json::json!({}),
    }
}

/// The (group, kind) pairs of `objects`: what the parent's
/// [`CONTAINS_GROUP_KINDS_ANNOTATION`] lists, and the kinds to look in for members to prune.
pub fn group_kinds_of(objects: &[DynamicObject]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|object| {
            let key = manifests::key(object);
            (key.group, key.kind)
        })
        .collect()
}

/// The value of [`CONTAINS_GROUP_KINDS_ANNOTATION`] for (group, kind) pairs: `Kind.group` or
/// `Kind` for the core group, sorted as text and comma-separated, as kubectl writes it.
pub fn format_group_kinds(group_kinds: &BTreeSet<(String, String)>) -> String {
    let entries: BTreeSet<String> = group_kinds
        .iter()
        .map(|(group, kind)| {
            if group.is_empty() {
                kind.clone()
            } else {
                format!("{kind}{KIND_GROUP_SEPARATOR}{group}")
            }
        })
        .collect();
    entries
        .into_iter()
        .collect::<Vec<_>>()
        .join(&GROUP_KINDS_SEPARATOR.to_string())
}

/// The (group, kind) pairs a [`CONTAINS_GROUP_KINDS_ANNOTATION`] value lists; the inverse of
/// [`format_group_kinds`]. Blank entries are skipped; an entry without a dot is a core kind.
pub fn parse_group_kinds(annotation: &str) -> BTreeSet<(String, String)> {
    annotation
        .split(GROUP_KINDS_SEPARATOR)
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once(KIND_GROUP_SEPARATOR) {
            Some((kind, group)) => (group.to_string(), kind.to_string()),
            None => (String::new(), entry.to_string()),
        })
        .collect()
}

/// What to delete after an apply: the `live` members of the set (the objects found with its
/// [`PART_OF_LABEL`]) that are not `desired` any more. Never a Namespace (that would delete
/// everything in it) nor the parent itself; PersistentVolumeClaims and Secrets only when
/// `purge_data` (they hold data that cannot be rebuilt). Sorted so that dependents go first
/// (workloads before the Services, ConfigMaps and ServiceAccounts they use), then by key.
pub fn prune_set(live: &[ObjectKey], desired: &[ObjectKey], purge_data: bool) -> Vec<ObjectKey> {
    let desired: BTreeSet<&ObjectKey> = desired.iter().collect();
    let stale: BTreeSet<&ObjectKey> = live
        .iter()
        .filter(|key| !desired.contains(key))
        .filter(|key| !is_parent(key))
        .filter(|key| !(key.group.is_empty() && key.kind == "Namespace"))
        .filter(|key| purge_data || !(key.group.is_empty() && DATA_KINDS.contains(&&*key.kind)))
        .collect();
    let mut prune: Vec<ObjectKey> = stale.into_iter().cloned().collect();
    // Stable: keys of one kind stay in key order.
    prune.sort_by_key(|key| deletion_rank(&key.kind));
    prune
}

/// Whether `key` is a parent of a deployer ApplySet.
fn is_parent(key: &ObjectKey) -> bool {
    key.group == PARENT_GROUP && key.kind == PARENT_KIND && key.name == PARENT_NAME
}

/// Where objects of `kind` come in deletion order: lower goes first.
fn deletion_rank(kind: &str) -> usize {
    match CREATION_ORDER.iter().position(|listed| *listed == kind) {
        Some(position) => CREATION_ORDER.len() - position,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: &str = "infra-challenge";

    fn key(group: &str, kind: &str, name: &str) -> ObjectKey {
        let namespace = manifests::is_namespaced(kind).then_some(NAMESPACE);
        ObjectKey::new(group, kind, namespace, name)
    }

    fn pairs(entries: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        entries
            .iter()
            .map(|(group, kind)| (group.to_string(), kind.to_string()))
            .collect()
    }

    #[test]
    fn id_matches_kubectl() {
        // From kubectl's own tests (pkg/cmd/apply/apply_test.go): the Secret my-set in test.
        assert_eq!(
            applyset_id("my-set", "test", "Secret", ""),
            "applyset-0eFHV8ySqp7XoShsGvyWFQD3s96yqwHmzc4e0HR1dsY-v1"
        );
        // python3 -c 'import hashlib, base64; print(base64.urlsafe_b64encode(hashlib.sha256(
        //   b"deployer-applyset.infra-challenge.ConfigMap.").digest()).decode().rstrip("="))'
        assert_eq!(
            parent_id(NAMESPACE),
            "applyset-zfFe3r2oaeecuXiFdlOOpFY-6KC_VFIFUrfpRbHHofQ-v1"
        );
        assert_eq!(
            member_label(NAMESPACE),
            (PART_OF_LABEL.to_string(), parent_id(NAMESPACE))
        );
        // A valid label value: at most 63 characters.
        assert!(parent_id(NAMESPACE).len() <= 63);
    }

    #[test]
    fn group_kinds_annotation_round_trips() {
        let group_kinds = pairs(&[
            ("", "Service"),
            ("apps", "Deployment"),
            ("", "ConfigMap"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("apps", "StatefulSet"),
        ]);
        let annotation = format_group_kinds(&group_kinds);
        assert_eq!(
            annotation,
            "ConfigMap,Deployment.apps,NetworkPolicy.networking.k8s.io,Service,StatefulSet.apps"
        );
        assert_eq!(parse_group_kinds(&annotation), group_kinds);
        assert_eq!(parse_group_kinds(""), BTreeSet::new());
        assert_eq!(
            parse_group_kinds(" Service , ,Deployment.apps"),
            pairs(&[("", "Service"), ("apps", "Deployment")])
        );
    }

    #[test]
    fn parent_carries_id_tooling_and_kinds() {
        let objects = manifests::parse(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: infra-challenge\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  namespace: \
             infra-challenge\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n",
        )
        .unwrap();
        let group_kinds = group_kinds_of(&objects);
        assert_eq!(
            group_kinds,
            pairs(&[("", "Service"), ("apps", "Deployment")])
        );

        let parent = parent(NAMESPACE, "qa", &group_kinds);
        assert_eq!(
            manifests::key(&parent),
            ObjectKey::new("", "ConfigMap", Some(NAMESPACE), PARENT_NAME)
        );
        assert_eq!(
            parent.metadata.labels.as_ref().unwrap()[ID_LABEL],
            parent_id(NAMESPACE)
        );
        let annotations = parent.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[TOOLING_ANNOTATION], "deployer/v1");
        assert_eq!(annotations[ENVIRONMENT_ANNOTATION], "qa");
        assert_eq!(
            annotations[CONTAINS_GROUP_KINDS_ANNOTATION],
            "Deployment.apps,Service"
        );
        // It prints as an ordinary manifest.
        let yaml = manifests::to_yaml(std::slice::from_ref(&parent));
        assert_eq!(manifests::parse(&yaml).unwrap(), [parent]);
    }

    /// The prod overlay's objects, as keys.
    fn overlay() -> Vec<ObjectKey> {
        vec![
            key("", "Namespace", NAMESPACE),
            key("", "ServiceAccount", "challenge"),
            key("", "ServiceAccount", "mysql"),
            key("", "ConfigMap", "challenge-config"),
            key("", "Service", "challenge"),
            key("", "Service", "mysql"),
            key("", "Service", "mysql-headless"),
            key("apps", "Deployment", "challenge"),
            key("apps", "StatefulSet", "mysql"),
            key("policy", "PodDisruptionBudget", "challenge"),
            key("autoscaling", "HorizontalPodAutoscaler", "challenge"),
            key("networking.k8s.io", "NetworkPolicy", "challenge"),
        ]
    }

    #[test]
    fn prune_set_is_what_the_overlay_dropped() {
        let live = overlay();
        let desired: Vec<ObjectKey> = live
            .iter()
            .filter(|k| k.kind != "HorizontalPodAutoscaler")
            .cloned()
            .collect();
        assert_eq!(
            prune_set(&live, &desired, false),
            [key("autoscaling", "HorizontalPodAutoscaler", "challenge")]
        );
        assert_eq!(prune_set(&live, &live, true), []);
        // Same name in another namespace: another object.
        let elsewhere = ObjectKey::new("", "ConfigMap", Some("other"), "challenge-config");
        assert_eq!(
            prune_set(std::slice::from_ref(&elsewhere), &live, false),
            [elsewhere]
        );
    }

    #[test]
    fn prune_set_keeps_data_unless_purging() {
        let mut live = overlay();
        live.push(key("", "Secret", "challenge-db"));
        live.push(key("", "PersistentVolumeClaim", "data-mysql-0"));
        live.push(key("", "ConfigMap", "old-config"));
        let desired = overlay();
        assert_eq!(
            prune_set(&live, &desired, false),
            [key("", "ConfigMap", "old-config")]
        );
        assert_eq!(
            prune_set(&live, &desired, true),
            [
                key("", "PersistentVolumeClaim", "data-mysql-0"),
                key("", "ConfigMap", "old-config"),
                key("", "Secret", "challenge-db"),
            ]
        );
    }

    #[test]
    fn prune_set_never_deletes_a_namespace_or_the_parent() {
        let live = vec![
            key("", "Namespace", NAMESPACE),
            key("", "ConfigMap", PARENT_NAME),
        ];
        assert_eq!(prune_set(&live, &[], true), []);
    }

    #[test]
    fn prune_set_deletes_dependents_first() {
        let mut live = overlay();
        live.push(key("monitoring.coreos.com", "ServiceMonitor", "challenge"));
        let desired = [key("", "Namespace", NAMESPACE)];
        let order: Vec<String> = prune_set(&live, &desired, false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            order,
            [
                "ServiceMonitor.monitoring.coreos.com/challenge in infra-challenge",
                "StatefulSet.apps/mysql in infra-challenge",
                "HorizontalPodAutoscaler.autoscaling/challenge in infra-challenge",
                "Deployment.apps/challenge in infra-challenge",
                "Service/challenge in infra-challenge",
                "Service/mysql in infra-challenge",
                "Service/mysql-headless in infra-challenge",
                "ConfigMap/challenge-config in infra-challenge",
                "ServiceAccount/challenge in infra-challenge",
                "ServiceAccount/mysql in infra-challenge",
                "PodDisruptionBudget.policy/challenge in infra-challenge",
                "NetworkPolicy.networking.k8s.io/challenge in infra-challenge",
            ]
        );
    }
}
