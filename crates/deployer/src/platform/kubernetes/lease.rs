//! One operation at a time per Kubernetes environment: a `coordination.k8s.io/v1` Lease named
//! [`LEASE_NAME`] in the environment's namespace, the object Kubernetes' own leader elections use.
//!
//! Unlike a file lock, nothing releases a Lease when its holder dies: it counts only while its
//! holder renews it ([`RENEW_EVERY`]) within [`DURATION`] of the last renewal, so a killed
//! deployer's Lease is free again 30 s later. Every write names the resourceVersion it read
//! (optimistic concurrency): of two deployers racing for a free or expired Lease, the API server
//! lets exactly one write succeed and answers the other 409, so two can never both win.
//!
//! The decisions (who holds it, is it free, what to write) are pure functions over the Lease,
//! unit-tested here; [`take`], [`holder`], [`break_lease`] and [`LeaseGuard`] do the I/O.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::platform::{LockGuard, LockInfo, Locking};

/// The Lease's name in the environment's namespace.
pub const LEASE_NAME: &str = "infra-challenge-deployer";
/// How long a Lease counts after its last renewal: a dead holder's lock is free after this.
pub const DURATION: Duration = Duration::from_secs(30);
/// How often the holder renews it: two renewals may fail before the Lease expires.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// One request about the Lease may take this long (a renewal or release must never hang).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Annotation: the operation holding the lock (`deploy`, `rollback`, `down`).
pub const OPERATION_ANNOTATION: &str = "deployer.infra-challenge.dev/operation";
/// Annotation: the version the operation deploys.
pub const VERSION_ANNOTATION: &str = "deployer.infra-challenge.dev/version";
/// Annotation: the environment the lock is of.
pub const ENVIRONMENT_ANNOTATION: &str = "deployer.infra-challenge.dev/environment";

/// The holder's details as the Lease records them.
pub fn info_of(lease: &Lease) -> LockInfo {
    let spec = lease.spec.clone().unwrap_or_default();
    let annotation = |key: &str| {
        lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    };
    let renewed = spec.renew_time.as_ref().map(|t| offset(t.0));
    let since = spec
        .acquire_time
        .as_ref()
        .map(|t| offset(t.0))
        .or(renewed)
        .or_else(|| {
            lease
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| offset(t.0))
        })
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let expires = renewed.or(Some(since)).map(|t| t + duration_of(&spec));
    LockInfo {
        holder: spec
            .holder_identity
            .clone()
            .unwrap_or_else(|| "nobody".to_string()),
        operation: annotation(OPERATION_ANNOTATION),
        version: annotation(VERSION_ANNOTATION),
        since,
        renewed,
        expires,
    }
}

/// The holder of `lease` if it still counts at `now`: someone holds it and renewed it within its
/// duration. `None` when it is free (released, expired, or never held).
pub fn live_holder(lease: &Lease, now: OffsetDateTime) -> Option<LockInfo> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    if holder.is_empty() {
        return None;
    }
    let info = info_of(lease);
    info.expires.filter(|expires| *expires > now).map(|_| info)
}

/// The Lease that gives the lock of `env` to `request` at `now`: a new one, or `previous` taken
/// over (its resourceVersion kept, so the write fails if anyone wrote it since it was read).
pub fn taken(
    namespace: &str,
    env: &str,
    request: &LockInfo,
    now: OffsetDateTime,
    previous: Option<&Lease>,
) -> Lease {
    let previous_spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    // A transition is a change of holder, as client-go's leader election counts them.
    let had_holder = previous_spec
        .holder_identity
        .as_deref()
        .is_some_and(|h| !h.is_empty());
    let transitions = previous_spec.lease_transitions.unwrap_or(0) + i32::from(had_holder);
    let now = MicroTime(timestamp(now));
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            labels: Some(BTreeMap::from([
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
                (OPERATION_ANNOTATION.to_string(), request.operation.clone()),
                (VERSION_ANNOTATION.to_string(), request.version.clone()),
                (ENVIRONMENT_ANNOTATION.to_string(), env.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(request.holder.clone()),
            lease_duration_seconds: Some(seconds(DURATION)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` renewed at `now` (same holder, same resourceVersion: the write fails if it changed).
pub fn renewed(lease: &Lease, now: OffsetDateTime) -> Lease {
    let mut lease = lease.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(MicroTime(timestamp(now)));
    lease
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn duration_of(spec: &LeaseSpec) -> time::Duration {
    time::Duration::seconds(i64::from(
        spec.lease_duration_seconds.unwrap_or(seconds(DURATION)),
    ))
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn offset(timestamp: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(timestamp.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn timestamp(time: OffsetDateTime) -> Timestamp {
    // Microseconds: what a MicroTime keeps, so a Lease read back equals the one written.
    let micros = time.unix_timestamp_nanos() / 1_000 * 1_000;
    Timestamp::from_nanosecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Where an environment's Lease lives, for messages and requests.
#[derive(Clone)]
pub struct Place {
    pub client: kube::Client,
    pub namespace: String,
    pub env: String,
}

impl Place {
    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn describe(&self) -> String {
        format!("the Lease {}/{LEASE_NAME}", self.namespace)
    }

    fn error(&self, what: &str, error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) if status.code == 403 => Error::prerequisite(
                format!("{what} {}: forbidden ({})", self.describe(), status.message),
                "ask for the permissions `deployer doctor --target kubernetes` lists (get, create, update \
                 and delete of leases in coordination.k8s.io)",
            ),
            other => Error::Other(format!("{what} {}: {other}", self.describe())),
        }
    }
}

/// Takes the lock of `place` for `request`, or says who holds it. Never waits.
pub async fn take(place: &Place, request: &LockInfo) -> Result<Locking> {
    let api = place.api();
    let now = OffsetDateTime::now_utc();
    let current = api
        .get_opt(LEASE_NAME)
        .await
        .map_err(|e| place.error("reading", e))?;
    let written = match &current {
        None => {
            api.create(
                &PostParams::default(),
                &taken(&place.namespace, &place.env, request, now, None),
            )
            .await
        }
        Some(lease) => {
            if let Some(info) = live_holder(lease, now) {
                return Ok(Locking::Held(info));
            }
            api.replace(
                LEASE_NAME,
                &PostParams::default(),
                &taken(&place.namespace, &place.env, request, now, Some(lease)),
            )
            .await
        }
    };
    match written {
        Ok(lease) => Ok(Locking::Taken(Box::new(LeaseGuard::start(
            place.clone(),
            lease,
            RENEW_EVERY,
        )?))),
        // AlreadyExists (create) or Conflict (replace): another deployer wrote it first.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let winner = api
                .get_opt(LEASE_NAME)
                .await
                .map_err(|e| place.error("reading", e))?;
            Ok(Locking::Held(winner.as_ref().map(info_of).unwrap_or_else(
                || LockInfo {
                    holder: "another deployer (it took the lock and released it meanwhile)".into(),
                    operation: "unknown".into(),
                    version: "unknown".into(),
                    since: now,
                    renewed: None,
                    expires: None,
                },
            )))
        }
        Err(e) => Err(place.error("writing", e)),
    }
}

/// Who holds the lock of `place` now (an expired Lease is nobody's).
pub async fn holder(place: &Place) -> Result<Option<LockInfo>> {
    match place.api().get_opt(LEASE_NAME).await {
        Ok(lease) => Ok(lease.and_then(|l| live_holder(&l, OffsetDateTime::now_utc()))),
        // No namespace yet: nothing was ever deployed there.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(place.error("reading", e)),
    }
}

/// Deletes the Lease of `place`, whoever holds it; says whose it was.
pub async fn break_lease(place: &Place) -> Result<Option<LockInfo>> {
    let api = place.api();
    let lease = match api.get_opt(LEASE_NAME).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(e) => return Err(place.error("reading", e)),
    };
    match api.delete(LEASE_NAME, &DeleteParams::default()).await {
        Ok(_) => Ok(Some(info_of(&lease))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Some(info_of(&lease))),
        Err(e) => Err(place.error("deleting", e)),
    }
}

/// The taken lock: a thread renews the Lease until the guard is released (or dropped), then
/// deletes it. The thread has its own runtime and a clone of the client: the target's runtime is
/// single-threaded and busy with the operation the lock protects.
pub struct LeaseGuard {
    renewal: Option<Renewal>,
}

struct Renewal {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Option<String>>,
}

impl LeaseGuard {
    /// Holds `lease` (as written) at `place`, renewing it every `every`.
    pub fn start(place: Place, lease: Lease, every: Duration) -> Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lease-renewal".into())
            .spawn(move || hold(&place, lease, every, &stopped))
            .map_err(|e| Error::Other(format!("starting the lock's renewal thread: {e}")))?;
        Ok(LeaseGuard {
            renewal: Some(Renewal { stop, thread }),
        })
    }

    fn finish(&mut self) -> Option<String> {
        let renewal = self.renewal.take()?;
        // The thread may have ended already (the lock was lost): then nobody listens.
        let _ = renewal.stop.send(());
        renewal.thread.join().unwrap_or_else(|_| {
            Some(format!(
                "the lock's renewal thread failed; its Lease expires by itself within {} s",
                DURATION.as_secs()
            ))
        })
    }
}

impl LockGuard for LeaseGuard {
    fn release(mut self: Box<Self>) -> Option<String> {
        self.finish()
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// What one renewal found.
enum Renewed {
    /// Renewed: the Lease as written now.
    Yes(Box<Lease>),
    /// Someone else took or deleted it: the warning.
    Lost(String),
    /// No answer (or an unexpected one): tried again next time; the Lease still counts meanwhile.
    Failed,
}

/// The renewal thread: renews until told to stop, then releases; returns the warning of a lock
/// lost or not released cleanly.
fn hold(
    place: &Place,
    mut lease: Lease,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
) -> Option<String> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return Some(format!(
                "the lock of {} could not be renewed nor released ({e}); {} expires by itself within {} s",
                place.env,
                place.describe(),
                DURATION.as_secs()
            ));
        }
    };
    let ours = holder_of(&lease).unwrap_or_default().to_string();
    // Until released (a message), or the guard is gone (disconnected).
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        match runtime.block_on(renew(place, &lease, &ours)) {
            Renewed::Yes(written) => lease = *written,
            Renewed::Lost(warning) => return Some(warning),
            Renewed::Failed => {}
        }
    }
    runtime.block_on(release(place, &lease))
}

async fn renew(place: &Place, lease: &Lease, ours: &str) -> Renewed {
    let api = place.api();
    let next = renewed(lease, OffsetDateTime::now_utc());
    let written = tokio::time::timeout(
        REQUEST_TIMEOUT,
        api.replace(LEASE_NAME, &PostParams::default(), &next),
    )
    .await;
    match written {
        Ok(Ok(written)) => Renewed::Yes(Box::new(written)),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Renewed::Lost(lost(place, None)),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
            // Written since: by whom?
            match tokio::time::timeout(REQUEST_TIMEOUT, api.get_opt(LEASE_NAME)).await {
                Ok(Ok(Some(current))) if holder_of(&current) == Some(ours) => {
                    Renewed::Yes(Box::new(current))
                }
                Ok(Ok(Some(current))) => Renewed::Lost(lost(place, Some(&info_of(&current)))),
                Ok(Ok(None)) => Renewed::Lost(lost(place, None)),
                _ => Renewed::Failed,
            }
        }
        _ => Renewed::Failed,
    }
}

fn lost(place: &Place, taker: Option<&LockInfo>) -> String {
    format!(
        "the lock of {} was lost during the operation: {} {} (its lock was broken, as `deployer unlock` \
         does); check what runs with `deployer status --target kubernetes --env {}`",
        place.env,
        place.describe(),
        match taker {
            Some(info) => format!(
                "is held by {} ({} {})",
                info.holder, info.operation, info.version
            ),
            None => "is gone".to_string(),
        },
        place.env
    )
}

/// Deletes the Lease as last written: the precondition keeps a Lease someone else took.
async fn release(place: &Place, lease: &Lease) -> Option<String> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: lease.metadata.resource_version.clone(),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let deleted =
        tokio::time::timeout(REQUEST_TIMEOUT, place.api().delete(LEASE_NAME, &params)).await;
    match deleted {
        Ok(Ok(_)) => None,
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Some(lost(place, None)),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
            let current = place.api().get_opt(LEASE_NAME).await.ok().flatten();
            Some(lost(place, current.as_ref().map(info_of).as_ref()))
        }
        Ok(Err(e)) => Some(not_released(place, &e.to_string())),
        Err(_) => Some(not_released(
            place,
            &format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        )),
    }
}

fn not_released(place: &Place, why: &str) -> String {
    format!(
        "the lock of {} could not be released: deleting {} failed ({why}); it expires by itself within \
         {} s, then the next deploy takes it",
        place.env,
        place.describe(),
        DURATION.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn request(holder: &str) -> LockInfo {
        LockInfo {
            holder: holder.into(),
            operation: "deploy".into(),
            version: "1.2.3".into(),
            since: datetime!(2026-01-01 0:00 UTC),
            renewed: None,
            expires: None,
        }
    }

    const T0: OffsetDateTime = datetime!(2026-01-01 12:00:00.123456 UTC);

    #[test]
    fn a_new_lease_names_the_holder_and_what_it_does_and_counts_for_thirty_seconds() {
        let lease = taken("infra-challenge-qa", "qa", &request("alice@a:1"), T0, None);
        assert_eq!(lease.metadata.name.as_deref(), Some(LEASE_NAME));
        assert_eq!(
            lease.metadata.namespace.as_deref(),
            Some("infra-challenge-qa")
        );
        assert_eq!(lease.metadata.resource_version, None);
        let annotations = lease.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[OPERATION_ANNOTATION], "deploy");
        assert_eq!(annotations[VERSION_ANNOTATION], "1.2.3");
        assert_eq!(annotations[ENVIRONMENT_ANNOTATION], "qa");
        let spec = lease.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("alice@a:1"));
        assert_eq!(spec.lease_duration_seconds, Some(30));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(
            info_of(&lease),
            LockInfo {
                since: T0,
                renewed: Some(T0),
                expires: Some(T0 + time::Duration::seconds(30)),
                ..request("alice@a:1")
            }
        );
        // The Lease as the API returns it: MicroTime in JSON and back.
        let read: Lease = serde_json::from_value(serde_json::to_value(&lease).unwrap()).unwrap();
        assert_eq!(info_of(&read), info_of(&lease));
    }

    #[test]
    fn a_lease_counts_until_its_duration_after_the_last_renewal() {
        let lease = taken("ns", "qa", &request("alice@a:1"), T0, None);
        let renewed_5s_ago = renewed(&lease, T0);
        let now = T0 + time::Duration::seconds(5);
        assert_eq!(
            live_holder(&renewed_5s_ago, now).map(|i| i.holder),
            Some("alice@a:1".to_string())
        );
        let now = T0 + time::Duration::seconds(29);
        assert!(live_holder(&lease, now).is_some());
        let now = T0 + time::Duration::seconds(31);
        assert_eq!(live_holder(&lease, now), None, "stopped renewing 31 s ago");
        // A renewal moves the expiry, not the acquisition.
        let later = renewed(&lease, now);
        let info = live_holder(&later, now).unwrap();
        assert_eq!(info.since, T0);
        assert_eq!(info.expires, Some(now + time::Duration::seconds(30)));
    }

    #[test]
    fn a_lease_without_holder_is_free() {
        let mut lease = taken("ns", "qa", &request("alice@a:1"), T0, None);
        lease.spec.as_mut().unwrap().holder_identity = None;
        assert_eq!(live_holder(&lease, T0), None);
        lease.spec.as_mut().unwrap().holder_identity = Some(String::new());
        assert_eq!(live_holder(&lease, T0), None);
        assert_eq!(live_holder(&Lease::default(), T0), None);
    }

    #[test]
    fn taking_over_an_expired_lease_keeps_its_resource_version_and_counts_a_transition() {
        let mut old = taken("ns", "qa", &request("alice@a:1"), T0, None);
        old.metadata.resource_version = Some("42".into());
        old.spec.as_mut().unwrap().lease_transitions = Some(3);
        let later = T0 + time::Duration::minutes(5);
        let new = taken("ns", "qa", &request("bob@b:2"), later, Some(&old));
        assert_eq!(new.metadata.resource_version.as_deref(), Some("42"));
        let spec = new.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("bob@b:2"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(timestamp(later))));
    }

    #[test]
    fn a_lease_written_by_another_tool_still_says_what_it_knows() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": LEASE_NAME, "creationTimestamp": "2026-01-01T12:00:00Z"},
            "spec": {"holderIdentity": "someone"}
        }))
        .unwrap();
        let info = info_of(&lease);
        assert_eq!(info.holder, "someone");
        assert_eq!(info.operation, "unknown");
        assert_eq!(info.since, datetime!(2026-01-01 12:00 UTC));
        assert_eq!(info.expires, Some(datetime!(2026-01-01 12:00:30 UTC)));
    }
}
