//! The release procedure and the lock against a scripted target: what the procedure does when a
//! release is interrupted, when the platform stops answering, when `/version` disagrees with the
//! tag, and when the lock is held. The platforms' own behaviour is tested in their modules (the
//! Kubernetes target against a fake API server, Compose against the real engine).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use clap::Parser;
use time::OffsetDateTime;

use crate::cli::Cli;
use crate::context::Context;
use crate::error::{Error, Restore, exit};
use crate::http::Smoke;
use crate::interrupt::Stop;
use crate::ledger::{Action, Outcome, Record};
use crate::ops::{lock, release};
use crate::plan::{Environment, Release};
use crate::platform::{
    Abandoned, Applied, Check, Diagnosis, Live, LockGuard, LockInfo, Locking, LogOptions, Target,
};
use crate::report::{OutputFormat, Reporter, Step};

/// What the scripted target does with a release of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// Healthy, and its `/version` says what it is told.
    Healthy(&'static str),
    /// A signal arrives while it waits for health.
    SignalWhileWaiting,
    /// The platform stops answering while it waits.
    Unreachable,
}

struct Scripted {
    scripts: Vec<(&'static str, Script)>,
    running: RefCell<Option<String>>,
    records: RefCell<Vec<Record>>,
    applied: RefCell<Vec<String>>,
    abandoned: Abandoned,
    stop: Stop,
    /// How many more times `try_lock` answers "held" (`u32::MAX`: always).
    held_for: Cell<u32>,
    /// What `verify` refuses the release for, if anything.
    refusal: Option<&'static str>,
}

impl Scripted {
    fn new(stop: &Stop, scripts: Vec<(&'static str, Script)>) -> Self {
        Scripted {
            scripts,
            running: RefCell::new(None),
            records: RefCell::new(Vec::new()),
            applied: RefCell::new(Vec::new()),
            abandoned: Abandoned::Replaced,
            stop: stop.clone(),
            held_for: Cell::new(0),
            refusal: None,
        }
    }

    /// `version` runs and was deployed successfully.
    fn running(self, version: &str) -> Self {
        *self.running.borrow_mut() = Some(version.to_string());
        self.records
            .borrow_mut()
            .push(record(version, Action::Deploy, Outcome::Ok));
        self
    }

    fn script(&self, version: &str) -> Script {
        self.scripts
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, s)| *s)
            .unwrap_or(Script::Healthy("same"))
    }
}

fn record(version: &str, action: Action, result: Outcome) -> Record {
    Record {
        replicas: None,
        version: version.into(),
        image_id: format!("sha256:{version}"),
        time: OffsetDateTime::UNIX_EPOCH,
        action,
        result,
        who: "t".into(),
        target: "scripted".into(),
        port: 0,
        image: format!("infra-challenge:{version}"),
        revision: None,
        schema_version: None,
        purged_data: false,
        manifests: Some(format!("manifests of {version}")),
    }
}

fn holder() -> LockInfo {
    LockInfo {
        holder: "bob@ci-3:77".into(),
        operation: "deploy".into(),
        version: "5.0.0".into(),
        since: OffsetDateTime::UNIX_EPOCH,
        renewed: None,
        expires: None,
    }
}

struct NoGuard;

impl LockGuard for NoGuard {
    fn release(self: Box<Self>) -> Option<String> {
        None
    }
}

impl Target for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn title(&self) -> &'static str {
        "Scripted"
    }
    fn location(&self, _env: &Environment) -> String {
        "here".into()
    }
    fn preflight(&self, _env: &Environment) -> crate::error::Result<()> {
        Ok(())
    }
    fn artifact(&self, _env: &Environment, release: &Release) -> crate::error::Result<String> {
        Ok(format!("sha256:{}", release.version))
    }
    fn verify(&self, _env: &Environment, _release: &Release) -> crate::error::Result<()> {
        match self.refusal {
            Some(why) => Err(Error::prerequisite(why, "fix it")),
            None => Ok(()),
        }
    }
    fn doctor(&self, _env: &Environment) -> Vec<Check> {
        Vec::new()
    }
    fn live(&self, _env: &Environment) -> crate::error::Result<Live> {
        let version = self.running.borrow().clone();
        Ok(Live {
            app: version
                .as_ref()
                .map(|_| crate::platform::AppState::default()),
            version,
            ..Live::default()
        })
    }
    fn known_versions(&self, _env: &Environment) -> crate::error::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn render(&self, _env: &Environment, _release: &Release) -> crate::error::Result<String> {
        Ok(String::new())
    }
    fn ensure_secrets(&self, _env: &Environment) -> crate::error::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn apply(
        &self,
        _env: &Environment,
        release: &Release,
        _deadline: Instant,
        _step: &mut Step<'_>,
    ) -> Result<Applied, Diagnosis> {
        self.applied.borrow_mut().push(release.version.clone());
        *self.running.borrow_mut() = Some(release.version.clone());
        Ok(Applied {
            manifests: Some(format!("manifests of {}", release.version)),
        })
    }
    fn wait_healthy(
        &self,
        _env: &Environment,
        release: &Release,
        _deadline: Instant,
        step: &mut Step<'_>,
    ) -> Result<(), Diagnosis> {
        match self.script(&release.version) {
            Script::Healthy(_) => Ok(()),
            Script::SignalWhileWaiting => {
                self.stop.request();
                assert!(step.interrupted(), "the step sees the signal");
                Err(Diagnosis::interrupted("the rollout"))
            }
            Script::Unreachable => Err(Diagnosis::unreachable(
                "the API server at https://k8s.example stopped answering (connection refused)",
            )),
        }
    }
    fn abandon(&self, _env: &Environment, _release: &Release) -> Abandoned {
        self.abandoned
    }
    fn smoke(&self, _env: &Environment) -> Result<Smoke, String> {
        let running = self.running.borrow().clone().unwrap_or_default();
        let version = match self.script(&running) {
            Script::Healthy("same") => running,
            Script::Healthy(other) => other.to_string(),
            _ => running,
        };
        Ok(Smoke {
            version,
            schema_version: Some(1),
            database_schema_version: Some(1),
        })
    }
    fn history(&self, _env: &Environment) -> crate::error::Result<Vec<Record>> {
        Ok(self.records.borrow().clone())
    }
    fn record(&self, _env: &Environment, record: Record) -> crate::error::Result<()> {
        self.records.borrow_mut().push(record);
        Ok(())
    }
    fn logs(&self, _env: &Environment, _options: &LogOptions) -> crate::error::Result<i32> {
        Ok(0)
    }
    fn down(&self, _env: &Environment, _purge_data: bool) -> crate::error::Result<()> {
        Ok(())
    }
    fn diff(
        &self,
        _env: &Environment,
        _release: &Release,
    ) -> crate::error::Result<crate::platform::Changes> {
        Ok(crate::platform::Changes::default())
    }
    fn try_lock(&self, _env: &Environment, _request: &LockInfo) -> crate::error::Result<Locking> {
        match self.held_for.get() {
            0 => Ok(Locking::Taken(Box::new(NoGuard))),
            n => {
                if n != u32::MAX {
                    self.held_for.set(n - 1);
                }
                Ok(Locking::Held(holder()))
            }
        }
    }
    fn lock_holder(&self, _env: &Environment) -> crate::error::Result<Option<LockInfo>> {
        Ok(None)
    }
    fn break_lock(&self, _env: &Environment) -> crate::error::Result<Option<LockInfo>> {
        Ok(None)
    }
}

fn context(stop: &Stop, extra: &[&str]) -> (Context, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("a temporary directory");
    let mut args = vec![
        "deployer",
        "--output",
        "json",
        "--state-dir",
        state.path().to_str().expect("a UTF-8 path"),
    ];
    args.extend(extra);
    let mut ctx = Context::new(Cli::parse_from(args).global).expect("a context");
    ctx.reporter = Reporter::with_stop(OutputFormat::Json, stop.clone());
    (ctx, state)
}

fn deploy(ctx: &Context, target: &Scripted, version: &str) -> crate::error::Result<()> {
    let env = ctx.environment("qa").expect("an environment");
    let plan = env.release(version);
    release::release(
        ctx,
        target,
        &env,
        &plan,
        Action::Deploy,
        Duration::from_secs(5),
    )
}

#[test]
fn a_release_interrupted_mid_rollout_is_recorded_as_interrupted_and_not_rolled_back() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![("2", Script::SignalWhileWaiting)]).running("1");
    let error = deploy(&ctx, &target, "2").unwrap_err();
    assert_eq!(error.exit_code(), exit::INTERRUPTED, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("2 had been applied and the platform goes on rolling it out"),
        "{text}"
    );
    assert!(text.contains("recorded as interrupted"), "{text}");
    assert!(
        text.contains("`deployer status --target scripted --env qa`"),
        "{text}"
    );
    assert_eq!(*target.applied.borrow(), ["2"], "no rollback was applied");
    let last = target.records.borrow().last().cloned().unwrap();
    assert_eq!(
        (last.version.as_str(), last.result),
        ("2", Outcome::Interrupted)
    );
    assert_eq!(last.manifests.as_deref(), Some("manifests of 2"));
}

#[test]
fn an_interrupted_release_that_ran_beside_the_old_one_says_the_old_one_kept_serving() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let mut target = Scripted::new(&stop, vec![("2", Script::SignalWhileWaiting)]).running("1");
    target.abandoned = Abandoned::PreviousKeptServing;
    let text = deploy(&ctx, &target, "2").unwrap_err().to_string();
    assert!(
        text.contains(
            "2 was removed, and 1, which it would have replaced, kept serving throughout"
        ),
        "{text}"
    );
}

#[test]
fn a_signal_before_anything_is_applied_changes_nothing_and_records_nothing() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![]).running("1");
    stop.request();
    let error = deploy(&ctx, &target, "2").unwrap_err();
    assert_eq!(error.exit_code(), exit::INTERRUPTED);
    assert!(
        error.to_string().contains("nothing had been applied"),
        "{error}"
    );
    assert!(target.applied.borrow().is_empty());
    assert_eq!(target.records.borrow().len(), 1, "only the earlier release");
}

#[test]
fn a_platform_that_stops_answering_is_a_prerequisite_failure_with_no_rollback_and_no_record() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![("2", Script::Unreachable)]).running("1");
    let error = deploy(&ctx, &target, "2").unwrap_err();
    assert_eq!(error.exit_code(), exit::PREREQUISITE, "{error}");
    let text = error.to_string();
    assert!(text.contains("stopped answering"), "{text}");
    assert!(
        text.contains("2 had been applied over 1; what runs now is unknown"),
        "{text}"
    );
    assert!(text.contains("no record was written"), "{text}");
    assert_eq!(*target.applied.borrow(), ["2"], "no rollback was tried");
    assert_eq!(target.records.borrow().len(), 1, "no record was written");
}

#[test]
fn a_release_whose_version_endpoint_names_another_build_fails_and_the_previous_one_returns() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![("2", Script::Healthy("1.9"))]).running("1");
    let error = deploy(&ctx, &target, "2").unwrap_err();
    let Error::DeployFailed { message, restore } = &error else {
        panic!("not a failed deploy: {error}");
    };
    assert_eq!(
        *restore,
        Restore::Restored {
            version: "1".into()
        }
    );
    assert!(message.contains("/version says 1.9, not 2"), "{message}");
    assert!(
        message.contains("another build than its tag says"),
        "{message}"
    );
    let records = target.records.borrow();
    let results: Vec<(&str, Action, Outcome)> = records
        .iter()
        .map(|r| (r.version.as_str(), r.action, r.result))
        .collect();
    assert_eq!(
        results,
        [
            ("1", Action::Deploy, Outcome::Ok),
            ("2", Action::Deploy, Outcome::Failed),
            ("1", Action::AutoRollback, Outcome::Ok),
        ],
        "no ok record for a release whose own version did not answer"
    );
}

#[test]
fn a_held_lock_is_a_locked_error_naming_the_holder_and_nothing_is_changed() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![]);
    target.held_for.set(u32::MAX);
    let env = ctx.environment("qa").unwrap();
    let error = lock::acquire(&ctx, &target, &env, "deploy", "2")
        .err()
        .unwrap();
    assert_eq!(error.exit_code(), exit::LOCKED);
    let text = error.to_string();
    assert!(
        text.starts_with("qa is locked by bob@ci-3:77: deploy 5.0.0 since 1970-01-01T00:00:00Z"),
        "{text}"
    );
}

#[test]
fn waiting_for_the_lock_proceeds_once_the_holder_is_done() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &["--wait-for-lock", "10s"]);
    let target = Scripted::new(&stop, vec![]);
    target.held_for.set(2);
    let env = ctx.environment("qa").unwrap();
    let started = Instant::now();
    assert!(lock::acquire(&ctx, &target, &env, "deploy", "2").is_ok());
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert_eq!(target.held_for.get(), 0);
}

#[test]
fn a_signal_while_waiting_for_the_lock_stops_the_wait() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &["--wait-for-lock", "1h"]);
    let target = Scripted::new(&stop, vec![]);
    target.held_for.set(u32::MAX);
    stop.request();
    let env = ctx.environment("qa").unwrap();
    let error = lock::acquire(&ctx, &target, &env, "deploy", "2")
        .err()
        .unwrap();
    assert_eq!(error.exit_code(), exit::INTERRUPTED);
    assert!(error.to_string().contains("nothing was changed"), "{error}");
}

#[test]
fn a_release_the_platform_would_refuse_changes_nothing_and_says_so() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let mut target = Scripted::new(&stop, vec![]).running("1");
    target.refusal = Some("an admission webhook denied Deployment qa/challenge");
    let error = deploy(&ctx, &target, "2").unwrap_err();
    assert_eq!(error.exit_code(), exit::PREREQUISITE);
    assert!(
        error.to_string().starts_with(
            "an admission webhook denied Deployment qa/challenge; nothing was changed"
        ),
        "{error}"
    );
    assert!(target.applied.borrow().is_empty(), "nothing was applied");
    assert_eq!(target.records.borrow().len(), 1, "no record, no rollback");
}

#[test]
fn a_replica_count_on_a_target_that_scales_by_itself_is_refused_and_changes_nothing() {
    let stop = Stop::default();
    let (ctx, _state) = context(&stop, &[]);
    let target = Scripted::new(&stop, vec![("1.0.0", Script::Healthy("1.0.0"))]);
    let env = ctx.environment("qa").expect("an environment");
    let mut plan = env.release("1.0.0");
    plan.replicas = Some(3);
    let error = release::release(
        &ctx,
        &target,
        &env,
        &plan,
        Action::Deploy,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert_eq!(error.exit_code(), crate::error::exit::USAGE, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("--replicas 3 is for --target compose"),
        "{text}"
    );
    assert!(text.contains("HorizontalPodAutoscaler"), "{text}");
    assert!(text.ends_with("nothing was changed"), "{text}");
    assert!(target.applied.borrow().is_empty());
    assert!(target.records.borrow().is_empty());
}
