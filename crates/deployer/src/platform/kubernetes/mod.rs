//! The Kubernetes target: the overlay `deploy/kubernetes/overlays/<env>` rendered by kustomize
//! (`kubectl kustomize`), applied through the API with server-side apply (field manager
//! `deployer`), watched until the rollout completes or fails, with the release history kept in
//! the cluster.
//!
//! The decisions are pure functions, unit-tested on objects shaped as the API returns them:
//! `rollout` (is the rollout done, still going, or failed and why), `manifests` (what is applied),
//! `applyset` (the KEP-3659 inventory and what to prune), `records` (the release history). This
//! module does the I/O around them; `tests` drives it against a fake API server.

pub mod applyset;
pub mod cluster;
pub mod manifests;
pub mod records;
pub mod rollout;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::core::ObjectMeta;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::facts::{
    K8S_APP_CONTAINER, K8S_APP_SECRET, K8S_APP_SELECTOR, K8S_DB_SECRET, K8S_DB_SELECTOR,
    K8S_DEPLOYMENT, K8S_MIGRATE_CONTAINER, K8S_SERVICE, K8S_SERVICE_PORT_NAME, K8S_STATEFULSET,
    KUBERNETES_OVERLAYS, SERVICE_PORT,
};
use crate::http::{self, Smoke};
use crate::ledger::Record;
use crate::plan::{Environment, Release};
use crate::platform::{
    AppState, Applied, Check, Diagnosis, Live, LockInfo, Locking, LogOptions, Stopped, Target,
    Unit, redact, remaining,
};
use crate::process::Cmd;
use crate::report::Step;
use cluster::Cluster;
use manifests::ObjectKey;
use rollout::{Failure, LogSource, Policy, Snapshot, Verdict};

/// The field manager of every apply: `kubectl` users see it in `managedFields`.
pub const FIELD_MANAGER: &str = "deployer";
/// How often the wait reads the rollout's state.
const POLL: Duration = Duration::from_secs(1);
/// Log lines shown per container in a diagnosis.
const LOG_TAIL: i64 = 30;
/// The kinds a deploy applies, in the order they are applied: what others refer to first.
const APPLY_ORDER: [&str; 12] = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "StatefulSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PrometheusRule",
];

pub struct KubernetesTarget {
    project_dir: PathBuf,
    /// `--context`, else the kubeconfig's current context.
    context: Option<String>,
    /// `--force-conflicts`: take over fields other managers own.
    force_conflicts: bool,
    runtime: tokio::runtime::Runtime,
    /// Connected once per run; the API server's version beside it.
    cluster: OnceLock<(Cluster, String)>,
    /// Rendered overlays by environment name.
    overlays: RefCell<HashMap<String, Vec<DynamicObject>>>,
}

impl KubernetesTarget {
    pub fn new(project_dir: &Path, context: Option<String>, force_conflicts: bool) -> Self {
        KubernetesTarget {
            project_dir: project_dir.to_path_buf(),
            context,
            force_conflicts,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a single-threaded tokio runtime can always be built"),
            cluster: OnceLock::new(),
            overlays: RefCell::new(HashMap::new()),
        }
    }

    /// A target talking to a given client (the tests' fake API server), with the overlay of
    /// `env` already rendered.
    #[cfg(test)]
    fn with_cluster(
        project_dir: &Path,
        cluster: Cluster,
        env: &str,
        overlay: Vec<DynamicObject>,
        force_conflicts: bool,
    ) -> Self {
        let target = KubernetesTarget::new(project_dir, None, force_conflicts);
        let _ = target.cluster.set((cluster, "v1.33.0".to_string()));
        target
            .overlays
            .borrow_mut()
            .insert(env.to_string(), overlay);
        target
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The cluster connection, made on first use.
    fn cluster(&self) -> Result<&Cluster> {
        if let Some((cluster, _)) = self.cluster.get() {
            return Ok(cluster);
        }
        let connected = self.block_on(cluster::connect(self.context.as_deref()))?;
        Ok(&self.cluster.get_or_init(|| connected).0)
    }

    fn client(&self) -> Result<kube::Client> {
        Ok(self.cluster()?.client.clone())
    }

    fn overlay_dir(&self, env: &str) -> PathBuf {
        self.project_dir.join(KUBERNETES_OVERLAYS).join(env)
    }

    /// The environment's overlay rendered by kustomize (once per run).
    fn overlay(&self, env: &Environment) -> Result<Vec<DynamicObject>> {
        if let Some(objects) = self.overlays.borrow().get(&env.name) {
            return Ok(objects.clone());
        }
        let dir = self.overlay_dir(&env.name);
        if !dir.join("kustomization.yaml").is_file() {
            return Err(Error::prerequisite(
                format!(
                    "there is no Kubernetes overlay for {} ({} is missing)",
                    env.name,
                    dir.join("kustomization.yaml").display()
                ),
                format!(
                    "use an environment with an overlay (dev, qa, prod), or create {} from one of them",
                    dir.display()
                ),
            ));
        }
        let text = Cmd::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .checked(Duration::from_secs(60))
            .map_err(|e| match e {
                Error::Prerequisite { problem, .. } => Error::prerequisite(
                    problem,
                    "install kubectl 1.27 or newer (it embeds kustomize, which renders the overlays)",
                ),
                other => other,
            })?;
        let objects = manifests::parse(&text)
            .map_err(|e| Error::Other(format!("kustomize rendered {}: {e}", dir.display())))?;
        self.overlays
            .borrow_mut()
            .insert(env.name.clone(), objects.clone());
        Ok(objects)
    }

    /// The namespace the overlay targets.
    fn namespace(&self, env: &Environment) -> Result<String> {
        let objects = self.overlay(env)?;
        manifests::namespace(&objects).ok_or_else(|| {
            Error::Other(format!(
                "the overlay {} names no namespace",
                self.overlay_dir(&env.name).display()
            ))
        })
    }

    /// What a release applies: its recorded manifests when it has them (a rollback re-applies
    /// exactly what ran), else the overlay with the release's image; every object labelled as a
    /// member of the deployer's ApplySet.
    fn desired(&self, env: &Environment, release: &Release) -> Result<Vec<DynamicObject>> {
        let mut objects = match &release.manifests {
            Some(text) => manifests::parse(text).map_err(|e| {
                Error::Other(format!(
                    "the recorded manifests of {}: {e}",
                    release.version
                ))
            })?,
            None => {
                let mut objects = self.overlay(env)?;
                manifests::set_image(&mut objects, &release.image);
                objects
            }
        };
        let namespace = manifests::namespace(&objects)
            .ok_or_else(|| Error::Other("the manifests name no namespace".into()))?;
        let (key, value) = applyset::member_label(&namespace);
        manifests::add_labels(&mut objects, &BTreeMap::from([(key, value)]));
        objects.sort_by_key(|o| apply_rank(&kind_of(o)));
        Ok(objects)
    }

    async fn apply_one(
        &self,
        client: &kube::Client,
        object: &DynamicObject,
    ) -> std::result::Result<(), Diagnosis> {
        let resource = manifests::api_resource(object);
        let key = manifests::key(object);
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if self.force_conflicts {
            params = params.force();
        }
        match api.patch(&key.name, &params, &Patch::Apply(object)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let managers = cluster::conflicting_managers(&status.message);
                Err(Diagnosis {
                    stopped: Stopped::Unhealthy,
                    cause: format!(
                        "server-side apply conflict on {key}: fields are owned by {} ({})",
                        if managers.is_empty() {
                            "another field manager".to_string()
                        } else {
                            managers.join(", ")
                        },
                        status.message.lines().next().unwrap_or("")
                    ),
                    fix: Some(
                        "let the deployer own these fields: pass --force-conflicts (the other manager loses \
                         them), or stop managing them with that tool"
                            .into(),
                    ),
                    details: status.message.lines().skip(1).map(String::from).collect(),
                    blocks: Vec::new(),
                })
            }
            Err(e @ kube::Error::Api(_)) => {
                Err(Diagnosis::cause(format!("applying {key} failed: {e}")))
            }
            // No answer at all: the API server went away (not a refusal of this object).
            Err(e) => Err(Diagnosis::unreachable(format!(
                "the API server stopped answering while {key} was applied ({e})"
            ))),
        }
    }

    /// Applies the parent, the members, prunes members no longer declared, and shrinks the
    /// parent's inventory to what is declared now (KEP-3659's order).
    async fn apply_all(
        &self,
        client: &kube::Client,
        namespace: &str,
        objects: &[DynamicObject],
        step: &mut Step<'_>,
    ) -> std::result::Result<(), Diagnosis> {
        let previous = self.inventory(client, namespace).await;
        let current = applyset::group_kinds_of(objects);
        let union: BTreeSet<(String, String)> = previous.union(&current).cloned().collect();
        // The namespace first: the parent lives in it.
        for object in objects.iter().filter(|o| kind_of(o) == "Namespace") {
            self.apply_one(client, object).await?;
        }
        self.apply_one(client, &applyset::parent(namespace, &union))
            .await?;
        for object in objects.iter().filter(|o| kind_of(o) != "Namespace") {
            step.detail(&format!("applying {}", manifests::key(object)));
            self.apply_one(client, object).await?;
        }
        let desired: Vec<ObjectKey> = objects.iter().map(manifests::key).collect();
        let live = self.members(client, namespace, &union).await;
        let pruned = applyset::prune_set(&live, &desired, false);
        for key in &pruned {
            step.detail(&format!("pruning {key}"));
            delete(client, key).await.map_err(|e| {
                Diagnosis::cause(format!(
                    "pruning {key}, which the overlay no longer declares, failed: {e}"
                ))
            })?;
        }
        // Members kept although no longer declared (data: Secrets, volume claims) stay members:
        // the parent keeps listing their kinds, or they could never be found again (by a later
        // prune or `down --purge-data`).
        let kept: BTreeSet<(String, String)> = live
            .iter()
            .filter(|key| !pruned.contains(key))
            .map(|key| (key.group.clone(), key.kind.clone()))
            .collect();
        let inventory: BTreeSet<(String, String)> = current.union(&kept).cloned().collect();
        self.apply_one(client, &applyset::parent(namespace, &inventory))
            .await
    }

    /// The group-kinds the parent lists (empty when there is no parent yet).
    async fn inventory(
        &self,
        client: &kube::Client,
        namespace: &str,
    ) -> BTreeSet<(String, String)> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client.clone(), namespace);
        api.get_opt(applyset::PARENT_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|parent| parent.metadata.annotations)
            .and_then(|a| a.get(applyset::CONTAINS_GROUP_KINDS_ANNOTATION).cloned())
            .map(|text| applyset::parse_group_kinds(&text))
            .unwrap_or_default()
    }

    /// The live members of the ApplySet, of the listed group-kinds.
    async fn members(
        &self,
        client: &kube::Client,
        namespace: &str,
        group_kinds: &BTreeSet<(String, String)>,
    ) -> Vec<ObjectKey> {
        let (label, id) = applyset::member_label(namespace);
        let selector = format!("{label}={id}");
        let mut keys = Vec::new();
        for (group, kind) in group_kinds {
            let resource = resource_of(group, kind);
            let api: Api<DynamicObject> = if manifests::is_namespaced(kind) {
                Api::namespaced_with(client.clone(), namespace, &resource)
            } else {
                Api::all_with(client.clone(), &resource)
            };
            if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
                for item in list.items {
                    keys.push(ObjectKey::new(
                        group,
                        kind,
                        item.metadata.namespace.as_deref(),
                        item.metadata.name.as_deref().unwrap_or(""),
                    ));
                }
            }
        }
        keys
    }

    /// Everything the rollout decision needs, read in one pass.
    async fn snapshot(&self, client: &kube::Client, namespace: &str) -> Snapshot {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let app = ListParams::default().labels(K8S_APP_SELECTOR);
        let db = ListParams::default().labels(K8S_DB_SELECTOR);
        let mut all_pods = pods.list(&app).await.map(|l| l.items).unwrap_or_default();
        all_pods.extend(pods.list(&db).await.map(|l| l.items).unwrap_or_default());
        Snapshot {
            deployment: deployments.get_opt(K8S_DEPLOYMENT).await.ok().flatten(),
            replica_sets: replica_sets
                .list(&app)
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
            statefulset: statefulsets.get_opt(K8S_STATEFULSET).await.ok().flatten(),
            pods: all_pods,
            events: events
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
        }
    }

    async fn log_lines(
        &self,
        client: &kube::Client,
        namespace: &str,
        source: &LogSource,
    ) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let params = LogParams {
            container: Some(source.container.clone()),
            previous: source.previous,
            tail_lines: Some(LOG_TAIL),
            ..LogParams::default()
        };
        match pods.logs(&source.pod, &params).await {
            Ok(text) => text.lines().map(String::from).collect(),
            Err(e) => vec![format!("(no log: {e})")],
        }
    }

    /// A failed rollout in words, with the logs it asked for and the events.
    async fn diagnose(
        &self,
        client: &kube::Client,
        namespace: &str,
        failure: Failure,
    ) -> Diagnosis {
        let mut logs = Vec::new();
        for source in &failure.logs {
            logs.push((
                source.clone(),
                self.log_lines(client, namespace, source).await,
            ));
        }
        let failure = rollout::refine(failure, &logs);
        let secrets = self.secret_values_in(client, namespace).await;
        let mut diagnosis = diagnosis_of(&failure);
        for (source, lines) in logs {
            let lines: Vec<String> = lines
                .iter()
                .map(|l| redact(l, &secrets).trim_end().to_string())
                .collect();
            diagnosis.blocks.push((
                format!(
                    "last {} log lines of {} in pod {}{}",
                    lines.len(),
                    source.container,
                    source.pod,
                    if source.previous {
                        " (the container before the restart)"
                    } else {
                        ""
                    }
                ),
                lines,
            ));
        }
        diagnosis
    }

    async fn secret_values_in(&self, client: &kube::Client, namespace: &str) -> Vec<String> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let mut values = Vec::new();
        for name in [K8S_APP_SECRET, K8S_DB_SECRET] {
            if let Ok(Some(secret)) = api.get_opt(name).await {
                for value in secret.data.unwrap_or_default().into_values() {
                    if let Ok(text) = String::from_utf8(value.0) {
                        values.push(text);
                    }
                }
            }
        }
        values
    }

    /// GET `path` of the app's Service through the API server's service proxy.
    async fn proxy_get(
        &self,
        client: &kube::Client,
        namespace: &str,
        path: &str,
    ) -> std::result::Result<(u16, Value), String> {
        let uri = format!(
            "/api/v1/namespaces/{namespace}/services/{K8S_SERVICE}:{K8S_SERVICE_PORT_NAME}/proxy{path}"
        );
        let request = ::http::Request::get(&uri)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match client.request_text(request).await {
            Ok(text) => Ok((
                200,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )),
            Err(kube::Error::Api(status)) => Ok((status.code, Value::String(status.message))),
            Err(e) => Err(format!(
                "GET {path} through the API server's service proxy: {e}"
            )),
        }
    }

    async fn records(
        &self,
        client: &kube::Client,
        env: &Environment,
        namespace: &str,
    ) -> Result<Vec<Secret>> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        match api
            .list(&ListParams::default().labels(&records::label_selector(&env.name)))
            .await
        {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
            Err(e) => Err(api_error("reading the release records", e)),
        }
    }

    async fn ensure_secrets_in(
        &self,
        client: &kube::Client,
        namespace: &str,
    ) -> Result<Vec<String>> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let app = api
            .get_opt(K8S_APP_SECRET)
            .await
            .map_err(|e| api_error("reading Secret challenge-db", e))?;
        let db = api
            .get_opt(K8S_DB_SECRET)
            .await
            .map_err(|e| api_error("reading Secret mysql", e))?;
        let value_of = |secret: &Option<Secret>, key: &str| -> Option<String> {
            secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(key))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
        };
        // The one password both sides must agree on: the database's if it exists (it was
        // initialised with it), else the app's, else a new one.
        let password = value_of(&db, "password")
            .or_else(|| value_of(&app, "password"))
            .unwrap_or_else(random_value);
        let mut created = Vec::new();
        if db.is_none() {
            let secret = new_secret(
                K8S_DB_SECRET,
                namespace,
                "mysql",
                [
                    ("root-password", random_value()),
                    ("password", password.clone()),
                ],
            );
            create_secret(&api, &secret).await?;
            created.push(K8S_DB_SECRET);
        }
        if app.is_none() {
            let secret = new_secret(
                K8S_APP_SECRET,
                namespace,
                "challenge",
                [("password", password)],
            );
            create_secret(&api, &secret).await?;
            created.push(K8S_APP_SECRET);
        }
        Ok(if created.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "created Secret(s) {} in namespace {namespace} (random values, never printed, never overwritten)",
                created.join(" and ")
            )]
        })
    }
}

/// A Diagnosis from the rollout decision's failure (logs are added by the caller).
fn diagnosis_of(failure: &Failure) -> Diagnosis {
    let mut where_ = Vec::new();
    if let Some(pod) = &failure.pod {
        where_.push(format!("pod {pod}"));
    }
    if let Some(container) = &failure.container {
        where_.push(format!("container {container}"));
    }
    let mut what = Vec::new();
    if let Some(reason) = &failure.reason {
        what.push(reason.clone());
    }
    if let Some(message) = &failure.message {
        what.push(message.clone());
    }
    if let Some(code) = failure.exit_code {
        what.push(format!("exit code {code}"));
    }
    let mut details = Vec::new();
    if !where_.is_empty() || !what.is_empty() {
        details.push(format!("{}: {}", where_.join(", "), what.join(", ")));
    }
    let mut blocks = Vec::new();
    if !failure.events.is_empty() {
        blocks.push(("last Warning events".to_string(), failure.events.clone()));
    }
    Diagnosis {
        stopped: Stopped::Unhealthy,
        cause: failure.cause.clone(),
        fix: failure.fix.clone(),
        details,
        blocks,
    }
}

fn kind_of(object: &DynamicObject) -> String {
    object
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default()
}

/// Where a kind goes in [`APPLY_ORDER`]; kinds it does not list go last.
fn apply_rank(kind: &str) -> usize {
    APPLY_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(APPLY_ORDER.len())
}

/// The API resource of a group-kind (the version is the preferred one of the kinds we apply).
fn resource_of(group: &str, kind: &str) -> kube::api::ApiResource {
    let version = if group == "autoscaling" { "v2" } else { "v1" };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    kube::api::ApiResource::from_gvk(&gvk)
}

async fn delete(client: &kube::Client, key: &ObjectKey) -> std::result::Result<(), kube::Error> {
    let resource = resource_of(&key.group, &key.kind);
    let api: Api<DynamicObject> = match &key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.delete(&key.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn api_error(what: &str, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(status) if status.code == 403 => Error::prerequisite(
            format!("{what}: forbidden ({})", status.message),
            "ask for the permissions `deployer doctor --target kubernetes` lists",
        ),
        other => Error::Other(format!("{what}: {other}")),
    }
}

fn random_value() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn new_secret<const N: usize>(
    name: &str,
    namespace: &str,
    app_name: &str,
    values: [(&str, String); N],
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), app_name.to_string()),
                (
                    "app.kubernetes.io/instance".to_string(),
                    "infra-challenge".to_string(),
                ),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "infra-challenge".to_string(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(
            values
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Creates a Secret; one created meanwhile by someone else is kept as it is.
async fn create_secret(api: &Api<Secret>, secret: &Secret) -> Result<()> {
    match api.create(&PostParams::default(), secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(api_error(
            &format!(
                "creating Secret {}",
                secret.metadata.name.as_deref().unwrap_or("")
            ),
            e,
        )),
    }
}

/// The version part of an image reference.
fn image_tag(image: &str) -> Option<&str> {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split('@').next().unwrap_or(name);
    name.split_once(':').map(|(_, tag)| tag)
}

/// A pod in one line's words: its phase, or the reason its first unready container waits.
fn pod_state(pod: &Pod) -> (String, bool, u64) {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    let waiting = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(containers.clone())
        .find_map(|c| c.state.and_then(|s| s.waiting).and_then(|w| w.reason));
    let ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let restarts = containers
        .iter()
        .map(|c| u64::try_from(c.restart_count).unwrap_or(0))
        .sum();
    let phase = status.phase.unwrap_or_else(|| "Unknown".to_string());
    (waiting.unwrap_or(phase), ready, restarts)
}

impl Target for KubernetesTarget {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn title(&self) -> &'static str {
        "Kubernetes"
    }

    fn location(&self, env: &Environment) -> String {
        let (context, server) = cluster::describe_kubeconfig(self.context.as_deref());
        let namespace = self
            .namespace(env)
            .unwrap_or_else(|_| "(the overlay's)".to_string());
        format!("namespace {namespace} of context {context} ({server})")
    }

    fn preflight(&self, env: &Environment) -> Result<()> {
        self.cluster()?;
        self.overlay(env)?;
        Ok(())
    }

    fn artifact(&self, _env: &Environment, release: &Release) -> Result<String> {
        // The cluster pulls the image itself: a pod that cannot is diagnosed as exactly that
        // (ErrImagePull), with the push or load command.
        Ok(release.image.clone())
    }

    fn doctor(&self, env: &Environment) -> Vec<Check> {
        let mut checks = Vec::new();
        let (context, server) = cluster::describe_kubeconfig(self.context.as_deref());
        checks.push(match kube::config::Kubeconfig::read() {
            Ok(_) => Check::pass("kubeconfig", format!("context {context}, server {server}")),
            Err(e) => Check::fail(
                "kubeconfig",
                format!("no kubeconfig: {e}"),
                "create a cluster (a local one: `kind create cluster`) or set KUBECONFIG",
            ),
        });
        checks.push(
            match Cmd::new("kubectl")
                .args(["version", "--client", "--output=json"])
                .checked(Duration::from_secs(20))
            {
                Ok(text) => Check::pass(
                    "renderer",
                    serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| {
                            Some(format!(
                                "kubectl {}, kustomize {}",
                                v["clientVersion"]["gitVersion"].as_str()?,
                                v["kustomizeVersion"].as_str().unwrap_or("?")
                            ))
                        })
                        .unwrap_or_else(|| "kubectl".into()),
                ),
                Err(e) => Check::fail(
                    "renderer",
                    e.to_string(),
                    "install kubectl 1.27 or newer (its kustomize renders the overlays)",
                ),
            },
        );
        checks.push(match self.overlay(env) {
            Ok(objects) => Check::pass(
                "overlay",
                format!(
                    "{}: {} objects",
                    self.overlay_dir(&env.name).display(),
                    objects.len()
                ),
            ),
            Err(Error::Prerequisite { problem, fix }) => Check::fail("overlay", problem, fix),
            Err(e) => Check::fail("overlay", e.to_string(), "check `kubectl kustomize` of it"),
        });
        let cluster = match self.cluster() {
            Ok(cluster) => cluster,
            Err(Error::Prerequisite { problem, fix }) => {
                checks.push(Check::fail("api server", problem, fix));
                return checks;
            }
            Err(e) => {
                checks.push(Check::fail(
                    "api server",
                    e.to_string(),
                    "check the kubeconfig",
                ));
                return checks;
            }
        };
        let version = self
            .cluster
            .get()
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        checks.push(Check::pass(
            "api server",
            format!(
                "{} at {} (context {})",
                version, cluster.server, cluster.context
            ),
        ));
        let Ok(namespace) = self.namespace(env) else {
            return checks;
        };
        let client = cluster.client.clone();
        checks.push(self.block_on(async {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            match api.get_opt(&namespace).await {
                Ok(Some(_)) => Check::pass("namespace", format!("{namespace} exists")),
                Ok(None) => Check::pass(
                    "namespace",
                    format!("{namespace} does not exist yet: the first deploy creates it"),
                ),
                Err(e) => Check::fail(
                    "namespace",
                    format!("cannot read namespace {namespace}: {e}"),
                    "check the credentials of the context",
                ),
            }
        }));
        let objects = self.overlay(env).unwrap_or_default();
        let mut kinds: Vec<(String, String)> =
            applyset::group_kinds_of(&objects).into_iter().collect();
        kinds.push((String::new(), "Secret".into()));
        kinds.sort();
        kinds.dedup();
        let denied = self.block_on(async {
            let mut denied = Vec::new();
            for (group, kind) in &kinds {
                let resource = resource_of(group, kind);
                for verb in ["get", "list", "create", "patch", "delete"] {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(ResourceAttributes {
                                group: Some(group.clone()),
                                resource: Some(resource.plural.clone()),
                                verb: Some(verb.to_string()),
                                namespace: manifests::is_namespaced(kind)
                                    .then(|| namespace.clone()),
                                ..ResourceAttributes::default()
                            }),
                            ..SelfSubjectAccessReviewSpec::default()
                        },
                        ..SelfSubjectAccessReview::default()
                    };
                    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
                    let allowed = api
                        .create(&PostParams::default(), &review)
                        .await
                        .ok()
                        .and_then(|r| r.status)
                        .is_some_and(|s| s.allowed);
                    if !allowed {
                        denied.push(format!("{verb} {}", resource.plural));
                    }
                }
            }
            denied
        });
        checks.push(if denied.is_empty() {
            Check::pass(
                "permissions",
                format!(
                    "may get, list, create, patch and delete the {} kinds the overlay applies",
                    kinds.len()
                ),
            )
        } else {
            Check::fail(
                "permissions",
                format!("not allowed in {namespace}: {}", denied.join(", ")),
                "ask a cluster admin for a Role (or ClusterRole) granting these verbs",
            )
        });
        // Informational: a bare local name is right for a local cluster the image was loaded into.
        checks.push(Check::pass(
            "image repository",
            if env.app_repository.contains('/') {
                format!(
                    "{}: the cluster pulls it (imagePullPolicy Always); push each version there \
                     (`deployer build --push --registry REGISTRY`)",
                    env.app_repository
                )
            } else {
                format!(
                    "{} has no registry: the nodes must already hold the image (imagePullPolicy \
                     IfNotPresent), as after `kind load docker-image {}:VERSION`; a remote cluster needs \
                     --repository REGISTRY/NAME",
                    env.app_repository, env.app_repository
                )
            },
        ));
        checks
    }

    fn live(&self, env: &Environment) -> Result<Live> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        self.block_on(async {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
            let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
            let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let deployment = deployments
                .get_opt(K8S_DEPLOYMENT)
                .await
                .map_err(|e| api_error("reading the Deployment", e))?;
            let statefulset = statefulsets
                .get_opt(K8S_STATEFULSET)
                .await
                .map_err(|e| api_error("reading the StatefulSet", e))?;
            let service = services.get_opt(K8S_SERVICE).await.ok().flatten();
            let app_pods = pods
                .list(&ListParams::default().labels(K8S_APP_SELECTOR))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let mut parts = Vec::new();
            if deployment.is_some() {
                parts.push(format!("{K8S_DEPLOYMENT} (Deployment)"));
            }
            if statefulset.is_some() {
                parts.push(format!("{K8S_STATEFULSET} (StatefulSet)"));
            }
            let image = deployment
                .as_ref()
                .and_then(|d| d.spec.as_ref())
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.iter().find(|c| c.name == K8S_APP_CONTAINER))
                .and_then(|c| c.image.clone());
            let app = deployment.as_ref().map(|d| {
                let status = d.status.clone().unwrap_or_default();
                let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = status.ready_replicas.unwrap_or(0);
                AppState {
                    running: ready > 0,
                    health: format!("{ready}/{desired} ready"),
                    state: format!(
                        "{} updated, {} available, generation {} observed {}",
                        status.updated_replicas.unwrap_or(0),
                        status.available_replicas.unwrap_or(0),
                        d.metadata.generation.unwrap_or(0),
                        status.observed_generation.unwrap_or(0)
                    ),
                    since: d
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                }
            });
            Ok(Live {
                version: image.as_deref().and_then(image_tag).map(String::from),
                app,
                url: service.map(|_| {
                    format!(
                        "service {K8S_SERVICE}.{namespace}:{SERVICE_PORT} (from here: kubectl -n {namespace} \
                         port-forward service/{K8S_SERVICE} {SERVICE_PORT}:{K8S_SERVICE_PORT_NAME})"
                    )
                }),
                services: parts,
                units: app_pods
                    .iter()
                    .map(|pod| {
                        let (state, ready, restarts) = pod_state(pod);
                        Unit {
                            name: pod.metadata.name.clone().unwrap_or_default(),
                            state,
                            ready,
                            restarts,
                        }
                    })
                    .collect(),
            })
        })
    }

    fn known_versions(&self, env: &Environment) -> Result<Vec<String>> {
        Ok(self
            .history(env)?
            .into_iter()
            .filter(|r| r.result == crate::ledger::Outcome::Ok)
            .map(|r| r.version)
            .collect())
    }

    fn render(&self, env: &Environment, release: &Release) -> Result<String> {
        let mut objects = self.desired(env, release)?;
        let namespace = manifests::namespace(&objects).unwrap_or_default();
        // The parent right after the Namespace it lives in: the order `apply_all` applies them.
        let after_namespaces = objects
            .iter()
            .take_while(|o| kind_of(o) == "Namespace")
            .count();
        objects.insert(
            after_namespaces,
            applyset::parent(&namespace, &applyset::group_kinds_of(&objects)),
        );
        manifests::redact_secrets(&mut objects);
        Ok(manifests::to_yaml(&objects))
    }

    fn ensure_secrets(&self, env: &Environment) -> Result<Vec<String>> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        let mut namespaces: Vec<DynamicObject> = self
            .overlay(env)?
            .into_iter()
            .filter(|o| kind_of(o) == "Namespace")
            .collect();
        // Applied as the deploy applies it (a member of the ApplySet), so no label comes and goes.
        let (key, value) = applyset::member_label(&namespace);
        manifests::add_labels(&mut namespaces, &BTreeMap::from([(key, value)]));
        self.block_on(async {
            // The Secrets live in the namespace: it comes first.
            for object in &namespaces {
                self.apply_one(&client, object)
                    .await
                    .map_err(|d| Error::Other(d.cause))?;
            }
            self.ensure_secrets_in(&client, &namespace).await
        })
    }

    fn apply(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<Applied, Diagnosis> {
        let objects = self
            .desired(env, release)
            .map_err(|e| Diagnosis::cause(e.to_string()))?;
        let namespace = manifests::namespace(&objects).unwrap_or_default();
        let client = self.client().map_err(|e| Diagnosis::cause(e.to_string()))?;
        step.detail("server-side apply");
        let applying = self.apply_all(&client, &namespace, &objects, step);
        match self.block_on(async { tokio::time::timeout(remaining(deadline), applying).await }) {
            Ok(applied) => applied?,
            Err(_) => {
                return Err(Diagnosis::cause(
                    "the API server did not finish the apply before the timeout",
                ));
            }
        }
        Ok(Applied {
            // Without Secrets: a record holds no secret value (a rollback leaves Secrets as they are).
            manifests: Some(manifests::to_yaml(
                &objects
                    .into_iter()
                    .filter(|o| kind_of(o) != "Secret")
                    .collect::<Vec<_>>(),
            )),
        })
    }

    fn wait_healthy(
        &self,
        env: &Environment,
        _release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        let client = self.client().map_err(|e| Diagnosis::cause(e.to_string()))?;
        let namespace = self
            .namespace(env)
            .map_err(|e| Diagnosis::cause(e.to_string()))?;
        let started = Instant::now();
        self.block_on(async {
            let mut last: String;
            loop {
                let snapshot = self.snapshot(&client, &namespace).await;
                let policy = Policy {
                    now: k8s_openapi::jiff::Timestamp::now(),
                    ..Policy::default()
                };
                match rollout::assess(&snapshot, &policy) {
                    Verdict::Complete { .. } => return Ok(()),
                    Verdict::Failed(failure) => {
                        return Err(self.diagnose(&client, &namespace, failure).await);
                    }
                    Verdict::Progressing { detail } => {
                        step.detail(&detail);
                        last = detail;
                    }
                }
                if Instant::now() >= deadline {
                    return Err(Diagnosis {
                        stopped: Stopped::Unhealthy,
                        cause: format!(
                            "the rollout did not complete within {}s ({last}); raise --timeout if it is just slow",
                            started.elapsed().as_secs()
                        ),
                        fix: None,
                        details: Vec::new(),
                        blocks: Vec::new(),
                    });
                }
                tokio::time::sleep(POLL.min(remaining(deadline))).await;
            }
        })
    }

    fn smoke(&self, env: &Environment) -> std::result::Result<Smoke, String> {
        let client = self.client().map_err(|e| e.to_string())?;
        let namespace = self.namespace(env).map_err(|e| e.to_string())?;
        http::smoke_test_with(|path| self.block_on(self.proxy_get(&client, &namespace, path)))
    }

    fn history(&self, env: &Environment) -> Result<Vec<Record>> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        let secrets = self.block_on(self.records(&client, env, &namespace))?;
        let mut records = Vec::new();
        for secret in &secrets {
            records.push(records::decode(secret).map_err(|e| {
                Error::Other(format!(
                    "release record {} in {namespace}: {e}",
                    secret.metadata.name.as_deref().unwrap_or("?")
                ))
            })?);
        }
        Ok(records::sorted(records))
    }

    fn record(&self, env: &Environment, record: Record) -> Result<()> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        self.block_on(async {
            let existing = self.records(&client, env, &namespace).await?;
            let record = Record {
                revision: Some(records::next_revision(&existing)),
                port: 0,
                ..record
            };
            let secret = records::encode(&env.name, &namespace, &record).map_err(Error::Other)?;
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(|e| api_error("writing the release record", e))?;
            let mut all = existing;
            all.push(secret);
            for name in records::expired(&all, records::HISTORY_LIMIT) {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
            Ok(())
        })
    }

    fn logs(&self, env: &Environment, options: &LogOptions) -> Result<i32> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        let (selector, container) = match options.service.as_deref() {
            None | Some("app") | Some("challenge") => (K8S_APP_SELECTOR, K8S_APP_CONTAINER),
            Some("migrate") => (K8S_APP_SELECTOR, K8S_MIGRATE_CONTAINER),
            Some("db") | Some("mysql") => (K8S_DB_SELECTOR, "mysql"),
            Some(other) => {
                return Err(Error::usage(format!(
                    "no service {other:?} on Kubernetes: use app, migrate or db"
                )));
            }
        };
        self.block_on(async {
            use futures::AsyncBufReadExt;
            use futures::TryStreamExt;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| api_error("listing pods", e))?;
            if list.items.is_empty() {
                return Err(Error::Other(format!(
                    "no pod of {container} in namespace {namespace} (`deployer status --target kubernetes`)"
                )));
            }
            let params = LogParams {
                container: Some(container.to_string()),
                follow: options.follow,
                previous: options.previous,
                tail_lines: Some(i64::try_from(options.tail).unwrap_or(i64::MAX)),
                ..LogParams::default()
            };
            let names: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            // Following several pods would interleave their lines: follow the newest one.
            let names = if options.follow {
                names.into_iter().last().into_iter().collect()
            } else {
                names
            };
            for name in names {
                println!("--- pod {name}, container {container} ---");
                let stream = pods
                    .log_stream(&name, &params)
                    .await
                    .map_err(|e| api_error(&format!("reading the log of {name}"), e))?;
                let mut lines = stream.lines();
                while let Some(line) = lines
                    .try_next()
                    .await
                    .map_err(|e| Error::Other(format!("reading the log of {name}: {e}")))?
                {
                    println!("{}", crate::report::printable(&line));
                }
            }
            Ok(0)
        })
    }

    fn down(&self, env: &Environment, purge_data: bool) -> Result<()> {
        let client = self.client()?;
        let namespace = self.namespace(env)?;
        self.block_on(async {
            let group_kinds = self.inventory(&client, &namespace).await;
            let overlay = self.overlay(env).unwrap_or_default();
            let all: BTreeSet<(String, String)> = group_kinds
                .union(&applyset::group_kinds_of(&overlay))
                .cloned()
                .collect();
            let live = self.members(&client, &namespace, &all).await;
            for key in applyset::prune_set(&live, &[], purge_data) {
                delete(&client, &key)
                    .await
                    .map_err(|e| Error::Other(format!("deleting {key}: {e}")))?;
            }
            let parent = ObjectKey::new(
                "",
                applyset::PARENT_KIND,
                Some(&namespace),
                applyset::PARENT_NAME,
            );
            delete(&client, &parent)
                .await
                .map_err(|e| Error::Other(format!("deleting the ApplySet parent: {e}")))?;
            if purge_data {
                let claims: Api<PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), &namespace);
                claims
                    .delete_collection(
                        &DeleteParams::default(),
                        &ListParams::default().labels(K8S_DB_SELECTOR),
                    )
                    .await
                    .map_err(|e| api_error("deleting the database's volume claims", e))?;
                for name in [K8S_APP_SECRET, K8S_DB_SECRET] {
                    delete(
                        &client,
                        &ObjectKey::new("", "Secret", Some(&namespace), name),
                    )
                    .await
                    .map_err(|e| Error::Other(format!("deleting Secret {name}: {e}")))?;
                }
            }
            Ok(())
        })
    }

    fn try_lock(&self, _env: &Environment, _request: &LockInfo) -> Result<Locking> {
        Err(Error::Other(
            "the Kubernetes lock (a Lease) is not written yet".into(),
        ))
    }

    fn lock_holder(&self, _env: &Environment) -> Result<Option<LockInfo>> {
        Ok(None)
    }

    fn break_lock(&self, _env: &Environment) -> Result<Option<LockInfo>> {
        Ok(None)
    }
}
