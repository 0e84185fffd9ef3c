//! The Docker Compose target: `deploy/compose/compose.yaml` run by `docker compose` (v2 plugin)
//! or the standalone `docker-compose` (v1), whichever the machine has.
//!
//! Compose is driven as a process with the release's choices passed as the variables the compose
//! file interpolates (`APP_IMAGE`, `APP_VERSION`, `DB_IMAGE`, `APP_PORT`, `SECRETS_DIR`). Questions
//! about running containers go to `docker` directly, through Compose's own labels: the same for
//! both flavours, and much faster than starting Compose v1's Python.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::docker::{self, ContainerState};
use crate::error::{Error, Result};
use crate::plan::{Plan, SERVICE_PORT};
use crate::platform::{Check, Diagnosis, Live, Target, redact};
use crate::process::Cmd;
use crate::report::Step;
use crate::secrets::{self, SecretFile};

mod checks;
mod diagnosis;
mod flavour;

use checks::disk_check;
use diagnosis::{ACCESS_DENIED, likely_cause, without_probes};
pub use flavour::{Flavour, detect_flavour};

/// The app service in compose.yaml.
const APP_SERVICE: &str = "app";
/// How many log lines a failed deploy shows.
const LOG_TAIL: usize = 30;
/// How many log lines are read to find the cause and the lines worth showing.
const LOG_SCAN: usize = 300;
/// How often the wait looks at the app's log for a cause that waiting cannot cure.
const LOG_CHECK_EVERY: Duration = Duration::from_secs(3);
/// uid/gid of the runtime image's `nonroot` user: the app reads its password file as that user.
const APP_UID: u32 = 65532;

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
    flavour: OnceLock<Flavour>,
}

impl ComposeTarget {
    pub fn new(project_dir: &Path) -> Self {
        ComposeTarget {
            file: project_dir.join("deploy/compose/compose.yaml"),
            flavour: OnceLock::new(),
        }
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

    /// `docker compose -p <project> -f <file>` with the release's variables.
    fn compose(&self, plan: &Plan) -> Result<Cmd> {
        Ok(self
            .flavour()?
            .base()
            .arg("--project-name")
            .arg(plan.project())
            .arg("--file")
            .arg(&self.file)
            .env("APP_IMAGE", &plan.app_repository)
            .env("APP_VERSION", &plan.version)
            .env("DB_IMAGE", &plan.db_image)
            .env("APP_PORT", plan.port.to_string())
            .env("SECRETS_DIR", &plan.secrets_dir))
    }

    /// Containers of a service of the project, newest first (through Compose's labels).
    fn containers(&self, plan: &Plan, service: Option<&str>) -> Result<Vec<String>> {
        let mut cmd = Cmd::new("docker")
            .args(["ps", "--all", "--quiet", "--no-trunc", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project={}",
                plan.project()
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

    fn app_states(&self, plan: &Plan) -> Result<Vec<ContainerState>> {
        self.containers(plan, Some(APP_SERVICE))?
            .iter()
            .map(|id| docker::inspect_container(id))
            .collect()
    }

    /// The host port the app container publishes the service port on.
    fn published_port(&self, id: &str) -> Option<u16> {
        let text = Cmd::new("docker")
            .args(["port", id, &format!("{SERVICE_PORT}/tcp")])
            .checked(Duration::from_secs(20))
            .ok()?;
        text.lines()
            .filter_map(|line| line.rsplit(':').next())
            .find_map(|port| port.trim().parse().ok())
    }

    fn diagnose(&self, plan: &Plan, timed_out: Option<Duration>) -> Diagnosis {
        let states = self.app_states(plan).unwrap_or_default();
        // The container of this release, else whatever app container there is.
        let state = states
            .iter()
            .find(|s| s.image == plan.app_image())
            .or(states.first())
            .cloned();
        let Some(state) = state else {
            return Diagnosis {
                cause: "no app container was created (see the Compose output above)".into(),
                ..Diagnosis::default()
            };
        };
        self.diagnose_state(plan, state, timed_out)
    }

    /// The diagnosis of one observed state of the app container. A crash loop is diagnosed from
    /// the state that showed it: once Docker has restarted the process the container reads
    /// `running` with exit code 0 again, until the next crash.
    fn diagnose_state(
        &self,
        plan: &Plan,
        state: ContainerState,
        timed_out: Option<Duration>,
    ) -> Diagnosis {
        let log_tail = without_probes(
            docker::logs_tail(&state.id, LOG_SCAN).unwrap_or_default(),
            LOG_TAIL,
        );
        let secrets = self.secret_values(plan);
        let log_tail: Vec<String> = log_tail
            .iter()
            .map(|line| redact(line, &secrets).trim_end().to_string())
            .collect();
        Diagnosis {
            cause: likely_cause(&state, &log_tail, timed_out),
            state: state.describe(),
            health_log: state
                .health_log
                .iter()
                .rev()
                .take(3)
                .rev()
                .cloned()
                .collect(),
            log_tail,
        }
    }

    fn port_check(&self, plan: &Plan) -> Check {
        let name = "port";
        if TcpListener::bind(("0.0.0.0", plan.port)).is_ok() {
            return Check::pass(name, format!("{} is free", plan.port));
        }
        let ours = self
            .containers(plan, Some(APP_SERVICE))
            .unwrap_or_default()
            .iter()
            .any(|id| self.published_port(id) == Some(plan.port));
        if ours {
            Check::pass(
                name,
                format!("{} is used by this environment's app", plan.port),
            )
        } else {
            Check::fail(
                name,
                format!("port {} is in use by another program", plan.port),
                format!(
                    "pass --port with a free port, or stop what listens there (`ss -ltnp 'sport = :{}'`)",
                    plan.port
                ),
            )
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Target for ComposeTarget {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn preflight(&self, plan: &Plan) -> Result<()> {
        docker::engine_version()?;
        self.flavour()?;
        self.check_file()?;
        let port = self.port_check(plan);
        match port.fix {
            Some(fix) if !port.ok => Err(Error::prerequisite(port.detail, fix)),
            _ => Ok(()),
        }
    }

    fn doctor(&self, plan: &Plan) -> Vec<Check> {
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
        checks.push(self.port_check(plan));
        checks.push(disk_check());
        checks.push(match docker::image_id(&plan.db_image) {
            Ok(Some(_)) => Check::pass("database image", plan.db_image.clone()),
            Ok(None) => Check::fail(
                "database image",
                format!("{} is not in the local engine", plan.db_image),
                format!(
                    "`docker pull {}`; where no registry is reachable seed the stand-in with `cargo xtask \
                     airgap-images` and pass --db-image {}",
                    plan.db_image,
                    crate::commands::release::AIRGAP_DB_IMAGE
                ),
            ),
            Err(e) => Check::fail("database image", e.to_string(), "check `docker images`"),
        });
        checks.push(match docker::local_tags(&plan.app_repository) {
            Ok(tags) if !tags.is_empty() => Check::pass(
                "app images",
                format!(
                    "{}: {}",
                    plan.app_repository,
                    crate::plan::version_choices(None, &tags).join(", ")
                ),
            ),
            Ok(_) => Check::fail(
                "app images",
                format!("no {} image in the local engine", plan.app_repository),
                "build one: `deployer build --version X` (or `deployer deploy --build ...`)",
            ),
            Err(e) => Check::fail("app images", e.to_string(), "check `docker images`"),
        });
        checks
    }

    fn live(&self, plan: &Plan) -> Result<Live> {
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
                plan.project()
            ))
            .checked(Duration::from_secs(20))?;
        let mut services: Vec<String> = containers.lines().map(|s| s.trim().to_string()).collect();
        services.sort();
        services.dedup();
        let app = self.app_states(plan)?.into_iter().next();
        let url = app
            .as_ref()
            .filter(|a| a.status == "running")
            .and_then(|a| self.published_port(&a.id))
            .map(|port| format!("http://127.0.0.1:{port}"));
        Ok(Live {
            version: app.as_ref().and_then(|a| a.image_tag().map(String::from)),
            app,
            url,
            services,
        })
    }

    fn render(&self, plan: &Plan) -> Result<String> {
        self.check_file()?;
        let text = self
            .compose(plan)?
            .arg("config")
            .checked(Duration::from_secs(60))?;
        Ok(redact(&text, &self.secret_values(plan)))
    }

    fn apply(&self, plan: &Plan, deadline: Instant, step: &mut Step<'_>) -> Result<(), Diagnosis> {
        step.detail("docker compose up");
        let cmd = self.compose(plan).map_err(|e| Diagnosis {
            cause: e.to_string(),
            ..Diagnosis::default()
        })?;
        let output = cmd
            .args(["up", "--detach", "--remove-orphans", "--no-build"])
            .output(remaining(deadline).max(Duration::from_secs(1)));
        match output {
            Ok(output) if output.success => Ok(()),
            Ok(output) => {
                let mut diagnosis = self.diagnose(plan, None);
                let compose_says = output.explanation();
                let last = compose_says.lines().last().unwrap_or("").to_string();
                diagnosis.cause = format!("Compose could not start the release: {last}");
                if diagnosis.log_tail.is_empty() {
                    diagnosis.log_tail = compose_says.lines().map(String::from).collect();
                }
                Err(diagnosis)
            }
            Err(e) => {
                let mut diagnosis = self.diagnose(plan, None);
                diagnosis.cause = format!("Compose did not finish in time: {e}");
                Err(diagnosis)
            }
        }
    }

    fn wait_healthy(
        &self,
        plan: &Plan,
        deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        let started = Instant::now();
        let mut last_log_check = Instant::now();
        // Restart counts when first seen: a process that crashes after a moment of running is
        // mostly seen `running` between Docker's restarts, but its count goes up.
        let mut first_restarts: HashMap<String, u64> = HashMap::new();
        loop {
            let states = self.app_states(plan).unwrap_or_default();
            let ours: Vec<&ContainerState> = states
                .iter()
                .filter(|s| s.image == plan.app_image())
                .collect();
            if let Some(bad) = ours
                .iter()
                .find(|s| s.is_crashing() || s.health.as_deref() == Some("unhealthy"))
            {
                step.detail(&bad.describe());
                return Err(self.diagnose_state(plan, (*bad).clone(), None));
            }
            for state in &ours {
                let first = *first_restarts
                    .entry(state.id.clone())
                    .or_insert(state.restart_count);
                if state.restart_count > first {
                    step.detail(&state.describe());
                    let mut diagnosis = self.diagnose_state(plan, (*state).clone(), None);
                    diagnosis.cause = format!(
                        "the app process exits at start (Docker restarted it {} during the deploy): \
                         see its last log lines below",
                        docker::times(state.restart_count - first)
                    );
                    return Err(diagnosis);
                }
            }
            // Docker's own verdict, the one `status`, `docker ps` and the restart policy go by: a
            // release is done when its healthcheck (`challenge healthcheck`, i.e. /readyz is 200)
            // has passed, so what `deploy` reports is what everything else sees right after.
            let healthy = !ours.is_empty()
                && ours.iter().all(|s| match s.health.as_deref() {
                    Some(health) => health == "healthy",
                    None => s.status == "running",
                });
            if healthy {
                return Ok(());
            }
            // Refused credentials never heal by waiting: look at the log every few seconds.
            if last_log_check.elapsed() >= LOG_CHECK_EVERY {
                last_log_check = Instant::now();
                let refused = ours.iter().any(|s| {
                    docker::logs_tail(&s.id, LOG_SCAN)
                        .is_ok_and(|lines| lines.iter().any(|l| l.contains(ACCESS_DENIED)))
                });
                if refused {
                    return Err(self.diagnose(plan, None));
                }
            }
            step.detail(&match ours.first() {
                Some(state) => state.describe(),
                None => "waiting for the app container".to_string(),
            });
            if Instant::now() >= deadline {
                return Err(self.diagnose(plan, Some(started.elapsed())));
            }
            thread::sleep(Duration::from_millis(250).min(remaining(deadline)));
        }
    }

    fn logs(&self, plan: &Plan, follow: bool, tail: usize, service: Option<&str>) -> Result<i32> {
        self.check_file()?;
        let mut cmd = self
            .compose(plan)?
            .args(["logs", "--tail"])
            .arg(tail.to_string());
        if follow {
            cmd = cmd.arg("--follow");
        }
        if let Some(service) = service {
            cmd = cmd.arg(service);
        }
        cmd.interactive()
    }

    fn down(&self, plan: &Plan, purge_data: bool) -> Result<()> {
        self.check_file()?;
        let mut cmd = self.compose(plan)?.args(["down", "--remove-orphans"]);
        if purge_data {
            cmd = cmd.arg("--volumes");
        }
        cmd.checked(Duration::from_secs(180)).map(|_| ())
    }

    fn secret_values(&self, plan: &Plan) -> Vec<String> {
        secrets::values(&plan.secrets_dir, &SECRET_FILES)
    }

    fn ensure_secrets(&self, plan: &Plan) -> Result<Vec<&'static str>> {
        secrets::ensure(&plan.secrets_dir, &SECRET_FILES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_distinct() {
        assert_ne!(SECRET_FILES[0].name, SECRET_FILES[1].name);
    }
}
