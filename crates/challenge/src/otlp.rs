//! What the OTLP exports of traces ([`crate::traces`]) and logs ([`crate::logs`]) share: the
//! resource that names the service, the bounded flush at exit, and the export gate.
//!
//! The gate exists because a deployment may name a collector that is not there: Compose always
//! points the service at `http://otel-collector:4318`, and only the `observability` profile runs a
//! container of that name. So export runs only while the endpoint's host name resolves, checked at
//! start and every [`RECHECK`] on a background thread. While it does not, the switches that
//! [`crate::traces::enabled`] and [`crate::logs::enabled`] read stay off: no span is built and no
//! log record is queued, so a request costs what it costs without export. An IP literal or
//! `localhost` always resolves.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use opentelemetry_sdk::Resource;

use crate::build_info::BUILD;
use crate::config::{OtlpEndpoint, OtlpSettings};
use crate::logs::{self, Logs};
use crate::traces::{self, Traces};

/// How long pending spans and log records may take to leave at exit (a collector that is down must
/// not hold the process past its drain).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the gate checks again whether the endpoints' host names resolve.
pub const RECHECK: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up OTLP {signal} export: {reason}")]
pub struct ExportSetupError {
    signal: &'static str,
    reason: String,
}

impl ExportSetupError {
    pub(crate) fn new(signal: &'static str, reason: impl ToString) -> Self {
        Self {
            signal,
            reason: reason.to_string(),
        }
    }
}

/// The resource of every exported span and log record: `service.name` (`challenge` unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name it) and `service.version`.
pub(crate) fn resource() -> Resource {
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        BUILD.version,
    ));
    if !service_name_given(|name| std::env::var(name).ok()) {
        resource = resource.with_service_name("challenge");
    }
    resource.build()
}

/// The user named the service through the standard variables (else it is `challenge`).
fn service_name_given(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        })
}

/// The running exports and their gate; [`Export::shutdown`] flushes them at exit.
pub struct Export {
    traces: Option<Traces>,
    logs: Option<Logs>,
    gate: Gate,
}

impl Export {
    /// Opens the gate of each started export as its endpoint resolves, now and every [`RECHECK`].
    pub(crate) fn start(
        settings: &OtlpSettings,
        traces: Option<Traces>,
        logs: Option<Logs>,
    ) -> Self {
        let mut watches: Vec<Watch> = Vec::new();
        let signals = [
            (
                &settings.traces,
                traces.is_some(),
                traces::switch(),
                "traces",
            ),
            (&settings.logs, logs.is_some(), logs::switch(), "logs"),
        ];
        for (endpoint, started, switch, name) in signals {
            let Some(endpoint) = endpoint.as_ref().filter(|_| started) else {
                continue;
            };
            match watches.iter_mut().find(|w| w.endpoint == *endpoint) {
                Some(watch) => watch.add(switch, name),
                None => watches.push(Watch::new(endpoint.clone(), switch, name)),
            }
        }
        Self {
            traces,
            logs,
            gate: Gate::start(watches),
        }
    }

    /// Stops exporting, then sends what is queued: spans and log records together, within
    /// [`FLUSH_TIMEOUT`].
    pub fn shutdown(self) {
        self.gate.close();
        let Self { traces, logs, .. } = self;
        std::thread::scope(|scope| {
            if let Some(traces) = traces {
                scope.spawn(|| traces.shutdown());
            }
            if let Some(logs) = logs {
                logs.shutdown();
            }
        });
    }
}

/// One endpoint and the export switches (traces, logs) that follow whether its host resolves.
#[derive(Clone)]
struct Watch {
    endpoint: OtlpEndpoint,
    switches: Vec<&'static AtomicBool>,
    signals: Vec<&'static str>,
    /// The verdict of the previous check, so that only a change is logged.
    resolved: Option<bool>,
}

impl Watch {
    fn new(endpoint: OtlpEndpoint, switch: &'static AtomicBool, signal: &'static str) -> Self {
        Self {
            endpoint,
            switches: vec![switch],
            signals: vec![signal],
            resolved: None,
        }
    }

    fn add(&mut self, switch: &'static AtomicBool, signal: &'static str) {
        self.switches.push(switch);
        self.signals.push(signal);
    }

    /// Resolves the host (outside the lock: a lookup may take seconds) and sets the switches,
    /// unless the gate was closed meanwhile.
    fn check(&mut self, open: &Mutex<bool>) {
        let resolves = resolves(&self.endpoint.host, |host| lookup(host, self.endpoint.port));
        let open = lock(open);
        if !*open {
            return;
        }
        for switch in &self.switches {
            switch.store(resolves, Ordering::Relaxed);
        }
        if let Some(verdict) = change(self.resolved, resolves) {
            tracing::info!(signals = %self.signals.join(", "), "OTLP endpoint {} {verdict}", self.endpoint);
        }
        self.resolved = Some(resolves);
    }
}

/// The background checks; closing it turns every export off for good.
struct Gate {
    open: Arc<Mutex<bool>>,
    switches: Vec<&'static AtomicBool>,
    /// Dropping it ends the checking thread at its next wake-up.
    stop: Option<mpsc::Sender<()>>,
}

impl Gate {
    /// Checks every watch at once, then again every [`RECHECK`], on a thread of its own: a lookup
    /// that takes seconds (a resolver that does not answer) never delays the start.
    fn start(mut watches: Vec<Watch>) -> Self {
        let open = Arc::new(Mutex::new(true));
        let switches = watches.iter().flat_map(|w| w.switches.clone()).collect();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread_open = open.clone();
        let spawned = std::thread::Builder::new()
            .name("otlp-gate".into())
            .spawn(move || {
                check_all(&mut watches, &thread_open);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RECHECK) {
                    check_all(&mut watches, &thread_open);
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the OTLP gate thread: nothing is exported");
        }
        Self {
            open,
            switches,
            stop: Some(stop),
        }
    }

    /// Turns every export off without waiting for a lookup in progress: that check finds the gate
    /// closed and changes nothing.
    fn close(mut self) {
        self.stop.take();
        *lock(&self.open) = false;
        for switch in &self.switches {
            switch.store(false, Ordering::Relaxed);
        }
    }
}

fn check_all(watches: &mut [Watch], open: &Mutex<bool>) {
    for watch in watches {
        watch.check(open);
    }
}

/// A poisoned lock still holds a usable flag or list (nothing panics half-way through a change).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `host` counts as resolving: an IP literal or `localhost` always does, any other name
/// when `lookup` finds an address for it.
fn resolves(host: &str, lookup: impl FnOnce(&str) -> bool) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    literal.eq_ignore_ascii_case("localhost") || literal.parse::<IpAddr>().is_ok() || lookup(host)
}

/// The system resolver's answer (Docker's DNS in a container).
fn lookup(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .is_ok_and(|mut addresses| addresses.next().is_some())
}

/// What to log when a check's verdict differs from the previous one (the first check always logs).
fn change(previous: Option<bool>, now: bool) -> Option<&'static str> {
    (previous != Some(now)).then_some(match now {
        true => "resolves: exporting",
        false => "does not resolve: export paused",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_named_challenge_unless_the_standard_variables_name_it() {
        let none = |_: &str| None;
        assert!(!service_name_given(none));
        assert!(service_name_given(
            |n: &str| (n == "OTEL_SERVICE_NAME").then(|| "tasks-api".to_owned())
        ));
        assert!(service_name_given(|n: &str| (n
            == "OTEL_RESOURCE_ATTRIBUTES")
            .then(
                || "deployment.environment=prod, service.name=x".to_owned()
            )));
        assert!(!service_name_given(|n: &str| (n
            == "OTEL_RESOURCE_ATTRIBUTES")
            .then(|| "service.namespace=shop".to_owned())));
    }

    #[test]
    fn ip_literals_and_localhost_resolve_without_a_lookup() {
        let never = |host: &str| -> bool { panic!("{host} was looked up") };
        for host in ["127.0.0.1", "10.1.2.3", "[::1]", "localhost", "LOCALHOST"] {
            assert!(resolves(host, never), "{host}");
        }
    }

    #[test]
    fn other_names_follow_the_lookup() {
        assert!(resolves("otel-collector", |_| true));
        assert!(!resolves("otel-collector", |_| false));
        assert!(!resolves("localhost.example", |_| false));
    }

    #[test]
    fn a_name_that_cannot_exist_does_not_resolve() {
        // `.invalid` is reserved (RFC 2606): no resolver may answer it.
        assert!(!lookup("otel-collector.invalid", 4318));
    }

    #[test]
    fn only_a_change_of_verdict_is_logged() {
        assert_eq!(change(None, true), Some("resolves: exporting"));
        assert_eq!(change(None, false), Some("does not resolve: export paused"));
        assert_eq!(change(Some(true), true), None);
        assert_eq!(change(Some(false), false), None);
        assert_eq!(
            change(Some(true), false),
            Some("does not resolve: export paused")
        );
        assert_eq!(change(Some(false), true), Some("resolves: exporting"));
    }

    #[test]
    fn a_closed_gate_keeps_its_switches_off() {
        static SWITCH: AtomicBool = AtomicBool::new(false);
        let endpoint = OtlpEndpoint {
            host: "127.0.0.1".into(),
            port: 4318,
        };
        let mut watches = vec![Watch::new(endpoint, &SWITCH, "logs")];
        let gate = Gate::start(watches.clone());
        // The first check runs on the gate's thread, at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !SWITCH.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            SWITCH.load(Ordering::Relaxed),
            "an IP literal opens the gate"
        );
        let open = gate.open.clone();
        gate.close();
        assert!(!SWITCH.load(Ordering::Relaxed), "closing turns it off");
        check_all(&mut watches, &open);
        assert!(
            !SWITCH.load(Ordering::Relaxed),
            "a late check changes nothing"
        );
    }
}
