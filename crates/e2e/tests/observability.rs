//! The Compose `observability` profile: db, app, proxy, Prometheus and Alertmanager from
//! `deploy/compose/compose.yaml`. The profile's OpenTelemetry Collector, Jaeger, Loki and Grafana have
//! no stand-in (Debian packages none of them), so `up` names the services that can run here and
//! Compose starts those alone; their wiring is checked from the files by `cargo xtask test --only
//! monitoring` (xtask/src/monitoring/wiring.rs). Prometheus must scrape the service (`app:8000` on the
//! project's network, past the proxy), keep exemplars, load the rules and find Alertmanager; the app
//! names the Collector and is healthy while no Collector runs.
//!
//! The monitoring images are `PROMETHEUS_IMAGE` and `ALERTMANAGER_IMAGE` when set, else the upstream
//! images when the engine has them, else the stand-ins `cargo xtask airgap-images` builds.

use std::time::{Duration, Instant};

use e2e::{
    ComposeProject, free_port, http, inspect, project_root, run, wait_for_200, wait_for_health,
};
use serde_json::Value;

const PROFILE_SERVICES: [&str; 5] = ["db", "app", "proxy", "prometheus", "alertmanager"];
/// The profile's services without a stand-in: never started here.
const NOT_STARTED: [&str; 4] = ["otel-collector", "jaeger", "loki", "grafana"];
/// Where the app sends spans and log records (compose.yaml's default).
const APP_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318";

#[test]
fn observability_profile_scrapes_the_app_loads_the_rules_and_reaches_alertmanager() {
    let profile = Profile::new(ComposeProject::new("obs-secret-0001", "obs-root-0001"));
    let mut up = vec!["up", "-d"];
    up.extend(PROFILE_SERVICES);
    profile.project.run(&up);
    let app = profile.project.container("app");
    let prometheus = profile.project.container("prometheus");
    let alertmanager = profile.project.container("alertmanager");
    wait_for_health(&app, "healthy", Duration::from_secs(180));
    wait_for_health(&prometheus, "healthy", Duration::from_secs(90));
    wait_for_health(&alertmanager, "healthy", Duration::from_secs(90));

    // Only what can run here was started; the app names the Collector, and the Collector's absence
    // costs it nothing (it turned healthy above).
    for service in NOT_STARTED {
        let listed = profile.project.run(&["ps", "-q", service]);
        assert!(
            listed.trim().is_empty(),
            "{service} was started, but it has no stand-in here: {listed}"
        );
    }
    let app_env = inspect(&app, "{{json .Config.Env}}");
    assert!(
        app_env.contains(APP_OTLP_ENDPOINT),
        "the app does not name the Collector: {app_env}"
    );

    // Hardened like the rest of the stack.
    for container in [&prometheus, &alertmanager] {
        assert_eq!(inspect(container, "{{.HostConfig.ReadonlyRootfs}}"), "true");
        assert_eq!(inspect(container, "{{.Config.User}}"), "65534:65534");
        assert_eq!(inspect(container, "{{.HostConfig.CapDrop}}"), "[ALL]");
    }

    let agent = http();
    let get = |url: String| -> Value {
        let mut response = agent
            .get(&url)
            .call()
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert_eq!(response.status(), 200, "GET {url}");
        response.body_mut().read_json().expect("JSON")
    };

    // The `challenge` target is up (the first scrape comes within one 15 s interval), labelled env=local.
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = loop {
        let targets = get(profile.prometheus("/api/v1/targets?state=active"));
        let found = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["labels"]["job"] == "challenge")
            .cloned();
        if let Some(target) = found.filter(|t| t["health"] == "up") {
            break target;
        }
        assert!(
            Instant::now() < deadline,
            "the `challenge` target is not up after 60 s: {targets:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(target["labels"]["instance"], "app:8000");
    assert_eq!(target["labels"]["env"], "local");

    // Exemplars are kept: the flag is on, and the stand-in's Prometheus understands it.
    let flags = get(profile.prometheus("/api/v1/status/flags"));
    let features = flags["data"]["enable-feature"].as_str().unwrap_or_default();
    assert!(
        features.split(',').any(|f| f == "exemplar-storage"),
        "Prometheus runs without exemplar storage: {flags:#}"
    );

    // Both rule files loaded, and no rule fails to evaluate.
    let rules = get(profile.prometheus("/api/v1/rules"));
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for file in [
        "/etc/prometheus/rules/recording.yml",
        "/etc/prometheus/rules/alerts.yml",
    ] {
        assert!(
            groups.iter().any(|g| g["file"] == file),
            "Prometheus did not load {file}: {rules:#}"
        );
    }
    for group in &groups {
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert_ne!(
                rule["health"], "err",
                "rule {} fails: {}",
                rule["name"], rule["lastError"]
            );
        }
    }

    // Alerts go to the profile's Alertmanager, which is ready and has the repository's configuration.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alertmanagers = get(profile.prometheus("/api/v1/alertmanagers"));
        let active = alertmanagers["data"]["activeAlertmanagers"].to_string();
        if active.contains("alertmanager:9093") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not send to alertmanager:9093: {alertmanagers:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_for_200(&profile.alertmanager("/-/ready"), Duration::from_secs(30));
    let status = get(profile.alertmanager("/api/v2/status"));
    let loaded = status["config"]["original"].as_str().unwrap_or_default();
    let ours = std::fs::read_to_string(
        project_root().join("deploy/monitoring/alertmanager/alertmanager.yml"),
    )
    .expect("reading alertmanager.yml");
    let first_receiver = ours
        .lines()
        .find_map(|line| line.trim().strip_prefix("- name:"))
        .map(|name| name.trim().trim_matches(['"', '\'']).to_owned())
        .expect("alertmanager.yml names a receiver");
    assert!(
        loaded.contains(&first_receiver),
        "Alertmanager runs another configuration than deploy/monitoring/alertmanager/alertmanager.yml:\n{loaded}"
    );
}

/// The stack with the `observability` profile enabled (its containers and volumes go with the
/// project's `down -v`), and where Prometheus and Alertmanager listen.
struct Profile {
    project: ComposeProject,
    prometheus_port: u16,
    alertmanager_port: u16,
}

impl Profile {
    fn new(project: ComposeProject) -> Self {
        let (prometheus_port, alertmanager_port) = (free_port(), free_port());
        let env = [
            (
                "PROMETHEUS_IMAGE",
                monitoring_image(
                    "PROMETHEUS_IMAGE",
                    "prom/prometheus:v2.53.0",
                    "infra-challenge/prometheus:2.42",
                ),
            ),
            (
                "ALERTMANAGER_IMAGE",
                monitoring_image(
                    "ALERTMANAGER_IMAGE",
                    "prom/alertmanager:v0.27.0",
                    "infra-challenge/alertmanager:0.25",
                ),
            ),
            ("PROMETHEUS_PORT", prometheus_port.to_string()),
            ("ALERTMANAGER_PORT", alertmanager_port.to_string()),
        ];
        let project = project.with_profile(
            "observability",
            env.into_iter().map(|(k, v)| (k.to_owned(), v)),
        );
        Self {
            project,
            prometheus_port,
            alertmanager_port,
        }
    }

    fn prometheus(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.prometheus_port)
    }

    fn alertmanager(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.alertmanager_port)
    }
}

/// `variable` when set, else `upstream` when the engine has it, else the stand-in.
fn monitoring_image(variable: &str, upstream: &str, standin: &str) -> String {
    if let Ok(image) = std::env::var(variable)
        && !image.trim().is_empty()
    {
        return image;
    }
    let present = |image: &str| run("docker", &["image", "inspect", image]).status.success();
    if present(upstream) {
        return upstream.to_owned();
    }
    assert!(
        present(standin),
        "neither {upstream} nor its stand-in {standin} is in the local engine: pull it, or run \
         `cargo xtask airgap-images`, or set {variable}"
    );
    standin.to_owned()
}
