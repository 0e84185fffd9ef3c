//! Refused before anything is written, and shown before it is written: the server-side dry run and
//! the access reviews that end a release the API would refuse (an apply conflict, an invalid
//! object, an admission denial, a verb the context may not use) before its first write, and
//! `diff`'s comparison of each live object with its dry run.

use crate::error::exit;

use super::*;

/// The overlay with `RUST_LOG` set to `value` in the app's ConfigMap (how a variable changes here).
fn overlay_with_log(value: &str) -> Vec<DynamicObject> {
    manifests::parse(&QA_OVERLAY.replace("RUST_LOG: info", &format!("RUST_LOG: {value}")))
        .expect("the qa overlay parses")
}

/// A fake where 1.0.0 was deployed successfully.
fn with_release() -> (FakeApiServer, Context, tempfile::TempDir) {
    let fake = FakeApiServer::start();
    let (ctx, state) = context();
    deploy(&ctx, &fake.target(overlay(), false), "1.0.0").expect("1.0.0 becomes healthy");
    (fake, ctx, state)
}

#[test]
fn each_refusal_of_the_api_ends_the_release_before_any_write() {
    type Refuse = fn(&FakeApiServer);
    let cases: [(&str, Refuse, &str); 4] = [
        (
            "an apply conflict",
            |fake| {
                fake.conflict_on(
                    &core("configmaps/challenge-config"),
                    "Apply failed with 1 conflict: conflict with \"ops-oncall\": .data.RUST_LOG",
                )
            },
            "server-side apply conflict on ConfigMap/challenge-config in infra-challenge-qa",
        ),
        (
            "an invalid object",
            |fake| {
                fake.refuse_apply(
                    &apps("deployments/challenge"),
                    422,
                    "Invalid",
                    "Deployment.apps \"challenge\" is invalid: spec.template.spec.containers[0].image: Required value",
                )
            },
            "the API server finds Deployment.apps/challenge in infra-challenge-qa invalid",
        ),
        (
            "an admission denial",
            |fake| {
                fake.refuse_apply(
                    &apps("deployments/challenge"),
                    403,
                    "Forbidden",
                    "admission webhook \"images.policy.example\" denied the request: registry not allowed",
                )
            },
            "an admission webhook denied Deployment.apps/challenge",
        ),
        (
            "a verb the context may not use",
            |fake| fake.deny("patch deployments"),
            "the context may not patch deployments in namespace infra-challenge-qa",
        ),
    ];
    for (case, refuse, says) in cases {
        let (fake, ctx, _state) = with_release();
        refuse(&fake);
        let mark = fake.mark();
        let error = deploy(&ctx, &fake.target(overlay(), false), "2.0.0").unwrap_err();
        assert_eq!(error.exit_code(), exit::PREREQUISITE, "{case}: {error}");
        let text = error.to_string();
        assert!(text.contains(says), "{case}: {text}");
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("nothing was changed"),
            "{case}: {text}"
        );
        let requests = fake.requests_since(mark);
        let writes: Vec<String> = requests
            .iter()
            .filter(|r| r.writes())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            writes.is_empty(),
            "{case}: a refused release wrote {writes:?}"
        );
        assert!(
            requests
                .iter()
                .any(|r| r.is_dry_run() || r.path.ends_with("selfsubjectaccessreviews")),
            "{case}: it asked before writing"
        );
        let history = fake
            .target(overlay(), false)
            .history(&environment())
            .unwrap();
        let results: Vec<(Action, Outcome)> =
            history.iter().map(|r| (r.action, r.result)).collect();
        assert_eq!(
            results,
            [(Action::Deploy, Outcome::Ok)],
            "{case}: no failed record, no rollback"
        );
        let deployment = fake.object(&apps("deployments/challenge")).unwrap();
        assert!(
            app_images(&deployment).iter().all(|i| *i == image("1.0.0")),
            "{case}: 1.0.0 still runs"
        );
    }
}

#[test]
fn force_conflicts_is_the_one_way_past_a_field_another_manager_owns() {
    let (fake, ctx, _state) = with_release();
    fake.conflict_on(
        &core("configmaps/challenge-config"),
        "Apply failed with 1 conflict: conflict with \"ops-oncall\": .data.RUST_LOG",
    );
    deploy(&ctx, &fake.target(overlay(), true), "2.0.0").expect("the forced release proceeds");
    let deployment = fake.object(&apps("deployments/challenge")).unwrap();
    assert!(app_images(&deployment).iter().all(|i| *i == image("2.0.0")));
}

#[test]
fn diff_lists_a_new_image_and_a_changed_variable_and_nothing_when_nothing_differs() {
    let (fake, _ctx, _state) = with_release();
    let env = environment();
    let mark = fake.mark();

    let same = fake
        .target(overlay(), false)
        .diff(&env, &env.release("1.0.0"))
        .unwrap();
    assert!(same.changes.is_empty(), "{:#?}", same.changes);
    assert!(
        same.unchanged
            .contains(&"Deployment.apps/challenge in infra-challenge-qa".to_string()),
        "{:?}",
        same.unchanged
    );

    let next = fake
        .target(overlay_with_log("debug"), false)
        .diff(&env, &env.release("2.0.0"))
        .unwrap();
    let fields: Vec<(String, String, Option<String>, Option<String>)> = next
        .changes
        .iter()
        .flat_map(|c| {
            assert_eq!(c.action, crate::platform::ChangeAction::Update, "{c:?}");
            c.fields.iter().map(|f| {
                (
                    c.object.clone(),
                    f.path.clone(),
                    f.before.clone(),
                    f.after.clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        fields,
        [
            (
                "ConfigMap/challenge-config in infra-challenge-qa".to_string(),
                "data.RUST_LOG".to_string(),
                Some("info".to_string()),
                Some("debug".to_string())
            ),
            (
                "Deployment.apps/challenge in infra-challenge-qa".to_string(),
                "spec.template.spec.containers[challenge].image".to_string(),
                Some(image("1.0.0")),
                Some(image("2.0.0"))
            ),
            (
                "Deployment.apps/challenge in infra-challenge-qa".to_string(),
                "spec.template.spec.initContainers[migrate].image".to_string(),
                Some(image("1.0.0")),
                Some(image("2.0.0"))
            ),
        ]
    );
    let writes: Vec<String> = fake
        .requests_since(mark)
        .iter()
        .filter(|r| r.writes())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "diff wrote {writes:?}");
    let deployment = fake.object(&apps("deployments/challenge")).unwrap();
    assert!(
        app_images(&deployment).iter().all(|i| *i == image("1.0.0")),
        "1.0.0 still runs"
    );
}

#[test]
fn diff_marks_the_fields_another_manager_owns_and_what_the_release_would_prune() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    deploy(&ctx, &fake.target(overlay_with_leftovers(), false), "1.0.0").expect("healthy");
    let path = core("configmaps/challenge-config");
    let mut config = fake.object(&path).unwrap();
    config["data"]["RUST_LOG"] = json!("trace");
    config["metadata"]["managedFields"] = json!([
        {"manager": "deployer", "operation": "Apply", "fieldsV1": {"f:data": {"f:PORT": {}}}},
        {"manager": "ops-oncall", "operation": "Apply", "fieldsV1": {"f:data": {"f:RUST_LOG": {}}}}
    ]);
    fake.put(&path, config);

    let env = environment();
    let changes = fake
        .target(overlay(), false)
        .diff(&env, &env.release("1.0.0"))
        .unwrap();
    let config = changes
        .changes
        .iter()
        .find(|c| c.object == "ConfigMap/challenge-config in infra-challenge-qa")
        .expect("the ConfigMap changes back");
    assert_eq!(config.fields.len(), 1, "{config:?}");
    assert_eq!(config.fields[0].path, "data.RUST_LOG");
    assert_eq!(config.fields[0].owner.as_deref(), Some("ops-oncall"));
    let pruned: Vec<&str> = changes
        .changes
        .iter()
        .filter(|c| c.action == crate::platform::ChangeAction::Delete)
        .map(|c| c.object.as_str())
        .collect();
    assert_eq!(pruned, ["ConfigMap/old-config in infra-challenge-qa"]);
}
