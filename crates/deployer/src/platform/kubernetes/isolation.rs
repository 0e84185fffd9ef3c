//! One namespace, one environment. Two environments whose overlays name the same namespace would
//! replace each other's Deployment, share Secrets and prune each other's objects; so before the
//! first change of a release (or of `down`), the namespace is read for another environment's
//! traces: its release records (Secrets labelled [`records::ENV_LABEL`]) and the environment the
//! ApplySet parent names ([`applyset::ENVIRONMENT_ANNOTATION`]). An environment whose newest record
//! is a `down --purge-data` is gone: its namespace is free.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::ledger::Action;
use crate::platform::kubernetes::{applyset, records};

/// The other environment living in the namespace where `env` is to be changed, if any:
/// `record_secrets` are the namespace's release records (of every environment), `parent_env` the
/// environment the ApplySet parent names.
pub fn other_environment(
    env: &str,
    record_secrets: &[Secret],
    parent_env: Option<&str>,
) -> Option<String> {
    let mut by_env: BTreeMap<&str, Vec<&Secret>> = BTreeMap::new();
    for secret in record_secrets {
        if secret.type_.as_deref() != Some(records::RELEASE_SECRET_TYPE) {
            continue;
        }
        if let Some(other) = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(records::ENV_LABEL))
            .filter(|other| other.as_str() != env)
        {
            by_env.entry(other.as_str()).or_default().push(secret);
        }
    }
    let living = by_env
        .into_iter()
        .find(|(_, secrets)| !purged(secrets))
        .map(|(other, _)| other.to_string());
    living.or_else(|| {
        parent_env
            .filter(|other| !other.is_empty() && *other != env)
            .map(str::to_string)
    })
}

/// Whether an environment's newest record is a `down --purge-data` (a record that cannot be read
/// counts as a living environment: refusing is the safe side).
fn purged(secrets: &[&Secret]) -> bool {
    let mut decoded = Vec::new();
    for secret in secrets {
        match records::decode(secret) {
            Ok(record) => decoded.push(record),
            Err(_) => return false,
        }
    }
    records::sorted(decoded)
        .last()
        .is_some_and(|newest| newest.action == Action::Down && newest.purged_data)
}

/// Why `operation` (`deploying`, `taking down`) `env` in `namespace` is refused, and the ways out.
pub fn refusal(operation: &str, env: &str, namespace: &str, other: &str) -> String {
    format!(
        "namespace {namespace} holds the release of environment {other}: {operation} {env} there would change \
         {other}'s app, Secrets and history. Give {env} its own namespace: `namespace: infra-challenge-{env}` \
         (the default) in deploy/kubernetes/overlays/{env}/kustomization.yaml; or, if {other} is gone for \
         good, remove it first: `deployer down --target kubernetes --env {other} --purge-data`"
    )
}

/// The parent's environment annotation, read from the parent's annotations.
pub fn parent_environment(annotations: Option<&BTreeMap<String, String>>) -> Option<String> {
    annotations
        .and_then(|a| a.get(applyset::ENVIRONMENT_ANNOTATION))
        .cloned()
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::ledger::{Outcome, Record};

    fn record(version: &str, revision: u64, action: Action, purged_data: bool) -> Record {
        Record {
            replicas: None,
            version: version.into(),
            image_id: String::new(),
            time: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(revision as i64),
            action,
            result: Outcome::Ok,
            who: "alice".into(),
            target: "kubernetes".into(),
            port: 0,
            image: String::new(),
            revision: Some(revision),
            schema_version: None,
            purged_data,
            manifests: None,
        }
    }

    fn secret(env: &str, record: &Record) -> Secret {
        records::encode(env, "infra-challenge", record).unwrap()
    }

    #[test]
    fn an_environment_is_alone_in_a_namespace_with_only_its_own_records() {
        let secrets = [secret("qa", &record("1.0.0", 1, Action::Deploy, false))];
        assert_eq!(other_environment("qa", &secrets, Some("qa")), None);
        assert_eq!(other_environment("qa", &[], None), None);
    }

    #[test]
    fn another_environments_records_or_parent_name_it() {
        let secrets = [
            secret("qa", &record("1.0.0", 1, Action::Deploy, false)),
            secret("dev", &record("2.0.0", 1, Action::Deploy, false)),
        ];
        assert_eq!(
            other_environment("qa", &secrets, None).as_deref(),
            Some("dev")
        );
        assert_eq!(
            other_environment("qa", &[], Some("dev")).as_deref(),
            Some("dev")
        );
    }

    #[test]
    fn an_environment_taken_down_with_its_data_has_left_the_namespace() {
        let secrets = [
            secret("dev", &record("2.0.0", 1, Action::Deploy, false)),
            secret("dev", &record("2.0.0", 2, Action::Down, true)),
        ];
        assert_eq!(other_environment("qa", &secrets, None), None);
        // Down without --purge-data keeps its data there: it still lives in the namespace.
        let kept = [
            secret("dev", &record("2.0.0", 1, Action::Deploy, false)),
            secret("dev", &record("2.0.0", 2, Action::Down, false)),
        ];
        assert_eq!(other_environment("qa", &kept, None).as_deref(), Some("dev"));
    }

    #[test]
    fn the_refusal_names_the_other_environment_the_namespace_and_both_ways_out() {
        let message = refusal("deploying", "qa", "infra-challenge", "dev");
        for part in [
            "namespace infra-challenge holds the release of environment dev",
            "deploy/kubernetes/overlays/qa/kustomization.yaml",
            "infra-challenge-qa",
            "deployer down --target kubernetes --env dev --purge-data",
        ] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
    }
}
