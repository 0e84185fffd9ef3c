//! The environment's lock as a Lease, against the fake API server: who wins a race, when a dead
//! holder's Lease is taken over, renewal, release, and a lock broken under its holder.

use std::sync::Barrier;

use crate::platform::LockGuard;

use super::*;

fn lease_path() -> String {
    format!(
        "/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{}",
        lease::LEASE_NAME
    )
}

fn leases_path() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")
}

fn request(holder: &str) -> LockInfo {
    LockInfo {
        holder: holder.into(),
        operation: "deploy".into(),
        version: "2.0.0".into(),
        since: OffsetDateTime::now_utc(),
        renewed: None,
        expires: None,
    }
}

fn taken(locking: Locking) -> Box<dyn LockGuard> {
    match locking {
        Locking::Taken(guard) => guard,
        Locking::Held(info) => panic!("expected the lock, it is held by {info:?}"),
    }
}

fn held(locking: Locking) -> LockInfo {
    match locking {
        Locking::Held(info) => info,
        Locking::Taken(_) => panic!("two holders of one lock"),
    }
}

/// A Lease of `holder` last renewed `ago` ago, as another deployer left it.
fn lease_renewed(holder: &str, ago: time::Duration) -> Value {
    let at = OffsetDateTime::now_utc() - ago;
    let lease = lease::taken(NS, "qa", &request(holder), at, None);
    serde_json::to_value(&lease).unwrap()
}

#[test]
fn two_deployers_racing_for_one_environment_exactly_one_takes_the_lease() {
    let fake = FakeApiServer::start();
    let cluster = fake.cluster.clone();
    let env = environment();
    let start = Barrier::new(2);
    let tried = Barrier::new(2);
    // Two runs of the deployer, each with its own target and runtime, trying at the same moment.
    let outcomes: Vec<(String, Option<String>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = ["alice@a:1", "bob@b:2"]
            .into_iter()
            .map(|holder| {
                let (cluster, env, start, tried) = (cluster.clone(), env.clone(), &start, &tried);
                scope.spawn(move || {
                    let target = KubernetesTarget::with_cluster(
                        Path::new("/nonexistent/project"),
                        cluster,
                        "qa",
                        overlay(),
                        false,
                    );
                    start.wait();
                    let locking = target.try_lock(&env, &request(holder)).unwrap();
                    // Both have tried before the winner lets go.
                    tried.wait();
                    match locking {
                        Locking::Taken(guard) => {
                            assert_eq!(guard.release(), None);
                            (holder.to_string(), None)
                        }
                        Locking::Held(info) => (holder.to_string(), Some(info.holder)),
                    }
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let winners: Vec<&str> = outcomes
        .iter()
        .filter(|(_, held_by)| held_by.is_none())
        .map(|(holder, _)| holder.as_str())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one takes the lock: {outcomes:?}");
    let loser = outcomes
        .iter()
        .find(|(_, held_by)| held_by.is_some())
        .unwrap();
    assert_eq!(
        loser.1.as_deref(),
        Some(winners[0]),
        "the loser is told who won"
    );
    // Released: nobody holds it, the Lease is gone.
    assert_eq!(fake.object(&lease_path()), None);
    assert_eq!(
        fake.target(overlay(), false).lock_holder(&env).unwrap(),
        None
    );
}

#[test]
fn a_deployer_whose_write_loses_the_race_is_told_who_won() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    // Right after this deployer read that there is no Lease, another one creates it.
    let path = lease_path();
    let mut raced = false;
    fake.after_request(move |request, store| {
        if !raced && request.is("GET", &path) {
            raced = true;
            store.put(&path, lease_renewed("bob@b:2", time::Duration::ZERO));
        }
        false
    });
    let info = held(target.try_lock(&env, &request("alice@a:1")).unwrap());
    assert_eq!(info.holder, "bob@b:2");
    assert_eq!(info.operation, "deploy");
    let writes: Vec<(String, String)> = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/leases"))
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        writes,
        [
            ("GET".to_string(), lease_path()),
            ("POST".to_string(), leases_path()),
            ("GET".to_string(), lease_path()),
        ],
        "create, refused with 409 AlreadyExists, then read to name the winner"
    );
    assert_eq!(
        fake.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        json!("bob@b:2")
    );
}

#[test]
fn taking_over_an_expired_lease_fails_when_another_deployer_took_it_first() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    target.ensure_secrets(&env).unwrap();
    fake.put(
        &lease_path(),
        lease_renewed("ghost@c:3", time::Duration::seconds(31)),
    );
    // After this deployer read the expired Lease, another takes it over (a new resourceVersion).
    let path = lease_path();
    let mut raced = false;
    fake.after_request(move |request, store| {
        if !raced && request.is("GET", &path) {
            raced = true;
            store.put(&path, lease_renewed("bob@b:2", time::Duration::ZERO));
        }
        false
    });
    let info = held(target.try_lock(&env, &request("alice@a:1")).unwrap());
    assert_eq!(info.holder, "bob@b:2");
    let replace = fake
        .requests()
        .into_iter()
        .find(|r| r.is("PUT", &lease_path()))
        .expect("the expired Lease was replaced, naming the version read");
    assert_eq!(replace.body["spec"]["holderIdentity"], json!("alice@a:1"));
    assert_eq!(
        fake.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        json!("bob@b:2"),
        "the stale write did not win"
    );
}

#[test]
fn a_lease_whose_holder_stopped_renewing_is_taken_over_one_renewed_recently_is_not() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    target.ensure_secrets(&env).unwrap();

    fake.put(
        &lease_path(),
        lease_renewed("ghost@c:3", time::Duration::seconds(5)),
    );
    let info = held(target.try_lock(&env, &request("alice@a:1")).unwrap());
    assert_eq!(info.holder, "ghost@c:3");
    assert!(info.expires.unwrap() > OffsetDateTime::now_utc());
    assert_eq!(
        target
            .lock_holder(&env)
            .unwrap()
            .map(|i| i.holder)
            .as_deref(),
        Some("ghost@c:3")
    );

    fake.put(
        &lease_path(),
        lease_renewed("ghost@c:3", time::Duration::seconds(31)),
    );
    assert_eq!(target.lock_holder(&env).unwrap(), None, "expired: nobody's");
    let guard = taken(target.try_lock(&env, &request("alice@a:1")).unwrap());
    let lease = fake.object(&lease_path()).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], json!("alice@a:1"));
    assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
    assert_eq!(lease["spec"]["leaseDurationSeconds"], json!(30));
    assert_eq!(
        lease["metadata"]["annotations"][lease::ENVIRONMENT_ANNOTATION],
        json!("qa")
    );
    assert_eq!(guard.release(), None);
    assert_eq!(fake.object(&lease_path()), None);
}

#[test]
fn the_first_lock_of_an_environment_creates_its_namespace_first() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    let guard = taken(target.try_lock(&env, &request("alice@a:1")).unwrap());
    let requests = fake.requests();
    let writes: Vec<(&str, &str)> = requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        writes,
        [("PATCH", NAMESPACE_PATH), ("POST", leases_path().as_str()),]
    );
    let (label, id) = applyset::member_label(NS);
    assert_eq!(
        fake.object(NAMESPACE_PATH).unwrap()["metadata"]["labels"][label],
        json!(id),
        "the namespace is applied as the deploy applies it"
    );
    assert_eq!(guard.release(), None);
}

#[test]
fn the_holder_renews_its_lease_until_it_releases_it() {
    let fake = FakeApiServer::start();
    let env = environment();
    fake.target(overlay(), false).ensure_secrets(&env).unwrap();
    let place = lease::Place {
        client: fake.cluster.client.clone(),
        namespace: NS.into(),
        env: "qa".into(),
    };
    let lease = lease::taken(
        NS,
        "qa",
        &request("alice@a:1"),
        OffsetDateTime::now_utc(),
        None,
    );
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(fake.cluster.client.clone(), NS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let written = runtime
        .block_on(api.create(&PostParams::default(), &lease))
        .unwrap();
    let first_renewal = written.spec.clone().unwrap().renew_time;
    let guard = lease::LeaseGuard::start(place, written, Duration::from_millis(50)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake
        .requests()
        .iter()
        .filter(|r| r.is("PUT", &lease_path()))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "the Lease was not renewed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let live = fake.object(&lease_path()).unwrap();
    assert_ne!(
        serde_json::to_value(&first_renewal).unwrap(),
        live["spec"]["renewTime"],
        "renewTime moves"
    );
    assert_eq!(live["spec"]["holderIdentity"], json!("alice@a:1"));
    assert_eq!(Box::new(guard).release(), None);
    assert_eq!(fake.object(&lease_path()), None);
    // The release deleted exactly the version last written.
    let delete = fake
        .requests()
        .into_iter()
        .rfind(|r| r.is("DELETE", &lease_path()))
        .unwrap();
    assert_eq!(
        delete.body["preconditions"]["resourceVersion"],
        live["metadata"]["resourceVersion"]
    );
}

#[test]
fn a_lock_broken_under_its_holder_is_reported_lost_and_not_deleted() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    let guard = taken(target.try_lock(&env, &request("alice@a:1")).unwrap());
    // `deployer unlock` elsewhere, then another deploy takes the lock.
    let other = fake.target(overlay(), false);
    let broken = other.break_lock(&env).unwrap().expect("someone held it");
    assert_eq!(broken.holder, "alice@a:1");
    assert_eq!(broken.version, "2.0.0");
    assert_eq!(
        other.break_lock(&env).unwrap(),
        None,
        "nothing left to break"
    );
    let bobs = taken(other.try_lock(&env, &request("bob@b:2")).unwrap());

    let warning = guard.release().expect("the lock was lost");
    assert!(warning.contains("lost"), "{warning}");
    assert!(warning.contains("bob@b:2"), "{warning}");
    assert_eq!(
        fake.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        json!("bob@b:2"),
        "the other deployer's Lease stays"
    );
    assert_eq!(bobs.release(), None);
}

#[test]
fn a_lease_that_cannot_be_deleted_is_said_to_expire_by_itself() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    let guard = taken(target.try_lock(&env, &request("alice@a:1")).unwrap());
    fake.stop_answering();
    let started = Instant::now();
    let warning = guard.release().expect("the release failed");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(
        warning.contains("expires by itself within 30 s"),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("{NS}/{}", lease::LEASE_NAME)),
        "{warning}"
    );
}

#[test]
fn doctor_checks_that_the_lease_may_be_read_created_renewed_and_deleted() {
    let fake = FakeApiServer::start();
    let env = environment();
    let target = fake.target(overlay(), false);
    let permissions = |target: &KubernetesTarget| {
        target
            .doctor(&env)
            .into_iter()
            .find(|c| c.name == "permissions")
            .expect("a permissions check")
    };
    let check = permissions(&target);
    assert!(check.ok, "{check:?}");
    assert!(check.detail.contains("the lock's Lease"), "{check:?}");
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| &r.body["spec"]["resourceAttributes"])
        .filter(|a| a["resource"] == "leases")
        .map(|a| format!("{} {} {}", a["verb"], a["group"], a["namespace"]))
        .collect();
    assert_eq!(
        asked,
        ["get", "create", "update", "delete"]
            .map(|verb| format!("\"{verb}\" \"coordination.k8s.io\" \"{NS}\"")),
    );

    fake.deny("update leases");
    let check = permissions(&fake.target(overlay(), false));
    assert!(!check.ok, "{check:?}");
    assert!(check.detail.contains("update leases"), "{check:?}");
}
