//! Where events go, read from the standard OTLP exporter variables and checked before anything is
//! sent: a typo in a variable is an error that names it, not events silently lost.
//!
//! Read here: `OTEL_SDK_DISABLED` (`true` turns events off), the endpoint
//! (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/logs`),
//! the protocol (only `http/protobuf`), the timeout (`OTEL_EXPORTER_OTLP_LOGS_TIMEOUT`, else
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; [`DEFAULT_TIMEOUT`] when unset) and the headers'
//! syntax (`key=value,...`; the exporter itself sends them).

use std::time::Duration;

/// An export waits this long for the collector unless a timeout variable says otherwise: a CLI's
/// events must not hold up a deploy the way the SDK's 10 s default could.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

const DISABLED: &str = "OTEL_SDK_DISABLED";
const LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const LOGS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const LOGS_HEADERS: &str = "OTEL_EXPORTER_OTLP_LOGS_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// A variable whose value cannot be used; the message names it and says what to set instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}={value:?} {problem}; {fix}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    problem: String,
    fix: &'static str,
}

/// The export the variables ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The full URL log records are POSTed to (`.../v1/logs`).
    pub endpoint: String,
    pub timeout: Duration,
}

impl Config {
    /// The export configured by the process's environment; `None` when no endpoint is set or
    /// `OTEL_SDK_DISABLED=true`.
    pub fn from_env() -> Result<Option<Config>, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same, with the variables read through `var` (tests pass their own).
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>, ConfigError> {
        // Unset and empty mean the same, as the OpenTelemetry specification says.
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if var(DISABLED).is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = match (var(LOGS_ENDPOINT), var(ENDPOINT)) {
            (Some(url), _) => checked_url(LOGS_ENDPOINT, &url)?,
            (None, Some(base)) => {
                let base = checked_url(ENDPOINT, &base)?;
                format!("{}/v1/logs", base.trim_end_matches('/'))
            }
            (None, None) => return Ok(None),
        };
        for name in [LOGS_PROTOCOL, PROTOCOL] {
            if let Some(protocol) = var(name) {
                check_protocol(name, &protocol)?;
                break;
            }
        }
        let timeout = match first_set(&var, LOGS_TIMEOUT, TIMEOUT) {
            Some((name, millis)) => parse_timeout(name, &millis)?,
            None => DEFAULT_TIMEOUT,
        };
        if let Some((name, headers)) = first_set(&var, LOGS_HEADERS, HEADERS) {
            check_headers(name, &headers)?;
        }
        Ok(Some(Config { endpoint, timeout }))
    }
}

/// The signal-specific variable when set, else the general one, with the name of the one used.
fn first_set(
    var: &impl Fn(&str) -> Option<String>,
    specific: &'static str,
    general: &'static str,
) -> Option<(&'static str, String)> {
    var(specific)
        .map(|value| (specific, value))
        .or_else(|| var(general).map(|value| (general, value)))
}

fn error(variable: &'static str, value: &str, problem: String, fix: &'static str) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_owned(),
        problem,
        fix,
    }
}

const URL_FIX: &str = "set it to the collector's OTLP/HTTP address (e.g. http://127.0.0.1:4318), or unset it to send no events";

/// `value` trimmed, when it is an absolute http:// or https:// URL with a host.
fn checked_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    let url = url::Url::parse(trimmed)
        .map_err(|e| error(variable, value, format!("is not a URL ({e})"), URL_FIX))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(error(
            variable,
            value,
            format!("has the scheme {:?}, not http or https", url.scheme()),
            URL_FIX,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(error(variable, value, "names no host".into(), URL_FIX));
    }
    Ok(trimmed.to_owned())
}

fn check_protocol(variable: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.trim() == "http/protobuf" {
        return Ok(());
    }
    Err(error(
        variable,
        value,
        "is not supported: events are sent as OTLP/HTTP protobuf only".into(),
        "set it to http/protobuf or unset it (the collector's OTLP/HTTP port is 4318)",
    ))
}

fn parse_timeout(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            error(
                variable,
                value,
                "is not a whole number of milliseconds".into(),
                "set it to e.g. 2000, or unset it for the 2 s default",
            )
        })
}

/// Each comma-separated entry is `key=value` with a key (the exporter would skip others silently).
fn check_headers(variable: &'static str, value: &str) -> Result<(), ConfigError> {
    let bad = value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .find(|entry| {
            entry
                .split_once('=')
                .is_none_or(|(key, _)| key.trim().is_empty())
        });
    match bad {
        Some(entry) => Err(error(
            variable,
            value,
            format!("has the entry {entry:?}, which is not key=value"),
            "write it as key1=value1,key2=value2 (values URL-encoded)",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<Config>, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    fn failing(vars: &[(&str, &str)]) -> ConfigError {
        config(vars).expect_err("the variables are refused")
    }

    #[test]
    fn no_endpoint_or_disabled_sdk_means_no_events() {
        assert_eq!(config(&[]), Ok(None));
        assert_eq!(config(&[(ENDPOINT, " ")]), Ok(None));
        assert_eq!(
            config(&[(ENDPOINT, "http://collector:4318"), (DISABLED, "TRUE")]),
            Ok(None)
        );
    }

    #[test]
    fn the_general_endpoint_gets_the_logs_path_the_specific_one_is_used_as_is() {
        let general = config(&[(ENDPOINT, "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(general.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(general.timeout, DEFAULT_TIMEOUT);
        let specific = config(&[
            (LOGS_ENDPOINT, "https://otlp.example/ingest"),
            (ENDPOINT, "http://ignored:4318"),
            (DISABLED, "false"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(specific.endpoint, "https://otlp.example/ingest");
    }

    #[test]
    fn the_specific_timeout_wins_over_the_general_one() {
        let vars = [
            (ENDPOINT, "http://collector:4318"),
            (TIMEOUT, "9000"),
            (LOGS_TIMEOUT, "500"),
        ];
        assert_eq!(
            config(&vars).unwrap().unwrap().timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_bad_variable_is_named_with_what_to_set() {
        let scheme = failing(&[(ENDPOINT, "ftp://collector:4318")]);
        assert_eq!(scheme.variable, ENDPOINT);
        assert!(scheme.to_string().contains("not http or https"), "{scheme}");
        assert!(
            scheme.to_string().contains("http://127.0.0.1:4318"),
            "{scheme}"
        );
        assert_eq!(
            failing(&[(LOGS_ENDPOINT, "collector:4318")]).variable,
            LOGS_ENDPOINT
        );
        assert_eq!(failing(&[(ENDPOINT, "localhost")]).variable, ENDPOINT);
        let base = [(ENDPOINT, "http://collector:4318")];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = base.to_vec();
            vars.push(extra);
            failing(&vars)
        };
        assert_eq!(with((PROTOCOL, "grpc")).variable, PROTOCOL);
        assert_eq!(with((LOGS_PROTOCOL, "http/json")).variable, LOGS_PROTOCOL);
        let timeout = with((TIMEOUT, "2s"));
        assert_eq!(timeout.variable, TIMEOUT);
        assert!(timeout.to_string().contains("milliseconds"), "{timeout}");
        let headers = with((HEADERS, "authorization=Basic abc,broken"));
        assert_eq!(headers.variable, HEADERS);
        assert!(headers.to_string().contains("\"broken\""), "{headers}");
        assert_eq!(with((LOGS_HEADERS, "=value")).variable, LOGS_HEADERS);
    }

    #[test]
    fn good_protocol_and_headers_pass() {
        let vars = [
            (ENDPOINT, "http://collector:4318"),
            (PROTOCOL, "http/protobuf"),
            (HEADERS, "x-scope-orgid=ci, authorization=Basic%20abc="),
        ];
        assert!(config(&vars).unwrap().is_some());
    }
}
