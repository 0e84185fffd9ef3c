//! Is the rollout done, still going, or failed, and why: the decisions of the Kubernetes target's
//! wait, as pure functions. The caller polls the API (about once a second), puts what it read in a
//! [`Snapshot`] and calls [`assess`]. On [`Verdict::Failed`] it fetches the logs the [`Failure`]
//! asks for ([`Failure::logs`]) and calls [`refine`], which reads them for a more precise cause.
//!
//! The app is the Deployment `challenge` (init container `migrate`, which applies the database
//! migrations and exits, then container `challenge`); the database is the StatefulSet `mysql`.
//!
//! [`assess`] decides in this order:
//! 1. Pods in a state that waiting does not heal fail the rollout at once, well before the
//!    timeout: an image that cannot be pulled, a container that keeps crashing, a missing Secret,
//!    migrations that keep failing, a pod no node accepts for longer than a grace period. The
//!    database's pods are looked at first (the app depends on them), then the app's pods of the
//!    NEW revision only: pods of older revisions are on their way out, whatever their state.
//! 2. A ReplicaSet or StatefulSet the API refuses to create pods for (quota, admission webhook,
//!    Pod Security) fails the rollout.
//! 3. A Deployment past its progress deadline fails the rollout, naming the pods that are not
//!    ready and why.
//! 4. Otherwise the counts decide: [`Verdict::Complete`] when every rule holds (see
//!    `deployment_progress` and `statefulset_progress`), else [`Verdict::Progressing`] with
//!    what is awaited, e.g. "challenge 1/3 updated, 0/3 available; mysql 1/1 ready".
//!
//! No status is trusted before its controller observed the object's current generation: until
//! then it describes the previous spec.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Event, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// The app's Deployment, and the name of its main container.
const APP: &str = "challenge";
/// The app's init container that applies the database migrations, then exits.
const MIGRATE: &str = "migrate";
/// The database's StatefulSet.
const DATABASE: &str = "mysql";
/// The Secret the app reads the database password from (key [`PASSWORD_KEY`]).
const APP_SECRET: &str = "challenge-db";
/// The Secret the database was initialised with (keys `root-password` and [`PASSWORD_KEY`]).
const DATABASE_SECRET: &str = "mysql";
/// The key of the app's database password, in both Secrets.
const PASSWORD_KEY: &str = "password";

/// The label the Deployment controller puts on a ReplicaSet and its pods: the hash of the pod
/// template, which tells the pods of one revision from another's.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a Deployment's and its ReplicaSets' revision number.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// Waiting reasons of a container whose image cannot be pulled.
const IMAGE_PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
/// Waiting reason of a container whose image reference is malformed.
const INVALID_IMAGE_NAME: &str = "InvalidImageName";
/// Waiting reason of a container the kubelet restarts with a growing delay after each exit.
const CRASH_LOOP: &str = "CrashLoopBackOff";
/// Waiting reason of a container that refers to a missing Secret or ConfigMap (or key).
const CONFIG_ERROR: &str = "CreateContainerConfigError";
/// Termination reason of a container killed for exceeding its memory limit.
const OUT_OF_MEMORY: &str = "OOMKilled";
/// Reason of the Deployment condition `Progressing` once the progress deadline has passed.
const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// Kubernetes' default `progressDeadlineSeconds`.
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// The event type of the events shown as evidence.
const WARNING: &str = "Warning";
/// At most this many events are shown as evidence of a failure.
const MAX_EVENTS: usize = 5;
/// A quoted log line is cut after this many characters.
const MAX_QUOTE_CHARS: usize = 200;

/// How long a pod may stay unschedulable before the rollout fails (a new node, a freed volume or
/// a finishing pod can make room meanwhile).
pub const DEFAULT_UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(30);
/// Restarts of `migrate` after which its failures count as repeated.
pub const DEFAULT_INIT_FAILURES: i32 = 3;
/// Restarts after which a container that is not ready counts as crashing.
pub const DEFAULT_CRASH_RESTARTS: i32 = 2;

/// Everything the wait read from the API in one poll.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub deployment: Option<Deployment>,
    /// ReplicaSets owned by the Deployment (selected by its labels).
    pub replica_sets: Vec<ReplicaSet>,
    pub statefulset: Option<StatefulSet>,
    /// Pods of the app and of the database.
    pub pods: Vec<Pod>,
    /// Events of the namespace (the function picks those about the objects above).
    pub events: Vec<Event>,
}

/// Thresholds of the decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The time of the snapshot: durations such as "unschedulable for 40 s" end here.
    pub now: Timestamp,
    /// How long a pod may stay unschedulable before the rollout fails.
    pub unschedulable_grace: Duration,
    /// Restarts of the `migrate` init container (with a failed exit) that count as failing
    /// repeatedly.
    pub init_failures: i32,
    /// Restarts of a container that is not ready that count as crashing, even before the kubelet
    /// reports `CrashLoopBackOff`.
    pub crash_restarts: i32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            now: Timestamp::now(),
            unschedulable_grace: DEFAULT_UNSCHEDULABLE_GRACE,
            init_failures: DEFAULT_INIT_FAILURES,
            crash_restarts: DEFAULT_CRASH_RESTARTS,
        }
    }
}

/// Where a rollout stands after one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong so far, not there yet: `detail` says what is awaited.
    Progressing { detail: String },
    /// The new revision of the app is available and the database is ready.
    Complete { detail: String },
    /// A state that waiting will not heal.
    Failed(Failure),
}

/// Why a rollout failed: everything a person needs to decide what to fix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// One sentence: what is wrong.
    pub cause: String,
    /// What to do about it, when there is a usual remedy.
    pub fix: Option<String>,
    /// The pod the failure was seen in.
    pub pod: Option<String>,
    /// The container the failure was seen in.
    pub container: Option<String>,
    /// Kubernetes' word for the state, e.g. `ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`.
    pub reason: Option<String>,
    /// Kubernetes' message for the state, as it gave it.
    pub message: Option<String>,
    /// The exit code of the container's last run, when it ended.
    pub exit_code: Option<i32>,
    /// Logs the caller should fetch and show: previous container's log when it restarted, the
    /// migrate init container's log.
    pub logs: Vec<LogSource>,
    /// The last Warning events (at most 5, newest last) of the pod, ReplicaSet, Deployment or
    /// StatefulSet, as "Kind/name: Reason: message" lines.
    pub events: Vec<String>,
}

/// A container log to fetch, as `kubectl logs POD -c CONTAINER [--previous]` would.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogSource {
    pub pod: String,
    pub container: String,
    /// The log of the container's previous run (the run that ended) rather than the current one.
    pub previous: bool,
}

/// Decides whether the rollout is complete, still progressing, or failed (see the module
/// documentation for the order of the decisions).
pub fn assess(snapshot: &Snapshot, policy: &Policy) -> Verdict {
    let context = Context::new(snapshot, policy);
    let mut notes = Vec::new();
    for (pod, workload) in context.pods_that_matter() {
        match check_pod(&context, pod, workload) {
            PodCheck::Failed(failure) => return Verdict::Failed(*failure),
            PodCheck::Waiting(note) => notes.push(note),
            PodCheck::Fine => {}
        }
    }
    let failure = replica_set_cannot_create(&context)
        .or_else(|| statefulset_cannot_create(&context))
        .or_else(|| progress_deadline_exceeded(&context));
    if let Some(failure) = failure {
        return Verdict::Failed(failure);
    }

    let app = deployment_progress(snapshot.deployment.as_ref());
    let database = statefulset_progress(snapshot.statefulset.as_ref());
    let mut detail = vec![app.detail, database.detail];
    if app.done && database.done {
        return Verdict::Complete {
            detail: detail.join("; "),
        };
    }
    detail.extend(notes);
    Verdict::Progressing {
        detail: detail.join("; "),
    }
}

/// Refines a failure with the log lines the caller fetched for `failure.logs`: a known message
/// in a log (see `LOG_CLUES`) replaces the cause with what it means and sets the fix, e.g.
/// "Access denied" in the app's or migrate's log means the database refuses the credentials.
/// A failure whose logs hold no known message is returned unchanged.
pub fn refine(failure: Failure, logs: &[(LogSource, Vec<String>)]) -> Failure {
    // The clues in order of precedence: the first clue found in any log wins.
    for clue in &LOG_CLUES {
        for (source, lines) in logs {
            if let Some(line) = lines.iter().find(|line| line.contains(clue.needle)) {
                let cause = format!(
                    "{} (`{}` in pod `{}` logged \"{}\")",
                    clue.meaning,
                    source.container,
                    source.pod,
                    quote(line, clue.needle)
                );
                return Failure {
                    cause,
                    fix: Some(clue.fix.to_string()),
                    ..failure
                };
            }
        }
    }
    failure
}

/// A message in a log whose meaning and remedy are known.
struct LogClue {
    /// The words to look for (case-sensitive, as the program writes them).
    needle: &'static str,
    /// What it means: the start of the refined cause.
    meaning: &'static str,
    fix: &'static str,
}

/// The messages [`refine`] knows, in order of precedence. The database server's own words
/// (MySQL's error messages) and the app's (`challenge migrate`).
const LOG_CLUES: [LogClue; 4] = [
    // ER_ACCESS_DENIED_ERROR (1045) and ER_DBACCESS_DENIED_ERROR (1044).
    LogClue {
        needle: "Access denied",
        meaning: "The database refuses the app's credentials",
        fix: "the Secret `challenge-db` key `password` must equal the `password` key of Secret \
              `mysql`, which the database was initialised with (changing `mysql` later changes \
              nothing in an existing volume): copy that value into `challenge-db` and deploy again",
    },
    // ER_BAD_DB_ERROR (1049).
    LogClue {
        needle: "Unknown database",
        meaning: "The schema named by DB_DATABASE does not exist in the database",
        fix: "the database volume was initialised with another schema name: set DB_DATABASE in the \
              ConfigMap `challenge-config` back to it, or create the schema",
    },
    // `challenge migrate` after its retries, when the server never answered.
    LogClue {
        needle: "cannot reach the database",
        meaning: "The app cannot reach the database",
        fix: "check that the `mysql` pod is ready, that DB_HOST in the ConfigMap \
              `challenge-config` names the database's Service, and that the NetworkPolicies let \
              the app's pods reach port 3306",
    },
    // `challenge migrate`'s last words on stderr when a migration ran and failed (never retried).
    LogClue {
        needle: "challenge: migration ",
        meaning: "A database migration fails",
        fix: "the log says which migration and why; fix it in a new release (the deployer rolls \
              back to the previous one)",
    },
];

// ---------------------------------------------------------------------------------------------
// What is looked at: the pods that matter, and how to find related objects and events.

/// What `assess` works on: the snapshot, the thresholds, and the app's current ReplicaSet.
struct Context<'a> {
    snapshot: &'a Snapshot,
    policy: &'a Policy,
    /// The ReplicaSet of the Deployment's current revision, once the controller has observed
    /// the Deployment's generation (before that, the newest ReplicaSet may be the previous
    /// revision's). Only its pods can fail the rollout.
    new_replica_set: Option<&'a ReplicaSet>,
}

/// Which workload a pod belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    App,
    Database,
}

/// What a look at one pod (or one of its containers) found.
enum PodCheck {
    Fine,
    /// Not ready yet for a reason that may heal: a note for the Progressing detail.
    Waiting(String),
    /// Boxed: a `Failure` is much larger than the other variants.
    Failed(Box<Failure>),
}

impl<'a> Context<'a> {
    fn new(snapshot: &'a Snapshot, policy: &'a Policy) -> Self {
        let new_replica_set = snapshot
            .deployment
            .as_ref()
            .filter(|deployment| unobserved_deployment_generation(deployment).is_none())
            .and_then(|deployment| current_replica_set(deployment, &snapshot.replica_sets));
        Context {
            snapshot,
            policy,
            new_replica_set,
        }
    }

    /// The pods whose state can fail the rollout: the database's first, then the app's of the
    /// new revision. Pods being deleted are leaving and do not count.
    fn pods_that_matter(&self) -> Vec<(&'a Pod, Workload)> {
        let mut pods: Vec<(&Pod, Workload)> = self
            .snapshot
            .pods
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| self.workload(pod).map(|workload| (pod, workload)))
            .collect();
        // Stable: keeps the snapshot's order within each workload.
        pods.sort_by_key(|(_, workload)| *workload != Workload::Database);
        pods
    }

    /// The app's pods of the new revision, not being deleted.
    fn new_app_pods(&self) -> impl Iterator<Item = &'a Pod> {
        self.pods_that_matter()
            .into_iter()
            .filter(|(_, workload)| *workload == Workload::App)
            .map(|(pod, _)| pod)
    }

    /// The database's pods are those a StatefulSet owns; the app's are those of the new
    /// revision (same `pod-template-hash` as the new ReplicaSet). `None`: a pod that does not
    /// matter, such as the app's pods of an older revision.
    fn workload(&self, pod: &Pod) -> Option<Workload> {
        let owned_by_statefulset = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.kind == "StatefulSet");
        if owned_by_statefulset {
            return Some(Workload::Database);
        }
        let new_hash = label(&self.new_replica_set?.metadata, POD_TEMPLATE_HASH)?;
        (label(&pod.metadata, POD_TEMPLATE_HASH)? == new_hash).then_some(Workload::App)
    }

    /// The objects whose Warning events are evidence about `pod`: the pod and its controllers.
    fn objects_around(&self, pod: &'a Pod, workload: Workload) -> Vec<(&'static str, &'a str)> {
        let mut objects = vec![("Pod", name(&pod.metadata))];
        match workload {
            Workload::App => {
                if let Some(replica_set) = self.new_replica_set {
                    objects.push(("ReplicaSet", name(&replica_set.metadata)));
                }
                if let Some(deployment) = &self.snapshot.deployment {
                    objects.push(("Deployment", name(&deployment.metadata)));
                }
            }
            Workload::Database => {
                if let Some(statefulset) = &self.snapshot.statefulset {
                    objects.push(("StatefulSet", name(&statefulset.metadata)));
                }
            }
        }
        objects
    }

    /// Whether the database serves: its StatefulSet observed and all its replicas ready.
    fn database_ready(&self) -> bool {
        self.snapshot
            .statefulset
            .as_ref()
            .is_some_and(|statefulset| {
                let status = statefulset.status.as_ref();
                unobserved_statefulset_generation(statefulset).is_none()
                    && status.and_then(|s| s.ready_replicas).unwrap_or(0)
                        >= desired_replicas(statefulset.spec.as_ref().and_then(|s| s.replicas))
            })
    }

    /// The latest Warning event with `reason` about the object `kind`/`name`.
    fn latest_warning(&self, kind: &str, name: &str, reason: &str) -> Option<&'a Event> {
        self.snapshot
            .events
            .iter()
            .filter(|event| is_warning_about(event, kind, name))
            .filter(|event| event.reason.as_deref() == Some(reason))
            .max_by_key(|event| event_time(event))
    }

    /// The last Warning events about `objects`, newest last, as "Kind/name: Reason: message".
    fn evidence(&self, objects: &[(&str, &str)]) -> Vec<String> {
        let mut events: Vec<&Event> = self
            .snapshot
            .events
            .iter()
            .filter(|event| {
                objects
                    .iter()
                    .any(|(kind, name)| is_warning_about(event, kind, name))
            })
            .collect();
        events.sort_by_key(|event| event_time(event));
        let skip = events.len().saturating_sub(MAX_EVENTS);
        events
            .into_iter()
            .skip(skip)
            .map(|event| {
                format!(
                    "{}/{}: {}: {}",
                    event.involved_object.kind.as_deref().unwrap_or("?"),
                    event.involved_object.name.as_deref().unwrap_or("?"),
                    event.reason.as_deref().unwrap_or("?"),
                    event.message.as_deref().unwrap_or("").trim()
                )
            })
            .collect()
    }
}

/// The ReplicaSet with the highest revision, provided it is the Deployment's own revision (a
/// snapshot read while the controller was creating the new one may lack it).
fn current_replica_set<'a>(
    deployment: &Deployment,
    replica_sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let newest = replica_sets
        .iter()
        .max_by_key(|replica_set| revision(&replica_set.metadata))?;
    match revision(&deployment.metadata) {
        Some(wanted) if revision(&newest.metadata) != Some(wanted) => None,
        _ => Some(newest),
    }
}

/// A `deployment.kubernetes.io/revision` annotation's number.
fn revision(metadata: &ObjectMeta) -> Option<u64> {
    metadata.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

fn label<'a>(metadata: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn name(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or("?")
}

fn namespace(metadata: &ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or("NAMESPACE")
}

/// `spec.replicas`, which the API defaults to 1 when it is absent.
fn desired_replicas(replicas: Option<i32>) -> i32 {
    replicas.unwrap_or(1)
}

fn is_warning_about(event: &Event, kind: &str, name: &str) -> bool {
    event.type_.as_deref() == Some(WARNING)
        && event.involved_object.kind.as_deref() == Some(kind)
        && event.involved_object.name.as_deref() == Some(name)
}

/// When an event last happened. Events carry it in different fields depending on the API that
/// wrote them (core/v1 `lastTimestamp`, events.k8s.io `eventTime` and `series`): the latest wins.
fn event_time(event: &Event) -> Option<Timestamp> {
    [
        event.last_timestamp.as_ref().map(|time| time.0),
        event
            .series
            .as_ref()
            .and_then(|series| series.last_observed_time.as_ref())
            .map(|time| time.0),
        event.event_time.as_ref().map(|time| time.0),
        event.first_timestamp.as_ref().map(|time| time.0),
        event
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|time| time.0),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// Time from `since` to `now`; zero when the clocks disagree and `since` is in the future.
fn elapsed(since: &Time, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since.0)).unwrap_or(Duration::ZERO)
}

// ---------------------------------------------------------------------------------------------
// Pods: the states that do not heal by waiting.

/// Looks at one pod: scheduling, volumes, then its init containers and containers in order. The
/// first failure wins; otherwise the first note about something awaited.
fn check_pod<'a>(context: &Context<'a>, pod: &'a Pod, workload: Workload) -> PodCheck {
    let status = pod.status.as_ref();
    let init_containers = status.and_then(|s| s.init_container_statuses.as_deref());
    let containers = status.and_then(|s| s.container_statuses.as_deref());
    let checks = [
        scheduling(context, pod),
        missing_volume_source(context, pod),
    ]
    .into_iter()
    .chain(
        init_containers
            .unwrap_or_default()
            .iter()
            .map(|container| init_container(context, pod, workload, container)),
    )
    .chain(
        containers
            .unwrap_or_default()
            .iter()
            .map(|container| app_or_database_container(context, pod, workload, container)),
    );
    let mut note = None;
    for check in checks {
        match check {
            PodCheck::Failed(mut failure) => {
                failure.events = context.evidence(&context.objects_around(pod, workload));
                return PodCheck::Failed(failure);
            }
            PodCheck::Waiting(waiting) => {
                note.get_or_insert(waiting);
            }
            PodCheck::Fine => {}
        }
    }
    note.map_or(PodCheck::Fine, PodCheck::Waiting)
}

/// A pod the scheduler cannot place: awaited during the grace, a failure after it.
fn scheduling(context: &Context, pod: &Pod) -> PodCheck {
    let Some(condition) = pod_condition(pod, "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    else {
        return PodCheck::Fine;
    };
    let pod_name = name(&pod.metadata);
    let message = condition
        .message
        .as_deref()
        .unwrap_or("no node fits the pod")
        .trim();
    let unschedulable_for = condition
        .last_transition_time
        .as_ref()
        .map_or(Duration::ZERO, |since| elapsed(since, context.policy.now));
    let grace = context.policy.unschedulable_grace;
    if unschedulable_for <= grace {
        return PodCheck::Waiting(format!(
            "pod {pod_name} unschedulable for {}s: {message}",
            unschedulable_for.as_secs()
        ));
    }
    PodCheck::Failed(Box::new(Failure {
        cause: format!(
            "Pod `{pod_name}` cannot be scheduled (for {}s, more than the {}s grace): {message}",
            unschedulable_for.as_secs(),
            grace.as_secs()
        ),
        fix: Some(unschedulable_fix(message).to_string()),
        pod: Some(pod_name.to_string()),
        reason: condition.reason.clone(),
        message: Some(message.to_string()),
        ..Failure::default()
    }))
}

/// The usual remedy for the scheduler's message.
fn unschedulable_fix(message: &str) -> &'static str {
    if message.contains("Insufficient") {
        "free capacity on the nodes or add nodes, or lower the pods' resource requests (or the \
         replicas) in the overlay"
    } else if message.contains("PersistentVolumeClaim") {
        "the volume claim is not bound: check `kubectl get pvc` and that a (default) StorageClass \
         can provision it"
    } else if message.contains("taint") {
        "the nodes carry taints the pod does not tolerate: untaint a node or add a toleration"
    } else {
        "the scheduler's message says which constraint no node meets (resources, node selector, \
         affinity, taints, volumes)"
    }
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_)
}

/// A pending pod whose Secret or ConfigMap volume cannot be mounted because the object (or a key
/// of it) does not exist: the kubelet keeps retrying, but nothing will create it.
fn missing_volume_source(context: &Context, pod: &Pod) -> PodCheck {
    let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
    if !pending {
        return PodCheck::Fine;
    }
    let pod_name = name(&pod.metadata);
    let Some(event) = context.latest_warning("Pod", pod_name, "FailedMount") else {
        return PodCheck::Fine;
    };
    let message = event.message.as_deref().unwrap_or("").trim();
    let Some(missing) = MissingReference::in_mount_message(message, pod) else {
        return PodCheck::Fine;
    };
    PodCheck::Failed(Box::new(Failure {
        cause: format!(
            "Pod `{pod_name}` cannot start: {} ({message})",
            missing.describe()
        ),
        fix: Some(missing.fix(namespace(&pod.metadata))),
        pod: Some(pod_name.to_string()),
        reason: event.reason.clone(),
        message: Some(message.to_string()),
        ..Failure::default()
    }))
}

/// An init container: an unpullable image or missing configuration fails at once; `migrate` has
/// its own rule ([`migrate`]); any other init container the crash rule of containers.
fn init_container(
    context: &Context,
    pod: &Pod,
    workload: Workload,
    status: &ContainerStatus,
) -> PodCheck {
    if let Some(failure) = cannot_create(pod, workload, status) {
        return PodCheck::Failed(Box::new(failure));
    }
    if status.name == MIGRATE {
        migrate(context, pod, status)
    } else {
        crashing(context, pod, status)
    }
}

/// A (regular) container of the app or the database.
fn app_or_database_container(
    context: &Context,
    pod: &Pod,
    workload: Workload,
    status: &ContainerStatus,
) -> PodCheck {
    match cannot_create(pod, workload, status) {
        Some(failure) => PodCheck::Failed(Box::new(failure)),
        None => crashing(context, pod, status),
    }
}

/// A container the kubelet cannot even create: its image cannot be pulled or is malformed, or it
/// refers to a Secret or ConfigMap (or key) that does not exist.
fn cannot_create(pod: &Pod, workload: Workload, status: &ContainerStatus) -> Option<Failure> {
    let reason = waiting_reason(status)?;
    if IMAGE_PULL_FAILURES.contains(&reason) {
        Some(image_not_pulled(pod, workload, status, reason))
    } else if reason == INVALID_IMAGE_NAME {
        Some(Failure {
            cause: format!(
                "The image name `{}` of container `{}` in pod `{}` is not a valid image reference",
                status.image,
                status.name,
                name(&pod.metadata)
            ),
            fix: Some(
                "set a valid image (REGISTRY/NAME:TAG) in the overlay (`kustomize edit set image`)"
                    .to_string(),
            ),
            ..container_failure(pod, status)
        })
    } else if reason == CONFIG_ERROR {
        Some(missing_configuration(pod, status))
    } else {
        None
    }
}

/// The image cannot be pulled. The app's image is built by the deployer and must reach the
/// cluster; the database's is a public one, whose name or tag (or the way to its registry) is
/// wrong.
fn image_not_pulled(
    pod: &Pod,
    workload: Workload,
    status: &ContainerStatus,
    reason: &str,
) -> Failure {
    let image = &status.image;
    let fix = match workload {
        Workload::App => format!(
            "push the image to the registry the cluster pulls from (`deployer build --registry \
             REGISTRY --push`), or for a local cluster load it (`kind load docker-image {image}`)"
        ),
        Workload::Database => format!(
            "check that the image `{image}` exists (name and tag) and that the nodes can reach \
             its registry"
        ),
    };
    Failure {
        cause: format!(
            "The image `{image}` of container `{}` in pod `{}` cannot be pulled ({reason})",
            status.name,
            name(&pod.metadata)
        ),
        fix: Some(fix),
        ..container_failure(pod, status)
    }
}

/// The container refers to a Secret or ConfigMap, or a key of one, that does not exist.
fn missing_configuration(pod: &Pod, status: &ContainerStatus) -> Failure {
    let message = waiting(status)
        .and_then(|w| w.message.as_deref())
        .unwrap_or("")
        .trim();
    let missing = MissingReference::in_message(message);
    let what = missing.as_ref().map_or_else(
        || "it refers to configuration that does not exist".to_string(),
        MissingReference::describe,
    );
    Failure {
        cause: format!(
            "Container `{}` of pod `{}` cannot be created: {what} ({message})",
            status.name,
            name(&pod.metadata)
        ),
        fix: missing.map(|missing| missing.fix(namespace(&pod.metadata))),
        ..container_failure(pod, status)
    }
}

/// A container that keeps exiting: `CrashLoopBackOff`, or restarted `crash_restarts` times and
/// not ready now. The previous run's log says why.
fn crashing(context: &Context, pod: &Pod, status: &ContainerStatus) -> PodCheck {
    let crash_looping = waiting_reason(status) == Some(CRASH_LOOP);
    let restarted_often = status.restart_count >= context.policy.crash_restarts
        && !status.ready
        && last_state_terminated(status).is_some();
    if !(crash_looping || restarted_often) {
        return PodCheck::Fine;
    }
    let last_run = last_run(status);
    let out_of_memory = last_run.and_then(|run| run.reason.as_deref()) == Some(OUT_OF_MEMORY);
    PodCheck::Failed(Box::new(Failure {
        cause: format!(
            "Container `{}` of pod `{}` keeps crashing: {}, restarted {} times",
            status.name,
            name(&pod.metadata),
            describe_exit(last_run),
            status.restart_count
        ),
        fix: out_of_memory.then(|| {
            "raise the container's memory limit (`resources.limits.memory`) in the overlay"
                .to_string()
        }),
        logs: vec![log_source(pod, status)],
        ..container_failure(pod, status)
    }))
}

/// The `migrate` init container. It retries the database for about a minute before it exits
/// non-zero, so one failed run is not yet a verdict:
/// - failed with `restartCount >= init_failures`: the migrations fail repeatedly;
/// - `CrashLoopBackOff` while the database is ready: the migrations fail (waiting changes
///   nothing);
/// - `CrashLoopBackOff` or a failed run while the database is not ready yet (its first start
///   initialises the volume, which takes a while): awaited, the kubelet retries it.
fn migrate(context: &Context, pod: &Pod, status: &ContainerStatus) -> PodCheck {
    let running = status
        .state
        .as_ref()
        .is_some_and(|state| state.running.is_some());
    if running {
        // Whatever happened before, this run may succeed.
        return PodCheck::Fine;
    }
    let failed_run = last_run(status).filter(|run| run.exit_code != 0);
    let crash_looping = waiting_reason(status) == Some(CRASH_LOOP);
    let repeated = failed_run.is_some() && status.restart_count >= context.policy.init_failures;
    let pod_name = name(&pod.metadata);
    if repeated || (crash_looping && context.database_ready()) {
        return PodCheck::Failed(Box::new(Failure {
            cause: format!(
                "The database migrations fail: init container `{MIGRATE}` of pod `{pod_name}` \
                 keeps failing: {}, restarted {} times",
                describe_exit(last_run(status)),
                status.restart_count
            ),
            logs: vec![log_source(pod, status)],
            ..container_failure(pod, status)
        }));
    }
    if crash_looping || failed_run.is_some() {
        let why = if context.database_ready() {
            ""
        } else {
            " while the database is not ready yet"
        };
        return PodCheck::Waiting(format!(
            "pod {pod_name}: {MIGRATE} failed{why} ({}, restarted {} times), the kubelet retries it",
            describe_exit(last_run(status)),
            status.restart_count
        ));
    }
    PodCheck::Fine
}

/// The fields every container failure shares: pod, container, reason and message of the state,
/// exit code of the last run.
fn container_failure(pod: &Pod, status: &ContainerStatus) -> Failure {
    let waiting = waiting(status);
    let last_run = last_run(status);
    Failure {
        pod: Some(name(&pod.metadata).to_string()),
        container: Some(status.name.clone()),
        reason: waiting
            .and_then(|w| w.reason.clone())
            .or_else(|| last_run.and_then(|run| run.reason.clone())),
        message: waiting
            .and_then(|w| w.message.clone())
            .or_else(|| last_run.and_then(|run| run.message.clone()))
            .map(|message| message.trim().to_string()),
        exit_code: last_run.map(|run| run.exit_code),
        ..Failure::default()
    }
}

/// "its last run exited with code 1 (Error)", or the out-of-memory kill in words.
fn describe_exit(last_run: Option<&ContainerStateTerminated>) -> String {
    match last_run {
        Some(run) if run.reason.as_deref() == Some(OUT_OF_MEMORY) => format!(
            "its last run was killed for exceeding its memory limit ({OUT_OF_MEMORY}, exit code {})",
            run.exit_code
        ),
        Some(run) => match run.reason.as_deref() {
            Some(reason) => format!("its last run exited with code {} ({reason})", run.exit_code),
            None => format!("its last run exited with code {}", run.exit_code),
        },
        None => "it exits repeatedly".to_string(),
    }
}

/// The log that shows the container's last failure: the previous run's when the container has
/// been restarted since (it waits or runs again), the current one's when it has just ended.
/// (In `CrashLoopBackOff` both name the run that crashed.)
fn log_source(pod: &Pod, status: &ContainerStatus) -> LogSource {
    let ended_now = status
        .state
        .as_ref()
        .is_some_and(|state| state.terminated.is_some());
    LogSource {
        pod: name(&pod.metadata).to_string(),
        container: status.name.clone(),
        previous: !ended_now && last_state_terminated(status).is_some(),
    }
}

fn waiting(status: &ContainerStatus) -> Option<&ContainerStateWaiting> {
    status.state.as_ref()?.waiting.as_ref()
}

fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    waiting(status)?.reason.as_deref()
}

fn last_state_terminated(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status.last_state.as_ref()?.terminated.as_ref()
}

/// The container's most recent run that ended: the current state when it has just ended, else
/// the last state.
fn last_run(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status
        .state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
        .or_else(|| last_state_terminated(status))
}

/// A Secret or ConfigMap (or one of its keys) a pod refers to but that does not exist.
#[derive(Debug, PartialEq, Eq)]
struct MissingReference {
    /// `Secret` or `ConfigMap`.
    kind: &'static str,
    name: String,
    /// The missing key, when the object exists but lacks it.
    key: Option<String>,
}

impl MissingReference {
    /// Reads the kubelet's words for a container it cannot create, e.g.
    /// `secret "challenge-db" not found`, `couldn't find key password in Secret ns/challenge-db`,
    /// `configmap "challenge-config" not found`.
    fn in_message(message: &str) -> Option<Self> {
        for (prefix, kind) in [("secret \"", "Secret"), ("configmap \"", "ConfigMap")] {
            if let Some((_, rest)) = message.split_once(prefix)
                && let Some((name, _)) = rest.split_once("\" not found")
            {
                return Some(MissingReference {
                    kind,
                    name: name.to_string(),
                    key: None,
                });
            }
        }
        // couldn't find key KEY in Secret NAMESPACE/NAME
        let (_, rest) = message.split_once("couldn't find key ")?;
        let (key, rest) = rest.split_once(" in ")?;
        let (kind, path) = rest.split_once(' ')?;
        let kind = match kind {
            "Secret" => "Secret",
            "ConfigMap" => "ConfigMap",
            _ => return None,
        };
        let name = path.split_whitespace().next()?.rsplit('/').next()?;
        Some(MissingReference {
            kind,
            name: name.to_string(),
            key: Some(key.to_string()),
        })
    }

    /// Reads a `FailedMount` event's message: the object missing (`MountVolume.SetUp failed for
    /// volume "db-password" : secret "challenge-db" not found`), or a key missing, which names
    /// only the volume (`... for volume "secrets" : references non-existent secret key: password`);
    /// the pod's spec tells the volume's Secret or ConfigMap.
    fn in_mount_message(message: &str, pod: &Pod) -> Option<Self> {
        if let Some(missing) = Self::in_message(message) {
            return Some(missing);
        }
        let (_, volume) = message.split_once("for volume \"")?;
        let (volume, _) = volume.split_once('"')?;
        let volume = pod
            .spec
            .as_ref()?
            .volumes
            .iter()
            .flatten()
            .find(|candidate| candidate.name == volume)?;
        let (kind, name, marker) = if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone()?;
            ("Secret", name, "non-existent secret key: ")
        } else {
            let name = volume.config_map.as_ref()?.name.clone();
            ("ConfigMap", name, "non-existent config key: ")
        };
        let (_, key) = message.split_once(marker)?;
        Some(MissingReference {
            kind,
            name,
            key: Some(key.trim().to_string()),
        })
    }

    /// "Secret `challenge-db` does not exist", "Secret `mysql` has no key `password`".
    fn describe(&self) -> String {
        match &self.key {
            None => format!("{} `{}` does not exist", self.kind, self.name),
            Some(key) => format!("{} `{}` has no key `{key}`", self.kind, self.name),
        }
    }

    /// How to create what is missing in `namespace`.
    fn fix(&self, namespace: &str) -> String {
        let name = &self.name;
        if self.kind == "ConfigMap" {
            return format!(
                "the ConfigMap `{name}` comes with the manifests: check that the overlay defines \
                 it (with its keys) and deploy again"
            );
        }
        if let Some(key) = &self.key {
            return format!(
                "add the key `{key}` to the Secret `{name}`: `kubectl -n {namespace} patch secret \
                 {name} --type merge -p '{{\"stringData\":{{\"{key}\":\"...\"}}}}'`"
            );
        }
        let keys: &[&str] = match name.as_str() {
            APP_SECRET => &[PASSWORD_KEY],
            DATABASE_SECRET => &["root-password", PASSWORD_KEY],
            _ => &["KEY"],
        };
        let literals: Vec<String> = keys
            .iter()
            .map(|key| format!("--from-literal={key}=..."))
            .collect();
        let same_password = if name == APP_SECRET {
            format!(
                ", its `{PASSWORD_KEY}` equal to the `{PASSWORD_KEY}` key of Secret \
                 `{DATABASE_SECRET}`"
            )
        } else {
            String::new()
        };
        format!(
            "create the Secret: the deployer creates the Secrets it needs on deploy (`deployer \
             deploy` again), or by hand `kubectl -n {namespace} create secret generic {name} {}`{same_password}",
            literals.join(" ")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Controllers: pods the API refuses to create, a Deployment past its progress deadline.

/// The new ReplicaSet cannot create its pods: its `ReplicaFailure` condition, or a recent
/// `FailedCreate` Warning while it lacks pods.
fn replica_set_cannot_create(context: &Context) -> Option<Failure> {
    let replica_set = context.new_replica_set?;
    let replica_set_name = name(&replica_set.metadata);
    let status = replica_set.status.as_ref();
    let from_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .and_then(|c| c.message.clone());
    let lacks_pods = status.map_or(0, |s| s.replicas)
        < desired_replicas(replica_set.spec.as_ref().and_then(|s| s.replicas));
    let message = from_condition.or_else(|| {
        lacks_pods
            .then(|| context.latest_warning("ReplicaSet", replica_set_name, "FailedCreate"))
            .flatten()
            .and_then(|event| event.message.clone())
    })?;
    let mut objects = vec![("ReplicaSet", replica_set_name)];
    if let Some(deployment) = &context.snapshot.deployment {
        objects.push(("Deployment", name(&deployment.metadata)));
    }
    Some(Failure {
        events: context.evidence(&objects),
        ..refused_pods(
            "ReplicaSet",
            replica_set_name,
            &message,
            namespace(&replica_set.metadata),
        )
    })
}

/// The StatefulSet cannot create its pods: a `FailedCreate` Warning while it lacks pods.
fn statefulset_cannot_create(context: &Context) -> Option<Failure> {
    let statefulset = context.snapshot.statefulset.as_ref()?;
    let statefulset_name = name(&statefulset.metadata);
    let created = statefulset.status.as_ref().map_or(0, |s| s.replicas);
    if created >= desired_replicas(statefulset.spec.as_ref().and_then(|s| s.replicas)) {
        return None;
    }
    let event = context.latest_warning("StatefulSet", statefulset_name, "FailedCreate")?;
    let message = event.message.as_deref()?;
    Some(Failure {
        events: context.evidence(&[("StatefulSet", statefulset_name)]),
        ..refused_pods(
            "StatefulSet",
            statefulset_name,
            message,
            namespace(&statefulset.metadata),
        )
    })
}

/// The failure of a controller whose pods the API refuses, with the usual remedy for the
/// refusal in `message`.
fn refused_pods(kind: &str, name: &str, message: &str, namespace: &str) -> Failure {
    let message = message.trim();
    let message = message.strip_prefix("Error creating: ").unwrap_or(message);
    let (why, fix) = if message.contains("exceeded quota") {
        (
            "a ResourceQuota of the namespace is used up".to_string(),
            format!(
                "free or raise the quota (`kubectl -n {namespace} describe resourcequota`), or \
                 lower the replicas or the pods' resource requests and limits in the overlay"
            ),
        )
    } else if message.contains("failed quota") {
        (
            "a ResourceQuota requires resources the pods do not declare".to_string(),
            "declare the named requests and limits in the pod template's `resources`".to_string(),
        )
    } else if message.contains("violates PodSecurity") {
        (
            "the pods violate the namespace's Pod Security Standard".to_string(),
            "make the pod template meet the standard (the message lists what violates it)"
                .to_string(),
        )
    } else if message.contains("admission webhook") {
        (
            "an admission webhook denies the pods".to_string(),
            "meet the policy of the webhook named in the message, or ask its owners".to_string(),
        )
    } else {
        (
            "the API server refuses them".to_string(),
            "the message says why; the pod template or the namespace's policies must change"
                .to_string(),
        )
    };
    Failure {
        cause: format!("{kind} `{name}` cannot create its pods ({why}): {message}"),
        fix: Some(fix),
        reason: Some("FailedCreate".to_string()),
        message: Some(message.to_string()),
        ..Failure::default()
    }
}

/// The Deployment's `Progressing` condition says `ProgressDeadlineExceeded`: pods of the new
/// revision did not become available in time, typically because their readiness probe keeps
/// failing. Names the pods that are not ready and why.
fn progress_deadline_exceeded(context: &Context) -> Option<Failure> {
    let deployment = context.snapshot.deployment.as_ref()?;
    if unobserved_deployment_generation(deployment).is_some() {
        // The condition may be left over from the previous rollout.
        return None;
    }
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
        })?;
    let deployment_name = name(&deployment.metadata);
    let deadline = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    let unready: Vec<NotReady> = context
        .new_app_pods()
        .filter(|pod| !pod_ready(pod))
        .map(|pod| not_ready(context, pod))
        .collect();
    let condition_message = condition.message.as_deref().unwrap_or("").trim();
    let cause = if unready.is_empty() {
        format!(
            "Deployment `{deployment_name}` made no progress within its {deadline}s progress \
             deadline: {condition_message}"
        )
    } else {
        let pods: Vec<String> = unready
            .iter()
            .map(|pod| format!("`{}` ({})", pod.pod, pod.why))
            .collect();
        format!(
            "Deployment `{deployment_name}` made no progress within its {deadline}s progress \
             deadline: {} not ready: {}",
            if unready.len() == 1 {
                "pod is"
            } else {
                "pods are"
            },
            pods.join(", ")
        )
    };
    let fix = if unready.iter().any(|pod| pod.why.contains("HTTP 503")) {
        "`/readyz` answers 503 while the app cannot use its database: check that `mysql` is ready, \
         and read the app's log for why (credentials, schema, reachability)"
    } else {
        "the pods' events and the app's log say why they do not become ready"
    };
    let mut objects: Vec<(&str, &str)> = unready.iter().map(|pod| ("Pod", pod.pod)).collect();
    if let Some(replica_set) = context.new_replica_set {
        objects.push(("ReplicaSet", name(&replica_set.metadata)));
    }
    objects.push(("Deployment", deployment_name));
    let first = unready.first();
    Some(Failure {
        cause,
        fix: Some(fix.to_string()),
        pod: first.map(|pod| pod.pod.to_string()),
        container: first.map(|pod| pod.container.clone()),
        reason: Some(PROGRESS_DEADLINE_EXCEEDED.to_string()),
        message: Some(condition_message.to_string()),
        exit_code: None,
        logs: first
            .map(|pod| LogSource {
                pod: pod.pod.to_string(),
                container: pod.container.clone(),
                previous: false,
            })
            .into_iter()
            .collect(),
        events: context.evidence(&objects),
    })
}

/// A pod of the new revision that is not ready, and why in a few words.
struct NotReady<'a> {
    pod: &'a str,
    /// The container that is not ready (the app's, when unknown).
    container: String,
    why: String,
}

/// Why `pod` is not ready: the latest failed probe (an `Unhealthy` Warning), else a waiting
/// container, else the pod's `Ready` condition.
fn not_ready<'a>(context: &Context, pod: &'a Pod) -> NotReady<'a> {
    let pod_name = name(&pod.metadata);
    if let Some(event) = context.latest_warning("Pod", pod_name, "Unhealthy") {
        let container = event
            .involved_object
            .field_path
            .as_deref()
            .and_then(container_of_field_path)
            .unwrap_or(APP);
        return NotReady {
            pod: pod_name,
            container: container.to_string(),
            why: describe_probe_failure(event.message.as_deref().unwrap_or("")),
        };
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    if let Some(status) = statuses.iter().find(|s| waiting(s).is_some()) {
        return NotReady {
            pod: pod_name,
            container: status.name.clone(),
            why: format!(
                "container `{}` waits: {}",
                status.name,
                waiting_reason(status).unwrap_or("not started")
            ),
        };
    }
    let why = pod_condition(pod, "Ready")
        .and_then(|c| c.message.as_deref())
        .unwrap_or("not ready")
        .trim()
        .to_string();
    let container = statuses
        .iter()
        .find(|s| !s.ready)
        .map_or(APP, |s| s.name.as_str());
    NotReady {
        pod: pod_name,
        container: container.to_string(),
        why,
    }
}

/// The container an event is about, from its `fieldPath` (`spec.containers{challenge}`).
fn container_of_field_path(field_path: &str) -> Option<&str> {
    let (_, rest) = field_path.split_once('{')?;
    rest.strip_suffix('}')
}

/// The kubelet's probe failure message in a few words: `Readiness probe failed: HTTP probe
/// failed with statuscode: 503` becomes "the readiness probe got HTTP 503".
fn describe_probe_failure(message: &str) -> String {
    let message = message.trim();
    let Some((probe, detail)) = message.split_once(" probe failed: ") else {
        return message.to_string();
    };
    let probe = probe.to_lowercase();
    if let Some((_, code)) = detail.split_once("statuscode: ") {
        format!("the {probe} probe got HTTP {}", code.trim())
    } else if detail.contains("connection refused") {
        format!("the {probe} probe's connection was refused (nothing listens on the port yet)")
    } else if detail.contains("deadline exceeded") || detail.contains("timeout") {
        format!("the {probe} probe timed out")
    } else {
        format!("the {probe} probe failed: {detail}")
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

// ---------------------------------------------------------------------------------------------
// Progress: the counts that must all hold for the rollout to be complete.

/// Whether one workload is done, and what it is at in words.
struct Progress {
    done: bool,
    detail: String,
}

/// The generation the Deployment controller has not observed yet, if any: until it has, the
/// status describes the previous spec.
fn unobserved_deployment_generation(deployment: &Deployment) -> Option<i64> {
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    unobserved(&deployment.metadata, observed)
}

/// The generation the StatefulSet controller has not observed yet, if any.
fn unobserved_statefulset_generation(statefulset: &StatefulSet) -> Option<i64> {
    let observed = statefulset
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    unobserved(&statefulset.metadata, observed)
}

fn unobserved(metadata: &ObjectMeta, observed_generation: Option<i64>) -> Option<i64> {
    let generation = metadata.generation?;
    (observed_generation.unwrap_or(0) < generation).then_some(generation)
}

/// The Deployment is done when its controller observed the current generation and every
/// wanted replica is updated and available, with no old replica left.
fn deployment_progress(deployment: Option<&Deployment>) -> Progress {
    let Some(deployment) = deployment else {
        return Progress {
            done: false,
            detail: format!("waiting for the Deployment {APP} to be created"),
        };
    };
    let deployment_name = name(&deployment.metadata);
    if let Some(generation) = unobserved_deployment_generation(deployment) {
        return Progress {
            done: false,
            detail: format!(
                "{deployment_name}: waiting for the controller to observe generation {generation}"
            ),
        };
    }
    let wanted = desired_replicas(deployment.spec.as_ref().and_then(|s| s.replicas));
    let status = deployment.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let done = updated == wanted && total == updated && available == updated;
    let mut detail = if done {
        format!("{deployment_name} {wanted}/{wanted} updated and available")
    } else {
        format!("{deployment_name} {updated}/{wanted} updated, {available}/{wanted} available")
    };
    if total > updated {
        detail.push_str(&format!(", {} old replica(s) left", total - updated));
    }
    Progress { done, detail }
}

/// The StatefulSet is done when its controller observed the current generation, every wanted
/// replica is ready, and it is not mid-update (`currentRevision == updateRevision`, and
/// `updatedReplicas`, when reported, equals the wanted replicas).
fn statefulset_progress(statefulset: Option<&StatefulSet>) -> Progress {
    let Some(statefulset) = statefulset else {
        return Progress {
            done: false,
            detail: format!("waiting for the StatefulSet {DATABASE} to be created"),
        };
    };
    let statefulset_name = name(&statefulset.metadata);
    if let Some(generation) = unobserved_statefulset_generation(statefulset) {
        return Progress {
            done: false,
            detail: format!(
                "{statefulset_name}: waiting for the controller to observe generation {generation}"
            ),
        };
    }
    let wanted = desired_replicas(statefulset.spec.as_ref().and_then(|s| s.replicas));
    let status = statefulset.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let same_revision = status.current_revision == status.update_revision;
    let all_updated = status
        .updated_replicas
        .is_none_or(|updated| updated == wanted);
    let mut detail = format!("{statefulset_name} {ready}/{wanted} ready");
    if !same_revision || !all_updated {
        detail.push_str(&format!(
            ", updating to revision {} ({}/{wanted} updated)",
            status.update_revision.as_deref().unwrap_or("?"),
            status.updated_replicas.unwrap_or(0)
        ));
    }
    Progress {
        done: ready == wanted && same_revision && all_updated,
        detail,
    }
}

/// The part of a log `line` from `needle` to the end of its sentence (a JSON log line's string
/// ends at `"`), at most [`MAX_QUOTE_CHARS`] characters.
fn quote<'a>(line: &'a str, needle: &str) -> &'a str {
    let start = line.find(needle).unwrap_or(0);
    let rest = &line[start..];
    let end = rest.find('"').unwrap_or(rest.len());
    let sentence = &rest[..end];
    let cut = sentence
        .char_indices()
        .nth(MAX_QUOTE_CHARS)
        .map_or(sentence.len(), |(index, _)| index);
    sentence[..cut].trim()
}

#[cfg(test)]
mod tests {
    //! The objects are written as the API returns them (`kubectl get -o json`), then read into the
    //! k8s-openapi types, so that a field name mistaken here would show as a missing value.

    use serde_json::{Value, json};

    use super::*;

    const NS: &str = "infra-challenge";
    /// The time of every snapshot.
    const NOW: &str = "2025-06-01T12:00:00Z";
    /// `pod-template-hash` of revision 2 (the rollout's) and revision 1 (the previous one).
    const NEW: &str = "7d9f8c6b5";
    const OLD: &str = "5c4b8f9d7";
    const NEW_IMAGE: &str = "infra-challenge:0.2.0";
    const OLD_IMAGE: &str = "infra-challenge:0.1.0";
    const NEW_POD: &str = "challenge-7d9f8c6b5-x2x4k";
    const MYSQL_POD: &str = "mysql-0";
    const MYSQL_REVISION: &str = "mysql-6d5f7c9b8";

    fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("an object shaped as the API returns it")
    }

    fn policy() -> Policy {
        Policy {
            now: NOW.parse().unwrap(),
            ..Policy::default()
        }
    }

    /// `seconds` before [`NOW`], as the API writes times.
    fn ago(seconds: i64) -> String {
        let now: Timestamp = NOW.parse().unwrap();
        (now - k8s_openapi::jiff::SignedDuration::from_secs(seconds)).to_string()
    }

    fn app_labels(hash: Option<&str>) -> Value {
        let mut labels = json!({
            "app.kubernetes.io/name": "challenge",
            "app.kubernetes.io/instance": "infra-challenge",
            "app.kubernetes.io/component": "api",
            "app.kubernetes.io/part-of": "infra-challenge"
        });
        if let Some(hash) = hash {
            labels["pod-template-hash"] = json!(hash);
        }
        labels
    }

    fn pod_template(image: &str, hash: Option<&str>) -> Value {
        json!({
            "metadata": { "labels": app_labels(hash) },
            "spec": {
                "initContainers": [{
                    "name": "migrate", "image": image, "imagePullPolicy": "Always",
                    "args": ["migrate", "--seed"],
                    "envFrom": [{ "configMapRef": { "name": "challenge-config" } }]
                }],
                "containers": [{
                    "name": "challenge", "image": image, "imagePullPolicy": "Always",
                    "args": ["serve"],
                    "ports": [{ "name": "http", "containerPort": 8000, "protocol": "TCP" }],
                    "readinessProbe": {
                        "httpGet": { "path": "/readyz", "port": "http", "scheme": "HTTP" },
                        "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
                        "successThreshold": 1
                    }
                }],
                "volumes": [{
                    "name": "db-password",
                    "secret": {
                        "secretName": "challenge-db",
                        "items": [{ "key": "password", "path": "password" }],
                        "defaultMode": 288
                    }
                }]
            }
        })
    }

    /// The `Progressing` condition of a Deployment.
    fn progressing(status: &str, reason: &str, message: &str) -> Value {
        json!({
            "type": "Progressing", "status": status, "reason": reason, "message": message,
            "lastUpdateTime": ago(60), "lastTransitionTime": ago(700)
        })
    }

    fn deployment_status(
        observed: i64,
        replicas: i32,
        updated: i32,
        available: i32,
        progressing: Value,
    ) -> Value {
        json!({
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": [
                {
                    "type": "Available", "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": ago(3600), "lastTransitionTime": ago(3600)
                },
                progressing
            ]
        })
    }

    /// The Deployment `challenge` at revision 2, 3 replicas wanted.
    fn deployment(generation: i64, status: Value) -> Deployment {
        from(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "challenge", "namespace": NS,
                "uid": "0b7c6c0e-6f0e-4a53-9a57-2f6f7d3e1a10", "resourceVersion": "48213",
                "generation": generation, "creationTimestamp": "2025-06-01T09:00:00Z",
                "labels": app_labels(None),
                "annotations": { "deployment.kubernetes.io/revision": "2" }
            },
            "spec": {
                "replicas": 3, "revisionHistoryLimit": 5, "minReadySeconds": 5,
                "progressDeadlineSeconds": 600,
                "selector": { "matchLabels": {
                    "app.kubernetes.io/name": "challenge",
                    "app.kubernetes.io/instance": "infra-challenge"
                } },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "25%" }
                },
                "template": pod_template(NEW_IMAGE, None)
            },
            "status": status
        }))
    }

    fn replica_set(hash: &str, revision: u32, replicas: i32, status: Value) -> ReplicaSet {
        let image = if hash == NEW { NEW_IMAGE } else { OLD_IMAGE };
        from(json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": format!("challenge-{hash}"), "namespace": NS,
                "uid": format!("5e0d2a51-{hash}"), "resourceVersion": "48200", "generation": 3,
                "creationTimestamp": "2025-06-01T09:00:00Z",
                "labels": app_labels(Some(hash)),
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": "3",
                    "deployment.kubernetes.io/max-replicas": "4",
                    "deployment.kubernetes.io/revision": revision.to_string()
                },
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "challenge",
                    "uid": "0b7c6c0e-6f0e-4a53-9a57-2f6f7d3e1a10",
                    "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "replicas": replicas, "minReadySeconds": 5,
                "selector": { "matchLabels": {
                    "app.kubernetes.io/name": "challenge",
                    "app.kubernetes.io/instance": "infra-challenge",
                    "pod-template-hash": hash
                } },
                "template": pod_template(image, Some(hash))
            },
            "status": status
        }))
    }

    /// The status of a ReplicaSet whose `replicas` pods all exist and are available.
    fn replica_set_status(replicas: i32) -> Value {
        json!({
            "replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas, "observedGeneration": 3
        })
    }

    fn app_pod(name: &str, hash: &str, status: Value) -> Pod {
        let image = if hash == NEW { NEW_IMAGE } else { OLD_IMAGE };
        let mut template = pod_template(image, Some(hash));
        template["spec"]["nodeName"] = json!("kind-worker");
        from(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name, "generateName": format!("challenge-{hash}-"), "namespace": NS,
                "uid": format!("9a1c3e5f-{name}"), "resourceVersion": "48190",
                "creationTimestamp": ago(300),
                "labels": app_labels(Some(hash)),
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("challenge-{hash}"),
                    "uid": format!("5e0d2a51-{hash}"), "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": template["spec"],
            "status": status
        }))
    }

    fn condition(type_: &str, status: &str) -> Value {
        json!({
            "type": type_, "status": status, "lastProbeTime": null,
            "lastTransitionTime": ago(250)
        })
    }

    fn terminated(exit_code: i32, reason: &str) -> Value {
        json!({ "terminated": {
            "exitCode": exit_code, "reason": reason,
            "startedAt": ago(200), "finishedAt": ago(190),
            "containerID": "containerd://4f1b2c3d4e5f60718293a4b5c6d7e8f9"
        } })
    }

    fn running() -> Value {
        json!({ "running": { "startedAt": ago(180) } })
    }

    fn waiting_state(reason: &str, message: &str) -> Value {
        json!({ "waiting": { "reason": reason, "message": message } })
    }

    fn container_status(
        name: &str,
        image: &str,
        state: Value,
        ready: bool,
        restarts: i32,
        last_state: Value,
    ) -> Value {
        json!({
            "name": name, "image": image, "imageID": "", "ready": ready,
            "restartCount": restarts, "started": ready, "state": state, "lastState": last_state
        })
    }

    /// An app pod whose `migrate` ran and whose `challenge` container is running and ready.
    fn ready_app_status(image: &str) -> Value {
        json!({
            "phase": "Running", "hostIP": "172.18.0.3", "podIP": "10.244.1.7",
            "startTime": ago(300), "qosClass": "Burstable",
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "True"),
                condition("Ready", "True"),
                condition("ContainersReady", "True"),
                condition("PodScheduled", "True")
            ],
            "initContainerStatuses": [container_status(
                "migrate", image, terminated(0, "Completed"), true, 0, json!({})
            )],
            "containerStatuses": [container_status(
                "challenge", image, running(), true, 0, json!({})
            )]
        })
    }

    /// An app pod past its init container, whose `challenge` container is in `state`.
    fn app_status(image: &str, challenge: Value) -> Value {
        json!({
            "phase": "Running", "hostIP": "172.18.0.3", "podIP": "10.244.1.7",
            "startTime": ago(300), "qosClass": "Burstable",
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "True"),
                json!({
                    "type": "Ready", "status": "False", "reason": "ContainersNotReady",
                    "message": "containers with unready status: [challenge]",
                    "lastProbeTime": null, "lastTransitionTime": ago(250)
                }),
                condition("ContainersReady", "False"),
                condition("PodScheduled", "True")
            ],
            "initContainerStatuses": [container_status(
                "migrate", image, terminated(0, "Completed"), true, 0, json!({})
            )],
            "containerStatuses": [challenge]
        })
    }

    /// An app pod still in its init container `migrate`, in status `migrate`.
    fn initialising_status(migrate: Value) -> Value {
        json!({
            "phase": "Pending", "hostIP": "172.18.0.3", "podIP": "10.244.1.7",
            "startTime": ago(300), "qosClass": "Burstable",
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                json!({
                    "type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                    "message": "containers with incomplete status: [migrate]",
                    "lastProbeTime": null, "lastTransitionTime": ago(250)
                }),
                condition("Ready", "False"),
                condition("ContainersReady", "False"),
                condition("PodScheduled", "True")
            ],
            "initContainerStatuses": [migrate],
            "containerStatuses": [container_status(
                "challenge", NEW_IMAGE, waiting_state("PodInitializing", ""), false, 0, json!({})
            )]
        })
    }

    fn statefulset(status: Value) -> StatefulSet {
        from(json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "mysql", "namespace": NS, "generation": 1,
                "uid": "c3d2e1f0-1111-4222-8333-944455556666", "resourceVersion": "40001",
                "creationTimestamp": "2025-06-01T09:00:00Z",
                "labels": { "app.kubernetes.io/name": "mysql", "app.kubernetes.io/component": "database" }
            },
            "spec": {
                "replicas": 1, "serviceName": "mysql-headless", "podManagementPolicy": "OrderedReady",
                "selector": { "matchLabels": { "app.kubernetes.io/name": "mysql" } },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
                "template": {
                    "metadata": { "labels": { "app.kubernetes.io/name": "mysql" } },
                    "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.4" }] }
                }
            },
            "status": status
        }))
    }

    fn ready_statefulset_status() -> Value {
        json!({
            "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
            "currentReplicas": 1, "updatedReplicas": 1, "collisionCount": 0,
            "currentRevision": MYSQL_REVISION, "updateRevision": MYSQL_REVISION
        })
    }

    fn mysql_pod(status: Value) -> Pod {
        from(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": MYSQL_POD, "generateName": "mysql-", "namespace": NS,
                "uid": "77aa88bb-99cc-4ddd-8eee-ff0011223344", "creationTimestamp": ago(3600),
                "labels": {
                    "app.kubernetes.io/name": "mysql",
                    "controller-revision-hash": MYSQL_REVISION,
                    "statefulset.kubernetes.io/pod-name": MYSQL_POD
                },
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "mysql",
                    "uid": "c3d2e1f0-1111-4222-8333-944455556666",
                    "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "containers": [{ "name": "mysql", "image": "mysql:8.4" }],
                "volumes": [{ "name": "secrets", "secret": {
                    "secretName": "mysql",
                    "items": [
                        { "key": "root-password", "path": "root-password" },
                        { "key": "password", "path": "password" }
                    ]
                } }]
            },
            "status": status
        }))
    }

    fn mysql_status(mysql: Value, ready: bool) -> Value {
        let ready = if ready { "True" } else { "False" };
        json!({
            "phase": "Running", "podIP": "10.244.2.4", "startTime": ago(3600),
            "conditions": [
                condition("Initialized", "True"),
                condition("Ready", ready),
                condition("ContainersReady", ready),
                condition("PodScheduled", "True")
            ],
            "containerStatuses": [mysql]
        })
    }

    fn ready_mysql_pod() -> Pod {
        mysql_pod(mysql_status(
            container_status(
                "mysql",
                "docker.io/library/mysql:8.4",
                running(),
                true,
                0,
                json!({}),
            ),
            true,
        ))
    }

    /// A core/v1 event as the controllers and the kubelet write them.
    fn event(kind: &str, name: &str, type_: &str, reason: &str, message: &str, at: i64) -> Value {
        let (api_version, component) = match kind {
            "Pod" => ("v1", "kubelet"),
            "ReplicaSet" => ("apps/v1", "replicaset-controller"),
            "StatefulSet" => ("apps/v1", "statefulset-controller"),
            _ => ("apps/v1", "deployment-controller"),
        };
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{name}.18{at:014x}"), "namespace": NS,
                "uid": format!("e0e0e0e0-{at}"), "resourceVersion": "48000",
                "creationTimestamp": ago(at)
            },
            "involvedObject": {
                "apiVersion": api_version, "kind": kind, "name": name, "namespace": NS,
                "uid": format!("5e0d2a51-{name}"), "resourceVersion": "47000"
            },
            "reason": reason, "message": message, "type": type_,
            "source": { "component": component, "host": "kind-worker" },
            "firstTimestamp": ago(at + 30), "lastTimestamp": ago(at), "count": 3,
            "eventTime": null, "reportingComponent": component, "reportingInstance": "kind-worker"
        })
    }

    /// A kubelet event about one container of a pod (`fieldPath` names it).
    fn container_event(pod: &str, container: &str, reason: &str, message: &str, at: i64) -> Value {
        let mut event = event("Pod", pod, "Warning", reason, message, at);
        event["involvedObject"]["fieldPath"] = json!(format!("spec.containers{{{container}}}"));
        event
    }

    fn events(events: Vec<Value>) -> Vec<Event> {
        events.into_iter().map(from).collect()
    }

    /// Revision 2 fully rolled out: 3 ready pods, revision 1's ReplicaSet scaled to zero, the
    /// database ready.
    fn complete() -> Snapshot {
        let done = progressing(
            "True",
            "NewReplicaSetAvailable",
            "ReplicaSet \"challenge-7d9f8c6b5\" has successfully progressed.",
        );
        Snapshot {
            deployment: Some(deployment(2, deployment_status(2, 3, 3, 3, done))),
            replica_sets: vec![
                replica_set(OLD, 1, 0, json!({ "replicas": 0, "observedGeneration": 4 })),
                replica_set(NEW, 2, 3, replica_set_status(3)),
            ],
            statefulset: Some(statefulset(ready_statefulset_status())),
            pods: vec![
                app_pod(
                    "challenge-7d9f8c6b5-x2x4k",
                    NEW,
                    ready_app_status(NEW_IMAGE),
                ),
                app_pod(
                    "challenge-7d9f8c6b5-k9m2p",
                    NEW,
                    ready_app_status(NEW_IMAGE),
                ),
                app_pod(
                    "challenge-7d9f8c6b5-q4w8z",
                    NEW,
                    ready_app_status(NEW_IMAGE),
                ),
                ready_mysql_pod(),
            ],
            events: events(vec![event(
                "Deployment",
                "challenge",
                "Normal",
                "ScalingReplicaSet",
                "Scaled down replica set challenge-5c4b8f9d7 from 1 to 0",
                20,
            )]),
        }
    }

    /// Revision 2 rolling out: revision 1's 3 pods still serve, revision 2's first pod (`new_pod`)
    /// is starting, the database is ready.
    fn rolling(new_pod: Pod) -> Snapshot {
        let rolling = progressing(
            "True",
            "ReplicaSetUpdated",
            "ReplicaSet \"challenge-7d9f8c6b5\" is progressing.",
        );
        Snapshot {
            deployment: Some(deployment(2, deployment_status(2, 4, 1, 3, rolling))),
            replica_sets: vec![
                replica_set(OLD, 1, 3, replica_set_status(3)),
                replica_set(NEW, 2, 1, json!({ "replicas": 1, "observedGeneration": 1 })),
            ],
            statefulset: Some(statefulset(ready_statefulset_status())),
            pods: vec![
                app_pod(
                    "challenge-5c4b8f9d7-a1b2c",
                    OLD,
                    ready_app_status(OLD_IMAGE),
                ),
                app_pod(
                    "challenge-5c4b8f9d7-d3e4f",
                    OLD,
                    ready_app_status(OLD_IMAGE),
                ),
                app_pod(
                    "challenge-5c4b8f9d7-g5h6j",
                    OLD,
                    ready_app_status(OLD_IMAGE),
                ),
                ready_mysql_pod(),
                new_pod,
            ],
            events: Vec::new(),
        }
    }

    fn failure(verdict: Verdict) -> Failure {
        match verdict {
            Verdict::Failed(failure) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn progressing_detail(verdict: Verdict) -> String {
        match verdict {
            Verdict::Progressing { detail } => detail,
            other => panic!("expected progress, got {other:?}"),
        }
    }

    #[test]
    fn a_completed_rollout_is_complete() {
        let verdict = assess(&complete(), &policy());
        assert_eq!(
            verdict,
            Verdict::Complete {
                detail: "challenge 3/3 updated and available; mysql 1/1 ready".into()
            }
        );
    }

    #[test]
    fn a_container_that_restarted_long_ago_but_is_ready_now_does_not_fail() {
        let mut snapshot = complete();
        snapshot.pods[3] = mysql_pod(mysql_status(
            container_status(
                "mysql",
                "docker.io/library/mysql:8.4",
                running(),
                true,
                4,
                terminated(137, "Error"),
            ),
            true,
        ));
        assert!(matches!(
            assess(&snapshot, &policy()),
            Verdict::Complete { .. }
        ));
    }

    #[test]
    fn nothing_created_yet_is_awaited() {
        let detail = progressing_detail(assess(&Snapshot::default(), &policy()));
        assert_eq!(
            detail,
            "waiting for the Deployment challenge to be created; \
             waiting for the StatefulSet mysql to be created"
        );
    }

    #[test]
    fn a_status_the_controller_wrote_for_the_previous_generation_is_not_trusted() {
        // The new spec (generation 3) was just applied: the status, still of generation 2, says
        // complete, and even carries a stale deadline condition of an earlier rollout; the pods
        // it knows are those of the previous revision, one of them crashing.
        let stale = progressing(
            "False",
            PROGRESS_DEADLINE_EXCEEDED,
            "ReplicaSet \"challenge-7d9f8c6b5\" has timed out progressing.",
        );
        let mut snapshot = complete();
        snapshot.deployment = Some(deployment(3, deployment_status(2, 3, 3, 3, stale)));
        snapshot.pods[0] = app_pod(
            NEW_POD,
            NEW,
            app_status(
                NEW_IMAGE,
                container_status(
                    "challenge",
                    NEW_IMAGE,
                    waiting_state(CRASH_LOOP, "back-off 40s restarting failed container"),
                    false,
                    3,
                    terminated(1, "Error"),
                ),
            ),
        );
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert!(
            detail.starts_with("challenge: waiting for the controller to observe generation 3"),
            "{detail}"
        );
        assert!(detail.ends_with("mysql 1/1 ready"), "{detail}");
    }

    #[test]
    fn old_replicas_still_present_are_awaited() {
        // All 3 new pods are available, one old pod is still terminating its way out.
        let mut snapshot = complete();
        let rolling = progressing(
            "True",
            "ReplicaSetUpdated",
            "ReplicaSet \"challenge-7d9f8c6b5\" is progressing.",
        );
        snapshot.deployment = Some(deployment(2, deployment_status(2, 4, 3, 3, rolling)));
        snapshot.replica_sets[0] = replica_set(OLD, 1, 1, replica_set_status(1));
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert_eq!(
            detail,
            "challenge 3/3 updated, 3/3 available, 1 old replica(s) left; mysql 1/1 ready"
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_fails_naming_the_image() {
        let migrate = container_status(
            "migrate",
            NEW_IMAGE,
            waiting_state(
                "ImagePullBackOff",
                "Back-off pulling image \"infra-challenge:0.2.0\"",
            ),
            false,
            0,
            json!({}),
        );
        let mut snapshot = rolling(app_pod(NEW_POD, NEW, initialising_status(migrate)));
        // Listed newest first: the evidence is ordered by time, not by the list.
        snapshot.events = events(vec![
            event(
                "Pod",
                NEW_POD,
                "Warning",
                "BackOff",
                "Back-off pulling image \"infra-challenge:0.2.0\"",
                5,
            ),
            event(
                "Pod",
                NEW_POD,
                "Warning",
                "Failed",
                "Failed to pull image \"infra-challenge:0.2.0\": rpc error: code = NotFound desc = \
                 failed to pull and unpack image \"docker.io/library/infra-challenge:0.2.0\": not found",
                35,
            ),
            event(
                "Pod",
                NEW_POD,
                "Normal",
                "Pulling",
                "Pulling image \"infra-challenge:0.2.0\"",
                40,
            ),
        ]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure
                .cause
                .contains("image `infra-challenge:0.2.0` of container `migrate`"),
            "{}",
            failure.cause
        );
        assert!(
            failure.cause.contains("cannot be pulled"),
            "{}",
            failure.cause
        );
        let fix = failure.fix.unwrap();
        assert!(fix.contains("deployer build"), "{fix}");
        assert!(
            fix.contains("kind load docker-image infra-challenge:0.2.0"),
            "{fix}"
        );
        assert_eq!(failure.pod.as_deref(), Some(NEW_POD));
        assert_eq!(failure.container.as_deref(), Some("migrate"));
        assert_eq!(failure.reason.as_deref(), Some("ImagePullBackOff"));
        assert!(failure.logs.is_empty());
        // Warnings only, newest last.
        assert_eq!(failure.events.len(), 2, "{:?}", failure.events);
        assert!(
            failure.events[0].starts_with("Pod/challenge-7d9f8c6b5-x2x4k: Failed: Failed to pull")
        );
        assert_eq!(
            failure.events[1],
            "Pod/challenge-7d9f8c6b5-x2x4k: BackOff: Back-off pulling image \"infra-challenge:0.2.0\""
        );
    }

    #[test]
    fn a_crash_loop_fails_with_the_exit_and_asks_for_the_previous_log() {
        let challenge = container_status(
            "challenge",
            NEW_IMAGE,
            waiting_state(
                CRASH_LOOP,
                "back-off 40s restarting failed container=challenge \
                 pod=challenge-7d9f8c6b5-x2x4k_infra-challenge(9a1c3e5f)",
            ),
            false,
            3,
            terminated(1, "Error"),
        );
        let mut snapshot = rolling(app_pod(NEW_POD, NEW, app_status(NEW_IMAGE, challenge)));
        snapshot.events = events(vec![container_event(
            NEW_POD,
            "challenge",
            "BackOff",
            "Back-off restarting failed container challenge in pod challenge-7d9f8c6b5-x2x4k",
            3,
        )]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure.cause.contains(
                "Container `challenge` of pod `challenge-7d9f8c6b5-x2x4k` keeps crashing: its last \
                 run exited with code 1 (Error), restarted 3 times"
            ),
            "{}",
            failure.cause
        );
        assert_eq!(failure.exit_code, Some(1));
        assert_eq!(failure.reason.as_deref(), Some(CRASH_LOOP));
        assert_eq!(
            failure.logs,
            vec![LogSource {
                pod: NEW_POD.into(),
                container: "challenge".into(),
                previous: true
            }]
        );
        assert_eq!(
            failure.events,
            vec![
                "Pod/challenge-7d9f8c6b5-x2x4k: BackOff: Back-off restarting failed container \
                 challenge in pod challenge-7d9f8c6b5-x2x4k"
                    .to_string()
            ]
        );
    }

    #[test]
    fn the_evidence_is_the_last_five_warnings_newest_last() {
        let challenge = container_status(
            "challenge",
            NEW_IMAGE,
            waiting_state(CRASH_LOOP, "back-off 2m40s restarting failed container"),
            false,
            6,
            terminated(2, "Error"),
        );
        let mut snapshot = rolling(app_pod(NEW_POD, NEW, app_status(NEW_IMAGE, challenge)));
        let mut warnings: Vec<Value> = (1..=7)
            .map(|n| {
                let message = format!("Back-off restarting failed container challenge ({n})");
                container_event(NEW_POD, "challenge", "BackOff", &message, 100 - n * 10)
            })
            .collect();
        // Warnings about other objects (an old pod, another Deployment) are no evidence.
        warnings.push(event(
            "Pod",
            "challenge-5c4b8f9d7-a1b2c",
            "Warning",
            "Unhealthy",
            "Readiness probe failed",
            1,
        ));
        warnings.push(event(
            "Deployment",
            "other",
            "Warning",
            "Oops",
            "unrelated",
            1,
        ));
        snapshot.events = events(warnings);
        let failure = failure(assess(&snapshot, &policy()));
        let numbers: Vec<&str> = failure
            .events
            .iter()
            .map(|line| line.rsplit('(').next().unwrap())
            .collect();
        assert_eq!(numbers, ["3)", "4)", "5)", "6)", "7)"]);
        assert!(failure.events[4].starts_with("Pod/challenge-7d9f8c6b5-x2x4k: BackOff: "));
    }

    #[test]
    fn a_database_image_that_cannot_be_pulled_is_not_the_deployer_s_to_push() {
        let mysql = container_status(
            "mysql",
            "mysql:8.44",
            waiting_state(
                "ErrImagePull",
                "failed to pull and unpack image \"docker.io/library/mysql:8.44\": not found",
            ),
            false,
            0,
            json!({}),
        );
        let mut snapshot = complete();
        snapshot.pods[3] = mysql_pod(mysql_status(mysql, false));
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure
                .cause
                .contains("image `mysql:8.44` of container `mysql` in pod `mysql-0`"),
            "{}",
            failure.cause
        );
        let fix = failure.fix.unwrap();
        assert!(fix.contains("exists (name and tag)"), "{fix}");
        assert!(!fix.contains("kind load"), "{fix}");
    }

    #[test]
    fn restarts_fail_before_the_kubelet_says_crash_loop() {
        // Running again after 2 restarts, not ready: killed for memory each time.
        let challenge = container_status(
            "challenge",
            NEW_IMAGE,
            running(),
            false,
            2,
            terminated(137, OUT_OF_MEMORY),
        );
        let snapshot = rolling(app_pod(NEW_POD, NEW, app_status(NEW_IMAGE, challenge)));
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure.cause.contains("exceeding its memory limit"),
            "{}",
            failure.cause
        );
        assert!(failure.fix.unwrap().contains("resources.limits.memory"));
        assert_eq!(failure.exit_code, Some(137));
        assert!(failure.logs[0].previous);
    }

    #[test]
    fn old_revision_pods_in_crash_loop_do_not_fail_the_new_revision() {
        let crashing_old = app_pod(
            "challenge-5c4b8f9d7-a1b2c",
            OLD,
            app_status(
                OLD_IMAGE,
                container_status(
                    "challenge",
                    OLD_IMAGE,
                    waiting_state(CRASH_LOOP, "back-off 5m0s restarting failed container"),
                    false,
                    12,
                    terminated(1, "Error"),
                ),
            ),
        );
        let starting_new = app_pod(
            NEW_POD,
            NEW,
            app_status(
                NEW_IMAGE,
                container_status("challenge", NEW_IMAGE, running(), false, 0, json!({})),
            ),
        );
        let mut snapshot = rolling(starting_new);
        snapshot.pods[0] = crashing_old;
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert_eq!(
            detail,
            "challenge 1/3 updated, 3/3 available, 3 old replica(s) left; mysql 1/1 ready"
        );
    }

    fn failing_migrate(state: Value, restarts: i32, last_state: Value) -> Pod {
        let migrate = container_status("migrate", NEW_IMAGE, state, false, restarts, last_state);
        app_pod(NEW_POD, NEW, initialising_status(migrate))
    }

    #[test]
    fn migrations_failing_repeatedly_fail_with_the_migrate_log() {
        // Just ended, for the 4th time: its current log is the failed run's.
        let pod = failing_migrate(terminated(1, "Error"), 3, terminated(1, "Error"));
        let failure = failure(assess(&rolling(pod), &policy()));
        assert!(
            failure
                .cause
                .starts_with("The database migrations fail: init container `migrate`"),
            "{}",
            failure.cause
        );
        assert!(
            failure
                .cause
                .contains("exited with code 1 (Error), restarted 3 times")
        );
        assert_eq!(failure.container.as_deref(), Some(MIGRATE));
        assert_eq!(failure.exit_code, Some(1));
        assert_eq!(
            failure.logs,
            vec![LogSource {
                pod: NEW_POD.into(),
                container: MIGRATE.into(),
                previous: false
            }]
        );
    }

    #[test]
    fn migrations_in_crash_loop_fail_once_the_database_is_ready() {
        let crash_loop = waiting_state(
            CRASH_LOOP,
            "back-off 10s restarting failed container=migrate pod=challenge-7d9f8c6b5-x2x4k",
        );
        let pod = failing_migrate(crash_loop, 1, terminated(1, "Error"));

        // The database is ready: waiting changes nothing.
        let failure = failure(assess(&rolling(pod.clone()), &policy()));
        assert!(
            failure.cause.contains("migrations fail"),
            "{}",
            failure.cause
        );
        assert_eq!(
            failure.logs,
            vec![LogSource {
                pod: NEW_POD.into(),
                container: MIGRATE.into(),
                previous: true
            }]
        );

        // The database is still initialising its volume: the kubelet's retries may succeed.
        let mut snapshot = rolling(pod);
        let mut starting = ready_statefulset_status();
        starting["readyReplicas"] = json!(0);
        starting["availableReplicas"] = json!(0);
        snapshot.statefulset = Some(statefulset(starting));
        snapshot.pods[3] = mysql_pod(mysql_status(
            container_status(
                "mysql",
                "docker.io/library/mysql:8.4",
                running(),
                false,
                0,
                json!({}),
            ),
            false,
        ));
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert!(detail.contains("mysql 0/1 ready"), "{detail}");
        assert!(
            detail.contains(
                "pod challenge-7d9f8c6b5-x2x4k: migrate failed while the database is not ready yet"
            ),
            "{detail}"
        );
    }

    fn unschedulable_pod(since_seconds: i64) -> Pod {
        app_pod(
            NEW_POD,
            NEW,
            json!({
                "phase": "Pending", "qosClass": "Burstable",
                "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes \
                                are available: 3 No preemption victims found for incoming pod.",
                    "lastProbeTime": null, "lastTransitionTime": ago(since_seconds)
                }]
            }),
        )
    }

    /// The scheduler writes events.k8s.io events: `eventTime` and `series`, no `lastTimestamp`.
    fn failed_scheduling(seconds_ago: i64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": { "name": "challenge-7d9f8c6b5-x2x4k.184b", "namespace": NS },
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "name": NEW_POD, "namespace": NS,
                "uid": "9a1c3e5f", "resourceVersion": "48101"
            },
            "reason": "FailedScheduling", "type": "Warning",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
            "source": {}, "firstTimestamp": null, "lastTimestamp": null,
            "eventTime": "2025-06-01T11:58:00.123456Z",
            "series": { "count": 4, "lastObservedTime": format!("{}", ago(seconds_ago)) },
            "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-kind"
        })
    }

    #[test]
    fn an_unschedulable_pod_is_awaited_during_the_grace() {
        let mut snapshot = rolling(unschedulable_pod(10));
        snapshot.events = events(vec![failed_scheduling(2)]);
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert!(
            detail.contains(
                "pod challenge-7d9f8c6b5-x2x4k unschedulable for 10s: 0/3 nodes are available: 3 \
                 Insufficient cpu."
            ),
            "{detail}"
        );
        assert!(detail.starts_with("challenge 1/3 updated"), "{detail}");
    }

    #[test]
    fn an_unschedulable_pod_fails_after_the_grace() {
        let mut snapshot = rolling(unschedulable_pod(45));
        snapshot.events = events(vec![failed_scheduling(2)]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure
                .cause
                .contains("Pod `challenge-7d9f8c6b5-x2x4k` cannot be scheduled (for 45s"),
            "{}",
            failure.cause
        );
        assert!(
            failure
                .cause
                .contains("0/3 nodes are available: 3 Insufficient cpu."),
            "{}",
            failure.cause
        );
        assert_eq!(failure.reason.as_deref(), Some("Unschedulable"));
        assert!(failure.fix.unwrap().contains("resource requests"));
        assert_eq!(
            failure.events,
            vec![
                "Pod/challenge-7d9f8c6b5-x2x4k: FailedScheduling: 0/3 nodes are available: 3 \
                 Insufficient cpu."
                    .to_string()
            ]
        );
    }

    const QUOTA_MESSAGE: &str = "pods \"challenge-7d9f8c6b5-p8x7d\" is forbidden: exceeded quota: \
        compute, requested: limits.cpu=500m, used: limits.cpu=2, limited: limits.cpu=2";

    /// Revision 2's ReplicaSet wants a pod and has none: the API refused it.
    fn refused_rollout(conditions: Value) -> Snapshot {
        let rolling = progressing(
            "True",
            "ReplicaSetUpdated",
            "ReplicaSet \"challenge-7d9f8c6b5\" is progressing.",
        );
        let mut snapshot = rolling_without_new_pod();
        snapshot.deployment = Some(deployment(2, deployment_status(2, 3, 0, 3, rolling)));
        snapshot.replica_sets[1] = replica_set(
            NEW,
            2,
            1,
            json!({ "replicas": 0, "observedGeneration": 1, "conditions": conditions }),
        );
        snapshot
    }

    fn rolling_without_new_pod() -> Snapshot {
        let mut snapshot = rolling(ready_mysql_pod());
        snapshot.pods.pop();
        snapshot
    }

    #[test]
    fn a_replica_set_refused_by_a_quota_fails_quoting_the_quota() {
        let mut snapshot = refused_rollout(json!([{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": QUOTA_MESSAGE, "lastTransitionTime": ago(20)
        }]));
        snapshot.events = events(vec![event(
            "ReplicaSet",
            "challenge-7d9f8c6b5",
            "Warning",
            "FailedCreate",
            &format!("Error creating: {QUOTA_MESSAGE}"),
            4,
        )]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure.cause.starts_with(
                "ReplicaSet `challenge-7d9f8c6b5` cannot create its pods (a ResourceQuota of the \
                 namespace is used up): pods \"challenge-7d9f8c6b5-p8x7d\" is forbidden: exceeded \
                 quota: compute"
            ),
            "{}",
            failure.cause
        );
        assert!(
            failure
                .fix
                .unwrap()
                .contains("kubectl -n infra-challenge describe resourcequota")
        );
        assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(failure.events.len(), 1);
        assert!(
            failure.events[0]
                .starts_with("ReplicaSet/challenge-7d9f8c6b5: FailedCreate: Error creating: pods")
        );
    }

    #[test]
    fn a_failed_create_event_alone_fails_the_rollout() {
        let mut snapshot = refused_rollout(json!([]));
        snapshot.events = events(vec![event(
            "ReplicaSet",
            "challenge-7d9f8c6b5",
            "Warning",
            "FailedCreate",
            "Error creating: pods \"challenge-7d9f8c6b5-p8x7d\" is forbidden: violates PodSecurity \
             \"restricted:latest\": allowPrivilegeEscalation != false (container \"challenge\" must \
             set securityContext.allowPrivilegeEscalation=false)",
            4,
        )]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure
                .cause
                .contains("the pods violate the namespace's Pod Security Standard"),
            "{}",
            failure.cause
        );
        assert!(failure.cause.contains("allowPrivilegeEscalation != false"));
        // The same event on an old ReplicaSet (or once the pod exists) does not count.
        let mut created = snapshot.clone();
        created.replica_sets[1] = replica_set(NEW, 2, 1, replica_set_status(1));
        assert!(matches!(
            assess(&created, &policy()),
            Verdict::Progressing { .. }
        ));
    }

    #[test]
    fn a_deadline_passed_with_failing_readiness_names_the_pod_and_the_http_status() {
        let deadline = progressing(
            "False",
            PROGRESS_DEADLINE_EXCEEDED,
            "ReplicaSet \"challenge-7d9f8c6b5\" has timed out progressing.",
        );
        let running_unready =
            container_status("challenge", NEW_IMAGE, running(), false, 0, json!({}));
        let mut snapshot = rolling(app_pod(
            NEW_POD,
            NEW,
            app_status(NEW_IMAGE, running_unready),
        ));
        snapshot.deployment = Some(deployment(2, deployment_status(2, 4, 1, 3, deadline)));
        snapshot.events = events(vec![
            // The latest by time, not by place in the list, says why.
            container_event(
                NEW_POD,
                "challenge",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                2,
            ),
            container_event(
                NEW_POD,
                "challenge",
                "Unhealthy",
                "Readiness probe failed: Get \"http://10.244.1.7:8000/readyz\": dial tcp \
                 10.244.1.7:8000: connect: connection refused",
                590,
            ),
            event(
                "Deployment",
                "challenge",
                "Normal",
                "ScalingReplicaSet",
                "Scaled up replica set challenge-7d9f8c6b5 from 0 to 1",
                600,
            ),
        ]);
        let failure = failure(assess(&snapshot, &policy()));
        assert_eq!(
            failure.cause,
            "Deployment `challenge` made no progress within its 600s progress deadline: pod is \
             not ready: `challenge-7d9f8c6b5-x2x4k` (the readiness probe got HTTP 503)"
        );
        assert!(failure.fix.unwrap().contains("`/readyz` answers 503"));
        assert_eq!(failure.pod.as_deref(), Some(NEW_POD));
        assert_eq!(failure.container.as_deref(), Some("challenge"));
        assert_eq!(failure.reason.as_deref(), Some(PROGRESS_DEADLINE_EXCEEDED));
        assert_eq!(
            failure.logs,
            vec![LogSource {
                pod: NEW_POD.into(),
                container: "challenge".into(),
                previous: false
            }]
        );
        assert_eq!(failure.events.len(), 2, "{:?}", failure.events);
        assert_eq!(
            failure.events[1],
            "Pod/challenge-7d9f8c6b5-x2x4k: Unhealthy: Readiness probe failed: HTTP probe failed \
             with statuscode: 503"
        );
    }

    #[test]
    fn a_statefulset_mid_update_is_awaited() {
        let mut snapshot = complete();
        let mut updating = ready_statefulset_status();
        updating["updateRevision"] = json!("mysql-84c6d9f7b5");
        // `updatedReplicas: 0` is omitted by the API.
        updating.as_object_mut().unwrap().remove("updatedReplicas");
        snapshot.statefulset = Some(statefulset(updating));
        let detail = progressing_detail(assess(&snapshot, &policy()));
        assert_eq!(
            detail,
            "challenge 3/3 updated and available; mysql 1/1 ready, updating to revision \
             mysql-84c6d9f7b5 (0/1 updated)"
        );
    }

    #[test]
    fn a_missing_secret_fails_saying_how_to_create_it() {
        let migrate = container_status(
            "migrate",
            NEW_IMAGE,
            waiting_state(CONFIG_ERROR, "secret \"challenge-db\" not found"),
            false,
            0,
            json!({}),
        );
        let snapshot = rolling(app_pod(NEW_POD, NEW, initialising_status(migrate)));
        let failure = failure(assess(&snapshot, &policy()));
        assert_eq!(
            failure.cause,
            "Container `migrate` of pod `challenge-7d9f8c6b5-x2x4k` cannot be created: Secret \
             `challenge-db` does not exist (secret \"challenge-db\" not found)"
        );
        let fix = failure.fix.unwrap();
        assert!(fix.contains("`deployer deploy` again"), "{fix}");
        assert!(
            fix.contains(
                "kubectl -n infra-challenge create secret generic challenge-db \
                 --from-literal=password=..."
            ),
            "{fix}"
        );
        assert!(fix.contains("`password` key of Secret `mysql`"), "{fix}");
        assert_eq!(failure.reason.as_deref(), Some(CONFIG_ERROR));
        assert_eq!(
            failure.message.as_deref(),
            Some("secret \"challenge-db\" not found")
        );
    }

    #[test]
    fn a_missing_secret_key_in_the_database_fails_before_the_app_is_looked_at() {
        let mysql = container_status(
            "mysql",
            "mysql:8.4",
            waiting_state(
                CONFIG_ERROR,
                "couldn't find key password in Secret infra-challenge/mysql",
            ),
            false,
            0,
            json!({}),
        );
        let mut snapshot = rolling(unschedulable_pod(300));
        snapshot.pods[3] = mysql_pod(mysql_status(mysql, false));
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure
                .cause
                .contains("Secret `mysql` has no key `password`"),
            "{}",
            failure.cause
        );
        assert!(failure.fix.unwrap().contains("patch secret mysql"));
        assert_eq!(failure.pod.as_deref(), Some(MYSQL_POD));
    }

    #[test]
    fn a_secret_volume_that_cannot_be_mounted_fails() {
        let migrate = container_status(
            "migrate",
            NEW_IMAGE,
            waiting_state("PodInitializing", ""),
            false,
            0,
            json!({}),
        );
        let mut snapshot = rolling(app_pod(NEW_POD, NEW, initialising_status(migrate)));
        snapshot.events = events(vec![event(
            "Pod",
            NEW_POD,
            "Warning",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"db-password\" : secret \"challenge-db\" not found",
            8,
        )]);
        let failure = failure(assess(&snapshot, &policy()));
        assert!(
            failure.cause.starts_with(
                "Pod `challenge-7d9f8c6b5-x2x4k` cannot start: Secret `challenge-db` does not exist"
            ),
            "{}",
            failure.cause
        );
        assert_eq!(failure.reason.as_deref(), Some("FailedMount"));
        assert!(
            failure
                .fix
                .unwrap()
                .contains("create secret generic challenge-db")
        );
    }

    #[test]
    fn a_missing_key_of_a_mounted_secret_is_found_through_the_volume() {
        let message = "MountVolume.SetUp failed for volume \"secrets\" : references non-existent secret key: \
             root-password";
        let pod = mysql_pod(json!({ "phase": "Pending" }));
        assert_eq!(
            MissingReference::in_mount_message(message, &pod),
            Some(MissingReference {
                kind: "Secret",
                name: "mysql".into(),
                key: Some("root-password".into())
            })
        );
    }

    #[test]
    fn probe_messages_are_said_in_a_few_words() {
        assert_eq!(
            describe_probe_failure(
                "Readiness probe failed: HTTP probe failed with statuscode: 503"
            ),
            "the readiness probe got HTTP 503"
        );
        assert_eq!(
            describe_probe_failure(
                "Liveness probe failed: Get \"http://10.244.1.7:8000/healthz\": context deadline \
                 exceeded (Client.Timeout exceeded while awaiting headers)"
            ),
            "the liveness probe timed out"
        );
    }

    #[test]
    fn access_denied_in_the_logs_means_the_credentials_differ() {
        let pod = failing_migrate(terminated(1, "Error"), 3, terminated(1, "Error"));
        let failure = failure(assess(&rolling(pod), &policy()));
        let source = failure.logs[0].clone();
        let lines = vec![
            r#"{"timestamp":"2025-06-01T11:59:50Z","level":"WARN","fields":{"message":"database not usable yet","retry_in_ms":250}}"#.to_string(),
            r#"{"timestamp":"2025-06-01T11:59:51Z","level":"ERROR","fields":{"message":"migration failed","error":"cannot reach the database: error returned from database: 1045 (28000): Access denied for user 'challenge'@'10.244.1.7' (using password: YES)"}}"#.to_string(),
        ];
        let refined = refine(failure.clone(), &[(source, lines)]);
        assert_eq!(
            refined.cause,
            "The database refuses the app's credentials (`migrate` in pod \
             `challenge-7d9f8c6b5-x2x4k` logged \"Access denied for user \
             'challenge'@'10.244.1.7' (using password: YES)\")"
        );
        let fix = refined.fix.as_deref().unwrap();
        assert!(
            fix.contains(
                "the Secret `challenge-db` key `password` must equal the `password` key of Secret \
                 `mysql`, which the database was initialised with"
            ),
            "{fix}"
        );
        // The evidence stays.
        assert_eq!(refined.pod, failure.pod);
        assert_eq!(refined.exit_code, Some(1));
        assert_eq!(refined.logs, failure.logs);

        // A migration that ran and failed, in the app's last words on stderr.
        let last_words = vec![
            "challenge: migration 3 (add due date) failed: while executing migration 3: error \
             returned from database: 1060 (42S21): Duplicate column name 'due_at'"
                .to_string(),
        ];
        let refined = refine(failure.clone(), &[(failure.logs[0].clone(), last_words)]);
        assert!(
            refined.cause.starts_with(
                "A database migration fails (`migrate` in pod `challenge-7d9f8c6b5-x2x4k` logged \
                 \"challenge: migration 3 (add due date) failed: while executing migration 3"
            ),
            "{}",
            refined.cause
        );

        // Logs without a known message change nothing.
        let quiet = vec!["listening on 0.0.0.0:8000".to_string()];
        assert_eq!(
            refine(failure.clone(), &[(failure.logs[0].clone(), quiet)]),
            failure
        );
    }
}
