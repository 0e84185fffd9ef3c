//! One operation at a time per environment. Every command that changes an environment (deploy,
//! rollback and the automatic rollback inside a deploy, down) holds the environment's lock from
//! its first change to its last; read-only commands never take it.
//!
//! The target keeps the lock (Compose: a kernel lock on a file of the environment's state
//! directory; Kubernetes: a Lease in the environment's namespace). Here: who asks for it, how long
//! to wait (`--wait-for-lock`), and the message that names the holder when it is not free. Holding
//! the lock also turns SIGINT and SIGTERM into a request to stop (`crate::interrupt`), so an
//! interrupted operation records what it did and releases the lock.

use std::thread;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ledger::{self, format_time};
use crate::plan::Environment;
use crate::platform::{LockGuard, LockInfo, Locking, Target};
use crate::report::{Reporter, one_line};

/// How often a waiting deployer asks again.
const RETRY: Duration = Duration::from_secs(1);

/// The lock held for an operation; released when dropped (a warning if it could not be).
pub struct Held<'a> {
    guard: Option<Box<dyn LockGuard>>,
    reporter: &'a Reporter,
}

impl Held<'_> {
    fn release_guard(&mut self) {
        if let Some(warning) = self.guard.take().and_then(|guard| guard.release()) {
            self.reporter.warn(&warning);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.release_guard();
    }
}

/// Who this deployer is, for the lock: `user@host:pid`.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{}@{host}:{}", ledger::who(), std::process::id())
}

/// Takes `env`'s lock for `operation` (`deploy`, `rollback`, `down`) of `version`, waiting up to
/// `--wait-for-lock` for the holder to finish. From here on a signal asks the operation to stop.
pub fn acquire<'a>(
    ctx: &'a Context,
    target: &dyn Target,
    env: &Environment,
    operation: &str,
    version: &str,
) -> Result<Held<'a>> {
    let reporter = &ctx.reporter;
    reporter.stop().watch_signals()?;
    let request = LockInfo {
        holder: identity(),
        operation: operation.to_string(),
        version: version.to_string(),
        since: OffsetDateTime::now_utc(),
        renewed: None,
        expires: None,
    };
    let wait = ctx.global.wait_for_lock.unwrap_or(Duration::ZERO);
    let until = Instant::now() + wait;
    let mut step = None;
    loop {
        let holder = match target.try_lock(env, &request)? {
            Locking::Taken(guard) => {
                if let Some(step) = step.take() {
                    crate::report::Step::ok(step, "the lock is ours");
                }
                return Ok(Held {
                    guard: Some(guard),
                    reporter,
                });
            }
            Locking::Held(holder) => holder,
        };
        let stopped = reporter.stop().requested();
        if stopped || Instant::now() >= until {
            if let Some(step) = step.take() {
                crate::report::Step::failed(step, "");
            }
            let message = held_message(target.name(), &env.name, &holder, wait);
            return Err(if stopped {
                Error::Interrupted(format!(
                    "interrupted while waiting for the lock of {}: nothing was changed. {message}",
                    env.name
                ))
            } else {
                Error::Locked(message)
            });
        }
        let step = step
            .get_or_insert_with(|| reporter.step(&format!("waiting for the lock of {}", env.name)));
        step.detail(&format!(
            "held by {} ({} {})",
            one_line(&holder.holder),
            one_line(&holder.operation),
            one_line(&holder.version)
        ));
        thread::sleep(RETRY.min(until.saturating_duration_since(Instant::now())));
    }
}

/// The sentence for a lock someone else holds: who, what, since when, and the ways out.
pub fn held_message(t: &str, name: &str, holder: &LockInfo, waited: Duration) -> String {
    let waited = if waited.is_zero() {
        String::new()
    } else {
        format!(" (waited {})", humantime::format_duration(waited))
    };
    let expiry = match holder.expires {
        Some(expires) => format!(
            "; if its holder is dead, the lock expires by itself at {} (`deployer unlock --target {t} --env {name}` \
             breaks it now)",
            format_time(expires)
        ),
        None => String::new(),
    };
    format!(
        "{name} is locked by {}: {} {} since {}{waited}. Nothing was changed. Wait for it with --wait-for-lock \
         DURATION, or see it with `deployer status --target {t} --env {name}`{expiry}",
        one_line(&holder.holder),
        one_line(&holder.operation),
        one_line(&holder.version),
        format_time(holder.since),
    )
}

/// A held lock in one line, for `status`.
pub fn describe(holder: &LockInfo) -> String {
    let mut text = format!(
        "held by {} ({} {} since {}",
        one_line(&holder.holder),
        one_line(&holder.operation),
        one_line(&holder.version),
        format_time(holder.since)
    );
    if let Some(expires) = holder.expires {
        text.push_str(&format!(
            ", expires {} unless renewed",
            format_time(expires)
        ));
    }
    text.push(')');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(expires: Option<OffsetDateTime>) -> LockInfo {
        LockInfo {
            holder: "alice@ci-7:4242".into(),
            operation: "deploy".into(),
            version: "1.2.3".into(),
            since: OffsetDateTime::UNIX_EPOCH,
            renewed: None,
            expires,
        }
    }

    #[test]
    fn the_identity_names_user_host_and_process() {
        let id = identity();
        let (user_host, pid) = id.rsplit_once(':').unwrap();
        assert!(user_host.contains('@'), "{id}");
        assert_eq!(pid, std::process::id().to_string());
    }

    #[test]
    fn the_locked_message_names_the_holder_and_the_ways_out() {
        let text = held_message("compose", "qa", &holder(None), Duration::ZERO);
        assert!(
            text.starts_with("qa is locked by alice@ci-7:4242: deploy 1.2.3 since 1970-01-01"),
            "{text}"
        );
        assert!(
            text.contains("Nothing was changed") && text.contains("--wait-for-lock"),
            "{text}"
        );
        assert!(
            !text.contains("unlock"),
            "a kernel lock cannot be stale: {text}"
        );
        let expiring = held_message(
            "kubernetes",
            "qa",
            &holder(Some(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(30))),
            Duration::from_secs(90),
        );
        assert!(expiring.contains("(waited 1m 30s)"), "{expiring}");
        assert!(
            expiring.contains("expires by itself at 1970-01-01")
                && expiring.contains("deployer unlock --target kubernetes --env qa"),
            "{expiring}"
        );
    }

    #[test]
    fn a_lock_held_elsewhere_is_described_with_holder_operation_version_and_time() {
        let text = describe(&holder(None));
        assert!(
            text.contains("alice@ci-7:4242")
                && text.contains("deploy 1.2.3")
                && text.contains("1970-01-01"),
            "{text}"
        );
    }
}
