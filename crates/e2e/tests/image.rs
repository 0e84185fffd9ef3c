//! The service image: clean-context build, labels, user, no shell, healthcheck verdicts.

use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{
    Container, Image, Network, app_image, docker, inspect, run, start_database, unique_name,
};

/// Builds from `git archive HEAD` (exactly what a fresh clone holds: no target/, no .git, no local
/// files) and checks the OCI labels carry the Cargo.toml version and the revision passed in.
#[test]
fn image_builds_from_a_clean_context_with_version_and_revision_labels() {
    let root = e2e::project_root();
    let sha = String::from_utf8(
        run(
            "git",
            &[
                "-C",
                root.to_str().expect("utf-8 path"),
                "rev-parse",
                "HEAD",
            ],
        )
        .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_owned();
    assert_eq!(sha.len(), 40, "git rev-parse HEAD gave {sha:?}");
    let version = e2e::workspace_version();
    let image = Image {
        tag: format!("infra-challenge:{}", unique_name("e2e-clean")),
    };

    let mut archive = Command::new("git")
        .args([
            "-C",
            root.to_str().expect("utf-8 path"),
            "archive",
            "--format=tar",
            "HEAD",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("git archive");
    let build = Command::new("docker")
        .args(["build", "--quiet", "--tag", &image.tag])
        .args([
            "--build-arg",
            &format!("VERSION={version}"),
            "--build-arg",
            &format!("GIT_SHA={sha}"),
        ])
        .args(["--build-arg", "BUILD_DATE=2026-01-01T00:00:00Z", "-"])
        .stdin(archive.stdout.take().expect("piped stdout"))
        .output()
        .expect("docker build");
    assert!(archive.wait().expect("git archive").success());
    assert!(
        build.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );

    let label = |key: &str| {
        inspect(
            &image.tag,
            &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        )
    };
    assert_eq!(label("org.opencontainers.image.version"), version);
    assert_eq!(label("org.opencontainers.image.revision"), sha);
    assert_eq!(
        label("org.opencontainers.image.created"),
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(label("org.opencontainers.image.title"), "infra-challenge");
    assert!(!label("org.opencontainers.image.source").is_empty());
    // The binary embeds the same metadata.
    let printed = docker(&["run", "--rm", &image.tag, "version"]);
    assert!(
        printed.contains(&version) && printed.contains(&sha),
        "`challenge version` printed {printed:?}"
    );
}

#[test]
fn image_runs_as_a_numeric_non_root_user() {
    let image = app_image();
    let user = inspect(&image, "{{.Config.User}}");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "Config.User is {user:?}, want a numeric non-root uid"
    );
    // The running process, not only the metadata: the service idles without a database.
    let app = Container::run(
        "e2e-user",
        &[
            "-e",
            "DB_HOST=127.0.0.1",
            "-e",
            "DB_PORT=1",
            &image,
            "serve",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    // `docker top` needs the PID column; the numeric uid is the second one.
    let top = docker(&["top", &app.name, "-o", "pid,uid"]);
    let process_uid = top
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(process_uid, uid, "docker top:\n{top}");
}

#[test]
fn image_has_no_shell() {
    let image = app_image();
    for shell in ["sh", "/bin/sh", "bash", "/bin/bash"] {
        let out = run(
            "docker",
            &["run", "--rm", "--entrypoint", shell, &image, "-c", "true"],
        );
        assert!(
            !out.status.success(),
            "`docker run --entrypoint {shell}` succeeded: the image has a shell"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not found") || stderr.contains("no such file"),
            "`docker run --entrypoint {shell}` failed for another reason than a missing shell: {stderr}"
        );
    }
    // The same invocation with the image's own binary works, so the failures above are the shell's.
    docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/challenge",
        &image,
        "version",
    ]);
}

#[test]
fn container_turns_healthy_with_a_database_and_unhealthy_without() {
    let image = app_image();
    let network = Network::create("e2e-health");
    let _db = start_database(&network, "app-password", "root-password");
    // Short health timings so the verdict comes in seconds; the command is the image's own.
    let fast = [
        "--health-interval",
        "2s",
        "--health-start-period",
        "0s",
        "--health-retries",
        "2",
    ];
    let db_args = e2e::app_database_args(&network, "app-password");
    let mut with_db: Vec<&str> = db_args.iter().map(String::as_str).collect();
    with_db.extend_from_slice(&["-e", "SEED_COUNT=3"]);
    with_db.extend_from_slice(&fast);
    with_db.push(&image);
    let healthy = Container::run("e2e-healthy", &with_db);
    e2e::wait_for_health(&healthy.name, "healthy", Duration::from_secs(90));

    let mut without_db = vec!["--network", &network.name, "-e", "DB_HOST=no-such-database"];
    without_db.extend_from_slice(&fast);
    without_db.push(&image);
    let unhealthy = Container::run("e2e-unhealthy", &without_db);
    e2e::wait_for_health(&unhealthy.name, "unhealthy", Duration::from_secs(60));
    assert_eq!(
        inspect(&unhealthy.name, "{{.State.Running}}"),
        "true",
        "the service must keep running"
    );
    // Locals drop in reverse order: the containers go before the network they are attached to.
}
