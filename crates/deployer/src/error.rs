//! The deployer's error type and the exit code each kind of failure maps to.

use std::process::ExitCode;

/// Exit codes, documented in `--help` (see `cli::EXIT_CODES`).
pub mod exit {
    /// Everything went as asked.
    pub const OK: u8 = 0;
    /// An unexpected failure (I/O, a tool answering something we did not expect).
    pub const FAILURE: u8 = 1;
    /// Bad or missing arguments, no terminal to ask on, or a target that does not exist yet.
    pub const USAGE: u8 = 2;
    /// A prerequisite is missing: Docker unreachable, no Compose, port taken, image absent.
    pub const PREREQUISITE: u8 = 3;
    /// The release did not become healthy in time; the previous release was restored.
    pub const DEPLOY_FAILED: u8 = 4;
    /// The release failed and restoring the previous one failed too: a person must look.
    pub const ROLLBACK_FAILED: u8 = 5;
    /// Another operation holds the environment's lock (deploy, rollback, down): nothing was changed.
    pub const LOCKED: u8 = 6;
    /// Stopped by SIGINT or SIGTERM: the operation stopped waiting, recorded what it had applied and
    /// released the lock. (A second signal exits at once with the shell's 130 or 143.)
    pub const INTERRUPTED: u8 = 7;
    /// `diff`: the release would change something (0: nothing would change), as `diff(1)` and
    /// `kubectl diff` tell a difference apart from an error.
    pub const CHANGES: u8 = 8;
}

/// What happened to the previous release after a release failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The previous release was brought back and serves again.
    Restored { version: String },
    /// The failed release ran beside the previous one, which never stopped serving (nothing was
    /// switched, so nothing had to be restored).
    KeptServing { version: String },
    /// There was no earlier release to restore (a first deploy): the failed one is left for inspection.
    Nothing,
    /// Bringing the previous release back failed too: a person must look.
    Failed { version: String },
}

impl Restore {
    /// The name in `--output json` error events.
    pub fn name(&self) -> &'static str {
        match self {
            Restore::Restored { .. } => "restored",
            Restore::KeptServing { .. } => "kept_serving",
            Restore::Nothing => "nothing_to_restore",
            Restore::Failed { .. } => "failed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line cannot be carried out as given; the message says which flag to pass.
    #[error("{0}")]
    Usage(String),
    /// Something the deployer needs is missing; the message says how to fix it.
    #[error("{problem}\n  fix: {fix}")]
    Prerequisite { problem: String, fix: String },
    /// A deploy did not become healthy; `restore` tells what happened to the release before it.
    #[error("{message}")]
    DeployFailed { message: String, restore: Restore },
    /// Another operation holds the environment's lock; the message names holder, operation,
    /// version and since when.
    #[error("{0}")]
    Locked(String),
    /// The operation was stopped by a signal; the message says what state it leaves.
    #[error("{0}")]
    Interrupted(String),
    /// `diff` found changes (not a failure: the exit code tells a pipeline so).
    #[error("{0}")]
    Changes(String),
    /// An external command failed in a way we did not foresee.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub fn prerequisite(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Prerequisite {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Prerequisite { .. } => exit::PREREQUISITE,
            Error::DeployFailed {
                restore: Restore::Failed { .. },
                ..
            } => exit::ROLLBACK_FAILED,
            Error::DeployFailed { .. } => exit::DEPLOY_FAILED,
            Error::Locked(_) => exit::LOCKED,
            Error::Interrupted(_) => exit::INTERRUPTED,
            Error::Changes(_) => exit::CHANGES,
            Error::Command { .. } | Error::Io { .. } | Error::Other(_) => exit::FAILURE,
        }
    }

    /// A short machine-readable name for `--output json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Prerequisite { .. } => "prerequisite",
            Error::DeployFailed {
                restore: Restore::Failed { .. },
                ..
            } => "rollback_failed",
            Error::DeployFailed { .. } => "deploy_failed",
            Error::Locked(_) => "locked",
            Error::Interrupted(_) => "interrupted",
            Error::Changes(_) => "changes",
            Error::Command { .. } => "command",
            Error::Io { .. } => "io",
            Error::Other(_) => "other",
        }
    }

    pub fn to_exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_kind_has_its_own_exit_code() {
        let codes = [
            Error::usage("x").exit_code(),
            Error::prerequisite("x", "y").exit_code(),
            Error::DeployFailed {
                message: "x".into(),
                restore: Restore::Restored {
                    version: "1".into(),
                },
            }
            .exit_code(),
            Error::DeployFailed {
                message: "x".into(),
                restore: Restore::Failed {
                    version: "1".into(),
                },
            }
            .exit_code(),
            Error::Other("x".into()).exit_code(),
            Error::Locked("x".into()).exit_code(),
            Error::Interrupted("x".into()).exit_code(),
            Error::Changes("x".into()).exit_code(),
        ];
        let mut unique = codes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        assert!(!codes.contains(&exit::OK));
    }

    #[test]
    fn a_failed_first_release_is_a_failed_deploy_with_nothing_restored() {
        let error = Error::DeployFailed {
            message: "x".into(),
            restore: Restore::Nothing,
        };
        assert_eq!(error.exit_code(), exit::DEPLOY_FAILED);
        assert_eq!(error.kind(), "deploy_failed");
        assert_eq!(Restore::Nothing.name(), "nothing_to_restore");
    }

    #[test]
    fn prerequisite_message_carries_the_fix() {
        let text = Error::prerequisite("Docker is not reachable", "start it").to_string();
        assert!(text.contains("fix: start it"), "{text}");
    }
}
