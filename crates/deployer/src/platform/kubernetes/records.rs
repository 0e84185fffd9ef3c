//! The release history of an environment, kept in the cluster beside what it describes, the way
//! Helm keeps its `sh.helm.release.v1.*` Secrets.
//!
//! Each release is one Secret of type [`RELEASE_SECRET_TYPE`] in the app's namespace, named
//! `deployer.release.v1.<env>.v<revision>` ([`secret_name`]). Its data key [`RELEASE_KEY`] holds
//! the gzip-compressed JSON of the [`Record`] (the API shows it base64-encoded, as all Secret
//! data). Labels say what the release is without decoding it: the tool, the environment
//! ([`label_selector`] lists an environment's releases), the revision ([`next_revision`]), the
//! outcome and the version. [`expired`] names the records beyond the history limit.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::core::ObjectMeta;

use crate::ledger::{Outcome, Record};

/// The `type` of a release record Secret: the API keeps it as given, and it tells release
/// records from every other Secret.
pub const RELEASE_SECRET_TYPE: &str = "deployer.infra-challenge.dev/release.v1";
/// The data key holding the gzip-compressed JSON of the record.
pub const RELEASE_KEY: &str = "release";
/// How record Secret names start; the environment and `v<revision>` follow.
const NAME_PREFIX: &str = "deployer.release.v1.";

/// The well-known label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on release records.
pub const MANAGED_BY: &str = "deployer";
/// Label: the environment the release is of (`dev`, `qa`, `prod`).
pub const ENV_LABEL: &str = "deployer.infra-challenge.dev/env";
/// Label: the release's revision, a decimal number counting from 1 in its environment.
pub const REVISION_LABEL: &str = "deployer.infra-challenge.dev/revision";
/// Label: how the release ended, [`OUTCOME_OK`], [`OUTCOME_FAILED`] or [`OUTCOME_INTERRUPTED`].
pub const OUTCOME_LABEL: &str = "deployer.infra-challenge.dev/outcome";
/// Label: the version released, made a valid label value by [`label_value`].
pub const VERSION_LABEL: &str = "deployer.infra-challenge.dev/version";
/// [`OUTCOME_LABEL`] of a release that became healthy.
pub const OUTCOME_OK: &str = "ok";
/// [`OUTCOME_LABEL`] of a release that did not.
pub const OUTCOME_FAILED: &str = "failed";
/// The outcome label of a release stopped by a signal before it was known healthy.
pub const OUTCOME_INTERRUPTED: &str = "interrupted";

/// How many release records an environment keeps (Helm's default `--history-max` is 10 too).
pub const HISTORY_LIMIT: usize = 10;
/// The longest a label value may be.
const MAX_LABEL_VALUE_LENGTH: usize = 63;
/// The longest an environment name may be here: a DNS label, so it is a valid label value and
/// fits in the Secret's name.
const MAX_ENV_LENGTH: usize = 63;

/// The name of the record Secret of `env`'s release `revision`: `deployer.release.v1.prod.v3`.
pub fn secret_name(env: &str, revision: u64) -> String {
    format!("{NAME_PREFIX}{env}.v{revision}")
}

/// The Secret that keeps `record` (a release of `env`) in `namespace`. The record must have its
/// revision; `env` must be a DNS label (lowercase letters, digits and `-`).
pub fn encode(env: &str, namespace: &str, record: &Record) -> Result<Secret, String> {
    check_env(env)?;
    let revision = record.revision.ok_or_else(|| {
        format!("the release record of {env} has no revision: records in the cluster are numbered")
    })?;
    let json = serde_json::to_vec(record)
        .map_err(|e| format!("encoding the release record of {env} v{revision}: {e}"))?;
    let compressed = gzip(&json)
        .map_err(|e| format!("compressing the release record of {env} v{revision}: {e}"))?;
    let outcome = match record.result {
        Outcome::Ok => OUTCOME_OK,
        Outcome::Failed => OUTCOME_FAILED,
        Outcome::Interrupted => OUTCOME_INTERRUPTED,
    };
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (ENV_LABEL.to_string(), env.to_string()),
        (REVISION_LABEL.to_string(), revision.to_string()),
        (OUTCOME_LABEL.to_string(), outcome.to_string()),
        (VERSION_LABEL.to_string(), label_value(&record.version)),
    ]);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(env, revision)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some(RELEASE_SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            RELEASE_KEY.to_string(),
            ByteString(compressed),
        )])),
        ..Secret::default()
    })
}

/// The record a release record Secret keeps (as [`encode`] wrote it, or as the API returns it).
pub fn decode(secret: &Secret) -> Result<Record, String> {
    let name = secret.metadata.name.as_deref().unwrap_or("(unnamed)");
    if secret.type_.as_deref() != Some(RELEASE_SECRET_TYPE) {
        return Err(format!(
            "Secret {name} is not a release record: its type is {}, not {RELEASE_SECRET_TYPE}",
            secret.type_.as_deref().unwrap_or("unset")
        ));
    }
    let compressed = secret
        .data
        .as_ref()
        .and_then(|data| data.get(RELEASE_KEY))
        .ok_or_else(|| format!("release record {name} has no `{RELEASE_KEY}` data"))?;
    let mut json = Vec::new();
    GzDecoder::new(compressed.0.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| {
            format!("release record {name}: its `{RELEASE_KEY}` data is not gzip ({e})")
        })?;
    serde_json::from_slice(&json).map_err(|e| {
        format!("release record {name}: its `{RELEASE_KEY}` data is not a record ({e})")
    })
}

/// The label selector that lists `env`'s release records.
pub fn label_selector(env: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{ENV_LABEL}={env}")
}

/// The revision a record Secret's label gives, if it has a valid one.
pub fn revision_of(secret: &Secret) -> Option<u64> {
    secret
        .metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)?
        .parse()
        .ok()
}

/// The revision of the next release: one more than the highest of `existing` (an environment's
/// records), 1 when there are none.
pub fn next_revision(existing: &[Secret]) -> u64 {
    existing.iter().filter_map(revision_of).max().unwrap_or(0) + 1
}

/// The names of the records to delete so that `keep` remain (see [`HISTORY_LIMIT`]): the oldest
/// by revision, listed oldest first. The newest successful release is kept even when it is older
/// than the `keep` newest, so a rollback always has a release to go back to; Secrets without a
/// revision label are left alone.
pub fn expired(existing: &[Secret], keep: usize) -> Vec<String> {
    let mut numbered: Vec<(u64, &Secret)> = existing
        .iter()
        .filter_map(|secret| Some((revision_of(secret)?, secret)))
        .collect();
    numbered.sort_by_key(|(revision, _)| Reverse(*revision));
    let newest_ok = numbered
        .iter()
        .find(|(_, secret)| outcome_of(secret) == Some(OUTCOME_OK))
        .map(|(revision, _)| *revision);
    numbered
        .into_iter()
        .skip(keep)
        .filter(|(revision, _)| Some(*revision) != newest_ok)
        .rev()
        .filter_map(|(_, secret)| secret.metadata.name.clone())
        .collect()
}

/// Records in release order: by revision (records without one first), then by time.
pub fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(|record| (record.revision, record.time));
    records
}

/// `text` made a valid label value: characters other than ASCII letters, digits, `-`, `_` and
/// `.` become `-`, at most 63 characters, starting and ending with a letter or digit (`""` stays
/// `""`, which is valid). `0.1.0+build.5` becomes `0.1.0-build.5`.
pub fn label_value(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LABEL_VALUE_LENGTH)
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The outcome label of a record Secret.
fn outcome_of(secret: &Secret) -> Option<&str> {
    secret
        .metadata
        .labels
        .as_ref()?
        .get(OUTCOME_LABEL)
        .map(String::as_str)
}

/// Checks that `env` can name a record: a DNS label.
fn check_env(env: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let valid = !env.is_empty()
        && env.len() <= MAX_ENV_LENGTH
        && env.chars().all(allowed)
        && !env.starts_with('-')
        && !env.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "environment name {env:?} cannot name release records: use lowercase letters, digits \
             and '-' (at most {MAX_ENV_LENGTH}, starting and ending with a letter or digit)"
        ))
    }
}

/// `bytes` gzip-compressed.
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ledger::Action;

    const NAMESPACE: &str = "infra-challenge";

    fn record(revision: u64) -> Record {
        Record {
            replicas: None,
            version: "0.1.0".into(),
            image_id: "sha256:5f0c".into(),
            time: datetime!(2025-03-04 05:06:07.123456789 UTC),
            action: Action::Deploy,
            result: Outcome::Ok,
            who: "ci".into(),
            target: "kubernetes".into(),
            port: 0,
            image: "infra-challenge:0.1.0".into(),
            revision: Some(revision),
            schema_version: Some(20250101000000),
            purged_data: false,
            manifests: Some(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: infra-challenge\n---\n\
                 apiVersion: v1\nkind: Secret\nstringData:\n  password: '[redacted]'\n"
                    .into(),
            ),
        }
    }

    /// A record Secret with only what the history functions read: name and labels.
    fn listed(revision: u64, outcome: &str) -> Secret {
        let mut record = record(revision);
        record.result = match outcome {
            OUTCOME_OK => Outcome::Ok,
            _ => Outcome::Failed,
        };
        encode("prod", NAMESPACE, &record).unwrap()
    }

    fn is_valid_label_value(value: &str) -> bool {
        let ends_alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && (value.is_empty()
                || (ends_alphanumeric(value.chars().next())
                    && ends_alphanumeric(value.chars().last())))
    }

    #[test]
    fn encode_names_labels_and_types_the_secret() {
        let mut record = record(3);
        record.result = Outcome::Failed;
        let secret = encode("prod", NAMESPACE, &record).unwrap();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("deployer.release.v1.prod.v3")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(secret.type_.as_deref(), Some(RELEASE_SECRET_TYPE));
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "deployer");
        assert_eq!(labels[ENV_LABEL], "prod");
        assert_eq!(labels[REVISION_LABEL], "3");
        assert_eq!(labels[OUTCOME_LABEL], "failed");
        assert_eq!(labels[VERSION_LABEL], "0.1.0");
        for value in labels.values() {
            assert!(is_valid_label_value(value), "{value}");
        }
        // The stored bytes are gzip (magic 1f 8b), not the JSON itself.
        assert_eq!(
            &secret.data.as_ref().unwrap()[RELEASE_KEY].0[..2],
            [0x1f, 0x8b]
        );
        assert_eq!(
            label_selector("prod"),
            "app.kubernetes.io/managed-by=deployer,deployer.infra-challenge.dev/env=prod"
        );
    }

    #[test]
    fn encode_refuses_a_record_without_revision_or_a_bad_env() {
        let mut unnumbered = record(1);
        unnumbered.revision = None;
        let error = encode("prod", NAMESPACE, &unnumbered).unwrap_err();
        assert!(error.contains("no revision"), "{error}");
        for env in ["", "Prod", "-dev", "qa_1", "a.b"] {
            assert!(encode(env, NAMESPACE, &record(1)).is_err(), "{env:?}");
        }
    }

    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let record = record(12);
        let secret = encode("qa", NAMESPACE, &record).unwrap();
        assert_eq!(decode(&secret).unwrap(), record);
        // Through the API's JSON form too (data base64-encoded).
        let json = serde_json::to_value(&secret).unwrap();
        assert!(json["data"][RELEASE_KEY].is_string());
        let returned: Secret = serde_json::from_value(json).unwrap();
        assert_eq!(decode(&returned).unwrap(), record);
    }

    #[test]
    fn decode_reads_a_secret_as_the_api_returns_it() {
        // The data made independently with Python:
        //   base64.b64encode(gzip.compress(json.dumps(record, separators=(",", ":")).encode(), mtime=0))
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "deployer.release.v1.prod.v3",
                "namespace": "infra-challenge",
                "uid": "0b6c5e8e-3f5e-4c1e-9d4e-1f2a3b4c5d6e",
                "resourceVersion": "4711",
                "creationTimestamp": "2025-03-04T05:06:08Z",
                "labels": {
                    "app.kubernetes.io/managed-by": "deployer",
                    "deployer.infra-challenge.dev/env": "prod",
                    "deployer.infra-challenge.dev/outcome": "ok",
                    "deployer.infra-challenge.dev/revision": "3",
                    "deployer.infra-challenge.dev/version": "0.1.0"
                }
            },
            "type": "deployer.infra-challenge.dev/release.v1",
            "data": {
                "release": "H4sIAAAAAAACA12PQU7EMAxFrxJlPa08HTJIOQQrxAJVQiZ1W6uNUyWZIoS4Ox4VNuzs92T7+8vulAsnsd5Ce27BnixHnOiNB0Vlxs5dvRshqKgcSWEHnWvg0sDDMzgPVw+PrXtVj6Eemwba1vSpJFO5rVVJWrT7mJOWge+rME90F8vtnbJQpaJ0S1kZ/EZQyzJmbMKM60oykf+LmGnnI/XlZCMKj1Rq0QHc+OV4yJv93MvCMnjzhJHKhoF6iVRxwIq+F2NEuTf/jvRiv38AT0bQwhcBAAA="
            }
        }))
        .unwrap();
        let decoded = decode(&secret).unwrap();
        assert_eq!(
            decoded,
            Record {
                replicas: None,
                version: "0.1.0".into(),
                image_id: "sha256:5f0c".into(),
                time: datetime!(2025-03-04 05:06:07.5 UTC),
                action: Action::Deploy,
                result: Outcome::Ok,
                who: "ci".into(),
                target: "kubernetes".into(),
                port: 0,
                image: "infra-challenge:0.1.0".into(),
                revision: Some(3),
                schema_version: None,
                purged_data: false,
                manifests: Some(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: infra-challenge\n".into()
                ),
            }
        );
        assert_eq!(revision_of(&secret), Some(3));
    }

    #[test]
    fn decode_says_what_is_wrong() {
        let mut secret = encode("prod", NAMESPACE, &record(1)).unwrap();

        let mut opaque = secret.clone();
        opaque.type_ = Some("Opaque".into());
        let error = decode(&opaque).unwrap_err();
        assert!(error.contains("not a release record"), "{error}");

        let mut empty = secret.clone();
        empty.data = None;
        let error = decode(&empty).unwrap_err();
        assert!(error.contains("no `release` data"), "{error}");

        let mut set_release = |bytes: Vec<u8>| {
            secret.data = Some(BTreeMap::from([(RELEASE_KEY.into(), ByteString(bytes))]));
            decode(&secret).unwrap_err()
        };
        let error = set_release(b"{\"version\":\"0.1.0\"}".to_vec());
        assert!(error.contains("not gzip"), "{error}");

        let error = set_release(gzip(b"{\"version\":").unwrap());
        assert!(error.contains("not a record"), "{error}");
    }

    #[test]
    fn next_revision_follows_the_highest() {
        assert_eq!(next_revision(&[]), 1);
        let existing = [
            listed(1, OUTCOME_OK),
            listed(10, OUTCOME_OK),
            listed(9, OUTCOME_FAILED),
        ];
        assert_eq!(next_revision(&existing), 11);
        // A Secret without a revision label does not count.
        let mut unlabelled = listed(50, OUTCOME_OK);
        unlabelled.metadata.labels = None;
        assert_eq!(next_revision(&[unlabelled]), 1);
    }

    #[test]
    fn expired_keeps_the_newest_by_number() {
        // Revisions 1..=12, listed in lexical name order as an API list might return them.
        let mut existing: Vec<Secret> = (1..=12).map(|r| listed(r, OUTCOME_OK)).collect();
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        assert_eq!(
            expired(&existing, HISTORY_LIMIT),
            ["deployer.release.v1.prod.v1", "deployer.release.v1.prod.v2"]
        );
        assert_eq!(expired(&existing, 12), Vec::<String>::new());
        assert_eq!(expired(&existing[..3], HISTORY_LIMIT), Vec::<String>::new());
    }

    #[test]
    fn expired_keeps_the_newest_successful_release() {
        // v1 and v2 succeeded, v3..=12 failed: v2 stays, as the release to roll back to.
        let existing: Vec<Secret> = (1..=12)
            .map(|r| listed(r, if r <= 2 { OUTCOME_OK } else { OUTCOME_FAILED }))
            .collect();
        assert_eq!(
            expired(&existing, HISTORY_LIMIT),
            ["deployer.release.v1.prod.v1"]
        );
    }

    #[test]
    fn sorted_orders_by_revision() {
        let records = vec![record(10), record(9), record(1)];
        let revisions: Vec<Option<u64>> = sorted(records).iter().map(|r| r.revision).collect();
        assert_eq!(revisions, [Some(1), Some(9), Some(10)]);
    }

    #[test]
    fn label_values_are_valid() {
        for (version, expected) in [
            ("0.1.0", "0.1.0"),
            ("1.0.0-rc.1", "1.0.0-rc.1"),
            ("0.1.0+build.5", "0.1.0-build.5"),
            ("feature/new login", "feature-new-login"),
            ("-v1-", "v1"),
            ("été", "t"),
            ("", ""),
            ("+++", ""),
        ] {
            assert_eq!(label_value(version), expected, "{version}");
        }
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        for text in [long.as_str(), "x".repeat(100).as_str(), "1.2.3_", "ä1ö"] {
            let value = label_value(text);
            assert!(is_valid_label_value(&value), "{text:?} gave {value:?}");
        }
        assert_eq!(label_value(&long), "a".repeat(62));
    }
}
