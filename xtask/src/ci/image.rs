//! `image` and `push`: the service image at the run's version.
//!
//! The build is the deployer's (`deployer build`), so the OCI build arguments (`VERSION`,
//! `GIT_SHA`, `BUILD_DATE`) and the tags (`<version>`, `sha-<short sha>`) are spelled in one place.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::{deployer, quality::relative, revision, run_events};
use crate::{airgap, containers};

/// The documented goal for the runtime image (docs/BENCHMARKS.md, image section).
const MAX_IMAGE_BYTES: u64 = 40_000_000;

pub fn build(sh: &Shell, reports: &Path, version: &str) -> anyhow::Result<String> {
    // The base images, seeded from Debian packages where no registry answers.
    airgap::ensure_images(sh)?;
    crate::util::step(&format!("deployer build --version {version}"));
    let events = reports.join("image-build.jsonl");
    let stdout = run_events(deployer(sh, &["build", "--version", version]), &events)?;
    let built = result_event(&stdout).context("`deployer build` reported no result")?;
    containers::hadolint(sh, Some(&reports.join("hadolint.json")))?;
    containers::checkov(sh)?;
    let size = built["size_bytes"]
        .as_u64()
        .context("`deployer build` reported no image size")?;
    let tags: Vec<&str> = built["tags"]
        .as_array()
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let verdict = size_gate(size, MAX_IMAGE_BYTES);
    write_json(
        &reports.join("image.json"),
        &json!({ "version": version, "tags": tags, "size_bytes": size, "max_bytes": MAX_IMAGE_BYTES,
                 "revision": built["revision"] }),
    )?;
    let summary = verdict.map_err(anyhow::Error::msg)?;
    Ok(format!("built {}; {summary}", tags.join(", ")))
}

/// The size check's sentence, an error above `max`.
fn size_gate(size: u64, max: u64) -> Result<String, String> {
    let megabytes = |bytes: u64| bytes as f64 / 1_000_000.0;
    if size <= max {
        Ok(format!(
            "image size {:.1} MB, within the {:.0} MB goal",
            megabytes(size),
            megabytes(max)
        ))
    } else {
        Err(format!(
            "the image is {:.1} MB, above the {:.0} MB goal: look at what the last layers add \
             (`docker history`)",
            megabytes(size),
            megabytes(max)
        ))
    }
}

/// The tags `push` gives the local `infra-challenge:<version>` in `registry`.
fn push_tags(registry: &str, version: &str, short_sha: &str) -> Vec<String> {
    let registry = registry.trim().trim_end_matches('/');
    vec![
        format!("{registry}/infra-challenge:{version}"),
        format!("{registry}/infra-challenge:sha-{short_sha}"),
    ]
}

fn registry_from_env(value: Option<String>) -> Result<String, String> {
    value.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        "REGISTRY is not set: set it to the registry and path to push to (e.g. \
         REGISTRY=registry.example.com/team), after `docker login` to it"
            .to_owned()
    })
}

pub fn push(sh: &Shell, reports: &Path, version: &str) -> anyhow::Result<String> {
    let registry = registry_from_env(std::env::var("REGISTRY").ok()).map_err(anyhow::Error::msg)?;
    let local = format!("infra-challenge:{version}");
    anyhow::ensure!(
        airgap::image_exists(sh, &local),
        "{local} is not in the local engine: run `cargo xtask ci image` first (with the same version)"
    );
    let short = revision(sh)?.short;
    let tags = push_tags(&registry, version, &short);
    for tag in &tags {
        crate::util::step(&format!("docker push {tag}"));
        cmd!(sh, "docker tag {local} {tag}").run()?;
        cmd!(sh, "docker push {tag}").run().with_context(|| {
            format!("pushing {tag} failed: is {registry} reachable, and are you logged in (`docker login`)?")
        })?;
    }
    let report = reports.join("push.json");
    write_json(&report, &json!({ "version": version, "tags": tags }))?;
    Ok(format!(
        "pushed {}; report {}",
        tags.join(", "),
        relative(&report)
    ))
}

/// The data of the last `result` event of a deployer's JSON output.
pub fn result_event(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|event| event["event"] == "result")
}

pub fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    std::fs::write(path, format!("{value:#}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_gate_names_the_figure_and_the_goal() {
        assert_eq!(
            size_gate(19_300_000, MAX_IMAGE_BYTES),
            Ok("image size 19.3 MB, within the 40 MB goal".to_owned())
        );
        let error = size_gate(41_200_000, MAX_IMAGE_BYTES).unwrap_err();
        assert!(
            error.starts_with("the image is 41.2 MB, above the 40 MB goal"),
            "{error}"
        );
    }

    #[test]
    fn push_tags_the_version_and_the_commit_in_the_registry() {
        assert_eq!(
            push_tags("registry.example.com/team/", "0.1.0-abc1234", "abc1234"),
            [
                "registry.example.com/team/infra-challenge:0.1.0-abc1234",
                "registry.example.com/team/infra-challenge:sha-abc1234"
            ]
        );
    }

    #[test]
    fn push_without_registry_says_what_to_set() {
        for unset in [None, Some(String::new()), Some("  ".to_owned())] {
            let error = registry_from_env(unset).unwrap_err();
            assert!(error.starts_with("REGISTRY is not set"), "{error}");
        }
        assert_eq!(
            registry_from_env(Some("r.example".into())),
            Ok("r.example".into())
        );
    }

    #[test]
    fn the_last_result_event_wins() {
        let stdout = "{\"event\":\"step_started\",\"step\":\"building\"}\n\
                      {\"event\":\"result\",\"size_bytes\":1}\n\
                      not json\n\
                      {\"event\":\"result\",\"size_bytes\":2}\n";
        assert_eq!(
            result_event(stdout).map(|r| r["size_bytes"].clone()),
            Some(json!(2))
        );
    }
}
