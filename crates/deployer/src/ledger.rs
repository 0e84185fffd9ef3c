//! The release ledger: one JSON line per release attempt, per environment, appended and never
//! rewritten (`<state dir>/<env>/releases.jsonl`). `history` prints it; `rollback` and the automatic
//! rollback of a failed deploy read the previous good release from it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Why a release was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `deploy`.
    Deploy,
    /// `rollback` asked by a person.
    Rollback,
    /// The deployer restoring the previous release after a failed deploy.
    AutoRollback,
    /// `down`: the environment was stopped.
    Down,
}

/// How a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Healthy and answering the smoke test.
    Ok,
    /// Did not become healthy in time (or the smoke test failed).
    Failed,
    /// Stopped by a signal (Ctrl-C, a CI abort) before it was known healthy; the record says what
    /// had been applied (Kubernetes: the manifests, which the cluster may go on rolling out).
    Interrupted,
}

impl Outcome {
    /// As `history` shows it.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Interrupted => "INTERRUPTED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: String,
    /// The image id deployed (`sha256:...`), empty for `down`.
    pub image_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub action: Action,
    pub result: Outcome,
    /// Who ran the deployer (login name).
    pub who: String,
    pub target: String,
    /// The host port the app was published on (Compose; 0 elsewhere).
    #[serde(default)]
    pub port: u16,
    /// The image reference deployed (`repository:version`); empty for `down` and in older records.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// The release's number in its environment's history (1, 2, ...), where the target numbers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The newest database migration the release's image embeds (its `/version` says it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// `down --purge-data` deleted the data: the database starts from an empty schema again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purged_data: bool,
    /// What the target applied, exactly (Kubernetes: the rendered manifests, without secret values),
    /// so a rollback re-applies what ran. Not kept in the Compose ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<String>,
    /// How many app containers the release ran (Compose), so a rollback runs as many again; absent
    /// in older records and where the platform scales by itself (Kubernetes' autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn open(env_dir: &Path) -> Self {
        Ledger {
            path: env_dir.join("releases.jsonl"),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every release, oldest first. A missing ledger is an empty one.
    pub fn load(&self) -> Result<Vec<Record>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()))(e)),
        };
        let mut releases = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(Error::io(format!("reading {}", self.path.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            let release = serde_json::from_str(&line).map_err(|e| {
                Error::Other(format!(
                    "{} line {} is not a release record ({e}); fix or remove that line",
                    self.path.display(),
                    number + 1
                ))
            })?;
            releases.push(release);
        }
        Ok(releases)
    }

    pub fn append(&self, release: &Record) -> Result<()> {
        if let Some(parent) = self.path.parent() {
            crate::state::create_private_dir(parent)?;
        }
        let mut line = serde_json::to_string(release)
            .map_err(|e| Error::Other(format!("encoding a release record: {e}")))?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(Error::io(format!("opening {}", self.path.display())))?;
        // One write of one line: appends from two deployers cannot interleave inside a record.
        file.write_all(line.as_bytes())
            .map_err(Error::io(format!("writing {}", self.path.display())))
    }
}

/// The release serving now according to the ledger: the last successful one, unless the
/// environment was taken down after it.
pub fn current(releases: &[Record]) -> Option<&Record> {
    for release in releases.iter().rev() {
        match (release.action, release.result) {
            (Action::Down, _) => return None,
            (_, Outcome::Ok) => return Some(release),
            _ => {}
        }
    }
    None
}

/// The release `rollback` returns to: the most recent successful release of a version other
/// than `running` (so rolling back twice goes back and forth between the last two versions).
pub fn previous_good<'a>(releases: &'a [Record], running: Option<&str>) -> Option<&'a Record> {
    releases.iter().rev().find(|release| {
        release.action != Action::Down
            && release.result == Outcome::Ok
            && Some(release.version.as_str()) != running
    })
}

/// The last successful release of `version`, for `rollback --to`.
pub fn last_good_of<'a>(releases: &'a [Record], version: &str) -> Option<&'a Record> {
    releases.iter().rev().find(|release| {
        release.action != Action::Down
            && release.result == Outcome::Ok
            && release.version == version
    })
}

/// The login name of whoever runs the deployer, for the ledger's `who`: `$USER`/`$LOGNAME`, else
/// what `id -un` says (CI jobs and containers often have neither variable).
pub fn who() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            crate::process::Cmd::new("id")
                .arg("-un")
                .checked(std::time::Duration::from_secs(5))
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// A release time as a person reads it: RFC 3339, to the second.
pub fn format_time(time: OffsetDateTime) -> String {
    time.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, action: Action, result: Outcome) -> Record {
        Record {
            replicas: None,
            version: version.into(),
            image_id: format!("sha256:{version}"),
            time: OffsetDateTime::UNIX_EPOCH,
            action,
            result,
            who: "tester".into(),
            target: "compose".into(),
            port: 8000,
            image: String::new(),
            revision: None,
            schema_version: None,
            purged_data: false,
            manifests: None,
        }
    }

    #[test]
    fn append_then_load_returns_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("dev"));
        assert!(
            ledger.load().unwrap().is_empty(),
            "a missing ledger is empty"
        );
        let first = release("1.0.0", Action::Deploy, Outcome::Ok);
        let second = release("1.1.0", Action::Deploy, Outcome::Failed);
        ledger.append(&first).unwrap();
        ledger.append(&second).unwrap();
        assert_eq!(ledger.load().unwrap(), vec![first, second]);
    }

    #[test]
    fn a_corrupt_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        ledger
            .append(&release("1.0.0", Action::Deploy, Outcome::Ok))
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(ledger.path())
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        let error = ledger.load().unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn previous_good_skips_failures_and_the_running_version() {
        let releases = vec![
            release("1", Action::Deploy, Outcome::Ok),
            release("2", Action::Deploy, Outcome::Ok),
            release("3", Action::Deploy, Outcome::Failed),
            release("2", Action::AutoRollback, Outcome::Ok),
        ];
        assert_eq!(previous_good(&releases, Some("2")).unwrap().version, "1");
        assert_eq!(current(&releases).unwrap().version, "2");
    }

    #[test]
    fn rolling_back_twice_returns_to_where_it_started() {
        let mut releases = vec![
            release("1", Action::Deploy, Outcome::Ok),
            release("2", Action::Deploy, Outcome::Ok),
        ];
        let back = previous_good(&releases, Some("2")).unwrap().clone();
        assert_eq!(back.version, "1");
        releases.push(release("1", Action::Rollback, Outcome::Ok));
        assert_eq!(previous_good(&releases, Some("1")).unwrap().version, "2");
    }

    #[test]
    fn no_previous_good_release_on_a_first_deploy() {
        let releases = vec![release("1", Action::Deploy, Outcome::Failed)];
        assert!(previous_good(&releases, None).is_none());
        assert!(current(&releases).is_none());
    }

    #[test]
    fn times_are_shown_to_the_second() {
        assert_eq!(
            format_time(OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn down_means_nothing_is_current() {
        let releases = vec![
            release("1", Action::Deploy, Outcome::Ok),
            release("1", Action::Down, Outcome::Ok),
        ];
        assert!(current(&releases).is_none());
        assert_eq!(previous_good(&releases, None).unwrap().version, "1");
        assert_eq!(last_good_of(&releases, "1").unwrap().action, Action::Deploy);
        assert!(last_good_of(&releases, "9").is_none());
    }
}
