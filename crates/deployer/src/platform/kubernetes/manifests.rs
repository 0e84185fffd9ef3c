//! What is applied: the objects of a rendered overlay.
//!
//! `kubectl kustomize deploy/kubernetes/overlays/<env>` prints the overlay as multi-document YAML.
//! [`parse`] turns it into [`DynamicObject`]s, which the functions here adjust before they are
//! applied: [`set_image`] points the service's containers at the release's image, [`add_labels`]
//! marks every object (the ApplySet membership label, for one), [`redact_secrets`] hides secret
//! values before the manifests are shown or kept in a release record. [`key`] and
//! [`api_resource`] tell which object and which API each one is, and [`to_yaml`] prints them back.

use std::collections::BTreeMap;
use std::fmt;

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersion, GroupVersionKind};
use serde_json::{Map, Value};

/// The repository name of the service's own image (`infra-challenge:0.1.0` in the base, perhaps
/// `registry.example/team/infra-challenge@sha256:...` elsewhere): the containers [`set_image`]
/// changes.
pub const APP_IMAGE_REPOSITORY: &str = "infra-challenge";

/// What [`redact_secrets`] puts in place of every secret value.
pub const REDACTED: &str = "[redacted]";

/// Separates the documents of a multi-document YAML stream.
const DOCUMENT_SEPARATOR: &str = "---\n";

/// Where each workload kind keeps its pod spec, as a JSON pointer into the object.
const POD_SPEC_POINTERS: &[(&str, &str)] = &[
    ("Deployment", "/spec/template/spec"),
    ("StatefulSet", "/spec/template/spec"),
    ("DaemonSet", "/spec/template/spec"),
    ("ReplicaSet", "/spec/template/spec"),
    ("Job", "/spec/template/spec"),
    ("CronJob", "/spec/jobTemplate/spec/template/spec"),
];

/// The lists of containers in a pod spec whose images [`set_image`] looks at.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers"];

/// The fields of a Secret that hold its values (`data` base64-encoded, `stringData` plain).
const SECRET_VALUE_FIELDS: &[&str] = &["data", "stringData"];

/// Built-in kinds that live outside any namespace (`kubectl api-resources --namespaced=false`).
/// Every other kind is taken to be namespaced.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterTrustBundle",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "DeviceClass",
    "FlowSchema",
    "IngressClass",
    "IPAddress",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "SelfSubjectAccessReview",
    "SelfSubjectReview",
    "SelfSubjectRulesReview",
    "ServiceCIDR",
    "StorageClass",
    "StorageVersionMigration",
    "SubjectAccessReview",
    "TokenReview",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "VolumeAttributesClass",
];

/// Which object an object is: what the API server identifies it by (the version aside, since one
/// object is served under every version of its group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The API group, `""` for the core group (`v1`), `"apps"` for `apps/v1`.
    pub group: String,
    /// The kind, such as `Deployment`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `Deployment.apps/challenge in infra-challenge`, `Namespace/infra-challenge`: kubectl's
    /// `kind.group/name`, with the namespace when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        write!(f, "/{}", self.name)?;
        if let Some(namespace) = &self.namespace {
            write!(f, " in {namespace}")?;
        }
        Ok(())
    }
}

/// Reads multi-document YAML (kustomize's output) into objects. Empty documents are skipped;
/// every other document must be a mapping with `apiVersion`, `kind` and `metadata.name`, and the
/// error names the first that is not by its position (counting from 1, empty documents not
/// counted).
pub fn parse(yaml: &str) -> Result<Vec<DynamicObject>, String> {
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(yaml)
        .map_err(|e| format!("the manifests are not valid YAML: {e}"))?;
    documents
        .into_iter()
        .filter(|document| !document.is_null())
        .enumerate()
        .map(|(index, document)| object(index + 1, document))
        .collect()
}

/// Checks one document and converts it; `number` counts from 1 for error messages.
fn object(number: usize, document: Value) -> Result<DynamicObject, String> {
    let Value::Object(fields) = &document else {
        return Err(format!(
            "document {number} of the manifests is not a Kubernetes object (not a mapping)"
        ));
    };
    let text = |field: &str| {
        fields
            .get(field)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
    };
    let name = fields
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let (Some(api_version), Some(kind), Some(name)) = (text("apiVersion"), text("kind"), name)
    else {
        let missing: Vec<&str> = [
            ("apiVersion", text("apiVersion").is_none()),
            ("kind", text("kind").is_none()),
            ("metadata.name", name.is_none()),
        ]
        .into_iter()
        .filter_map(|(field, absent)| absent.then_some(field))
        .collect();
        return Err(format!(
            "document {number} of the manifests has no {}: every object needs apiVersion, kind \
             and metadata.name",
            missing.join(", ")
        ));
    };
    let described = format!("document {number} of the manifests ({api_version} {kind} {name})");
    serde_json::from_value(document).map_err(|e| format!("{described} is malformed: {e}"))
}

/// Points every container and init container of the service's image (repository name
/// [`APP_IMAGE_REPOSITORY`], whatever its registry, tag or digest) at `image`, in the pod
/// templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs. Other
/// images (mysql) are left alone.
pub fn set_image(objects: &mut [DynamicObject], image: &str) {
    for object in objects {
        let Some(pod_spec) = pod_spec_mut(object) else {
            continue;
        };
        for list in CONTAINER_LISTS {
            let Some(Value::Array(containers)) = pod_spec.get_mut(*list) else {
                continue;
            };
            for container in containers {
                let ours = matches!(container.get("image"), Some(Value::String(current))
                    if repository_name(current) == APP_IMAGE_REPOSITORY);
                if ours {
                    container["image"] = Value::String(image.to_string());
                    container["imagePullPolicy"] = Value::String(pull_policy(image).to_string());
                }
            }
        }
    }
}

/// `Always` for an image pushed somewhere (a re-pushed tag is never served from a node's stale
/// cache); `IfNotPresent` for a bare local name (`infra-challenge:1.2.3`, what `deployer build`
/// tags without --registry), which can only come from the nodes' own store, where `kind load
/// docker-image` or `minikube image load` put it: `Always` would send the kubelet to Docker Hub's
/// `library/` for it and fail.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('/') {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The pod spec inside a workload's template, if the object is a workload.
fn pod_spec_mut(object: &mut DynamicObject) -> Option<&mut Value> {
    let kind = kind_of(object).to_string();
    let (_, pointer) = POD_SPEC_POINTERS.iter().find(|(k, _)| *k == kind)?;
    object.data.pointer_mut(pointer)
}

/// The repository name of an image reference: its last path segment without tag or digest
/// (`registry:5000/team/infra-challenge:0.1.0@sha256:...` gives `infra-challenge`).
fn repository_name(reference: &str) -> &str {
    let without_digest = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_segment = without_digest
        .rsplit_once('/')
        .map_or(without_digest, |(_, last)| last);
    last_segment
        .split_once(':')
        .map_or(last_segment, |(name, _)| name)
}

/// Adds `labels` to every object's own metadata (replacing values of the same keys). Selectors
/// and pod templates are left as they are: a changed selector would orphan running pods.
pub fn add_labels(objects: &mut [DynamicObject], labels: &BTreeMap<String, String>) {
    for object in objects {
        object
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// The namespace the overlay targets: the name of its Namespace object, else the namespace of the
/// first object that has one. `None` when neither is there.
pub fn namespace(objects: &[DynamicObject]) -> Option<String> {
    objects
        .iter()
        .find(|object| kind_of(object) == "Namespace")
        .and_then(|object| object.metadata.name.clone())
        .or_else(|| {
            objects
                .iter()
                .find_map(|object| object.metadata.namespace.clone())
        })
}

/// Which object `object` is. The namespace is dropped for cluster-scoped kinds (see
/// [`is_namespaced`]) and left `None` when a namespaced object does not name one.
pub fn key(object: &DynamicObject) -> ObjectKey {
    let kind = kind_of(object).to_string();
    let namespace = if is_namespaced(&kind) {
        object.metadata.namespace.clone()
    } else {
        None
    };
    ObjectKey {
        group: group_version(object).group,
        kind,
        namespace,
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}

/// The API serving `object`: group, version and kind from its `apiVersion` and `kind`, the
/// resource's plural name guessed by kube (right for every built-in kind and for the usual CRDs).
pub fn api_resource(object: &DynamicObject) -> ApiResource {
    let GroupVersion { group, version } = group_version(object);
    ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, kind_of(object)))
}

/// Whether objects of `kind` live in a namespace: every kind but the built-in cluster-scoped ones
/// (Namespace, ClusterRole, PersistentVolume, StorageClass, CustomResourceDefinition, ...).
pub fn is_namespaced(kind: &str) -> bool {
    !CLUSTER_SCOPED_KINDS.contains(&kind)
}

/// Prints objects as multi-document YAML, `---` between documents, keys sorted: the same objects
/// always print the same, and [`parse`] reads the text back into equal objects.
pub fn to_yaml(objects: &[DynamicObject]) -> String {
    objects
        .iter()
        .map(|object| {
            // A JSON value (string keys, plain scalars) always has a YAML form.
            serde_saphyr::to_string(&object_value(object))
                .expect("a JSON value always serializes to YAML")
        })
        .collect::<Vec<_>>()
        .join(DOCUMENT_SEPARATOR)
}

/// An object as one JSON value: `apiVersion`, `kind` and `metadata` beside the other fields.
fn object_value(object: &DynamicObject) -> Value {
    let mut fields = match &object.data {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    if let Some(types) = &object.types {
        fields.insert(
            "apiVersion".into(),
            Value::String(types.api_version.clone()),
        );
        fields.insert("kind".into(), Value::String(types.kind.clone()));
    }
    // ObjectMeta has only string keys and plain values: it always converts.
    let metadata = serde_json::to_value(&object.metadata).unwrap_or_default();
    fields.insert("metadata".into(), metadata);
    Value::Object(fields)
}

/// Replaces every value of every Secret (`data` and `stringData`) with [`REDACTED`], keys kept, so
/// the manifests can be shown or stored without the secrets. The result is for reading only:
/// applied, it would overwrite the real values.
pub fn redact_secrets(objects: &mut [DynamicObject]) {
    for object in objects {
        if kind_of(object) != "Secret" || !group_version(object).group.is_empty() {
            continue;
        }
        for field in SECRET_VALUE_FIELDS {
            if let Some(Value::Object(values)) = object.data.get_mut(*field) {
                for value in values.values_mut() {
                    *value = Value::String(REDACTED.to_string());
                }
            }
        }
    }
}

/// The object's kind, `""` when it has none.
fn kind_of(object: &DynamicObject) -> &str {
    object
        .types
        .as_ref()
        .map_or("", |types| types.kind.as_str())
}

/// The object's group and version from its `apiVersion` (`apps/v1`: `apps` and `v1`; `v1`: the
/// core group `""` and `v1`).
fn group_version(object: &DynamicObject) -> GroupVersion {
    let api_version = object
        .types
        .as_ref()
        .map_or("", |types| types.api_version.as_str());
    match api_version.split_once('/') {
        Some((group, version)) => GroupVersion::gv(group, version),
        None => GroupVersion::gv("", api_version),
    }
}

#[cfg(test)]
mod pull_policy_tests {
    use super::*;

    #[test]
    fn images_in_a_registry_are_always_pulled_and_local_ones_taken_from_the_node() {
        for remote in [
            "registry.example:5000/team/infra-challenge:1.2.3",
            "ghcr.io/team/infra-challenge:1.2.3",
            "localhost:5001/infra-challenge:1.2.3",
            "localhost/infra-challenge:1",
            "team/infra-challenge:1.2.3",
        ] {
            assert_eq!(pull_policy(remote), "Always", "{remote}");
        }
        for local in ["infra-challenge:1.2.3", "infra-challenge:sha-abc1234"] {
            assert_eq!(pull_policy(local), "IfNotPresent", "{local}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `kubectl kustomize deploy/kubernetes/overlays/prod`, trimmed: the kinds, the
    /// nesting and the quoting kustomize prints, plus a Secret (kept out of the overlays) and
    /// one empty document.
    const RENDERED: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  labels:
    app.kubernetes.io/managed-by: kustomize
    pod-security.kubernetes.io/enforce: restricted
  name: infra-challenge
---
apiVersion: v1
automountServiceAccountToken: false
kind: ServiceAccount
metadata:
  name: challenge
  namespace: infra-challenge
---
apiVersion: v1
data:
  DB_HOST: mysql
  DB_PORT: "3306"
  RUST_LOG: info,sqlx=warn
kind: ConfigMap
metadata:
  name: challenge-config
  namespace: infra-challenge
---
---
apiVersion: v1
kind: Secret
metadata:
  name: mysql
  namespace: infra-challenge
stringData:
  password: hunter2
data:
  root-password: c2VjcmV0
type: Opaque
---
apiVersion: v1
kind: Service
metadata:
  name: challenge
  namespace: infra-challenge
spec:
  ports:
  - appProtocol: http
    name: http
    port: 8000
    protocol: TCP
    targetPort: http
  selector:
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/name: challenge
  type: ClusterIP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    checkov.io/skip1: CKV_K8S_43=The image is built per release and named by its version
      tag. Its digest exists only once it is pushed.
  labels:
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: challenge
  name: challenge
  namespace: infra-challenge
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: challenge
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
    type: RollingUpdate
  template:
    metadata:
      annotations:
        prometheus.io/port: "8000"
        prometheus.io/scrape: "true"
      labels:
        app.kubernetes.io/name: challenge
    spec:
      containers:
      - args:
        - serve
        image: infra-challenge:0.1.0
        name: challenge
        resources:
          limits:
            cpu: "1"
            memory: 512Mi
      initContainers:
      - args:
        - migrate
        - --seed
        image: infra-challenge:0.1.0
        name: migrate
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql
  namespace: infra-challenge
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: mysql
  serviceName: mysql-headless
  template:
    metadata:
      labels:
        app.kubernetes.io/name: mysql
    spec:
      containers:
      - args:
        - mysqld
        image: mysql:8.4
        livenessProbe:
          exec:
            command:
            - sh
            - -c
            - MYSQL_PWD="$(cat /run/secrets/mysql/root-password)" exec mysqladmin
              ping --host=127.0.0.1 --user=root --silent
        name: mysql
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes:
      - ReadWriteOnce
      resources:
        requests:
          storage: 20Gi
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: challenge
  namespace: infra-challenge
spec:
  maxReplicas: 10
  minReplicas: 3
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: challenge
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: mysql
  namespace: infra-challenge
spec:
  egress: []
  podSelector:
    matchLabels:
      app.kubernetes.io/name: mysql
  policyTypes:
  - Ingress
  - Egress
"#;

    fn rendered() -> Vec<DynamicObject> {
        parse(RENDERED).expect("the sample parses")
    }

    fn find<'a>(objects: &'a [DynamicObject], kind: &str, name: &str) -> &'a DynamicObject {
        objects
            .iter()
            .find(|o| kind_of(o) == kind && o.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn images(object: &DynamicObject, list: &str) -> Vec<String> {
        object.data["spec"]["template"]["spec"][list]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["image"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn parse_reads_every_object_and_skips_empty_documents() {
        let objects = rendered();
        let keys: Vec<String> = objects.iter().map(|o| key(o).to_string()).collect();
        assert_eq!(
            keys,
            [
                "Namespace/infra-challenge",
                "ServiceAccount/challenge in infra-challenge",
                "ConfigMap/challenge-config in infra-challenge",
                "Secret/mysql in infra-challenge",
                "Service/challenge in infra-challenge",
                "Deployment.apps/challenge in infra-challenge",
                "StatefulSet.apps/mysql in infra-challenge",
                "HorizontalPodAutoscaler.autoscaling/challenge in infra-challenge",
                "NetworkPolicy.networking.k8s.io/mysql in infra-challenge",
            ]
        );
        let config = find(&objects, "ConfigMap", "challenge-config");
        // Quoted numbers stay strings, as the API requires for ConfigMap data.
        assert_eq!(config.data["data"]["DB_PORT"], "3306");
        let deployment = find(&objects, "Deployment", "challenge");
        assert_eq!(
            deployment.data["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            0
        );
        assert_eq!(
            deployment.metadata.annotations.as_ref().unwrap()["checkov.io/skip1"],
            "CKV_K8S_43=The image is built per release and named by its version tag. Its \
             digest exists only once it is pushed."
        );
    }

    #[test]
    fn parse_of_nothing_is_no_objects() {
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("---\n---\n").unwrap(), []);
    }

    #[test]
    fn parse_names_the_document_missing_a_field() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n";
        let error = parse(yaml).unwrap_err();
        assert!(error.contains("document 2"), "{error}");
        assert!(error.contains("metadata.name"), "{error}");

        let error = parse("metadata:\n  name: a\n").unwrap_err();
        assert!(error.contains("document 1"), "{error}");
        assert!(error.contains("apiVersion, kind"), "{error}");

        let error = parse("- just\n- a list\n").unwrap_err();
        assert!(error.contains("not a mapping"), "{error}");

        let error = parse("kind: [unclosed\n").unwrap_err();
        assert!(error.contains("not valid YAML"), "{error}");
    }

    #[test]
    fn set_image_changes_both_service_containers_and_leaves_mysql_alone() {
        let mut objects = rendered();
        set_image(&mut objects, "registry.example:5000/infra-challenge:0.2.0");
        let deployment = find(&objects, "Deployment", "challenge");
        assert_eq!(
            images(deployment, "containers"),
            ["registry.example:5000/infra-challenge:0.2.0"]
        );
        assert_eq!(
            images(deployment, "initContainers"),
            ["registry.example:5000/infra-challenge:0.2.0"]
        );
        assert_eq!(
            images(find(&objects, "StatefulSet", "mysql"), "containers"),
            ["mysql:8.4"]
        );

        // Once set, the image is still recognised for the next release.
        set_image(&mut objects, "infra-challenge@sha256:0123");
        let deployment = find(&objects, "Deployment", "challenge");
        assert_eq!(
            images(deployment, "containers"),
            ["infra-challenge@sha256:0123"]
        );
    }

    #[test]
    fn repository_name_ignores_registry_tag_and_digest() {
        for (reference, expected) in [
            ("infra-challenge", "infra-challenge"),
            ("infra-challenge:0.1.0", "infra-challenge"),
            ("ghcr.io/team/infra-challenge:1.2.3", "infra-challenge"),
            ("localhost:5000/infra-challenge", "infra-challenge"),
            ("infra-challenge:1@sha256:abcd", "infra-challenge"),
            ("mysql:8.4", "mysql"),
            (
                "example.org/infra-challenge-tools:1",
                "infra-challenge-tools",
            ),
        ] {
            assert_eq!(repository_name(reference), expected, "{reference}");
        }
    }

    #[test]
    fn add_labels_marks_metadata_only() {
        let mut objects = rendered();
        let labels = BTreeMap::from([("applyset.kubernetes.io/part-of".to_string(), "x".into())]);
        add_labels(&mut objects, &labels);
        for object in &objects {
            assert_eq!(
                object.metadata.labels.as_ref().unwrap()["applyset.kubernetes.io/part-of"],
                "x"
            );
        }
        let deployment = find(&objects, "Deployment", "challenge");
        let labels = deployment.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "kustomize");
        let selector = &deployment.data["spec"]["selector"]["matchLabels"];
        assert_eq!(selector.as_object().unwrap().len(), 1);
        let template = &deployment.data["spec"]["template"]["metadata"]["labels"];
        assert_eq!(template.as_object().unwrap().len(), 1);
    }

    #[test]
    fn namespace_prefers_the_namespace_object() {
        let objects = rendered();
        assert_eq!(namespace(&objects).as_deref(), Some("infra-challenge"));
        let without_namespace_object: Vec<DynamicObject> = objects
            .into_iter()
            .filter(|o| kind_of(o) != "Namespace")
            .collect();
        assert_eq!(
            namespace(&without_namespace_object).as_deref(),
            Some("infra-challenge")
        );
        assert_eq!(namespace(&[]), None);
    }

    #[test]
    fn key_reads_group_kind_namespace_and_name() {
        let objects = rendered();
        assert_eq!(
            key(find(&objects, "Deployment", "challenge")),
            ObjectKey::new("apps", "Deployment", Some("infra-challenge"), "challenge")
        );
        assert_eq!(
            key(find(&objects, "Service", "challenge")),
            ObjectKey::new("", "Service", Some("infra-challenge"), "challenge")
        );
        assert_eq!(
            key(find(&objects, "NetworkPolicy", "mysql")).group,
            "networking.k8s.io"
        );
        // A cluster-scoped object has no namespace, even if its manifest names one.
        let mut namespace_object = find(&objects, "Namespace", "infra-challenge").clone();
        namespace_object.metadata.namespace = Some("default".into());
        assert_eq!(key(&namespace_object).namespace, None);
    }

    #[test]
    fn api_resource_has_group_version_and_plural() {
        let objects = rendered();
        for (kind, name, api_version, group, plural) in [
            ("Deployment", "challenge", "apps/v1", "apps", "deployments"),
            ("Service", "challenge", "v1", "", "services"),
            (
                "NetworkPolicy",
                "mysql",
                "networking.k8s.io/v1",
                "networking.k8s.io",
                "networkpolicies",
            ),
            (
                "HorizontalPodAutoscaler",
                "challenge",
                "autoscaling/v2",
                "autoscaling",
                "horizontalpodautoscalers",
            ),
        ] {
            let resource = api_resource(find(&objects, kind, name));
            assert_eq!(resource.api_version, api_version);
            assert_eq!(resource.group, group);
            assert_eq!(resource.kind, kind);
            assert_eq!(resource.plural, plural);
        }
    }

    #[test]
    fn cluster_scoped_kinds_are_not_namespaced() {
        for kind in [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "PersistentVolume",
            "StorageClass",
            "CustomResourceDefinition",
            "PriorityClass",
        ] {
            assert!(!is_namespaced(kind), "{kind}");
        }
        for kind in [
            "Deployment",
            "Secret",
            "PersistentVolumeClaim",
            "ServiceMonitor",
        ] {
            assert!(is_namespaced(kind), "{kind}");
        }
    }

    #[test]
    fn to_yaml_round_trips_through_parse() {
        let objects = rendered();
        let yaml = to_yaml(&objects);
        assert_eq!(parse(&yaml).unwrap(), objects);
        assert_eq!(yaml.matches("\n---\n").count(), objects.len() - 1);
        // Stable: printing again gives the same text.
        assert_eq!(to_yaml(&parse(&yaml).unwrap()), yaml);
    }

    #[test]
    fn to_yaml_keeps_strings_that_look_like_other_scalars() {
        let tricky = [
            "true",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "null",
            "~",
            "",
            "8000",
            "0.1.0",
            "1e3",
            "0o17",
            "0x1F",
            "012",
            ".inf",
            "-.inf",
            ".nan",
            "2024-01-02",
            "- item",
            "# note",
            "a: b",
            "*alias",
            "&anchor",
            "!tag",
            "%percent",
            "@at",
            "`tick",
            "'single'",
            "\"double\"",
            " leading",
            "trailing ",
            "two\nlines\n",
            "tab\there",
            "{flow}",
            "[flow]",
            "ünïcode",
        ];
        let data: Map<String, Value> = tricky
            .iter()
            .enumerate()
            .map(|(i, value)| (format!("key{i}"), Value::String(value.to_string())))
            .collect();
        let config: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "tricky", "annotations": {"yes": "no"}},
            "data": data,
            "numbers": [0, -1, 2.5, 1e100, true, null],
        }))
        .unwrap();
        let objects = vec![config];
        assert_eq!(parse(&to_yaml(&objects)).unwrap(), objects);
    }

    #[test]
    fn redact_secrets_hides_values_and_keeps_keys() {
        let mut objects = rendered();
        redact_secrets(&mut objects);
        let secret = find(&objects, "Secret", "mysql");
        assert_eq!(
            secret.data["data"],
            serde_json::json!({"root-password": REDACTED})
        );
        assert_eq!(
            secret.data["stringData"],
            serde_json::json!({"password": REDACTED})
        );
        assert_eq!(secret.data["type"], "Opaque");
        let yaml = to_yaml(&objects);
        assert!(
            !yaml.contains("hunter2") && !yaml.contains("c2VjcmV0"),
            "{yaml}"
        );
        // Only Secrets: ConfigMap values are not secret.
        let config = find(&objects, "ConfigMap", "challenge-config");
        assert_eq!(config.data["data"]["DB_HOST"], "mysql");
    }
}
