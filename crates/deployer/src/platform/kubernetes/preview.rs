//! Before a release changes anything in the cluster: is every verb it needs allowed, and would the
//! API server accept every object? Both are asked without changing anything: access reviews
//! (`SelfSubjectAccessReview`) and a server-side dry run (`dryRun=All`) of each object, which runs
//! defaulting, validation, admission webhooks, quotas and field ownership as a real apply would.
//! The same dry run, against the live objects, is what `deployer diff` shows.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::plan::{Environment, Release};
use crate::platform::{Change, ChangeAction, Changes};

use super::manifests::{self, ObjectKey};
use super::{FIELD_MANAGER, KubernetesTarget, applyset, diff, kind_of, resource_of};

/// The verbs a release uses on every kind it applies: read, apply (create or patch), prune.
const APPLIED: &[&str] = &["get", "list", "create", "patch", "delete"];
/// The verbs of the lock: its Lease is read, created, renewed and deleted.
const LEASE: &[&str] = &["get", "create", "update", "delete"];

/// Verbs a release needs on one kind of object.
pub struct Right {
    pub group: String,
    pub plural: String,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
}

/// Every right a release needs: the kinds it applies and the Secrets it creates and keeps its
/// records in (apply verbs), and the Lease that locks the environment (lock verbs, last).
pub fn rights(objects: &[DynamicObject]) -> Vec<Right> {
    let mut kinds = applyset::group_kinds_of(objects);
    kinds.insert((String::new(), "Secret".into()));
    let mut rights: Vec<Right> = kinds
        .into_iter()
        .map(|(group, kind)| Right {
            plural: resource_of(&group, &kind).plural,
            namespaced: manifests::is_namespaced(&kind),
            group,
            verbs: APPLIED,
        })
        .collect();
    rights.push(Right {
        group: "coordination.k8s.io".into(),
        plural: "leases".into(),
        namespaced: true,
        verbs: LEASE,
    });
    rights
}

/// The verbs the context may not use in `namespace`, as `verb resource` (`patch deployments`).
/// A review the API does not answer counts as denied.
pub async fn denied_verbs(client: &kube::Client, namespace: &str, rights: &[Right]) -> Vec<String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for right in rights {
        for verb in right.verbs {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(right.group.clone()),
                        resource: Some(right.plural.clone()),
                        verb: Some(verb.to_string()),
                        namespace: right.namespaced.then(|| namespace.to_string()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let allowed = api
                .create(&PostParams::default(), &review)
                .await
                .ok()
                .and_then(|r| r.status)
                .is_some_and(|s| s.allowed);
            if !allowed {
                denied.push(format!("{verb} {}", right.plural));
            }
        }
    }
    denied
}

impl KubernetesTarget {
    /// What the API server would store for `object`, without storing it.
    async fn dry_run(
        &self,
        client: &kube::Client,
        object: &DynamicObject,
        force: bool,
    ) -> std::result::Result<Value, kube::Error> {
        let key = manifests::key(object);
        let resource = manifests::api_resource(object);
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut params = PatchParams::apply(FIELD_MANAGER).dry_run();
        if force {
            params = params.force();
        }
        let stored = api.patch(&key.name, &params, &Patch::Apply(object)).await?;
        serde_json::to_value(stored).map_err(kube::Error::SerdeError)
    }

    /// The live object, `None` when it does not exist.
    async fn live_object(
        &self,
        client: &kube::Client,
        object: &DynamicObject,
    ) -> std::result::Result<Option<Value>, kube::Error> {
        let key = manifests::key(object);
        let resource = manifests::api_resource(object);
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        Ok(api
            .get_opt(&key.name)
            .await?
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// Refuses `release` when a verb it needs is denied or the API server would refuse one of its
    /// objects; changes nothing either way.
    pub(super) fn verify_release(&self, env: &Environment, release: &Release) -> Result<()> {
        let objects = self.desired(env, release)?;
        let namespace = manifests::namespace(&objects).unwrap_or_default();
        let client = self.client()?;
        self.block_on(async {
            let denied = denied_verbs(&client, &namespace, &rights(&objects)).await;
            if !denied.is_empty() {
                return Err(Error::prerequisite(
                    format!(
                        "the context may not {} in namespace {namespace}, which {} needs; nothing was changed",
                        denied.join(", "),
                        release.version
                    ),
                    "ask a cluster admin for a Role (or ClusterRole) granting these verbs (`deployer doctor \
                     --target kubernetes` lists them)",
                ));
            }
            for object in &objects {
                let key = manifests::key(object);
                match self.dry_run(&client, object, self.force_conflicts).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) => {
                        if let Some((what, fix)) =
                            diff::refusal(&key.to_string(), status.code, &status.reason, &status.message)
                        {
                            return Err(Error::prerequisite(what, fix));
                        }
                        // Not a refusal of the object (a namespace that does not exist yet on a
                        // first deploy): the real apply decides.
                    }
                    Err(e) => {
                        return Err(Error::prerequisite(
                            format!(
                                "the API server did not answer the dry run of {key} ({e}); nothing was changed"
                            ),
                            "check that the cluster answers (`deployer doctor --target kubernetes`), then deploy again",
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    /// What deploying `release` would change: each object against its dry run (fields owned by
    /// other managers marked, Secret values redacted), and the objects the release would prune.
    pub(super) fn diff_release(&self, env: &Environment, release: &Release) -> Result<Changes> {
        let objects = self.desired(env, release)?;
        let namespace = manifests::namespace(&objects).unwrap_or_default();
        let client = self.client()?;
        let unreachable = |e: kube::Error| {
            Error::prerequisite(
                format!("the API server did not answer ({e})"),
                "check that the cluster answers (`deployer doctor --target kubernetes`)",
            )
        };
        self.block_on(async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let namespace_exists = namespaces
                .get_opt(&namespace)
                .await
                .map_err(unreachable)?
                .is_some();
            let mut changes = Changes::default();
            for object in &objects {
                let key = manifests::key(object);
                let name = key.to_string();
                let live = if namespace_exists || kind_of(object) == "Namespace" {
                    self.live_object(&client, object)
                        .await
                        .map_err(unreachable)?
                } else {
                    None
                };
                let Some(live) = live else {
                    changes.changes.push(Change {
                        object: name,
                        action: ChangeAction::Create,
                        fields: Vec::new(),
                    });
                    continue;
                };
                // Forced, so a field another manager owns shows as the change it would be (and is
                // marked with its owner) instead of hiding the rest behind the conflict.
                let stored = match self.dry_run(&client, object, true).await {
                    Ok(stored) => stored,
                    Err(kube::Error::Api(status)) => {
                        let (what, fix) =
                            diff::refusal(&name, status.code, &status.reason, &status.message)
                                .unwrap_or_else(|| {
                                    (
                                        format!("the dry run of {name} failed: {}", status.message),
                                        "see the message".to_string(),
                                    )
                                });
                        return Err(Error::prerequisite(what, fix));
                    }
                    Err(e) => return Err(unreachable(e)),
                };
                match diff::compare(&name, Some(&live), &stored, super::FIELD_MANAGER) {
                    Some(change) => changes.changes.push(change),
                    None => changes.unchanged.push(name),
                }
            }
            if namespace_exists {
                let declared = applyset::group_kinds_of(&objects);
                let listed = self.inventory(&client, &namespace).await;
                let all: BTreeSet<(String, String)> = declared.union(&listed).cloned().collect();
                let live = self.members(&client, &namespace, &all).await;
                let desired: Vec<ObjectKey> = objects.iter().map(manifests::key).collect();
                for key in applyset::prune_set(&live, &desired, false) {
                    changes.changes.push(Change {
                        object: key.to_string(),
                        action: ChangeAction::Delete,
                        fields: Vec::new(),
                    });
                }
            }
            Ok(changes)
        })
    }
}
