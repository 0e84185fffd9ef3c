//! `deployer`: builds the infra-challenge image at a version and deploys it, interactively or from
//! flags, waiting on real health signals and rolling back when a release does not become healthy.
//! See crates/deployer/README.md.

mod cli;
mod commands;
mod context;
mod docker;
mod error;
mod facts;
mod http;
mod interrupt;
mod ledger;
mod ops;
mod plan;
mod platform;
mod process;
mod report;
mod secrets;
mod state;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use context::Context;
use report::Reporter;

/// Parses the command line, runs the command, reports a failure once, and maps it to an exit code.
/// Events exported over OTLP (see [`report::event_log`]) get a bounded flush before the exit.
pub fn main_with_args() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.global.output;
    let events = match report::event_log(&cli) {
        Ok(events) => events,
        Err(e) => {
            Reporter::new(format).error(&e);
            return e.to_exit_code();
        }
    };
    let with_events = |mut reporter: Reporter| {
        if let Some(events) = &events {
            reporter.send_events_to(events.clone());
        }
        reporter
    };
    let result = Context::new(cli.global).and_then(|mut ctx| {
        ctx.reporter = with_events(ctx.reporter);
        dispatch(&ctx, cli.command)
    });
    let code = match result {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(e) => {
            with_events(Reporter::new(format)).error(&e);
            e.to_exit_code()
        }
    };
    if let Some(events) = events {
        events.shutdown();
    }
    code
}

fn dispatch(ctx: &Context, command: Option<Command>) -> error::Result<()> {
    match command {
        None => commands::interactive::run(ctx),
        Some(Command::Build(args)) => commands::build::run(ctx, args),
        Some(Command::Deploy(args)) => commands::deploy::run(ctx, args),
        Some(Command::Rollback(args)) => commands::rollback::run(ctx, args),
        Some(Command::Status(args)) => commands::status::status(ctx, args),
        Some(Command::History(args)) => commands::status::history(ctx, args),
        Some(Command::Logs(args)) => commands::down::logs(ctx, args),
        Some(Command::Down(args)) => commands::down::down(ctx, args),
        Some(Command::Render(args)) => commands::render::render(ctx, args),
        Some(Command::Diff(args)) => commands::diff::diff(ctx, args),
        Some(Command::Doctor(args)) => commands::render::doctor(ctx, args),
        Some(Command::Unlock(args)) => commands::down::unlock(ctx, args),
    }
}
