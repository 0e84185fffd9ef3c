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
    let output = match cmd.output_watched(BUILD_TIMEOUT, &mut |line| {
        if line.starts_with("Step ") {
            step.detail(&line.chars().take(70).collect::<String>());
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
        let lines: Vec<String> = text.lines().map(String::from).collect();
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
    fn a_dirty_tree_is_refused_only_for_release_versions() {
        assert!(check_clean("1.2.0", &rev(true), false).is_err());
        assert!(check_clean("1.2.0", &rev(true), true).is_ok());
        assert!(check_clean("1.2.0-dev", &rev(true), false).is_ok());
        assert!(check_clean("1.2.0", &rev(false), false).is_ok());
    }
}
