//! The Compose stack end to end, through `deploy/compose/compose.yaml` as users run it: every request
//! goes through the reverse proxy, which owns the published port.

use std::time::{Duration, Instant};

use e2e::{
    ComposeProject, docker, health, http, inspect, logs, run, wait_for_200, wait_for_health,
};
use serde_json::{Value, json};

#[test]
fn compose_stack_serves_crud_survives_a_db_restart_and_leaves_nothing_after_down() {
    let project = ComposeProject::new("app-secret-0001", "root-secret-0001");
    project.run(&["up", "-d"]);
    let app = project.container("app");
    let db = project.container("db");
    let proxy = project.container("proxy");
    wait_for_health(&app, "healthy", Duration::from_secs(180));
    wait_for_health(&proxy, "healthy", Duration::from_secs(60));

    // Only the proxy publishes a port; it runs hardened like the rest of the stack.
    assert_eq!(docker(&["port", &app]), "", "the app publishes a port");
    assert_eq!(
        docker(&["port", &proxy, "8080/tcp"]),
        format!("127.0.0.1:{}", project.port)
    );
    // Its statistics (what the deployer reads during a switch) only on loopback.
    let stats = docker(&["port", &proxy, "8404/tcp"]);
    assert!(
        stats.starts_with("127.0.0.1:"),
        "statistics published as {stats:?}"
    );
    assert_eq!(inspect(&proxy, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(inspect(&proxy, "{{.Config.User}}"), "99:99");
    assert_eq!(inspect(&proxy, "{{.HostConfig.CapDrop}}"), "[ALL]");

    let agent = http();
    // A request id for every request: the caller's, or one the proxy makes up; the service echoes it.
    let response = agent
        .get(project.url("/healthz"))
        .call()
        .expect("GET /healthz");
    assert_eq!(response.status(), 200);
    let generated = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(generated.len(), 36, "not a UUID: {generated:?}");
    let response = agent
        .get(project.url("/healthz"))
        .header("X-Request-ID", "e2e-request-0001")
        .call()
        .expect("GET /healthz");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().ok()),
        Some(Some("e2e-request-0001"))
    );
    let created: Value = {
        let mut response = agent
            .post(project.url("/api/tasks"))
            .send_json(json!({"title": "write the e2e test", "description": "compose"}))
            .expect("POST /api/tasks");
        assert_eq!(response.status(), 201);
        response.body_mut().read_json().expect("task JSON")
    };
    let id = created["id"].as_u64().expect("numeric id");
    let task_url = project.url(&format!("/api/tasks/{id}"));
    let mut response = agent
        .get(&task_url)
        .header("X-Request-ID", "e2e-went-well-0001")
        .call()
        .expect("GET task");
    assert_eq!(response.status(), 200);
    let read: Value = response.body_mut().read_json().expect("task JSON");
    assert_eq!(read["title"], "write the e2e test");
    let mut response = agent
        .patch(&task_url)
        .send_json(json!({"done": true}))
        .expect("PATCH task");
    assert_eq!(response.status(), 200);
    let patched: Value = response.body_mut().read_json().expect("task JSON");
    assert_eq!(patched["done"], true);
    let doomed: Value = agent
        .post(project.url("/api/tasks"))
        .send_json(json!({"title": "to delete"}))
        .expect("POST")
        .body_mut()
        .read_json()
        .expect("task JSON");
    let doomed_url = project.url(&format!("/api/tasks/{}", doomed["id"]));
    assert_eq!(
        agent.delete(&doomed_url).call().expect("DELETE").status(),
        204
    );
    assert_eq!(agent.get(&doomed_url).call().expect("GET").status(), 404);

    // Stop the database under the running service, then start it again: a request meanwhile fails,
    // data persists, the app recovers by itself.
    let app_started = inspect(&app, "{{.State.StartedAt}}");
    project.run(&["stop", "db"]);
    let failed = agent
        .get(&task_url)
        .header("X-Request-ID", "e2e-went-wrong-0001")
        .call()
        .expect("GET task without its database");
    assert_eq!(failed.status(), 503, "GET task without its database");
    project.run(&["start", "db"]);
    wait_for_health(&db, "healthy", Duration::from_secs(120));
    wait_for_200(&task_url, Duration::from_secs(60));
    let mut response = agent.get(&task_url).call().expect("GET task after restart");
    let after: Value = response.body_mut().read_json().expect("task JSON");
    assert_eq!(after["title"], "write the e2e test");
    assert_eq!(after["done"], true);
    wait_for_health(&app, "healthy", Duration::from_secs(60));
    assert_eq!(
        inspect(&app, "{{.State.StartedAt}}"),
        app_started,
        "the app container was restarted"
    );
    assert_eq!(inspect(&app, "{{.RestartCount}}"), "0");

    // The service logs every request it serves; the proxy only those that went wrong (haproxy.cfg's
    // `dontlog-normal`), each line with the request id. (The failed request may never have reached
    // the service: the proxy takes a container out once its readiness check fails.)
    let app_log = logs(&app);
    assert!(
        app_log.contains("\"request_id\":\"e2e-went-well-0001\""),
        "no service line for the request that went well:\n{app_log}"
    );
    let proxy_log = logs(&proxy);
    assert!(
        proxy_log.contains("{e2e-went-wrong-0001}"),
        "the proxy did not log the failed request:\n{proxy_log}"
    );
    assert!(
        !proxy_log.contains("e2e-went-well-0001"),
        "the proxy logged a request that went well:\n{proxy_log}"
    );

    // `down -v` removes containers, the network and the named volume.
    project.run(&["down", "-v", "--timeout", "10"]);
    let label = format!("label=com.docker.compose.project={}", project.name);
    assert_eq!(
        docker(&["ps", "-a", "-q", "--filter", &label]),
        "",
        "containers left behind"
    );
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={}_", project.name)
        ]),
        ""
    );
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", &label]),
        "",
        "volumes left behind"
    );
    assert!(
        !run(
            "docker",
            &["volume", "inspect", &format!("{}_db-data", project.name)]
        )
        .status
        .success()
    );
}

#[test]
fn wrong_database_password_never_turns_healthy_and_says_access_denied_without_the_password() {
    let project = ComposeProject::new("right-password-7431", "root-password-7431");
    // The database initialises with the right password, then the app gets another one.
    project.run(&["up", "-d", "db"]);
    let db = project.container("db");
    wait_for_health(&db, "healthy", Duration::from_secs(180));
    let wrong = "wrong-password-5826";
    project.write_secret("db_password", wrong);
    project.run(&["up", "-d", "--no-recreate", "app"]);
    let app = project.container("app");

    // Past the start period (30 s) and three failed checks the verdict is final: never healthy.
    let deadline = Instant::now() + Duration::from_secs(75);
    let mut status = health(&app);
    while status != "unhealthy" && Instant::now() < deadline {
        assert_ne!(
            status, "healthy",
            "the app turned healthy with a wrong password"
        );
        std::thread::sleep(Duration::from_secs(1));
        status = health(&app);
    }
    assert_eq!(status, "unhealthy");
    let log = logs(&app);
    assert!(
        log.contains("Access denied"),
        "the log does not say the credentials were refused:\n{log}"
    );
    for secret in [wrong, "right-password-7431", "root-password-7431"] {
        assert!(!log.contains(secret), "the log prints a password");
    }
}
