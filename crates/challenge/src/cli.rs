//! Command line: subcommands only. Configuration comes from the environment (see `config.rs`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::build_info::BUILD;
use crate::config::Config;
use crate::startup::{self, Application, StartOptions};
use crate::{db, telemetry};

#[derive(Parser, Debug)]
#[command(name = "challenge", version = BUILD.version, about = "Tasks JSON API backed by MySQL",
    after_help = "Configuration is read from the environment: PORT, DB_HOST, DB_PORT, DB_DATABASE, \
DB_USERNAME, DB_PASSWORD or DB_PASSWORD_FILE, DB_MAX_CONNECTIONS, DB_TIMEOUT, LOG_FORMAT, RUST_LOG, \
SEED_COUNT, SHUTDOWN_DELAY, SHUTDOWN_TIMEOUT (see README.md).")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API on PORT.
    Serve {
        /// Apply pending migrations at start (in the background, under a MySQL lock).
        #[arg(long)]
        migrate: bool,
        /// With --migrate: insert SEED_COUNT sample tasks when the table is empty.
        #[arg(long, requires = "migrate")]
        seed: bool,
    },
    /// Apply pending migrations and exit.
    Migrate {
        /// Insert SEED_COUNT sample tasks when the table is empty.
        #[arg(long)]
        seed: bool,
        /// How long to wait for the database to accept connections.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Exit 0 when the local server is ready (GET /readyz), 1 otherwise. For container HEALTHCHECKs.
    Healthcheck {
        /// Check liveness (GET /healthz) instead of readiness.
        #[arg(long)]
        liveness: bool,
    },
    /// Print version, git revision and build date.
    Version,
}

/// Runs the command line; the exit code says what happened (0 ok, 1 failure, 2 bad configuration).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "challenge {} (git {}, built {})",
                BUILD.version, BUILD.git_sha, BUILD.build_date
            );
            ExitCode::SUCCESS
        }
        Command::Healthcheck { liveness } => healthcheck(liveness),
        Command::Serve { migrate, seed } => {
            with_config(|config| serve(config, StartOptions { migrate, seed }))
        }
        Command::Migrate { seed, wait } => with_config(|config| migrate(config, seed, wait)),
    }
}

fn with_config(run: impl FnOnce(Config) -> anyhow::Result<()>) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("challenge: {err}");
            return ExitCode::from(2);
        }
    };
    let traces = match telemetry::init(config.log_format, &config.otlp) {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("challenge: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "exiting");
            eprintln!("challenge: {err:#}");
            ExitCode::FAILURE
        }
    };
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(config: Config, options: StartOptions) -> anyhow::Result<()> {
    crate::attribution::init();
    runtime()?.block_on(async {
        let app = Application::build(config, options).await?;
        app.run_until_stopped(shutdown_signal()).await?;
        Ok(())
    })
}

fn migrate(config: Config, seed: bool, wait: Duration) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let connect = db::connect_options(&config.database);
        let seed = seed.then_some(config.seed_count);
        startup::migrate_with_retry(&connect, seed, Some(wait))
            .await
            .map_err(|err| anyhow::anyhow!(startup::describe(&err)))
    })
}

/// Resolves on SIGTERM (what Docker and Kubernetes send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// A minimal HTTP/1.0 GET to the local server: the runtime image has no curl or shell.
fn healthcheck(liveness: bool) -> ExitCode {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8000);
    let path = if liveness { "/healthz" } else { "/readyz" };
    match probe(port, path) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("healthcheck: GET {path} answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: GET {path} on port {port} failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn probe(port: u16, path: &str) -> std::io::Result<u16> {
    let timeout = Duration::from_secs(3);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: challenge-healthcheck\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head)?;
    // "HTTP/1.x NNN ..."
    std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}
