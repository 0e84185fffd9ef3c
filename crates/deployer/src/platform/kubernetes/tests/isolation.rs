//! Environments never touch each other: two environments on one cluster, each in its own
//! namespace, keep their own app, Secrets and history; an environment whose overlay names another
//! environment's namespace is refused before anything is written.

use super::*;

const DEV_NS: &str = "infra-challenge-dev";

/// The dev overlay: the qa one in its own namespace, as `deploy/kubernetes/overlays/dev` renders.
fn dev_overlay() -> Vec<DynamicObject> {
    manifests::parse(&QA_OVERLAY.replace(NS, DEV_NS)).expect("the dev overlay parses")
}

fn dev() -> Environment {
    Environment {
        name: "dev".into(),
        ..environment()
    }
}

/// A run of the deployer for `env` with `overlay` as its rendered overlay.
fn target_for(
    fake: &FakeApiServer,
    env: &Environment,
    overlay: Vec<DynamicObject>,
) -> KubernetesTarget {
    KubernetesTarget::with_cluster(
        Path::new("/nonexistent/project"),
        fake.cluster.clone(),
        &env.name,
        overlay,
        false,
    )
}

fn deploy_env(
    ctx: &Context,
    target: &KubernetesTarget,
    env: &Environment,
    version: &str,
) -> Result<()> {
    release::release(
        ctx,
        target,
        env,
        &env.release(version),
        Action::Deploy,
        TIMEOUT,
    )
}

fn deployed_image(fake: &FakeApiServer, ns: &str) -> String {
    let deployment = fake
        .object(&apps_in(ns, "deployments/challenge"))
        .expect("the Deployment exists");
    container_image(&deployment["spec"]["template"]["spec"], "challenge")
}

/// Requests that change something.
fn writes(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn two_environments_on_one_cluster_each_keep_their_own_image_secrets_and_history() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let (qa, dev) = (environment(), dev());
    let qa_target = target_for(&fake, &qa, overlay());
    let dev_target = target_for(&fake, &dev, dev_overlay());
    deploy_env(&ctx, &qa_target, &qa, "1.0.0").expect("qa 1.0.0");
    deploy_env(&ctx, &dev_target, &dev, "2.0.0").expect("dev 2.0.0");
    deploy_env(&ctx, &qa_target, &qa, "1.1.0").expect("qa 1.1.0");

    assert_eq!(deployed_image(&fake, NS), image("1.1.0"));
    assert_eq!(deployed_image(&fake, DEV_NS), image("2.0.0"));
    assert_eq!(
        qa_target.live(&qa).unwrap().version.as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        dev_target.live(&dev).unwrap().version.as_deref(),
        Some("2.0.0")
    );
    // Each namespace has its own Secrets, with values of its own.
    let password = |ns: &str| {
        secret_value(
            &fake
                .object(&core_in(ns, "secrets/challenge-db"))
                .expect("the app's Secret"),
            "password",
        )
    };
    assert_ne!(password(NS), password(DEV_NS));
    // Each history is its environment's, kept in its namespace.
    let versions = |target: &KubernetesTarget, env: &Environment| -> Vec<String> {
        target
            .history(env)
            .unwrap()
            .into_iter()
            .map(|r| r.version)
            .collect()
    };
    assert_eq!(versions(&qa_target, &qa), ["1.0.0", "1.1.0"]);
    assert_eq!(versions(&dev_target, &dev), ["2.0.0"]);
    assert!(
        fake.object(&core_in(DEV_NS, "secrets/deployer.release.v1.dev.v1"))
            .is_some()
    );
    assert!(
        fake.object(&core_in(NS, "secrets/deployer.release.v1.dev.v1"))
            .is_none()
    );
    // Each ApplySet parent names its environment.
    for (ns, env) in [(NS, "qa"), (DEV_NS, "dev")] {
        let parent = fake
            .object(&core_in(ns, "configmaps/deployer-applyset"))
            .unwrap();
        assert_eq!(
            parent["metadata"]["annotations"][applyset::ENVIRONMENT_ANNOTATION],
            json!(env)
        );
    }
}

#[test]
fn deploying_into_a_namespace_holding_another_environments_release_is_refused_before_any_write() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let (qa, dev) = (environment(), dev());
    deploy_env(&ctx, &target_for(&fake, &qa, overlay()), &qa, "1.0.0").expect("qa 1.0.0");

    // dev's overlay names qa's namespace.
    let misplaced = target_for(&fake, &dev, overlay());
    let mark = fake.mark();
    // As `deployer deploy` runs it: the lock (the namespace exists: it is not applied), then the
    // procedure, whose preflight refuses.
    let lock = crate::ops::lock::acquire(&ctx, &misplaced, &dev, "deploy", "2.0.0").unwrap();
    let locked = fake.mark();
    let error = deploy_env(&ctx, &misplaced, &dev, "2.0.0").expect_err("refused");
    let during = writes(&fake.requests_since(locked));
    drop(lock);
    assert_eq!(
        during,
        Vec::<String>::new(),
        "the refused deploy wrote nothing"
    );
    assert!(matches!(error, Error::Usage(_)), "{error:?}");
    assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    for part in [
        "namespace infra-challenge-qa holds the release of environment qa",
        "deploying dev there",
        "`namespace: infra-challenge-dev`",
        "deploy/kubernetes/overlays/dev/kustomization.yaml",
        "`deployer down --target kubernetes --env qa --purge-data`",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let lease = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    assert_eq!(
        writes(&fake.requests_since(mark)),
        [
            format!("POST {lease}"),
            format!("DELETE {lease}/{}", lease::LEASE_NAME)
        ],
        "the lock taken and released, nothing else written"
    );
    let mark = fake.mark();

    // `down` of dev there would delete qa's app: refused the same way, before any write.
    let error = misplaced.down(&dev, true).expect_err("refused");
    assert!(matches!(error, Error::Usage(_)), "{error:?}");
    assert!(
        error.to_string().contains("taking down dev there"),
        "{error}"
    );
    assert_eq!(writes(&fake.requests_since(mark)), Vec::<String>::new());
    assert_eq!(deployed_image(&fake, NS), image("1.0.0"));
}

#[test]
fn the_applyset_parent_names_the_environment_even_without_records() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let (qa, dev) = (environment(), dev());
    deploy_env(&ctx, &target_for(&fake, &qa, overlay()), &qa, "1.0.0").expect("qa 1.0.0");
    // qa's records lost (deleted by hand): the parent still says whose the namespace is.
    let records: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == core("secrets"))
        .filter_map(|r| r.body["metadata"]["name"].as_str().map(String::from))
        .filter(|name| name.starts_with("deployer.release.v1."))
        .collect();
    assert!(!records.is_empty());
    for name in &records {
        lock(&fake.state)
            .store
            .remove(&core(&format!("secrets/{name}")));
    }
    let mark = fake.mark();
    let error =
        deploy_env(&ctx, &target_for(&fake, &dev, overlay()), &dev, "2.0.0").expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("holds the release of environment qa"),
        "{error}"
    );
    assert_eq!(writes(&fake.requests_since(mark)), Vec::<String>::new());
}

#[test]
fn a_namespace_whose_environment_was_taken_down_with_its_data_is_free() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let (qa, dev) = (environment(), dev());
    let qa_target = target_for(&fake, &qa, overlay());
    deploy_env(&ctx, &qa_target, &qa, "1.0.0").expect("qa 1.0.0");
    qa_target.down(&qa, true).expect("qa is taken down");
    qa_target
        .record(&qa, release::down_record(&qa_target, &qa, "1.0.0", true))
        .unwrap();
    deploy_env(&ctx, &target_for(&fake, &dev, overlay()), &dev, "2.0.0")
        .expect("dev may use the namespace qa left");
    assert_eq!(deployed_image(&fake, NS), image("2.0.0"));
}
