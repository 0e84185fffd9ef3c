//! Shared harness of the deployer's end-to-end tests: a throwaway environment (unique Compose
//! project, temporary state directory, free port, its own image repository) that is torn down by
//! `Drop`, also when the test fails.
//!
//! Needs `E2E_APP_IMAGE` (an image of the current service, e.g. `infra-challenge:e2e`),
//! `E2E_DB_IMAGE` (the database image), `E2E_PROXY_IMAGE` (the reverse proxy's) and, for tests
//! that deploy V1 or V2, `E2E_RELEASE_REPOSITORY` (where `1.0.0` and `2.0.0` are real builds of
//! the service with those versions: the deployer checks a release's `/version`);
//! `cargo xtask test` sets all four.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

pub const V1: &str = "1.0.0";
pub const V2: &str = "2.0.0";
/// A release whose process exits at start.
pub const BROKEN: &str = "9.9.9-broken";

/// A kubeconfig whose one cluster is a closed port on loopback: no Kubernetes API answers there.
pub const UNREACHABLE_KUBECONFIG: &str = "apiVersion: v1
kind: Config
current-context: unreachable-test
clusters:
  - name: unreachable-test
    cluster:
      server: https://127.0.0.1:1
contexts:
  - name: unreachable-test
    context:
      cluster: unreachable-test
      user: test
users:
  - name: test
    user:
      token: not-a-real-token
";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need a built image of the service and a database image; run them \
             through `cargo xtask test` (or set E2E_APP_IMAGE=infra-challenge:e2e E2E_DB_IMAGE=<db image> E2E_PROXY_IMAGE=<proxy image>)"
        )
    })
}

/// The checkout whose compose file is deployed (`E2E_PROJECT_DIR` to try another one).
pub fn project_dir() -> PathBuf {
    std::env::var_os("E2E_PROJECT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `deploy --target compose --version V --yes --timeout 180s`: a deploy as the tests run it.
pub fn deploy_args(version: &str) -> [&str; 8] {
    [
        "deploy",
        "--target",
        "compose",
        "--version",
        version,
        "--yes",
        "--timeout",
        "180s",
    ]
}

/// Runs a deployer command (`shown` as its arguments in the test's log) and collects its outcome.
pub fn run_deployer(cmd: &mut Command, shown: &str) -> Run {
    let out = run(cmd);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ deployer {shown} -> exit {}\n{}",
        run.code,
        run.text().trim_end()
    );
    run
}

/// Runs a command, panicking with its output when it cannot even start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containers suite's release build of `version` (`E2E_RELEASE_REPOSITORY:version`).
fn release_image(version: &str) -> String {
    assert!(
        [V1, V2].contains(&version),
        "no release image of {version} is built: the containers suite builds {V1} and {V2} (their /version \
         says so); tag one of them with TestEnv::tag_as, or build another in xtask/src/containers.rs"
    );
    let repository = std::env::var("E2E_RELEASE_REPOSITORY").unwrap_or_else(|_| {
        panic!(
            "E2E_RELEASE_REPOSITORY is not set: deploying {version} needs a release build of it; run the tests \
             through `cargo xtask test --only containers` (it builds infra-challenge-e2e-release:{V1} and :{V2}), \
             or build them with `docker build --build-arg VERSION={version} --tag <repository>:{version} .` and \
             set E2E_RELEASE_REPOSITORY=<repository>"
        )
    });
    let image = format!("{repository}:{version}");
    let present = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(
        present.status.success(),
        "{image} is not in the local engine: `cargo xtask test --only containers` builds it"
    );
    image
}

/// A free TCP port on this machine (bound and released: good enough for a test).
pub fn free_port() -> u16 {
    TcpListener::bind(("0.0.0.0", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// The outcome of one `deployer` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `result` event of a `--output json` run.
    pub fn result(&self) -> Value {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "result")
            .unwrap_or_else(|| panic!("no result event in:\n{}", self.text()))
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test environment. Dropping it removes its containers, network, volume, image tags and state.
pub struct TestEnv {
    pub name: String,
    pub repository: String,
    pub port: u16,
    pub db_image: String,
    pub proxy_image: String,
    pub app_image: String,
    pub state: tempfile::TempDir,
    /// Another environment's state directory, when this one shares it (see [`TestEnv::beside`]).
    shared_state: Option<PathBuf>,
    tags: Vec<String>,
}

impl TestEnv {
    pub fn new(label: &str) -> Self {
        let app_image = required_env("E2E_APP_IMAGE");
        let db_image = required_env("E2E_DB_IMAGE");
        let proxy_image = required_env("E2E_PROXY_IMAGE");
        let unique = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        TestEnv {
            name: format!("e2e-{label}-{unique}"),
            repository: format!("deployer-e2e-{unique}"),
            port: free_port(),
            db_image,
            proxy_image,
            app_image,
            state: tempfile::tempdir().expect("temporary state directory"),
            shared_state: None,
            tags: Vec::new(),
        }
    }

    /// Another environment (its own name, project, port and repository) in the same state
    /// directory as `other`, on the same engine: as two environments of one team are.
    pub fn beside(other: &TestEnv, label: &str) -> Self {
        let mut env = TestEnv::new(label);
        env.shared_state = Some(other.state_dir());
        env
    }

    /// The `--state-dir` of this environment's runs.
    pub fn state_dir(&self) -> PathBuf {
        self.shared_state
            .clone()
            .unwrap_or_else(|| self.state.path().to_path_buf())
    }

    pub fn project(&self) -> String {
        format!("infra-challenge-{}", self.name)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn image(&self, version: &str) -> String {
        format!("{}:{version}", self.repository)
    }

    /// Tags the release build of `version` (V1 or V2, built by the containers suite) as `version`
    /// of this environment's repository.
    pub fn tag(&mut self, version: &str) {
        self.tag_as(version, version);
    }

    /// Tags the release build of `built` as `version` of this environment's repository: with
    /// another `version`, a tag that points at another build (its `/version` says `built`).
    pub fn tag_as(&mut self, built: &str, version: &str) {
        let source = release_image(built);
        let image = self.image(version);
        docker_ok(&["tag", &source, &image]);
        self.tags.push(image);
    }

    /// Builds a release whose process exits non-zero at start (an unknown subcommand).
    pub fn build_broken(&mut self, version: &str) {
        let dir = tempfile::tempdir().expect("build context");
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!(
                "FROM {}\n# The service rejects an unknown subcommand and exits non-zero.\nCMD [\"no-such-subcommand\"]\n",
                self.app_image
            ),
        )
        .expect("writing the Dockerfile");
        let image = self.image(version);
        let out = run(Command::new("docker")
            .args(["build", "--quiet", "--tag", &image])
            .arg(dir.path()));
        assert!(
            out.status.success(),
            "building the broken image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.tags.push(image);
    }

    /// `deployer <args>` for this environment, as a CI job would call it.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(&project_dir(), args)
    }

    /// [`TestEnv::command`] with another checkout as `--project-dir` (a Compose file of its own).
    pub fn command_in(&self, project: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
        cmd.arg("--env").arg(&self.name);
        self.flags_in(&mut cmd, project);
        cmd.args(args);
        cmd
    }

    /// The flags every run of this environment needs, except `--env`.
    pub fn global_flags(&self, cmd: &mut Command) {
        self.flags_in(cmd, &project_dir());
    }

    fn flags_in(&self, cmd: &mut Command, project: &Path) {
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--project-dir")
            .arg(project)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--db-image")
            .arg(&self.db_image)
            .arg("--proxy-image")
            .arg(&self.proxy_image)
            .arg("--repository")
            .arg(&self.repository);
    }

    pub fn deployer(&self, args: &[&str]) -> Run {
        run_deployer(&mut self.command(args), &args.join(" "))
    }

    /// `deployer deploy --target compose --version V --yes`, asserted to succeed.
    pub fn deploy_ok(&self, version: &str) -> Run {
        let run = self.deployer(&deploy_args(version));
        assert_eq!(run.code, 0, "deploying {version} failed:\n{}", run.text());
        run
    }

    pub fn status(&self) -> Value {
        let run = self.deployer(&["status", "--output", "json"]);
        assert_eq!(run.code, 0, "status failed:\n{}", run.text());
        run.result()
    }

    /// The secret values the deployer generated (to check they are never printed).
    pub fn secret_values(&self) -> Vec<String> {
        let dir = self.state_dir().join(&self.name).join("secrets");
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .map(|v| v.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names of the project's volumes still in the engine.
    pub fn volumes(&self) -> Vec<String> {
        self.project_objects(&["volume", "ls"])
    }

    /// Ids of the project's containers, running or not.
    pub fn containers(&self) -> Vec<String> {
        self.project_objects(&["ps", "--all"])
    }

    /// Ids printed by a `docker <list command> --quiet` filtered on this test's Compose project.
    fn project_objects(&self, list: &[&str]) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project());
        let mut args = list.to_vec();
        args.extend(["--quiet", "--filter", &filter]);
        docker_ok(&args).lines().map(String::from).collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Straight to the engine: this must work even when the deployer under test is broken.
        let label = format!("label=com.docker.compose.project={}", self.project());
        let ids = |kind: &str| -> Vec<String> {
            let out = docker(&[kind, "ls", "--quiet", "--filter", &label]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from)
                .collect()
        };
        let containers = self.containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
        for network in ids("network") {
            docker(&["network", "rm", &network]);
        }
        for volume in ids("volume") {
            docker(&["volume", "rm", "--force", &volume]);
        }
        for tag in &self.tags {
            docker(&["image", "rm", tag]);
        }
    }
}

/// A minimal HTTP client for the service's API through the published port.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: base.to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        }
    }

    pub fn create_task(&self, title: &str) -> Value {
        let mut response = self
            .agent
            .post(format!("{}/api/tasks", self.base))
            .header("content-type", "application/json")
            .send(serde_json::json!({ "title": title }).to_string())
            .expect("POST /api/tasks");
        assert_eq!(response.status().as_u16(), 201, "POST /api/tasks");
        response.body_mut().read_json().expect("task JSON")
    }

    /// Titles of all tasks (follows the keyset pagination).
    pub fn titles(&self) -> Vec<String> {
        let mut titles = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/api/tasks?limit=100", self.base);
            if let Some(after) = &after {
                url.push_str(&format!("&after={after}"));
            }
            let mut response = self.agent.get(&url).call().expect("GET /api/tasks");
            assert_eq!(response.status().as_u16(), 200, "GET {url}");
            let page: Value = response.body_mut().read_json().expect("list JSON");
            for item in page["items"].as_array().expect("items") {
                titles.push(item["title"].as_str().unwrap_or_default().to_string());
            }
            match &page["next"] {
                Value::Null => return titles,
                next => {
                    after = Some(
                        next.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| next.to_string()),
                    )
                }
            }
        }
    }

    /// What `GET /version` says the serving release is.
    pub fn version(&self) -> String {
        let mut response = self
            .agent
            .get(format!("{}/version", self.base))
            .call()
            .expect("GET /version");
        assert_eq!(response.status().as_u16(), 200, "GET /version");
        let body: Value = response.body_mut().read_json().expect("version JSON");
        body["version"].as_str().unwrap_or_default().to_string()
    }

    pub fn ready(&self) -> bool {
        self.agent
            .get(format!("{}/readyz", self.base))
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }
}
