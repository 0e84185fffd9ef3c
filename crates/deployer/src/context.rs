//! What every command needs, resolved once from the global flags: where state lives, which
//! environment, which images, how to talk to the user.

use std::cell::{Cell, OnceCell};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{GlobalArgs, TargetKind};
use crate::error::Result;
use crate::facts::{
    AIRGAP_DB_IMAGE, AIRGAP_PROXY_IMAGE, COMPOSE_FILE, DEFAULT_DB_IMAGE, DEFAULT_PROXY_IMAGE,
    PRODUCT,
};
use crate::ledger::{self, Ledger};
use crate::plan::{self, Environment};
use crate::platform::Target;
use crate::platform::compose::ComposeTarget;
use crate::platform::kubernetes::KubernetesTarget;
use crate::process::Cmd;
use crate::report::Reporter;

pub struct Context {
    pub reporter: Reporter,
    pub global: GlobalArgs,
    pub state_dir: PathBuf,
    /// `--env` when given (validated); `None` lets the command ask or use the default.
    pub env: Option<String>,
    pub project_dir: PathBuf,
    /// Whether a person can be asked: stdin and stderr are terminals and the output is for a person.
    pub terminal: bool,
    /// Whether the command works on the local engine (it asked for the Compose target): only then
    /// are the database and proxy images looked for there, and stand-ins used for missing ones.
    local_engine: Cell<bool>,
    /// The database and proxy images, chosen once per command (see [`Context::stack_images`]).
    stack_images: OnceCell<(String, String)>,
}

/// The environment when none is given.
pub const DEFAULT_ENV: &str = "dev";

impl Context {
    pub fn new(global: GlobalArgs) -> Result<Self> {
        let reporter = Reporter::new(global.output);
        let state_dir = crate::state::resolve_state_dir(global.state_dir.as_deref())?;
        let env = global.env.as_deref().map(plan::parse_env).transpose()?;
        let project_dir = match &global.project_dir {
            Some(dir) => dir.clone(),
            None => default_project_dir(),
        };
        let terminal = std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal()
            && !reporter.is_json();
        Ok(Context {
            reporter,
            global,
            state_dir,
            env,
            project_dir,
            terminal,
            local_engine: Cell::new(false),
            stack_images: OnceCell::new(),
        })
    }

    /// The environment to act on: `--env`, else `dev`.
    pub fn env_or_default(&self) -> String {
        self.env.clone().unwrap_or_else(|| DEFAULT_ENV.to_string())
    }

    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.state_dir.join(env)
    }

    pub fn ledger(&self, env: &str) -> Ledger {
        Ledger::open(&self.env_dir(env))
    }

    pub fn target(&self, kind: TargetKind) -> Result<Box<dyn Target>> {
        if kind == TargetKind::Compose {
            self.local_engine.set(true);
        }
        match kind {
            TargetKind::Compose => Ok(Box::new(ComposeTarget::new(
                &self.project_dir,
                &self.state_dir,
            ))),
            TargetKind::Kubernetes => Ok(Box::new(KubernetesTarget::new(
                &self.project_dir,
                self.global.context.clone(),
                self.global.force_conflicts,
            ))),
        }
    }

    /// The environment `env`: port from `--port`, else the port of its last release on this
    /// machine (the Compose ledger), else the default.
    pub fn environment(&self, env: &str) -> Result<Environment> {
        let (db_image, proxy_image) = self.stack_images();
        let releases = self.ledger(env).load()?;
        let last_port = releases.last().map(|r| r.port);
        Ok(Environment {
            name: env.to_string(),
            app_repository: self.global.repository.clone(),
            db_image: db_image.clone(),
            proxy_image: proxy_image.clone(),
            port: plan::choose_port(self.global.port, last_port),
            secrets_dir: self.env_dir(env).join("secrets"),
        })
    }

    /// The database and proxy images: `--db-image` / `--proxy-image` (or their variables) when
    /// given, else the defaults; on the local engine (Compose), a default the engine lacks is
    /// replaced by its air-gapped stand-in when that is here (`cargo xtask airgap-images` seeds them),
    /// said once in one line. Chosen once per command, so a deploy, the rollback it may do, and what
    /// `status`, `diff` and `down` later pass to Compose agree as long as the engine holds the same
    /// images.
    pub fn stack_images(&self) -> &(String, String) {
        self.stack_images.get_or_init(|| {
            let local = self.local_engine.get();
            let present = |image: &str| {
                local
                    .then(|| crate::docker::image_id(image).ok().map(|id| id.is_some()))
                    .flatten()
            };
            let db = plan::stack_image(
                self.global.db_image.as_deref(),
                DEFAULT_DB_IMAGE,
                AIRGAP_DB_IMAGE,
                &present,
            );
            let proxy = plan::stack_image(
                self.global.proxy_image.as_deref(),
                DEFAULT_PROXY_IMAGE,
                AIRGAP_PROXY_IMAGE,
                &present,
            );
            if let Some(note) = plan::standin_note(&[
                ("database", DEFAULT_DB_IMAGE, &db),
                ("proxy", DEFAULT_PROXY_IMAGE, &proxy),
            ]) {
                self.reporter.info(&note);
            }
            (db.image, proxy.image)
        })
    }

    /// The version running in `env` (live first, then the history), if any.
    pub fn running_version(
        &self,
        target: &dyn Target,
        env: &Environment,
    ) -> Result<Option<String>> {
        let live = target.live(env)?;
        if live.version.is_some() {
            return Ok(live.version);
        }
        let records = target.history(env)?;
        Ok(ledger::current(&records)
            .filter(|_| !live.services.is_empty())
            .map(|r| r.version.clone()))
    }

    /// The global flags a person passed explicitly, to repeat them in an equivalent command.
    pub fn global_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(dir) = &self.global.state_dir {
            flags.push(format!(
                "--state-dir {}",
                shell_quote(&dir.display().to_string())
            ));
        }
        if let Some(dir) = &self.global.project_dir {
            flags.push(format!(
                "--project-dir {}",
                shell_quote(&dir.display().to_string())
            ));
        }
        if let Some(port) = self.global.port {
            flags.push(format!("--port {port}"));
        }
        if let Some(context) = &self.global.context {
            flags.push(format!("--context {}", shell_quote(context)));
        }
        // A stand-in chosen by itself is chosen again by the same command: not repeated.
        if let Some(image) = &self.global.db_image {
            flags.push(format!("--db-image {}", shell_quote(image)));
        }
        if let Some(image) = &self.global.proxy_image {
            flags.push(format!("--proxy-image {}", shell_quote(image)));
        }
        if self.global.repository != PRODUCT {
            flags.push(format!(
                "--repository {}",
                shell_quote(&self.global.repository)
            ));
        }
        flags
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The enclosing git work tree when it holds the Compose file, else the tree the deployer was
/// built from (so `cargo run -p deployer` works from any directory of the checkout).
fn default_project_dir() -> PathBuf {
    let compose = |dir: &Path| dir.join(COMPOSE_FILE).is_file();
    if let Ok(top) = Cmd::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .checked(Duration::from_secs(10))
    {
        let top = PathBuf::from(top.trim());
        if compose(&top) {
            return top;
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    built_from.canonicalize().unwrap_or(built_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_alone() {
        assert_eq!(shell_quote("mysql:8.4"), "mysql:8.4");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
