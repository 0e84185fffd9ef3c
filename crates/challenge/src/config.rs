//! Configuration: environment variables only, read once at start (12-factor).
//!
//! Every error names the variable and the values it accepts, on one line, and never echoes a password.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Why the configuration could not be read. The message is one line meant for an operator.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}={shown}: {expected}")]
pub struct ConfigError {
    variable: &'static str,
    /// The offending value, or `<file>` contents never; passwords are never stored here.
    shown: String,
    expected: String,
}

impl ConfigError {
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    fn new(variable: &'static str, value: &str, expected: impl Into<String>) -> Self {
        Self {
            variable,
            shown: format!("{value:?}"),
            expected: expected.into(),
        }
    }
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the process needs to talk to MySQL.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: SecretString,
    pub max_connections: u32,
    /// Bound on acquiring a connection *and* running the statements of one API call.
    pub timeout: Duration,
}

/// Limits on client connections, so slow or idle clients cannot hold the server's resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time a client has to send a complete request head once its first byte arrived.
    pub header_timeout: Duration,
    /// A keep-alive connection that starts no new request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            // Longer than the 60 s idle timeout of common load balancers and proxies, so that the
            // side that reuses a pooled connection is never the one surprised by its closing.
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
        }
    }
}

/// Where an OTLP/HTTP receiver listens: what the export gate resolves (see [`crate::otlp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpEndpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The OTLP exports: each signal's receiver, or `None` when that signal is not exported. The
/// exporters read their URLs, headers and timeouts from the standard variables themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpSettings {
    pub traces: Option<OtlpEndpoint>,
    pub logs: Option<OtlpEndpoint>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log_format: LogFormat,
    /// Traces and logs exported over OTLP (an endpoint is set and the SDK is not disabled).
    pub otlp: OtlpSettings,
    pub seed_count: u32,
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
        let password = match var("DB_PASSWORD_FILE") {
            Some(path) => read_password_file(PathBuf::from(path))?,
            None => SecretString::from(lookup("DB_PASSWORD").unwrap_or_default()),
        };
        let database = DatabaseSettings {
            host: var("DB_HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: parse_port("DB_PORT", var("DB_PORT"), 3306)?,
            database: parse_schema_name(var("DB_DATABASE"))?,
            username: var("DB_USERNAME").unwrap_or_else(|| "root".into()),
            password,
            max_connections: parse_range(
                "DB_MAX_CONNECTIONS",
                var("DB_MAX_CONNECTIONS"),
                default_pool_size(),
                1..=1000,
            )?,
            timeout: parse_duration("DB_TIMEOUT", var("DB_TIMEOUT"), Duration::from_secs(2))?,
        };
        let defaults = HttpSettings::default();
        let http = HttpSettings {
            header_timeout: parse_positive_duration(
                "HTTP_HEADER_TIMEOUT",
                var("HTTP_HEADER_TIMEOUT"),
                defaults.header_timeout,
            )?,
            idle_timeout: parse_positive_duration(
                "HTTP_IDLE_TIMEOUT",
                var("HTTP_IDLE_TIMEOUT"),
                defaults.idle_timeout,
            )?,
            max_connections: parse_range(
                "HTTP_MAX_CONNECTIONS",
                var("HTTP_MAX_CONNECTIONS"),
                defaults.max_connections,
                1..=65_535,
            )?,
        };
        Ok(Self {
            port: parse_port("PORT", var("PORT"), 8000)?,
            database,
            http,
            log_format: parse_log_format(var("LOG_FORMAT"))?,
            otlp: OtlpSettings {
                traces: parse_otlp_export(&var, &TRACES)?,
                logs: parse_otlp_export(&var, &LOGS)?,
            },
            seed_count: parse_range("SEED_COUNT", var("SEED_COUNT"), 100, 0..=1_000_000)?,
            shutdown_delay: parse_duration(
                "SHUTDOWN_DELAY",
                var("SHUTDOWN_DELAY"),
                Duration::ZERO,
            )?,
            shutdown_timeout: parse_duration(
                "SHUTDOWN_TIMEOUT",
                var("SHUTDOWN_TIMEOUT"),
                Duration::from_secs(20),
            )?,
        })
    }
}

/// Four connections per CPU: enough to keep MySQL busy while requests wait on the network.
fn default_pool_size() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    u32::try_from(cpus * 4).unwrap_or(u32::MAX).clamp(4, 64)
}

fn read_password_file(path: PathBuf) -> Result<SecretString, ConfigError> {
    match std::fs::read_to_string(&path) {
        // Secret files usually end with a newline that is not part of the password.
        Ok(content) => Ok(SecretString::from(
            content.trim_end_matches(['\n', '\r']).to_owned(),
        )),
        Err(err) => Err(ConfigError::new(
            "DB_PASSWORD_FILE",
            &path.display().to_string(),
            format!("expected a readable file holding the password ({err})"),
        )),
    }
}

fn parse_port(name: &'static str, value: Option<String>, default: u16) -> Result<u16, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u16>()
            .map_err(|_| ConfigError::new(name, &v, "expected a TCP port number from 0 to 65535")),
    }
}

fn parse_range(
    name: &'static str,
    value: Option<String>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.trim().parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            name,
            &v,
            format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn parse_duration(
    name: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let trimmed = v.trim();
    // A bare number means seconds, as Kubernetes and Compose users write it most often.
    let parsed = match trimmed.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(trimmed),
    };
    parsed
        .map_err(|_| ConfigError::new(name, &v, "expected a duration such as 20, 20s, 500ms or 1m"))
}

/// A duration that must not be zero (a zero timeout would close every connection at once).
fn parse_positive_duration(
    name: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let shown = value.clone();
    match parse_duration(name, value, default)? {
        Duration::ZERO => Err(ConfigError::new(
            name,
            shown.as_deref().unwrap_or_default(),
            "expected a duration above zero such as 10s or 500ms",
        )),
        d => Ok(d),
    }
}

/// The variables that configure the OTLP export of one signal, the signal's own first.
struct OtlpVariables {
    endpoint: [&'static str; 2],
    protocol: [&'static str; 2],
}

const TRACES: OtlpVariables = OtlpVariables {
    endpoint: [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ],
    protocol: [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ],
};

const LOGS: OtlpVariables = OtlpVariables {
    endpoint: [
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ],
    protocol: [
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ],
};

/// Where to export one signal, from the standard OpenTelemetry variables (`None`: not exported).
/// The exporter reads the rest of them itself; what it would only complain about later is checked
/// here, at start.
fn parse_otlp_export(
    var: &impl Fn(&'static str) -> Option<String>,
    signal: &OtlpVariables,
) -> Result<Option<OtlpEndpoint>, ConfigError> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint = signal
        .endpoint
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value)));
    let Some((name, url)) = endpoint else {
        return Ok(None);
    };
    let endpoint = parse_otlp_endpoint(name, &url)?;
    for name in signal.protocol {
        if let Some(protocol) = var(name).filter(|p| p.trim() != "http/protobuf") {
            return Err(ConfigError::new(
                name,
                &protocol,
                "expected http/protobuf (the OTLP protocol this build exports with)",
            ));
        }
    }
    Ok(Some(endpoint))
}

/// The host and port of an `http://` OTLP endpoint.
fn parse_otlp_endpoint(name: &'static str, url: &str) -> Result<OtlpEndpoint, ConfigError> {
    let invalid = || {
        ConfigError::new(
            name,
            url,
            "expected the http:// URL of an OTLP/HTTP receiver such as http://otel-collector:4318 \
             (https is not supported: export to a nearby collector, which forwards over TLS)",
        )
    };
    let trimmed = url.trim();
    if !trimmed.starts_with("http://") {
        return Err(invalid());
    }
    let parsed = url::Url::parse(trimmed).map_err(|_| invalid())?;
    match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(host), Some(port)) if !host.is_empty() => Ok(OtlpEndpoint {
            host: host.to_owned(),
            port,
        }),
        _ => Err(invalid()),
    }
}

fn parse_log_format(value: Option<String>) -> Result<LogFormat, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("json") => Ok(LogFormat::Json),
        Some("text") => Ok(LogFormat::Text),
        Some(other) => Err(ConfigError::new(
            "LOG_FORMAT",
            other,
            "expected `json` or `text`",
        )),
    }
}

/// MySQL schema names: we accept the portable subset, which is also safe to quote.
fn parse_schema_name(value: Option<String>) -> Result<String, ConfigError> {
    let name = value.unwrap_or_else(|| "challenge".into());
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::new(
            "DB_DATABASE",
            &name,
            "expected 1 to 64 characters among letters, digits, `_` and `$`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.port, 8000);
        assert_eq!(c.database.host, "127.0.0.1");
        assert_eq!(c.database.port, 3306);
        assert_eq!(c.database.database, "challenge");
        assert_eq!(c.database.username, "root");
        assert_eq!(c.database.password.expose_secret(), "");
        assert_eq!(c.database.timeout, Duration::from_secs(2));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.seed_count, 100);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.http.max_connections, 1024);
    }

    fn endpoint(host: &str, port: u16) -> Option<OtlpEndpoint> {
        Some(OtlpEndpoint {
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn traces_are_exported_only_to_an_http_otlp_endpoint() {
        assert_eq!(config(&[]).unwrap().otlp, OtlpSettings::default());
        let on = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert_eq!(on.otlp.traces, endpoint("collector", 4318));
        let disabled = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert_eq!(disabled.otlp, OtlpSettings::default());
        let err = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://x:4318")]).unwrap_err();
        assert_eq!(err.variable(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let err = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert_eq!(err.variable(), "OTEL_EXPORTER_OTLP_PROTOCOL");
    }

    #[test]
    fn logs_follow_the_shared_endpoint_or_their_own() {
        let shared = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318")])
            .unwrap()
            .otlp;
        assert_eq!(shared.logs, endpoint("otel-collector", 4318));
        assert_eq!(shared.traces, shared.logs);
        let own = config(&[(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://10.0.0.7/v1/logs",
        )])
        .unwrap()
        .otlp;
        assert_eq!(own.logs, endpoint("10.0.0.7", 80), "the scheme's port");
        assert_eq!(own.traces, None, "traces have no endpoint");
    }

    #[test]
    fn bad_logs_variables_are_named() {
        for url in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http://:4318",
        ] {
            let err = config(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", url)]).unwrap_err();
            assert_eq!(err.variable(), "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "{url}");
            assert!(
                err.to_string().contains("http://otel-collector:4318"),
                "{err}"
            );
        }
        let err = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert_eq!(err.variable(), "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL");
        assert!(err.to_string().contains("http/protobuf"), "{err}");
    }

    #[test]
    fn http_limits_are_read_and_zero_timeouts_rejected() {
        let c = config(&[
            ("HTTP_HEADER_TIMEOUT", "2s"),
            ("HTTP_IDLE_TIMEOUT", "500ms"),
            ("HTTP_MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(c.http.header_timeout, Duration::from_secs(2));
        assert_eq!(c.http.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.http.max_connections, 8);
        for (name, value) in [
            ("HTTP_HEADER_TIMEOUT", "0"),
            ("HTTP_IDLE_TIMEOUT", "0s"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable(), name);
        }
    }

    #[test]
    fn bad_port_names_the_variable_and_the_accepted_values() {
        let err = config(&[("DB_PORT", "abc")]).unwrap_err();
        assert_eq!(err.variable(), "DB_PORT");
        let msg = err.to_string();
        assert!(
            msg.contains("DB_PORT=\"abc\"") && msg.contains("0 to 65535"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn password_file_wins_and_its_trailing_newline_is_dropped() {
        let dir = std::env::temp_dir().join(format!("challenge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = config(&[
            ("DB_PASSWORD", "from-env"),
            ("DB_PASSWORD_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(c.database.password.expose_secret(), "from-file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_password_file_is_an_error_without_the_password() {
        let err = config(&[
            ("DB_PASSWORD", "hunter2"),
            ("DB_PASSWORD_FILE", "/nonexistent/pw"),
        ])
        .unwrap_err();
        assert_eq!(err.variable(), "DB_PASSWORD_FILE");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let c = config(&[("DB_PASSWORD", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        let c = config(&[("SHUTDOWN_TIMEOUT", "5"), ("SHUTDOWN_DELAY", "250ms")]).unwrap();
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.shutdown_delay, Duration::from_millis(250));
        assert_eq!(
            config(&[("DB_TIMEOUT", "soon")]).unwrap_err().variable(),
            "DB_TIMEOUT"
        );
    }

    #[test]
    fn out_of_range_numbers_and_unknown_formats_are_rejected() {
        assert_eq!(
            config(&[("DB_MAX_CONNECTIONS", "0")])
                .unwrap_err()
                .variable(),
            "DB_MAX_CONNECTIONS"
        );
        assert_eq!(
            config(&[("SEED_COUNT", "-1")]).unwrap_err().variable(),
            "SEED_COUNT"
        );
        assert_eq!(
            config(&[("LOG_FORMAT", "xml")]).unwrap_err().variable(),
            "LOG_FORMAT"
        );
        assert_eq!(
            config(&[("DB_DATABASE", "a;drop")]).unwrap_err().variable(),
            "DB_DATABASE"
        );
        assert_eq!(config(&[("PORT", "70000")]).unwrap_err().variable(), "PORT");
    }
}
