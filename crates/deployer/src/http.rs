//! The smoke test that ends a deploy: the service answers through its published port.

use std::time::Duration;

use serde_json::Value;

/// What the smoke test learned from the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smoke {
    /// `version` from GET /version.
    pub version: String,
    /// The newest migration the release's image embeds (`schema_version`), when it says.
    pub schema_version: Option<i64>,
    /// The newest migration applied in its database (`database_schema_version`), when it says.
    pub database_schema_version: Option<i64>,
}

fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(10))
}

fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A GET's status and body as text.
fn get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, body))
}

/// The body of a GET that must answer 200 (a statistics page).
pub fn get_text(url: &str) -> Result<String, String> {
    match get(&agent(), url)? {
        (200, body) => Ok(body),
        (status, _) => Err(format!("GET {url} answered {status}")),
    }
}

/// What `GET /version` at `base_url` says, within `timeout` (one container's own address: a
/// healthy container answers at once, so a short timeout keeps an unreachable address cheap).
pub fn version_at(base_url: &str, timeout: Duration) -> Result<Smoke, String> {
    let (status, body) = get_json(&agent_with_timeout(timeout), &format!("{base_url}/version"))?;
    parse_version(status, &body)
}

/// A GET's status and body as JSON (or as a JSON string when it is not JSON).
fn get_json(agent: &ureq::Agent, url: &str) -> Result<(u16, Value), String> {
    let (status, body) = get(agent, url)?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

/// GET /readyz must be 200, GET /api/tasks must list tasks, GET /version names the version;
/// over plain HTTP at `base_url` (a published port).
pub fn smoke_test(base_url: &str) -> Result<Smoke, String> {
    let agent = agent();
    smoke_test_with(|path| get_json(&agent, &format!("{base_url}{path}")))
}

/// The smoke test over any transport: `get` answers a path (`/readyz`) with a status and a body
/// (plain HTTP on Compose, the API server's service proxy on Kubernetes).
pub fn smoke_test_with(
    mut get: impl FnMut(&str) -> Result<(u16, Value), String>,
) -> Result<Smoke, String> {
    let (status, body) = get("/readyz")?;
    if status != 200 {
        return Err(format!("GET /readyz answered {status}: {body}"));
    }
    let (status, body) = get("/api/tasks?limit=1")?;
    if status != 200 || !body.get("items").is_some_and(Value::is_array) {
        return Err(format!("GET /api/tasks answered {status}: {body}"));
    }
    let (status, body) = get("/version")?;
    parse_version(status, &body)
}

/// What `GET /version` says, or why it is not an answer.
pub fn parse_version(status: u16, body: &Value) -> Result<Smoke, String> {
    match body.get("version").and_then(Value::as_str) {
        Some(version) if status == 200 => Ok(Smoke {
            version: version.to_string(),
            schema_version: body.get("schema_version").and_then(Value::as_i64),
            database_schema_version: body.get("database_schema_version").and_then(Value::as_i64),
        }),
        _ => Err(format!("GET /version answered {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one canned HTTP response per connection on a loopback port.
    fn serve(responses: usize, status_line: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(responses) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = "{}";
                let _ = write!(
                    stream,
                    "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn a_release_that_is_not_ready_fails_the_smoke_test_with_the_status() {
        let error = smoke_test(&serve(1, "HTTP/1.1 503 Service Unavailable")).unwrap_err();
        assert!(error.contains("GET /readyz answered 503"), "{error}");
    }

    #[test]
    fn a_ready_release_without_a_task_list_fails_the_smoke_test() {
        // /readyz 200, then `{}` where the task page (with `items`) should be.
        let error = smoke_test(&serve(2, "HTTP/1.1 200 OK")).unwrap_err();
        assert!(error.contains("GET /api/tasks answered 200"), "{error}");
    }

    #[test]
    fn version_answers_carry_the_schema_versions_when_the_service_tells_them() {
        let body = serde_json::json!({"version": "1.2.0", "git_sha": "abc", "build_date": "x",
            "schema_version": 20261126000002_i64, "database_schema_version": null});
        let smoke = parse_version(200, &body).unwrap();
        assert_eq!(smoke.version, "1.2.0");
        assert_eq!(smoke.schema_version, Some(20261126000002));
        assert_eq!(smoke.database_schema_version, None);
        let older = parse_version(200, &serde_json::json!({"version": "0.9.0"})).unwrap();
        assert_eq!(
            older.schema_version, None,
            "an older service says nothing of its schema"
        );
        assert!(parse_version(503, &body).is_err());
    }

    #[test]
    fn a_closed_port_fails_with_the_url() {
        // Port 1 on loopback: nothing listens there without root setting it up.
        let error = smoke_test("http://127.0.0.1:1").unwrap_err();
        assert!(error.contains("/readyz"), "{error}");
    }
}
