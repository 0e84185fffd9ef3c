//! Helpers for the container tests in `tests/`: the images under test, docker and Compose invocations,
//! and guards that remove what a test created even when it fails (they act on drop, during unwinding).
//!
//! The images come from `cargo xtask test --only containers`, which builds the service image once and
//! exports `E2E_APP_IMAGE`, `E2E_DB_IMAGE` and `E2E_PROXY_IMAGE`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The service image under test (`infra-challenge:<tag>`).
pub fn app_image() -> String {
    required_env("E2E_APP_IMAGE")
}

/// The MySQL-compatible image the stack uses (`mysql:8.4` or the MariaDB stand-in).
pub fn db_image() -> String {
    required_env("E2E_DB_IMAGE")
}

/// The reverse proxy image in front of the Compose stack's app (`haproxy:2.8` or the HAProxy stand-in).
pub fn proxy_image() -> String {
    required_env("E2E_PROXY_IMAGE")
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: run the container tests through `cargo xtask test --only containers`, \
             which builds the images and sets it"
        ),
    }
}

/// The workspace root (the tests read its Cargo.toml and git revision, and its compose file).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A name no other run can take: prefix, process id and random bits.
pub fn unique_name(prefix: &str) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    format!(
        "{prefix}-{}-{:08x}",
        std::process::id(),
        hasher.finish() as u32
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener
        .local_addr()
        .expect("reading the bound address")
        .port()
}

/// Runs `program args`, returning its output whatever the exit status.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{program}`: {err}"))
}

/// Runs `docker args` and returns its trimmed stdout; panics with stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = run("docker", args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker inspect --format <format> <object>`.
pub fn inspect(object: &str, format: &str) -> String {
    docker(&["inspect", "--format", format, object])
}

/// The container's health status (`starting`, `healthy`, `unhealthy`).
pub fn health(container: &str) -> String {
    inspect(
        container,
        "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
    )
}

/// Waits until the container reports `want`; on timeout panics with the last status and log lines.
pub fn wait_for_health(container: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = health(container);
        if status == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{container} is `{status}`, not `{want}`, after {timeout:?}; its last log lines:\n{}",
                logs_tail(container, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The container's stdout and stderr.
pub fn logs(container: &str) -> String {
    let out = run("docker", &["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn logs_tail(container: &str, lines: usize) -> String {
    let all = logs(container);
    let all: Vec<&str> = all.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A container removed (with its anonymous volumes) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique> <args>`.
    pub fn run(prefix: &str, args: &[&str]) -> Self {
        let name = unique_name(prefix);
        let guard = Self { name: name.clone() };
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        docker(&all);
        guard
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", "-v", &self.name]);
    }
}

/// A user-defined bridge network, removed when dropped (drop it after its containers).
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        docker(&["network", "create", &name]);
        Self { name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = run("docker", &["network", "rm", &self.name]);
    }
}

/// An image tag removed when dropped.
pub struct Image {
    pub tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run("docker", &["image", "rm", "-f", &self.tag]);
    }
}

/// A database container of [`db_image`] on `network` with alias `db`, database `challenge`, user
/// `challenge`; returns once it accepts TCP connections (its healthcheck is given explicitly because the
/// official mysql image has none).
pub fn start_database(network: &Network, user_password: &str, root_password: &str) -> Container {
    let db = Container::run(
        "e2e-db",
        &[
            "--network",
            &network.name,
            "--network-alias",
            "db",
            "-e",
            "MYSQL_DATABASE=challenge",
            "-e",
            "MYSQL_USER=challenge",
            "-e",
            &format!("MYSQL_PASSWORD={user_password}"),
            "-e",
            &format!("MYSQL_ROOT_PASSWORD={root_password}"),
            "--health-cmd",
            "mysqladmin ping --protocol=tcp --host=127.0.0.1 --connect-timeout=2",
            "--health-interval",
            "2s",
            "--health-retries",
            "60",
            &db_image(),
        ],
    );
    wait_for_health(&db.name, "healthy", Duration::from_secs(180));
    db
}

/// `docker run` arguments that point an app container at the database [`start_database`] started
/// on `network`, as user `challenge` with `user_password`.
pub fn app_database_args(network: &Network, user_password: &str) -> Vec<String> {
    [
        "--network",
        &network.name,
        "-e",
        "DB_HOST=db",
        "-e",
        "DB_USERNAME=challenge",
        "-e",
        &format!("DB_PASSWORD={user_password}"),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs SQL as root inside the database container; returns the tab-separated rows.
pub fn sql(db: &Container, root_password: &str, query: &str) -> String {
    docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={root_password}"),
        &db.name,
        "mysql",
        "-uroot",
        "--protocol=tcp",
        "-h127.0.0.1",
        "-N",
        "-B",
        "challenge",
        "-e",
        query,
    ])
}

/// The Compose command this machine has: `docker compose` (v2) when present, else `docker-compose`.
pub fn compose_command() -> Vec<String> {
    if run("docker", &["compose", "version"]).status.success() {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// A Compose project of `deploy/compose/compose.yaml` with its own name, secrets directory and port (the
/// proxy's published port); `down -v` when dropped.
pub struct ComposeProject {
    pub name: String,
    pub port: u16,
    pub secrets: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Compose profiles enabled on every command (`--profile`), so `down` removes their services too.
    profiles: Vec<String>,
}

impl ComposeProject {
    /// Writes the two secret files (directory 0700, files 0644: see deploy/compose/README.md).
    pub fn new(db_password: &str, root_password: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let secrets = tempfile::Builder::new()
            .prefix("e2e-secrets")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let (image, tag) = app_image()
            .rsplit_once(':')
            .map(|(image, tag)| (image.to_owned(), tag.to_owned()))
            .expect("E2E_APP_IMAGE is `repository:tag`");
        let port = free_port();
        let env = vec![
            ("APP_IMAGE".into(), image),
            ("APP_VERSION".into(), tag),
            ("DB_IMAGE".into(), db_image()),
            ("PROXY_IMAGE".into(), proxy_image()),
            ("APP_PORT".into(), port.to_string()),
            ("SECRETS_DIR".into(), secrets.path().display().to_string()),
        ];
        let project = Self {
            name: unique_name("e2e").replace('-', ""),
            port,
            secrets,
            env,
            profiles: Vec::new(),
        };
        project.write_secret("db_password", db_password);
        project.write_secret("db_root_password", root_password);
        project
    }

    /// Enables the Compose profile `profile` on every command, with the variables its services read.
    pub fn with_profile(
        mut self,
        profile: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.profiles.push(profile.to_owned());
        self.env.extend(env);
        self
    }

    /// Overwrites a secret file in place (the containers see the bind-mounted file change).
    pub fn write_secret(&self, name: &str, value: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.secrets.path().join(name);
        std::fs::write(&path, value).expect("writing a secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// Runs `compose -p <name> -f compose.yaml <args>`; returns the output whatever the status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        let file = project_root().join("deploy/compose/compose.yaml");
        let command = compose_command();
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(file);
        for profile in &self.profiles {
            cmd.args(["--profile", profile]);
        }
        cmd.args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output()
            .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "compose {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The id of the service's (first) container.
    pub fn container(&self, service: &str) -> String {
        let id = self.run(&["ps", "-q", service]);
        id.lines()
            .next()
            .unwrap_or_else(|| panic!("no container for `{service}`"))
            .to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.try_run(&["down", "-v", "--remove-orphans", "--timeout", "5"]);
    }
}

/// An HTTP client that returns 4xx/5xx responses instead of errors, with a short overall timeout.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Polls `url` until it answers 200 (connection errors and other statuses are retried).
pub fn wait_for_200(url: &str, timeout: Duration) {
    let agent = http();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = agent.get(url).call()
            && response.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The service's version: the workspace version, which this crate shares with `challenge`.
pub fn workspace_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
