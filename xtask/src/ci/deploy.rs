//! `deploy <env>` and `smoke <env>`, through the deployer: dev on Docker Compose, qa and prod on
//! Kubernetes (`--target kubernetes`, the cluster of the agent's kubeconfig). Where no cluster is
//! reachable the deployer exits 3 at once, naming the context it tried, and these stages exit with
//! that code.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use xshell::Shell;

use super::image::result_event;
use super::quality::relative;
use super::{Env, deployer, run_events};
use crate::airgap;

/// Where no registry answers, the database and the reverse proxy are the stand-ins (MariaDB, HAProxy):
/// on Compose the deployer is told which images to run through DEPLOYER_DB_IMAGE and
/// DEPLOYER_PROXY_IMAGE, each unless it is already set (by the caller, as .ci/run may).
fn stack_images<'a>(sh: &'a Shell, env: Env) -> anyhow::Result<Vec<xshell::PushEnv<'a>>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let (db_set, proxy_set) = (set("DEPLOYER_DB_IMAGE"), set("DEPLOYER_PROXY_IMAGE"));
    if env.target() != "compose" || (db_set && proxy_set) {
        return Ok(Vec::new());
    }
    let images = airgap::ensure_images(sh)?;
    let mut pushed = Vec::new();
    if !db_set {
        pushed.push(sh.push_env("DEPLOYER_DB_IMAGE", &images.db));
    }
    if !proxy_set {
        pushed.push(sh.push_env("DEPLOYER_PROXY_IMAGE", &images.proxy));
    }
    Ok(pushed)
}

/// A cluster pulls the image from the registry `ci push` pushed it to (`$REGISTRY/infra-challenge`):
/// the deployer is told so unless DEPLOYER_REPOSITORY already says which repository to use.
fn cluster_repository<'a>(sh: &'a Shell, env: Env) -> Option<xshell::PushEnv<'a>> {
    let set = std::env::var("DEPLOYER_REPOSITORY").is_ok_and(|v| !v.trim().is_empty());
    let registry = std::env::var("REGISTRY")
        .ok()
        .filter(|r| !r.trim().is_empty())?;
    if set || env.target() != "kubernetes" {
        return None;
    }
    Some(sh.push_env("DEPLOYER_REPOSITORY", repository_in(&registry)))
}

/// `registry.example.com/team/` -> `registry.example.com/team/infra-challenge` (as `ci push` tags).
fn repository_in(registry: &str) -> String {
    format!("{}/infra-challenge", registry.trim().trim_end_matches('/'))
}

/// How long a pipeline's deploy queues behind another operation on the same environment (a person's
/// deploy, another pipeline's) before it gives up with the deployer's exit code 6.
const WAIT_FOR_LOCK: &str = "15m";

/// The deployer's arguments for a deploy of `version` to `env`.
fn deploy_args(env: Env, version: &str) -> Vec<String> {
    [
        "--wait-for-lock",
        WAIT_FOR_LOCK,
        "deploy",
        "--target",
        env.target(),
        "--env",
        env.name(),
        "--version",
        version,
        "--yes",
    ]
    .map(str::to_owned)
    .to_vec()
}

pub fn deploy(sh: &Shell, reports: &Path, env: Env, version: &str) -> anyhow::Result<String> {
    let _images = stack_images(sh, env)?;
    let _repository = cluster_repository(sh, env);
    let events = reports.join(format!("deploy-{}.jsonl", env.name()));
    let args = deploy_args(env, version);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::util::step(&format!("deployer {}", args.join(" ")));
    let stdout = run_events(deployer(sh, &args), &events)?;
    let url = result_event(&stdout)
        .and_then(|r| r["url"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "an unknown URL".to_owned());
    Ok(format!(
        "{version} healthy on {} at {url}; events {}",
        env.name(),
        relative(&events)
    ))
}

/// One check of the smoke test.
#[derive(Debug, PartialEq)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        }
    }
}

/// What `deployer status` says about the release, checked against the expected version.
fn status_checks(status: &Value, version: &str) -> Vec<Check> {
    let running = status["version"].as_str().unwrap_or("nothing");
    let health = status["health"].as_str().unwrap_or("unknown");
    vec![
        Check::new(
            "deployer status: version",
            running == version,
            format!("running {running}, expected {version}"),
        ),
        Check::new("deployer status: health", is_healthy(health), health),
    ]
}

/// Compose says `healthy`; Kubernetes says how many replicas are ready (`3/3 ready`).
fn is_healthy(health: &str) -> bool {
    health == "healthy"
        || health
            .strip_suffix(" ready")
            .and_then(|counts| counts.split_once('/'))
            .is_some_and(|(ready, wanted)| {
                ready == wanted && ready.parse::<u32>().is_ok_and(|n| n > 0)
            })
}

/// The answers of the service, checked: /readyz 200, /api/tasks?limit=1 a page of tasks, /version
/// the expected version.
fn http_checks(
    base: &str,
    version: &str,
    get: impl Fn(&str) -> Result<(u16, String), String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |path: &str, verdict: &dyn Fn(u16, &Value) -> Result<String, String>| {
        let outcome =
            get(&format!("{}{path}", base.trim_end_matches('/'))).and_then(|(status, body)| {
                let json = serde_json::from_str(&body).unwrap_or(Value::Null);
                verdict(status, &json)
            });
        checks.push(match outcome {
            Ok(detail) => Check::new(path, true, detail),
            Err(detail) => Check::new(path, false, detail),
        });
    };
    check("/readyz", &|status, body| match status {
        200 => Ok("200 ready".to_owned()),
        _ => Err(format!(
            "{status}: {}",
            body["status"].as_str().unwrap_or("not ready")
        )),
    });
    check(
        "/api/tasks?limit=1",
        &|status, body| match (status, body["items"].as_array()) {
            (200, Some(items)) => Ok(format!("200, {} task(s) on the first page", items.len())),
            (200, None) => Err("200 without an `items` list".to_owned()),
            (status, _) => Err(status.to_string()),
        },
    );
    check(
        "/version",
        &|status, body| match (status, body["version"].as_str()) {
            (200, Some(v)) if v == version => Ok(format!("200, version {v}")),
            (200, v) => Err(format!(
                "reports version {}, expected {version}",
                v.unwrap_or("none")
            )),
            (status, _) => Err(status.to_string()),
        },
    );
    checks
}

fn get(url: &str) -> Result<(u16, String), String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build(),
    );
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok((status, body))
}

/// The namespace of the Kubernetes overlays (deploy/kubernetes/base/kustomization.yaml).
const NAMESPACE: &str = "infra-challenge";

/// `kubectl port-forward service/challenge` on a free local port, stopped when dropped.
struct PortForward {
    child: std::process::Child,
    port: u16,
}

impl PortForward {
    /// Starts the forward (with `--context $DEPLOYER_KUBE_CONTEXT` when set) and waits up to 20 s
    /// for kubectl to say which local port it listens on.
    fn start() -> Result<PortForward, String> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut cmd = Command::new("kubectl");
        if let Ok(context) = std::env::var("DEPLOYER_KUBE_CONTEXT") {
            cmd.arg("--context").arg(context);
        }
        let mut child = cmd
            .args([
                "--namespace",
                NAMESPACE,
                "port-forward",
                "service/challenge",
                ":http",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run kubectl: {e}"))?;
        let stdout = child.stdout.take().ok_or("kubectl has no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .and_then(|line| forwarded_port(&line));
        match port {
            Some(port) => Ok(PortForward { child, port }),
            None => {
                let _ = child.kill();
                let output = child.wait_with_output().map_err(|e| e.to_string())?;
                Err(format!(
                    "kubectl port-forward to service/challenge in {NAMESPACE} did not start: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local port of kubectl's `Forwarding from 127.0.0.1:43125 -> 8000`.
fn forwarded_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Forwarding from ")?;
    let address = rest.split(" -> ").next()?;
    address.rsplit(':').next()?.parse().ok()
}

pub fn smoke(sh: &Shell, reports: &Path, env: Env, version: &str) -> anyhow::Result<String> {
    let events = reports.join(format!("smoke-{}.jsonl", env.name()));
    let args = ["status", "--target", env.target(), "--env", env.name()];
    crate::util::step(&format!("deployer {}", args.join(" ")));
    let stdout = run_events(deployer(sh, &args), &events)?;
    let status = result_event(&stdout).unwrap_or(Value::Null);
    let mut checks = status_checks(&status, version);
    if env.target() == "kubernetes" {
        // A cluster's Service is not reachable from the agent: the checks go through a
        // `kubectl port-forward` to it, in the namespace and context the deployer used.
        match PortForward::start() {
            Ok(forward) => checks.extend(http_checks(&forward.url(), version, get)),
            Err(why) => checks.push(Check::new("kubectl port-forward", false, why)),
        }
    } else {
        match status["url"].as_str() {
            Some(url) => checks.extend(http_checks(url, version, get)),
            None => checks.push(Check::new("URL", false, "the release publishes no URL")),
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    let mut lines = stdout;
    for check in &checks {
        eprintln!(
            "{} {}: {}",
            if check.ok { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
        lines.push_str(&format!(
            "{}\n",
            json!({ "event": "check", "name": check.name, "ok": check.ok, "detail": check.detail })
        ));
    }
    lines.push_str(&format!(
        "{}\n",
        json!({ "event": "smoke", "env": env.name(), "version": version, "url": status["url"], "ok": ok })
    ));
    std::fs::write(&events, lines)?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "smoke test failed: {}",
        failed.join("; ")
    );
    Ok(format!(
        "{version} on {} passes {} checks; events {}",
        env.name(),
        checks.len(),
        relative(&events)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_deploys_to_compose_and_qa_to_kubernetes() {
        assert_eq!(
            deploy_args(Env::Dev, "0.1.0-abc1234").join(" "),
            "--wait-for-lock 15m deploy --target compose --env dev --version 0.1.0-abc1234 --yes"
        );
        assert_eq!(
            deploy_args(Env::Prod, "1.0.0").join(" "),
            "--wait-for-lock 15m deploy --target kubernetes --env prod --version 1.0.0 --yes"
        );
    }

    #[test]
    fn status_must_show_the_expected_version_healthy() {
        let status =
            json!({ "version": "1.0.0", "health": "healthy", "url": "http://127.0.0.1:8000" });
        assert!(status_checks(&status, "1.0.0").iter().all(|c| c.ok));
        let checks = status_checks(&status, "1.1.0");
        assert!(!checks[0].ok && checks[0].detail == "running 1.0.0, expected 1.1.0");
        assert!(!status_checks(&Value::Null, "1.0.0")[1].ok);
    }

    #[test]
    fn a_cluster_pulls_from_the_repository_ci_push_tags() {
        assert_eq!(
            repository_in("registry.example.com/team/"),
            "registry.example.com/team/infra-challenge"
        );
    }

    #[test]
    fn the_forwarded_port_is_read_from_kubectl() {
        assert_eq!(
            forwarded_port("Forwarding from 127.0.0.1:43125 -> 8000"),
            Some(43125)
        );
        assert_eq!(
            forwarded_port("Forwarding from [::1]:43125 -> 8000"),
            Some(43125)
        );
        assert_eq!(forwarded_port("error: no such service"), None);
    }

    #[test]
    fn kubernetes_health_is_every_replica_ready() {
        assert!(is_healthy("3/3 ready"));
        for not in ["2/3 ready", "0/0 ready", "starting", "x/x ready", ""] {
            assert!(!is_healthy(not), "{not}");
        }
    }

    #[test]
    fn http_checks_want_ready_tasks_and_the_version() {
        let answers = |url: &str| -> Result<(u16, String), String> {
            Ok(match url.trim_start_matches("http://h") {
                "/readyz" => (200, r#"{"status":"ready"}"#.into()),
                "/api/tasks?limit=1" => (200, r#"{"items":[{"id":1}],"next":1}"#.into()),
                "/version" => (200, r#"{"version":"1.0.0"}"#.into()),
                other => return Err(format!("unexpected {other}")),
            })
        };
        let checks = http_checks("http://h/", "1.0.0", answers);
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");

        let checks = http_checks("http://h", "2.0.0", answers);
        assert_eq!(
            checks[2],
            Check::new("/version", false, "reports version 1.0.0, expected 2.0.0")
        );
        let down = http_checks("http://h", "1.0.0", |_| Err("no answer: refused".into()));
        assert!(
            down.iter()
                .all(|c| !c.ok && c.detail == "no answer: refused")
        );
    }
}
