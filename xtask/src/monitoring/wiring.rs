//! The wiring of the Compose `observability` profile, checked from its files: who sends to whom, on
//! which port and protocol, which Grafana data source a link opens, how long each store keeps data.
//!
//! The OpenTelemetry Collector, Jaeger, Loki and Grafana images cannot be pulled where this project
//! is built, and Debian packages none of them, so they never run in its tests. A wrong host name, a
//! port one side publishes and the other does not listen on, a pipeline naming a processor nobody
//! defined or a dashboard naming a data source nobody provisioned would start without complaint and
//! simply show nothing. These checks read deploy/compose/compose.yaml and the files it mounts, and
//! name every such mismatch; `docker-compose config` then proves Compose resolves the profile.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::util;

const COMPOSE_DIR: &str = "deploy/compose";
const COMPOSE_FILE: &str = "deploy/compose/compose.yaml";
const PROFILE: &str = "observability";
const DATASOURCES_DIR: &str = "deploy/monitoring/grafana/provisioning/datasources";
const DASHBOARDS_DIR: &str = "deploy/monitoring/grafana/dashboards";
/// The app's service and the variable naming where it sends spans and log records.
const APP: &str = "app";
const APP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The services whose own configuration file says what they listen on, and that file.
const COLLECTOR: Configured = Configured {
    service: "otel-collector",
    file: "deploy/monitoring/otel-collector/config.yaml",
};
const JAEGER: Configured = Configured {
    service: "jaeger",
    file: "deploy/monitoring/jaeger/config.yaml",
};
const LOKI: Configured = Configured {
    service: "loki",
    file: "deploy/monitoring/loki/config.yaml",
};
/// The label the exemplars and the log records carry the trace id in (32 lowercase hex digits).
const TRACE_ID: &str = "trace_id";

#[derive(Clone, Copy)]
struct Configured {
    service: &'static str,
    file: &'static str,
}

/// How a client talks to a port: OTLP comes in both flavours on different ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// Checks the files, then asks Compose to resolve the profile.
pub fn check(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let stack = Stack::read(root)?;
    let problems = stack.problems(&root.join(COMPOSE_DIR));
    anyhow::ensure!(
        problems.is_empty(),
        "the observability profile's files do not fit together:\n  {}",
        problems.join("\n  ")
    );
    eprintln!(
        "observability wiring: loopback ports, OTLP endpoints, pipelines, data source UIDs, mounts \
         and retention agree"
    );
    compose_config_resolves(sh, root, &stack.profile_services())
}

/// The parsed files of the profile.
#[derive(Clone)]
struct Stack {
    compose: Value,
    collector: Value,
    jaeger: Value,
    loki: Value,
    /// (file name, provisioning document) of every data source file.
    datasources: Vec<(String, Value)>,
    /// (file name, dashboard) of every dashboard.
    dashboards: Vec<(String, Value)>,
}

impl Stack {
    fn read(root: &Path) -> anyhow::Result<Stack> {
        Ok(Stack {
            compose: read_yaml(&root.join(COMPOSE_FILE))?,
            collector: read_yaml(&root.join(COLLECTOR.file))?,
            jaeger: read_yaml(&root.join(JAEGER.file))?,
            loki: read_yaml(&root.join(LOKI.file))?,
            datasources: read_dir(&root.join(DATASOURCES_DIR), &["yml", "yaml"], read_yaml)?,
            dashboards: read_dir(&root.join(DASHBOARDS_DIR), &["json"], read_json)?,
        })
    }

    /// Every mismatch, as a sentence naming the file and what to change. `compose_dir` is where the
    /// compose file's relative mounts start.
    fn problems(&self, compose_dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(self.loopback_only());
        problems.extend(self.images_pinned());
        problems.extend(self.app_reaches_the_collector());
        problems.extend(self.collector_reaches_the_backends());
        problems.extend(self.published_ports_listen());
        problems.extend(pipelines_defined(COLLECTOR.file, &self.collector, true));
        problems.extend(pipelines_defined(JAEGER.file, &self.jaeger, false));
        problems.extend(self.mounts(compose_dir));
        problems.extend(self.datasource_uids());
        problems.extend(self.datasource_urls());
        problems.extend(self.trace_links());
        problems.extend(self.retention());
        problems
    }

    fn service(&self, name: &str) -> Option<&Value> {
        self.compose.pointer(&format!("/services/{name}"))
    }

    /// The services that start only with the profile.
    fn profile_services(&self) -> Vec<String> {
        let services = self.compose.get("services").and_then(Value::as_object);
        services
            .into_iter()
            .flatten()
            .filter(|(_, s)| strings(s.get("profiles")).contains(&PROFILE))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every port of every profile service is published on 127.0.0.1: none of them authenticates.
    fn loopback_only(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for name in self.profile_services() {
            for port in array(self.service(&name).and_then(|s| s.get("ports"))) {
                let loopback = match port {
                    Value::String(spec) => spec.starts_with("127.0.0.1:"),
                    Value::Object(long) => long.get("host_ip") == Some(&"127.0.0.1".into()),
                    _ => false,
                };
                if !loopback {
                    problems.push(format!(
                        "{COMPOSE_FILE}: {name} publishes {port} beyond loopback; write it as \
                         \"127.0.0.1:<host port>:<container port>\""
                    ));
                }
            }
        }
        problems
    }

    /// Every profile image names a version (its default when it is a `${VARIABLE:-default}`).
    fn images_pinned(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for name in self.profile_services() {
            let image = self
                .service(&name)
                .and_then(|s| s.get("image"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let image = variable_default(image).unwrap_or(image);
            let tag = image
                .rsplit_once(':')
                .filter(|(repository, _)| !repository.is_empty())
                .map(|(_, tag)| tag)
                .filter(|tag| !tag.contains('/'));
            if tag.is_none_or(|t| t.is_empty() || t == "latest") {
                problems.push(format!(
                    "{COMPOSE_FILE}: {name}'s image {image:?} names no version; pin one"
                ));
            }
        }
        problems
    }

    /// The app's OTLP endpoint (its default) is the Collector's service at a port the Collector
    /// receives OTLP/HTTP on (the service exports protobuf over HTTP).
    fn app_reaches_the_collector(&self) -> Vec<String> {
        let value = self
            .service(APP)
            .and_then(|s| s.pointer(&format!("/environment/{APP_ENDPOINT}")))
            .and_then(Value::as_str);
        let Some(value) = value else {
            return vec![format!(
                "{COMPOSE_FILE}: {APP} sets no {APP_ENDPOINT}; set it to \
                 http://{}:<its OTLP/HTTP port>",
                COLLECTOR.service
            )];
        };
        if value.contains("${OTEL_") {
            return vec![format!(
                "{COMPOSE_FILE}: {APP}'s {APP_ENDPOINT} {value:?} takes an OTEL_* variable of the \
                 shell running Compose, where it names the host's own Collector address; use a \
                 variable of the app's own (APP_OTLP_ENDPOINT)"
            )];
        }
        let url = variable_default(value).unwrap_or(value);
        let Some(target) = Target::parse(url) else {
            return vec![format!(
                "{COMPOSE_FILE}: {APP}'s {APP_ENDPOINT} {url:?} is not host:port or a URL"
            )];
        };
        if target.host != COLLECTOR.service {
            return vec![format!(
                "{COMPOSE_FILE}: {APP}'s {APP_ENDPOINT} names {:?}, not the Collector's service {:?}",
                target.host, COLLECTOR.service
            )];
        }
        self.reaches(
            &format!("{COMPOSE_FILE}: {APP}'s {APP_ENDPOINT}"),
            &target,
            Protocol::Http,
        )
        .into_iter()
        .collect()
    }

    /// Every Collector exporter names a profile service at a port that service listens on with the
    /// exporter's protocol; Loki's is its OTLP path; traces reach Jaeger and logs reach Loki.
    fn collector_reaches_the_backends(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let exporters = self.collector.get("exporters").and_then(Value::as_object);
        for (name, exporter) in exporters.into_iter().flatten() {
            let origin = format!("{}: exporter {name}", COLLECTOR.file);
            let Some(endpoint) = exporter.get("endpoint").and_then(Value::as_str) else {
                continue;
            };
            let protocol = match name.split('/').next().unwrap_or_default() {
                "otlp_grpc" | "otlp" => Protocol::Grpc,
                "otlp_http" | "otlphttp" => Protocol::Http,
                kind => {
                    problems.push(format!(
                        "{origin}: exporter kind {kind:?} is unknown to this check; teach \
                         xtask/src/monitoring/wiring.rs its protocol"
                    ));
                    continue;
                }
            };
            let Some(target) = Target::parse(endpoint) else {
                problems.push(format!(
                    "{origin}: endpoint {endpoint:?} is not host:port or a URL"
                ));
                continue;
            };
            problems.extend(self.reaches(&origin, &target, protocol));
            if target.host == LOKI.service && target.path != "/otlp" {
                problems.push(format!(
                    "{origin}: Loki ingests OTLP under /otlp, the endpoint says {:?}",
                    target.path
                ));
            }
        }
        for (signal, backend) in [("traces", JAEGER.service), ("logs", LOKI.service)] {
            if !self.pipeline_exports_to(signal, backend) {
                problems.push(format!(
                    "{}: no {signal} pipeline exports to the service {backend}",
                    COLLECTOR.file
                ));
            }
        }
        problems
    }

    /// Some `signal` pipeline of the Collector has an exporter whose endpoint is `service`.
    fn pipeline_exports_to(&self, signal: &str, service: &str) -> bool {
        let pipelines = self
            .collector
            .pointer("/service/pipelines")
            .and_then(Value::as_object);
        pipelines
            .into_iter()
            .flatten()
            .filter(|(name, _)| name.split('/').next() == Some(signal))
            .flat_map(|(_, pipeline)| strings(pipeline.get("exporters")))
            .filter_map(|exporter| {
                let exporters = self.collector.get("exporters")?;
                exporters.get(exporter)?.get("endpoint")?.as_str()
            })
            .filter_map(Target::parse)
            .any(|target| target.host == service)
    }

    /// A problem when `target` is not a profile service listening on its port with `protocol`.
    fn reaches(&self, origin: &str, target: &Target, protocol: Protocol) -> Option<String> {
        if !self.profile_services().contains(&target.host) {
            return Some(format!(
                "{origin}: {:?} is no service of the {PROFILE} profile in {COMPOSE_FILE}",
                target.host
            ));
        }
        let listening = self.listeners(&target.host);
        if listening.contains(&(protocol, target.port)) {
            return None;
        }
        Some(format!(
            "{origin}: {}:{} over {protocol:?}, but {} listens on {listening:?} (reachable from \
             other containers: host 0.0.0.0)",
            target.host, target.port, target.host
        ))
    }

    /// The ports a service accepts connections on from other containers: from its own
    /// configuration when it has one here, else the container ports compose.yaml declares.
    fn listeners(&self, service: &str) -> Vec<(Protocol, u16)> {
        if service == COLLECTOR.service {
            otlp_listeners(&self.collector)
        } else if service == JAEGER.service {
            let mut ports = otlp_listeners(&self.jaeger);
            let query = self
                .jaeger
                .pointer("/extensions/jaeger_query/http/endpoint");
            ports
                .extend(reachable_port(query.and_then(Value::as_str)).map(|p| (Protocol::Http, p)));
            ports
        } else if service == LOKI.service {
            [
                ("/server/http_listen_port", Protocol::Http),
                ("/server/grpc_listen_port", Protocol::Grpc),
            ]
            .into_iter()
            .filter_map(|(at, protocol)| Some((protocol, port_number(self.loki.pointer(at)?)?)))
            .collect()
        } else {
            self.declared_ports(service)
                .into_iter()
                .map(|port| (Protocol::Http, port))
                .collect()
        }
    }

    /// The container ports a service publishes (`ports`) or exposes (`expose`).
    fn declared_ports(&self, service: &str) -> Vec<u16> {
        let service = self.service(service);
        let published = array(service.and_then(|s| s.get("ports")))
            .iter()
            .filter_map(|port| match port {
                Value::String(spec) => spec.rsplit(':').next()?.split('/').next()?.parse().ok(),
                Value::Object(long) => port_number(long.get("target")?),
                _ => None,
            });
        let exposed = array(service.and_then(|s| s.get("expose")))
            .iter()
            .filter_map(port_number);
        published.chain(exposed).collect()
    }

    /// What the configured services publish or expose, their configuration listens on.
    fn published_ports_listen(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for configured in [COLLECTOR, JAEGER, LOKI] {
            let listening: Vec<u16> = self
                .listeners(configured.service)
                .iter()
                .map(|(_, port)| *port)
                .collect();
            for port in self.declared_ports(configured.service) {
                if !listening.contains(&port) {
                    problems.push(format!(
                        "{COMPOSE_FILE}: {} publishes or exposes {port}, which {} does not listen \
                         on (it does on {listening:?})",
                        configured.service, configured.file
                    ));
                }
            }
        }
        problems
    }

    /// Every relative bind mount exists, and each configured service runs with its file: mounted,
    /// and the mount's destination named in its command.
    fn mounts(&self, compose_dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let services = self.compose.get("services").and_then(Value::as_object);
        for (name, service) in services.into_iter().flatten() {
            for (source, _) in bind_mounts(service) {
                if !compose_dir.join(&source).exists() {
                    problems.push(format!(
                        "{COMPOSE_FILE}: {name} mounts {source}, which does not exist"
                    ));
                }
            }
        }
        for configured in [COLLECTOR, JAEGER, LOKI] {
            let Some(service) = self.service(configured.service) else {
                problems.push(format!(
                    "{COMPOSE_FILE}: no service {} (it runs {})",
                    configured.service, configured.file
                ));
                continue;
            };
            let wanted = Path::new(configured.file);
            let destination = bind_mounts(service)
                .into_iter()
                .find(|(source, _)| normalize(&Path::new(COMPOSE_DIR).join(source)) == wanted)
                .map(|(_, destination)| destination);
            let Some(destination) = destination else {
                problems.push(format!(
                    "{COMPOSE_FILE}: {} does not mount {}",
                    configured.service, configured.file
                ));
                continue;
            };
            let command = strings(service.get("command"));
            if !command
                .iter()
                .any(|arg| arg.ends_with(destination.as_str()))
            {
                problems.push(format!(
                    "{COMPOSE_FILE}: {}'s command {command:?} does not name {destination}, where \
                     {} is mounted",
                    configured.service, configured.file
                ));
            }
        }
        problems
    }

    /// (file, uid, type) of every provisioned data source.
    fn provisioned(&self) -> Vec<(&str, &str, &str)> {
        self.datasources
            .iter()
            .flat_map(|(file, doc)| {
                array(doc.get("datasources")).iter().map(move |source| {
                    let field = |key| source.get(key).and_then(Value::as_str).unwrap_or_default();
                    (file.as_str(), field("uid"), field("type"))
                })
            })
            .collect()
    }

    fn type_of(&self, uid: &str) -> Option<&str> {
        self.provisioned()
            .into_iter()
            .find(|(_, u, _)| *u == uid)
            .map(|(_, _, kind)| kind)
    }

    /// Every data source UID a dashboard, an Explore link or a data source's links name is
    /// provisioned (a data source without a fixed UID gets a random one, which no link can name).
    fn datasource_uids(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (file, uid, _) in self.provisioned() {
            if uid.is_empty() {
                problems.push(format!(
                    "{DATASOURCES_DIR}/{file}: a data source without a uid"
                ));
            }
        }
        let known: BTreeSet<&str> = self.provisioned().iter().map(|(_, uid, _)| *uid).collect();
        let mut used = Vec::new();
        for (file, doc) in &self.datasources {
            for source in array(doc.get("datasources")) {
                for (link, uid) in linked_uids(source) {
                    used.push((format!("{DATASOURCES_DIR}/{file}: {link}"), uid));
                }
            }
        }
        for (file, dashboard) in &self.dashboards {
            let origin = format!("{DASHBOARDS_DIR}/{file}");
            let variables: Vec<&str> = array(dashboard.pointer("/templating/list"))
                .iter()
                .filter(|v| v.get("type").and_then(Value::as_str) == Some("datasource"))
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .collect();
            for uid in datasource_refs(dashboard) {
                match uid.strip_prefix('$') {
                    Some(variable) => {
                        let variable = variable.trim_start_matches('{').trim_end_matches('}');
                        if !variables.contains(&variable) {
                            problems.push(format!(
                                "{origin}: data source ${variable} is no data source variable of \
                                 the dashboard"
                            ));
                        }
                    }
                    None => used.push((format!("{origin}: a panel"), uid)),
                }
            }
            for (title, uid) in explore_link_uids(dashboard) {
                used.push((format!("{origin}: link {title:?}"), uid));
            }
        }
        for (origin, uid) in used {
            if !known.contains(uid.as_str()) {
                problems.push(format!(
                    "{origin} names data source {uid:?}, which {DATASOURCES_DIR} does not \
                     provision (it has {known:?})"
                ));
            }
        }
        problems
    }

    /// Every provisioned data source's URL is a profile service at a port it listens on.
    fn datasource_urls(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (file, doc) in &self.datasources {
            for source in array(doc.get("datasources")) {
                let url = source
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let origin = format!("{DATASOURCES_DIR}/{file}: url {url:?}");
                match Target::parse(url) {
                    Some(target) => problems.extend(self.reaches(&origin, &target, Protocol::Http)),
                    None => problems.push(format!("{origin} is not a URL")),
                }
            }
        }
        problems
    }

    /// The three links between the signals, each by the trace id and to the right kind of data
    /// source: exemplars to traces, traces to logs, logs to traces. Prometheus keeps exemplars only
    /// with its feature flag.
    fn trace_links(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let sources: Vec<&Value> = self
            .datasources
            .iter()
            .flat_map(|(_, doc)| array(doc.get("datasources")))
            .collect();
        let of_type = |kind: &'static str| {
            sources
                .iter()
                .copied()
                .filter(move |s| s.get("type") == Some(&kind.into()))
        };
        let points_to = |uid: Option<&Value>, kind: &str| {
            uid.and_then(Value::as_str).and_then(|u| self.type_of(u)) == Some(kind)
        };

        let exemplars = of_type("prometheus").any(|s| {
            array(s.pointer("/jsonData/exemplarTraceIdDestinations"))
                .iter()
                .any(|d| {
                    d.get("name") == Some(&TRACE_ID.into())
                        && points_to(d.get("datasourceUid"), "jaeger")
                })
        });
        if !exemplars {
            problems.push(format!(
                "{DATASOURCES_DIR}: no Prometheus data source sends exemplars' {TRACE_ID} to a \
                 Jaeger data source (jsonData.exemplarTraceIdDestinations)"
            ));
        }
        let logs_to_traces = of_type("loki").any(|s| {
            array(s.pointer("/jsonData/derivedFields"))
                .iter()
                .any(|field| {
                    field.get("matcherType") == Some(&"label".into())
                        && field.get("matcherRegex") == Some(&TRACE_ID.into())
                        && points_to(field.get("datasourceUid"), "jaeger")
                })
        });
        if !logs_to_traces {
            problems.push(format!(
                "{DATASOURCES_DIR}: no Loki derived field reads the structured metadata {TRACE_ID} \
                 (matcherType label) and opens a Jaeger data source"
            ));
        }
        let traces_to_logs = of_type("jaeger").any(|s| {
            let link = s.pointer("/jsonData/tracesToLogsV2");
            let by_trace_id = link.is_some_and(|link| {
                let custom = link.get("customQuery") == Some(&true.into());
                let query = link
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if custom {
                    query.contains(&format!("{TRACE_ID}=")) && query.contains("__span.traceId")
                } else {
                    link.get("filterByTraceID") == Some(&true.into())
                }
            });
            by_trace_id && points_to(link.and_then(|l| l.get("datasourceUid")), "loki")
        });
        if !traces_to_logs {
            problems.push(format!(
                "{DATASOURCES_DIR}: no Jaeger data source links a span to a Loki data source by \
                 its trace id (jsonData.tracesToLogsV2)"
            ));
        }
        let prometheus = strings(self.service("prometheus").and_then(|s| s.get("command")));
        if !prometheus
            .iter()
            .any(|arg| arg.starts_with("--enable-feature=") && arg.contains("exemplar-storage"))
        {
            problems.push(format!(
                "{COMPOSE_FILE}: prometheus runs without --enable-feature=exemplar-storage, so it \
                 keeps no exemplar to link"
            ));
        }
        problems
    }

    /// Every store is bounded: Jaeger's memory by max_traces, Loki by a retention period its
    /// compactor applies, Prometheus by a retention flag.
    fn retention(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let backends = self
            .jaeger
            .pointer("/extensions/jaeger_storage/backends")
            .and_then(Value::as_object);
        if backends.is_none_or(|b| b.is_empty()) {
            problems.push(format!("{}: no jaeger_storage backend", JAEGER.file));
        }
        for (name, backend) in backends.into_iter().flatten() {
            let bound = backend
                .pointer("/memory/max_traces")
                .and_then(Value::as_u64);
            if bound.is_none_or(|n| n == 0) {
                problems.push(format!(
                    "{}: storage backend {name} is not memory bounded by max_traces > 0 (other \
                     backends need their own retention check here)",
                    JAEGER.file
                ));
            }
        }
        let period = self
            .loki
            .pointer("/limits_config/retention_period")
            .and_then(Value::as_str)
            .and_then(|p| humantime::parse_duration(p).ok());
        if period.is_none_or(|p| p.is_zero()) {
            problems.push(format!(
                "{}: limits_config.retention_period is not a duration above zero",
                LOKI.file
            ));
        }
        if self.loki.pointer("/compactor/retention_enabled") != Some(&true.into()) {
            problems.push(format!(
                "{}: compactor.retention_enabled is not true, so nothing is ever deleted",
                LOKI.file
            ));
        }
        let store = self.loki.pointer("/compactor/delete_request_store");
        if store.and_then(Value::as_str).is_none_or(str::is_empty) {
            problems.push(format!(
                "{}: compactor.delete_request_store is unset; Loki refuses retention without it",
                LOKI.file
            ));
        }
        let prometheus = strings(self.service("prometheus").and_then(|s| s.get("command")));
        if !prometheus.iter().any(|arg| {
            arg.starts_with("--storage.tsdb.retention.time=")
                || arg.starts_with("--storage.tsdb.retention.size=")
        }) {
            problems.push(format!(
                "{COMPOSE_FILE}: prometheus runs without --storage.tsdb.retention.time or .size"
            ));
        }
        problems
    }
}

/// Pipelines name only components the file defines, the service's extensions too; with
/// `memory_limiter_first`, every pipeline's first processor is a memory_limiter (it must see data
/// before anything else buffers it).
fn pipelines_defined(file: &str, config: &Value, memory_limiter_first: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let defined = |section: &str, name: &str| {
        config
            .get(section)
            .and_then(Value::as_object)
            .is_some_and(|components| components.contains_key(name))
    };
    for extension in strings(config.pointer("/service/extensions")) {
        if !defined("extensions", extension) {
            problems.push(format!(
                "{file}: service.extensions names {extension}, which is not defined"
            ));
        }
    }
    let pipelines = config
        .pointer("/service/pipelines")
        .and_then(Value::as_object);
    if pipelines.is_none_or(|p| p.is_empty()) {
        problems.push(format!("{file}: no pipeline"));
    }
    for (name, pipeline) in pipelines.into_iter().flatten() {
        for section in ["receivers", "processors", "exporters"] {
            let components = strings(pipeline.get(section));
            if section != "processors" && components.is_empty() {
                problems.push(format!("{file}: pipeline {name} has no {section}"));
            }
            for component in components {
                if !defined(section, component) {
                    problems.push(format!(
                        "{file}: pipeline {name} names {section} {component}, which is not defined"
                    ));
                }
            }
        }
        let first = strings(pipeline.get("processors")).first().copied();
        if memory_limiter_first && first.and_then(|p| p.split('/').next()) != Some("memory_limiter")
        {
            problems.push(format!(
                "{file}: pipeline {name} does not start with memory_limiter (it starts with {first:?})"
            ));
        }
    }
    problems
}

/// The OTLP receivers' ports, by protocol, where other containers can reach them.
fn otlp_listeners(config: &Value) -> Vec<(Protocol, u16)> {
    let receivers = config.get("receivers").and_then(Value::as_object);
    receivers
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.split('/').next() == Some("otlp"))
        .flat_map(|(_, receiver)| {
            [("grpc", Protocol::Grpc), ("http", Protocol::Http)]
                .into_iter()
                .filter_map(|(key, protocol)| {
                    let endpoint = receiver.pointer(&format!("/protocols/{key}/endpoint"));
                    Some((protocol, reachable_port(endpoint.and_then(Value::as_str))?))
                })
        })
        .collect()
}

/// The port of a listener's `host:port` when other containers can reach it: an address of every
/// interface. An absent endpoint is the component's default, localhost since Collector 0.110, which
/// only the container itself reaches.
fn reachable_port(endpoint: Option<&str>) -> Option<u16> {
    let (host, port) = endpoint?.rsplit_once(':')?;
    matches!(host, "" | "0.0.0.0" | "[::]" | "::")
        .then(|| port.parse().ok())
        .flatten()
}

/// Where a client connects: `host:port` (gRPC) or `scheme://host[:port][/path]`.
#[derive(Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(endpoint: &str) -> Option<Target> {
        let (default_port, rest) = match endpoint.split_once("://") {
            Some(("http", rest)) => (Some(80), rest),
            Some(("https", rest)) => (Some(443), rest),
            Some(_) => return None,
            None => (None, endpoint),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port?),
        };
        (!host.is_empty()).then(|| Target {
            host: host.to_owned(),
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// The default of `${VARIABLE:-default}` (or `${VARIABLE-default}`), when the value is one.
fn variable_default(value: &str) -> Option<&str> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    let (_, default) = inner.split_once(":-").or_else(|| inner.split_once('-'))?;
    Some(default)
}

/// (source, destination) of a service's bind mounts with a relative source (named volumes and
/// absolute paths are not this repository's files).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    array(service.get("volumes"))
        .iter()
        .filter_map(|volume| match volume {
            Value::String(spec) => {
                let mut parts = spec.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            Value::Object(long) => Some((
                long.get("source")?.as_str()?.to_owned(),
                long.get("target")?.as_str()?.to_owned(),
            )),
            _ => None,
        })
        .filter(|(source, _)| source.starts_with("./") || source.starts_with("../"))
        .collect()
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// (what links, uid) of the links a provisioned data source makes to others.
fn linked_uids(source: &Value) -> Vec<(String, String)> {
    let name = source.get("name").and_then(Value::as_str).unwrap_or("?");
    let mut links = Vec::new();
    for key in ["tracesToLogsV2", "tracesToLogs", "tracesToMetrics"] {
        if let Some(uid) = source.pointer(&format!("/jsonData/{key}/datasourceUid")) {
            links.push((format!("{name} {key}"), uid));
        }
    }
    for key in ["derivedFields", "exemplarTraceIdDestinations"] {
        for entry in array(source.pointer(&format!("/jsonData/{key}"))) {
            if let Some(uid) = entry.get("datasourceUid") {
                links.push((format!("{name} {key}"), uid));
            }
        }
    }
    links
        .into_iter()
        .filter_map(|(link, uid)| Some((link, uid.as_str()?.to_owned())))
        .collect()
}

/// The uid of every `datasource: {uid: ...}` anywhere in a dashboard (panels, targets, variables).
fn datasource_refs(value: &Value) -> Vec<String> {
    let mut uids = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "datasource"
                    && let Some(uid) = child.get("uid").and_then(Value::as_str)
                {
                    uids.push(uid.to_owned());
                }
                uids.extend(datasource_refs(child));
            }
        }
        Value::Array(items) => uids.extend(items.iter().flat_map(datasource_refs)),
        _ => {}
    }
    uids
}

/// (link title, uid) of the data sources a dashboard's Explore links open (`panes`, URL-encoded
/// JSON: each pane's data source and its queries').
fn explore_link_uids(dashboard: &Value) -> Vec<(String, String)> {
    let mut uids = Vec::new();
    for link in array(dashboard.get("links")) {
        let url = link.get("url").and_then(Value::as_str).unwrap_or_default();
        let title = link.get("title").and_then(Value::as_str).unwrap_or("?");
        let Some((_, query)) = url.split_once("/explore?") else {
            continue;
        };
        let panes = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("panes="))
            .and_then(|encoded| percent_decode_str(encoded).decode_utf8().ok())
            .and_then(|json| serde_json::from_str::<Value>(&json).ok());
        let Some(panes) = panes.as_ref().and_then(Value::as_object) else {
            uids.push((
                title.to_owned(),
                "<Explore link without readable panes>".to_owned(),
            ));
            continue;
        };
        for pane in panes.values() {
            if let Some(uid) = pane.get("datasource").and_then(Value::as_str) {
                uids.push((title.to_owned(), uid.to_owned()));
            }
            uids.extend(
                datasource_refs(pane)
                    .into_iter()
                    .map(|uid| (title.to_owned(), uid)),
            );
        }
    }
    uids
}

/// `docker-compose config` (or `docker compose config`) resolves the file with the profile, and
/// lists every profile service: variables, anchors and the Compose schema are Compose's to judge.
fn compose_config_resolves(sh: &Shell, root: &Path, expected: &[String]) -> anyhow::Result<()> {
    let file = root.join(COMPOSE_FILE);
    let _version = sh.push_env("APP_VERSION", "wiring-check");
    let args = ["--profile", PROFILE, "config", "--services"];
    let listed = if util::require_program("docker-compose", "").is_ok() {
        cmd!(sh, "docker-compose -f {file} {args...}").read()
    } else {
        cmd!(sh, "docker compose -f {file} {args...}").read()
    }
    .context(
        "Compose does not resolve deploy/compose/compose.yaml with the observability profile \
         (no Compose at all? install Debian's docker-compose or the docker compose plugin)",
    )?;
    let listed: Vec<&str> = listed.lines().map(str::trim).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|s| !listed.contains(&s.as_str()))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "Compose resolves the profile without {missing:?} (it lists {listed:?})"
    );
    eprintln!(
        "Compose resolves the {PROFILE} profile: {}",
        listed.join(", ")
    );
    Ok(())
}

fn port_number(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    array(value).iter().filter_map(Value::as_str).collect()
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn read_yaml(file: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{} does not parse", file.display()))
}

fn read_json(file: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

/// (file name, parsed) of a directory's files with one of `extensions`, sorted by name.
fn read_dir(
    dir: &Path,
    extensions: &[&str],
    parse: fn(&Path) -> anyhow::Result<Value>,
) -> anyhow::Result<Vec<(String, Value)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| extensions.iter().any(|e| ext == *e))
        {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            files.push((name, parse(&path)?));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    anyhow::ensure!(
        !files.is_empty(),
        "no {extensions:?} files in {}",
        dir.display()
    );
    Ok(files)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The repository's own files.
    fn committed() -> Stack {
        Stack::read(&util::project_root()).expect("reading the profile's files")
    }

    fn problems_of(stack: &Stack) -> Vec<String> {
        stack.problems(&util::project_root().join(COMPOSE_DIR))
    }

    /// The problems of a copy of the committed files changed by `break_it`; it must report
    /// something that contains `expected`.
    fn assert_reported(break_it: impl FnOnce(&mut Stack), expected: &str) {
        let mut stack = committed();
        break_it(&mut stack);
        let problems = problems_of(&stack);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected a problem containing {expected:?}, got {problems:#?}"
        );
    }

    fn at<'a>(value: &'a mut Value, pointer: &str) -> &'a mut Value {
        value
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the committed file"))
    }

    #[test]
    fn the_committed_files_are_wired() {
        let stack = committed();
        assert_eq!(problems_of(&stack), Vec::<String>::new());
        for service in ["otel-collector", "jaeger", "loki", "prometheus", "grafana"] {
            assert!(
                stack.profile_services().contains(&service.to_owned()),
                "{service}"
            );
        }
        assert!(
            stack
                .listeners("otel-collector")
                .contains(&(Protocol::Http, 4318))
        );
        assert!(stack.listeners("jaeger").contains(&(Protocol::Grpc, 4317)));
        assert!(stack.listeners("loki").contains(&(Protocol::Http, 3100)));
    }

    #[test]
    fn a_port_published_beyond_loopback_is_reported() {
        assert_reported(
            |s| *at(&mut s.compose, "/services/jaeger/ports/0") = json!("16686:16686"),
            "jaeger publishes \"16686:16686\" beyond loopback",
        );
    }

    #[test]
    fn an_unpinned_image_is_reported() {
        assert_reported(
            |s| *at(&mut s.compose, "/services/loki/image") = json!("${LOKI_IMAGE:-grafana/loki}"),
            "loki's image \"grafana/loki\" names no version",
        );
    }

    #[test]
    fn an_app_endpoint_on_the_grpc_port_or_another_host_is_reported() {
        let endpoint = format!("/services/app/environment/{APP_ENDPOINT}");
        assert_reported(
            |s| {
                *at(&mut s.compose, &endpoint) =
                    json!("${APP_OTLP_ENDPOINT:-http://otel-collector:4317}")
            },
            "otel-collector:4317 over Http",
        );
        assert_reported(
            |s| *at(&mut s.compose, &endpoint) = json!("http://collector:4318"),
            "names \"collector\", not the Collector's service",
        );
        assert_reported(
            |s| {
                *at(&mut s.compose, &endpoint) =
                    json!("${OTEL_EXPORTER_OTLP_ENDPOINT:-http://otel-collector:4318}")
            },
            "takes an OTEL_* variable of the shell running Compose",
        );
    }

    #[test]
    fn a_receiver_on_localhost_is_unreachable() {
        assert_reported(
            |s| {
                let http = at(&mut s.collector, "/receivers/otlp/protocols/http");
                *http = json!(null);
            },
            "otel-collector:4318 over Http",
        );
    }

    #[test]
    fn an_exporter_to_the_wrong_port_protocol_or_path_is_reported() {
        assert_reported(
            |s| {
                *at(&mut s.collector, "/exporters/otlp_grpc~1jaeger/endpoint") =
                    json!("jaeger:16686")
            },
            "jaeger:16686 over Grpc",
        );
        assert_reported(
            |s| {
                *at(&mut s.collector, "/exporters/otlp_http~1loki/endpoint") =
                    json!("http://loki:3100/loki/api/v1/push")
            },
            "Loki ingests OTLP under /otlp",
        );
        assert_reported(
            |s| {
                *at(&mut s.collector, "/exporters/otlp_http~1loki/endpoint") =
                    json!("http://tempo:3100/otlp")
            },
            "\"tempo\" is no service of the observability profile",
        );
    }

    #[test]
    fn a_pipeline_naming_an_undefined_component_is_reported() {
        assert_reported(
            |s| {
                *at(&mut s.collector, "/service/pipelines/logs/processors") =
                    json!(["memory_limiter", "batch", "resource"])
            },
            "pipeline logs names processors resource, which is not defined",
        );
        assert_reported(
            |s| {
                *at(&mut s.collector, "/service/pipelines/traces/processors") =
                    json!(["batch", "memory_limiter"])
            },
            "pipeline traces does not start with memory_limiter",
        );
        assert_reported(
            |s| {
                *at(&mut s.jaeger, "/service/extensions") =
                    json!(["jaeger_storage", "jaeger_query", "healthcheck"])
            },
            "service.extensions names healthcheck, which is not defined",
        );
    }

    #[test]
    fn a_published_port_nothing_listens_on_is_reported() {
        assert_reported(
            |s| *at(&mut s.loki, "/server/http_listen_port") = json!(3200),
            "loki publishes or exposes 3100",
        );
    }

    #[test]
    fn a_missing_or_unused_config_file_is_reported() {
        assert_reported(
            |s| {
                *at(&mut s.compose, "/services/jaeger/volumes/0") =
                    json!("../monitoring/jaeger/jaeger.yaml:/etc/jaeger/config.yaml:ro")
            },
            "jaeger mounts ../monitoring/jaeger/jaeger.yaml, which does not exist",
        );
        assert_reported(
            |s| {
                *at(&mut s.compose, "/services/loki/command") =
                    json!(["-config.file=/etc/loki/local-config.yaml"])
            },
            "does not name /etc/loki/config.yaml",
        );
    }

    #[test]
    fn a_data_source_uid_nobody_provisions_is_reported() {
        assert_reported(
            |s| {
                let (_, dashboard) = s
                    .dashboards
                    .iter_mut()
                    .find(|(f, _)| f == "challenge-service.json")
                    .unwrap();
                let panels = dashboard["panels"].as_array_mut().unwrap();
                let logs = panels
                    .iter_mut()
                    .find(|p| p["type"] == "logs")
                    .expect("a logs panel");
                logs["datasource"]["uid"] = json!("tempo");
            },
            "names data source \"tempo\"",
        );
        assert_reported(
            |s| {
                let (_, loki) = s
                    .datasources
                    .iter_mut()
                    .find(|(f, _)| f == "loki.yml")
                    .unwrap();
                *at(
                    loki,
                    "/datasources/0/jsonData/derivedFields/0/datasourceUid",
                ) = json!("Jaeger");
            },
            "names data source \"Jaeger\"",
        );
        assert_reported(
            |s| {
                let (_, dashboard) = s
                    .dashboards
                    .iter_mut()
                    .find(|(f, _)| f == "challenge-service.json")
                    .unwrap();
                let links = dashboard["links"].as_array_mut().unwrap();
                let explore = links
                    .iter_mut()
                    .find(|l| l["url"].as_str().unwrap_or_default().contains("/explore?"))
                    .unwrap();
                let url = explore["url"]
                    .as_str()
                    .unwrap()
                    .replace("%22jaeger%22", "%22traces%22");
                explore["url"] = json!(url);
            },
            "names data source \"traces\"",
        );
    }

    #[test]
    fn a_link_without_the_trace_id_is_reported() {
        let in_file = |s: &mut Stack, file: &str| -> Value {
            s.datasources
                .iter()
                .find(|(f, _)| f == file)
                .unwrap()
                .1
                .clone()
        };
        assert_reported(
            |s| {
                let mut jaeger = in_file(s, "jaeger.yml");
                *at(&mut jaeger, "/datasources/0/jsonData/tracesToLogsV2/query") =
                    json!("{service_name=\"challenge\"}");
                s.datasources
                    .iter_mut()
                    .find(|(f, _)| f == "jaeger.yml")
                    .unwrap()
                    .1 = jaeger;
            },
            "no Jaeger data source links a span to a Loki data source",
        );
        assert_reported(
            |s| {
                let mut prometheus = in_file(s, "prometheus.yml");
                *at(
                    &mut prometheus,
                    "/datasources/0/jsonData/exemplarTraceIdDestinations/0/name",
                ) = json!("traceID");
                s.datasources
                    .iter_mut()
                    .find(|(f, _)| f == "prometheus.yml")
                    .unwrap()
                    .1 = prometheus;
            },
            "no Prometheus data source sends exemplars' trace_id",
        );
        assert_reported(
            |s| {
                let command = at(&mut s.compose, "/services/prometheus/command")
                    .as_array_mut()
                    .unwrap();
                command.retain(|arg| !arg.as_str().unwrap_or_default().contains("exemplar"));
            },
            "prometheus runs without --enable-feature=exemplar-storage",
        );
    }

    #[test]
    fn a_store_without_retention_is_reported() {
        assert_reported(
            |s| {
                *at(
                    &mut s.jaeger,
                    "/extensions/jaeger_storage/backends/traces_store/memory/max_traces",
                ) = json!(0)
            },
            "is not memory bounded by max_traces > 0",
        );
        assert_reported(
            |s| *at(&mut s.loki, "/compactor/retention_enabled") = json!(false),
            "compactor.retention_enabled is not true",
        );
        assert_reported(
            |s| *at(&mut s.loki, "/limits_config/retention_period") = json!("0s"),
            "retention_period is not a duration above zero",
        );
        assert_reported(
            |s| {
                let command = at(&mut s.compose, "/services/prometheus/command")
                    .as_array_mut()
                    .unwrap();
                command.retain(|arg| !arg.as_str().unwrap_or_default().contains("retention"));
            },
            "prometheus runs without --storage.tsdb.retention.time",
        );
    }

    #[test]
    fn targets_parse_as_clients_write_them() {
        let target = |host: &str, port, path: &str| Target {
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            Target::parse("jaeger:4317"),
            Some(target("jaeger", 4317, ""))
        );
        assert_eq!(
            Target::parse("http://loki:3100/otlp/"),
            Some(target("loki", 3100, "/otlp"))
        );
        assert_eq!(
            Target::parse("http://grafana"),
            Some(target("grafana", 80, ""))
        );
        assert_eq!(Target::parse("jaeger"), None);
        assert_eq!(Target::parse("unix:///run/sock"), None);
    }

    #[test]
    fn only_listeners_on_every_interface_are_reachable() {
        assert_eq!(reachable_port(Some("0.0.0.0:4317")), Some(4317));
        assert_eq!(reachable_port(Some(":16686")), Some(16686));
        assert_eq!(reachable_port(Some("[::]:4318")), Some(4318));
        assert_eq!(reachable_port(Some("localhost:4317")), None);
        assert_eq!(reachable_port(None), None);
    }

    #[test]
    fn variable_defaults_are_read() {
        assert_eq!(variable_default("${A:-http://x:1}"), Some("http://x:1"));
        assert_eq!(variable_default("${A-b}"), Some("b"));
        assert_eq!(variable_default("plain"), None);
    }
}
