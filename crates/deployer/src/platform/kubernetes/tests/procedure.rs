//! The release procedure (`ops`) on the Kubernetes target, against the fake API server: the lock
//! taken through `ops::lock::acquire` as the commands take it, an interrupted release, an API
//! server going away mid-rollout, an image whose `/version` is not its tag, and drift seen by
//! `status`.

use std::sync::mpsc;

use crate::commands::status::drift;
use crate::error::exit;
use crate::interrupt::Stop;
use crate::ops::lock;
use crate::report::{OutputFormat, Reporter};

use super::*;

/// Controllers that never act: the rollout stays where the apply left it.
fn idle() -> Controllers {
    Box::new(|_: &mut Store| {})
}

/// A context as `deployer --output json --state-dir TMP ARGS...` makes it, its steps answering to
/// `stop`.
fn context_with(args: &[&str], stop: &Stop) -> (Context, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("a temporary directory");
    let mut argv = vec![
        "deployer",
        "--output",
        "json",
        "--state-dir",
        state.path().to_str().expect("a UTF-8 path"),
    ];
    argv.extend_from_slice(args);
    let cli = Cli::parse_from(argv);
    let mut ctx = Context::new(cli.global).expect("a context");
    ctx.reporter = Reporter::with_stop(OutputFormat::Json, stop.clone());
    (ctx, state)
}

fn lease_path() -> String {
    format!(
        "/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{}",
        lease::LEASE_NAME
    )
}

/// A deploy as `deployer deploy` runs it: the lock from the first change to the last.
fn locked_deploy(ctx: &Context, target: &KubernetesTarget, version: &str) -> Result<()> {
    let env = environment();
    let _lock = lock::acquire(ctx, target, &env, "deploy", version)?;
    deploy(ctx, target, version)
}

/// The images the Deployment was applied with, in order, from `requests` (answered or not).
fn applied_app_images(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.is("PATCH", &apps("deployments/challenge")))
        .map(|r| container_image(&r.body["spec"]["template"]["spec"], "challenge"))
        .collect()
}

#[test]
fn a_second_deployer_is_locked_out_then_proceeds_once_the_first_releases() {
    let fake = FakeApiServer::start();
    let env = environment();
    let stop = Stop::default();
    let cluster = fake.cluster.clone();
    let (taken_tx, taken_rx) = mpsc::channel();
    // The first deployer holds the lock for 1.5 s, in a run (thread, target, runtime) of its own.
    let first = std::thread::spawn({
        let (env, stop) = (env.clone(), stop.clone());
        move || {
            let (ctx, _state) = context_with(&[], &stop);
            let target = KubernetesTarget::with_cluster(
                Path::new("/nonexistent/project"),
                cluster,
                "qa",
                overlay(),
                false,
            );
            let held =
                lock::acquire(&ctx, &target, &env, "deploy", "1.0.0").expect("the first takes it");
            taken_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(held);
        }
    });
    taken_rx.recv().unwrap();

    let (ctx, _state) = context_with(&[], &stop);
    let target = fake.target(overlay(), false);
    let error = lock::acquire(&ctx, &target, &env, "deploy", "2.0.0")
        .err()
        .expect("the second is locked out");
    assert_eq!(error.exit_code(), exit::LOCKED);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "qa is locked by {}: deploy 1.0.0 since",
            lock::identity()
        )),
        "{text}"
    );
    assert!(
        text.contains("expires by itself"),
        "a Lease can outlive a dead holder: {text}"
    );
    assert_eq!(
        target
            .lock_holder(&env)
            .unwrap()
            .map(|i| i.version)
            .as_deref(),
        Some("1.0.0"),
        "status sees the holder"
    );

    let (waiting, _state) = context_with(&["--wait-for-lock", "20s"], &stop);
    let started = Instant::now();
    let held =
        lock::acquire(&waiting, &target, &env, "deploy", "2.0.0").expect("it waits, then takes it");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited");
    assert_eq!(
        fake.object(&lease_path()).unwrap()["metadata"]["annotations"][lease::VERSION_ANNOTATION],
        json!("2.0.0")
    );
    drop(held);
    first.join().unwrap();
    assert_eq!(fake.object(&lease_path()), None);
}

#[test]
fn an_interrupted_deploy_is_recorded_with_what_it_applied_releases_the_lock_and_rolls_nothing_back()
{
    let fake = FakeApiServer::start();
    let env = environment();
    let stop = Stop::default();
    let (ctx, _state) = context_with(&[], &stop);
    let target = fake.target(overlay(), false);
    locked_deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");

    fake.set_controllers(idle());
    let signal = stop.clone();
    fake.after_request(on_deployment_read(3, move || {
        signal.request();
        false
    }));
    let mark = fake.mark();
    let started = Instant::now();
    let error = locked_deploy(&ctx, &target, "2.0.0").expect_err("interrupted");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Interrupted(_)), "{error:?}");
    assert_eq!(error.exit_code(), exit::INTERRUPTED);
    let text = error.to_string();
    assert!(text.contains("2.0.0 had been applied"), "{text}");
    assert!(text.contains("recorded as interrupted"), "{text}");

    let history = target.history(&env).unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.version.as_str(), last.result),
        ("2.0.0", Outcome::Interrupted)
    );
    assert!(
        last.manifests
            .as_deref()
            .unwrap_or_default()
            .contains(&image("2.0.0")),
        "the record holds the applied manifests"
    );
    assert_eq!(fake.object(&lease_path()), None, "the lock was released");
    assert_eq!(
        applied_app_images(&fake.requests_since(mark)),
        [image("2.0.0")],
        "no rollback was applied"
    );
}

#[test]
fn an_api_server_gone_mid_rollout_is_a_prerequisite_failure_within_30_s_and_nothing_is_rolled_back()
{
    let fake = FakeApiServer::start();
    let stop = Stop::default();
    let (ctx, _state) = context_with(&[], &stop);
    let target = fake.target(overlay(), false);
    locked_deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");

    fake.set_controllers(idle());
    fake.after_request(on_deployment_read(2, || true));
    let mark = fake.mark();
    let started = Instant::now();
    let error = locked_deploy(&ctx, &target, "2.0.0").expect_err("the API server is gone");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(matches!(error, Error::Prerequisite { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 3);
    let text = error.to_string();
    for part in [
        "the API server at https://fake-api-server.invalid stopped answering during the rollout of 2.0.0",
        "2.0.0 had been applied over 1.0.0",
        "what runs now is unknown",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    let requests = fake.requests_since(mark);
    assert_eq!(
        applied_app_images(&requests),
        [image("2.0.0")],
        "no rollback was attempted"
    );
    // The Lease could not be deleted: it expires by itself (the release warned so).
    assert!(
        requests
            .iter()
            .any(|r| r.is("DELETE", &lease_path()) && r.refused)
    );
    assert!(fake.object(&lease_path()).is_some());
}

#[test]
fn an_image_whose_version_is_not_its_tag_fails_and_the_previous_release_is_restored() {
    let fake = FakeApiServer::start();
    let env = environment();
    let stop = Stop::default();
    let (ctx, _state) = context_with(&[], &stop);
    let target = fake.target(overlay(), false);
    locked_deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");

    // The image tagged 2.0.0 is another build: its /version says 1.0.0.
    fake.report_version("1.0.0");
    let error = locked_deploy(&ctx, &target, "2.0.0").expect_err("the wrong build");
    match &error {
        Error::DeployFailed {
            restore: Restore::Restored { version },
            message,
        } => {
            assert_eq!(version, "1.0.0");
            assert!(
                message.contains("/version says 1.0.0, not 2.0.0"),
                "{message}"
            );
        }
        other => panic!("expected a restored deploy failure, got {other:?}"),
    }
    assert_eq!(target.live(&env).unwrap().version.as_deref(), Some("1.0.0"));
    let summary: Vec<(String, Action, Outcome)> = target
        .history(&env)
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.action, r.result))
        .collect();
    assert_eq!(
        summary,
        [
            ("1.0.0".to_string(), Action::Deploy, Outcome::Ok),
            ("2.0.0".to_string(), Action::Deploy, Outcome::Failed),
            ("1.0.0".to_string(), Action::AutoRollback, Outcome::Ok),
        ]
    );
}

#[test]
fn status_reports_a_deployment_image_changed_outside_the_deployer() {
    let fake = FakeApiServer::start();
    let env = environment();
    let stop = Stop::default();
    let (ctx, _state) = context_with(&[], &stop);
    let target = fake.target(overlay(), false);
    locked_deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");
    assert_eq!(
        drift(&target.live(&env).unwrap(), &target.history(&env).unwrap()),
        None
    );

    // `kubectl set image deployment/challenge challenge=...:9.9.9`
    let path = apps("deployments/challenge");
    let mut deployment = fake.object(&path).unwrap();
    for container in deployment["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
    {
        if container["name"] == "challenge" {
            container["image"] = json!(image("9.9.9"));
        }
    }
    fake.put(&path, deployment);

    let live = target.live(&env).unwrap();
    let warning = drift(&live, &target.history(&env).unwrap()).expect("drift is reported");
    assert!(
        warning.contains("9.9.9") && warning.contains("1.0.0"),
        "{warning}"
    );
}
