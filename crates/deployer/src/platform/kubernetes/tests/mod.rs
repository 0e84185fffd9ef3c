//! The Kubernetes target driven through its real client against a fake API server.
//!
//! The client is kube-rs' own, built on a `tower-test` mock service whose other end is served by
//! [`FakeApiServer`]: a small in-memory API server on a thread (and tokio runtime) of its own. It
//! keeps objects by their API path and answers what the target asks: GET and LIST (equality label
//! selectors), server-side apply (PATCH, `application/apply-patch+yaml`), create (POST), DELETE
//! and deletecollection, `/version`, the app's Service proxy and pod logs. It records every
//! request, so the tests assert the exact requests the target made.
//!
//! What the cluster's controllers do after an apply is the test's choice ([`Controllers`]):
//! [`healthy`] completes every rollout (ReplicaSets and Ready pods for the new template, status
//! observed); [`stuck_on`] leaves the pods of one image in `ImagePullBackOff`, shaped as the API
//! returns them, while other images roll out as [`healthy`] does. [`FakeApiServer::set_lag`]
//! makes the controllers act only after the target has read the Deployment's stale status a number
//! of times, as a real controller lags an apply.
//!
//! Leases are served as the API server serves them for the environment's lock: create (409
//! AlreadyExists when it exists), replace (PUT, 409 Conflict when the body's resourceVersion is not
//! the stored one) and DELETE honouring a resourceVersion precondition; every write bumps the
//! resourceVersion. [`FakeApiServer::after_request`] runs a hook after each request, which can make
//! the fake stop answering from then on (every later request gets an error, as a refused connection
//! gives) or request a stop as a signal does; [`FakeApiServer::report_version`] makes the app's
//! `/version` say another version than its image tag.
//!
//! The overlay is [`QA_OVERLAY`], a trimmed but faithful copy of `kubectl kustomize
//! deploy/kubernetes/overlays/qa`, so no kubectl is needed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use ::http::header::CONTENT_TYPE;
use ::http::{Method, Request, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use kube::client::Body;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::cli::Cli;
use crate::context::Context;
use crate::error::Restore;
use crate::ledger::{Action, Outcome};
use crate::ops::{release, rollback};

mod isolation;
mod lock;
mod preview;
mod procedure;
mod stops;

/// The namespace of the qa overlay (each environment has its own: `infra-challenge-<env>`).
const NS: &str = "infra-challenge-qa";
/// The registry the tests' releases come from.
const REPOSITORY: &str = "registry.example/infra-challenge";
/// Long enough that only a hang reaches it: a stuck rollout must fail well before.
const TIMEOUT: Duration = Duration::from_secs(60);
/// What the API server answers a server-side apply that takes a field another manager owns.
const CONFLICT: &str = "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" \
                        using apps/v1: .spec.replicas";
/// The content type of server-side apply.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// `kubectl kustomize deploy/kubernetes/overlays/qa`, trimmed (no PodDisruptionBudgets,
/// HorizontalPodAutoscaler, NetworkPolicies, probes beyond readiness, security contexts) but
/// otherwise as rendered: same names, labels, selectors, images, Secret references.
const QA_OVERLAY: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  labels:
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: infra-challenge
    app.kubernetes.io/part-of: infra-challenge
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.30
  name: infra-challenge-qa
---
apiVersion: v1
automountServiceAccountToken: false
kind: ServiceAccount
metadata:
  labels:
    app.kubernetes.io/component: api
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: challenge
    app.kubernetes.io/part-of: infra-challenge
  name: challenge
  namespace: infra-challenge-qa
---
apiVersion: v1
automountServiceAccountToken: false
kind: ServiceAccount
metadata:
  labels:
    app.kubernetes.io/component: database
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: mysql
    app.kubernetes.io/part-of: infra-challenge
  name: mysql
  namespace: infra-challenge-qa
---
apiVersion: v1
data:
  DB_DATABASE: challenge
  DB_HOST: mysql
  DB_PORT: "3306"
  DB_USERNAME: challenge
  LOG_FORMAT: json
  PORT: "8000"
  RUST_LOG: info
kind: ConfigMap
metadata:
  labels:
    app.kubernetes.io/component: api
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: challenge
    app.kubernetes.io/part-of: infra-challenge
  name: challenge-config
  namespace: infra-challenge-qa
---
apiVersion: v1
kind: Service
metadata:
  labels:
    app.kubernetes.io/component: api
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: challenge
    app.kubernetes.io/part-of: infra-challenge
  name: challenge
  namespace: infra-challenge-qa
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
apiVersion: v1
kind: Service
metadata:
  labels:
    app.kubernetes.io/component: database
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: mysql
    app.kubernetes.io/part-of: infra-challenge
  name: mysql
  namespace: infra-challenge-qa
spec:
  ports:
  - appProtocol: mysql
    name: mysql
    port: 3306
    protocol: TCP
    targetPort: mysql
  selector:
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/name: mysql
  type: ClusterIP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app.kubernetes.io/component: api
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: challenge
    app.kubernetes.io/part-of: infra-challenge
  name: challenge
  namespace: infra-challenge-qa
spec:
  minReadySeconds: 5
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/instance: infra-challenge
      app.kubernetes.io/name: challenge
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
    type: RollingUpdate
  template:
    metadata:
      labels:
        app.kubernetes.io/component: api
        app.kubernetes.io/instance: infra-challenge
        app.kubernetes.io/name: challenge
        app.kubernetes.io/part-of: infra-challenge
    spec:
      automountServiceAccountToken: false
      containers:
      - args:
        - serve
        env:
        - name: DB_PASSWORD_FILE
          value: /var/run/secrets/infra-challenge/db/password
        envFrom:
        - configMapRef:
            name: challenge-config
        image: infra-challenge:0.1.0
        imagePullPolicy: Always
        name: challenge
        ports:
        - containerPort: 8000
          name: http
          protocol: TCP
        readinessProbe:
          failureThreshold: 2
          httpGet:
            path: /readyz
            port: http
          periodSeconds: 5
          timeoutSeconds: 2
        resources:
          limits:
            cpu: 500m
            memory: 256Mi
          requests:
            cpu: 100m
            memory: 64Mi
        volumeMounts:
        - mountPath: /var/run/secrets/infra-challenge/db
          name: db-password
          readOnly: true
        - mountPath: /tmp
          name: tmp
      enableServiceLinks: false
      initContainers:
      - args:
        - migrate
        - --seed
        env:
        - name: DB_PASSWORD_FILE
          value: /var/run/secrets/infra-challenge/db/password
        envFrom:
        - configMapRef:
            name: challenge-config
        image: infra-challenge:0.1.0
        imagePullPolicy: Always
        name: migrate
        resources:
          limits:
            cpu: 500m
            memory: 128Mi
          requests:
            cpu: 50m
            memory: 32Mi
        volumeMounts:
        - mountPath: /var/run/secrets/infra-challenge/db
          name: db-password
          readOnly: true
      serviceAccountName: challenge
      terminationGracePeriodSeconds: 35
      volumes:
      - name: db-password
        secret:
          defaultMode: 288
          items:
          - key: password
            path: password
          secretName: challenge-db
      - emptyDir:
          medium: Memory
          sizeLimit: 16Mi
        name: tmp
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  labels:
    app.kubernetes.io/component: database
    app.kubernetes.io/instance: infra-challenge
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/name: mysql
    app.kubernetes.io/part-of: infra-challenge
  name: mysql
  namespace: infra-challenge-qa
spec:
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Retain
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/instance: infra-challenge
      app.kubernetes.io/name: mysql
  serviceName: mysql-headless
  template:
    metadata:
      labels:
        app.kubernetes.io/component: database
        app.kubernetes.io/instance: infra-challenge
        app.kubernetes.io/name: mysql
        app.kubernetes.io/part-of: infra-challenge
    spec:
      automountServiceAccountToken: false
      containers:
      - args:
        - mysqld
        - --datadir=/var/lib/mysql/data
        env:
        - name: MYSQL_ROOT_PASSWORD_FILE
          value: /run/secrets/mysql/root-password
        - name: MYSQL_PASSWORD_FILE
          value: /run/secrets/mysql/password
        - name: MYSQL_DATABASE
          valueFrom:
            configMapKeyRef:
              key: DB_DATABASE
              name: challenge-config
        - name: MYSQL_USER
          valueFrom:
            configMapKeyRef:
              key: DB_USERNAME
              name: challenge-config
        image: mysql:8.4
        imagePullPolicy: Always
        name: mysql
        ports:
        - containerPort: 3306
          name: mysql
          protocol: TCP
        resources:
          limits:
            cpu: "1"
            memory: 1Gi
          requests:
            cpu: 250m
            memory: 512Mi
        volumeMounts:
        - mountPath: /var/lib/mysql
          name: data
        - mountPath: /run/secrets/mysql
          name: secrets
          readOnly: true
      enableServiceLinks: false
      serviceAccountName: mysql
      terminationGracePeriodSeconds: 60
      volumes:
      - name: secrets
        secret:
          defaultMode: 288
          items:
          - key: root-password
            path: root-password
          - key: password
            path: password
          secretName: mysql
  updateStrategy:
    type: RollingUpdate
  volumeClaimTemplates:
  - metadata:
      labels:
        app.kubernetes.io/component: database
        app.kubernetes.io/instance: infra-challenge
        app.kubernetes.io/name: mysql
        app.kubernetes.io/part-of: infra-challenge
      name: data
    spec:
      accessModes:
      - ReadWriteOnce
      resources:
        requests:
          storage: 5Gi
"#;

// ---------------------------------------------------------------------------------------------
// The fake API server.

/// What the cluster's controllers do: called with the objects after the target applied a
/// Deployment or StatefulSet (see [`FakeApiServer::set_lag`] for when).
type Controllers = Box<dyn FnMut(&mut Store) + Send>;

/// One request as the fake received it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    /// The query's pairs, decoded, in order.
    query: Vec<(String, String)>,
    content_type: Option<String>,
    /// The body: JSON, else its text, `Null` when empty.
    body: Value,
    /// Not answered: the fake had stopped answering (a refused connection).
    refused: bool,
}

impl Recorded {
    /// A request of `method` to `path` that changes something (a dry run is not one).
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path && !self.is_dry_run()
    }

    /// A server-side dry run (`dryRun=All`): answered as the write would be, nothing stored.
    fn is_dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    /// A request that changes what the server stores: a write that is not a dry run. Access
    /// reviews are created but never stored.
    fn writes(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            && !self.is_dry_run()
            && !self.path.ends_with("/selfsubjectaccessreviews")
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The objects, by API path (`/apis/apps/v1/namespaces/NS/deployments/NAME`).
#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    /// Counts writes: resource versions, uids, names.
    counter: u64,
}

impl Store {
    fn get(&self, path: &str) -> Option<&Value> {
        self.objects.get(path)
    }

    /// Stores `object` at `path`, keeping the uid and creation time of the object it replaces
    /// and setting a new resource version, as the API server does.
    fn put(&mut self, path: &str, mut object: Value) -> Value {
        self.counter += 1;
        let old = self.objects.get(path).cloned().unwrap_or(Value::Null);
        let now = now();
        let metadata = &mut object["metadata"];
        for (field, default) in [
            (
                "uid",
                json!(format!("00000000-0000-4000-8000-{:012}", self.counter)),
            ),
            ("creationTimestamp", json!(now)),
        ] {
            if metadata.get(field).is_none() {
                metadata[field] = match old["metadata"].get(field) {
                    Some(value) => value.clone(),
                    None => default,
                };
            }
        }
        metadata["resourceVersion"] = json!(self.counter.to_string());
        self.objects.insert(path.to_string(), object.clone());
        object
    }

    /// The objects directly in `collection` (`/api/v1/namespaces/NS/pods`), with their paths.
    fn list(&self, collection: &str) -> Vec<(String, Value)> {
        let prefix = format!("{collection}/");
        self.objects
            .iter()
            .filter(|(path, _)| {
                path.strip_prefix(&prefix)
                    .is_some_and(|name| !name.contains('/'))
            })
            .map(|(path, object)| (path.clone(), object.clone()))
            .collect()
    }

    /// Deletes the object at `path` and, as the garbage collector does, what it owns.
    fn remove(&mut self, path: &str) -> Option<Value> {
        let object = self.objects.remove(path)?;
        let uid = object["metadata"]["uid"].clone();
        let owned: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, other)| {
                other["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in owned {
            self.remove(&path);
        }
        Some(object)
    }
}

struct State {
    store: Store,
    requests: Vec<Recorded>,
    controllers: Controllers,
    /// A Deployment or StatefulSet was applied and the controllers have not acted on it yet.
    pending: bool,
    /// How many reads of the Deployment see the stale status after an apply.
    lag: u32,
    reads_left: u32,
    /// Paths whose server-side apply conflicts (unless forced), with the API's message.
    conflicts: BTreeMap<String, String>,
    /// Paths whose apply (dry run or not) the API refuses: code, reason, message.
    refusals: BTreeMap<String, (u16, String, String)>,
    /// Runs after each answered request; `true` makes the fake stop answering from then on.
    hook: Option<Hook>,
    /// Every request from now on gets an error instead of an answer.
    refusing: bool,
    /// Not answering means never answering (a blackholed server), not an error at once.
    hang: bool,
    /// What access reviews deny (`"update leases"`); everything else is allowed.
    denied: BTreeSet<String>,
    /// What the app's `/version` says, when not its image's tag.
    reported_version: Option<String>,
}

/// See [`FakeApiServer::after_request`].
type Hook = Box<dyn FnMut(&Recorded, &mut Store) -> bool + Send>;

/// The API server's side of a `tower-test` mock service; the client side is in the [`Cluster`]
/// [`FakeApiServer::start`] returns.
struct FakeApiServer {
    state: Arc<Mutex<State>>,
    cluster: Cluster,
}

impl FakeApiServer {
    /// Starts a fake with the [`healthy`] controllers on a thread of its own.
    fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            store: Store::default(),
            requests: Vec::new(),
            controllers: healthy(),
            pending: false,
            lag: 0,
            reads_left: 0,
            conflicts: BTreeMap::new(),
            refusals: BTreeMap::new(),
            hook: None,
            refusing: false,
            hang: false,
            denied: BTreeSet::new(),
            reported_version: None,
        }));
        let shared = Arc::clone(&state);
        let (client_tx, client_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake API server");
            runtime.block_on(async move {
                let (service, mut handle) =
                    tower_test::mock::pair::<Request<Body>, Response<Body>>();
                // The client's buffer task runs on this runtime, beside the server.
                client_tx
                    .send(kube::Client::new(service, "default"))
                    .expect("the test waits for the client");
                // The requests a hanging fake never answers: kept, so their callers wait.
                let mut unanswered = Vec::new();
                // Ends when the last client is dropped.
                while let Some((request, respond)) = handle.next_request().await {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect_bytes()
                        .await
                        .map(|bytes| bytes.to_vec())
                        .unwrap_or_default();
                    let mut guard = lock(&shared);
                    let state = &mut *guard;
                    if state.refusing {
                        state.refuse(&parts);
                        let hang = state.hang;
                        drop(guard);
                        if hang {
                            unanswered.push(respond);
                            continue;
                        }
                        respond.send_error(std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "connection refused (the fake API server stopped answering)",
                        ));
                        continue;
                    }
                    let response = state.serve(&parts, &body);
                    if let Some(hook) = state.hook.as_mut()
                        && let Some(last) = state.requests.last()
                        && hook(last, &mut state.store)
                    {
                        state.refusing = true;
                    }
                    drop(guard);
                    respond.send_response(response);
                }
            });
        });
        let client = client_rx.recv().expect("the fake API server starts");
        FakeApiServer {
            state,
            cluster: Cluster {
                client,
                context: "fake".into(),
                server: "https://fake-api-server.invalid".into(),
            },
        }
    }

    /// A target talking to this fake with `overlay` as the rendered qa overlay: a run of the
    /// deployer.
    fn target(&self, overlay: Vec<DynamicObject>, force_conflicts: bool) -> KubernetesTarget {
        KubernetesTarget::with_cluster(
            Path::new("/nonexistent/project"),
            self.cluster.clone(),
            "qa",
            overlay,
            force_conflicts,
        )
    }

    fn set_controllers(&self, controllers: Controllers) {
        lock(&self.state).controllers = controllers;
    }

    /// After each apply of a workload, the target reads the Deployment's stale status `reads`
    /// times before the controllers act.
    fn set_lag(&self, reads: u32) {
        lock(&self.state).lag = reads;
    }

    fn conflict_on(&self, path: &str, message: &str) {
        lock(&self.state)
            .conflicts
            .insert(path.to_string(), message.to_string());
    }

    /// Makes the API refuse every apply of `path` (a dry run too) with `code`, `reason` and
    /// `message`: a validation error, an admission webhook's or a quota's denial.
    fn refuse_apply(&self, path: &str, code: u16, reason: &str, message: &str) {
        lock(&self.state).refusals.insert(
            path.to_string(),
            (code, reason.to_string(), message.to_string()),
        );
    }

    /// Runs `hook` after each answered request with the objects, as another client acting right
    /// then would (the fake's lock is held: it must not call the fake); once it returns `true` the
    /// fake stops answering.
    fn after_request(&self, hook: impl FnMut(&Recorded, &mut Store) -> bool + Send + 'static) {
        lock(&self.state).hook = Some(Box::new(hook));
    }

    /// Stops answering at once (every request gets an error, as a refused connection gives).
    fn stop_answering(&self) {
        lock(&self.state).refusing = true;
    }

    /// Once it stops answering, the fake never answers (as a blackholed server) instead of
    /// failing at once (as a refused connection).
    fn hang_when_not_answering(&self) {
        lock(&self.state).hang = true;
    }

    /// Makes access reviews deny `verb_resource` (`"update leases"`).
    fn deny(&self, verb_resource: &str) {
        lock(&self.state).denied.insert(verb_resource.to_string());
    }

    /// Makes the app's `/version` say `version`, whatever its image.
    fn report_version(&self, version: &str) {
        lock(&self.state).reported_version = Some(version.to_string());
    }

    fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The number of requests so far, for [`FakeApiServer::requests_since`].
    fn mark(&self) -> usize {
        lock(&self.state).requests.len()
    }

    fn requests_since(&self, mark: usize) -> Vec<Recorded> {
        lock(&self.state).requests[mark..].to_vec()
    }

    fn object(&self, path: &str) -> Option<Value> {
        lock(&self.state).store.get(path).cloned()
    }

    fn put(&self, path: &str, object: Value) {
        lock(&self.state).store.put(path, object);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A failed assertion elsewhere must not take the server down with it.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a request goes: a collection, an object, or an object's subresource.
enum Route {
    Collection {
        collection: String,
        namespace: Option<String>,
    },
    Object {
        collection: String,
        namespace: Option<String>,
        name: String,
    },
    Subresource {
        collection: String,
        name: String,
        rest: Vec<String>,
    },
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let base = match segments.first() {
            Some(&"api") => 2,
            Some(&"apis") => 3,
            _ => return None,
        };
        let rest = segments.get(base..)?;
        let namespaced = rest.first() == Some(&"namespaces") && rest.len() >= 3;
        let scope = if namespaced { 2 } else { 0 };
        let resource = rest.get(scope..)?;
        if resource.is_empty() {
            return None;
        }
        let collection = format!("/{}", segments[..base + scope + 1].join("/"));
        let namespace = namespaced.then(|| rest[1].to_string());
        Some(match resource.len() {
            1 => Route::Collection {
                collection,
                namespace,
            },
            2 => Route::Object {
                collection,
                namespace,
                name: resource[1].to_string(),
            },
            _ => Route::Subresource {
                collection,
                name: resource[1].to_string(),
                rest: resource[2..].iter().map(|s| s.to_string()).collect(),
            },
        })
    }
}

impl State {
    /// Records a request the fake does not answer.
    fn refuse(&mut self, parts: &::http::request::Parts) {
        self.requests.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parse_query(parts.uri.query().unwrap_or("")),
            content_type: None,
            body: Value::Null,
            refused: true,
        });
    }

    fn serve(&mut self, parts: &::http::request::Parts, body: &[u8]) -> Response<Body> {
        let path = parts.uri.path().to_string();
        let query = parse_query(parts.uri.query().unwrap_or(""));
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        self.requests.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            body: body.clone(),
            refused: false,
        });
        if self.pending && self.reads_left == 0 {
            self.pending = false;
            (self.controllers)(&mut self.store);
        }
        let response = self.route(&parts.method, &path, &query, body);
        if parts.method == Method::GET
            && path == apps("deployments/challenge")
            && self.pending
            && self.reads_left > 0
        {
            self.reads_left -= 1;
        }
        response
    }

    fn route(
        &mut self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: Value,
    ) -> Response<Body> {
        if path == "/version" && *method == Method::GET {
            return respond(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
            );
        }
        let Some(route) = Route::parse(path) else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let selector = query
            .iter()
            .find(|(k, _)| k == "labelSelector")
            .map_or("", |(_, v)| v.as_str());
        match (method, route) {
            (&Method::GET, Route::Collection { collection, .. }) => {
                self.list(&collection, selector)
            }
            (
                &Method::GET,
                Route::Object {
                    collection, name, ..
                },
            ) => match self.store.get(&format!("{collection}/{name}")) {
                Some(object) => respond(200, object),
                None => not_found(&collection, &name),
            },
            (
                &Method::GET,
                Route::Subresource {
                    collection,
                    name,
                    rest,
                },
            ) => match (plural(&collection), rest.first().map(String::as_str)) {
                ("services", Some("proxy")) => self.proxy(&collection, &name, &rest[1..]),
                ("pods", Some("log")) if rest.len() == 1 => self.log(&collection, &name),
                _ => status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            },
            (
                &Method::PATCH,
                Route::Object {
                    collection,
                    namespace,
                    name,
                },
            ) => self.apply(&collection, namespace.as_deref(), &name, query, body, path),
            (
                &Method::POST,
                Route::Collection {
                    collection,
                    namespace,
                },
            ) => self.create(&collection, namespace.as_deref(), body),
            (
                &Method::PUT,
                Route::Object {
                    collection,
                    namespace,
                    name,
                },
            ) => self.replace(&collection, namespace.as_deref(), &name, body),
            (
                &Method::DELETE,
                Route::Object {
                    collection, name, ..
                },
            ) if self.precondition_fails(&format!("{collection}/{name}"), &body) => {
                conflict(&collection, &name)
            }
            (
                &Method::DELETE,
                Route::Object {
                    collection, name, ..
                },
            ) => match self.store.remove(&format!("{collection}/{name}")) {
                Some(_) => respond(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": plural(&collection)}}),
                ),
                None => not_found(&collection, &name),
            },
            (&Method::DELETE, Route::Collection { collection, .. }) => {
                let Some(matching) = self.selected(&collection, selector) else {
                    return unsupported_selector(selector);
                };
                let mut items = Vec::new();
                for (path, object) in matching {
                    self.store.remove(&path);
                    items.push(object);
                }
                respond(
                    200,
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                )
            }
            _ => status(
                405,
                "MethodNotAllowed",
                "the fake API server does not serve this request",
            ),
        }
    }

    /// The objects of `collection` that `selector` selects; `None` for a selector the fake does
    /// not understand (set-based ones).
    fn selected(&self, collection: &str, selector: &str) -> Option<Vec<(String, Value)>> {
        let requirements = parse_selector(selector)?;
        Some(
            self.store
                .list(collection)
                .into_iter()
                .filter(|(_, object)| selects(&requirements, &object["metadata"]["labels"]))
                .collect(),
        )
    }

    fn list(&self, collection: &str, selector: &str) -> Response<Body> {
        let Some(matching) = self.selected(collection, selector) else {
            return unsupported_selector(selector);
        };
        let items: Vec<Value> = matching.into_iter().map(|(_, object)| object).collect();
        respond(
            200,
            &json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": self.store.counter.to_string()},
                "items": items,
            }),
        )
    }

    /// Whether the namespace of a namespaced request exists (the API refuses writes in one
    /// that does not).
    fn namespace_missing(&self, namespace: Option<&str>) -> Option<Response<Body>> {
        let namespace = namespace?;
        if self
            .store
            .get(&format!("/api/v1/namespaces/{namespace}"))
            .is_some()
        {
            return None;
        }
        Some(not_found("/api/v1/namespaces", namespace))
    }

    /// Server-side apply: the body becomes the object (the deployer is the only manager of
    /// what it applies); the server's fields (uid, generation, status, the controllers'
    /// annotations) stay. A Deployment's or StatefulSet's generation grows when its spec changes.
    fn apply(
        &mut self,
        collection: &str,
        namespace: Option<&str>,
        name: &str,
        query: &[(String, String)],
        mut body: Value,
        path: &str,
    ) -> Response<Body> {
        let forced = query.iter().any(|(k, v)| k == "force" && v == "true");
        if !query.iter().any(|(k, _)| k == "fieldManager") {
            return status(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            );
        }
        if let Some(missing) = self.namespace_missing(namespace) {
            return missing;
        }
        if let Err(problem) = check_identity(collection, namespace, Some(name), &body) {
            return status(400, "BadRequest", &problem);
        }
        if let Some((code, reason, message)) = self.refusals.get(path) {
            return status(*code, reason, message);
        }
        if let Some(message) = self.conflicts.get(path).filter(|_| !forced) {
            return respond(
                409,
                &json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "Conflict",
                    "details": {
                        "name": name,
                        "group": "apps",
                        "kind": plural(collection),
                        "causes": [{
                            "reason": "FieldManagerConflict",
                            "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                            "field": ".spec.replicas",
                        }],
                    },
                    "code": 409,
                }),
            );
        }
        let workload = matches!(plural(collection), "deployments" | "statefulsets");
        let old = self.store.get(path).cloned();
        match &old {
            Some(old) => {
                if let Some(status) = old.get("status") {
                    body["status"] = status.clone();
                }
                for field in ["uid", "creationTimestamp", "generation"] {
                    if let Some(value) = old["metadata"].get(field) {
                        body["metadata"][field] = value.clone();
                    }
                }
                if let Some(annotations) = old["metadata"]["annotations"].as_object() {
                    for (key, value) in annotations {
                        if key.starts_with("deployment.kubernetes.io/")
                            && body["metadata"]["annotations"].get(key).is_none()
                        {
                            body["metadata"]["annotations"][key] = value.clone();
                        }
                    }
                }
                if workload && old.get("spec") != body.get("spec") {
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    body["metadata"]["generation"] = json!(generation + 1);
                }
            }
            None if workload => body["metadata"]["generation"] = json!(1),
            None => {}
        }
        if query.iter().any(|(k, v)| k == "dryRun" && v == "All") {
            // What would be stored, as the API server answers a dry run: nothing is kept.
            let mut scratch = Store {
                objects: BTreeMap::new(),
                counter: self.store.counter,
            };
            if let Some(old) = &old {
                scratch.objects.insert(path.to_string(), old.clone());
            }
            let stored = scratch.put(path, body);
            return respond(if old.is_some() { 200 } else { 201 }, &stored);
        }
        let stored = self.store.put(path, body);
        if workload {
            self.pending = true;
            self.reads_left = self.lag;
        }
        respond(if old.is_some() { 200 } else { 201 }, &stored)
    }

    fn create(&mut self, collection: &str, namespace: Option<&str>, body: Value) -> Response<Body> {
        if plural(collection) == "selfsubjectaccessreviews" {
            return self.review(body);
        }
        if let Some(missing) = self.namespace_missing(namespace) {
            return missing;
        }
        if let Err(problem) = check_identity(collection, namespace, None, &body) {
            return status(400, "BadRequest", &problem);
        }
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let path = format!("{collection}/{name}");
        if self.store.get(&path).is_some() {
            return status(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", plural(collection)),
            );
        }
        let stored = self.store.put(&path, body);
        respond(201, &stored)
    }

    /// A SelfSubjectAccessReview answered: allowed unless [`FakeApiServer::deny`] said otherwise.
    fn review(&self, mut body: Value) -> Response<Body> {
        let attributes = &body["spec"]["resourceAttributes"];
        let asked = format!(
            "{} {}",
            attributes["verb"].as_str().unwrap_or_default(),
            attributes["resource"].as_str().unwrap_or_default()
        );
        body["status"] = json!({"allowed": !self.denied.contains(&asked)});
        respond(201, &body)
    }

    /// Replace (PUT): the object must exist, and a resourceVersion in the body must be the
    /// stored one (optimistic concurrency), else 409 Conflict.
    fn replace(
        &mut self,
        collection: &str,
        namespace: Option<&str>,
        name: &str,
        body: Value,
    ) -> Response<Body> {
        if let Err(problem) = check_identity(collection, namespace, Some(name), &body) {
            return status(400, "BadRequest", &problem);
        }
        let path = format!("{collection}/{name}");
        let Some(old) = self.store.get(&path) else {
            return not_found(collection, name);
        };
        if let Some(version) = body["metadata"]["resourceVersion"].as_str()
            && Some(version) != old["metadata"]["resourceVersion"].as_str()
        {
            return conflict(collection, name);
        }
        let stored = self.store.put(&path, body);
        respond(200, &stored)
    }

    /// Whether a DELETE's resourceVersion precondition names another version than the stored one.
    fn precondition_fails(&self, path: &str, body: &Value) -> bool {
        let wanted = body["preconditions"]["resourceVersion"].as_str();
        let stored = self
            .store
            .get(path)
            .and_then(|o| o["metadata"]["resourceVersion"].as_str());
        wanted.is_some() && stored.is_some() && wanted != stored
    }

    /// The API server's proxy to the app's Service: the app's answers when a Ready pod backs
    /// the Service, else the proxy's 503.
    fn proxy(&self, services: &str, name_and_port: &str, rest: &[String]) -> Response<Body> {
        let name = name_and_port.split(':').next().unwrap_or_default();
        let Some(service) = self.store.get(&format!("{services}/{name}")) else {
            return not_found(services, name);
        };
        let pods = services.replace("/services", "/pods");
        let selector = &service["spec"]["selector"];
        let endpoints = self.store.list(&pods).into_iter().any(|(_, pod)| {
            selector.as_object().is_some_and(|wanted| {
                wanted
                    .iter()
                    .all(|(k, v)| pod["metadata"]["labels"].get(k) == Some(v))
            }) && ready(&pod)
        });
        if !endpoints {
            return status(
                503,
                "ServiceUnavailable",
                &format!("no endpoints available for service \"{name_and_port}\""),
            );
        }
        let deployments = services
            .replace("/api/v1/", "/apis/apps/v1/")
            .replace("/services", "/deployments");
        let image = self
            .store
            .get(&format!("{deployments}/challenge"))
            .map(|deployment| container_image(&deployment["spec"]["template"]["spec"], "challenge"))
            .unwrap_or_default();
        match format!("/{}", rest.join("/")).as_str() {
            "/readyz" => respond(200, &json!({"status": "ready"})),
            "/api/tasks" => respond(200, &json!({"items": []})),
            "/version" => respond(
                200,
                &json!({
                    "version": self.reported_version.as_deref()
                        .unwrap_or_else(|| image.rsplit_once(':').map_or("", |(_, tag)| tag)),
                    "schema_version": 1,
                    "database_schema_version": 1,
                }),
            ),
            _ => respond(404, &json!({"error": "not found"})),
        }
    }

    fn log(&self, pods: &str, name: &str) -> Response<Body> {
        if self.store.get(&format!("{pods}/{name}")).is_none() {
            return not_found(pods, name);
        }
        Response::builder()
            .status(200)
            .header(CONTENT_TYPE, "text/plain")
            .body(Body::from(
                b"{\"level\":\"INFO\",\"message\":\"listening on 0.0.0.0:8000\"}\n".to_vec(),
            ))
            .expect("a plain response")
    }
}

/// The checks the API server makes of an object sent to `collection`: its kind is the
/// collection's, its name the path's, its namespace the path's.
fn check_identity(
    collection: &str,
    namespace: Option<&str>,
    name: Option<&str>,
    body: &Value,
) -> std::result::Result<(), String> {
    let kind = body["kind"].as_str().unwrap_or_default();
    let expected = plural(collection);
    if kind_plural(kind) != expected {
        return Err(format!(
            "the body of the request is a {kind}, not one of {expected}"
        ));
    }
    let body_name = body["metadata"]["name"].as_str().unwrap_or_default();
    if body_name.is_empty() || name.is_some_and(|name| name != body_name) {
        return Err(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            name.unwrap_or("")
        ));
    }
    if let (Some(namespace), Some(body_namespace)) =
        (namespace, body["metadata"]["namespace"].as_str())
        && namespace != body_namespace
    {
        return Err(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    Ok(())
}

/// The resource of a collection path (`/api/v1/namespaces/NS/pods`: `pods`).
fn plural(collection: &str) -> &str {
    collection.rsplit('/').next().unwrap_or_default()
}

/// The resource name of a kind, as the API names it.
fn kind_plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
        .expect("a JSON response")
}

/// A `Status` answer, as the API server gives for errors.
fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
    )
}

/// The API server's answer to a write based on a stale resourceVersion.
fn conflict(collection: &str, name: &str) -> Response<Body> {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply \
             your changes to the latest version and try again",
            plural(collection)
        ),
    )
}

fn not_found(collection: &str, name: &str) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", plural(collection)),
    )
}

fn unsupported_selector(selector: &str) -> Response<Body> {
    status(
        400,
        "BadRequest",
        &format!("the fake API server understands equality selectors only, not {selector:?}"),
    )
}

/// `a=b&c=d%2Fe` as decoded pairs.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One requirement of an equality-based label selector.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// An equality-based selector's requirements; `None` for set-based ones.
fn parse_selector(selector: &str) -> Option<Vec<Requirement>> {
    let mut requirements = Vec::new();
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.contains('(') || part.contains(' ') {
            return None;
        }
        requirements.push(if let Some((key, value)) = part.split_once("!=") {
            Requirement::NotEquals(key.into(), value.into())
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(key.into(), value.into())
        } else if let Some(key) = part.strip_prefix('!') {
            Requirement::Absent(key.into())
        } else {
            Requirement::Exists(part.into())
        });
    }
    Some(requirements)
}

fn selects(requirements: &[Requirement], labels: &Value) -> bool {
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    requirements.iter().all(|requirement| match requirement {
        Requirement::Equals(key, value) => label(key) == Some(value),
        Requirement::NotEquals(key, value) => label(key) != Some(value),
        Requirement::Exists(key) => label(key).is_some(),
        Requirement::Absent(key) => label(key).is_none(),
    })
}

// ---------------------------------------------------------------------------------------------
// The controllers.

/// Every rollout completes: the Deployment's new template gets a ReplicaSet with Ready pods (the
/// older ones are scaled to zero), the StatefulSet its Ready pod and volume claim, and both
/// statuses say so for the current generation.
fn healthy() -> Controllers {
    Box::new(|store: &mut Store| reconcile(store, &|_: &str| false))
}

/// As [`healthy`], except that pods of `image` cannot pull it: they wait in `ImagePullBackOff`,
/// and the older ReplicaSet keeps serving (`maxUnavailable: 0`).
fn stuck_on(image: &str) -> Controllers {
    let image = image.to_string();
    Box::new(move |store: &mut Store| reconcile(store, &|candidate: &str| candidate == image))
}

/// Reconciles the workloads of every namespace (several environments may share the cluster).
fn reconcile(store: &mut Store, cannot_pull: &dyn Fn(&str) -> bool) {
    let namespaces: Vec<String> = store
        .list("/api/v1/namespaces")
        .into_iter()
        .filter_map(|(_, ns)| ns["metadata"]["name"].as_str().map(String::from))
        .collect();
    for ns in &namespaces {
        if store.get(&apps_in(ns, "statefulsets/mysql")).is_some() {
            reconcile_statefulset(store, ns);
        }
        if store.get(&apps_in(ns, "deployments/challenge")).is_some() {
            reconcile_deployment(store, ns, cannot_pull);
        }
    }
}

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

fn reconcile_deployment(store: &mut Store, ns: &str, cannot_pull: &dyn Fn(&str) -> bool) {
    let path = apps_in(ns, "deployments/challenge");
    let mut deployment = store.get(&path).cloned().unwrap_or_default();
    let template = deployment["spec"]["template"].clone();
    let hash = template_hash(&template);
    let rs_name = format!("challenge-{hash}");
    let rs_path = apps_in(ns, &format!("replicasets/{rs_name}"));
    let replica_sets = store.list(&apps_in(ns, "replicasets"));
    let newest = replica_sets
        .iter()
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    // A template seen before gets its ReplicaSet back, with the next revision.
    let revision = match store.get(&rs_path).map(revision) {
        Some(current) if current == newest => current,
        _ => newest + 1,
    };
    let desired = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let stuck = cannot_pull(&container_image(&template["spec"], "challenge"));
    let mut labels = template["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"] = labels.clone();
    let ready_new = if stuck { 0 } else { desired };
    let replica_set = store.put(
        &rs_path,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": labels,
                "annotations": {(REVISION_ANNOTATION): revision.to_string()},
                "ownerReferences": [owner("apps/v1", "Deployment", &deployment)],
            },
            "spec": {"replicas": desired, "selector": selector, "template": rs_template},
            "status": {
                "replicas": desired,
                "fullyLabeledReplicas": desired,
                "readyReplicas": ready_new,
                "availableReplicas": ready_new,
                "observedGeneration": 1,
            },
        }),
    );
    let pods = store.list(&core_in(ns, "pods"));
    let of_hash = |pod: &Value| pod["metadata"]["labels"]["pod-template-hash"] == json!(hash);
    if !pods.iter().any(|(_, pod)| of_hash(pod)) {
        for _ in 0..desired {
            store.counter += 1;
            let name = format!("{rs_name}-{:05x}", store.counter);
            let pod = pod(
                ns,
                &name,
                labels.clone(),
                owner("apps/v1", "ReplicaSet", &replica_set),
                &template["spec"],
                !stuck,
            );
            store.put(&core_in(ns, &format!("pods/{name}")), pod);
            if stuck {
                let image = container_image(&template["spec"], "challenge");
                pull_failure_events(store, ns, &name, &image);
            }
        }
    }
    let mut old_ready = 0;
    for (path, mut other) in replica_sets {
        if path == rs_path {
            continue;
        }
        let other_hash = other["metadata"]["labels"]["pod-template-hash"].clone();
        let other_pods: Vec<(String, Value)> = store
            .list(&core_in(ns, "pods"))
            .into_iter()
            .filter(|(_, pod)| pod["metadata"]["labels"]["pod-template-hash"] == other_hash)
            .collect();
        if stuck {
            old_ready += other_pods.iter().filter(|(_, pod)| ready(pod)).count() as i64;
            continue;
        }
        for (pod_path, _) in other_pods {
            store.remove(&pod_path);
        }
        other["spec"]["replicas"] = json!(0);
        other["status"] = json!({"replicas": 0, "observedGeneration": 1});
        store.put(&path, other);
    }
    let generation = deployment["metadata"]["generation"].clone();
    deployment["metadata"]["annotations"][REVISION_ANNOTATION] = json!(revision.to_string());
    deployment["status"] = if stuck {
        json!({
            "observedGeneration": generation,
            "replicas": desired + old_ready,
            "updatedReplicas": desired,
            "readyReplicas": old_ready,
            "availableReplicas": old_ready,
            "unavailableReplicas": desired,
            "conditions": [
                condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                condition("Progressing", "True", "ReplicaSetUpdated", &format!("ReplicaSet \"{rs_name}\" is progressing.")),
            ],
        })
    } else {
        json!({
            "observedGeneration": generation,
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": desired,
            "availableReplicas": desired,
            "conditions": [
                condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                condition("Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs_name}\" has successfully progressed.")),
            ],
        })
    };
    store.put(&path, deployment);
}

fn reconcile_statefulset(store: &mut Store, ns: &str) {
    let path = apps_in(ns, "statefulsets/mysql");
    let mut statefulset = store.get(&path).cloned().unwrap_or_default();
    let template = statefulset["spec"]["template"].clone();
    let revision = format!("mysql-{}", template_hash(&template));
    let desired = statefulset["spec"]["replicas"].as_i64().unwrap_or(1);
    for ordinal in 0..desired {
        let name = format!("mysql-{ordinal}");
        let pod_path = core_in(ns, &format!("pods/{name}"));
        let current = store.get(&pod_path).is_some_and(|pod| {
            pod["metadata"]["labels"]["controller-revision-hash"] == json!(revision)
        });
        if !current {
            let mut labels = template["metadata"]["labels"].clone();
            labels["controller-revision-hash"] = json!(revision);
            labels["statefulset.kubernetes.io/pod-name"] = json!(name);
            let pod = pod(
                ns,
                &name,
                labels,
                owner("apps/v1", "StatefulSet", &statefulset),
                &template["spec"],
                true,
            );
            store.remove(&pod_path);
            store.put(&pod_path, pod);
        }
        for claim in statefulset["spec"]["volumeClaimTemplates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let claim_name = format!(
                "{}-{name}",
                claim["metadata"]["name"].as_str().unwrap_or("data")
            );
            let claim_path = core_in(ns, &format!("persistentvolumeclaims/{claim_name}"));
            if store.get(&claim_path).is_none() {
                let mut labels = claim["metadata"]["labels"].clone();
                for (key, value) in statefulset["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                {
                    labels[key] = value;
                }
                store.put(
                    &claim_path,
                    json!({
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim_name, "namespace": ns, "labels": labels},
                        "spec": claim["spec"],
                        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"}},
                    }),
                );
            }
        }
    }
    let generation = statefulset["metadata"]["generation"].clone();
    statefulset["status"] = json!({
        "observedGeneration": generation,
        "replicas": desired,
        "readyReplicas": desired,
        "currentReplicas": desired,
        "updatedReplicas": desired,
        "availableReplicas": desired,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    store.put(&path, statefulset);
}

/// A pod of a workload's template: Ready (init containers completed, containers running), or
/// unable to pull its image, as the kubelet reports it (the `migrate` init container waits in
/// `ImagePullBackOff`, the app's container behind it in `PodInitializing`).
fn pod(ns: &str, name: &str, labels: Value, owner: Value, spec: &Value, healthy: bool) -> Value {
    let now = now();
    let containers =
        |list: &str| -> Vec<Value> { spec[list].as_array().cloned().unwrap_or_default() };
    let init_statuses: Vec<Value> = containers("initContainers")
        .iter()
        .enumerate()
        .map(|(index, container)| {
            let image = container["image"].clone();
            if healthy {
                json!({
                    "name": container["name"], "image": image,
                    "imageID": format!("{}@sha256:{:064x}", image.as_str().unwrap_or_default(), 7),
                    "containerID": "containerd://init", "ready": true, "restartCount": 0, "started": false,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": "containerd://init"}},
                })
            } else if index == 0 {
                let image = image.as_str().unwrap_or_default();
                json!({
                    "name": container["name"], "image": image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {
                        "reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{image}\": ErrImagePull: failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"),
                    }},
                })
            } else {
                json!({
                    "name": container["name"], "image": image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false, "state": {"waiting": {"reason": "PodInitializing"}},
                })
            }
        })
        .collect();
    let statuses: Vec<Value> = containers("containers")
        .iter()
        .map(|container| {
            let image = container["image"].clone();
            if healthy {
                json!({
                    "name": container["name"], "image": image,
                    "imageID": format!("{}@sha256:{:064x}", image.as_str().unwrap_or_default(), 7),
                    "containerID": "containerd://app", "ready": true, "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": now}},
                })
            } else {
                json!({
                    "name": container["name"], "image": image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false, "state": {"waiting": {"reason": "PodInitializing"}},
                })
            }
        })
        .collect();
    let conditions = if healthy {
        json!([
            condition("PodReadyToStartContainers", "True", "", ""),
            condition("Initialized", "True", "", ""),
            condition("Ready", "True", "", ""),
            condition("ContainersReady", "True", "", ""),
            condition("PodScheduled", "True", "", ""),
        ])
    } else {
        let names = |list: &str| -> String {
            containers(list)
                .iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let first_init = names("initContainers")
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let app = names("containers");
        json!([
            condition("PodReadyToStartContainers", "True", "", ""),
            condition(
                "Initialized",
                "False",
                "ContainersNotInitialized",
                &format!("containers with incomplete status: [{first_init}]")
            ),
            condition(
                "Ready",
                "False",
                "ContainersNotReady",
                &format!("containers with unready status: [{app}]")
            ),
            condition(
                "ContainersReady",
                "False",
                "ContainersNotReady",
                &format!("containers with unready status: [{app}]")
            ),
            condition("PodScheduled", "True", "", ""),
        ])
    };
    let mut spec = spec.clone();
    spec["nodeName"] = json!("fake-node");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
        "spec": spec,
        "status": {
            "phase": if healthy { "Running" } else { "Pending" },
            "conditions": conditions,
            "hostIP": "172.18.0.2",
            "podIP": "10.244.0.17",
            "startTime": now,
            "qosClass": "Burstable",
            "initContainerStatuses": init_statuses,
            "containerStatuses": statuses,
        },
    })
}

/// The kubelet's Warning events for a pod that cannot pull `image`.
fn pull_failure_events(store: &mut Store, ns: &str, pod: &str, image: &str) {
    let now = now();
    for (reason, message) in [
        (
            "Failed",
            format!(
                "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
            ),
        ),
        ("BackOff", format!("Back-off pulling image \"{image}\"")),
    ] {
        store.counter += 1;
        let name = format!("{pod}.{:016x}", store.counter);
        store.put(
            &core_in(ns, &format!("events/{name}")),
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns, "fieldPath": "spec.initContainers{migrate}"},
                "reason": reason,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "kubelet", "host": "fake-node"},
            }),
        );
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    let mut condition = json!({"type": type_, "status": status, "lastTransitionTime": now()});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
        condition["message"] = json!(message);
    }
    condition
}

fn owner(api_version: &str, kind: &str, object: &Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": object["metadata"]["name"],
        "uid": object["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        && pod["metadata"].get("deletionTimestamp").is_none()
}

fn revision(object: &Value) -> u64 {
    object["metadata"]["annotations"][REVISION_ANNOTATION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A short hash of a pod template, whatever the order of its keys (a `pod-template-hash`).
fn template_hash(template: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    canonical(template).hash(&mut hasher);
    format!("{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let sorted: BTreeMap<&String, String> =
                fields.iter().map(|(k, v)| (k, canonical(v))).collect();
            let entries: Vec<String> = sorted.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", entries.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds are valid")
        .format(&Rfc3339)
        .expect("a time formats as RFC 3339")
}

// ---------------------------------------------------------------------------------------------
// Helpers of the tests.

/// The path of a core object in the namespace: `core("pods/x")`.
fn core(rest: &str) -> String {
    core_in(NS, rest)
}

/// The path of an `apps/v1` object in the namespace.
fn apps(rest: &str) -> String {
    apps_in(NS, rest)
}

fn core_in(ns: &str, rest: &str) -> String {
    format!("/api/v1/namespaces/{ns}/{rest}")
}

fn apps_in(ns: &str, rest: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/{rest}")
}

const NAMESPACE_PATH: &str = "/api/v1/namespaces/infra-challenge-qa";

/// Counts the reads of the Deployment from now on; on the `nth`, runs `then` (a hook for
/// [`FakeApiServer::after_request`]).
fn on_deployment_read(
    nth: usize,
    mut then: impl FnMut() -> bool + Send + 'static,
) -> impl FnMut(&Recorded, &mut Store) -> bool + Send + 'static {
    let mut reads = 0;
    move |request: &Recorded, _: &mut Store| {
        if request.is("GET", &apps("deployments/challenge")) {
            reads += 1;
            if reads == nth {
                return then();
            }
        }
        false
    }
}

fn overlay() -> Vec<DynamicObject> {
    manifests::parse(QA_OVERLAY).expect("the qa overlay parses")
}

fn environment() -> Environment {
    Environment {
        name: "qa".into(),
        app_repository: REPOSITORY.into(),
        db_image: "mysql:8.4".into(),
        proxy_image: "haproxy:2.8".into(),
        port: 8000,
        secrets_dir: "/nonexistent/secrets".into(),
    }
}

/// A context as `deployer --output json --state-dir TMP` makes it.
fn context() -> (Context, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("a temporary directory");
    let cli = Cli::parse_from([
        "deployer",
        "--output",
        "json",
        "--state-dir",
        state.path().to_str().expect("a UTF-8 path"),
    ]);
    (Context::new(cli.global).expect("a context"), state)
}

/// The image of the container `name` (or init container) of a pod spec.
fn container_image(spec: &Value, name: &str) -> String {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec[*list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn deploy(ctx: &Context, target: &KubernetesTarget, version: &str) -> Result<()> {
    let env = environment();
    release::release(
        ctx,
        target,
        &env,
        &env.release(version),
        Action::Deploy,
        TIMEOUT,
    )
}

/// The PATCH requests among `requests`.
fn patches(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && !r.is_dry_run())
        .collect()
}

fn paths<'a>(requests: impl IntoIterator<Item = &'a Recorded>) -> Vec<&'a str> {
    requests.into_iter().map(|r| r.path.as_str()).collect()
}

/// The image of each container named `challenge` or `migrate` in an applied Deployment body.
fn app_images(deployment: &Value) -> Vec<String> {
    let spec = &deployment["spec"]["template"]["spec"];
    vec![
        container_image(spec, "migrate"),
        container_image(spec, "challenge"),
    ]
}

fn image(version: &str) -> String {
    format!("{REPOSITORY}:{version}")
}

/// The Secret's `key`, decoded.
fn secret_value(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(BASE64.decode(encoded).expect("base64 data")).expect("UTF-8 data")
}

/// The qa overlay plus objects the next overlay drops: a ConfigMap, a Secret (without values),
/// a PersistentVolumeClaim.
fn overlay_with_leftovers() -> Vec<DynamicObject> {
    let extra = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: old-config
  namespace: infra-challenge-qa
data:
  FEATURE: "on"
---
apiVersion: v1
kind: Secret
metadata:
  name: old-secret
  namespace: infra-challenge-qa
type: Opaque
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: old-claim
  namespace: infra-challenge-qa
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 1Gi
"#;
    let mut objects = overlay();
    objects.extend(manifests::parse(extra).expect("the extra objects parse"));
    objects
}

/// The value of the parent's contains-group-kinds annotation, live.
fn live_group_kinds(fake: &FakeApiServer) -> String {
    let parent = fake
        .object(&core("configmaps/deployer-applyset"))
        .expect("the ApplySet parent exists");
    parent["metadata"]["annotations"][applyset::CONTAINS_GROUP_KINDS_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn server_side_apply_patches_each_object_at_its_path_as_a_member_of_the_applyset() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let release = env.release("1.0.0");
    let target = fake.target(overlay(), false);
    let mut step = ctx.reporter.step("applying");
    let applied = target
        .apply(&env, &release, Instant::now() + TIMEOUT, &mut step)
        .expect("the apply is accepted");
    step.ok("");

    let requests = fake.requests();
    let applies = patches(&requests);
    let parent_path = core("configmaps/deployer-applyset");
    // The namespace (cluster-scoped: no namespace in its path) first, then the parent with the
    // inventory, the members in dependency order, and the parent again.
    assert_eq!(
        paths(applies.iter().copied()),
        [
            NAMESPACE_PATH.to_string(),
            parent_path.clone(),
            core("serviceaccounts/challenge"),
            core("serviceaccounts/mysql"),
            core("configmaps/challenge-config"),
            core("services/challenge"),
            core("services/mysql"),
            apps("statefulsets/mysql"),
            apps("deployments/challenge"),
            parent_path.clone(),
        ]
    );
    let id = applyset::parent_id(NS);
    for patch in &applies {
        assert_eq!(
            patch.query,
            [("fieldManager".to_string(), "deployer".to_string())],
            "{} takes over no other manager's fields unless told to",
            patch.path
        );
        assert_eq!(
            patch.content_type.as_deref(),
            Some(APPLY_PATCH),
            "{}",
            patch.path
        );
        let labels = &patch.body["metadata"]["labels"];
        if patch.path == parent_path {
            assert_eq!(labels[applyset::ID_LABEL], json!(id));
            assert_eq!(
                labels["app.kubernetes.io/part-of"],
                json!("infra-challenge")
            );
            assert!(
                labels.get(applyset::PART_OF_LABEL).is_none(),
                "the parent is not a member of its own set"
            );
        } else {
            assert_eq!(
                labels[applyset::PART_OF_LABEL],
                json!(id),
                "{} is labelled as a member of the ApplySet",
                patch.path
            );
        }
    }
    // The release's image on both of the app's containers, the database's left alone.
    let deployment = applies
        .iter()
        .find(|p| p.path == apps("deployments/challenge"))
        .unwrap();
    assert_eq!(
        app_images(&deployment.body),
        [image("1.0.0"), image("1.0.0")]
    );
    let statefulset = applies
        .iter()
        .find(|p| p.path == apps("statefulsets/mysql"))
        .unwrap();
    assert_eq!(
        container_image(&statefulset.body["spec"]["template"]["spec"], "mysql"),
        "mysql:8.4"
    );
    // The parent: the id label, the tooling, the environment and the kinds of its members.
    let parent = &applies.last().unwrap().body;
    assert_eq!(parent["kind"], "ConfigMap");
    assert_eq!(
        parent["metadata"]["annotations"],
        json!({
            (applyset::CONTAINS_GROUP_KINDS_ANNOTATION):
                "ConfigMap,Deployment.apps,Namespace,Service,ServiceAccount,StatefulSet.apps",
            (applyset::TOOLING_ANNOTATION): "deployer/v1",
            (applyset::ENVIRONMENT_ANNOTATION): "qa",
        })
    );
    // What apply reports as applied is exactly what was sent.
    let recorded = manifests::parse(applied.manifests.as_deref().unwrap()).unwrap();
    let sent: Vec<&Value> = applies
        .iter()
        .filter(|p| p.path != parent_path)
        .map(|p| &p.body)
        .collect();
    let recorded: Vec<Value> = recorded
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(sent, recorded.iter().collect::<Vec<_>>());

    // --force-conflicts: every apply forces.
    let mark = fake.mark();
    let forcing = fake.target(overlay(), true);
    let mut step = ctx.reporter.step("applying");
    forcing
        .apply(&env, &release, Instant::now() + TIMEOUT, &mut step)
        .expect("the forced apply is accepted");
    step.ok("");
    let requests = fake.requests_since(mark);
    let forced = patches(&requests);
    assert_eq!(forced.len(), 10);
    for patch in forced {
        let mut query = patch.query.clone();
        query.sort();
        assert_eq!(
            query,
            [
                ("fieldManager".to_string(), "deployer".to_string()),
                ("force".to_string(), "true".to_string())
            ],
            "{}",
            patch.path
        );
    }
}

#[test]
fn an_apply_conflict_names_the_other_manager_and_suggests_force_conflicts() {
    let fake = FakeApiServer::start();
    fake.conflict_on(&apps("deployments/challenge"), CONFLICT);
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    let mut step = ctx.reporter.step("applying");
    let diagnosis = target
        .apply(
            &env,
            &env.release("1.0.0"),
            Instant::now() + TIMEOUT,
            &mut step,
        )
        .expect_err("the Deployment's apply conflicts");
    step.failed("");
    assert!(
        diagnosis
            .cause
            .contains("server-side apply conflict on Deployment.apps/challenge in infra-challenge"),
        "{diagnosis:?}"
    );
    assert!(
        diagnosis
            .cause
            .contains("owned by kubectl-client-side-apply"),
        "{diagnosis:?}"
    );
    assert!(diagnosis.cause.contains(".spec.replicas"), "{diagnosis:?}");
    assert!(
        diagnosis
            .fix
            .as_deref()
            .unwrap()
            .contains("--force-conflicts"),
        "{diagnosis:?}"
    );
    // It stopped at the conflict: nothing pruned, the parent not shrunk.
    let requests = fake.requests();
    let last = patches(&requests).last().copied().unwrap().clone();
    assert!(last.is("PATCH", &apps("deployments/challenge")), "{last:?}");
    assert!(!requests.iter().any(|r| r.method == "DELETE"));

    // As a whole deploy: refused by the dry run before anything is written (exit code 3), with
    // no record and no rollback.
    let mark = fake.mark();
    let error = deploy(&ctx, &fake.target(overlay(), false), "1.0.0").unwrap_err();
    assert!(
        matches!(&error, Error::Prerequisite { problem, .. } if problem.contains("kubectl-client-side-apply")
            && problem.ends_with("nothing was changed")),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 3);
    assert!(
        !fake.requests_since(mark).iter().any(Recorded::writes),
        "a refused release writes nothing"
    );
    let history = fake.target(overlay(), false).history(&env).unwrap();
    assert!(
        history.is_empty(),
        "no record of a release that never started"
    );

    // With --force-conflicts the deployer takes the fields over.
    let mark = fake.mark();
    deploy(&ctx, &fake.target(overlay(), true), "1.0.0").expect("the forced deploy succeeds");
    let requests = fake.requests_since(mark);
    let deployment = requests
        .iter()
        .find(|r| r.is("PATCH", &apps("deployments/challenge")))
        .unwrap();
    assert_eq!(deployment.param("force"), Some("true"));
}

#[test]
fn a_healthy_deploy_creates_the_secrets_once_and_records_the_release() {
    let fake = FakeApiServer::start();
    // The controllers lag: the first look at the Deployment sees no status for its generation.
    fake.set_lag(1);
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");

    let requests = fake.requests();
    let secrets = core("secrets");
    let posted: Vec<&Recorded> = requests.iter().filter(|r| r.is("POST", &secrets)).collect();
    let names: Vec<&str> = posted
        .iter()
        .map(|r| r.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["mysql", "challenge-db", "deployer.release.v1.qa.v1"]
    );
    let password = secret_value(&posted[0].body, "password");
    assert_eq!(password.len(), 32);
    assert_eq!(secret_value(&posted[1].body, "password"), password);
    assert_ne!(secret_value(&posted[0].body, "root-password"), password);
    // The Secrets exist before anything refers to them.
    let first_apply = requests
        .iter()
        .position(|r| r.is("PATCH", &apps("deployments/challenge")))
        .unwrap();
    let secrets_created = requests
        .iter()
        .position(|r| r.is("POST", &secrets) && r.body["metadata"]["name"] == "challenge-db")
        .unwrap();
    assert!(secrets_created < first_apply);
    // The wait read the Deployment until its controller had observed the new generation.
    let reads_after_apply = requests[first_apply..]
        .iter()
        .filter(|r| r.is("GET", &apps("deployments/challenge")))
        .count();
    assert!(reads_after_apply >= 2, "{reads_after_apply}");
    // The smoke test went through the Service proxy.
    let proxied: Vec<(&str, Option<&str>)> = requests
        .iter()
        .filter(|r| r.path.contains("/services/challenge:http/proxy/"))
        .map(|r| (r.path.rsplit("/proxy").next().unwrap(), r.param("limit")))
        .collect();
    assert_eq!(
        proxied,
        [
            ("/readyz", None),
            ("/api/tasks", Some("1")),
            ("/version", None)
        ]
    );

    let history = target.history(&env).unwrap();
    assert_eq!(history.len(), 1);
    let record = &history[0];
    assert_eq!(record.version, "1.0.0");
    assert_eq!(record.result, Outcome::Ok);
    assert_eq!(record.action, Action::Deploy);
    assert_eq!(record.revision, Some(1));
    assert_eq!(record.image, image("1.0.0"));
    assert_eq!(record.schema_version, Some(1));
    let manifests = manifests::parse(record.manifests.as_deref().unwrap()).unwrap();
    let deployment = manifests
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("challenge") && kind_of(o) == "Deployment")
        .unwrap();
    assert_eq!(
        app_images(&serde_json::to_value(deployment).unwrap()),
        [image("1.0.0"), image("1.0.0")]
    );
    let record_secret = fake
        .object(&core("secrets/deployer.release.v1.qa.v1"))
        .unwrap();
    assert_eq!(record_secret["type"], records::RELEASE_SECRET_TYPE);

    // A second deploy: the Secrets are there, so none is created or changed.
    let mark = fake.mark();
    deploy(&ctx, &fake.target(overlay(), false), "1.1.0").expect("1.1.0 becomes healthy");
    let requests = fake.requests_since(mark);
    let posted: Vec<&str> = requests
        .iter()
        .filter(|r| r.is("POST", &secrets))
        .map(|r| r.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(posted, ["deployer.release.v1.qa.v2"]);
    assert!(!requests.iter().any(|r| r.method != "GET"
        && (r.path == core("secrets/mysql") || r.path == core("secrets/challenge-db"))));
    for name in ["mysql", "challenge-db"] {
        let secret = fake.object(&core(&format!("secrets/{name}"))).unwrap();
        assert_eq!(secret_value(&secret, "password"), password);
    }
    let history = target.history(&env).unwrap();
    let summary: Vec<(&str, Option<u64>, Outcome)> = history
        .iter()
        .map(|r| (r.version.as_str(), r.revision, r.result))
        .collect();
    assert_eq!(
        summary,
        [
            ("1.0.0", Some(1), Outcome::Ok),
            ("1.1.0", Some(2), Outcome::Ok)
        ]
    );
    assert_eq!(target.live(&env).unwrap().version.as_deref(), Some("1.1.0"));
}

#[test]
fn a_stuck_rollout_fails_fast_and_restores_the_recorded_previous_release() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    deploy(&ctx, &fake.target(overlay(), false), "1.0.0").expect("1.0.0 becomes healthy");

    fake.set_controllers(stuck_on(&image("2.0.0")));
    // The first read after the apply sees 1.0.0's complete status, not yet observed for 2.0.0.
    fake.set_lag(1);
    let mark = fake.mark();
    let target = fake.target(overlay(), false);
    let started = Instant::now();
    let error = deploy(&ctx, &target, "2.0.0").expect_err("2.0.0 cannot pull its image");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "a stuck rollout must fail well before the {}s timeout, took {elapsed:?}",
        TIMEOUT.as_secs()
    );
    match &error {
        Error::DeployFailed {
            restore: Restore::Restored { version },
            message,
        } => {
            assert_eq!(version, "1.0.0");
            assert!(message.contains("ImagePullBackOff"), "{message}");
            assert!(message.contains(&image("2.0.0")), "{message}");
            assert!(
                message.contains("rolled back: 1.0.0 serves again"),
                "{message}"
            );
        }
        other => panic!("expected a restored deploy failure, got {other:?}"),
    }
    assert_eq!(error.exit_code(), 4);

    // 2.0.0 was applied, then 1.0.0's recorded manifests.
    let requests = fake.requests_since(mark);
    let applied_images: Vec<Vec<String>> = requests
        .iter()
        .filter(|r| r.is("PATCH", &apps("deployments/challenge")))
        .map(|r| app_images(&r.body))
        .collect();
    assert_eq!(
        applied_images,
        [
            [image("2.0.0"), image("2.0.0")],
            [image("1.0.0"), image("1.0.0")]
        ]
    );
    let history = target.history(&env).unwrap();
    let recorded_1 = history[0].manifests.clone().unwrap();
    let restored: Vec<Value> = requests
        .iter()
        .skip_while(|r| !r.is("PATCH", &apps("deployments/challenge")))
        .skip(1)
        .filter(|r| {
            r.method == "PATCH" && !r.is_dry_run() && r.path != core("configmaps/deployer-applyset")
        })
        .map(|r| r.body.clone())
        .collect();
    let expected: Vec<Value> = manifests::parse(&recorded_1)
        .unwrap()
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(restored, expected);
    // No log was asked for (the image never ran), the Warning events were read.
    assert!(!requests.iter().any(|r| r.path.ends_with("/log")));
    assert!(requests.iter().any(|r| r.is("GET", &core("events"))));
    // 1.0.0 serves again.
    assert_eq!(target.live(&env).unwrap().version.as_deref(), Some("1.0.0"));
    let summary: Vec<(&str, Action, Outcome, Option<u64>)> = history
        .iter()
        .map(|r| (r.version.as_str(), r.action, r.result, r.revision))
        .collect();
    assert_eq!(
        summary,
        [
            ("1.0.0", Action::Deploy, Outcome::Ok, Some(1)),
            ("2.0.0", Action::Deploy, Outcome::Failed, Some(2)),
            ("1.0.0", Action::AutoRollback, Outcome::Ok, Some(3)),
        ]
    );
    // The failed release's record says what was tried.
    assert!(
        history[1]
            .manifests
            .as_deref()
            .unwrap()
            .contains(&image("2.0.0"))
    );
}

#[test]
fn a_rollback_reapplies_exactly_the_recorded_manifests_of_the_previous_release() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    deploy(&ctx, &fake.target(overlay(), false), "1.0.0").unwrap();
    // The overlay changes meanwhile: 2.0.0 runs with another log level.
    let debug_overlay =
        manifests::parse(&QA_OVERLAY.replace("RUST_LOG: info", "RUST_LOG: debug")).unwrap();
    deploy(&ctx, &fake.target(debug_overlay.clone(), false), "2.0.0").unwrap();

    // `deployer rollback`, with the current (debug) overlay.
    let target = fake.target(debug_overlay, false);
    let records = target.history(&env).unwrap();
    let running = ctx.running_version(&target, &env).unwrap();
    assert_eq!(running.as_deref(), Some("2.0.0"));
    let record = rollback::choose(&records, None, running.as_deref(), "qa", "kubernetes").unwrap();
    assert_eq!(
        (record.version.as_str(), record.revision),
        ("1.0.0", Some(1))
    );
    let plan = release::release_of(&env, &record.version, &records);
    assert_eq!(plan.manifests, record.manifests);
    let mark = fake.mark();
    release::release(&ctx, &target, &env, &plan, Action::Rollback, TIMEOUT)
        .expect("the rollback becomes healthy");

    let requests = fake.requests_since(mark);
    let applied: Vec<Value> = requests
        .iter()
        .filter(|r| {
            r.method == "PATCH" && !r.is_dry_run() && r.path != core("configmaps/deployer-applyset")
        })
        // ensure_secrets applies the overlay's Namespace first.
        .skip(1)
        .map(|r| r.body.clone())
        .collect();
    let expected: Vec<Value> = manifests::parse(record.manifests.as_deref().unwrap())
        .unwrap()
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(applied, expected);
    let config = fake.object(&core("configmaps/challenge-config")).unwrap();
    assert_eq!(config["data"]["RUST_LOG"], "info");
    let deployment = fake.object(&apps("deployments/challenge")).unwrap();
    assert_eq!(app_images(&deployment), [image("1.0.0"), image("1.0.0")]);
    assert_eq!(deployment["metadata"]["generation"], 3);

    let history = target.history(&env).unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (
            last.version.as_str(),
            last.action,
            last.result,
            last.revision
        ),
        ("1.0.0", Action::Rollback, Outcome::Ok, Some(3))
    );
    assert_eq!(last.manifests, record.manifests);
}

#[test]
fn objects_the_overlay_no_longer_declares_are_pruned_but_data_is_kept() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    deploy(&ctx, &fake.target(overlay_with_leftovers(), false), "1.0.0").unwrap();
    assert_eq!(
        live_group_kinds(&fake),
        "ConfigMap,Deployment.apps,Namespace,PersistentVolumeClaim,Secret,Service,ServiceAccount,StatefulSet.apps"
    );
    let id = applyset::parent_id(NS);
    for path in [
        core("configmaps/old-config"),
        core("secrets/old-secret"),
        core("persistentvolumeclaims/old-claim"),
    ] {
        let object = fake.object(&path).unwrap();
        assert_eq!(
            object["metadata"]["labels"][applyset::PART_OF_LABEL],
            json!(id)
        );
    }

    let mark = fake.mark();
    let target = fake.target(overlay(), false);
    deploy(&ctx, &target, "1.1.0").unwrap();
    let requests = fake.requests_since(mark);
    let deleted: Vec<&str> = paths(requests.iter().filter(|r| r.method == "DELETE"));
    assert_eq!(deleted, [core("configmaps/old-config")]);
    assert!(fake.object(&core("configmaps/old-config")).is_none());
    // The members were looked for among the kinds the inventory listed before this deploy too.
    for kind in ["secrets", "persistentvolumeclaims"] {
        assert!(
            requests.iter().any(|r| r.is("GET", &core(kind))
                && r.param("labelSelector") == Some(&format!("{}={id}", applyset::PART_OF_LABEL))),
            "{kind} were not listed"
        );
    }
    // The data survives, still a member: the inventory keeps listing its kinds (KEP-3659: the
    // parent lists the kinds of every member), so `down --purge-data` still finds it.
    assert!(fake.object(&core("secrets/old-secret")).is_some());
    assert!(
        fake.object(&core("persistentvolumeclaims/old-claim"))
            .is_some()
    );
    assert!(
        fake.object(&core("persistentvolumeclaims/data-mysql-0"))
            .is_some()
    );
    assert!(fake.object(NAMESPACE_PATH).is_some());
    assert_eq!(
        live_group_kinds(&fake),
        "ConfigMap,Deployment.apps,Namespace,PersistentVolumeClaim,Secret,Service,ServiceAccount,StatefulSet.apps"
    );
    target.down(&env, true).unwrap();
    assert!(fake.object(&core("secrets/old-secret")).is_none());
    assert!(
        fake.object(&core("persistentvolumeclaims/old-claim"))
            .is_none()
    );
}

#[test]
fn the_history_keeps_the_last_ten_releases() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    // The records live in the namespace: ensure_secrets creates it.
    target.ensure_secrets(&env).unwrap();
    let mark = fake.mark();
    for patch in 1..=12 {
        let record = crate::ledger::Record {
            replicas: None,
            version: format!("1.0.{patch}"),
            image_id: image(&format!("1.0.{patch}")),
            time: OffsetDateTime::now_utc(),
            action: Action::Deploy,
            result: Outcome::Ok,
            who: "ci".into(),
            target: "kubernetes".into(),
            port: 8000,
            image: image(&format!("1.0.{patch}")),
            revision: None,
            schema_version: Some(1),
            purged_data: false,
            manifests: Some(format!("# manifests of 1.0.{patch}\n")),
        };
        target.record(&env, record).unwrap();
    }
    let requests = fake.requests_since(mark);
    let created: Vec<String> = requests
        .iter()
        .filter(|r| r.is("POST", &core("secrets")))
        .map(|r| r.body["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..=12)
        .map(|n| format!("deployer.release.v1.qa.v{n}"))
        .collect();
    assert_eq!(created, expected);
    let deleted: Vec<&str> = paths(requests.iter().filter(|r| r.method == "DELETE"));
    assert_eq!(
        deleted,
        [
            core("secrets/deployer.release.v1.qa.v1"),
            core("secrets/deployer.release.v1.qa.v2")
        ]
    );
    let history = target.history(&env).unwrap();
    let revisions: Vec<Option<u64>> = history.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, (3..=12).map(Some).collect::<Vec<_>>());
    assert_eq!(history[0].version, "1.0.3");
    assert_eq!(
        history[9].manifests.as_deref(),
        Some("# manifests of 1.0.12\n")
    );
    assert_eq!(history[9].port, 0, "a cluster release has no host port");
}

#[test]
fn down_deletes_the_app_and_keeps_the_data_unless_purged() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    deploy(&ctx, &target, "1.0.0").unwrap();
    let secrets_before = (
        fake.object(&core("secrets/mysql")).unwrap(),
        fake.object(&core("secrets/challenge-db")).unwrap(),
    );

    let mark = fake.mark();
    target.down(&env, false).unwrap();
    let requests = fake.requests_since(mark);
    let deleted: Vec<&str> = paths(requests.iter().filter(|r| r.method == "DELETE"));
    // Workloads before what they use, the parent last.
    assert_eq!(
        deleted,
        [
            apps("statefulsets/mysql"),
            apps("deployments/challenge"),
            core("services/challenge"),
            core("services/mysql"),
            core("configmaps/challenge-config"),
            core("serviceaccounts/challenge"),
            core("serviceaccounts/mysql"),
            core("configmaps/deployer-applyset"),
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.param("labelSelector").is_none() || r.method == "GET")
    );
    assert!(fake.object(NAMESPACE_PATH).is_some());
    assert_eq!(
        fake.object(&core("secrets/mysql")).unwrap(),
        secrets_before.0
    );
    assert_eq!(
        fake.object(&core("secrets/challenge-db")).unwrap(),
        secrets_before.1
    );
    assert!(
        fake.object(&core("persistentvolumeclaims/data-mysql-0"))
            .is_some()
    );
    let live = target.live(&env).unwrap();
    assert_eq!((live.version, live.app), (None, None));
    // The history stays.
    assert_eq!(target.history(&env).unwrap().len(), 1);

    // Up again: the kept Secrets are used as they are.
    deploy(&ctx, &fake.target(overlay(), false), "1.0.0").unwrap();
    assert_eq!(
        fake.object(&core("secrets/mysql")).unwrap(),
        secrets_before.0
    );

    let mark = fake.mark();
    target.down(&env, true).unwrap();
    let requests = fake.requests_since(mark);
    let deletes: Vec<&Recorded> = requests.iter().filter(|r| r.method == "DELETE").collect();
    let deleted = paths(deletes.iter().copied());
    assert_eq!(
        deleted[deleted.len() - 4..],
        [
            core("configmaps/deployer-applyset"),
            core("persistentvolumeclaims"),
            core("secrets/challenge-db"),
            core("secrets/mysql"),
        ]
    );
    assert_eq!(
        deletes[deletes.len() - 3].param("labelSelector"),
        Some(crate::facts::K8S_DB_SELECTOR)
    );
    assert!(!deleted.contains(&NAMESPACE_PATH));
    assert!(
        fake.object(&core("persistentvolumeclaims/data-mysql-0"))
            .is_none()
    );
    assert!(fake.object(&core("secrets/mysql")).is_none());
    assert!(fake.object(&core("secrets/challenge-db")).is_none());
    assert_eq!(target.history(&env).unwrap().len(), 2);
}

#[test]
fn the_fake_answers_like_the_api_server() {
    // The fake's own rules the tests rely on.
    assert_eq!(percent_decode("a%2Fb%3Dc+d"), "a/b=c d");
    assert_eq!(
        parse_query("labelSelector=app.kubernetes.io%2Fname%3Dmysql%2Cx%21%3Dy&limit=1"),
        [
            (
                "labelSelector".to_string(),
                "app.kubernetes.io/name=mysql,x!=y".to_string()
            ),
            ("limit".to_string(), "1".to_string())
        ]
    );
    let labels = json!({"a": "1", "b": "2"});
    let select = |selector: &str| selects(&parse_selector(selector).unwrap(), &labels);
    assert!(select("a=1,b==2"));
    assert!(!select("a=2"));
    assert!(select("c!=3,!c,a"));
    assert!(parse_selector("a in (1,2)").is_none());
    assert_eq!(kind_plural("NetworkPolicy"), "networkpolicies");
    assert_eq!(kind_plural("Ingress"), "ingresses");

    let fake = FakeApiServer::start();
    fake.put(
        NAMESPACE_PATH,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let client = fake.cluster.client.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        let secret = new_secret("s", NS, "x", [("k", "v".to_string())]);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let again = secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_err();
        assert!(
            matches!(again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
        );
        assert!(secrets.get_opt("missing").await.unwrap().is_none());
        let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "elsewhere");
        let refused = elsewhere
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, kube::Error::Api(s) if s.code == 404),
            "no such namespace"
        );
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.33.0");
    });
}
