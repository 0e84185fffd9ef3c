//! A read-only view of a set of Kubernetes objects (parsed YAML documents), with the lookups the
//! invariant checks need: workloads and their pod templates, containers, label selectors.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

/// Parses a multi-document YAML stream (what `kubectl kustomize` prints) into objects, dropping
/// empty documents.
pub fn parse_documents(yaml: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(document)
            .with_context(|| format!("{origin}: YAML document {} does not parse", index + 1))?;
        match value {
            Value::Null => {}
            Value::Object(_) => objects.push(value),
            other => anyhow::bail!(
                "{origin}: YAML document {} is not a Kubernetes object: {other}",
                index + 1
            ),
        }
    }
    Ok(objects)
}

/// One Kubernetes object, seen through the fields every object has.
#[derive(Clone, Copy)]
pub struct Object<'a>(pub &'a Value);

impl<'a> Object<'a> {
    pub fn kind(self) -> &'a str {
        str_at(self.0, "/kind").unwrap_or("")
    }

    pub fn name(self) -> &'a str {
        str_at(self.0, "/metadata/name").unwrap_or("")
    }

    pub fn namespace(self) -> Option<&'a str> {
        str_at(self.0, "/metadata/namespace")
    }

    /// `Kind/name`, the way violations name an object.
    pub fn id(self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    pub fn labels(self) -> Labels<'a> {
        string_map(self.0.pointer("/metadata/labels"))
    }

    pub fn annotations(self) -> Labels<'a> {
        string_map(self.0.pointer("/metadata/annotations"))
    }

    pub fn get(self, pointer: &str) -> Option<&'a Value> {
        self.0.pointer(pointer)
    }
}

pub type Labels<'a> = BTreeMap<&'a str, &'a str>;

/// A string-to-string map such as labels or `matchLabels` (non-string values are ignored).
pub fn string_map(value: Option<&Value>) -> Labels<'_> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The items of an array at `pointer`, or nothing when it is absent.
pub fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A label selector, `{matchLabels, matchExpressions}`. Only `matchLabels` is understood; a
/// selector with expressions is reported by the checks rather than guessed at.
pub struct Selector<'a> {
    pub match_labels: Labels<'a>,
    pub has_expressions: bool,
}

impl<'a> Selector<'a> {
    pub fn from_value(value: Option<&'a Value>) -> Self {
        Selector {
            match_labels: string_map(value.and_then(|v| v.get("matchLabels"))),
            has_expressions: value
                .and_then(|v| v.get("matchExpressions"))
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty()),
        }
    }

    /// A plain label map used as a selector (a Service's `spec.selector`).
    pub fn from_map(value: Option<&'a Value>) -> Self {
        Selector {
            match_labels: string_map(value),
            has_expressions: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && !self.has_expressions
    }

    pub fn matches(&self, labels: &Labels<'_>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// An object that runs pods, with its pod template.
#[derive(Clone, Copy)]
pub struct Workload<'a> {
    pub object: Object<'a>,
    pub template: &'a Value,
}

impl<'a> Workload<'a> {
    pub fn pod_labels(self) -> Labels<'a> {
        string_map(self.template.pointer("/metadata/labels"))
    }

    pub fn pod_spec(self) -> Option<&'a Value> {
        self.template.get("spec")
    }

    /// Init containers first, then the regular ones.
    pub fn containers(self) -> impl Iterator<Item = Container<'a>> {
        let spec = self.template;
        items(spec, "/spec/initContainers")
            .iter()
            .map(|c| Container {
                value: c,
                init: true,
            })
            .chain(items(spec, "/spec/containers").iter().map(|c| Container {
                value: c,
                init: false,
            }))
    }

    /// Declared container ports of every regular container: (name, number).
    pub fn ports(self) -> Vec<(Option<&'a str>, i64)> {
        self.containers()
            .filter(|c| !c.init)
            .flat_map(Container::ports)
            .collect()
    }

    /// The workload runs this image (by repository name, tag ignored).
    /// Whether a container runs an image named `name`, from whichever registry (`mysql`,
    /// `registry.example/team/infra-challenge` is `infra-challenge`).
    pub fn runs_image(self, name: &str) -> bool {
        self.containers().any(|c| image_name(c.image()) == name)
    }
}

#[derive(Clone, Copy)]
pub struct Container<'a> {
    pub value: &'a Value,
    pub init: bool,
}

impl<'a> Container<'a> {
    pub fn name(self) -> &'a str {
        str_at(self.value, "/name").unwrap_or("")
    }

    pub fn image(self) -> &'a str {
        str_at(self.value, "/image").unwrap_or("")
    }

    pub fn ports(self) -> Vec<(Option<&'a str>, i64)> {
        items(self.value, "/ports")
            .iter()
            .filter_map(|p| Some((str_at(p, "/name"), p.get("containerPort")?.as_i64()?)))
            .collect()
    }

    /// A port reference (probe, Service targetPort) resolves to one of this container's ports.
    pub fn declares_port(self, reference: &Value) -> bool {
        resolve_port(&self.ports(), reference).is_some()
    }
}

/// The port number a reference (a number, or a port's name) designates among declared ports.
pub fn resolve_port(declared: &[(Option<&str>, i64)], reference: &Value) -> Option<i64> {
    match reference {
        Value::String(name) => declared
            .iter()
            .find(|(n, _)| *n == Some(name.as_str()))
            .map(|(_, num)| *num),
        Value::Number(number) => {
            let number = number.as_i64()?;
            declared.iter().any(|(_, n)| *n == number).then_some(number)
        }
        _ => None,
    }
}

/// `repo/name:tag@digest` -> `repo/name` (a registry port's colon is not a tag).
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// The image's name without registry or path: the last segment of its repository.
pub fn image_name(image: &str) -> &str {
    let repository = image_repository(image);
    repository.rsplit('/').next().unwrap_or(repository)
}

/// The tag of an image reference, if any.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let repository = image_repository(image);
    without_digest
        .get(repository.len() + 1..)
        .filter(|tag| !tag.is_empty())
}

/// Every object in the set that runs pods.
pub fn workloads(objects: &[Value]) -> Vec<Workload<'_>> {
    objects
        .iter()
        .filter_map(|value| {
            let object = Object(value);
            let template = match object.kind() {
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                    value.pointer("/spec/template")?
                }
                "CronJob" => value.pointer("/spec/jobTemplate/spec/template")?,
                "Pod" => value,
                _ => return None,
            };
            Some(Workload { object, template })
        })
        .collect()
}

/// Objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = Object<'a>> {
    objects.iter().map(Object).filter(move |o| o.kind() == kind)
}
