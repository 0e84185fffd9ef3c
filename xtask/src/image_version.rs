//! The image's default version must be the workspace version: `docker build .` without build
//! arguments labels the image (`org.opencontainers.image.version`) and the binary with the
//! Dockerfile's `ARG VERSION=` default, and `cargo xtask test`'s lint suite fails when that default
//! and `[workspace.package] version` in Cargo.toml differ.

use std::fs;

use anyhow::Context;

use crate::util;

pub fn check() -> anyhow::Result<()> {
    util::step("Dockerfile VERSION default = workspace version");
    let root = util::project_root();
    let read =
        |name: &str| fs::read_to_string(root.join(name)).with_context(|| format!("reading {name}"));
    let workspace = workspace_version(&read("Cargo.toml")?)
        .context("Cargo.toml has no `version = \"...\"` under [workspace.package]")?;
    version_default_matches(&read("Dockerfile")?, &workspace).map_err(anyhow::Error::msg)
}

/// `version` of `[workspace.package]` in the root Cargo.toml.
fn workspace_version(cargo_toml: &str) -> Option<String> {
    let mut in_section = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "version"
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Every `ARG VERSION=<default>` of the Dockerfile says `workspace`, and the one before the first
/// `FROM` (the default every stage's `ARG VERSION` inherits) exists.
fn version_default_matches(dockerfile: &str, workspace: &str) -> Result<(), String> {
    let fix = format!(
        "change it in Dockerfile to `ARG VERSION={workspace}` (the workspace version, \
         [workspace.package] in Cargo.toml)"
    );
    let mut seen_from = false;
    let mut global_default = false;
    for (number, line) in dockerfile.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [instruction, ..] if instruction.eq_ignore_ascii_case("FROM") => seen_from = true,
            [instruction, declaration] if instruction.eq_ignore_ascii_case("ARG") => {
                let Some(default) = declaration.strip_prefix("VERSION=") else {
                    continue;
                };
                let default = default.trim_matches('"');
                if default != workspace {
                    return Err(format!(
                        "Dockerfile line {}: the VERSION build argument defaults to {default:?}, not the \
                         workspace version {workspace}: {fix}",
                        number + 1
                    ));
                }
                global_default |= !seen_from;
            }
            _ => {}
        }
    }
    if global_default {
        Ok(())
    } else {
        Err(format!(
            "Dockerfile: no `ARG VERSION=<default>` before the first FROM, so `docker build .` labels the \
             image without a version: add `ARG VERSION={workspace}` there (the workspace version, \
             [workspace.package] in Cargo.toml)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARGO_TOML: &str = "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nversion = \"1.2.3\"\nedition = \"2024\"\n\n[package]\nversion = \"9.9.9\"\n";

    #[test]
    fn the_workspace_version_comes_from_workspace_package() {
        assert_eq!(workspace_version(CARGO_TOML).as_deref(), Some("1.2.3"));
        assert_eq!(workspace_version("[package]\nversion = \"1\"\n"), None);
    }

    #[test]
    fn a_global_default_equal_to_the_workspace_version_passes() {
        let dockerfile = "ARG BUILDER_IMAGE=rust\nARG VERSION=1.2.3\nFROM x AS build\nARG VERSION\nFROM y\nARG VERSION\n";
        assert_eq!(version_default_matches(dockerfile, "1.2.3"), Ok(()));
        let quoted = "ARG VERSION=\"1.2.3\"\nFROM x\n";
        assert_eq!(version_default_matches(quoted, "1.2.3"), Ok(()));
    }

    #[test]
    fn a_stale_default_names_the_line_and_the_file_to_change() {
        let dockerfile = "ARG VERSION=0.1.0\nFROM x\n";
        let error = version_default_matches(dockerfile, "0.2.0").unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        assert!(
            error.contains("change it in Dockerfile to `ARG VERSION=0.2.0`"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_default_in_a_stage_is_a_stale_default_too() {
        let dockerfile = "ARG VERSION=1.2.3\nFROM x\nARG VERSION=\"\"\n";
        let error = version_default_matches(dockerfile, "1.2.3").unwrap_err();
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn no_global_default_is_an_error() {
        let error = version_default_matches("FROM x\nARG VERSION\n", "1.2.3").unwrap_err();
        assert!(error.contains("before the first FROM"), "{error}");
    }

    /// The repository itself: the same check the lint suite runs, so `cargo test` catches it too.
    #[test]
    fn the_dockerfile_default_is_the_workspace_version() {
        check().unwrap();
    }
}
