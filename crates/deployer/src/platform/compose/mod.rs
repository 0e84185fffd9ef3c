//! The Docker Compose target: `deploy/compose/compose.yaml` run by `docker compose` (v2 plugin)
//! or the standalone `docker-compose` (v1), whichever the machine has.
//!
//! Compose is driven as a process with the release's choices passed as the variables the compose
//! file interpolates (`APP_IMAGE`, `APP_VERSION`, `DB_IMAGE`, `APP_PORT`, `SECRETS_DIR`, and the CPU
//! limits `APP_CPUS`, `PROXY_CPUS`, `PROXY_THREADS` that follow the replica count). Questions
//! about running containers go to `docker` directly, through Compose's own labels: the same for
//! both flavours, and much faster than starting Compose v1's Python.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::docker::{self, ContainerState};
use crate::error::{Error, Result};
use crate::facts::{
    AIRGAP_DB_IMAGE, AIRGAP_PROXY_IMAGE, APP_UID, COMPOSE_APP_SERVICE, COMPOSE_FILE,
    COMPOSE_PROXY_SERVICE, PROXY_PORT, PROXY_STATS_PORT, SERVICE_PORT,
};
use crate::http::{self, Smoke};
use crate::ledger::{Ledger, Record};
use crate::plan::{Environment, Release};
use crate::platform::{
    Abandoned, AppState, Applied, Changes, Check, Diagnosis, Live, LockInfo, Locking, LogOptions,
    Stopped, Target, Unit, redact, remaining,
};
use crate::process::Cmd;
use crate::report::Step;
use crate::secrets::{self, SecretFile};

mod checks;
mod diagnosis;
mod diff;
mod flavour;
pub mod lock;
mod rollout;

use checks::disk_check;
use diagnosis::{ACCESS_DENIED, likely_cause, without_probes};
pub use flavour::{Flavour, detect_flavour};
use rollout::Rollout;

const APP_SERVICE: &str = COMPOSE_APP_SERVICE;
/// How many log lines a failed deploy shows.
const LOG_TAIL: usize = 30;
/// How many log lines are read to find the cause and the lines worth showing.
const LOG_SCAN: usize = 300;
/// How long an old app container may take to drain and exit (compose.yaml's stop_grace_period).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait looks at the app's log for a cause that waiting cannot cure.
const LOG_CHECK_EVERY: Duration = Duration::from_secs(3);
/// How long a new container's address may take to answer `GET /version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// The secret files compose.yaml mounts from `${SECRETS_DIR}`.
pub const SECRET_FILES: [SecretFile; 2] = [
    // The app user's password: read by the app (as its non-root user) and by the database's
    // entrypoint (as root, when it creates the user on first start).
    SecretFile {
        name: "db_password",
        owner: Some((APP_UID, APP_UID)),
    },
    // The database root password: read only by the database's entrypoint, as root.
    SecretFile {
        name: "db_root_password",
        owner: None,
    },
];

pub struct ComposeTarget {
    file: PathBuf,
    /// Where each environment's ledger lives (`<state dir>/<env>/releases.jsonl`).
    state_dir: PathBuf,
    flavour: OnceLock<Flavour>,
    /// The CPUs of the Docker engine's host (`docker info`), asked once.
    engine_cpus: OnceLock<u32>,
    /// The release being brought up beside the running one (between `apply` and `switch`).
    rollout: RefCell<Option<Rollout>>,
}

impl ComposeTarget {
    pub fn new(project_dir: &Path, state_dir: &Path) -> Self {
        ComposeTarget {
            file: project_dir.join(COMPOSE_FILE),
            state_dir: state_dir.to_path_buf(),
            flavour: OnceLock::new(),
            engine_cpus: OnceLock::new(),
            rollout: RefCell::new(None),
        }
    }

    /// A target with a known Compose flavour (no detection) and an engine host of 4 CPUs: what unit
    /// tests build commands with.
    #[cfg(test)]
    fn with_flavour(project_dir: &Path, state_dir: &Path, flavour: Flavour) -> Self {
        let target = ComposeTarget::new(project_dir, state_dir);
        let _ = target.flavour.set(flavour);
        let _ = target.engine_cpus.set(4);
        target
    }

    /// HAProxy's configuration beside compose.yaml (its server-template bounds the replica count).
    fn proxy_config(&self) -> PathBuf {
        self.file.with_file_name("haproxy.cfg")
    }

    /// The CPUs of the Docker engine's host (`docker info`'s NCPU): where the containers run, which
    /// is another machine than the deployer's when DOCKER_HOST names a remote engine, or a VM's when
    /// Docker Desktop runs one. The deployer's own CPU count would be wrong in both cases.
    fn engine_cpus(&self) -> Result<u32> {
        if let Some(cpus) = self.engine_cpus.get() {
            return Ok(*cpus);
        }
        let cpus = crate::docker::engine_cpus()?;
        Ok(*self.engine_cpus.get_or_init(|| cpus.max(1)))
    }

    /// The most replicas haproxy.cfg's server slots hold during a release (old and new side by side).
    fn max_replicas(&self) -> Result<u32> {
        let path = self.proxy_config();
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        rollout::max_replicas(&text).map_err(|why| {
            Error::prerequisite(
                format!("{}: {why}", path.display()),
                "restore the proxy's server-template lines (git checkout deploy/compose/haproxy.cfg)",
            )
        })
    }

    /// The replica count a release runs: its own (checked before it started), else the default.
    fn replicas_of(&self, release: &Release) -> Result<u32> {
        match release.replicas {
            Some(n) => Ok(n),
            None => Ok(rollout::default_replicas(
                self.engine_cpus()?,
                self.max_replicas()?,
            )),
        }
    }

    /// The environment's secret values, so that any output can be redacted.
    fn secret_values(&self, env: &Environment) -> Vec<String> {
        secrets::values(&env.secrets_dir, &SECRET_FILES)
    }

    fn ledger(&self, env: &Environment) -> Ledger {
        Ledger::open(&self.state_dir.join(&env.name))
    }

    fn flavour(&self) -> Result<&Flavour> {
        if let Some(flavour) = self.flavour.get() {
            return Ok(flavour);
        }
        let detected = detect_flavour()?;
        Ok(self.flavour.get_or_init(|| detected))
    }

    fn check_file(&self) -> Result<()> {
        if self.file.is_file() {
            Ok(())
        } else {
            Err(Error::prerequisite(
                format!("the Compose file {} does not exist", self.file.display()),
                "run the deployer from the repository checkout, or pass --project-dir DIR",
            ))
        }
    }

    /// `docker compose -p <project> -f <file>` with the variables compose.yaml interpolates, for
    /// the release running `image` (`repository:version`) in `replicas` app containers (the CPU
    /// limits follow from it; `None` for commands that start nothing, where compose.yaml's defaults
    /// stand in).
    fn compose(&self, env: &Environment, image: &str, replicas: Option<u32>) -> Result<Cmd> {
        let (repository, version) = split_image(image);
        let mut cmd = self.flavour()?.base();
        if let Some(replicas) = replicas {
            for (name, value) in rollout::cpu_split(self.engine_cpus()?, replicas).variables() {
                cmd = cmd.env(name, value);
            }
        }
        Ok(cmd
            .arg("--project-name")
            .arg(env.project())
            .arg("--file")
            .arg(&self.file)
            .env("APP_IMAGE", repository)
            .env("APP_VERSION", version)
            .env("DB_IMAGE", &env.db_image)
            .env("PROXY_IMAGE", &env.proxy_image)
            .env("APP_PORT", env.port.to_string())
            .env("SECRETS_DIR", &env.secrets_dir))
    }

    /// The image of what runs now, for commands that need the variables but start nothing new.
    fn running_image(&self, env: &Environment) -> String {
        self.app_states(env)
            .ok()
            .and_then(|states| states.first().map(|newest| newest.image.clone()))
            .unwrap_or_else(|| format!("{}:none", env.app_repository))
    }

    /// `up` of the database and the proxy alone (each replaced only if its own configuration
    /// changed): the running app is left alone.
    fn up_infrastructure(&self, env: &Environment, release: &Release) -> Result<Cmd> {
        let replicas = self.replicas_of(release)?;
        Ok(self.compose(env, &release.image, Some(replicas))?.args([
            "up",
            "--detach",
            "--no-build",
            "--no-deps",
            "--remove-orphans",
            "db",
            COMPOSE_PROXY_SERVICE,
        ]))
    }

    /// `up --scale app=M+N --no-recreate`: the release's N app containers beside the M running
    /// ones (`running`), which Compose leaves as they are.
    fn scale_up(&self, env: &Environment, release: &Release, running: usize) -> Result<Cmd> {
        let replicas = self.replicas_of(release)?;
        let total = running + replicas as usize;
        Ok(self
            .compose(env, &release.image, Some(replicas))?
            .args([
                "up",
                "--detach",
                "--no-build",
                "--no-deps",
                "--no-recreate",
                "--scale",
            ])
            .arg(format!("{APP_SERVICE}={total}"))
            .arg(APP_SERVICE))
    }

    /// `up`: the release's containers (N of the app), replacing what differs, removing services no
    /// longer declared.
    fn up(&self, env: &Environment, release: &Release) -> Result<Cmd> {
        let replicas = self.replicas_of(release)?;
        Ok(self
            .compose(env, &release.image, Some(replicas))?
            .args([
                "up",
                "--detach",
                "--remove-orphans",
                "--no-build",
                "--scale",
            ])
            .arg(format!("{APP_SERVICE}={replicas}")))
    }

    /// `down`: containers and network; volumes too with `purge_data`.
    fn down_cmd(&self, env: &Environment, image: &str, purge_data: bool) -> Result<Cmd> {
        let cmd = self
            .compose(env, image, None)?
            .args(["down", "--remove-orphans"]);
        Ok(if purge_data {
            cmd.arg("--volumes")
        } else {
            cmd
        })
    }

    /// `logs`: the last lines of one or all services.
    fn logs_cmd(&self, env: &Environment, image: &str, options: &LogOptions) -> Result<Cmd> {
        let mut cmd = self
            .compose(env, image, None)?
            .args(["logs", "--tail"])
            .arg(options.tail.to_string());
        if options.follow {
            cmd = cmd.arg("--follow");
        }
        if let Some(service) = &options.service {
            cmd = cmd.arg(service);
        }
        Ok(cmd)
    }

    /// Containers of a service of the project, newest first (through Compose's labels).
    fn containers(&self, env: &Environment, service: Option<&str>) -> Result<Vec<String>> {
        let mut cmd = Cmd::new("docker")
            .args(["ps", "--all", "--quiet", "--no-trunc", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project={}",
                env.project()
            ));
        if let Some(service) = service {
            cmd = cmd
                .arg("--filter")
                .arg(format!("label=com.docker.compose.service={service}"));
        }
        let text = cmd.checked(Duration::from_secs(20))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn app_states(&self, env: &Environment) -> Result<Vec<ContainerState>> {
        self.containers(env, Some(APP_SERVICE))?
            .iter()
            .map(|id| docker::inspect_container(id))
            .collect()
    }

    /// The host port a container publishes `port` on.
    fn published_port(&self, id: &str, port: u16) -> Option<u16> {
        let text = Cmd::new("docker")
            .args(["port", id, &format!("{port}/tcp")])
            .checked(Duration::from_secs(20))
            .ok()?;
        text.lines()
            .filter_map(|line| line.rsplit(':').next())
            .find_map(|port| port.trim().parse().ok())
    }

    fn diagnose(
        &self,
        env: &Environment,
        release: &Release,
        timed_out: Option<Duration>,
    ) -> Diagnosis {
        let states = self.app_states(env).unwrap_or_default();
        // The container of this release, else whatever app container there is.
        let state = states
            .iter()
            .find(|s| s.image == release.image)
            .or(states.first())
            .cloned();
        let Some(state) = state else {
            return Diagnosis::cause("no app container was created (see the Compose output above)");
        };
        self.diagnose_state(env, state, timed_out)
    }

    /// The diagnosis of one observed state of the app container. A crash loop is diagnosed from
    /// the state that showed it: once Docker has restarted the process the container reads
    /// `running` with exit code 0 again, until the next crash.
    fn diagnose_state(
        &self,
        env: &Environment,
        state: ContainerState,
        timed_out: Option<Duration>,
    ) -> Diagnosis {
        let log_tail = without_probes(
            docker::logs_tail(&state.id, LOG_SCAN).unwrap_or_default(),
            LOG_TAIL,
        );
        let secrets = self.secret_values(env);
        let log_tail: Vec<String> = log_tail
            .iter()
            .map(|line| redact(line, &secrets).trim_end().to_string())
            .collect();
        let health_log: Vec<String> = state
            .health_log
            .iter()
            .rev()
            .take(3)
            .rev()
            .cloned()
            .collect();
        Diagnosis {
            stopped: Stopped::Unhealthy,
            cause: likely_cause(&state, &log_tail, timed_out),
            fix: None,
            details: vec![format!("app container: {}", state.describe())],
            blocks: vec![
                ("last healthcheck results".to_string(), health_log),
                (
                    format!("last {} log lines of the app", log_tail.len()),
                    log_tail,
                ),
            ],
        }
    }

    /// An image the stack needs (the database's, the proxy's) must be local; pull it when a
    /// registry can provide it. `what` names it, `flag` is the flag that chooses it.
    fn ensure_image(&self, what: &str, image: &str, flag: &str, standin: &str) -> Result<()> {
        if docker::image_id(image)?.is_some() {
            return Ok(());
        }
        let pulled = Cmd::new("docker")
            .args(["pull", "--quiet", image])
            .output(Duration::from_secs(600))?;
        if pulled.success {
            return Ok(());
        }
        let standin_here = docker::image_id(standin).ok().flatten().is_some();
        Err(missing_image(
            what,
            image,
            flag,
            standin,
            standin_here,
            &pulled.explanation(),
        ))
    }

    /// The proxy's container, when it exists.
    fn proxy(&self, env: &Environment) -> Option<String> {
        self.containers(env, Some(COMPOSE_PROXY_SERVICE))
            .ok()?
            .into_iter()
            .next()
    }

    /// The servers of the proxy's app backends, from its statistics page (published on loopback).
    fn proxy_servers(
        &self,
        env: &Environment,
    ) -> std::result::Result<Vec<Vec<rollout::ServerState>>, String> {
        let proxy = self
            .proxy(env)
            .ok_or("the proxy container does not exist")?;
        let port = self
            .published_port(&proxy, PROXY_STATS_PORT)
            .ok_or("the proxy publishes no statistics port")?;
        let csv = http::get_text(&format!("http://127.0.0.1:{port}/stats;csv"))?;
        Ok(rollout::PROXY_BACKENDS
            .iter()
            .map(|backend| rollout::parse_stats(&csv, backend))
            .collect())
    }

    /// The address (`ip:8000`) the proxy reaches an app container at.
    fn address(&self, id: &str) -> Option<String> {
        let ip = Cmd::new("docker")
            .args([
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                id,
            ])
            .checked(Duration::from_secs(20))
            .ok()?;
        let ip = ip.split_whitespace().next()?.to_string();
        Some(format!("{ip}:{SERVICE_PORT}"))
    }

    /// Waits until the proxy sends requests to every container in `ids`.
    fn wait_in_rotation(
        &self,
        env: &Environment,
        ids: &[String],
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> std::result::Result<(), Diagnosis> {
        let addresses: Vec<String> = ids.iter().filter_map(|id| self.address(id)).collect();
        let mut last: String;
        loop {
            if step.interrupted() {
                return Err(Diagnosis::interrupted(
                    "the proxy to route to the new release",
                ));
            }
            match self.proxy_servers(env) {
                Ok(backends)
                    if backends
                        .iter()
                        .all(|servers| rollout::routes_to_all(servers, &addresses)) =>
                {
                    return Ok(());
                }
                Ok(backends) => {
                    last = backends
                        .iter()
                        .flatten()
                        .filter(|s| !s.address.is_empty())
                        .map(|s| format!("{} {}", s.address, s.status))
                        .collect::<Vec<_>>()
                        .join(", ");
                    step.detail(&format!(
                        "waiting for the proxy to route to {}: {last}",
                        addresses.join(", ")
                    ));
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(Diagnosis {
                    stopped: Stopped::Unhealthy,
                    // What became of the previous release is the procedure's to say: it knows
                    // whether there was one and whether it still serves.
                    cause: format!(
                        "the new release is healthy but the proxy never routed to it ({last})"
                    ),
                    fix: Some("check the proxy's log: `deployer logs proxy`".into()),
                    details: Vec::new(),
                    blocks: Vec::new(),
                });
            }
            thread::sleep(Duration::from_millis(250).min(remaining(deadline)));
        }
    }

    /// Asks each of the release's new containers its own `GET /version` (at its address, as the
    /// proxy would reach it): a tag moved to another build, or a build given the wrong version,
    /// fails here, while the previous release still serves alone. An address the deployer cannot
    /// reach (an engine on another machine, Docker Desktop's VM) is not a failure: the smoke test
    /// asks `/version` again through the published port after the switch.
    fn check_versions(
        &self,
        release: &Release,
        new: &[&ContainerState],
        step: &mut Step<'_>,
    ) -> std::result::Result<(), Diagnosis> {
        for state in new {
            let short: String = state.id.chars().take(12).collect();
            let Some(address) = self.address(&state.id) else {
                continue;
            };
            step.detail(&format!("asking {short} ({address}) its /version"));
            let reported = match http::version_at(&format!("http://{address}"), VERSION_TIMEOUT) {
                Ok(smoke) => smoke.version,
                Err(e) => {
                    step.detail(&format!(
                        "{short}'s /version did not answer here ({e}); the smoke test checks it"
                    ));
                    continue;
                }
            };
            if reported != release.version {
                return Err(Diagnosis {
                    stopped: Stopped::Unhealthy,
                    cause: format!(
                        "the image {} says it is version {reported} (GET /version of container {short}), not \
                         {}: the tag may point at another build",
                        release.image, release.version
                    ),
                    fix: Some(format!(
                        "rebuild the release with its version, `deployer build --version {}`, then deploy it \
                         again; `docker image inspect {}` shows which build the tag names now",
                        release.version, release.image
                    )),
                    details: vec![format!("app container: {}", state.describe())],
                    blocks: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Stops the old release's containers (each drains while the proxy takes it out of rotation)
    /// and removes them. All at once: every new container is in rotation already, and `docker stop`
    /// stops the containers it is given in parallel, so a release of N takes one drain, not N.
    fn drain(&self, old: &[String], step: &mut Step<'_>) -> Result<()> {
        if old.is_empty() {
            return Ok(());
        }
        let short: Vec<&str> = old.iter().map(|id| &id[..12.min(id.len())]).collect();
        step.detail(&format!("draining {}", short.join(", ")));
        Cmd::new("docker")
            .args(["stop", "--time", &DRAIN_TIMEOUT.as_secs().to_string()])
            .args(old)
            .checked(DRAIN_TIMEOUT + Duration::from_secs(20))?;
        Cmd::new("docker")
            .args(["rm", "--force"])
            .args(old)
            .checked(Duration::from_secs(60))?;
        Ok(())
    }

    /// The services of the stack (not those of optional profiles) as Compose resolves them for
    /// `release`: what `up` would run. A configuration that does not resolve is refused before
    /// anything changes.
    fn resolved_config(&self, env: &Environment, release: &Release) -> Result<serde_json::Value> {
        self.check_file()?;
        let output = self
            .compose(env, &release.image, Some(self.replicas_of(release)?))?
            .arg("config")
            .output(Duration::from_secs(60))?;
        if !output.success {
            return Err(Error::prerequisite(
                format!(
                    "the Compose configuration of {} does not resolve for {}: {}",
                    env.project(),
                    release.version,
                    output.explanation().lines().last().unwrap_or("")
                ),
                format!(
                    "check {} and the variables it needs (`deployer render --version {}`)",
                    self.file.display(),
                    release.version
                ),
            ));
        }
        let mut config: serde_json::Value = serde_saphyr::from_str(&output.stdout)
            .map_err(|e| Error::Other(format!("reading what `compose config` printed: {e}")))?;
        if let Some(services) = config["services"].as_object_mut() {
            services.retain(|_, service| service.get("profiles").is_none());
        }
        Ok(config)
    }

    fn port_check(&self, env: &Environment) -> Check {
        let name = "port";
        if TcpListener::bind(("0.0.0.0", env.port)).is_ok() {
            return Check::pass(name, format!("{} is free", env.port));
        }
        let ours = self
            .containers(env, Some(COMPOSE_PROXY_SERVICE))
            .unwrap_or_default()
            .iter()
            .any(|id| self.published_port(id, PROXY_PORT) == Some(env.port));
        if ours {
            Check::pass(
                name,
                format!("{} is used by this environment's proxy", env.port),
            )
        } else {
            Check::fail(
                name,
                format!("port {} is in use by another program", env.port),
                format!(
                    "pass --port with a free port, or stop what listens there (`ss -ltnp 'sport = :{}'`)",
                    env.port
                ),
            )
        }
    }
}

/// `registry:5000/team/infra-challenge:1.2.0` -> (`registry:5000/team/infra-challenge`, `1.2.0`).
fn split_image(image: &str) -> (&str, &str) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => (
            &image[..name_start + colon],
            &image[name_start + colon + 1..],
        ),
        None => (image, "latest"),
    }
}

/// A stack image that is neither local nor pullable, as one sentence with its fix: where no
/// registry answers, the air-gapped stand-in (`standin_here`: it is in the engine already).
fn missing_image(
    what: &str,
    image: &str,
    flag: &str,
    standin: &str,
    standin_here: bool,
    pull_detail: &str,
) -> Error {
    let variable = format!(
        "DEPLOYER_{}",
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    );
    let fix = if image == standin {
        "seed it with `cargo xtask airgap-images` (it builds the stand-ins from Debian packages)"
            .to_string()
    } else if standin_here {
        format!(
            "the air-gapped stand-in is here: pass {flag} {standin} (or {variable}), or leave \
             {flag} and {variable} unset to have it used"
        )
    } else {
        format!(
            "run `cargo xtask airgap-images` (it builds the stand-in {standin} from Debian packages, \
             which the deployer then uses by itself when {flag} is not given), or pass {flag} with an \
             image that is here"
        )
    };
    Error::prerequisite(
        format!(
            "the {what} image {image} is not in the local engine and {}",
            docker::pull_failure(pull_detail)
        ),
        fix,
    )
}

/// `doctor`'s check that an image the stack needs is in the engine, with the way to get it.
fn image_check(name: &str, image: &str, flag: &str, standin: &str) -> Check {
    match docker::image_id(image) {
        Ok(Some(_)) if image == standin => {
            Check::pass(name, format!("{image} (air-gapped stand-in)"))
        }
        Ok(Some(_)) => Check::pass(name, image),
        Ok(None) => Check::fail(
            name,
            format!("{image} is not in the local engine"),
            if image == standin {
                "seed it with `cargo xtask airgap-images`".to_string()
            } else {
                format!(
                    "`docker pull {image}`; where no registry is reachable, `cargo xtask \
                     airgap-images` seeds the stand-in {standin}, used by itself when {flag} is not given"
                )
            },
        ),
        Err(e) => Check::fail(name, e.to_string(), "check `docker images`"),
    }
}

impl Target for ComposeTarget {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn title(&self) -> &'static str {
        "Docker Compose"
    }

    fn location(&self, env: &Environment) -> String {
        env.url()
    }

    fn preflight(&self, env: &Environment) -> Result<()> {
        docker::engine_version()?;
        self.flavour()?;
        self.check_file()?;
        let port = self.port_check(env);
        match port.fix {
            Some(fix) if !port.ok => Err(Error::prerequisite(port.detail, fix)),
            _ => Ok(()),
        }
    }

    fn replicas(&self, _env: &Environment, requested: Option<u32>) -> Result<Option<u32>> {
        let max = self.max_replicas()?;
        match requested {
            Some(n) => rollout::check_replicas(n, max, &self.proxy_config().display().to_string())
                .map(Some)
                .map_err(Error::usage),
            None => Ok(Some(rollout::default_replicas(self.engine_cpus()?, max))),
        }
    }

    fn artifact(&self, env: &Environment, release: &Release) -> Result<String> {
        let image_id = docker::image_id(&release.image)?.ok_or_else(|| {
            Error::prerequisite(
                format!("the image {} is not in the local engine", release.image),
                format!(
                    "build it: `deployer build --version {}`, or add --build to the deploy",
                    release.version
                ),
            )
        })?;
        self.ensure_image("database", &env.db_image, "--db-image", AIRGAP_DB_IMAGE)?;
        self.ensure_image(
            "proxy",
            &env.proxy_image,
            "--proxy-image",
            AIRGAP_PROXY_IMAGE,
        )?;
        Ok(image_id)
    }

    fn doctor(&self, env: &Environment) -> Vec<Check> {
        let mut checks = Vec::new();
        let engine = docker::engine_version();
        checks.push(match &engine {
            Ok(version) => Check::pass(
                "docker engine",
                format!("{version} at {}", docker::engine_address()),
            ),
            Err(Error::Prerequisite { problem, fix }) => Check::fail("docker engine", problem, fix),
            Err(other) => Check::fail("docker engine", other.to_string(), "check `docker info`"),
        });
        checks.push(match self.flavour() {
            Ok(flavour) => Check::pass("compose", flavour.describe()),
            Err(Error::Prerequisite { problem, fix }) => Check::fail("compose", problem, fix),
            Err(other) => Check::fail(
                "compose",
                other.to_string(),
                "check `docker compose version`",
            ),
        });
        checks.push(match self.check_file() {
            Ok(()) => Check::pass("compose file", self.file.display().to_string()),
            Err(Error::Prerequisite { problem, fix }) => Check::fail("compose file", problem, fix),
            Err(other) => Check::fail("compose file", other.to_string(), "pass --project-dir"),
        });
        if engine.is_err() {
            // Everything below asks the engine: one failure with its fix is clearer than five.
            return checks;
        }
        checks.push(self.port_check(env));
        checks.push(disk_check());
        checks.push(image_check(
            "database image",
            &env.db_image,
            "--db-image",
            AIRGAP_DB_IMAGE,
        ));
        checks.push(image_check(
            "proxy image",
            &env.proxy_image,
            "--proxy-image",
            AIRGAP_PROXY_IMAGE,
        ));
        checks.push(match docker::local_tags(&env.app_repository) {
            Ok(tags) if !tags.is_empty() => Check::pass(
                "app images",
                format!(
                    "{}: {}",
                    env.app_repository,
                    crate::plan::version_choices(None, &tags).join(", ")
                ),
            ),
            Ok(_) => Check::fail(
                "app images",
                format!("no {} image in the local engine", env.app_repository),
                "build one: `deployer build --version X` (or `deployer deploy --build ...`)",
            ),
            Err(e) => Check::fail("app images", e.to_string(), "check `docker images`"),
        });
        checks
    }

    fn live(&self, env: &Environment) -> Result<Live> {
        docker::engine_version()?;
        let containers = Cmd::new("docker")
            .args([
                "ps",
                "--all",
                "--format",
                "{{.Label \"com.docker.compose.service\"}}",
                "--filter",
            ])
            .arg(format!(
                "label=com.docker.compose.project={}",
                env.project()
            ))
            .checked(Duration::from_secs(20))?;
        let mut services: Vec<String> = containers.lines().map(|s| s.trim().to_string()).collect();
        services.sort();
        services.dedup();
        let states = self.app_states(env)?;
        let app = states.first();
        // The proxy owns the published port; the app's own is there only in a stack from before it.
        let url = self
            .proxy(env)
            .and_then(|proxy| self.published_port(&proxy, PROXY_PORT))
            .or_else(|| {
                app.filter(|a| a.status == "running")
                    .and_then(|a| self.published_port(&a.id, SERVICE_PORT))
            })
            .map(|port| format!("http://127.0.0.1:{port}"));
        Ok(Live {
            version: app.and_then(|a| a.image_tag().map(String::from)),
            app: app.map(|a| AppState {
                running: a.status == "running",
                health: a.health.clone().unwrap_or_else(|| a.status.clone()),
                state: a.describe(),
                since: a.started_at.clone(),
            }),
            url,
            services,
            units: states
                .iter()
                .map(|s| Unit {
                    name: s.id.chars().take(12).collect(),
                    state: s.status.clone(),
                    ready: s
                        .health
                        .as_deref()
                        .map_or(s.status == "running", |h| h == "healthy"),
                    restarts: s.restart_count,
                })
                .collect(),
        })
    }

    fn known_versions(&self, env: &Environment) -> Result<Vec<String>> {
        docker::local_tags(&env.app_repository)
    }

    fn render(&self, env: &Environment, release: &Release) -> Result<String> {
        self.check_file()?;
        let text = self
            .compose(env, &release.image, Some(self.replicas_of(release)?))?
            .arg("config")
            .checked(Duration::from_secs(60))?;
        Ok(redact(&text, &self.secret_values(env)))
    }

    fn ensure_secrets(&self, env: &Environment) -> Result<Vec<String>> {
        let created = secrets::ensure(&env.secrets_dir, &SECRET_FILES)?;
        Ok(if created.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "created secrets {} in {} (mode 0600, never printed)",
                created.join(", "),
                env.secrets_dir.display()
            )]
        })
    }

    fn apply(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<Applied, Diagnosis> {
        // What serves now stays until the new release is healthy and in the proxy's rotation.
        let running: Vec<String> = self
            .app_states(env)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.status == "running")
            .map(|s| s.id)
            .collect();
        let proxied = self.proxy(env).is_some();
        let cmd = if running.is_empty() || !proxied {
            // First release (or a stack from before the proxy): the whole stack, as Compose would.
            step.detail("docker compose up");
            *self.rollout.borrow_mut() = None;
            self.up(env, release)
        } else {
            step.detail("docker compose up: database and proxy");
            let infrastructure = self
                .up_infrastructure(env, release)
                .map_err(|e| Diagnosis::cause(e.to_string()))?
                .output(remaining(deadline).max(Duration::from_secs(1)))
                .map_err(|e| Diagnosis::cause(e.to_string()))?;
            if !infrastructure.success {
                return Err(Diagnosis::cause(format!(
                    "Compose could not update the database or the proxy: {}",
                    infrastructure.explanation().lines().last().unwrap_or("")
                )));
            }
            step.detail(&format!(
                "starting the new release's {} container(s) beside the {} running",
                self.replicas_of(release)
                    .map_err(|e| Diagnosis::cause(e.to_string()))?,
                running.len()
            ));
            *self.rollout.borrow_mut() = Some(Rollout {
                old: running.clone(),
            });
            self.scale_up(env, release, running.len())
        }
        .map_err(|e| Diagnosis::cause(e.to_string()))?;
        let output = cmd.output(remaining(deadline).max(Duration::from_secs(1)));
        match output {
            Ok(output) if output.success => Ok(Applied::default()),
            Ok(output) => {
                let mut diagnosis = self.diagnose(env, release, None);
                let compose_says = output.explanation();
                let last = compose_says.lines().last().unwrap_or("").to_string();
                diagnosis.cause = format!("Compose could not start the release: {last}");
                if diagnosis.blocks.iter().all(|(_, lines)| lines.is_empty()) {
                    diagnosis.blocks = vec![(
                        "Compose output".to_string(),
                        compose_says.lines().map(String::from).collect(),
                    )];
                }
                Err(diagnosis)
            }
            Err(e) => {
                let mut diagnosis = self.diagnose(env, release, None);
                diagnosis.cause = format!("Compose did not finish in time: {e}");
                Err(diagnosis)
            }
        }
    }

    fn wait_healthy(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        let started = Instant::now();
        let mut last_log_check = Instant::now();
        let replicas = self
            .replicas_of(release)
            .map_err(|e| Diagnosis::cause(e.to_string()))? as usize;
        // Restart counts when first seen: a process that crashes after a moment of running is
        // mostly seen `running` between Docker's restarts, but its count goes up.
        let mut first_restarts: HashMap<String, u64> = HashMap::new();
        loop {
            // Checked first on every round: a signal must stop the wait within one round.
            if step.interrupted() {
                return Err(Diagnosis::interrupted(
                    "the new release's containers to become healthy",
                ));
            }
            let states = self.app_states(env).unwrap_or_default();
            let ours: Vec<&ContainerState> =
                states.iter().filter(|s| s.image == release.image).collect();
            if let Some(bad) = ours
                .iter()
                .find(|s| s.is_crashing() || s.health.as_deref() == Some("unhealthy"))
            {
                step.detail(&bad.describe());
                return Err(self.diagnose_state(env, (*bad).clone(), None));
            }
            for state in &ours {
                let first = *first_restarts
                    .entry(state.id.clone())
                    .or_insert(state.restart_count);
                if state.restart_count > first {
                    step.detail(&state.describe());
                    let mut diagnosis = self.diagnose_state(env, (*state).clone(), None);
                    diagnosis.cause = format!(
                        "the app process exits at start (Docker restarted it {} during the deploy): \
                         see its last log lines below",
                        docker::times(state.restart_count - first)
                    );
                    return Err(diagnosis);
                }
            }
            // Docker's own verdict, the one `status`, `docker ps` and the restart policy go by: a
            // release is done when the healthcheck (`challenge healthcheck`, i.e. /readyz is 200)
            // of every one of its N containers has passed, so what `deploy` reports is what
            // everything else sees right after.
            let old = self
                .rollout
                .borrow()
                .as_ref()
                .map(|r| r.old.clone())
                .unwrap_or_default();
            let new_count = ours.iter().filter(|s| !old.contains(&s.id)).count();
            let healthy = new_count >= replicas
                && ours.iter().all(|s| match s.health.as_deref() {
                    Some(health) => health == "healthy",
                    None => s.status == "running",
                });
            if healthy {
                // Before the old release is retired: a container that is not the release it is
                // labelled as is removed while the old one still serves. (The proxy finds new
                // containers through Docker's DNS and may already route to one whose /readyz
                // passed; the check cannot keep those few requests away from it.)
                let new: Vec<&ContainerState> =
                    ours.into_iter().filter(|s| !old.contains(&s.id)).collect();
                return self.check_versions(release, &new, step);
            }
            // Refused credentials never heal by waiting: look at the log every few seconds.
            if last_log_check.elapsed() >= LOG_CHECK_EVERY {
                last_log_check = Instant::now();
                let refused = ours.iter().any(|s| {
                    docker::logs_tail(&s.id, LOG_SCAN)
                        .is_ok_and(|lines| lines.iter().any(|l| l.contains(ACCESS_DENIED)))
                });
                if refused {
                    return Err(self.diagnose(env, release, None));
                }
            }
            step.detail(
                &match ours.iter().find(|s| s.health.as_deref() != Some("healthy")) {
                    Some(state) => format!(
                        "{} of {replicas} new containers: {}",
                        new_count,
                        state.describe()
                    ),
                    None => format!("{new_count} of {replicas} new containers created"),
                },
            );
            if Instant::now() >= deadline {
                return Err(self.diagnose(env, release, Some(started.elapsed())));
            }
            thread::sleep(Duration::from_millis(250).min(remaining(deadline)));
        }
    }

    fn switch(
        &self,
        env: &Environment,
        release: &Release,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        let Some(rollout) = self.rollout.borrow().clone() else {
            return Ok(());
        };
        let states = self.app_states(env).unwrap_or_default();
        let new = rollout::new_containers(
            states
                .iter()
                .filter(|s| s.status == "running")
                .map(|s| (s.id.as_str(), s.image.as_str())),
            &release.image,
            &rollout,
        );
        self.wait_in_rotation(env, &new, deadline, step)?;
        self.drain(&rollout.old, step).map_err(|e| Diagnosis {
            stopped: Stopped::Unhealthy,
            cause: format!("the new release serves, but stopping the old one failed: {e}"),
            fix: Some("remove the old app container by hand: `docker ps` shows it".into()),
            details: Vec::new(),
            blocks: Vec::new(),
        })?;
        *self.rollout.borrow_mut() = None;
        Ok(())
    }

    fn abandon(&self, env: &Environment, release: &Release) -> Abandoned {
        let Some(rollout) = self.rollout.borrow_mut().take() else {
            return Abandoned::Replaced;
        };
        let states = self.app_states(env).unwrap_or_default();
        let old_serving = states
            .iter()
            .any(|s| rollout.old.contains(&s.id) && s.status == "running");
        if !old_serving {
            return Abandoned::Replaced;
        }
        // Every container of this attempt goes; the old ones never stopped serving.
        let new: Vec<&str> = states
            .iter()
            .filter(|s| !rollout.old.contains(&s.id) && s.image == release.image)
            .map(|s| s.id.as_str())
            .collect();
        // Stopped before they are removed: the proxy finds a new container through Docker's DNS
        // and may already send it requests (a healthy one whose /version was wrong, say). Stopped,
        // it drains like an old release (/readyz 503 for SHUTDOWN_DELAY while it still answers,
        // then in-flight requests finish), so no request dies with it; a crashed one stops at once.
        let removed = new.is_empty()
            || (Cmd::new("docker")
                .args(["stop", "--time", &DRAIN_TIMEOUT.as_secs().to_string()])
                .args(&new)
                .checked(DRAIN_TIMEOUT + Duration::from_secs(20))
                .is_ok()
                && Cmd::new("docker")
                    .args(["rm", "--force"])
                    .args(new)
                    .checked(Duration::from_secs(60))
                    .is_ok());
        if removed {
            Abandoned::PreviousKeptServing
        } else {
            Abandoned::Replaced
        }
    }

    fn smoke(&self, env: &Environment) -> std::result::Result<Smoke, String> {
        http::smoke_test(&env.url())
    }

    fn history(&self, env: &Environment) -> Result<Vec<Record>> {
        self.ledger(env).load()
    }

    fn record(&self, env: &Environment, record: Record) -> Result<()> {
        self.ledger(env).append(&Record {
            // The ledger keeps what Compose needs; a rollback re-runs compose.yaml with the version.
            manifests: None,
            ..record
        })
    }

    fn logs(&self, env: &Environment, options: &LogOptions) -> Result<i32> {
        if options.previous {
            return Err(Error::usage(
                "--previous is for Kubernetes (a restarted pod's earlier container); Compose keeps one log per \
                 container: `deployer logs` shows it whole",
            ));
        }
        self.check_file()?;
        self.logs_cmd(env, &self.running_image(env), options)?
            .interactive()
    }

    fn down(&self, env: &Environment, purge_data: bool) -> Result<()> {
        docker::engine_version()?;
        self.check_file()?;
        self.down_cmd(env, &self.running_image(env), purge_data)?
            .checked(Duration::from_secs(180))
            .map(|_| ())
    }

    fn verify(&self, env: &Environment, release: &Release) -> Result<()> {
        self.resolved_config(env, release).map(|_| ())
    }

    fn diff(&self, env: &Environment, release: &Release) -> Result<Changes> {
        let desired = diff::desired(&self.resolved_config(env, release)?);
        let mut live = std::collections::BTreeMap::new();
        for service in desired.keys() {
            for id in self.containers(env, Some(service))? {
                let text = Cmd::new("docker")
                    .args(["inspect", &id])
                    .checked(Duration::from_secs(20))?;
                let inspected: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Error::Other(format!("reading `docker inspect {id}`: {e}")))?;
                // The newest running container is what serves (during a rollout, the new release).
                if inspected[0]["State"]["Running"] == serde_json::Value::Bool(true) {
                    live.insert(service.clone(), diff::live(&inspected[0]));
                    break;
                }
            }
        }
        Ok(diff::compare(&desired, &live, &self.secret_values(env)))
    }

    fn try_lock(&self, env: &Environment, request: &LockInfo) -> Result<Locking> {
        lock::try_lock(&self.state_dir.join(&env.name), request)
    }

    fn lock_holder(&self, env: &Environment) -> Result<Option<LockInfo>> {
        lock::holder(&self.state_dir.join(&env.name))
    }

    fn break_lock(&self, env: &Environment) -> Result<Option<LockInfo>> {
        match self.lock_holder(env)? {
            None => Ok(None),
            Some(info) => Err(Error::Locked(format!(
                "{} holds the lock of {} ({} {} since {}), and it is alive: a Compose lock is released by the \
                 kernel when its holder exits, so it is never stale. Wait for it (--wait-for-lock), or stop that \
                 deployer (its process id follows the ':')",
                info.holder,
                env.name,
                info.operation,
                info.version,
                crate::ledger::format_time(info.since)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_distinct() {
        assert_ne!(SECRET_FILES[0].name, SECRET_FILES[1].name);
    }

    fn target() -> ComposeTarget {
        ComposeTarget::with_flavour(
            Path::new("/src"),
            Path::new("/state"),
            Flavour::Plugin {
                version: "2.29.0".into(),
            },
        )
    }

    fn env() -> Environment {
        Environment {
            name: "qa".into(),
            app_repository: "infra-challenge".into(),
            db_image: "mysql:8.4".into(),
            proxy_image: "infra-challenge/haproxy:2.6".into(),
            port: 8081,
            secrets_dir: "/state/qa/secrets".into(),
        }
    }

    #[test]
    fn up_runs_the_release_with_the_variables_compose_yaml_interpolates() {
        let mut release = env().release("1.2.0");
        release.image = "registry.local:5000/team/infra-challenge:1.2.0".into();
        release.replicas = Some(3);
        let up = target().up(&env(), &release).unwrap();
        assert_eq!(
            up.argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "infra-challenge-qa",
                "--file",
                "/src/deploy/compose/compose.yaml",
                "up",
                "--detach",
                "--remove-orphans",
                "--no-build",
                "--scale",
                "app=3"
            ]
        );
        let var = |key| up.env_value(key).unwrap();
        assert_eq!(var("APP_IMAGE"), "registry.local:5000/team/infra-challenge");
        assert_eq!(var("APP_VERSION"), "1.2.0");
        assert_eq!(var("DB_IMAGE"), "mysql:8.4");
        assert_eq!(var("APP_PORT"), "8081");
        assert_eq!(var("SECRETS_DIR"), "/state/qa/secrets");
        // The test target's engine host has 4 CPUs: 3 containers share them, the proxy gets 2.
        assert_eq!(var("APP_CPUS"), "1.33");
        assert_eq!(var("PROXY_CPUS"), "2.0");
        assert_eq!(var("PROXY_THREADS"), "2");
    }

    #[test]
    fn a_release_starts_its_n_containers_beside_the_m_running_ones() {
        let mut release = env().release("2.0.0");
        release.replicas = Some(2);
        let target = target();
        let scale = target.scale_up(&env(), &release, 3).unwrap();
        assert_eq!(
            scale.argv()[6..],
            [
                "up",
                "--detach",
                "--no-build",
                "--no-deps",
                "--no-recreate",
                "--scale",
                "app=5",
                "app"
            ]
        );
        assert_eq!(scale.env_value("APP_CPUS").unwrap(), "2.00");
        // The proxy's limits are the same whatever the count: updating it never recreates it.
        let infrastructure = target.up_infrastructure(&env(), &release).unwrap();
        release.replicas = Some(4);
        let other = target.up_infrastructure(&env(), &release).unwrap();
        for key in ["PROXY_CPUS", "PROXY_THREADS"] {
            assert_eq!(infrastructure.env_value(key), other.env_value(key), "{key}");
        }
    }

    #[test]
    fn commands_that_start_nothing_leave_the_cpu_limits_to_compose_yaml() {
        let logs = target()
            .logs_cmd(
                &env(),
                "infra-challenge:1",
                &LogOptions {
                    follow: false,
                    tail: 10,
                    previous: false,
                    service: None,
                },
            )
            .unwrap();
        assert_eq!(logs.env_value("APP_CPUS"), None);
    }

    #[test]
    fn the_replica_count_is_checked_against_the_repository_s_haproxy_cfg() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = ComposeTarget::with_flavour(
            &root,
            Path::new("/state"),
            Flavour::Standalone {
                version: "1.29.2".into(),
            },
        );
        assert_eq!(target.replicas(&env(), Some(8)).unwrap(), Some(8));
        assert_eq!(
            target.replicas(&env(), None).unwrap(),
            Some(4),
            "one per CPU of the (test) engine host"
        );
        let error = target.replicas(&env(), Some(9)).unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::USAGE);
        assert!(error.to_string().contains("at most 8 replicas"), "{error}");
        assert!(error.to_string().contains("haproxy.cfg"), "{error}");
    }

    #[test]
    fn down_keeps_volumes_unless_purging() {
        let target = ComposeTarget::with_flavour(
            Path::new("/src"),
            Path::new("/state"),
            Flavour::Standalone {
                version: "1.29.2".into(),
            },
        );
        let keep = target
            .down_cmd(&env(), "infra-challenge:1", false)
            .unwrap()
            .argv();
        assert_eq!(keep[0], "docker-compose");
        assert_eq!(keep[5..], ["down", "--remove-orphans"]);
        let purge = target
            .down_cmd(&env(), "infra-challenge:1", true)
            .unwrap()
            .argv();
        assert_eq!(purge[5..], ["down", "--remove-orphans", "--volumes"]);
    }

    #[test]
    fn logs_follow_one_service() {
        let options = LogOptions {
            follow: true,
            tail: 50,
            previous: false,
            service: Some("db".into()),
        };
        let logs = target()
            .logs_cmd(&env(), "infra-challenge:1", &options)
            .unwrap()
            .argv();
        assert_eq!(logs[6..], ["logs", "--tail", "50", "--follow", "db"]);
    }

    #[test]
    fn a_missing_stack_image_is_one_sentence_with_the_airgap_fix() {
        let offline = "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial \
                       tcp: lookup registry-1.docker.io on 10.0.0.53:53: no such host";
        let error = missing_image(
            "database",
            "mysql:8.4",
            "--db-image",
            "infra-challenge/mariadb:10.11",
            false,
            offline,
        );
        let Error::Prerequisite { problem, fix } = &error else {
            panic!("a prerequisite error: {error:?}");
        };
        assert_eq!(
            problem,
            "the database image mysql:8.4 is not in the local engine and no registry answers"
        );
        assert!(fix.starts_with("run `cargo xtask airgap-images`"), "{fix}");
        let Error::Prerequisite { fix, .. } = missing_image(
            "proxy",
            "haproxy:2.8",
            "--proxy-image",
            "infra-challenge/haproxy:2.6",
            true,
            offline,
        ) else {
            panic!("a prerequisite error");
        };
        assert!(
            fix.contains(
                "pass --proxy-image infra-challenge/haproxy:2.6 (or DEPLOYER_PROXY_IMAGE)"
            )
        );
        let Error::Prerequisite { problem, fix } = missing_image(
            "database",
            "infra-challenge/mariadb:10.11",
            "--db-image",
            "infra-challenge/mariadb:10.11",
            false,
            "Error response from daemon: pull access denied for infra-challenge/mariadb",
        ) else {
            panic!("a prerequisite error");
        };
        assert!(problem.ends_with(
            "could not be pulled: Error response from daemon: pull access denied for infra-challenge/mariadb"
        ));
        assert!(fix.starts_with("seed it with `cargo xtask airgap-images`"));
    }

    #[test]
    fn images_split_into_repository_and_tag_past_a_registry_port() {
        assert_eq!(
            split_image("registry:5000/infra-challenge:1.2.0"),
            ("registry:5000/infra-challenge", "1.2.0")
        );
        assert_eq!(split_image("infra-challenge:2"), ("infra-challenge", "2"));
        assert_eq!(
            split_image("registry:5000/infra-challenge"),
            ("registry:5000/infra-challenge", "latest")
        );
    }
}
