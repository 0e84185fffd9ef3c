//! Exemplars on the request-latency histogram, and the OpenMetrics text that carries them.
//!
//! Why: Grafana's latency panel should lead from a slow bucket to the trace of a request that landed
//! in it. Prometheus keeps exemplars only from the OpenMetrics text format (it asks for it with
//! `Accept: application/openmetrics-text` by default) and only when started with
//! `--enable-feature=exemplar-storage`; the exporter this service uses (metrics-exporter-prometheus)
//! renders the older 0.0.4 text format, which has no exemplars.
//!
//! So this module keeps, for each series of `http_server_request_duration_seconds` and each of its
//! buckets, the latest request whose span was exported (its trace id, duration and time), and turns
//! the exporter's rendering into OpenMetrics 1.0 with those exemplars on the bucket lines:
//! `..._bucket{...,le="0.25"} 7 # {trace_id="<32 hex>"} 0.183 1765000000.123`.
//!
//! Only exported spans give exemplars: a trace id that no trace backend holds would be a dead link.
//! The exemplar's one label, `trace_id` and 32 hex digits, stays far below OpenMetrics' limit of 128
//! characters for an exemplar's label names and values.
//! Memory stays bounded: every label value comes from a closed set (see [`crate::telemetry::observe`]) and
//! each bucket keeps one exemplar.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::HTTP_BUCKETS;

/// The histogram that carries exemplars.
pub const HISTOGRAM: &str = "http_server_request_duration_seconds";

/// The media type Prometheus asks for when it can store exemplars.
pub const OPENMETRICS: &str = "application/openmetrics-text";

/// `Content-Type` of the OpenMetrics rendering.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of one series: one per bound of [`HTTP_BUCKETS`], and `+Inf`.
const BUCKETS: usize = HTTP_BUCKETS.len() + 1;

/// One request that landed in a bucket.
#[derive(Clone, Debug, PartialEq)]
struct Exemplar {
    /// 32 lowercase hex digits, the exported span's trace id.
    trace_id: String,
    /// The duration recorded in the histogram, in seconds.
    value: f64,
    /// When the request ended, in seconds since the Unix epoch.
    timestamp: f64,
}

/// The buckets of the series of one method and status code (the route is the map's key).
struct Series {
    method: &'static str,
    status: u16,
    buckets: [Option<Exemplar>; BUCKETS],
}

/// The latest exemplar of every bucket of every series of [`HISTOGRAM`], by route, then method and
/// status (a route has a handful of those, so a short list is searched without allocating).
#[derive(Default)]
pub struct Exemplars {
    routes: Mutex<HashMap<String, Vec<Series>>>,
}

/// The store fed by [`record`] and read by [`openmetrics`].
static GLOBAL: LazyLock<Exemplars> = LazyLock::new(Exemplars::default);

/// Files a request whose span is exported (`trace_id`, from [`crate::traces::trace_id`]) as the
/// exemplar of its bucket. Labels as [`crate::telemetry::observe`] records them.
pub fn record(trace_id: String, method: &'static str, route: &str, status: u16, elapsed: Duration) {
    GLOBAL.insert(
        method,
        route,
        status,
        elapsed.as_secs_f64(),
        trace_id,
        SystemTime::now(),
    );
}

/// The exporter's 0.0.4 rendering as OpenMetrics, with the exemplars recorded so far.
pub fn openmetrics(exposition: &str) -> String {
    GLOBAL.to_openmetrics(exposition)
}

/// Whether an `Accept` header asks for OpenMetrics: it names [`OPENMETRICS`] with a quality above
/// zero and at least that of `text/plain` (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`).
pub fn wants_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or_default().trim();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse().unwrap_or(0.0));
        if media_type.eq_ignore_ascii_case(OPENMETRICS) {
            openmetrics = openmetrics.max(quality);
        } else if media_type.eq_ignore_ascii_case("text/plain") {
            text = text.max(quality);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// The bucket a duration falls in: the first bound it does not exceed, else `+Inf` (the last).
/// The same function finds a bucket line's bucket from its `le`, so both always agree.
fn bucket(seconds: f64) -> usize {
    HTTP_BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(HTTP_BUCKETS.len())
}

impl Exemplars {
    fn insert(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        value: f64,
        trace_id: String,
        at: SystemTime,
    ) {
        let timestamp = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let exemplar = Exemplar {
            trace_id,
            value,
            timestamp,
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let series = match routes.get_mut(route) {
            Some(series) => series,
            None => routes.entry(route.to_owned()).or_default(),
        };
        let index = match series
            .iter()
            .position(|s| s.method == method && s.status == status)
        {
            Some(index) => index,
            None => {
                series.push(Series {
                    method,
                    status,
                    buckets: Default::default(),
                });
                series.len() - 1
            }
        };
        series[index].buckets[bucket(value)] = Some(exemplar);
    }

    /// The exemplar of the bucket a `..._bucket{...}` label set names, if any.
    fn find(routes: &HashMap<String, Vec<Series>>, labels: &str) -> Option<Exemplar> {
        let labels = parse_labels(labels)?;
        let label = |name: &str| {
            labels
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let status: u16 = label("http_response_status_code")?.parse().ok()?;
        let method = label("http_request_method")?;
        let le: f64 = label("le")?.parse().ok()?;
        routes
            .get(label("http_route")?)?
            .iter()
            .find(|s| s.method == method && s.status == status)?
            .buckets[bucket(le)]
        .clone()
    }

    /// Converts a 0.0.4 rendering to OpenMetrics 1.0: no blank lines, no comments but HELP and
    /// TYPE; a counter family's HELP and TYPE name it without `_total` while its samples keep (or
    /// gain) the suffix; `"` escaped in HELP text; bucket lines of [`HISTOGRAM`] followed by their
    /// exemplar; `# EOF` at the end.
    fn to_openmetrics(&self, exposition: &str) -> String {
        let counters: HashSet<&str> = exposition
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
            .filter(|(_, kind)| kind.trim() == "counter")
            .map(|(name, _)| name)
            .collect();
        let family = |name: &str| -> String {
            match counters.contains(name) {
                true => name.strip_suffix("_total").unwrap_or(name).to_owned(),
                false => name.to_owned(),
            }
        };
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket_prefix = format!("{HISTOGRAM}_bucket{{");
        let mut out = String::with_capacity(exposition.len() + exposition.len() / 4);
        for line in exposition.lines().filter(|line| !line.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                let _ = writeln!(out, "# HELP {} {}", family(name), help.replace('"', "\\\""));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                let _ = writeln!(out, "# TYPE {} {kind}", family(name));
            } else if !line.starts_with('#') {
                let name_end = line.find(['{', ' ']).unwrap_or(line.len());
                let (name, rest) = line.split_at(name_end);
                let suffix = match counters.contains(name) && !name.ends_with("_total") {
                    true => "_total",
                    false => "",
                };
                let _ = write!(out, "{name}{suffix}{rest}");
                if line.starts_with(&bucket_prefix) {
                    let labels = line[bucket_prefix.len()..].rsplit_once('}').map(|(l, _)| l);
                    if let Some(e) = labels.and_then(|l| Self::find(&routes, l)) {
                        let _ = write!(
                            out,
                            " # {{trace_id=\"{}\"}} {} {:.3}",
                            e.trace_id, e.value, e.timestamp
                        );
                    }
                }
                out.push('\n');
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// The `name="value"` pairs of a rendered label set (without its braces), values unescaped;
/// `None` when it is not one.
fn parse_labels(text: &str) -> Option<Vec<(&str, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').trim(), value));
        rest = &after[end + 1..];
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `GET /metrics` of this service (the exporter's 0.0.4 text).
    const RENDERED: &str = r#"# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0

# HELP http_server_active_requests Number of active HTTP server requests.
# TYPE http_server_active_requests gauge
http_server_active_requests{http_request_method="GET"} 1

# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.005"} 0
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.01"} 1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.25"} 1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.5"} 2
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="10"} 2
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="+Inf"} 3
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200"} 12.309
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200"} 3
http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/tasks",http_response_status_code="201",le="0.005"} 1
http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/tasks",http_response_status_code="201",le="+Inf"} 1
http_server_request_duration_seconds_sum{http_request_method="POST",http_route="/api/tasks",http_response_status_code="201"} 0.003516196
http_server_request_duration_seconds_count{http_request_method="POST",http_route="/api/tasks",http_response_status_code="201"} 1

"#;

    const SLOW: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const FAST: &str = "0af7651916cd43dd8448eb211c80319c";
    const LATE: &str = "00000000000000000000000000000abc";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(seconds * 1000 + 250)
    }

    fn sample_store() -> Exemplars {
        let store = Exemplars::default();
        let route = "/api/tasks/{id}";
        store.insert("GET", route, 200, 0.007, FAST.into(), at(1_765_000_000));
        store.insert("GET", route, 200, 0.3, SLOW.into(), at(1_765_000_001));
        store.insert("GET", route, 200, 12.3, LATE.into(), at(1_765_000_002));
        store
    }

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
    }

    #[test]
    fn bucket_lines_carry_the_latest_exemplar_of_their_bucket() {
        let text = sample_store().to_openmetrics(RENDERED);
        let get = r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="#;
        assert_eq!(
            line(&text, &format!("{get}\"0.01\"")),
            format!("{get}\"0.01\"}} 1 # {{trace_id=\"{FAST}\"}} 0.007 1765000000.250")
        );
        assert_eq!(
            line(&text, &format!("{get}\"0.5\"")),
            format!("{get}\"0.5\"}} 2 # {{trace_id=\"{SLOW}\"}} 0.3 1765000001.250")
        );
        assert_eq!(
            line(&text, &format!("{get}\"+Inf\"")),
            format!("{get}\"+Inf\"}} 3 # {{trace_id=\"{LATE}\"}} 12.3 1765000002.250")
        );
        // Buckets no request fell in, and series without exported requests, stay as they were.
        for bare in [
            format!("{get}\"0.005\"}} 0"),
            format!("{get}\"0.25\"}} 1"),
            format!("{get}\"10\"}} 2"),
            r#"http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/tasks",http_response_status_code="201",le="+Inf"} 1"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == bare), "{bare} missing in:\n{text}");
        }
        assert!(!line(&text, "http_server_request_duration_seconds_sum").contains('#'));
    }

    #[test]
    fn a_newer_request_replaces_the_exemplar_of_its_bucket_only() {
        let store = sample_store();
        let newer = "11111111111111111111111111111111";
        store.insert(
            "GET",
            "/api/tasks/{id}",
            200,
            0.4,
            newer.into(),
            at(1_765_000_009),
        );
        let text = store.to_openmetrics(RENDERED);
        assert!(line(&text, r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.5""#)
            .ends_with(&format!("# {{trace_id=\"{newer}\"}} 0.4 1765000009.250")));
        assert!(line(&text, r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/tasks/{id}",http_response_status_code="200",le="0.01""#)
            .contains(FAST));
    }

    #[test]
    fn the_rendering_becomes_openmetrics() {
        let text = Exemplars::default().to_openmetrics(RENDERED);
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert!(
            !text.lines().any(|l| l.trim().is_empty()),
            "blank line in:\n{text}"
        );
        // Counters: metadata without `_total`, samples with it.
        assert!(text.contains(
            "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 0\n"
        ));
        // Everything else line for line, blank lines dropped.
        let kept: Vec<&str> = RENDERED
            .lines()
            .filter(|l| !l.is_empty() && !l.contains("process_cpu"))
            .collect();
        let converted: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("process_cpu") && *l != "# EOF")
            .collect();
        assert_eq!(converted, kept);
    }

    #[test]
    fn counters_gain_the_suffix_help_escapes_quotes_and_other_comments_go() {
        let rendered = "# HELP jobs_done Jobs \"done\", \\ included.\n# TYPE jobs_done counter\n\
                        # a comment OpenMetrics has no place for\njobs_done{kind=\"a\"} 3\n";
        assert_eq!(
            Exemplars::default().to_openmetrics(rendered),
            "# HELP jobs_done Jobs \\\"done\\\", \\ included.\n# TYPE jobs_done counter\n\
             jobs_done_total{kind=\"a\"} 3\n# EOF\n"
        );
    }

    #[test]
    fn label_sets_are_read_with_their_escapes() {
        assert_eq!(
            parse_labels(r#"a="x",route="/t/{id}",q="say \"hi\"\\\n""#),
            Some(vec![
                ("a", "x".to_owned()),
                ("route", "/t/{id}".to_owned()),
                ("q", "say \"hi\"\\\n".to_owned()),
            ])
        );
        assert_eq!(parse_labels(r#"a="unterminated"#), None);
        assert_eq!(parse_labels(""), Some(vec![]));
    }

    #[test]
    fn every_bucket_bound_is_its_own_bucket_and_inf_the_last() {
        for (i, bound) in HTTP_BUCKETS.iter().enumerate() {
            assert_eq!(bucket(*bound), i);
            assert_eq!(bucket(bound.to_string().parse().unwrap()), i);
        }
        assert_eq!(bucket("+Inf".parse().unwrap()), HTTP_BUCKETS.len());
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(10.5), HTTP_BUCKETS.len());
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(wants_openmetrics(
            "Application/OpenMetrics-Text; version=1.0.0"
        ));
        for plain in [
            "",
            "*/*",
            "text/plain",
            "application/openmetrics-text;q=0",
            "text/plain, application/openmetrics-text;q=0.9",
            "application/openmetrics-text;q=nonsense",
        ] {
            assert!(!wants_openmetrics(plain), "{plain:?}");
        }
    }
}
