//! `deployer build`: `docker build` of the repository's Dockerfile at a version, tagged with the
//! version and the git revision, labelled through the Dockerfile's OCI build args.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::BuildArgs;
use crate::context::Context;
use crate::docker;
use crate::error::{Error, Result};
use crate::plan;
use crate::process::Cmd;

/// A cold build of the service takes minutes on two cores; an hour means something is stuck.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// The revision being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub sha: String,
    pub short: String,
    pub dirty: bool,
}

pub fn run(ctx: &Context, args: BuildArgs) -> Result<()> {
    let version =
        plan::parse_version(args.version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION")))?;
    let built = build_image(ctx, &version, args.allow_dirty, args.registry.as_deref())?;
    if args.push {
        for tag in built
            .iter()
            .filter(|t| args.registry.as_deref().is_some_and(|r| t.starts_with(r)))
        {
            let step = ctx.reporter.step(&format!("pushing {tag}"));
            match Cmd::new("docker").args(["push", tag]).output(BUILD_TIMEOUT) {
                Ok(out) if out.success => step.ok(""),
                Ok(out) => {
                    step.failed("");
                    return Err(Error::prerequisite(
                        format!(
                            "pushing {tag} failed: {}",
                            out.explanation().lines().last().unwrap_or("")
                        ),
                        "check that the registry is reachable and that you are logged in (`docker login`)",
                    ));
                }
                Err(e) => {
                    step.failed("");
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// The tags an image of `version` at `revision` gets, locally and (with a registry) remotely.
pub fn tags(
    repository: &str,
    registry: Option<&str>,
    version: &str,
    revision: &Revision,
) -> Vec<String> {
    let mut names = vec![repository.to_string()];
    if let Some(registry) = registry {
        let name = repository.rsplit('/').next().unwrap_or(repository);
        names.push(format!("{}/{name}", registry.trim_end_matches('/')));
    }
    let mut tags = Vec::new();
    for name in names {
        tags.push(format!("{name}:{version}"));
        if revision.short != "unknown" {
            tags.push(format!("{name}:sha-{}", revision.short));
        }
    }
    tags
}

/// A release version must come from a commit, so that its revision label tells the truth.
pub fn check_clean(version: &str, revision: &Revision, allow_dirty: bool) -> Result<()> {
    if revision.dirty && plan::is_release_version(version) && !allow_dirty {
        if revision.sha == "unknown" {
            return Err(Error::usage(format!(
                "no git revision to label {version} with (not a git work tree?): build from the repository \
                 checkout, pass --allow-dirty, or build a pre-release version such as {version}-dev"
            )));
        }
        return Err(Error::usage(format!(
            "the work tree has uncommitted changes, and {version} is a release version: commit them, pass \
             --allow-dirty, or build a pre-release version such as {version}-dev"
        )));
    }
    Ok(())
}

pub fn revision(project_dir: &Path) -> Revision {
    let git = |args: &[&str]| {
        Cmd::new("git")
            .args(args.iter().copied())
            .dir(project_dir)
            .checked(Duration::from_secs(20))
            .ok()
            .map(|s| s.trim().to_string())
    };
    match (
        git(&["rev-parse", "HEAD"]),
        git(&["rev-parse", "--short=7", "HEAD"]),
    ) {
        (Some(sha), Some(short)) => Revision {
            sha,
            short,
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_none_or(|s| !s.is_empty()),
        },
        _ => Revision {
            sha: "unknown".into(),
            short: "unknown".into(),
            dirty: true,
        },
    }
}

/// Builds the image; returns its tags.
pub fn build_image(
    ctx: &Context,
    version: &str,
    allow_dirty: bool,
    registry: Option<&str>,
) -> Result<Vec<String>> {
    let dockerfile = ctx.project_dir.join("Dockerfile");
    if !dockerfile.is_file() {
        return Err(Error::prerequisite(
            format!("no Dockerfile at {}", dockerfile.display()),
            "run the deployer from the repository checkout, or pass --project-dir DIR",
        ));
    }
    docker::engine_version()?;
    let revision = revision(&ctx.project_dir);
    check_clean(version, &revision, allow_dirty)?;
    let created = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let tags = tags(&ctx.global.repository, registry, version, &revision);
    ensure_base_images(ctx, &dockerfile)?;
    let mut cmd = Cmd::new("docker").arg("build").dir(&ctx.project_dir);
    for tag in &tags {
        cmd = cmd.arg("--tag").arg(tag);
    }
    for (name, value) in [
        ("VERSION", version),
        ("GIT_SHA", &revision.sha),
        ("BUILD_DATE", &created),
    ] {
        cmd = cmd.arg("--build-arg").arg(format!("{name}={value}"));
    }
    let cmd = cmd.arg(".");
    let mut step = ctx.reporter.step(&format!("building {}", tags[0]));
    // The classic builder prints "Step N/M : INSTRUCTION": enough to show where a long build is.
    // Progress output rewrites its line with carriage returns: each piece is a line of its own.
    let output = match cmd.output_watched(BUILD_TIMEOUT, &mut |line| {
        for line in output_lines(line) {
            if line.starts_with("Step ") {
                step.detail(&line.chars().take(70).collect::<String>());
            }
        }
    }) {
        Ok(output) => output,
        Err(e) => {
            step.failed("");
            return Err(e);
        }
    };
    if !output.success {
        step.failed("");
        let text = format!("{}\n{}", output.stdout, output.stderr);
        let lines = output_lines(&text);
        let tail = lines[lines.len().saturating_sub(30)..].to_vec();
        ctx.reporter.block("last lines of docker build", &tail);
        return Err(Error::Command {
            command: cmd.display(),
            detail: "the image did not build (see the lines above)".into(),
        });
    }
    let size = docker::image_size(&tags[0])?;
    step.ok(&format!("{:.1} MB", size as f64 / 1_000_000.0));
    ctx.reporter.result(
        json!({ "tags": tags, "size_bytes": size, "revision": revision.sha, "dirty": revision.dirty }),
        || format!("built {} ({:.1} MB)", tags.join(", "), size as f64 / 1_000_000.0),
    );
    Ok(tags)
}

/// Output as lines: split at line feeds and at the carriage returns progress output rewrites its
/// line with (which the reporter would otherwise show escaped, as `\u{d}`), blank pieces dropped.
pub fn output_lines(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The images the Dockerfile builds from: each `FROM` image with its `${ARG}`s replaced by their
/// defaults (the `ARG`s before the first `FROM`, as Docker scopes them), minus earlier stages and
/// `scratch`.
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut seen_from = false;
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            if let Some((name, value)) = words.next().and_then(|arg| arg.split_once('=')) {
                args.push((name.to_string(), value.trim_matches('"').to_string()));
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let Some(image) = rest.first() else { continue };
            let mut image = image.to_string();
            for (name, value) in &args {
                image = image
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            if let [_, r#as, name] = rest[..]
                && r#as.eq_ignore_ascii_case("AS")
            {
                stages.push(name.to_lowercase());
            }
            let stage = stages[..stages.len().saturating_sub(1)]
                .iter()
                .any(|s| *s == image.to_lowercase());
            if !stage && image != "scratch" && !images.contains(&image) {
                images.push(image);
            }
        }
    }
    images
}

/// A base image neither in the engine nor pullable (`pull_detail`: what `docker pull` said), as one
/// sentence with its fix.
pub fn missing_base_image(image: &str, pull_detail: &str) -> Error {
    Error::prerequisite(
        format!(
            "the Dockerfile's base image {image} is not in the local engine and {}",
            docker::pull_failure(pull_detail)
        ),
        "run `cargo xtask airgap-images` (it builds the base images from Debian packages), then build again",
    )
}

/// Fails before building when a base image of the Dockerfile is missing and cannot be pulled
/// (pulling it is what the build would do first).
fn ensure_base_images(ctx: &Context, dockerfile: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dockerfile).map_err(|source| Error::Io {
        context: format!("reading {}", dockerfile.display()),
        source,
    })?;
    for image in base_images(&text) {
        if docker::image_id(&image)?.is_some() {
            continue;
        }
        let step = ctx
            .reporter
            .step(&format!("pulling the base image {image}"));
        let pulled = Cmd::new("docker")
            .args(["pull", "--quiet", &image])
            .output(BUILD_TIMEOUT)?;
        if pulled.success {
            step.ok("");
        } else {
            step.failed("");
            return Err(missing_base_image(&image, &pulled.explanation()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(dirty: bool) -> Revision {
        Revision {
            sha: "0123456789abcdef".into(),
            short: "0123456".into(),
            dirty,
        }
    }

    #[test]
    fn tags_are_version_and_revision_also_for_the_registry() {
        assert_eq!(
            tags("infra-challenge", None, "1.2.0", &rev(false)),
            ["infra-challenge:1.2.0", "infra-challenge:sha-0123456"]
        );
        let with_registry = tags(
            "infra-challenge",
            Some("reg.example:5000/team/"),
            "1.2.0",
            &rev(false),
        );
        assert!(with_registry.contains(&"reg.example:5000/team/infra-challenge:1.2.0".to_string()));
        assert_eq!(with_registry.len(), 4);
    }

    #[test]
    fn carriage_returns_split_output_into_lines() {
        assert_eq!(
            output_lines("#5 sha256:ab 1.2MB / 9MB\r#5 sha256:ab 9MB / 9MB\r\n#5 DONE 0.3s\n\n"),
            [
                "#5 sha256:ab 1.2MB / 9MB",
                "#5 sha256:ab 9MB / 9MB",
                "#5 DONE 0.3s"
            ]
        );
    }

    #[test]
    fn base_images_are_the_from_lines_with_their_arg_defaults() {
        let dockerfile = "# syntax\nARG BUILDER_IMAGE=rust:1.95-slim-bookworm\n\
                          ARG RUNTIME_IMAGE=\"gcr.io/distroless/cc-debian12:nonroot\"\nARG VERSION=0.1.0\n\
                          FROM ${BUILDER_IMAGE} AS build\nARG VERSION\nRUN cargo build\n\
                          FROM --platform=linux/amd64 build AS test\n\
                          from $RUNTIME_IMAGE\nCOPY --from=build /a /b\nFROM scratch\n";
        assert_eq!(
            base_images(dockerfile),
            [
                "rust:1.95-slim-bookworm",
                "gcr.io/distroless/cc-debian12:nonroot"
            ]
        );
        let ours =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile"))
                .expect("the repository's Dockerfile");
        assert_eq!(base_images(&ours).len(), 2, "{:?}", base_images(&ours));
    }

    #[test]
    fn a_missing_base_image_is_one_sentence_with_the_airgap_fix() {
        let Error::Prerequisite { problem, fix } = missing_base_image(
            "rust:1.95-slim-bookworm",
            "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup \
             registry-1.docker.io: no such host",
        ) else {
            panic!("a prerequisite error");
        };
        assert_eq!(
            problem,
            "the Dockerfile's base image rust:1.95-slim-bookworm is not in the local engine and no \
             registry answers"
        );
        assert!(fix.contains("`cargo xtask airgap-images`"));
    }

    #[test]
    fn a_dirty_tree_is_refused_only_for_release_versions() {
        assert!(check_clean("1.2.0", &rev(true), false).is_err());
        assert!(check_clean("1.2.0", &rev(true), true).is_ok());
        assert!(check_clean("1.2.0-dev", &rev(true), false).is_ok());
        assert!(check_clean("1.2.0", &rev(false), false).is_ok());
    }
}
