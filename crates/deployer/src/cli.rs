//! The command line, declared with clap's derive API. Parsing only: each subcommand's behaviour
//! lives in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::facts::PRODUCT;
use crate::plan;
use crate::report::OutputFormat;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  unexpected failure (I/O, a tool answered something unexpected)
  2  usage: bad or missing flags, no terminal to ask on, a refused rollback (the message says why)
  3  prerequisite missing: Docker, Compose or the cluster unreachable, port taken, image absent (the message
     says the fix)
  4  deploy failed: not healthy; the previous release was restored and serves again (or there was none)
  5  deploy failed and restoring the previous release failed too: a person must look (`deployer status`)
  6  locked: another deploy, rollback or down of the environment is running (the message names it);
     nothing was changed. --wait-for-lock DURATION queues behind it instead
  7  interrupted by SIGINT or SIGTERM: the operation stopped waiting, recorded what it had applied and
     released the lock; the message says what state it leaves (a second signal exits at once: 130/143)
  8  diff: the release would change something (0: nothing would change)

Without a subcommand, on a terminal, the deployer asks: platform, environment, version (the running
one is the default), shows a summary, deploys, and prints the equivalent command for next time.";

#[derive(Parser, Debug)]
#[command(
    name = "deployer",
    version,
    about = "Builds the infra-challenge image and deploys it to Docker Compose or Kubernetes",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// `text` for a person, `json` for one event per line (CI).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: OutputFormat,
    /// Environment: a Compose project, a ledger and secrets of its own (dev, qa, prod, ...).
    #[arg(long, env = "DEPLOYER_ENV", global = true)]
    pub env: Option<String>,
    /// Ledger and secrets [default: $XDG_STATE_HOME/infra-challenge or ~/.local/state/infra-challenge].
    #[arg(long, env = "DEPLOYER_STATE_DIR", global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The repository checkout (Dockerfile, deploy/compose/compose.yaml) [default: the enclosing git
    /// work tree, else the tree the deployer was built from].
    #[arg(long, env = "DEPLOYER_PROJECT_DIR", global = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Host port the app is published on, 1..=65535 [default: the environment's last one, else 8000].
    // Port 0 would let the engine pick a port the deployer could not smoke-test: refused like 70000.
    #[arg(long, env = "DEPLOYER_PORT", global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Database image [default: mysql:8.4; its air-gapped stand-in infra-challenge/mariadb:10.11
    /// when only the stand-in is in the local engine (Compose)].
    #[arg(long, env = "DEPLOYER_DB_IMAGE", global = true, value_name = "IMAGE")]
    pub db_image: Option<String>,
    /// Compose: the reverse proxy image (it owns the published port and switches between releases)
    /// [default: haproxy:2.8; its air-gapped stand-in infra-challenge/haproxy:2.6 when only the
    /// stand-in is in the local engine].
    #[arg(
        long,
        env = "DEPLOYER_PROXY_IMAGE",
        global = true,
        value_name = "IMAGE"
    )]
    pub proxy_image: Option<String>,
    /// App image repository (the version is the tag); for a cluster, the registry it pulls from
    /// (REGISTRY/NAME, e.g. registry.example:5000/team/infra-challenge).
    #[arg(long, env = "DEPLOYER_REPOSITORY", global = true, default_value = PRODUCT)]
    pub repository: String,
    /// Kubernetes: the kubeconfig context to use [default: the current context].
    #[arg(long, env = "DEPLOYER_KUBE_CONTEXT", global = true)]
    pub context: Option<String>,
    /// Kubernetes: take over fields another field manager owns (server-side apply conflicts).
    #[arg(long, global = true)]
    pub force_conflicts: bool,
    /// When another operation holds the environment's lock: wait this long for it (e.g. 10m)
    /// instead of exiting at once with code 6.
    #[arg(long, env = "DEPLOYER_WAIT_FOR_LOCK", global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait_for_lock: Option<Duration>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the image (docker build) and tag it with the version and the git revision.
    Build(BuildArgs),
    /// Deploy a version and wait until it is healthy; roll back if it does not get there.
    Deploy(DeployArgs),
    /// Return to an earlier release (default: the previous good one).
    Rollback(RollbackArgs),
    /// What runs now: version, health, URL, since when.
    Status(TargetArg),
    /// The release history of the environment.
    History(HistoryArgs),
    /// Container (or pod) logs.
    Logs(LogsArgs),
    /// Stop the environment; data volumes are kept unless --purge-data.
    Down(DownArgs),
    /// Print the fully resolved configuration that would be applied (secrets redacted).
    Render(RenderArgs),
    /// Show what deploying a version would change against what runs (exit 8 when something would).
    Diff(DiffArgs),
    /// Check the prerequisites and say how to fix each missing one.
    Doctor(TargetArg),
    /// Break the environment's lock when its holder is known dead (Kubernetes: a Lease that has not
    /// expired yet); says whose it was. A Compose lock never outlives its holder.
    Unlock(TargetArg),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Docker Compose on the local engine.
    Compose,
    /// Kubernetes: the cluster of the kubeconfig context (`--context`).
    Kubernetes,
}

impl TargetKind {
    pub fn flag(self) -> &'static str {
        match self {
            TargetKind::Compose => "compose",
            TargetKind::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TargetArg {
    /// Where to deploy.
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
}

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Image version (tag) [default: the workspace version from Cargo.toml].
    #[arg(long)]
    pub version: Option<String>,
    /// Push the tags to --registry after building.
    #[arg(long, requires = "registry")]
    pub push: bool,
    /// Registry to tag for and push to (e.g. registry.example:5000/team).
    #[arg(long)]
    pub registry: Option<String>,
    /// Build a release version (X.Y.Z) even though the work tree has uncommitted changes.
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// Where to deploy (asked on a terminal when missing).
    #[arg(long, value_enum)]
    pub target: Option<TargetKind>,
    /// Version to deploy (asked on a terminal when missing).
    #[arg(long)]
    pub version: Option<String>,
    /// Build the image first (`deployer build --version V`).
    #[arg(long)]
    pub build: bool,
    /// With --build: allow a dirty work tree for a release version.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the release to become healthy (e.g. 90s, 2m).
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Compose: how many app containers the release runs behind the proxy, 1 to 8 (haproxy.cfg's
    /// server slots hold twice the count, old and new side by side during a release). Each gets the
    /// engine host's CPUs / N (APP_CPUS, at least 0.25). Kept with the release: a rollback runs as
    /// many again [default: one per CPU of the Docker engine's host (`docker info`), 2 to 8].
    /// Kubernetes refuses it: the HorizontalPodAutoscaler sets the pod count there.
    #[arg(long, env = "DEPLOYER_REPLICAS", value_name = "N")]
    pub replicas: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// Version to return to [default: the previous good release].
    #[arg(long)]
    pub to: Option<String>,
    /// Roll back even to an image whose migrations are older than the database's schema.
    #[arg(long)]
    pub force: bool,
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// Show only the last N releases.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Lines to show from the end of each log.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    /// Kubernetes: the previous container's log (the one that crashed).
    #[arg(long)]
    pub previous: bool,
    /// Only this service (Compose: app or db; Kubernetes: app, migrate or db).
    pub service: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// Also delete the database's data (Compose: its volume; Kubernetes: its volume claims and the
    /// generated Secrets). Asks for confirmation unless --yes.
    #[arg(long)]
    pub purge_data: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// The version whose deploy is compared with what runs.
    #[arg(long)]
    pub version: String,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    #[arg(long, value_enum, default_value = "compose")]
    pub target: TargetKind,
    /// Version to render [default: the running one].
    #[arg(long)]
    pub version: Option<String>,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    plan::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deploy_flags_parse() {
        let cli = Cli::try_parse_from([
            "deployer",
            "deploy",
            "--target",
            "compose",
            "--version",
            "1.2.0",
            "--env",
            "qa",
            "--yes",
            "--timeout",
            "2m",
            "--replicas",
            "3",
            "--output",
            "json",
        ])
        .unwrap();
        let Some(Command::Deploy(args)) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!(args.target, Some(TargetKind::Compose));
        assert_eq!(args.version.as_deref(), Some("1.2.0"));
        assert_eq!(args.timeout, Duration::from_secs(120));
        assert_eq!(args.replicas, Some(3));
        assert!(args.yes);
        assert_eq!(cli.global.env.as_deref(), Some("qa"));
        assert_eq!(cli.global.output, OutputFormat::Json);
    }

    #[test]
    fn bad_timeout_and_push_without_registry_are_rejected() {
        assert!(Cli::try_parse_from(["deployer", "deploy", "--timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["deployer", "build", "--push"]).is_err());
        assert!(Cli::try_parse_from(["deployer", "deploy", "--target", "swarm"]).is_err());
        assert!(Cli::try_parse_from(["deployer", "deploy", "--replicas", "two"]).is_err());
        assert!(Cli::try_parse_from(["deployer", "deploy", "--replicas", "-1"]).is_err());
    }

    #[test]
    fn port_zero_is_rejected_like_a_port_out_of_range() {
        for bad in ["0", "70000"] {
            let error = Cli::try_parse_from(["deployer", "status", "--port", bad]).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}"
            );
            let text = error.to_string();
            assert!(
                text.contains("--port") && text.contains("1..=65535"),
                "{text}"
            );
        }
        let cli = Cli::try_parse_from(["deployer", "status", "--port", "1"]).unwrap();
        assert_eq!(cli.global.port, Some(1));
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for code in [
            "0  success",
            "2  usage",
            "3  prerequisite",
            "4  deploy failed",
        ] {
            assert!(help.contains(code), "missing {code:?}");
        }
    }
}
