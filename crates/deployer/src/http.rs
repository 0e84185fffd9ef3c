//! The smoke test that ends a deploy: the service answers through its published port.

use std::time::Duration;

use serde_json::Value;

/// What the smoke test learned from the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smoke {
    /// `version` from GET /version.
    pub version: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<(u16, Value), String> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

/// GET /readyz must be 200, GET /api/tasks must list tasks, GET /version names the version.
pub fn smoke_test(base_url: &str) -> Result<Smoke, String> {
    let agent = agent();
    let (status, body) = get_json(&agent, &format!("{base_url}/readyz"))?;
    if status != 200 {
        return Err(format!("GET /readyz answered {status}: {body}"));
    }
    let (status, body) = get_json(&agent, &format!("{base_url}/api/tasks?limit=1"))?;
    if status != 200 || !body.get("items").is_some_and(Value::is_array) {
        return Err(format!("GET /api/tasks answered {status}: {body}"));
    }
    let (status, body) = get_json(&agent, &format!("{base_url}/version"))?;
    match body.get("version").and_then(Value::as_str) {
        Some(version) if status == 200 => Ok(Smoke {
            version: version.to_string(),
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
    fn a_closed_port_fails_with_the_url() {
        // Port 1 on loopback: nothing listens there without root setting it up.
        let error = smoke_test("http://127.0.0.1:1").unwrap_err();
        assert!(error.contains("/readyz"), "{error}");
    }
}
