//! The deployer against a real Kubernetes cluster (kind), with the Kubernetes target: the release
//! lifecycle of the `dev` environment walked through the deployer binary, in order, because a
//! cluster is shared state and each step starts from what the previous one left:
//!
//! 1. `doctor --target kubernetes` passes every check;
//! 2. `deploy` version 1, then version 2: healthy, `status` and `history` agree;
//! 3. a broken release (a tag the registry does not have) fails well before its timeout with a
//!    diagnosis naming `ErrImagePull`/`ImagePullBackOff`, exits 4, and version 2 serves again;
//! 4. `rollback` returns to version 1;
//! 5. `render --version V1` prints YAML documents that run version 1's image;
//! 6. `down --purge-data --yes` removes everything, and `status` says nothing runs.
//!
//! Opt-in twice: this file is compiled only with `--features kind-e2e`, and it needs these
//! variables (the test FAILS, saying how to run it, when one is missing):
//!
//! - `KIND_E2E_REPOSITORY`: the image repository the cluster's nodes pull from, as REGISTRY/NAME,
//!   e.g. `kind-registry:5000/infra-challenge` (the deployer runs REPOSITORY:VERSION);
//! - `KIND_E2E_VERSION_1`, `KIND_E2E_VERSION_2`: two different tags of the service pushed there,
//!   e.g. `e2e-1` and `e2e-2`, each built with `--build-arg VERSION=<that tag>` (the test checks
//!   that the service's `/version` reports the version deployed);
//! - `KIND_E2E_CONTEXT` (optional): the kubeconfig context to use [default: the current one]. It
//!   must be a kind context (`kind-<cluster>`): the suite deletes the `infra-challenge-dev`
//!   namespace's workloads and data at the end, which must never happen to a real cluster by mistake.
//!
//! Why a registry and not `kind load docker-image`: a real cluster pulls a REGISTRY/NAME image,
//! which the deployer sets to `imagePullPolicy: Always`, and the suite means to prove that path (a
//! bare name, pulled `IfNotPresent`, is what `kind load` serves; the README shows it). kind's local
//! registry (<https://kind.sigs.k8s.io/docs/user/local-registry/>) gives the cluster one:
//!
//! ```sh
//! # a kind cluster with a registry at localhost:5001 (the script of the page above), then:
//! for v in e2e-1 e2e-2; do
//!   docker build --build-arg VERSION=$v -t localhost:5001/infra-challenge:$v . &&
//!   docker push localhost:5001/infra-challenge:$v
//! done
//! KIND_E2E_REPOSITORY=localhost:5001/infra-challenge KIND_E2E_VERSION_1=e2e-1 KIND_E2E_VERSION_2=e2e-2 \
//!   cargo test -p deployer --features kind-e2e --test kind_e2e -- --nocapture
//! ```
//!
//! CI runs it the same way: `.github/workflows/kind-e2e.yml`.
//!
//! When a step fails, the cluster is left as it is for inspection (`kubectl -n infra-challenge-dev
//! get all,events`, `deployer logs --target kubernetes`); clean up with `deployer down --target
//! kubernetes --env dev --purge-data --yes` or `kind delete cluster`. The next run starts from
//! whatever is there: it reads only the release records it created itself (by revision number).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use common::{Run, project_dir, run};

/// The environment walked through: its overlay is `deploy/kubernetes/overlays/dev`.
const ENV: &str = "dev";
/// The namespace of [`ENV`]: its overlay's own, `infra-challenge-<env>` (each environment has one).
const NAMESPACE: &str = "infra-challenge-dev";
/// How long each deploy, rollback and restore may take: a kind node pulls MySQL the first time,
/// and the database initialises its volume.
const TIMEOUT: &str = "5m";
/// A version whose image the registry does not have: its pods wait in ErrImagePull.
const BROKEN: &str = "does-not-exist";
/// A broken release must be detected and the previous release restored well before [`TIMEOUT`]:
/// a pull failure cannot heal by waiting, so the deployer must not wait for it.
const BROKEN_DETECTED_WITHIN: Duration = Duration::from_secs(120);

const HOW_TO_RUN: &str = "these tests need a kind cluster whose nodes can pull two versions of the service from a \
     registry: set KIND_E2E_REPOSITORY (REGISTRY/NAME, e.g. kind-registry:5000/infra-challenge), KIND_E2E_VERSION_1 and \
     KIND_E2E_VERSION_2 (two tags pushed there, each built with --build-arg VERSION=<tag>), optionally KIND_E2E_CONTEXT \
     (a kind-* kubeconfig context; default: the current one), then run `cargo test -p deployer --features kind-e2e \
     --test kind_e2e -- --nocapture`; see the top of crates/deployer/tests/kind_e2e.rs and \
     .github/workflows/kind-e2e.yml";

/// What the suite runs against, from the variables above.
struct Settings {
    repository: String,
    v1: String,
    v2: String,
    context: String,
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

impl Settings {
    fn from_env() -> Self {
        let required = [
            "KIND_E2E_REPOSITORY",
            "KIND_E2E_VERSION_1",
            "KIND_E2E_VERSION_2",
        ];
        let missing: Vec<&str> = required
            .into_iter()
            .filter(|name| variable(name).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "{} not set: {HOW_TO_RUN}",
            missing.join(", ")
        );
        let get = |name: &str| variable(name).unwrap_or_default();
        let settings = Settings {
            repository: get("KIND_E2E_REPOSITORY"),
            v1: get("KIND_E2E_VERSION_1"),
            v2: get("KIND_E2E_VERSION_2"),
            context: variable("KIND_E2E_CONTEXT").unwrap_or_else(current_context),
        };
        assert!(
            // REGISTRY/NAME, whose last segment carries no tag or digest.
            settings
                .repository
                .rsplit_once('/')
                .is_some_and(|(_, name)| !name.contains([':', '@'])),
            "KIND_E2E_REPOSITORY={} is not REGISTRY/NAME (no tag): {HOW_TO_RUN}",
            settings.repository
        );
        assert!(
            settings.v1 != settings.v2 && settings.v1 != BROKEN && settings.v2 != BROKEN,
            "KIND_E2E_VERSION_1={} and KIND_E2E_VERSION_2={} must differ, and neither may be {BROKEN:?}",
            settings.v1,
            settings.v2
        );
        assert!(
            settings.context.starts_with("kind-"),
            "the kubeconfig context {:?} is not a kind cluster's (kind-<name>): this suite deletes the workloads and \
             data of namespace {NAMESPACE}, so it runs only against kind; set KIND_E2E_CONTEXT=kind-<cluster> \
             (`kind get clusters`); {HOW_TO_RUN}",
            settings.context
        );
        settings
    }

    fn image(&self, version: &str) -> String {
        format!("{}:{version}", self.repository)
    }
}

/// The kubeconfig's current context (`kubectl config current-context`).
fn current_context() -> String {
    let out = Command::new("kubectl")
        .args(["config", "current-context"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): install it; {HOW_TO_RUN}"));
    let context = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !context.is_empty(),
        "no current kubeconfig context ({}): create a kind cluster (`kind create cluster`) or set KIND_E2E_CONTEXT; \
         {HOW_TO_RUN}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    context
}

/// The suite's view of the cluster: the settings, a state directory of its own (the deployer keeps
/// nothing there for Kubernetes, but it must not touch the user's), and every output so far.
struct Kind {
    settings: Settings,
    state: tempfile::TempDir,
    /// stdout and stderr of every run, to check at the end that no secret value was printed.
    outputs: std::cell::RefCell<String>,
}

impl Kind {
    fn new() -> Self {
        let settings = Settings::from_env();
        eprintln!(
            "kind e2e: context {}, images {} and {}, environment {ENV} (namespace {NAMESPACE})",
            settings.context,
            settings.image(&settings.v1),
            settings.image(&settings.v2)
        );
        Kind {
            settings,
            state: tempfile::tempdir().expect("temporary state directory"),
            outputs: std::cell::RefCell::new(String::new()),
        }
    }

    /// `deployer --env dev --context C --repository R <args>`, as a CI job would call it.
    fn deployer(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
        cmd.args(["--env", ENV])
            .args(["--context", &self.settings.context])
            .args(["--repository", &self.settings.repository])
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--project-dir")
            .arg(project_dir())
            .args(args);
        let started = Instant::now();
        let out = run(&mut cmd);
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ deployer {} -> exit {} ({:.1}s)\n{}",
            args.join(" "),
            run.code,
            started.elapsed().as_secs_f64(),
            run.text().trim_end()
        );
        self.outputs.borrow_mut().push_str(&run.text());
        run
    }

    /// `deployer <args> --output json`, with every stdout line checked to be one JSON event.
    fn json(&self, args: &[&str]) -> (Run, Vec<Value>) {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let run = self.deployer(&args);
        let events = events(&run);
        (run, events)
    }

    fn status(&self) -> Value {
        let (run, _) = self.json(&["status", "--target", "kubernetes"]);
        assert_eq!(run.code, 0, "status failed:\n{}", run.text());
        run.result()
    }

    /// The release records, oldest first, as `history --output json` gives them.
    fn history(&self) -> Vec<Value> {
        let (run, _) = self.json(&["history", "--target", "kubernetes"]);
        assert_eq!(run.code, 0, "history failed:\n{}", run.text());
        run.result()["releases"]
            .as_array()
            .unwrap_or_else(|| panic!("no releases in {}", run.stdout))
            .clone()
    }

    /// The records this run created: those numbered after `baseline`, as (version, action, result).
    fn history_since(&self, baseline: u64) -> Vec<(String, String, String)> {
        self.history()
            .iter()
            .filter(|r| revision(r) > baseline)
            .map(|r| (text(&r["version"]), text(&r["action"]), text(&r["result"])))
            .collect()
    }

    /// The values of the Secrets the deployer generated (to check they are never printed).
    fn secret_values(&self) -> Vec<String> {
        let out = run(Command::new("kubectl").args([
            "--context",
            &self.settings.context,
            "--namespace",
            NAMESPACE,
            "get",
            "secret",
            "mysql",
            "challenge-db",
            "--output",
            "json",
        ]));
        assert!(
            out.status.success(),
            "reading the Secrets mysql and challenge-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).expect("kubectl's JSON");
        let mut values = Vec::new();
        for secret in list["items"].as_array().expect("a list of Secrets") {
            for value in secret["data"]
                .as_object()
                .into_iter()
                .flat_map(|d| d.values())
            {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or_default())
                    .expect("Secret data is base64");
                values.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        assert!(!values.is_empty(), "the Secrets hold no values: {list}");
        values
    }
}

/// Every stdout line of a `--output json` run parsed; a line that is not a JSON event fails.
fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", run.text()));
            assert!(event["event"].is_string(), "no event name: {line}");
            event
        })
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn revision(record: &Value) -> u64 {
    record["revision"].as_u64().unwrap_or(0)
}

/// (version, action, result) of a release record, to compare with what the history holds.
fn record(version: &str, action: &str, result: &str) -> (String, String, String) {
    (version.into(), action.into(), result.into())
}

/// `status`'s health for a Deployment whose every wanted replica is ready: "N/N ready", N >= 1.
fn fully_ready(health: &str) -> bool {
    health
        .strip_suffix(" ready")
        .and_then(|counts| counts.split_once('/'))
        .and_then(|(ready, wanted)| Some((ready.parse::<u32>().ok()?, wanted.parse::<u32>().ok()?)))
        .is_some_and(|(ready, wanted)| ready >= 1 && ready == wanted)
}

/// The result of a successful deploy or rollback of `version`.
fn assert_released(kind: &Kind, step: &str, run: &Run, version: &str, action: &str) {
    let result = run.result();
    assert_eq!(result["version"], version, "{step}: {result}");
    assert_eq!(result["action"], action, "{step}: {result}");
    // On Kubernetes the artifact is the image reference the cluster pulled.
    assert_eq!(
        result["image_id"],
        kind.settings.image(version),
        "{step}: {result}"
    );
    // The smoke test read /version through the API server: the new pods answer, not old ones.
    assert_eq!(
        result["reported_version"], version,
        "{step}: the service reports another version (was the image built with --build-arg VERSION={version}?): \
         {result}"
    );
}

/// `status` shows `version` running, every replica ready, and `version` as the current release.
fn assert_serves(kind: &Kind, step: &str, version: &str) {
    let status = kind.status();
    assert_eq!(
        status["target"], "kubernetes",
        "{step}: status shows {status}"
    );
    assert_eq!(status["running"], true, "{step}: status shows {status}");
    assert_eq!(status["version"], version, "{step}: status shows {status}");
    assert!(
        fully_ready(&text(&status["health"])),
        "{step}: not every replica is ready: {status}"
    );
    assert!(
        status["units"]
            .as_array()
            .is_some_and(|pods| pods.iter().any(|pod| pod["ready"] == true)),
        "{step}: no ready pod: {status}"
    );
    assert_eq!(
        status["last_release"]["version"], version,
        "{step}: status shows {status}"
    );
}

#[test]
fn release_lifecycle_on_kind() {
    let kind = Kind::new();
    let (v1, v2) = (kind.settings.v1.as_str(), kind.settings.v2.as_str());
    let deploy = |version: &str| {
        kind.json(&[
            "deploy",
            "--target",
            "kubernetes",
            "--version",
            version,
            "--yes",
            "--timeout",
            TIMEOUT,
        ])
    };

    // doctor: kubeconfig, kubectl/kustomize, overlay, API server, namespace, permissions, and a
    // repository with a registry part: every check passes.
    let (run, _) = kind.json(&["doctor", "--target", "kubernetes"]);
    let result = run.result();
    let failed: Vec<&Value> = result["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "doctor: failed checks {failed:?}");
    assert_eq!(run.code, 0, "doctor failed:\n{}", run.text());
    assert_eq!(result["ok"], true, "doctor: {result}");

    // The cluster may hold records of earlier runs: this run reads only the ones it adds.
    let baseline = kind.history().iter().map(revision).max().unwrap_or(0);

    // deploy V1 (a first deploy on a fresh cluster: namespace, Secrets, database, app).
    let (run, _) = deploy(v1);
    assert_eq!(
        run.code,
        0,
        "deploying {v1} failed (is {} pushed to a registry the nodes pull from?):\n{}",
        kind.settings.image(v1),
        run.text()
    );
    assert_released(&kind, "deploy V1", &run, v1, "deploy");
    assert_serves(&kind, "deploy V1", v1);
    let secrets = kind.secret_values();

    // Upgrade to V2.
    let (run, _) = deploy(v2);
    assert_eq!(
        run.code,
        0,
        "deploying {v2} failed (is {} pushed to a registry the nodes pull from?):\n{}",
        kind.settings.image(v2),
        run.text()
    );
    assert_released(&kind, "deploy V2", &run, v2, "deploy");
    assert_serves(&kind, "deploy V2", v2);

    // history shows both, in order, with the images they ran.
    assert_eq!(
        kind.history_since(baseline),
        [record(v1, "deploy", "ok"), record(v2, "deploy", "ok")],
        "history after V1 and V2"
    );
    let history = kind.history();
    let last = history.last().expect("a release");
    assert_eq!(last["image"], kind.settings.image(v2), "history: {last}");
    assert_eq!(last["target"], "kubernetes", "history: {last}");

    // A broken release: its image cannot be pulled. The deployer says so at once (a pull failure
    // does not heal by waiting), exits 4 and restores V2.
    let started = Instant::now();
    let (run, events) = deploy(BROKEN);
    let took = started.elapsed();
    assert_eq!(
        run.code,
        4,
        "a release whose image cannot be pulled exits 4:\n{}",
        run.text()
    );
    // The diagnosis is a `warning` event: "<project> <version>: The image `<image>` of container
    // `<container>` in pod `<pod>` cannot be pulled (ErrImagePull)".
    let diagnosis: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "warning")
        .filter(|e| {
            let message = text(&e["message"]);
            message.contains(BROKEN)
                && ["ErrImagePull", "ImagePullBackOff"]
                    .iter()
                    .any(|reason| message.contains(reason))
        })
        .collect();
    assert!(
        !diagnosis.is_empty(),
        "no diagnosis naming ErrImagePull or ImagePullBackOff for {}:\n{}",
        kind.settings.image(BROKEN),
        run.stdout
    );
    let error = events
        .iter()
        .find(|e| e["event"] == "error")
        .unwrap_or_else(|| panic!("no error event:\n{}", run.stdout));
    assert_eq!(error["exit_code"], 4, "{error}");
    assert_eq!(error["kind"], "deploy_failed", "{error}");
    assert_eq!(error["restore"], "restored", "{error}");
    assert!(
        text(&error["message"]).contains(&format!("{v2} serves again")),
        "the restore is reported: {error}"
    );
    assert!(
        took < BROKEN_DETECTED_WITHIN,
        "failure and restore took {took:?}: the pull failure was not detected early (timeout {TIMEOUT})"
    );
    assert_serves(&kind, "broken release", v2);
    let since = kind.history_since(baseline);
    assert_eq!(
        since[since.len().saturating_sub(2)..],
        [
            record(BROKEN, "deploy", "failed"),
            record(v2, "auto-rollback", "ok")
        ],
        "history records the failure and the automatic rollback: {since:?}"
    );

    // rollback: back to the previous good release other than the running V2, i.e. V1.
    let (run, _) = kind.json(&["rollback", "--target", "kubernetes", "--timeout", TIMEOUT]);
    assert_eq!(run.code, 0, "rollback failed:\n{}", run.text());
    assert_released(&kind, "rollback", &run, v1, "rollback");
    assert_serves(&kind, "rollback", v1);
    assert_eq!(
        kind.history_since(baseline).last(),
        Some(&record(v1, "rollback", "ok")),
        "history records the rollback"
    );

    // render: what would be applied for V1, as YAML documents on stdout (text mode, as a person
    // pipes it into `kubectl apply -f -`), every container of the app on V1's image.
    let run = kind.deployer(&["render", "--target", "kubernetes", "--version", v1]);
    assert_eq!(run.code, 0, "render failed:\n{}", run.text());
    let documents: Vec<Value> = serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&run.stdout)
        .unwrap_or_else(|e| panic!("render's output is not YAML ({e}):\n{}", run.stdout))
        .into_iter()
        .filter(|document| !document.is_null())
        .collect();
    for document in &documents {
        assert!(
            document["apiVersion"].is_string()
                && document["kind"].is_string()
                && document["metadata"]["name"].is_string(),
            "render: not a Kubernetes object: {document}"
        );
    }
    let object = |object_kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == object_kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("render: no {object_kind} {name} in:\n{}", run.stdout))
    };
    let deployment = object("Deployment", "challenge");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    let pod = &deployment["spec"]["template"]["spec"];
    let images: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod[*list].as_array().into_iter().flatten())
        .map(|container| text(&container["image"]))
        .collect();
    assert!(
        images.len() >= 2,
        "render: the Deployment has its migrate and challenge containers: {images:?}"
    );
    assert!(
        images.iter().all(|image| *image == kind.settings.image(v1)),
        "render: every container of the app runs {}: {images:?}",
        kind.settings.image(v1)
    );
    object("StatefulSet", "mysql");

    // No output so far showed a secret value (the diagnosis' logs and render are redacted).
    let outputs = kind.outputs.borrow().clone();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        assert!(
            !outputs.contains(secret.as_str()),
            "a secret value was printed"
        );
    }

    // down --purge-data --yes: workloads, volume claims and generated Secrets deleted; nothing runs.
    let (run, _) = kind.json(&["down", "--target", "kubernetes", "--purge-data", "--yes"]);
    assert_eq!(run.code, 0, "down --purge-data failed:\n{}", run.text());
    assert_eq!(run.result()["purged_data"], true, "{}", run.stdout);
    let status = kind.status();
    assert_eq!(status["running"], false, "status after down: {status}");
    assert!(status["version"].is_null(), "status after down: {status}");
    assert_eq!(
        status["services"],
        Value::Array(Vec::new()),
        "no Deployment or StatefulSet is left: {status}"
    );
    let history = kind.history();
    let last = history.last().expect("a release");
    assert_eq!(last["action"], "down", "history records down: {last}");
    assert_eq!(
        last["purged_data"], true,
        "history records the purge: {last}"
    );
}
